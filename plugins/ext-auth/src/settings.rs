//! The plugin's config, checked: the authorizer's endpoint, the kind of
//! authorizer and its identity sources, the timeout, what a failure means,
//! and how long decisions are remembered.

use plugin_sdk::Config;
use serde::Deserialize;
use std::time::Duration;

/// The longest a decision is remembered, in seconds (a day: the cache's cap).
const MAX_TTL: u64 = 86_400;
/// The longest wait for the authorizer (the host's cap).
const MAX_TIMEOUT_MS: u64 = 10_000;
/// The most identity sources of a request authorizer.
const MAX_SOURCES: usize = 16;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    endpoint: String,
    #[serde(default = "token")]
    kind: String,
    #[serde(default = "authorization")]
    token_header: String,
    #[serde(default)]
    identity_sources: Vec<String>,
    #[serde(default = "default_timeout_ms")]
    timeout_ms: u64,
    #[serde(default = "deny")]
    on_failure: String,
    #[serde(default = "default_cache_ttl")]
    cache_ttl: u64,
    #[serde(default = "default_deny_ttl")]
    deny_ttl: u64,
    #[serde(default = "default_max_source_bytes")]
    max_source_bytes: usize,
}

fn token() -> String {
    "token".into()
}
fn authorization() -> String {
    "authorization".into()
}
fn default_timeout_ms() -> u64 {
    1000
}
fn deny() -> String {
    "deny".into()
}
fn default_cache_ttl() -> u64 {
    300
}
fn default_deny_ttl() -> u64 {
    10
}
fn default_max_source_bytes() -> usize {
    8192
}

/// Where one identity source is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A request header (lower-cased name).
    Header(String),
    /// A query parameter.
    Query(String),
    /// The request's path.
    Path,
    /// The request's method.
    Method,
    /// The client's address (without its port).
    ClientIp,
}

impl Source {
    /// `header:NAME`, `query:NAME`, `path`, `method` or `client_ip`.
    fn parse(text: &str) -> Result<Source, String> {
        match text.split_once(':') {
            None if text == "path" => Ok(Source::Path),
            None if text == "method" => Ok(Source::Method),
            None if text == "client_ip" => Ok(Source::ClientIp),
            Some(("header", name)) if is_token(name) => {
                Ok(Source::Header(name.to_ascii_lowercase()))
            }
            Some(("query", name)) if !name.is_empty() => Ok(Source::Query(name.to_string())),
            _ => Err(format!(
                "ext-auth: identity source `{text}` must be `header:NAME`, `query:NAME`, `path`, `method` or `client_ip`"
            )),
        }
    }

    /// The name the authorizer is told it by.
    pub fn label(&self) -> String {
        match self {
            Source::Header(name) => format!("header:{name}"),
            Source::Query(name) => format!("query:{name}"),
            Source::Path => "path".into(),
            Source::Method => "method".into(),
            Source::ClientIp => "client_ip".into(),
        }
    }
}

/// The checked settings.
#[derive(Debug)]
pub struct Settings {
    pub endpoint: String,
    /// A token authorizer (one header) or a request authorizer.
    pub token: bool,
    /// What the decision depends on, in order.
    pub sources: Vec<Source>,
    pub timeout: Duration,
    /// Allow (instead of deny) when the authorizer fails.
    pub allow_on_failure: bool,
    /// Seconds an allow is remembered, at most (the answer may shorten it).
    pub cache_ttl: u64,
    /// Seconds a denial is remembered.
    pub deny_ttl: u64,
    /// The most bytes of identity sources a request may carry.
    pub max_source_bytes: usize,
}

/// The settings of `config`, or what is wrong with them.
pub fn load(config: &Config) -> Result<Settings, String> {
    let raw: Raw = config.parse()?;
    plugin_sdk::http_client::check_url(&raw.endpoint)
        .map_err(|why| format!("ext-auth: endpoint {why}"))?;
    let token = match raw.kind.as_str() {
        "token" => true,
        "request" => false,
        other => {
            return Err(format!(
                "ext-auth: kind `{other}` must be `token` or `request`"
            ));
        }
    };
    let sources = sources(&raw, token)?;
    let allow_on_failure = match raw.on_failure.as_str() {
        "deny" => false,
        "allow" => true,
        other => {
            return Err(format!(
                "ext-auth: on_failure `{other}` must be `deny` or `allow`"
            ));
        }
    };
    if raw.timeout_ms == 0 || raw.timeout_ms > MAX_TIMEOUT_MS {
        return Err(format!(
            "ext-auth: timeout_ms must be between 1 and {MAX_TIMEOUT_MS}"
        ));
    }
    if raw.cache_ttl > MAX_TTL || raw.deny_ttl > MAX_TTL {
        return Err(format!(
            "ext-auth: cache_ttl and deny_ttl are at most {MAX_TTL} seconds"
        ));
    }
    if raw.max_source_bytes == 0 || raw.max_source_bytes > 65_536 {
        return Err("ext-auth: max_source_bytes must be between 1 and 65536".into());
    }
    Ok(Settings {
        endpoint: raw.endpoint,
        token,
        sources,
        timeout: Duration::from_millis(raw.timeout_ms),
        allow_on_failure,
        cache_ttl: raw.cache_ttl,
        deny_ttl: raw.deny_ttl,
        max_source_bytes: raw.max_source_bytes,
    })
}

/// The identity sources: the token header alone for a token authorizer,
/// the listed ones (at least one, at most 16, none twice) for a request one.
fn sources(raw: &Raw, token: bool) -> Result<Vec<Source>, String> {
    if token {
        if !raw.identity_sources.is_empty() {
            return Err("ext-auth: identity_sources are for kind = \"request\"; a token authorizer reads `token_header`".into());
        }
        if !is_token(&raw.token_header) {
            return Err(format!(
                "ext-auth: token_header `{}` is not a header name",
                raw.token_header
            ));
        }
        return Ok(vec![Source::Header(raw.token_header.to_ascii_lowercase())]);
    }
    if raw.identity_sources.is_empty() || raw.identity_sources.len() > MAX_SOURCES {
        return Err(format!(
            "ext-auth: a request authorizer needs 1 to {MAX_SOURCES} identity_sources"
        ));
    }
    let mut sources: Vec<Source> = Vec::new();
    for text in &raw.identity_sources {
        let source = Source::parse(text)?;
        if sources.contains(&source) {
            return Err(format!(
                "ext-auth: identity source `{text}` is listed twice"
            ));
        }
        sources.push(source);
    }
    Ok(sources)
}

/// An HTTP token (a header name).
fn is_token(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_json(json: &str) -> Result<Settings, String> {
        load(&Config::from_json(json))
    }

    #[test]
    fn kinds_sources_and_errors() {
        let s = load_json(r#"{"endpoint": "https://authz.example.com/check"}"#).expect("valid");
        assert!(s.token && !s.allow_on_failure);
        assert_eq!(s.sources, vec![Source::Header("authorization".into())]);
        let request = r#"{"endpoint": "https://a.example.com", "kind": "request", "identity_sources": ["header:X-Tenant", "query:key", "path", "client_ip"]}"#;
        let s = load_json(request).expect("valid");
        assert_eq!(s.sources[0], Source::Header("x-tenant".into()));
        assert_eq!(s.sources.len(), 4);
        let error = |json: &str| load_json(json).err().unwrap_or_default();
        assert!(
            error(r#"{"endpoint": "https://a.example.com", "kind": "request"}"#)
                .contains("1 to 16")
        );
        assert!(error(r#"{"endpoint": "https://a.example.com", "kind": "request", "identity_sources": ["cookie:x"]}"#).contains("must be `header:NAME`"));
        assert!(error(r#"{"endpoint": "https://a.example.com", "kind": "request", "identity_sources": ["path", "path"]}"#).contains("twice"));
        assert!(
            error(r#"{"endpoint": "https://a.example.com", "identity_sources": ["path"]}"#)
                .contains("for kind = \"request\"")
        );
        assert!(error(r#"{"endpoint": "http://a.example.com"}"#).contains("plain http://"));
        assert!(
            error(r#"{"endpoint": "https://a.example.com", "on_failure": "maybe"}"#)
                .contains("on_failure")
        );
    }
}
