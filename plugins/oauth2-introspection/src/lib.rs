//! The built-in `oauth2-introspection` plugin: opaque bearer tokens checked
//! at an OAuth 2.0 Token Introspection endpoint (RFC 7662).
//!
//! The token is the request's one `Authorization: Bearer` header. It is
//! sent (`POST`, form-encoded `token` and `token_type_hint`) to `endpoint`
//! through `http-client`, with the gateway's client credentials
//! (`client_secret_basic` by default, RFC 6749 2.3.1, or
//! `client_secret_post`). The answer's `active` decides; `exp` and `nbf`
//! are checked against the clock too, and the route's `scopes` and
//! `claim_rules` (`plugin_sdk::authz`, on the answer's members: `scope`,
//! `client_id`, `sub`, ...) must hold (`403` otherwise).
//!
//! Answers are remembered in the plugin's `kv`, keyed by the SHA-256 of the
//! endpoint, the client id and the token (never the token itself): an active one until its `exp` or for `cache_ttl`,
//! whichever is first; an inactive one for `inactive_ttl`. An endpoint that
//! cannot be reached, or answers anything but `200` with a JSON object, is
//! a `503`: the token is neither admitted nor cached.
//!
//! On success the consumer named by `consumer_claim` (default `sub`) goes
//! into the context (with its groups and plan when it is configured), chosen
//! members into upstream headers (the client's copies removed first), and
//! `auth.method` is `oauth2-introspection`.

mod settings;

use plugin_sdk::authz::Rules;
use plugin_sdk::consumers::{CONTEXT_AUTH, CONTEXT_CONSUMER, CONTEXT_GROUPS, CONTEXT_PLAN};
use plugin_sdk::crypto::{DigestAlgorithm, digest};
use plugin_sdk::{
    Action, Config, Context, Needs, Plugin, Request, Response, clock, consumers, http_client, kv,
    log,
};
use serde_json::{Map, Value};
use settings::Settings;
use std::time::Duration;

/// An introspection answer that passed: its members.
type Claims = Map<String, Value>;

/// The plugin with its checked settings.
#[derive(Debug)]
pub struct Introspection {
    settings: Settings,
    rules: Rules,
}

/// What a token came to.
enum Verdict {
    Active(Claims),
    Inactive,
}

impl Plugin for Introspection {
    const NAME: &'static str = "oauth2-introspection";

    fn needs(&self) -> Needs {
        Needs::REQUEST
    }

    fn init(config: Config) -> Result<Self, String> {
        let (settings, rules) = settings::load(&config)?;
        Ok(Introspection { settings, rules })
    }

    fn on_request(&self, req: &mut Request, ctx: &mut Context) -> Action {
        for header in self.settings.claims_to_headers.values() {
            req.headers_mut().remove_alike(header);
        }
        let token = match self.token(req) {
            Ok(token) => token,
            Err(response) => return Action::Respond(response),
        };
        let now = clock::now_millis() / 1000;
        let claims = match self.verdict(&token, now) {
            Ok(Verdict::Active(claims)) => claims,
            Ok(Verdict::Inactive) => return self.refuse(req, "inactive token"),
            Err(why) => {
                log::warn(&format!(
                    "oauth2-introspection: route `{}`: the endpoint did not answer usably: {why}",
                    req.route()
                ));
                let response = Response::error(503, "authorization server unavailable", req);
                return Action::Respond(response);
            }
        };
        if let Err(unmet) = self.rules.check(&claims) {
            log::info(&format!(
                "oauth2-introspection: refused a request on route `{}`: {unmet}",
                req.route()
            ));
            return Action::Respond(unmet.response(&self.settings.realm, req));
        }
        self.admit(req, ctx, &claims);
        Action::Continue
    }
}

impl Introspection {
    /// The request's bearer token, or the `401` it gets.
    fn token(&self, req: &Request) -> Result<String, Response> {
        let value = match req.headers().single("authorization") {
            Ok(Some(value)) => value,
            Ok(None) => return Err(self.challenge(req, None)),
            Err(_) => {
                return Err(self.challenge(
                    req,
                    Some(("invalid_request", "credential given more than once")),
                ));
            }
        };
        let token = value
            .split_once(' ')
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim())
            .filter(|token| is_token68(token));
        match token {
            Some(token) if token.len() <= self.settings.max_token_bytes => Ok(token.to_string()),
            Some(_) => Err(self.challenge(req, Some(("invalid_token", "token too large")))),
            None => Err(self.challenge(req, None)),
        }
    }

    /// A `401` with an RFC 6750 challenge.
    fn challenge(&self, req: &Request, error: Option<(&str, &str)>) -> Response {
        let realm = &self.settings.realm;
        let (challenge, reason) = match error {
            None => (format!("Bearer realm=\"{realm}\""), "missing token"),
            Some((code, reason)) => (
                format!(
                    "Bearer realm=\"{realm}\", error=\"{code}\", error_description=\"{reason}\""
                ),
                reason,
            ),
        };
        Response::denied(401, reason, req).with_header("www-authenticate", challenge)
    }

    fn refuse(&self, req: &Request, reason: &str) -> Action {
        log::info(&format!(
            "oauth2-introspection: refused a request on route `{}`: {reason}",
            req.route()
        ));
        Action::Respond(self.challenge(req, Some(("invalid_token", reason))))
    }

    /// The token's verdict: remembered, or asked of the endpoint (and then
    /// remembered).
    fn verdict(&self, token: &str, now: u64) -> Result<Verdict, String> {
        let key = cache_key(&self.settings.endpoint, &self.settings.client_id, token);
        if let Some(verdict) = kv::get(&key).and_then(|r| remembered_verdict(&r, now)) {
            return Ok(verdict);
        }
        let answer = self.introspect(token)?;
        let verdict = judge(answer, now);
        let (value, ttl) = match &verdict {
            Verdict::Active(claims) => {
                let until_exp = claims
                    .get("exp")
                    .and_then(Value::as_u64)
                    .map(|exp| exp.saturating_sub(now));
                let ttl = until_exp.map_or(self.settings.cache_ttl, |left| {
                    left.min(self.settings.cache_ttl)
                });
                (Value::Object(claims.clone()).to_string(), ttl)
            }
            Verdict::Inactive => ("false".to_string(), self.settings.inactive_ttl),
        };
        if ttl > 0 {
            // A store that refuses is only a missed saving.
            let _ = kv::set(&key, value.as_bytes(), Duration::from_secs(ttl));
        }
        Ok(verdict)
    }

    /// One call to the endpoint: its JSON object.
    fn introspect(&self, token: &str) -> Result<Claims, String> {
        let s = &self.settings;
        let mut form = form_urlencoded::Serializer::new(String::new());
        form.append_pair("token", token);
        form.append_pair("token_type_hint", &s.token_type_hint);
        let mut request = http_client::Request {
            method: "POST".into(),
            url: s.endpoint.clone(),
            headers: plugin_sdk::Headers::new(),
            body: None,
            timeout: Some(s.timeout),
        };
        request
            .headers
            .set("content-type", "application/x-www-form-urlencoded");
        request.headers.set("accept", "application/json");
        if s.client_secret_post {
            form.append_pair("client_id", &s.client_id);
            form.append_pair("client_secret", &s.client_secret);
        } else {
            request
                .headers
                .set("authorization", basic(&s.client_id, &s.client_secret));
        }
        request.body = Some(form.finish().into_bytes());
        let response = http_client::send(request).map_err(|e| e.to_string())?;
        if response.status != 200 {
            return Err(format!("status {}", response.status));
        }
        match serde_json::from_slice(&response.body) {
            Ok(Value::Object(members)) => Ok(members),
            _ => Err("the answer is not a JSON object".to_string()),
        }
    }

    /// Records the caller and passes chosen members upstream.
    fn admit(&self, req: &mut Request, ctx: &mut Context, claims: &Claims) {
        ctx.set(CONTEXT_AUTH, "oauth2-introspection");
        let name = claims
            .get(&self.settings.consumer_claim)
            .and_then(Value::as_str)
            .filter(|name| !name.is_empty());
        match name.map(|name| (name, consumers::get(name))) {
            Some((_, Some(consumer))) => consumer.identify(ctx, "oauth2-introspection"),
            Some((name, None)) => {
                ctx.set(CONTEXT_CONSUMER, name);
                ctx.remove(CONTEXT_GROUPS);
                ctx.remove(CONTEXT_PLAN);
            }
            None => {}
        }
        for (member, header) in &self.settings.claims_to_headers {
            let Some(value) = claims.get(member) else {
                continue;
            };
            let text = match value {
                Value::String(text) => text.clone(),
                other => other.to_string(),
            };
            // An answer is trusted, not sanitised: a line break would split
            // the request upstream.
            if !text.chars().any(|c| c.is_control() && c != '\t') {
                req.headers_mut().set(header, text);
            }
        }
        if self.settings.hide_credentials {
            req.headers_mut().remove_alike("authorization");
        }
    }
}

/// The verdict of an endpoint's answer at `now`: active only when `active`
/// is `true`, and `exp` and `nbf` (when given) allow `now`.
fn judge(claims: Claims, now: u64) -> Verdict {
    let active = claims.get("active") == Some(&Value::Bool(true));
    let expired = claims
        .get("exp")
        .and_then(Value::as_u64)
        .is_some_and(|exp| now >= exp);
    let early = claims
        .get("nbf")
        .and_then(Value::as_u64)
        .is_some_and(|nbf| now < nbf);
    match active && !expired && !early {
        true => Verdict::Active(claims),
        false => Verdict::Inactive,
    }
}

/// A remembered verdict, checked again against the clock.
fn remembered_verdict(bytes: &[u8], now: u64) -> Option<Verdict> {
    match serde_json::from_slice(bytes).ok()? {
        Value::Object(claims) => Some(judge(claims, now)),
        Value::Bool(false) => Some(Verdict::Inactive),
        _ => None,
    }
}

/// The `kv` key of a token at an endpoint, for a client: the SHA-256 of
/// the three, in hex. Every entry of this plugin shares one `kv`, so an
/// answer of one authorization server never stands for another's.
fn cache_key(endpoint: &str, client_id: &str, token: &str) -> String {
    let mut bytes = Vec::new();
    for part in [endpoint, client_id, token] {
        bytes.extend_from_slice(&(part.len() as u64).to_be_bytes());
        bytes.extend_from_slice(part.as_bytes());
    }
    let hash = digest(DigestAlgorithm::Sha256, &bytes);
    let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
    format!("token:{hex}")
}

/// `Basic` credentials for the endpoint: each part form-encoded first (RFC
/// 6749 2.3.1), then base64.
fn basic(id: &str, secret: &str) -> String {
    use base64::Engine as _;
    let encode = |part: &str| form_urlencoded::byte_serialize(part.as_bytes()).collect::<String>();
    let pair = format!("{}:{}", encode(id), encode(secret));
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    )
}

/// An RFC 6750 `b64token`: `[A-Za-z0-9-._~+/]+=*`.
fn is_token68(token: &str) -> bool {
    let body = token.trim_end_matches('=');
    !body.is_empty()
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b))
}

plugin_sdk::export!(Introspection);

#[cfg(test)]
mod tests {
    use super::*;
    use plugin_sdk::http_client::testing;

    const ENDPOINT: &str = "https://id.example.com/introspect";

    fn plugin(extra: &str) -> Introspection {
        let json = format!(
            r#"{{"endpoint": "{ENDPOINT}", "client_id": "gw", "client_secret": "s3cret"{extra}}}"#
        );
        Introspection::init(Config::from_json(&json)).expect("valid")
    }

    fn now() -> u64 {
        clock::now_millis() / 1000
    }

    /// The status `plugin` answers for `token` (`None`: passed), and the context.
    fn run(plugin: &Introspection, token: &str) -> (Option<u16>, Context) {
        let mut ctx = Context::new();
        let mut req = Request::new("GET", "/orders")
            .with_header("authorization", &format!("Bearer {token}"))
            .with_header("x-token-client", "spoofed");
        let status = match plugin.on_request(&mut req, &mut ctx) {
            Action::Continue => None,
            Action::Respond(response) => Some(response.status()),
        };
        (status, ctx)
    }

    #[test]
    fn an_active_token_passes_once_asked_and_then_from_the_cache() {
        testing::reset();
        let answer = format!(
            r#"{{"active": true, "sub": "alice", "scope": "orders:read", "exp": {}}}"#,
            now() + 600
        );
        testing::respond(ENDPOINT, 200, answer);
        let p = plugin(r#", "scopes": {"all_of": ["orders:read"]}"#);
        let (status, ctx) = run(&p, "tok-active-1");
        assert_eq!(status, None);
        assert_eq!(ctx.get(CONTEXT_CONSUMER).as_deref(), Some("alice"));
        assert_eq!(
            ctx.get(CONTEXT_AUTH).as_deref(),
            Some("oauth2-introspection")
        );
        assert_eq!(run(&p, "tok-active-1").0, None);
        assert_eq!(
            testing::calls().len(),
            1,
            "the second request was answered from the cache"
        );
    }

    #[test]
    fn inactive_expired_and_unscoped_tokens_are_refused() {
        testing::reset();
        testing::respond(ENDPOINT, 200, r#"{"active": false}"#);
        let p = plugin("");
        assert_eq!(run(&p, "tok-inactive").0, Some(401));
        let expired = format!(r#"{{"active": true, "exp": {}}}"#, now() - 1);
        testing::respond(ENDPOINT, 200, expired);
        assert_eq!(run(&p, "tok-expired").0, Some(401));
        testing::respond(ENDPOINT, 200, r#"{"active": true, "scope": "profile"}"#);
        let scoped = plugin(r#", "scopes": {"any_of": ["orders:read"]}"#);
        assert_eq!(run(&scoped, "tok-profile").0, Some(403));
        assert_eq!(run(&p, "").0, Some(401), "no token");
    }

    #[test]
    fn an_endpoint_that_fails_is_503_and_nothing_is_cached() {
        testing::reset();
        testing::respond(ENDPOINT, 500, "oops");
        let p = plugin("");
        assert_eq!(run(&p, "tok-x").0, Some(503));
        testing::respond(ENDPOINT, 200, "not json");
        assert_eq!(run(&p, "tok-x").0, Some(503));
        testing::respond(ENDPOINT, 200, r#"{"active": true}"#);
        assert_eq!(run(&p, "tok-x").0, None);
        assert_eq!(testing::calls().len(), 3);
    }

    #[test]
    fn tokens_are_bearer_token68_and_keys_are_hashes() {
        assert!(is_token68("abc.DEF-123_~+/=="));
        assert!(!is_token68("a b") && !is_token68("") && !is_token68("=") && !is_token68("a\"b"));
        let key = cache_key(ENDPOINT, "gw", "secret-token");
        assert_ne!(
            key,
            cache_key("https://other.example.com/i", "gw", "secret-token")
        );
        assert!(key.starts_with("token:") && !key.contains("secret"));
        assert_eq!(key.len(), "token:".len() + 64);
        assert_eq!(
            basic("a b", "p:w"),
            "Basic YStiOnAlM0F3" // RFC 6749 2.3.1: "a+b:p%3Aw", each part form-encoded, in base64
        );
    }
}
