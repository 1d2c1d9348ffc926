//! The built-in `key-auth` plugin: API keys, as in Kong's key-auth and AWS API
//! Gateway's `x-api-key`.
//!
//! The key is read from the one configured header or query parameter that
//! holds one, and looked up with the gateway's `consumers` interface (the host
//! compares keyed hashes; no plugin ever holds a stored key). On success the
//! consumer goes into the request context (`consumer`, `consumer.groups`,
//! `consumer.plan`) for later plugins such as rate limiting, optionally into
//! `x-consumer-*` headers for the upstream, and the key is stripped before the
//! request is proxied (every configured header and parameter, so that no
//! copy of it goes on). On failure the client gets 401 with a
//! `WWW-Authenticate` challenge and a JSON body.
//!
//! A key must be given once: a request with two lines of a key header, a
//! comma in one (what a proxy makes of two lines), a key parameter twice, or
//! keys in two of the configured places (an empty value is no key) is refused
//! with 401, since the upstream might read another copy than the one checked
//! here.
//!
//! Whatever the outcome, headers under the consumer header prefix that the
//! client sent are removed first, so a client cannot claim to be a consumer.

use plugin_sdk::consumers::{self, Consumer};
use plugin_sdk::{Action, Config, Context, Needs, Plugin, Repeated, Request, Response, log};
use serde::Deserialize;

pub use plugin_sdk::consumers::{CONTEXT_AUTH, CONTEXT_CONSUMER, CONTEXT_GROUPS, CONTEXT_PLAN};

/// The key a header holds when its value is not text (as lossy decoding
/// would read it): shorter than any configured key.
const UNREADABLE: &str = "\u{fffd}";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    /// Request headers that may carry the key, tried in order.
    #[serde(default = "default_headers")]
    headers: Vec<String>,
    /// Query parameters that may carry the key, tried after the headers.
    #[serde(default)]
    query: Vec<String>,
    /// Remove the key from the request before it is proxied.
    #[serde(default = "yes")]
    hide_credentials: bool,
    /// Send `<prefix>name`, `<prefix>groups` and `<prefix>plan` upstream.
    #[serde(default = "yes")]
    consumer_headers: bool,
    /// The prefix of the consumer headers.
    #[serde(default = "consumers::default_header_prefix")]
    header_prefix: String,
    /// The realm in the `WWW-Authenticate` challenge.
    #[serde(default = "default_realm")]
    realm: String,
}

fn default_headers() -> Vec<String> {
    vec!["x-api-key".to_string()]
}

fn default_realm() -> String {
    "gateway".to_string()
}

fn yes() -> bool {
    true
}

/// The plugin with its checked settings.
#[derive(Debug)]
pub struct KeyAuth {
    settings: Settings,
    challenge: String,
}

impl KeyAuth {
    /// The key, from the one configured place that holds one; [`Repeated`]
    /// when several do, or when one place is given twice (even empty).
    fn find_key(&self, req: &Request) -> Result<Option<String>, Repeated> {
        let mut keys = self.header_keys(req)?;
        keys.extend(self.query_keys(req)?);
        keys.retain(|key| !key.is_empty());
        if keys.len() > 1 {
            return Err(Repeated);
        }
        Ok(keys.pop())
    }

    /// The (trimmed) values of the configured headers; empty for one absent.
    fn header_keys(&self, req: &Request) -> Result<Vec<String>, Repeated> {
        let mut found = Vec::new();
        for name in &self.settings.headers {
            let value = match req.headers().single(name)? {
                Some(value) => value.trim(),
                // Not text: a key all the same, and never a valid one.
                None if req.headers().contains(name) => UNREADABLE,
                None => "",
            };
            // A key is one value: commas are lines joined by a proxy.
            if value.contains(',') {
                return Err(Repeated);
            }
            found.push(value.to_string());
        }
        Ok(found)
    }

    /// The values of the configured query parameters the request has.
    fn query_keys(&self, req: &Request) -> Result<Vec<String>, Repeated> {
        let mut found = Vec::new();
        if req.query().is_empty() {
            return Ok(found);
        }
        for name in &self.settings.query {
            if let Some(value) = req.single_query_param(name)? {
                found.push(value);
            }
        }
        Ok(found)
    }

    fn unauthorized(&self, req: &Request, reason: &str) -> Action {
        Action::Respond(
            Response::denied(401, reason, req)
                .with_header("www-authenticate", self.challenge.clone()),
        )
    }

    fn admit(&self, req: &mut Request, ctx: &mut Context, consumer: &Consumer) {
        consumer.identify(ctx, "key-auth");
        if self.settings.hide_credentials {
            self.hide(req);
        }
        if self.settings.consumer_headers {
            consumer.set_headers(req.headers_mut(), &self.settings.header_prefix);
        }
    }

    /// Removes every configured place: the key, and any empty copy beside it.
    fn hide(&self, req: &mut Request) {
        for name in &self.settings.headers {
            req.headers_mut().remove_alike(name);
        }
        if !req.query().is_empty() {
            for name in &self.settings.query {
                req.remove_query_param(name);
            }
        }
    }
}

impl Plugin for KeyAuth {
    const NAME: &'static str = "key-auth";

    fn needs(&self) -> Needs {
        Needs::REQUEST
    }

    fn init(config: Config) -> Result<Self, String> {
        let mut settings: Settings = config.parse()?;
        if settings.headers.is_empty() && settings.query.is_empty() {
            return Err(
                "key-auth needs at least one header or query parameter to read the key from".into(),
            );
        }
        for name in &mut settings.headers {
            if name.is_empty()
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return Err(format!("key-auth: `{name}` is not a valid header name"));
            }
            *name = name.to_ascii_lowercase();
        }
        // A place listed twice is one place, not a key given twice.
        dedup(&mut settings.headers);
        dedup(&mut settings.query);
        settings.header_prefix =
            consumers::checked_header_prefix("key-auth", &settings.header_prefix)?;
        consumers::check_realm("key-auth", &settings.realm)?;
        let challenge = format!(
            "ApiKey realm=\"{}\"{}",
            settings.realm,
            settings
                .headers
                .first()
                .map(|h| format!(", header=\"{h}\""))
                .unwrap_or_default()
        );
        Ok(KeyAuth {
            settings,
            challenge,
        })
    }

    fn on_request(&self, req: &mut Request, ctx: &mut Context) -> Action {
        req.headers_mut()
            .remove_prefixed(&self.settings.header_prefix);
        let key = match self.find_key(req) {
            Ok(Some(key)) => key,
            Ok(None) => return self.unauthorized(req, "missing API key"),
            Err(Repeated) => {
                log::info(&format!(
                    "key-auth: API key given more than once on route `{}` from {}",
                    req.route(),
                    req.client_addr()
                ));
                return self.unauthorized(req, "credential given more than once");
            }
        };
        match consumers::find_by_key(&key) {
            Some(consumer) => {
                self.admit(req, ctx, &consumer);
                Action::Continue
            }
            None => {
                log::info(&format!(
                    "key-auth: unknown API key on route `{}` from {}",
                    req.route(),
                    req.client_addr()
                ));
                self.unauthorized(req, "invalid API key")
            }
        }
    }
}

/// Drops later copies of a name, keeping the order.
fn dedup(names: &mut Vec<String>) {
    let mut seen = std::collections::HashSet::new();
    names.retain(|name| seen.insert(name.clone()));
}

plugin_sdk::export!(KeyAuth);

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() {
        consumers::register(
            Consumer {
                name: "alice".into(),
                groups: vec!["gold".into(), "beta".into()],
                plan: Some("gold".into()),
                metadata: vec![],
            },
            &["alice-key-123"],
        );
    }

    fn plugin(json: &str) -> KeyAuth {
        match KeyAuth::init(Config::from_json(json)) {
            Ok(plugin) => plugin,
            Err(e) => panic!("init failed: {e}"),
        }
    }

    fn status(action: &Action) -> Option<u16> {
        match action {
            Action::Respond(response) => Some(response.status()),
            _ => None,
        }
    }

    #[test]
    fn right_key_in_header_admits_and_strips_it() {
        setup();
        let auth = plugin("{}");
        let mut req = Request::new("GET", "/x")
            .with_header("x-api-key", "alice-key-123")
            .with_header("x-consumer-name", "mallory");
        let mut ctx = Context::new();
        assert!(matches!(
            auth.on_request(&mut req, &mut ctx),
            Action::Continue
        ));
        assert_eq!(ctx.get(CONTEXT_CONSUMER).as_deref(), Some("alice"));
        assert_eq!(ctx.get(CONTEXT_GROUPS).as_deref(), Some("gold,beta"));
        assert_eq!(ctx.get(CONTEXT_PLAN).as_deref(), Some("gold"));
        assert_eq!(req.headers().get("x-api-key"), None);
        assert_eq!(req.headers().get("x-consumer-name"), Some("alice"));
        assert_eq!(req.headers().get_all("x-consumer-name").count(), 1);
    }

    #[test]
    fn wrong_or_missing_key_is_401_with_a_challenge() {
        setup();
        let auth = plugin("{}");
        let mut ctx = Context::new();
        let mut wrong = Request::new("GET", "/x").with_header("x-api-key", "alice-key-124");
        let action = auth.on_request(&mut wrong, &mut ctx);
        assert_eq!(status(&action), Some(401));
        if let Action::Respond(response) = &action {
            assert_eq!(
                response.headers().get("www-authenticate"),
                Some("ApiKey realm=\"gateway\", header=\"x-api-key\"")
            );
            let body: serde_json::Value =
                serde_json::from_slice(response.body().unwrap_or_default()).unwrap_or_default();
            assert_eq!(body["error"], "unauthorized: invalid API key");
        }
        let mut missing = Request::new("GET", "/x");
        assert_eq!(status(&auth.on_request(&mut missing, &mut ctx)), Some(401));
        assert_eq!(ctx.get(CONTEXT_CONSUMER), None);
    }

    #[test]
    fn key_in_query_only_when_configured() {
        setup();
        let mut ctx = Context::new();
        let header_only = plugin("{}");
        let mut req = Request::new("GET", "/x?api_key=alice-key-123&a=1");
        assert_eq!(
            status(&header_only.on_request(&mut req, &mut ctx)),
            Some(401)
        );

        let with_query = plugin(r#"{"query": ["api_key"]}"#);
        let mut req = Request::new("GET", "/x?api_key=alice-key-123&a=1");
        assert!(matches!(
            with_query.on_request(&mut req, &mut ctx),
            Action::Continue
        ));
        assert_eq!(req.query(), "a=1");
    }

    #[test]
    fn hide_credentials_off_keeps_the_key() {
        setup();
        let auth = plugin(r#"{"hide_credentials": false, "consumer_headers": false}"#);
        let mut req = Request::new("GET", "/x").with_header("x-api-key", "alice-key-123");
        assert!(matches!(
            auth.on_request(&mut req, &mut Context::new()),
            Action::Continue
        ));
        assert_eq!(req.headers().get("x-api-key"), Some("alice-key-123"));
        assert_eq!(req.headers().get("x-consumer-name"), None);
    }

    #[test]
    fn bad_settings_are_refused() {
        assert!(KeyAuth::init(Config::from_json(r#"{"headers": [], "query": []}"#)).is_err());
        assert!(KeyAuth::init(Config::from_json(r#"{"headers": ["bad header"]}"#)).is_err());
        assert!(KeyAuth::init(Config::from_json(r#"{"realm": "a\"b"}"#)).is_err());
        // An empty prefix would remove every header of every request.
        assert!(
            KeyAuth::init(Config::from_json(
                r#"{"header_prefix": "", "consumer_headers": false}"#
            ))
            .is_err()
        );
        assert!(KeyAuth::init(Config::from_json(r#"{"heders": ["x"]}"#)).is_err());
    }
}
