//! Basic-auth passwords: the consumers' `passwords`, held as password hashes
//! (argon2id by default; bcrypt and PBKDF2 read for migration) and checked by
//! the host for the `consumers.verify-password` function. No plugin ever
//! sees a stored hash.
//!
//! Checking a hash is slow on purpose (tens of milliseconds of CPU), so:
//! - it runs on tokio's blocking threads, at most one per CPU at once, never
//!   on a thread that serves requests; a few hundred more may wait their
//!   turn, and past that a check is refused as busy (the plugin answers 503);
//! - a verified credential is remembered for [`VERIFIED_TTL`] under an
//!   HMAC-SHA256 of the user name and password, keyed with a random secret
//!   made for this config, so a valid client pays the hash once and neither
//!   the clear text nor an unkeyed digest of it is kept;
//! - an unknown user costs what a known one does: the password is checked
//!   against a decoy (the first stored hash) and refused whatever the result.
//!
//! Failures are never remembered: each wrong guess pays the whole hash.
//! Stored hashes are checked when the config loads, and hashes whose cost
//! is out of bounds (a memory size or a round count that would let one
//! request stall a CPU for seconds) are refused.

use super::Consumer;
use argon2::Argon2;
use argon2::password_hash::{self, PasswordHash, PasswordVerifier};
use aws_lc_rs::hmac;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// How long a verified credential is remembered.
pub const VERIFIED_TTL: Duration = Duration::from_secs(600);
/// Most verified credentials remembered at once.
const MAX_VERIFIED: u64 = 100_000;
/// Checks that may wait for a CPU beyond those running; more are busy.
const MAX_WAITING: usize = 256;
/// The longest user name and password the host checks (longer ones are
/// refused without hashing).
pub const MAX_USERNAME: usize = 256;
/// See [`MAX_USERNAME`].
pub const MAX_PASSWORD: usize = 1024;

/// Bounds on a stored hash's cost.
const ARGON2_MAX_MEMORY_KIB: u32 = 256 * 1024;
const ARGON2_MAX_PASSES: u32 = 16;
const ARGON2_MAX_LANES: u32 = 8;
const BCRYPT_MAX_COST: u32 = 15;
const PBKDF2_MAX_ROUNDS: u32 = 5_000_000;

/// One stored password.
#[derive(Debug)]
enum Stored {
    /// A PHC string: `$argon2id$...` (also argon2i, argon2d) or
    /// `$pbkdf2-sha256$...` / `$pbkdf2-sha512$...`.
    Phc(String),
    /// A bcrypt hash: `$2b$...` (also `$2a$`, `$2y$`).
    Bcrypt(String),
    /// Django's `pbkdf2_sha256$ROUNDS$SALT$HASH` (the salt as text, the
    /// hash in base64).
    Django {
        rounds: std::num::NonZeroU32,
        salt: Vec<u8>,
        hash: Vec<u8>,
    },
    /// The password in clear (development only).
    Plain(Vec<u8>),
}

impl Stored {
    /// Reads a hash as `gateway hash-password` prints it, refusing unknown
    /// schemes and out-of-bounds costs.
    fn parse_hash(text: &str) -> Result<Stored, String> {
        if text.starts_with("$2") {
            let parts: bcrypt::HashParts = text
                .parse()
                .map_err(|e| format!("invalid bcrypt hash: {e}"))?;
            if parts.get_cost() > BCRYPT_MAX_COST {
                return Err(format!(
                    "bcrypt cost {} is over the limit of {BCRYPT_MAX_COST}",
                    parts.get_cost()
                ));
            }
            return Ok(Stored::Bcrypt(text.to_string()));
        }
        if let Some(django) = text.strip_prefix("pbkdf2_sha256$") {
            return parse_django(django);
        }
        let parsed = PasswordHash::new(text).map_err(|e| {
            format!("invalid password hash ({e}): expected $argon2id$..., $2b$... or $pbkdf2-sha256$..., as printed by `gateway hash-password`")
        })?;
        if parsed.salt.is_none() || parsed.hash.is_none() {
            return Err("invalid password hash: no salt or no hash".to_string());
        }
        match parsed.algorithm.as_str() {
            "argon2id" | "argon2i" | "argon2d" => check_argon2(&parsed)?,
            "pbkdf2-sha256" | "pbkdf2-sha512" => check_pbkdf2(&parsed)?,
            other => {
                return Err(format!(
                    "unsupported password hash `${other}$`: argon2id, argon2i, argon2d, bcrypt ($2b$), pbkdf2-sha256 and pbkdf2-sha512 are read"
                ));
            }
        }
        Ok(Stored::Phc(text.to_string()))
    }

    /// Whether `password` is this one. Slow for hashes: call off the
    /// request threads.
    fn verify(&self, password: &[u8]) -> bool {
        match self {
            Stored::Phc(text) => {
                let Ok(parsed) = PasswordHash::new(text) else {
                    return false;
                };
                if parsed.algorithm.as_str().starts_with("argon2") {
                    Argon2::default().verify_password(password, &parsed).is_ok()
                } else {
                    pbkdf2::Pbkdf2.verify_password(password, &parsed).is_ok()
                }
            }
            // Passwords of 72 bytes or more never match: bcrypt would
            // ignore what follows the 72nd byte.
            Stored::Bcrypt(text) => bcrypt::non_truncating_verify(password, text).unwrap_or(false),
            Stored::Django { rounds, salt, hash } => aws_lc_rs::pbkdf2::verify(
                aws_lc_rs::pbkdf2::PBKDF2_HMAC_SHA256,
                *rounds,
                salt,
                password,
                hash,
            )
            .is_ok(),
            Stored::Plain(clear) => {
                aws_lc_rs::constant_time::verify_slices_are_equal(clear, password).is_ok()
            }
        }
    }
}

/// Django's PBKDF2 form after its `pbkdf2_sha256$`.
fn parse_django(rest: &str) -> Result<Stored, String> {
    use base64::Engine as _;
    let hint = "invalid Django password hash: expected pbkdf2_sha256$ROUNDS$SALT$BASE64";
    let mut parts = rest.split('$');
    let (Some(rounds), Some(salt), Some(hash), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(hint.to_string());
    };
    let rounds: std::num::NonZeroU32 = rounds.parse().map_err(|_| hint.to_string())?;
    if rounds.get() > PBKDF2_MAX_ROUNDS {
        return Err(format!(
            "PBKDF2 with {rounds} rounds is over the limit of {PBKDF2_MAX_ROUNDS}"
        ));
    }
    let hash = base64::engine::general_purpose::STANDARD
        .decode(hash)
        .map_err(|_| hint.to_string())?;
    if salt.is_empty() || hash.len() < 16 {
        return Err(hint.to_string());
    }
    Ok(Stored::Django {
        rounds,
        salt: salt.as_bytes().to_vec(),
        hash,
    })
}

fn check_argon2(parsed: &PasswordHash<'_>) -> Result<(), String> {
    let params =
        argon2::Params::try_from(parsed).map_err(|e| format!("invalid argon2 hash: {e}"))?;
    if params.m_cost() > ARGON2_MAX_MEMORY_KIB
        || params.t_cost() > ARGON2_MAX_PASSES
        || params.p_cost() > ARGON2_MAX_LANES
    {
        return Err(format!(
            "argon2 cost m={},t={},p={} is over the limits (m at most {ARGON2_MAX_MEMORY_KIB} KiB, t at most {ARGON2_MAX_PASSES}, p at most {ARGON2_MAX_LANES})",
            params.m_cost(),
            params.t_cost(),
            params.p_cost()
        ));
    }
    Ok(())
}

fn check_pbkdf2(parsed: &PasswordHash<'_>) -> Result<(), String> {
    let params =
        pbkdf2::Params::try_from(parsed).map_err(|e| format!("invalid PBKDF2 hash: {e}"))?;
    if params.rounds > PBKDF2_MAX_ROUNDS {
        return Err(format!(
            "PBKDF2 with {} rounds is over the limit of {PBKDF2_MAX_ROUNDS}",
            params.rounds
        ));
    }
    Ok(())
}

/// The outcome of one check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    /// The credential is this consumer's.
    Valid(Arc<Consumer>),
    /// An unknown user or a wrong password (not said which).
    Invalid,
    /// Too many checks are waiting; nothing was checked.
    Busy,
}

/// Every consumer's passwords, by user name, with the verified credentials
/// remembered.
pub struct Passwords {
    by_user: HashMap<String, (Arc<Stored>, Arc<Consumer>)>,
    decoy: Option<Arc<Stored>>,
    verified: moka::sync::Cache<[u8; 32], Arc<Consumer>>,
    remember_key: hmac::Key,
    cpus: Arc<tokio::sync::Semaphore>,
    /// Checks waiting or running; at most `MAX_WAITING` plus the CPUs.
    waiting: Arc<AtomicUsize>,
    max_waiting: usize,
}

impl std::fmt::Debug for Passwords {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Passwords")
            .field("users", &self.by_user.len())
            .finish_non_exhaustive()
    }
}

impl Default for Passwords {
    fn default() -> Self {
        let mut secret = [0u8; 32];
        // Without system randomness the key is fixed zeros: remembered
        // credentials are then digests under a known key, still of a
        // user name and password that were just verified.
        let _ = aws_lc_rs::rand::fill(&mut secret);
        let cpus = std::thread::available_parallelism().map_or(1, usize::from);
        Passwords {
            by_user: HashMap::new(),
            decoy: None,
            verified: moka::sync::Cache::builder()
                .max_capacity(MAX_VERIFIED)
                .time_to_live(VERIFIED_TTL)
                .build(),
            remember_key: hmac::Key::new(hmac::HMAC_SHA256, &secret),
            cpus: Arc::new(tokio::sync::Semaphore::new(cpus)),
            waiting: Arc::new(AtomicUsize::new(0)),
            max_waiting: MAX_WAITING + cpus,
        }
    }
}

/// Whether `name` can be a basic-auth user name (RFC 7617: no colon).
pub fn check_username(name: &str) -> Result<(), String> {
    if name.is_empty()
        || name.len() > MAX_USERNAME
        || name.contains(':')
        || name.chars().any(char::is_control)
    {
        return Err(format!(
            "a user name must be 1 to {MAX_USERNAME} bytes without colons or control characters"
        ));
    }
    Ok(())
}

impl Passwords {
    /// Adds `username`'s password, given as a `hash` or (development only)
    /// in clear, for `consumer`.
    pub fn add(
        &mut self,
        username: &str,
        hash: Option<&str>,
        plaintext: Option<&str>,
        consumer: &Arc<Consumer>,
    ) -> Result<(), String> {
        check_username(username)?;
        let stored = match (hash, plaintext) {
            (Some(hash), None) => Stored::parse_hash(hash)?,
            (None, Some(clear)) => {
                if clear.is_empty() || clear.len() > MAX_PASSWORD {
                    return Err(format!("a password must be 1 to {MAX_PASSWORD} bytes"));
                }
                tracing::warn!(
                    "a password is written in clear in the config; use a hash from `gateway hash-password` outside local development"
                );
                Stored::Plain(clear.as_bytes().to_vec())
            }
            _ => return Err("a password needs exactly one of hash or plaintext".to_string()),
        };
        if let Some((_, owner)) = self.by_user.get(username) {
            return Err(format!(
                "user name `{username}` is already a user name of consumer `{}`; user names must be unique",
                owner.name
            ));
        }
        let stored = Arc::new(stored);
        if self.decoy.is_none() && !matches!(*stored, Stored::Plain(_)) {
            self.decoy = Some(stored.clone());
        }
        self.by_user
            .insert(username.to_string(), (stored, consumer.clone()));
        Ok(())
    }

    /// Whether any consumer has a password.
    pub fn is_empty(&self) -> bool {
        self.by_user.is_empty()
    }

    /// Checks `username` and `password`: from memory when verified lately,
    /// else against the stored hash on a blocking thread.
    pub async fn verify(&self, username: &str, password: &str) -> Check {
        if self.by_user.is_empty()
            || check_username(username).is_err()
            || password.is_empty()
            || password.len() > MAX_PASSWORD
        {
            return Check::Invalid;
        }
        let remembered = self.remember_as(username, password);
        if let Some(consumer) = self.verified.get(&remembered) {
            count("remembered");
            return Check::Valid(consumer);
        }
        let (stored, owner) = match self.by_user.get(username) {
            Some((stored, consumer)) => (stored.clone(), Some(consumer)),
            None => match &self.decoy {
                Some(decoy) => (decoy.clone(), None),
                None => return Check::Invalid,
            },
        };
        let Some(matched) = self.hash_in_turn(stored, password).await else {
            count("busy");
            return Check::Busy;
        };
        match owner {
            Some(consumer) if matched => {
                count("valid");
                self.verified.insert(remembered, consumer.clone());
                Check::Valid(consumer.clone())
            }
            _ => {
                count("invalid");
                Check::Invalid
            }
        }
    }

    /// Runs one hash check on a blocking thread when a CPU is free; `None`
    /// when too many are waiting already.
    async fn hash_in_turn(&self, stored: Arc<Stored>, password: &str) -> Option<bool> {
        if self.waiting.fetch_add(1, Ordering::AcqRel) >= self.max_waiting {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        let _waiting = Leave(self.waiting.clone());
        let permit = self.cpus.clone().acquire_owned().await.ok()?;
        let password = password.as_bytes().to_vec();
        let check = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            stored.verify(&password)
        });
        Some(check.await.unwrap_or(false))
    }

    /// The key a verified credential is remembered under.
    fn remember_as(&self, username: &str, password: &str) -> [u8; 32] {
        let mut context = hmac::Context::with_key(&self.remember_key);
        let length = u32::try_from(username.len()).unwrap_or(u32::MAX);
        context.update(&length.to_be_bytes());
        context.update(username.as_bytes());
        context.update(password.as_bytes());
        let mut out = [0u8; 32];
        out.copy_from_slice(context.sign().as_ref());
        out
    }
}

/// Counts one check in `gateway_password_checks_total`.
fn count(outcome: &'static str) {
    let metrics = crate::metrics::metrics();
    crate::metrics::Metrics::count(&metrics.password_checks, outcome);
}

/// Leaves the waiting count when dropped (also when the request is
/// cancelled while it waits).
struct Leave(Arc<AtomicUsize>);

impl Drop for Leave {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The algorithms `gateway hash-password` can write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// Argon2id with OWASP's parameters (19 MiB, 2 passes, 1 lane).
    Argon2id,
    /// bcrypt, cost 12.
    Bcrypt,
    /// PBKDF2-HMAC-SHA256, 600,000 rounds.
    Pbkdf2Sha256,
}

/// The stored form of `password` under `algorithm` with a fresh random salt.
pub fn hash_password(password: &str, algorithm: Algorithm) -> Result<String, String> {
    if password.is_empty() || password.len() > MAX_PASSWORD {
        return Err(format!("a password must be 1 to {MAX_PASSWORD} bytes"));
    }
    let mut salt = [0u8; 16];
    aws_lc_rs::rand::fill(&mut salt).map_err(|_| "no system randomness for the salt")?;
    let salt_text = password_hash::SaltString::encode_b64(&salt).map_err(|e| e.to_string())?;
    let phc = match algorithm {
        Algorithm::Argon2id => password_hash::PasswordHasher::hash_password(
            &Argon2::default(),
            password.as_bytes(),
            &salt_text,
        ),
        Algorithm::Pbkdf2Sha256 => password_hash::PasswordHasher::hash_password_customized(
            &pbkdf2::Pbkdf2,
            password.as_bytes(),
            Some(pbkdf2::Algorithm::Pbkdf2Sha256.ident()),
            None,
            pbkdf2::Params::default(),
            &salt_text,
        ),
        Algorithm::Bcrypt => {
            return bcrypt::non_truncating_hash_with_salt(password, 12, salt)
                .map(|parts| parts.format_for_version(bcrypt::Version::TwoB))
                .map_err(|e| format!("bcrypt: {e}"));
        }
    };
    phc.map(|hash| hash.to_string()).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alice() -> Arc<Consumer> {
        Arc::new(Consumer {
            name: "alice".into(),
            groups: vec![],
            plan: None,
            metadata: vec![],
        })
    }

    #[test]
    fn each_algorithm_round_trips_and_refuses_a_wrong_password() {
        for algorithm in [
            Algorithm::Argon2id,
            Algorithm::Bcrypt,
            Algorithm::Pbkdf2Sha256,
        ] {
            let hash = hash_password("wonderland-secret-1", algorithm).unwrap_or_default();
            let stored = Stored::parse_hash(&hash).unwrap_or(Stored::Plain(vec![]));
            assert!(
                stored.verify(b"wonderland-secret-1"),
                "{algorithm:?}: {hash}"
            );
            assert!(!stored.verify(b"wonderland-secret-2"), "{algorithm:?}");
        }
    }

    #[test]
    fn published_hashes_are_read() {
        // From the reference implementations' documentation and tests: the
        // argon2 CLI's example (`echo -n password | argon2 somesalt -t 2 -m
        // 16 -p 4 -l 24`), crypt_blowfish's first test vector, and Django's
        // PBKDF2 test (`lètmein` with salt `seasalt`).
        let argon2 = "$argon2i$v=19$m=65536,t=2,p=4$c29tZXNhbHQ$RdescudvJCsgt3ub+b+dWRWJTmaaJObG";
        let stored = Stored::parse_hash(argon2).unwrap_or(Stored::Plain(vec![]));
        assert!(stored.verify(b"password"));
        assert!(!stored.verify(b"passwore"));
        let bcrypt = "$2a$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW";
        let stored = Stored::parse_hash(bcrypt).unwrap_or(Stored::Plain(vec![]));
        assert!(stored.verify(b"U*U"));
        assert!(!stored.verify(b"U*V"));
        let django = "pbkdf2_sha256$1000000$seasalt$r1uLUxoxpP2Ued/qxvmje7UH9PUJBkRrvf9gGPL7Cps=";
        let stored = Stored::parse_hash(django).unwrap_or(Stored::Plain(vec![]));
        assert!(stored.verify("lètmein".as_bytes()));
        assert!(!stored.verify(b"letmein"));
    }

    #[test]
    fn costs_out_of_bounds_and_unknown_schemes_are_refused() {
        let heavy = "$argon2id$v=19$m=1048576,t=2,p=1$c29tZXNhbHQ$RdescudvJCsgt3ub+b+dWRWJTmaaJObG";
        assert!(Stored::parse_hash(heavy).is_err_and(|e| e.contains("over the limits")));
        let bcrypt = "$2b$20$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW";
        assert!(Stored::parse_hash(bcrypt).is_err_and(|e| e.contains("over the limit")));
        assert!(
            Stored::parse_hash(
                "$scrypt$ln=16,r=8,p=1$c29tZXNhbHQ$RdescudvJCsgt3ub+b+dWRWJTmaaJObG"
            )
            .is_err_and(|e| e.contains("unsupported"))
        );
        assert!(Stored::parse_hash("secret").is_err());
    }

    #[test]
    fn user_names_are_unique_and_plain() {
        let mut passwords = Passwords::default();
        assert!(passwords.add("alice", None, Some("pw-1"), &alice()).is_ok());
        assert!(
            passwords
                .add("alice", None, Some("pw-2"), &alice())
                .is_err_and(|e| e.contains("already"))
        );
        assert!(passwords.add("a:b", None, Some("pw"), &alice()).is_err());
        assert!(
            passwords
                .add("bob", Some("x"), Some("y"), &alice())
                .is_err()
        );
    }

    #[tokio::test]
    async fn a_verified_credential_is_remembered_and_a_wrong_one_never() {
        let mut passwords = Passwords::default();
        let hash = hash_password("pw-alice", Algorithm::Pbkdf2Sha256).unwrap_or_default();
        assert!(passwords.add("alice", Some(&hash), None, &alice()).is_ok());
        assert_eq!(
            passwords.verify("alice", "pw-alice").await,
            Check::Valid(alice())
        );
        assert_eq!(passwords.verified.entry_count(), 0); // moka counts lazily
        passwords.verified.run_pending_tasks();
        assert_eq!(passwords.verified.entry_count(), 1);
        assert_eq!(
            passwords.verify("alice", "pw-alice").await,
            Check::Valid(alice())
        );
        assert_eq!(passwords.verify("alice", "pw-alicf").await, Check::Invalid);
        assert_eq!(
            passwords.verify("mallory", "pw-alice").await,
            Check::Invalid
        );
        passwords.verified.run_pending_tasks();
        assert_eq!(passwords.verified.entry_count(), 1);
    }
}
