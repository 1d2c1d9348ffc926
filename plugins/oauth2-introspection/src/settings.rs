//! The plugin's config, checked: the endpoint and client credentials, the
//! caching times, the token's size cap, what a success writes, and the
//! scope and claim rules.

use plugin_sdk::Config;
use plugin_sdk::authz::{ClaimRuleConfig, Rules, RulesConfig, ScopesConfig};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// The longest `cache_ttl` and `inactive_ttl`, in seconds (a day: `kv`'s cap).
const MAX_TTL: u64 = 86_400;
/// The longest wait for the endpoint (the host's cap).
const MAX_TIMEOUT_MS: u64 = 10_000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    endpoint: String,
    client_id: String,
    client_secret: String,
    #[serde(default = "basic")]
    auth_method: String,
    #[serde(default = "access_token")]
    token_type_hint: String,
    #[serde(default = "default_timeout_ms")]
    timeout_ms: u64,
    #[serde(default = "default_cache_ttl")]
    cache_ttl: u64,
    #[serde(default = "default_inactive_ttl")]
    inactive_ttl: u64,
    #[serde(default = "default_max_token_bytes")]
    max_token_bytes: usize,
    #[serde(default = "sub")]
    consumer_claim: String,
    #[serde(default)]
    claims_to_headers: BTreeMap<String, String>,
    #[serde(default)]
    hide_credentials: bool,
    #[serde(default = "gateway")]
    realm: String,
    #[serde(default)]
    scopes: Option<ScopesConfig>,
    #[serde(default)]
    claim_rules: Vec<ClaimRuleConfig>,
}

fn basic() -> String {
    "client_secret_basic".into()
}
fn access_token() -> String {
    "access_token".into()
}
fn default_timeout_ms() -> u64 {
    2000
}
fn default_cache_ttl() -> u64 {
    300
}
fn default_inactive_ttl() -> u64 {
    10
}
fn default_max_token_bytes() -> usize {
    4096
}
fn sub() -> String {
    "sub".into()
}
fn gateway() -> String {
    "gateway".into()
}

/// The checked settings.
#[derive(Debug)]
pub struct Settings {
    pub endpoint: String,
    pub client_id: String,
    pub client_secret: String,
    /// Credentials in the form body instead of `Authorization: Basic`.
    pub client_secret_post: bool,
    pub token_type_hint: String,
    pub timeout: Duration,
    /// Seconds an active answer is kept, at most (its `exp` may end it sooner).
    pub cache_ttl: u64,
    /// Seconds an inactive answer is kept (0: not kept).
    pub inactive_ttl: u64,
    pub max_token_bytes: usize,
    pub consumer_claim: String,
    /// Answer member -> lower-cased upstream header.
    pub claims_to_headers: BTreeMap<String, String>,
    pub hide_credentials: bool,
    pub realm: String,
}

/// The settings and rules of `config`, or what is wrong with them.
pub fn load(config: &Config) -> Result<(Settings, Rules), String> {
    let raw: Raw = config.parse()?;
    let fail = |message: String| Err(format!("oauth2-introspection: {message}"));
    if let Err(why) = plugin_sdk::http_client::check_url(&raw.endpoint) {
        return fail(format!("endpoint {why}"));
    }
    if raw.client_id.is_empty() || raw.client_secret.is_empty() {
        return fail(
            "client_id and client_secret are required (the secret usually through config_env)"
                .into(),
        );
    }
    let client_secret_post = match raw.auth_method.as_str() {
        "client_secret_basic" => false,
        "client_secret_post" => true,
        other => {
            return fail(format!(
                "auth_method `{other}` must be client_secret_basic or client_secret_post"
            ));
        }
    };
    if raw.timeout_ms == 0 || raw.timeout_ms > MAX_TIMEOUT_MS {
        return fail(format!("timeout_ms must be between 1 and {MAX_TIMEOUT_MS}"));
    }
    if raw.cache_ttl > MAX_TTL || raw.inactive_ttl > MAX_TTL {
        return fail(format!(
            "cache_ttl and inactive_ttl are at most {MAX_TTL} seconds"
        ));
    }
    if raw.max_token_bytes == 0 || raw.max_token_bytes > 65_536 {
        return fail("max_token_bytes must be between 1 and 65536".into());
    }
    if raw.realm.contains(['"', '\\']) || raw.realm.chars().any(char::is_control) {
        return fail("realm cannot hold quotes, backslashes or control characters".into());
    }
    let claims_to_headers = headers(raw.claims_to_headers)?;
    let rules = Rules::new(RulesConfig {
        scopes: raw.scopes,
        claim_rules: raw.claim_rules,
    })
    .map_err(|e| format!("oauth2-introspection: {e}"))?;
    let settings = Settings {
        endpoint: raw.endpoint,
        client_id: raw.client_id,
        client_secret: raw.client_secret,
        client_secret_post,
        token_type_hint: raw.token_type_hint,
        timeout: Duration::from_millis(raw.timeout_ms),
        cache_ttl: raw.cache_ttl,
        inactive_ttl: raw.inactive_ttl,
        max_token_bytes: raw.max_token_bytes,
        consumer_claim: raw.consumer_claim,
        claims_to_headers,
        hide_credentials: raw.hide_credentials,
        realm: raw.realm,
    };
    Ok((settings, rules))
}

/// `claims_to_headers`, each header lower-cased and one a plugin may set
/// upstream (not `host`, hop-by-hop or framing headers), nor the
/// credentials' own (`authorization`, `cookie`).
fn headers(given: BTreeMap<String, String>) -> Result<BTreeMap<String, String>, String> {
    given
        .into_iter()
        .map(|(member, header)| {
            let header = header.to_ascii_lowercase();
            let own = header == "authorization" || header == "cookie";
            if own || !plugin_sdk::Headers::settable_upstream(&header) {
                return Err(format!(
                    "oauth2-introspection: claims_to_headers: `{header}` cannot carry a claim"
                ));
            }
            Ok((member, header))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_json(json: &str) -> Result<(Settings, Rules), String> {
        load(&Config::from_json(json))
    }

    #[test]
    fn defaults_and_errors() {
        let (s, rules) = load_json(r#"{"endpoint": "https://id.example.com/introspect", "client_id": "gw", "client_secret": "s"}"#)
            .expect("valid");
        assert!(!s.client_secret_post && rules.is_empty());
        assert_eq!(
            (s.cache_ttl, s.inactive_ttl, s.consumer_claim.as_str()),
            (300, 10, "sub")
        );
        let error = |json: &str| load_json(json).err().unwrap_or_default();
        assert!(
            error(r#"{"endpoint": "ftp://x", "client_id": "gw", "client_secret": "s"}"#)
                .contains("is not an https:// URL")
        );
        let plain =
            r#"{"endpoint": "http://id.example.com/i", "client_id": "gw", "client_secret": "s"}"#;
        assert!(error(plain).contains("plain http://"));
        assert!(
            error(r#"{"endpoint": "https://x", "client_id": "", "client_secret": "s"}"#)
                .contains("client_id and client_secret")
        );
        assert!(error(r#"{"endpoint": "https://x", "client_id": "a", "client_secret": "s", "auth_method": "private_key_jwt"}"#).contains("auth_method"));
        assert!(error(r#"{"endpoint": "https://x", "client_id": "a", "client_secret": "s", "claims_to_headers": {"sub": "Host"}}"#).contains("cannot carry a claim"));
        assert!(error(r#"{"endpoint": "https://x", "client_id": "a", "client_secret": "s", "scopes": {"any_of": ["a b"]}}"#).contains("not a scope name"));
    }
}
