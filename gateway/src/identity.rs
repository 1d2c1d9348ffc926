//! Consumers and their API keys, as the `consumers` host interface serves them.
//!
//! Keys are held only as keyed hashes: HMAC-SHA256 under `identity.key_hash_secret`
//! (or, when no key is configured by hash, under a random per-process secret).
//! A presented key is hashed once and looked up by its digest, so the cost does
//! not grow with the number of consumers. The lookup compares digests, not keys:
//! timing can at most reveal bytes of an HMAC output the caller cannot compute,
//! which says nothing about any stored key.
//!
//! Access keys (`access_keys`, for AWS Signature Version 4) are the
//! exception: a signature can only be checked with the secret itself, so the
//! secret is held here, by access key id, and never leaves the host. A plugin
//! hands [`Consumers::verify_sigv4`] the string it built and the signature the
//! client sent; the host derives the signing key, compares in constant time,
//! and answers with the consumer or nothing.

pub mod passwords;

use crate::config::{
    AccessKeyConfig, Config, ConfigError, KeyConfig, Source, read_env, read_file, resolve_secret,
};
use aws_lc_rs::hmac;
pub use plugin_shared::consumers::UsagePlan;
use plugin_shared::rate_limit::Policy;
use plugin_shared::sigv4;
use std::collections::HashMap;
use std::sync::Arc;
use toml::Spanned;

/// The prefix of a stored key hash.
pub const HASH_PREFIX: &str = "hmac-sha256:";

/// A consumer as plugins see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consumer {
    /// Unique name.
    pub name: String,
    /// Group names.
    pub groups: Vec<String>,
    /// Usage plan, if any.
    pub plan: Option<String>,
    /// Free-form metadata.
    pub metadata: Vec<(String, String)>,
}

/// Every consumer of one config, indexed by name and by key digest, and the
/// usage plans.
#[derive(Default)]
pub struct Consumers {
    by_name: HashMap<String, Arc<Consumer>>,
    plans: HashMap<String, UsagePlan>,
    by_key: HashMap<[u8; 32], Arc<Consumer>>,
    key: Option<hmac::Key>,
    passwords: passwords::Passwords,
    by_access_key: HashMap<String, AccessKey>,
}

/// A secret access key and its consumer.
struct AccessKey {
    consumer: Arc<Consumer>,
    secret: Vec<u8>,
}

/// `identity.key_hash_secret`, read and checked (at least 16 bytes).
fn key_hash_secret(source: &Source, config: &Config) -> Result<Option<Vec<u8>>, ConfigError> {
    let Some(spanned) = &config.identity.key_hash_secret else {
        return Ok(None);
    };
    let secret = resolve_secret(source, spanned)
        .map_err(|e| source.error(spanned.span(), format!("identity.key_hash_secret: {e}")))?;
    if secret.len() < 16 {
        return Err(source.error(
            spanned.span(),
            "identity.key_hash_secret must be at least 16 bytes; use 32 random bytes, for example `openssl rand -hex 32`",
        ));
    }
    Ok(Some(secret))
}

/// A consumer's name and groups, as the config may give them.
fn check_name_and_groups(
    source: &Source,
    entry: &crate::config::ConsumerConfig,
) -> Result<(), ConfigError> {
    let name = entry.name.get_ref();
    if name.is_empty() || name.len() > 128 || name.chars().any(char::is_control) {
        return Err(source.error(
            entry.name.span(),
            "a consumer name must be 1 to 128 printable characters",
        ));
    }
    // Groups travel comma-separated (context, x-consumer-groups): a comma in
    // one would read as two.
    for group in &entry.groups {
        let text = group.get_ref();
        if text.is_empty()
            || text.len() > 128
            || text.trim() != text
            || text.chars().any(|c| c == ',' || c.is_control())
        {
            return Err(source.error(
                group.span(),
                format!("consumer `{name}`: group `{text}` must be 1 to 128 printable characters, without commas or surrounding spaces"),
            ));
        }
    }
    Ok(())
}

/// A consumer's plan, which must be one of `[usage_plans]`.
fn check_plan(
    source: &Source,
    config: &Config,
    entry: &crate::config::ConsumerConfig,
) -> Result<(), ConfigError> {
    let name = entry.name.get_ref();
    if let Some(plan) = &entry.plan
        && !config.usage_plans.contains_key(plan.get_ref())
    {
        let known: Vec<&str> = config.usage_plans.keys().map(String::as_str).collect();
        let known = if known.is_empty() {
            "none".to_string()
        } else {
            known.join(", ")
        };
        return Err(source.error(
            plan.span(),
            format!(
                "consumer `{name}`: unknown usage plan `{}`; plans defined: {known}",
                plan.get_ref()
            ),
        ));
    }
    Ok(())
}

impl Consumers {
    /// Checks and indexes `config.consumers`, reading keys from the environment
    /// and files as configured.
    pub fn build(source: &Source, config: &Config) -> Result<Self, ConfigError> {
        let secret = key_hash_secret(source, config)?;
        let key = match &secret {
            Some(secret) => hmac::Key::new(hmac::HMAC_SHA256, secret),
            None => {
                let mut random = [0u8; 32];
                aws_lc_rs::rand::fill(&mut random).map_err(|_| ConfigError::Unreadable {
                    file: source.path.display().to_string(),
                    message: "no system randomness for the API key hash".into(),
                })?;
                hmac::Key::new(hmac::HMAC_SHA256, &random)
            }
        };
        let mut consumers = Consumers {
            key: Some(key),
            ..Consumers::default()
        };
        for (name, plan) in &config.usage_plans {
            let plan = plan.get_ref();
            let rate = plan.rate.map(|rate| Policy {
                limit: rate.count,
                period: rate.per,
                burst: plan.burst.unwrap_or(rate.count).max(1),
            });
            let plan = UsagePlan {
                name: name.clone(),
                rate,
                quota: plan.quota,
            };
            consumers.plans.insert(name.clone(), plan);
        }
        for spanned in &config.consumers {
            consumers.add(source, config, spanned.get_ref(), secret.is_some())?;
        }
        Ok(consumers)
    }

    /// Checks one `[[consumers]]` entry and indexes it by name and by each of
    /// its keys' digests.
    fn add(
        &mut self,
        source: &Source,
        config: &Config,
        entry: &crate::config::ConsumerConfig,
        keyed: bool,
    ) -> Result<(), ConfigError> {
        let name = entry.name.get_ref();
        check_name_and_groups(source, entry)?;
        if self.by_name.contains_key(name) {
            return Err(source.error(entry.name.span(), format!("duplicate consumer `{name}`")));
        }
        check_plan(source, config, entry)?;
        let consumer = Arc::new(Consumer {
            name: name.clone(),
            groups: entry.groups.iter().map(|g| g.get_ref().clone()).collect(),
            plan: entry.plan.as_ref().map(|p| p.get_ref().clone()),
            metadata: entry
                .metadata
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        });
        for key in &entry.keys {
            let digest = self
                .key_digest(source, key, keyed)
                .map_err(|e| source.error(key.span(), format!("consumer `{name}`: {e}")))?;
            if let Some(owner) = self.by_key.get(&digest) {
                return Err(source.error(
                    key.span(),
                    format!(
                        "consumer `{name}`: this key is already a key of consumer `{}`; keys must be unique",
                        owner.name
                    ),
                ));
            }
            self.by_key.insert(digest, consumer.clone());
        }
        for password in &entry.passwords {
            let given = password.get_ref();
            let username = given.username.as_deref().unwrap_or(name);
            self.passwords
                .add(
                    username,
                    given.hash.as_deref(),
                    given.plaintext.as_deref(),
                    &consumer,
                )
                .map_err(|e| source.error(password.span(), format!("consumer `{name}`: {e}")))?;
        }
        for access_key in &entry.access_keys {
            self.add_access_key(source, access_key, &consumer)?;
        }
        self.by_name.insert(name.clone(), consumer);
        Ok(())
    }

    /// Checks one of `consumer`'s access keys (id and secret) and indexes it
    /// by id, which must be new.
    fn add_access_key(
        &mut self,
        source: &Source,
        spanned: &Spanned<AccessKeyConfig>,
        consumer: &Arc<Consumer>,
    ) -> Result<(), ConfigError> {
        let name = &consumer.name;
        let access_key = spanned.get_ref();
        let id = access_key.id.get_ref();
        sigv4::check_access_key_id(id)
            .map_err(|e| source.error(access_key.id.span(), format!("consumer `{name}`: {e}")))?;
        if let Some(owner) = self.by_access_key.get(id) {
            return Err(source.error(
                access_key.id.span(),
                format!(
                    "consumer `{name}`: access key id `{id}` is already an access key of consumer `{}`; access key ids must be unique",
                    owner.consumer.name
                ),
            ));
        }
        let secret = resolve_secret(source, &access_key.secret)
            .and_then(|secret| sigv4::check_secret(&secret).map(|()| secret))
            .map_err(|e| {
                source.error(
                    access_key.secret.span(),
                    format!("consumer `{name}`: access key `{id}`: {e}"),
                )
            })?;
        self.by_access_key.insert(
            id.clone(),
            AccessKey {
                consumer: consumer.clone(),
                secret,
            },
        );
        Ok(())
    }

    /// The consumer whose access key `access_key_id` signed `string_to_sign`
    /// with `signature` (64 lower-case hex digits), the signing key derived
    /// for `date` (`YYYYMMDD`), `region` and `service` as AWS Signature
    /// Version 4 does. The comparison takes constant time, and an unknown id
    /// is checked against a dummy secret, so that timing tells neither the
    /// signature nor whether the id exists. Inputs out of shape (see
    /// `plugin_shared::sigv4::check_inputs`) find no one.
    pub fn verify_sigv4(
        &self,
        access_key_id: &str,
        scope: (&str, &str, &str),
        string_to_sign: &str,
        signature: &str,
    ) -> Option<Arc<Consumer>> {
        let (date, region, service) = scope;
        let found = self.by_access_key.get(access_key_id);
        let secret = found.map(|key| key.secret.as_slice());
        if sigv4::verify(secret, date, region, service, string_to_sign, signature) {
            found.map(|key| key.consumer.clone())
        } else {
            None
        }
    }

    fn key_digest(
        &self,
        source: &Source,
        key: &Spanned<KeyConfig>,
        has_secret: bool,
    ) -> Result<[u8; 32], String> {
        let key = key.get_ref();
        let given = [&key.hash, &key.env, &key.file, &key.plaintext]
            .iter()
            .filter(|source| source.is_some())
            .count();
        if given != 1 {
            return Err("a key needs exactly one of hash, env, file or plaintext".to_string());
        }
        if let Some(hash) = &key.hash {
            if !has_secret {
                return Err(
                    "a key given by hash needs identity.key_hash_secret, the secret it was hashed with"
                        .to_string(),
                );
            }
            return parse_hash(hash);
        }
        let plain = if let Some(env) = &key.env {
            read_env(env)?
        } else if let Some(file) = &key.file {
            read_file(source, file)?
        } else if let Some(plain) = &key.plaintext {
            tracing::warn!(
                "an API key is written in clear in the config; use hash, env or file outside local development"
            );
            plain.clone()
        } else {
            return Err("a key needs exactly one of hash, env, file or plaintext".to_string());
        };
        check_key_text(&plain)?;
        Ok(self.digest(&plain))
    }

    fn digest(&self, key: &str) -> [u8; 32] {
        let mut out = [0u8; 32];
        if let Some(hmac_key) = &self.key {
            out.copy_from_slice(hmac::sign(hmac_key, key.as_bytes()).as_ref());
        }
        out
    }

    /// The consumer owning `key`.
    pub fn find_by_key(&self, key: &str) -> Option<Arc<Consumer>> {
        if self.by_key.is_empty() || key.is_empty() || key.len() > 4096 {
            return None;
        }
        self.by_key.get(&self.digest(key)).cloned()
    }

    /// Checks a basic-auth credential (see [`passwords`]).
    pub async fn verify_password(&self, username: &str, password: &str) -> passwords::Check {
        self.passwords.verify(username, password).await
    }

    /// The consumer called `name`.
    pub fn get(&self, name: &str) -> Option<Arc<Consumer>> {
        self.by_name.get(name).cloned()
    }

    /// The usage plan called `name`.
    pub fn plan(&self, name: &str) -> Option<&UsagePlan> {
        self.plans.get(name)
    }

    /// How many consumers there are.
    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }
}

/// `hmac-sha256:<hex>` for `key` under `secret`, as stored in config.
pub fn hash_key(secret: &[u8], key: &str) -> String {
    let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, secret), key.as_bytes());
    let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("{HASH_PREFIX}{hex}")
}

fn parse_hash(text: &str) -> Result<[u8; 32], String> {
    let hint = || {
        format!(
            "invalid key hash: expected {HASH_PREFIX} and 64 hex digits, as printed by `gateway hash-key`"
        )
    };
    let hex = text.strip_prefix(HASH_PREFIX).ok_or_else(hint)?;
    if hex.len() != 64 {
        return Err(hint());
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2).ok_or_else(hint)?, 16)
            .map_err(|_| hint())?;
    }
    Ok(out)
}

/// Whether `key` can be an API key: at least 8 characters of visible ASCII
/// without a comma (it travels in a header, where key-auth refuses a comma
/// as two keys joined).
pub fn check_key_text(key: &str) -> Result<(), String> {
    if key.len() < 8 {
        return Err("an API key must be at least 8 characters".to_string());
    }
    if !key.bytes().all(|b| b.is_ascii_graphic() && b != b',') {
        return Err(
            "an API key must be visible ASCII without commas or spaces (it travels in a header)"
                .to_string(),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn build(text: &str) -> Result<Consumers, String> {
        let source = Source::from_text(Path::new("t.toml"), text.to_string());
        let config = source.parse().map_err(|e| e.to_string())?;
        Consumers::build(&source, &config).map_err(|e| e.to_string())
    }

    #[test]
    fn keys_by_plaintext_and_hash_find_their_consumer() {
        let secret = "0123456789abcdef0123456789abcdef";
        let hashed = hash_key(secret.as_bytes(), "bob-key-123456");
        let consumers = build(&format!(
            r#"
[identity]
key_hash_secret = "{secret}"
[[consumers]]
name = "alice"
keys = [{{ plaintext = "alice-key-1234" }}]
[[consumers]]
name = "bob"
groups = ["gold"]
keys = [{{ hash = "{hashed}" }}]
"#
        ));
        let consumers = consumers.unwrap_or_default();
        assert_eq!(consumers.len(), 2);
        assert_eq!(
            consumers
                .find_by_key("alice-key-1234")
                .map(|c| c.name.clone()),
            Some("alice".to_string())
        );
        assert_eq!(
            consumers
                .find_by_key("bob-key-123456")
                .map(|c| c.groups.clone()),
            Some(vec!["gold".to_string()])
        );
        assert!(consumers.find_by_key("bob-key-12345").is_none());
        assert!(consumers.find_by_key("").is_none());
    }

    #[test]
    fn bad_consumers_are_located() {
        let err = build("[[consumers]]\nname = \"a\"\nkeys = [{ hash = \"hmac-sha256:00\" }]\n")
            .err()
            .unwrap_or_default();
        assert!(
            err.starts_with(
                "t.toml:3:9: consumer `a`: a key given by hash needs identity.key_hash_secret"
            ),
            "{err}"
        );
        let err = build("[[consumers]]\nname = \"a\"\nplan = \"gold\"\n")
            .err()
            .unwrap_or_default();
        assert!(
            err.starts_with("t.toml:3:8: consumer `a`: unknown usage plan `gold`"),
            "{err}"
        );
        let err = build("[[consumers]]\nname = \"a\"\n[[consumers]]\nname = \"a\"\n")
            .err()
            .unwrap_or_default();
        assert!(
            err.starts_with("t.toml:4:8: duplicate consumer `a`"),
            "{err}"
        );
        let err = build("[[consumers]]\nname = \"a\"\nkeys = [{ plaintext = \"key-1,key-2\" }]\n")
            .err()
            .unwrap_or_default();
        assert!(
            err.starts_with(
                "t.toml:3:9: consumer `a`: an API key must be visible ASCII without commas"
            ),
            "{err}"
        );
        let err = build("[[consumers]]\nname = \"a\"\nkeys = [{ plaintext = \"same-key-1\" }]\n[[consumers]]\nname = \"b\"\nkeys = [{ plaintext = \"same-key-1\" }]\n").err().unwrap_or_default();
        assert!(err.contains("already a key of consumer `a`"), "{err}");
    }

    /// The IAM `ListUsers` example of the AWS Signature Version 4
    /// documentation: its string to sign and signature.
    const LIST_USERS_STS: &str = "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/iam/aws4_request\nf536975d06c0309214f805bb90ccff089219ecd68b2577efef23edd43b7e1a59";
    const LIST_USERS_SIG: &str = "5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7";

    #[test]
    fn access_keys_verify_the_documented_signature() {
        let consumers = build(
            r#"
[[consumers]]
name = "alice"
access_keys = [{ id = "AKIAIOSFODNN7EXAMPLE", secret = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY" }]
[[consumers]]
name = "bob"
access_keys = [{ id = "AKIAI44QH8DHBEXAMPLE", secret = "je7MtGbClwBF/2Zp9Utk/h3yCo8nvbEXAMPLEKEY" }]
"#,
        )
        .unwrap_or_default();
        let scope = ("20150830", "us-east-1", "iam");
        let found = consumers.verify_sigv4(
            "AKIAIOSFODNN7EXAMPLE",
            scope,
            LIST_USERS_STS,
            LIST_USERS_SIG,
        );
        assert_eq!(found.map(|c| c.name.clone()), Some("alice".to_string()));
        // Bob's secret, an unknown id, another scope or string: no one.
        let sts = LIST_USERS_STS;
        assert!(
            consumers
                .verify_sigv4("AKIAI44QH8DHBEXAMPLE", scope, sts, LIST_USERS_SIG)
                .is_none()
        );
        assert!(
            consumers
                .verify_sigv4("AKIAUNKNOWNEXAMPLE00", scope, sts, LIST_USERS_SIG)
                .is_none()
        );
        let other = ("20150830", "us-east-1", "sts");
        assert!(
            consumers
                .verify_sigv4("AKIAIOSFODNN7EXAMPLE", other, sts, LIST_USERS_SIG)
                .is_none()
        );
        let changed = sts.replace("T123600Z", "T123601Z");
        assert!(
            consumers
                .verify_sigv4("AKIAIOSFODNN7EXAMPLE", scope, &changed, LIST_USERS_SIG)
                .is_none()
        );
        assert!(
            consumers
                .verify_sigv4(
                    "AKIAIOSFODNN7EXAMPLE",
                    ("2015-08-30", "us-east-1", "iam"),
                    sts,
                    LIST_USERS_SIG
                )
                .is_none()
        );
    }

    #[test]
    fn bad_access_keys_are_located() {
        let err = build(
            "[[consumers]]\nname = \"a\"\naccess_keys = [{ id = \"AKID\", secret = \"s\" }]\n",
        )
        .err()
        .unwrap_or_default();
        assert!(
            err.starts_with("t.toml:3:23: consumer `a`: access key id `AKID` must be 8 to 128"),
            "{err}"
        );
        let err = build("[[consumers]]\nname = \"a\"\naccess_keys = [{ id = \"AKIAIOSFODNN7EXAMPLE\", secret = \"\" }]\n")
            .err()
            .unwrap_or_default();
        assert!(
            err.contains(
                "access key `AKIAIOSFODNN7EXAMPLE`: a secret access key must not be empty"
            ),
            "{err}"
        );
        let err = build("[[consumers]]\nname = \"a\"\naccess_keys = [{ id = \"AKIAIOSFODNN7EXAMPLE\", secret = { env = \"GATEWAY_TEST_UNSET_SIGV4\" } }]\n")
            .err()
            .unwrap_or_default();
        assert!(
            err.contains("environment variable `GATEWAY_TEST_UNSET_SIGV4` is not set"),
            "{err}"
        );
        let err = build("[[consumers]]\nname = \"a\"\naccess_keys = [{ id = \"AKIAIOSFODNN7EXAMPLE\", secret = \"x\" }]\n[[consumers]]\nname = \"b\"\naccess_keys = [{ id = \"AKIAIOSFODNN7EXAMPLE\", secret = \"y\" }]\n")
            .err()
            .unwrap_or_default();
        assert!(err.starts_with("t.toml:6:23: consumer `b`: access key id `AKIAIOSFODNN7EXAMPLE` is already an access key of consumer `a`"), "{err}");
    }
}
