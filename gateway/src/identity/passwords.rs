//! Basic-auth passwords: the consumers' `passwords`, held as password hashes
//! (argon2id by default; bcrypt and PBKDF2 read for migration) and checked by
//! the host for the `consumers.verify-password` function. No plugin ever
//! sees a stored hash.
//!
//! Checking a hash is slow on purpose (tens of milliseconds of CPU), so the
//! [`Checker`], one for the process (every config shares it, across
//! reloads), bounds the work:
//! - hashes are computed on tokio's blocking threads, on at most half the
//!   CPUs at once (at least one), so the other half keeps serving; a check
//!   waits for its turn at most [`MAX_WAIT`], and when [`MAX_WAITING`]
//!   checks wait already a new one is refused as busy (the plugin answers
//!   503). One request may ask for [`PASSWORD_CHECKS_PER_REQUEST`] checks;
//! - a verified credential is remembered for [`VERIFIED_TTL`] under an
//!   HMAC-SHA256 of the user name, the stored hash and the password, keyed
//!   with a random secret of the process, so a valid client pays the hash
//!   once, a changed password is a new entry, and neither the clear text
//!   nor an unkeyed digest of it is kept; concurrent checks of one
//!   credential compute one hash;
//! - an unknown user name costs what a known one does: its password is
//!   checked against a decoy, one of the stored hashes chosen by a keyed
//!   hash of the name (so unknown names cost what the stored mix of
//!   algorithms costs), and refused whatever the result.
//!
//! Failures are never remembered: each wrong guess pays the whole hash.
//! Stored hashes are checked when the config loads; one that could never
//! match, or whose cost would let one request hold a CPU for more than about
//! a second, is refused.

use super::Consumer;
use argon2::Argon2;
use argon2::password_hash::{self, PasswordHash, PasswordVerifier};
use aws_lc_rs::hmac;
use plugin_shared::limits::{PASSWORD_MAX_LENGTH, PASSWORD_MAX_USERNAME, password_checkable};
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

pub use plugin_shared::limits::PASSWORD_CHECKS_PER_REQUEST;

/// How long a verified credential is remembered.
pub const VERIFIED_TTL: Duration = Duration::from_secs(600);
/// Most verified credentials remembered at once.
const MAX_VERIFIED: u64 = 100_000;
/// Checks that may wait for a CPU; more are busy.
pub const MAX_WAITING: usize = 256;
/// The longest a check waits for a CPU before it is busy.
pub const MAX_WAIT: Duration = Duration::from_secs(5);

/// Bounds on a stored hash's cost (and, for old or odd hashes, its floor).
const ARGON2_MAX_MEMORY_KIB: u32 = 256 * 1024;
/// Memory times passes: 256 MiB once, 64 MiB three times, 19 MiB twice.
const ARGON2_MAX_WORK: u64 = 256 * 1024;
const ARGON2_MAX_LANES: u32 = 8;
const ARGON2_MIN_SALT: usize = 8;
const BCRYPT_MAX_COST: u32 = 14;
const PBKDF2_MAX_ROUNDS: u32 = 5_000_000;
const PBKDF2_MIN_ROUNDS: u32 = 1_000;
/// bcrypt reads this many bytes of a password and ignores the rest.
const BCRYPT_MAX_PASSWORD: usize = 72;

/// One stored password: its text as configured, and how to check it.
#[derive(Debug)]
struct Stored {
    text: String,
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    /// A PHC string: `$argon2id$...` (also argon2i, argon2d).
    Argon2,
    /// A PHC string: `$pbkdf2-sha256$...` or `$pbkdf2-sha512$...`.
    Pbkdf2,
    /// A bcrypt hash: `$2b$...` (also `$2a$`, `$2y$`).
    Bcrypt,
    /// Django's `pbkdf2_sha256$ROUNDS$SALT$HASH` (the salt as text, the
    /// hash in base64).
    Django {
        rounds: std::num::NonZeroU32,
        salt: Vec<u8>,
        hash: Vec<u8>,
    },
    /// The password in clear (development only).
    Plain,
}

impl Stored {
    /// Reads a hash as `gateway hash-password` prints it, refusing unknown
    /// schemes, costs out of bounds and hashes that could never match.
    fn parse_hash(text: &str) -> Result<Stored, String> {
        let kind = if text.starts_with("$2") {
            check_bcrypt(text)?;
            Kind::Bcrypt
        } else if let Some(django) = text.strip_prefix("pbkdf2_sha256$") {
            parse_django(django)?
        } else {
            parse_phc(text)?
        };
        Ok(Stored {
            text: text.to_string(),
            kind,
        })
    }

    fn plain(clear: &str) -> Stored {
        Stored {
            text: clear.to_string(),
            kind: Kind::Plain,
        }
    }

    /// Whether `password` is this one. Slow for hashes: call off the
    /// request threads.
    fn verify(&self, password: &[u8]) -> bool {
        match &self.kind {
            Kind::Argon2 | Kind::Pbkdf2 => {
                let Ok(parsed) = PasswordHash::new(&self.text) else {
                    return false;
                };
                if matches!(self.kind, Kind::Argon2) {
                    Argon2::default().verify_password(password, &parsed).is_ok()
                } else {
                    pbkdf2::Pbkdf2.verify_password(password, &parsed).is_ok()
                }
            }
            // bcrypt would ignore what follows the 72nd byte: such a
            // password never matches, after the same work as one that might.
            Kind::Bcrypt if password.len() >= BCRYPT_MAX_PASSWORD => {
                let _ = bcrypt::verify(password, &self.text);
                false
            }
            Kind::Bcrypt => bcrypt::non_truncating_verify(password, &self.text).unwrap_or(false),
            Kind::Django { rounds, salt, hash } => aws_lc_rs::pbkdf2::verify(
                aws_lc_rs::pbkdf2::PBKDF2_HMAC_SHA256,
                *rounds,
                salt,
                password,
                hash,
            )
            .is_ok(),
            Kind::Plain => {
                aws_lc_rs::constant_time::verify_slices_are_equal(self.text.as_bytes(), password)
                    .is_ok()
            }
        }
    }

    fn is_hash(&self) -> bool {
        !matches!(self.kind, Kind::Plain)
    }
}

/// A bcrypt hash of a version read (`$2x$`, with its different handling of
/// 8-bit passwords, is not) and a cost in bounds.
fn check_bcrypt(text: &str) -> Result<(), String> {
    if !["$2a$", "$2b$", "$2y$"].iter().any(|v| text.starts_with(v)) {
        return Err("unsupported bcrypt version: $2a$, $2b$ and $2y$ are read".to_string());
    }
    let parts: bcrypt::HashParts = text
        .parse()
        .map_err(|e| format!("invalid bcrypt hash: {e}"))?;
    if parts.get_cost() > BCRYPT_MAX_COST {
        return Err(format!(
            "bcrypt cost {} is over the limit of {BCRYPT_MAX_COST}",
            parts.get_cost()
        ));
    }
    Ok(())
}

/// An Argon2 or PBKDF2 PHC string.
fn parse_phc(text: &str) -> Result<Kind, String> {
    let parsed = PasswordHash::new(text).map_err(|e| {
        format!("invalid password hash ({e}): expected $argon2id$..., $2b$..., $pbkdf2-sha256$... or pbkdf2_sha256$..., as printed by `gateway hash-password`")
    })?;
    if parsed.salt.is_none() || parsed.hash.is_none() {
        return Err("invalid password hash: no salt or no hash".to_string());
    }
    match parsed.algorithm.as_str() {
        "argon2id" | "argon2i" | "argon2d" => check_argon2(&parsed).map(|()| Kind::Argon2),
        "pbkdf2-sha256" | "pbkdf2-sha512" => check_pbkdf2(&parsed).map(|()| Kind::Pbkdf2),
        other => Err(format!(
            "unsupported password hash `${other}$`: argon2id, argon2i, argon2d, bcrypt ($2b$), pbkdf2-sha256, pbkdf2-sha512 and Django's pbkdf2_sha256 are read"
        )),
    }
}

/// Django's PBKDF2 form after its `pbkdf2_sha256$`.
fn parse_django(rest: &str) -> Result<Kind, String> {
    use base64::Engine as _;
    let hint = "invalid Django password hash: expected pbkdf2_sha256$ROUNDS$SALT$BASE64";
    let mut parts = rest.split('$');
    let (Some(rounds), Some(salt), Some(hash), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(hint.to_string());
    };
    let rounds: std::num::NonZeroU32 = rounds.parse().map_err(|_| hint.to_string())?;
    check_rounds(rounds.get())?;
    let hash = base64::engine::general_purpose::STANDARD
        .decode(hash)
        .map_err(|_| hint.to_string())?;
    if salt.is_empty() || hash.len() != 32 {
        return Err(hint.to_string());
    }
    Ok(Kind::Django {
        rounds,
        salt: salt.as_bytes().to_vec(),
        hash,
    })
}

fn check_rounds(rounds: u32) -> Result<(), String> {
    if !(PBKDF2_MIN_ROUNDS..=PBKDF2_MAX_ROUNDS).contains(&rounds) {
        return Err(format!(
            "PBKDF2 with {rounds} rounds is out of bounds ({PBKDF2_MIN_ROUNDS} to {PBKDF2_MAX_ROUNDS})"
        ));
    }
    Ok(())
}

fn check_argon2(parsed: &PasswordHash<'_>) -> Result<(), String> {
    let params =
        argon2::Params::try_from(parsed).map_err(|e| format!("invalid argon2 hash: {e}"))?;
    let work = u64::from(params.m_cost()) * u64::from(params.t_cost());
    if params.m_cost() > ARGON2_MAX_MEMORY_KIB
        || work > ARGON2_MAX_WORK
        || params.p_cost() > ARGON2_MAX_LANES
    {
        return Err(format!(
            "argon2 cost m={},t={},p={} is over the limits (m at most {ARGON2_MAX_MEMORY_KIB} KiB, m times t at most {ARGON2_MAX_WORK} KiB: 256 MiB once or 64 MiB three times; p at most {ARGON2_MAX_LANES})",
            params.m_cost(),
            params.t_cost(),
            params.p_cost()
        ));
    }
    let mut decoded = [0u8; 64];
    let salt_len = parsed
        .salt
        .and_then(|salt| salt.decode_b64(&mut decoded).ok().map(<[u8]>::len))
        .unwrap_or(0);
    if salt_len < ARGON2_MIN_SALT {
        return Err(format!(
            "invalid argon2 hash: its salt must be at least {ARGON2_MIN_SALT} bytes"
        ));
    }
    Ok(())
}

fn check_pbkdf2(parsed: &PasswordHash<'_>) -> Result<(), String> {
    let params =
        pbkdf2::Params::try_from(parsed).map_err(|e| format!("invalid PBKDF2 hash: {e}"))?;
    check_rounds(params.rounds)?;
    if parsed.hash.map(|hash| hash.len()) != Some(params.output_length) {
        return Err(format!(
            "invalid PBKDF2 hash: its hash is not {} bytes long (the `l` parameter, 32 when absent)",
            params.output_length
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
    /// Nothing was checked: too many checks wait, or this one waited too
    /// long for a CPU.
    Busy,
}

/// Why a credential was not remembered (shared by concurrent checks of it).
#[derive(Debug)]
enum Refused {
    Invalid,
    Busy,
}

/// What every config's password checks share: the CPUs hashes may use, the
/// queue for them, and the verified credentials.
pub struct Checker {
    verified: moka::future::Cache<[u8; 32], ()>,
    /// `None` without system randomness: nothing is remembered then.
    remember_key: Option<hmac::Key>,
    decoy_choice: std::collections::hash_map::RandomState,
    cpus: Arc<tokio::sync::Semaphore>,
    /// Checks waiting or running now.
    waiting: Arc<AtomicUsize>,
    max_waiting: usize,
    max_wait: Duration,
}

/// The process's checker.
static CHECKER: LazyLock<Checker> = LazyLock::new(|| {
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    Checker::new((cpus / 2).max(1), MAX_WAITING, MAX_WAIT)
});

impl Checker {
    /// A checker hashing on `cpus` threads at once, with `max_waiting` more
    /// waiting at most `max_wait` each.
    pub fn new(cpus: usize, max_waiting: usize, max_wait: Duration) -> Self {
        let mut secret = [0u8; 32];
        let remember_key = aws_lc_rs::rand::fill(&mut secret)
            .ok()
            .map(|()| hmac::Key::new(hmac::HMAC_SHA256, &secret));
        if remember_key.is_none() {
            tracing::error!(
                "no system randomness: verified basic-auth credentials are not remembered"
            );
        }
        Checker {
            verified: moka::future::Cache::builder()
                .max_capacity(MAX_VERIFIED)
                .time_to_live(VERIFIED_TTL)
                .build(),
            remember_key,
            decoy_choice: std::collections::hash_map::RandomState::new(),
            cpus: Arc::new(tokio::sync::Semaphore::new(cpus)),
            waiting: Arc::new(AtomicUsize::new(0)),
            max_waiting: max_waiting + cpus,
            max_wait,
        }
    }

    /// Checks `password` against `stored`: remembered, or hashed in turn.
    /// Concurrent checks of the same credential share one hash.
    async fn check(&self, username: &str, stored: &Arc<Stored>, password: &str) -> Check3 {
        let Some(key) = self.remember_as(username, stored, password) else {
            return self.hash_in_turn(stored.clone(), password).await.into();
        };
        let computed = AtomicBool::new(false);
        let hashed = async {
            computed.store(true, Ordering::Relaxed);
            match self.hash_in_turn(stored.clone(), password).await {
                Some(true) => Ok(()),
                Some(false) => Err(Refused::Invalid),
                None => Err(Refused::Busy),
            }
        };
        let outcome = self.verified.try_get_with(key, hashed).await;
        let computed = computed.load(Ordering::Relaxed);
        match outcome {
            Ok(()) if computed => Check3::Valid,
            Ok(()) => Check3::Remembered,
            Err(refused) => match *refused {
                Refused::Invalid => Check3::Invalid,
                Refused::Busy => Check3::Busy,
            },
        }
    }

    /// Runs one hash check on a blocking thread when a CPU is free; `None`
    /// when too many wait already or the turn does not come in time.
    async fn hash_in_turn(&self, stored: Arc<Stored>, password: &str) -> Option<bool> {
        if self.waiting.fetch_add(1, Ordering::AcqRel) >= self.max_waiting {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        let _waiting = Leave(self.waiting.clone());
        let turn = self.cpus.clone().acquire_owned();
        let permit = tokio::time::timeout(self.max_wait, turn).await.ok()?.ok()?;
        let password = password.as_bytes().to_vec();
        let check = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            stored.verify(&password)
        });
        match check.await {
            Ok(matched) => Some(matched),
            Err(e) => {
                tracing::error!("a password check failed: {e}");
                Some(false)
            }
        }
    }

    /// The key a verified credential is remembered under: the user name
    /// (with its length, so no two pairs run together), the stored hash
    /// (a changed password is another key) and the password.
    fn remember_as(&self, username: &str, stored: &Stored, password: &str) -> Option<[u8; 32]> {
        let mut context = hmac::Context::with_key(self.remember_key.as_ref()?);
        for part in [username, stored.text.as_str()] {
            let length = u32::try_from(part.len()).unwrap_or(u32::MAX);
            context.update(&length.to_be_bytes());
            context.update(part.as_bytes());
        }
        context.update(password.as_bytes());
        let mut out = [0u8; 32];
        out.copy_from_slice(context.sign().as_ref());
        Some(out)
    }
}

/// A check's outcome as counted.
#[derive(Debug, PartialEq, Eq)]
enum Check3 {
    Remembered,
    Valid,
    Invalid,
    Busy,
}

impl From<Option<bool>> for Check3 {
    fn from(matched: Option<bool>) -> Self {
        match matched {
            Some(true) => Check3::Valid,
            Some(false) => Check3::Invalid,
            None => Check3::Busy,
        }
    }
}

/// Every consumer's passwords, by user name, and the decoys unknown names
/// are checked against.
#[derive(Default)]
pub struct Passwords {
    by_user: HashMap<String, (Arc<Stored>, Arc<Consumer>)>,
    decoys: Vec<Arc<Stored>>,
}

impl std::fmt::Debug for Passwords {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Passwords")
            .field("users", &self.by_user.len())
            .finish_non_exhaustive()
    }
}

/// Whether `name` can be a basic-auth user name (RFC 7617: no colon).
pub fn check_username(name: &str) -> Result<(), String> {
    if !password_checkable(name, "-") {
        return Err(format!(
            "a user name must be 1 to {PASSWORD_MAX_USERNAME} bytes without colons or control characters"
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
                if clear.is_empty() || clear.len() > PASSWORD_MAX_LENGTH {
                    return Err(format!(
                        "a password must be 1 to {PASSWORD_MAX_LENGTH} bytes"
                    ));
                }
                tracing::warn!(
                    "a password is written in clear in the config; use a hash from `gateway hash-password` outside local development"
                );
                Stored::plain(clear)
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
        if stored.is_hash() {
            self.decoys.push(stored.clone());
        }
        self.by_user
            .insert(username.to_string(), (stored, consumer.clone()));
        Ok(())
    }

    /// Whether any consumer has a password.
    pub fn is_empty(&self) -> bool {
        self.by_user.is_empty()
    }

    /// Checks `username` and `password` with the process's [`Checker`].
    pub async fn verify(&self, username: &str, password: &str) -> Check {
        self.verify_with(&CHECKER, username, password).await
    }

    /// Checks `username` and `password` with `checker`.
    pub async fn verify_with(&self, checker: &Checker, username: &str, password: &str) -> Check {
        if self.by_user.is_empty() || !password_checkable(username, password) {
            count("invalid");
            return Check::Invalid;
        }
        let (stored, owner) = match self.by_user.get(username) {
            Some((stored, consumer)) => (stored, Some(consumer)),
            None => match self.decoy_for(checker, username) {
                Some(decoy) => (decoy, None),
                None => {
                    count("invalid");
                    return Check::Invalid;
                }
            },
        };
        let outcome = checker.check(username, stored, password).await;
        match (outcome, owner) {
            (Check3::Busy, _) => {
                count("busy");
                Check::Busy
            }
            (Check3::Remembered, Some(consumer)) => {
                count("remembered");
                Check::Valid(consumer.clone())
            }
            (Check3::Valid, Some(consumer)) => {
                count("valid");
                Check::Valid(consumer.clone())
            }
            _ => {
                count("invalid");
                Check::Invalid
            }
        }
    }

    /// The stored hash an unknown `username` is checked against: always
    /// the same one for a name, chosen by a keyed hash of it.
    fn decoy_for(&self, checker: &Checker, username: &str) -> Option<&Arc<Stored>> {
        let len = u64::try_from(self.decoys.len()).ok().filter(|&n| n > 0)?;
        let pick = checker.decoy_choice.hash_one(username) % len;
        self.decoys.get(usize::try_from(pick).ok()?)
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
    if password.is_empty() || password.len() > PASSWORD_MAX_LENGTH {
        return Err(format!(
            "a password must be 1 to {PASSWORD_MAX_LENGTH} bytes"
        ));
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

    fn parsed(text: &str) -> Stored {
        Stored::parse_hash(text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn each_algorithm_round_trips_and_refuses_a_wrong_password() {
        for algorithm in [
            Algorithm::Argon2id,
            Algorithm::Bcrypt,
            Algorithm::Pbkdf2Sha256,
        ] {
            let hash = hash_password("wonderland-secret-1", algorithm).unwrap_or_default();
            let stored = parsed(&hash);
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
        let argon2 =
            parsed("$argon2i$v=19$m=65536,t=2,p=4$c29tZXNhbHQ$RdescudvJCsgt3ub+b+dWRWJTmaaJObG");
        assert!(argon2.verify(b"password"));
        assert!(!argon2.verify(b"passwore"));
        let bcrypt = parsed("$2a$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW");
        assert!(bcrypt.verify(b"U*U"));
        assert!(!bcrypt.verify(b"U*V"));
        let django =
            parsed("pbkdf2_sha256$1000000$seasalt$r1uLUxoxpP2Ued/qxvmje7UH9PUJBkRrvf9gGPL7Cps=");
        assert!(django.verify("lètmein".as_bytes()));
        assert!(!django.verify(b"letmein"));
    }

    #[test]
    fn a_bcrypt_password_of_72_bytes_or_more_never_matches() {
        let long = "x".repeat(80);
        let hash = hash_password(&"x".repeat(71), Algorithm::Bcrypt).unwrap_or_default();
        let stored = parsed(&hash);
        assert!(stored.verify("x".repeat(71).as_bytes()));
        // Its first 72 bytes are the stored password's and one more byte.
        assert!(!stored.verify(long.as_bytes()));
        assert!(hash_password(&long, Algorithm::Bcrypt).is_err());
    }

    #[test]
    fn hashes_out_of_bounds_or_that_could_never_match_are_refused() {
        let refused = |text: &str, says: &str| match Stored::parse_hash(text) {
            Ok(_) => panic!("{text} was accepted"),
            Err(e) => assert!(e.contains(says), "{text}: {e}"),
        };
        let argon2 = "$c29tZXNhbHQ$RdescudvJCsgt3ub+b+dWRWJTmaaJObG";
        refused(
            &format!("$argon2id$v=19$m=1048576,t=1,p=1{argon2}"),
            "over the limits",
        );
        refused(
            &format!("$argon2id$v=19$m=131072,t=4,p=1{argon2}"),
            "over the limits",
        );
        refused(
            "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$RdescudvJCsgt3ub+b+dWRWJTmaaJObG",
            "salt",
        );
        refused(
            "$2b$15$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW",
            "over the limit",
        );
        refused(
            "$2x$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW",
            "version",
        );
        refused(&format!("$scrypt$ln=16,r=8,p=1{argon2}"), "unsupported");
        refused("secret", "invalid password hash");
        let pbkdf2 = "$c29tZXNhbHQ$RdescudvJCsgt3ub+b+dWRWJTmaaJObG";
        refused(&format!("$pbkdf2-sha256$i=100{pbkdf2}"), "out of bounds");
        refused(&format!("$pbkdf2-sha512$i=600000{pbkdf2}"), "not 32 bytes");
        let django = "r1uLUxoxpP2Ued/qxvmje7UH9PUJBkRrvf9gGPL7Cps=";
        refused(
            &format!("pbkdf2_sha256$9000000$salt${django}"),
            "out of bounds",
        );
        refused(
            &format!("pbkdf2_sha256$1000000$salt$x${django}"),
            "expected",
        );
        refused("pbkdf2_sha256$1000000$salt$not base64!", "expected");
        refused("pbkdf2_sha256$1000000$salt$c2hvcnQ=", "expected");
        refused(&format!("pbkdf2_sha256$1000000$${django}"), "expected");
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

    fn with_hash(password: &str) -> Passwords {
        let mut passwords = Passwords::default();
        let hash = hash_password(password, Algorithm::Pbkdf2Sha256).unwrap_or_default();
        assert!(passwords.add("alice", Some(&hash), None, &alice()).is_ok());
        passwords
    }

    #[tokio::test]
    async fn a_verified_credential_is_remembered_and_a_changed_password_is_not() {
        let checker = Checker::new(1, 4, MAX_WAIT);
        let passwords = with_hash("pw-alice");
        let check = |passwords: &Passwords, password: &str| {
            let stored = passwords.by_user.get("alice").map(|(s, _)| s.clone());
            let checker = &checker;
            let password = password.to_string();
            async move {
                match stored {
                    Some(stored) => checker.check("alice", &stored, &password).await,
                    None => Check3::Busy,
                }
            }
        };
        assert_eq!(check(&passwords, "pw-alice").await, Check3::Valid);
        assert_eq!(check(&passwords, "pw-alice").await, Check3::Remembered);
        assert_eq!(check(&passwords, "pw-alicf").await, Check3::Invalid);
        assert_eq!(check(&passwords, "pw-alicf").await, Check3::Invalid);
        // The same password under a new hash (a new config): checked again.
        let rehashed = with_hash("pw-alice");
        assert_eq!(check(&rehashed, "pw-alice").await, Check3::Valid);
        assert_eq!(
            rehashed.verify_with(&checker, "alice", "pw-alice").await,
            Check::Valid(alice())
        );
        assert_eq!(
            rehashed.verify_with(&checker, "mallory", "pw-alice").await,
            Check::Invalid
        );
    }

    #[tokio::test]
    async fn a_check_is_busy_when_too_many_wait_or_its_turn_is_late() {
        let passwords = with_hash("pw-alice");
        // One CPU, held; nobody may wait: busy at once.
        let full = Checker::new(1, 0, MAX_WAIT);
        let held = full.cpus.clone().acquire_owned().await;
        assert_eq!(
            passwords.verify_with(&full, "alice", "pw-alice").await,
            Check::Busy
        );
        // Room to wait, but the CPU stays held past the wait.
        let late = Checker::new(1, 4, Duration::from_millis(50));
        let _held_too = late.cpus.clone().acquire_owned().await;
        assert_eq!(
            passwords.verify_with(&late, "alice", "pw-alice").await,
            Check::Busy
        );
        assert_eq!(late.waiting.load(Ordering::Acquire), 0);
        drop(held);
        assert_eq!(
            passwords.verify_with(&full, "alice", "pw-alice").await,
            Check::Valid(alice())
        );
    }

    #[tokio::test]
    async fn an_unknown_name_always_meets_the_same_decoy() {
        let checker = Checker::new(1, 4, MAX_WAIT);
        let mut passwords = Passwords::default();
        for (name, algorithm) in [("a", Algorithm::Pbkdf2Sha256), ("b", Algorithm::Bcrypt)] {
            let hash = hash_password("pw", algorithm).unwrap_or_default();
            assert!(passwords.add(name, Some(&hash), None, &alice()).is_ok());
        }
        let mut seen = std::collections::HashSet::new();
        for i in 0..64 {
            let name = format!("nobody-{i}");
            let first = passwords.decoy_for(&checker, &name).map(|s| s.text.clone());
            assert_eq!(
                first,
                passwords.decoy_for(&checker, &name).map(|s| s.text.clone())
            );
            seen.extend(first);
        }
        // Both stored hashes serve as decoys.
        assert_eq!(seen.len(), 2);
    }
}
