//! `[identity]`, `[[consumers]]` and `[usage_plans]`: who calls the gateway and
//! under which plan.

use super::source::Source;
use super::units::Duration;
pub use plugin_shared::rate_limit::{Quota, QuotaPeriod};
use serde::Deserialize;
use serde::de::{self, Deserializer};
use std::collections::BTreeMap;
use toml::Spanned;

/// `[identity]`: settings shared by every consumer.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityConfig {
    /// The secret of the keyed hash (HMAC-SHA256) API keys are stored under.
    /// Needed when any key is given as `hash`.
    pub key_hash_secret: Option<Spanned<Secret>>,
}

/// A secret value: inline text (discouraged, warned about), or read from an
/// environment variable or a file when the config loads.
#[derive(Debug, Clone)]
pub enum Secret {
    /// `"text"`: inline in the config file.
    Inline(String),
    /// `{ env = "NAME" }`.
    Env {
        /// The variable's name.
        env: String,
    },
    /// `{ file = "path" }`, relative to the config file; one trailing newline is
    /// dropped.
    File {
        /// The file's path.
        file: String,
    },
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let hint = "expected a string, { env = \"NAME\" } or { file = \"PATH\" }";
        match toml::Value::deserialize(deserializer)? {
            toml::Value::String(text) => Ok(Secret::Inline(text)),
            toml::Value::Table(table) if table.len() == 1 => match table.into_iter().next() {
                Some((key, toml::Value::String(env))) if key == "env" => Ok(Secret::Env { env }),
                Some((key, toml::Value::String(file))) if key == "file" => {
                    Ok(Secret::File { file })
                }
                _ => Err(de::Error::custom(format!("invalid secret: {hint}"))),
            },
            _ => Err(de::Error::custom(format!("invalid secret: {hint}"))),
        }
    }
}

/// `[[consumers]]`: one caller of the API.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsumerConfig {
    /// Unique; forwarded upstream and used as the rate-limiting identity.
    pub name: Spanned<String>,
    /// Free-form group names (for authorization plugins and headers).
    #[serde(default)]
    pub groups: Vec<Spanned<String>>,
    /// The usage plan the consumer is on.
    pub plan: Option<Spanned<String>>,
    /// Free-form string metadata, passed to plugins.
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    /// The consumer's API keys.
    #[serde(default)]
    pub keys: Vec<Spanned<KeyConfig>>,
    /// The consumer's basic-auth credentials.
    #[serde(default)]
    pub passwords: Vec<Spanned<PasswordConfig>>,
    /// The consumer's AWS-style access keys, for Signature Version 4
    /// (`aws-sigv4`).
    #[serde(default)]
    pub access_keys: Vec<Spanned<AccessKeyConfig>>,
}

/// One basic-auth credential of a consumer: a user name and exactly one of
/// `hash` and `plaintext`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PasswordConfig {
    /// The user name; the consumer's name when absent.
    pub username: Option<String>,
    /// The password's hash, as printed by `gateway hash-password`
    /// (`$argon2id$...`), or a bcrypt (`$2b$...`) or PBKDF2
    /// (`$pbkdf2-sha256$...`, Django's `pbkdf2_sha256$...`) hash from
    /// another system.
    pub hash: Option<String>,
    /// The password in clear: for local development only; logged as a warning.
    pub plaintext: Option<String>,
}

/// One access key of a consumer: an id and its secret, for AWS Signature
/// Version 4. The secret stays in the gateway; plugins only ask whether a
/// signature is right.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessKeyConfig {
    /// The access key id (`AKIA...`): 8 to 128 of `A-Z` and `0-9`, unique
    /// across consumers.
    pub id: Spanned<String>,
    /// The secret access key: inline (warned about), `{ env = "NAME" }` or
    /// `{ file = "path" }`.
    pub secret: Spanned<Secret>,
}

/// One API key of a consumer. Exactly one source.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyConfig {
    /// `hmac-sha256:<hex>`, as printed by `gateway hash-key`.
    pub hash: Option<String>,
    /// The key in an environment variable.
    pub env: Option<String>,
    /// The key in a file (relative to the config file).
    pub file: Option<String>,
    /// The key in clear: for local development only; logged as a warning.
    pub plaintext: Option<String>,
}

/// `[usage_plans.NAME]`: a rate and a quota, as in AWS API Gateway. The
/// rate-limiting plugin enforces them for the consumers on the plan.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsagePlanConfig {
    /// Steady request rate, for example `"100/s"` or `"6000/minute"`.
    pub rate: Option<Rate>,
    /// Requests that may arrive at once above the steady rate (defaults to the
    /// rate's count).
    pub burst: Option<u32>,
    /// Requests per calendar period: `"10000/day"`, `"50000/week"`, `"1000000/month"`.
    #[serde(default, deserialize_with = "quota")]
    pub quota: Option<Quota>,
}

/// A number of requests per a period: `"100/s"`, `"10/minute"`, `"5/2s"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Requests per period.
    pub count: u32,
    /// The period.
    pub per: std::time::Duration,
}

impl Rate {
    /// Parses `COUNT/PERIOD` where the period is a unit name (`second`, `s`,
    /// `minute`, `min`, `hour`, `h`, `day`, `d`) or a duration (`10s`).
    pub fn parse(text: &str) -> Result<Self, String> {
        let hint = || {
            format!(
                "invalid rate `{text}`: expected COUNT/PERIOD, for example \"100/s\", \"6000/minute\" or \"5/10s\""
            )
        };
        let (count, period): (u32, &str) = count_and_period(text, &hint)?;
        if count == 0 {
            return Err(format!(
                "invalid rate `{text}`: the count must be at least 1"
            ));
        }
        let per = match period {
            "s" | "sec" | "second" => std::time::Duration::from_secs(1),
            "m" | "min" | "minute" => std::time::Duration::from_secs(60),
            "h" | "hour" => std::time::Duration::from_secs(3600),
            "d" | "day" => std::time::Duration::from_secs(86_400),
            other => Duration::parse(other).map_err(|_| hint())?.0,
        };
        if per.is_zero() {
            return Err(hint());
        }
        Ok(Rate { count, per })
    }
}

impl<'de> Deserialize<'de> for Rate {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Rate::parse(&String::deserialize(deserializer)?).map_err(de::Error::custom)
    }
}

/// `COUNT/PERIOD` split at the slash, the count parsed and the period
/// trimmed; `hint` says what was expected.
fn count_and_period<'t, N: std::str::FromStr>(
    text: &'t str,
    hint: &dyn Fn() -> String,
) -> Result<(N, &'t str), String> {
    let (count, period) = text.split_once('/').ok_or_else(hint)?;
    let count = count.trim().parse().map_err(|_| hint())?;
    Ok((count, period.trim()))
}

/// Parses a quota: `LIMIT/day`, `LIMIT/week` or `LIMIT/month`.
pub fn parse_quota(text: &str) -> Result<Quota, String> {
    let hint = || {
        format!(
            "invalid quota `{text}`: expected LIMIT/day, LIMIT/week or LIMIT/month, for example \"10000/day\""
        )
    };
    let (limit, period): (u64, &str) = count_and_period(text, &hint)?;
    let period = match period {
        "day" => QuotaPeriod::Day,
        "week" => QuotaPeriod::Week,
        "month" => QuotaPeriod::Month,
        _ => return Err(hint()),
    };
    if limit == 0 {
        return Err(format!(
            "invalid quota `{text}`: the limit must be at least 1"
        ));
    }
    Ok(Quota { limit, period })
}

fn quota<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Quota>, D::Error> {
    parse_quota(&String::deserialize(deserializer)?)
        .map(Some)
        .map_err(de::Error::custom)
}

/// The value of environment variable `name`.
pub fn read_env(name: &str) -> Result<String, String> {
    std::env::var(name).map_err(|_| format!("environment variable `{name}` is not set"))
}

/// The text of `file` (relative to the config file), without one trailing
/// newline.
pub fn read_file(source: &Source, file: &str) -> Result<String, String> {
    let path = source.base_dir().join(file);
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read `{}`: {e}", path.display()))?;
    Ok(text.strip_suffix('\n').unwrap_or(&text).to_string())
}

/// The bytes of `secret`, read from wherever it lives.
pub fn resolve_secret(source: &Source, secret: &Spanned<Secret>) -> Result<Vec<u8>, String> {
    match secret.get_ref() {
        Secret::Inline(text) => {
            tracing::warn!(
                "a secret is written inline in the config; prefer {{ env = \"...\" }} or {{ file = \"...\" }}"
            );
            Ok(text.as_bytes().to_vec())
        }
        Secret::Env { env } => read_env(env).map(String::into_bytes),
        Secret::File { file } => read_file(source, file).map(String::into_bytes),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates() {
        assert_eq!(
            Rate::parse("100/s"),
            Ok(Rate {
                count: 100,
                per: std::time::Duration::from_secs(1)
            })
        );
        assert_eq!(
            Rate::parse("5/10s").map(|r| r.per),
            Ok(std::time::Duration::from_secs(10))
        );
        assert_eq!(Rate::parse("6000/minute").map(|r| r.count), Ok(6000));
        assert!(Rate::parse("0/s").is_err());
        assert!(Rate::parse("100").is_err());
        assert!(Rate::parse("100/fortnight").is_err());
        assert!(Rate::parse("x/s").is_err());
    }

    #[test]
    fn quotas() {
        assert_eq!(
            parse_quota("10000/month"),
            Ok(Quota {
                limit: 10_000,
                period: QuotaPeriod::Month
            })
        );
        assert!(parse_quota("10/hour").is_err());
        assert!(parse_quota("-1/day").is_err());
        assert!(parse_quota("0/day").is_err());
    }
}
