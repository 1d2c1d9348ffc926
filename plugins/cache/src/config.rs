//! The plugin's settings: parsed and checked once, at `init`, into [`Options`]
//! that the request path only reads.

use plugin_sdk::Config;
use plugin_sdk::units;
use serde::Deserialize;
use serde_json::Value;
use std::time::Duration;

/// Request headers that many frameworks read to build URLs, redirects or to
/// pick the method, yet that are not part of the key. Left in, one client could
/// have a response built for its forged value stored for everyone (cache
/// poisoning). They are removed from every cacheable request unless keyed; the
/// gateway adds its own `X-Forwarded-*` after the plugins have run.
pub const POISONING_HEADERS: &[&str] = &[
    "x-forwarded-host",
    "x-forwarded-scheme",
    "x-forwarded-proto",
    "x-forwarded-port",
    "x-forwarded-prefix",
    "x-forwarded-server",
    "x-original-url",
    "x-rewrite-url",
    "x-original-host",
    "x-host",
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
    "forwarded",
];

/// The host keeps an entry for a day at most.
const LONGEST_TTL: Duration = Duration::from_secs(86_400);
/// The host lets no request wait longer for another's fill.
const LONGEST_WAIT: Duration = Duration::from_secs(30);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    #[serde(default = "default_ttl")]
    ttl: String,
    #[serde(default = "default_max_ttl")]
    max_ttl: String,
    #[serde(default = "default_statuses")]
    statuses: Vec<u16>,
    #[serde(default = "default_methods")]
    methods: Vec<String>,
    #[serde(default)]
    key_query: Option<Vec<String>>,
    #[serde(default)]
    key_headers: Vec<String>,
    #[serde(default)]
    strip_headers: Vec<String>,
    #[serde(default)]
    cache_authorized: bool,
    #[serde(default)]
    cache_set_cookie: bool,
    #[serde(default)]
    refresh: Vec<String>,
    #[serde(default = "default_collapse_wait")]
    collapse_wait: String,
    /// An integer (bytes) or a string with a unit, hence untyped here.
    #[serde(default)]
    max_body: Option<Value>,
    #[serde(default = "default_keep")]
    keep: String,
    #[serde(default)]
    targeted_cache_control: Vec<String>,
    #[serde(default)]
    strip_targeted_cache_control: bool,
}

fn default_keep() -> String {
    "1h".to_string()
}

fn default_ttl() -> String {
    "60s".to_string()
}

fn default_max_ttl() -> String {
    "1h".to_string()
}

fn default_statuses() -> Vec<u16> {
    vec![200, 301, 404]
}

fn default_methods() -> Vec<String> {
    vec!["GET".to_string(), "HEAD".to_string()]
}

fn default_collapse_wait() -> String {
    "5s".to_string()
}

const DEFAULT_MAX_BODY: usize = 1 << 20;

/// Who may force a refresh with `Cache-Control: no-cache` or `max-age=0`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refresh {
    /// Everybody, anonymous callers included (`"*"`).
    Anyone,
    /// These consumers (none when empty).
    Consumers(Vec<String>),
}

impl Refresh {
    /// Whether `consumer` (`None`: anonymous) may refresh.
    pub fn allows(&self, consumer: Option<&str>) -> bool {
        match self {
            Refresh::Anyone => true,
            Refresh::Consumers(names) => consumer.is_some_and(|c| names.iter().any(|n| n == c)),
        }
    }
}

/// The checked settings.
#[derive(Debug, Clone)]
pub struct Options {
    /// Lifetime of a response that states none.
    pub ttl: Duration,
    /// Cap on every lifetime.
    pub max_ttl: Duration,
    /// Statuses that may be stored.
    pub statuses: Vec<u16>,
    /// Whether HEAD is answered from GET entries (GET always is).
    pub head: bool,
    /// `None`: the whole query is keyed; else only these parameters, and the
    /// others are removed from the request.
    pub key_query: Option<Vec<String>>,
    /// Request headers in the key, lower-case, in config order.
    pub key_headers: Vec<String>,
    /// Request headers removed from cacheable requests, lower-case.
    pub strip_headers: Vec<String>,
    /// Whether requests with `Authorization` are cached.
    pub cache_authorized: bool,
    /// Whether responses with `Set-Cookie` are stored (without it).
    pub cache_set_cookie: bool,
    /// Who may force a refresh.
    pub refresh: Refresh,
    /// How long a miss waits for a concurrent fill of the same key.
    pub collapse_wait: Duration,
    /// Largest body stored.
    pub max_body: usize,
    /// How long a stale entry with a validator (`ETag`, `Last-Modified`) is
    /// kept past its freshness, to be revalidated with a conditional request.
    pub keep: Duration,
    /// Targeted cache-control fields this cache obeys before `Cache-Control`
    /// (RFC 9213), lower-case, first match wins: `["cdn-cache-control"]` to
    /// act as a CDN. Empty by default, as RFC 9213 asks of gateway caches.
    pub targeted: Vec<String>,
    /// Whether the targeted fields are removed from what the client gets.
    pub strip_targeted: bool,
}

impl Options {
    /// Parses and checks the entry's `config`.
    pub fn from_config(config: &Config) -> Result<Options, String> {
        let settings: Settings = config.parse().map_err(|e| format!("cache: {e}"))?;
        let ttl = parse_duration("ttl", &settings.ttl)?;
        let max_ttl = parse_duration("max_ttl", &settings.max_ttl)?;
        if max_ttl.is_zero() || max_ttl > LONGEST_TTL {
            return Err(format!(
                "cache: max_ttl `{}` must be between 1ms and 24h",
                settings.max_ttl
            ));
        }
        if ttl > max_ttl {
            return Err(format!(
                "cache: ttl `{}` is longer than max_ttl `{}`",
                settings.ttl, settings.max_ttl
            ));
        }
        let collapse_wait = parse_duration("collapse_wait", &settings.collapse_wait)?;
        if collapse_wait > LONGEST_WAIT {
            return Err(format!(
                "cache: collapse_wait `{}` must be at most 30s (\"0s\" turns collapsing off)",
                settings.collapse_wait
            ));
        }
        let max_body = match &settings.max_body {
            None => DEFAULT_MAX_BODY,
            Some(value) => parse_size("max_body", value)?,
        };
        let keep = parse_duration("keep", &settings.keep)?;
        if keep > LONGEST_TTL {
            return Err(format!(
                "cache: keep `{}` must be at most 24h",
                settings.keep
            ));
        }
        let targeted = header_names("targeted_cache_control", &settings.targeted_cache_control)?;
        if let Some(name) = targeted.iter().find(|n| *n == "cache-control") {
            return Err(format!(
                "cache: targeted_cache_control: `{name}` is not a targeted field (list fields such as CDN-Cache-Control)"
            ));
        }
        let key_headers = header_names("key_headers", &settings.key_headers)?;
        let configured_strip = header_names("strip_headers", &settings.strip_headers)?;
        if let Some(name) = configured_strip.iter().find(|n| key_headers.contains(n)) {
            return Err(format!(
                "cache: `{name}` is in both key_headers and strip_headers: a header is either keyed or stripped"
            ));
        }
        let mut strip_headers: Vec<String> = POISONING_HEADERS
            .iter()
            .map(|name| name.to_string())
            .filter(|name| !key_headers.contains(name))
            .collect();
        for name in configured_strip {
            if !strip_headers.contains(&name) {
                strip_headers.push(name);
            }
        }
        Ok(Options {
            ttl,
            max_ttl,
            statuses: statuses(&settings.statuses)?,
            head: head(&settings.methods)?,
            key_query: settings.key_query.as_deref().map(query_names).transpose()?,
            key_headers,
            strip_headers,
            cache_authorized: settings.cache_authorized,
            cache_set_cookie: settings.cache_set_cookie,
            refresh: refresh(&settings.refresh)?,
            collapse_wait,
            max_body,
            keep,
            targeted,
            strip_targeted: settings.strip_targeted_cache_control,
        })
    }
}

fn statuses(list: &[u16]) -> Result<Vec<u16>, String> {
    if list.is_empty() {
        return Err("cache: statuses must list at least one status".into());
    }
    for &status in list {
        match status {
            // A partial body or a bodiless revalidation answer stored under a
            // key that ignores `Range` and the validators would be served to
            // clients that asked for the whole resource.
            206 | 304 => {
                return Err(format!(
                    "cache: status {status} cannot be cached: it answers one client's Range or conditional request"
                ));
            }
            200..=499 => {}
            _ => {
                return Err(format!(
                    "cache: status {status} cannot be cached: expected statuses from 200 to 499 (errors of the upstream are never stored)"
                ));
            }
        }
    }
    let mut statuses = list.to_vec();
    statuses.sort_unstable();
    statuses.dedup();
    Ok(statuses)
}

/// Whether HEAD is on; GET is required because HEAD is served from GET entries.
fn head(methods: &[String]) -> Result<bool, String> {
    for method in methods {
        if method != "GET" && method != "HEAD" {
            return Err(format!(
                "cache: method `{method}` cannot be cached: expected GET or HEAD"
            ));
        }
    }
    if !methods.iter().any(|m| m == "GET") {
        return Err("cache: methods must include GET (HEAD is answered from GET entries)".into());
    }
    Ok(methods.iter().any(|m| m == "HEAD"))
}

fn query_names(names: &[String]) -> Result<Vec<String>, String> {
    let mut checked: Vec<String> = Vec::with_capacity(names.len());
    for name in names {
        if name.is_empty() {
            return Err("cache: key_query must not contain an empty name".into());
        }
        if checked.contains(name) {
            return Err(format!("cache: key_query lists `{name}` twice"));
        }
        checked.push(name.clone());
    }
    Ok(checked)
}

/// Checked, lower-cased header names.
fn header_names(key: &str, names: &[String]) -> Result<Vec<String>, String> {
    let mut checked: Vec<String> = Vec::with_capacity(names.len());
    for name in names {
        if name.is_empty()
            || name
                .bytes()
                .any(|b| !(b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)))
        {
            return Err(format!("cache: {key}: `{name}` is not a valid header name"));
        }
        let name = name.to_ascii_lowercase();
        if checked.contains(&name) {
            return Err(format!("cache: {key} lists `{name}` twice"));
        }
        checked.push(name);
    }
    Ok(checked)
}

fn refresh(names: &[String]) -> Result<Refresh, String> {
    if names.iter().any(|n| n == "*") {
        return Ok(Refresh::Anyone);
    }
    if names.iter().any(String::is_empty) {
        return Err("cache: refresh must not contain an empty consumer name".into());
    }
    Ok(Refresh::Consumers(names.to_vec()))
}

/// `"30s"`, `"250ms"`, `"5m"`, `"1h"`, `"1.5s"`: the gateway's own duration syntax.
pub fn parse_duration(key: &str, text: &str) -> Result<Duration, String> {
    units::parse_duration(text).map_err(|e| format!("cache: {key}: {e}"))
}

/// A byte count: an integer, or a string such as `"1MiB"`, `"512KiB"`, `"1000"`.
pub fn parse_size(key: &str, value: &Value) -> Result<usize, String> {
    let bytes = units::size_from_json(value).map_err(|e| format!("cache: {key}: {e}"))?;
    if bytes == 0 {
        return Err(format!("cache: {key} must be at least 1 byte"));
    }
    usize::try_from(bytes).map_err(|_| format!("cache: {key}: {bytes} bytes is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn options(config: Value) -> Result<Options, String> {
        Options::from_config(&Config::from_value(config))
    }

    #[test]
    fn defaults() {
        let o = options(json!({})).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(o.ttl, Duration::from_secs(60));
        assert_eq!(o.max_ttl, Duration::from_secs(3600));
        assert_eq!(o.statuses, [200, 301, 404]);
        assert!(o.head);
        assert_eq!(o.key_query, None);
        assert!(o.key_headers.is_empty());
        assert_eq!(o.strip_headers, POISONING_HEADERS);
        assert!(!o.cache_authorized);
        assert!(!o.cache_set_cookie);
        assert_eq!(o.refresh, Refresh::Consumers(vec![]));
        assert_eq!(o.collapse_wait, Duration::from_secs(5));
        assert_eq!(o.max_body, 1_048_576);
        assert_eq!(o.keep, Duration::from_secs(3600));
        assert!(o.targeted.is_empty());
        assert!(!o.strip_targeted);
    }

    #[test]
    fn durations_use_the_gateway_syntax() {
        let ms = |text: &str| parse_duration("ttl", text).map(|d| d.as_millis());
        assert_eq!(ms("30s"), Ok(30_000));
        assert_eq!(ms("5m"), Ok(300_000));
        assert_eq!(ms("1h"), Ok(3_600_000));
        assert_eq!(ms("500ms"), Ok(500));
        assert_eq!(ms("1.5s"), Ok(1_500));
        assert_eq!(ms("0s"), Ok(0));
        for bad in ["30", "s", "3x", "", "-1s", "1d", "1e400s"] {
            assert!(ms(bad).is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn sizes_take_integers_and_units() {
        let size = |value: Value| parse_size("max_body", &value);
        assert_eq!(size(json!(1000)), Ok(1000));
        assert_eq!(size(json!("1000")), Ok(1000));
        assert_eq!(size(json!("512KiB")), Ok(524_288));
        assert_eq!(size(json!("1MiB")), Ok(1_048_576));
        assert_eq!(size(json!("2MB")), Ok(2_000_000));
        assert!(size(json!("1PB")).is_err());
        assert!(size(json!(-1)).is_err());
        assert!(size(json!(true)).is_err());
        assert!(size(json!("99999999999999GiB")).is_err());
        assert_eq!(
            size(json!(0)),
            Err("cache: max_body must be at least 1 byte".to_string())
        );
    }

    #[test]
    fn keyed_poisoning_headers_are_not_stripped_and_extras_are() {
        let o = options(json!({
            "key_headers": ["X-Forwarded-Host", "Accept-Language"],
            "strip_headers": ["X-Debug", "forwarded"],
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(o.key_headers, ["x-forwarded-host", "accept-language"]);
        assert!(!o.strip_headers.iter().any(|n| n == "x-forwarded-host"));
        assert!(o.strip_headers.iter().any(|n| n == "x-forwarded-proto"));
        assert!(o.strip_headers.iter().any(|n| n == "x-debug"));
        assert_eq!(
            o.strip_headers.iter().filter(|n| *n == "forwarded").count(),
            1
        );
    }

    #[test]
    fn refresh_star_means_anyone() {
        let o = options(json!({"refresh": ["ops", "*"]})).unwrap_or_else(|e| panic!("{e}"));
        assert!(o.refresh.allows(None));
        let o = options(json!({"refresh": ["ops"]})).unwrap_or_else(|e| panic!("{e}"));
        assert!(o.refresh.allows(Some("ops")));
        assert!(!o.refresh.allows(Some("alice")));
        assert!(!o.refresh.allows(None));
    }

    /// Every refusal, with the exact message an operator reads.
    #[test]
    fn bad_configs_are_refused_with_clear_messages() {
        for (config, message) in [
            (
                json!({"statuses": [200, 503]}),
                "cache: status 503 cannot be cached: expected statuses from 200 to 499 (errors of the upstream are never stored)",
            ),
            (
                json!({"statuses": [500]}),
                "cache: status 500 cannot be cached: expected statuses from 200 to 499 (errors of the upstream are never stored)",
            ),
            (
                json!({"statuses": [101]}),
                "cache: status 101 cannot be cached: expected statuses from 200 to 499 (errors of the upstream are never stored)",
            ),
            (
                json!({"statuses": [206]}),
                "cache: status 206 cannot be cached: it answers one client's Range or conditional request",
            ),
            (
                json!({"statuses": []}),
                "cache: statuses must list at least one status",
            ),
            (
                json!({"methods": ["GET", "POST"]}),
                "cache: method `POST` cannot be cached: expected GET or HEAD",
            ),
            (
                json!({"methods": ["get"]}),
                "cache: method `get` cannot be cached: expected GET or HEAD",
            ),
            (
                json!({"methods": ["HEAD"]}),
                "cache: methods must include GET (HEAD is answered from GET entries)",
            ),
            (
                json!({"ttl": "30"}),
                "cache: ttl: invalid duration `30`: expected a number followed by ms, s, m or h (for example \"30s\" or \"250ms\")",
            ),
            (
                json!({"max_ttl": "1 week"}),
                "cache: max_ttl: invalid duration `1 week`: expected a number followed by ms, s, m or h (for example \"30s\" or \"250ms\")",
            ),
            (
                json!({"max_ttl": "25h"}),
                "cache: max_ttl `25h` must be between 1ms and 24h",
            ),
            (
                json!({"max_ttl": "0s"}),
                "cache: max_ttl `0s` must be between 1ms and 24h",
            ),
            (
                json!({"ttl": "2h"}),
                "cache: ttl `2h` is longer than max_ttl `1h`",
            ),
            (
                json!({"collapse_wait": "soon"}),
                "cache: collapse_wait: invalid duration `soon`: expected a number followed by ms, s, m or h (for example \"30s\" or \"250ms\")",
            ),
            (
                json!({"collapse_wait": "31s"}),
                "cache: collapse_wait `31s` must be at most 30s (\"0s\" turns collapsing off)",
            ),
            (
                json!({"max_body": "1 TB"}),
                "cache: max_body: invalid size `1 TB`: expected bytes as an integer or a number followed by B, KB, KiB, MB, MiB, GB or GiB (for example \"1MiB\")",
            ),
            (
                json!({"key_headers": ["bad header"]}),
                "cache: key_headers: `bad header` is not a valid header name",
            ),
            (
                json!({"key_headers": ["Accept", "accept"]}),
                "cache: key_headers lists `accept` twice",
            ),
            (
                json!({"key_headers": ["x-tenant"], "strip_headers": ["X-Tenant"]}),
                "cache: `x-tenant` is in both key_headers and strip_headers: a header is either keyed or stripped",
            ),
            (
                json!({"key_query": ["page", "page"]}),
                "cache: key_query lists `page` twice",
            ),
            (
                json!({"key_query": [""]}),
                "cache: key_query must not contain an empty name",
            ),
            (
                json!({"refresh": [""]}),
                "cache: refresh must not contain an empty consumer name",
            ),
            (
                json!({"keep": "2d"}),
                "cache: keep: invalid duration `2d`: expected a number followed by ms, s, m or h (for example \"30s\" or \"250ms\")",
            ),
            (
                json!({"keep": "25h"}),
                "cache: keep `25h` must be at most 24h",
            ),
            (
                json!({"targeted_cache_control": ["CDN Cache Control"]}),
                "cache: targeted_cache_control: `CDN Cache Control` is not a valid header name",
            ),
            (
                json!({"targeted_cache_control": ["Cache-Control"]}),
                "cache: targeted_cache_control: `cache-control` is not a targeted field (list fields such as CDN-Cache-Control)",
            ),
            (
                json!({"tll": "30s"}),
                "cache: invalid config: unknown field `tll`, expected one of `ttl`, `max_ttl`, `statuses`, `methods`, `key_query`, `key_headers`, `strip_headers`, `cache_authorized`, `cache_set_cookie`, `refresh`, `collapse_wait`, `max_body`, `keep`, `targeted_cache_control`, `strip_targeted_cache_control`",
            ),
            (
                json!({"statuses": "200"}),
                "cache: invalid config: invalid type: string \"200\", expected a sequence",
            ),
        ] {
            assert_eq!(
                options(config.clone()).err().as_deref(),
                Some(message),
                "{config}"
            );
        }
    }
}
