//! The built-in `basic-auth` plugin: HTTP Basic authentication (RFC 7617)
//! against the consumers' passwords, as in Kong's basic-auth.
//!
//! The plugin only reads the `Authorization` header; the gateway checks the
//! password against the stored hash (`consumers::verify_password`), outside
//! the plugin's CPU deadline, and remembers a verified credential for a
//! while, so a valid caller pays the hash once. No plugin holds a stored
//! hash. On success the consumer goes into the context as key-auth puts it
//! (`consumer`, `consumer.groups`, `consumer.plan`), optionally into
//! `x-consumer-*` headers, and the `Authorization` header is removed before
//! the request is proxied. On failure the client gets 401 with a `Basic`
//! challenge; when the gateway is checking too many passwords at once, 503.
//!
//! The credentials are base64 (padded or not) of UTF-8 text, as the
//! `charset="UTF-8"` of the challenge asks; other bytes are malformed. An
//! empty user name or password is never valid.
//!
//! A credential must be given once: two `Authorization` lines, or a comma
//! in one (two joined by a proxy), get 401, since the upstream might read
//! another copy than the one checked here. Headers under the consumer
//! header prefix that the client sent are removed first, whatever the
//! outcome.

use base64::Engine as _;
use plugin_sdk::consumers::{self, Consumer, PasswordCheck};
use plugin_sdk::{Action, Config, Context, Needs, Plugin, Repeated, Request, Response, log};
use serde::Deserialize;

/// The longest `Authorization` value read; longer ones are refused unread.
const MAX_HEADER: usize = 4096;
/// The most characters of a refused user name a log line shows.
const LOGGED_NAME: usize = 64;

/// Standard base64, with or without its padding.
const BASE64: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    base64::engine::GeneralPurposeConfig::new()
        .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    /// The realm in the `WWW-Authenticate` challenge.
    #[serde(default = "default_realm")]
    realm: String,
    /// Remove `Authorization` from the request before it is proxied.
    #[serde(default = "yes")]
    hide_credentials: bool,
    /// Send `<prefix>name`, `<prefix>groups` and `<prefix>plan` upstream.
    #[serde(default = "yes")]
    consumer_headers: bool,
    /// The prefix of the consumer headers.
    #[serde(default = "consumers::default_header_prefix")]
    header_prefix: String,
}

fn default_realm() -> String {
    "gateway".to_string()
}

fn yes() -> bool {
    true
}

/// Why a request carries no usable credential.
#[derive(Debug, PartialEq, Eq)]
enum Refusal {
    /// No `Authorization` header, or one of another scheme.
    Missing,
    /// Given more than once.
    Repeated,
    /// Not `Basic <base64 of user:password>`.
    Malformed,
}

impl From<Repeated> for Refusal {
    fn from(_: Repeated) -> Self {
        Refusal::Repeated
    }
}

/// The user name and password of `Basic <credentials>`.
fn credentials(req: &Request) -> Result<(String, String), Refusal> {
    let value = match req.headers().single("authorization")? {
        Some(value) => value.trim(),
        None if req.headers().contains("authorization") => return Err(Refusal::Malformed),
        None => return Err(Refusal::Missing),
    };
    if value.contains(',') {
        return Err(Refusal::Repeated);
    }
    if value.len() > MAX_HEADER {
        return Err(Refusal::Malformed);
    }
    let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(Refusal::Missing);
    }
    let decoded = BASE64
        .decode(token.trim_start())
        .map_err(|_| Refusal::Malformed)?;
    let text = String::from_utf8(decoded).map_err(|_| Refusal::Malformed)?;
    let (user, password) = text.split_once(':').ok_or(Refusal::Malformed)?;
    Ok((user.to_string(), password.to_string()))
}

/// The plugin with its checked settings.
#[derive(Debug)]
pub struct BasicAuth {
    settings: Settings,
    challenge: String,
}

impl BasicAuth {
    fn unauthorized(&self, req: &Request, reason: &str) -> Action {
        Action::Respond(
            Response::denied(401, reason, req)
                .with_header("www-authenticate", self.challenge.clone()),
        )
    }

    fn admit(&self, req: &mut Request, ctx: &mut Context, consumer: &Consumer) -> Action {
        consumer.identify(ctx, "basic-auth");
        if self.settings.hide_credentials {
            req.headers_mut().remove_alike("authorization");
        }
        if self.settings.consumer_headers {
            consumer.set_headers(req.headers_mut(), &self.settings.header_prefix);
        }
        Action::Continue
    }

    fn refuse(&self, req: &Request, refusal: &Refusal) -> Action {
        match refusal {
            Refusal::Missing => self.unauthorized(req, "missing basic credentials"),
            Refusal::Repeated => {
                log::info(&format!(
                    "basic-auth: credentials given more than once on route `{}` from {}",
                    req.route(),
                    req.client_addr()
                ));
                self.unauthorized(req, "credential given more than once")
            }
            Refusal::Malformed => self.unauthorized(req, "malformed basic credentials"),
        }
    }
}

impl Plugin for BasicAuth {
    const NAME: &'static str = "basic-auth";

    fn needs(&self) -> Needs {
        Needs::REQUEST
    }

    fn init(config: Config) -> Result<Self, String> {
        let mut settings: Settings = config.parse()?;
        settings.header_prefix =
            consumers::checked_header_prefix("basic-auth", &settings.header_prefix)?;
        consumers::check_realm("basic-auth", &settings.realm)?;
        let challenge = format!("Basic realm=\"{}\", charset=\"UTF-8\"", settings.realm);
        Ok(BasicAuth {
            settings,
            challenge,
        })
    }

    fn on_request(&self, req: &mut Request, ctx: &mut Context) -> Action {
        req.headers_mut()
            .remove_prefixed(&self.settings.header_prefix);
        let (user, password) = match credentials(req) {
            Ok(found) => found,
            Err(refusal) => return self.refuse(req, &refusal),
        };
        match consumers::verify_password(&user, &password) {
            PasswordCheck::Valid(consumer) => self.admit(req, ctx, &consumer),
            PasswordCheck::Invalid => {
                let shown: String = user.chars().take(LOGGED_NAME).collect();
                log::info(&format!(
                    "basic-auth: invalid credentials for user `{}` on route `{}` from {}",
                    shown.escape_debug(),
                    req.route(),
                    req.client_addr()
                ));
                self.unauthorized(req, "invalid credentials")
            }
            PasswordCheck::Busy => Action::Respond(
                Response::error(503, "too many password checks at once; try again", req)
                    .with_header("retry-after", "1"),
            ),
        }
    }
}

plugin_sdk::export!(BasicAuth);

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() {
        consumers::register_password(
            Consumer {
                name: "alice".into(),
                groups: vec!["gold".into()],
                plan: None,
                metadata: vec![],
            },
            "alice",
            "wonderland-secret-1",
        );
    }

    fn plugin(json: &str) -> BasicAuth {
        match BasicAuth::init(Config::from_json(json)) {
            Ok(plugin) => plugin,
            Err(e) => panic!("init failed: {e}"),
        }
    }

    fn basic(user_and_password: &str) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(user_and_password)
        )
    }

    /// The status, challenge and error of a refusal.
    fn answer(auth: &BasicAuth, req: &mut Request) -> (Option<u16>, Option<String>, String) {
        match auth.on_request(req, &mut Context::new()) {
            Action::Respond(response) => {
                let body: serde_json::Value =
                    serde_json::from_slice(response.body().unwrap_or_default()).unwrap_or_default();
                (
                    Some(response.status()),
                    response
                        .headers()
                        .get("www-authenticate")
                        .map(str::to_string),
                    body["error"].as_str().unwrap_or_default().to_string(),
                )
            }
            _ => (None, None, String::new()),
        }
    }

    #[test]
    fn the_right_password_admits_and_the_header_goes() {
        setup();
        let auth = plugin("{}");
        let mut req = Request::new("GET", "/x")
            .with_header("authorization", &basic("alice:wonderland-secret-1"))
            .with_header("x-consumer-plan", "platinum");
        let mut ctx = Context::new();
        assert!(matches!(
            auth.on_request(&mut req, &mut ctx),
            Action::Continue
        ));
        assert_eq!(
            ctx.get(consumers::CONTEXT_CONSUMER).as_deref(),
            Some("alice")
        );
        assert_eq!(
            ctx.get(consumers::CONTEXT_AUTH).as_deref(),
            Some("basic-auth")
        );
        assert_eq!(req.headers().get("authorization"), None);
        assert_eq!(req.headers().get("x-consumer-name"), Some("alice"));
        // alice has no plan: the client's claim to one is gone.
        assert_eq!(req.headers().get("x-consumer-plan"), None);
    }

    #[test]
    fn wrong_missing_and_malformed_credentials_get_a_challenge() {
        setup();
        let auth = plugin(r#"{"realm": "zoo"}"#);
        let challenge = Some("Basic realm=\"zoo\", charset=\"UTF-8\"".to_string());
        let invalid = "unauthorized: invalid credentials";
        let malformed = "unauthorized: malformed basic credentials";
        let missing = "unauthorized: missing basic credentials";
        let twice = "unauthorized: credential given more than once";
        for (value, reason) in [
            (basic("alice:wonderland-secret-2"), invalid),
            (basic("bob:wonderland-secret-1"), invalid),
            (basic(":wonderland-secret-1"), invalid),
            (basic("alice:"), invalid),
            (basic("alice"), malformed),
            ("Basic !!!".to_string(), malformed),
            ("Bearer abc".to_string(), missing),
            (
                format!("{}, {}", basic("alice:wonderland-secret-1"), basic("a:b")),
                twice,
            ),
        ] {
            let mut req = Request::new("GET", "/x").with_header("authorization", &value);
            let expected = (Some(401), challenge.clone(), reason.to_string());
            assert_eq!(answer(&auth, &mut req), expected, "{value}");
        }
        let mut none = Request::new("GET", "/x");
        let expected = (Some(401), challenge.clone(), missing.to_string());
        assert_eq!(answer(&auth, &mut none), expected);
        let mut two_lines = Request::new("GET", "/x")
            .with_header("authorization", &basic("alice:wonderland-secret-1"))
            .with_header("authorization", &basic("alice:wonderland-secret-1"));
        let expected = (Some(401), challenge, twice.to_string());
        assert_eq!(answer(&auth, &mut two_lines), expected);
    }

    #[test]
    fn unpadded_credentials_are_read_and_a_busy_gateway_is_503() {
        setup();
        let auth = plugin("{}");
        let unpadded = basic("alice:wonderland-secret-1")
            .trim_end_matches('=')
            .to_string();
        let mut req = Request::new("GET", "/x").with_header("authorization", &unpadded);
        assert!(matches!(
            auth.on_request(&mut req, &mut Context::new()),
            Action::Continue
        ));
        consumers::set_password_checks_busy(true);
        let mut req = Request::new("GET", "/x")
            .with_header("authorization", &basic("alice:wonderland-secret-1"));
        let action = auth.on_request(&mut req, &mut Context::new());
        consumers::set_password_checks_busy(false);
        match action {
            Action::Respond(response) => {
                assert_eq!(response.status(), 503);
                assert_eq!(response.headers().get("retry-after"), Some("1"));
            }
            _ => panic!("a busy gateway admitted the request"),
        }
    }

    #[test]
    fn the_scheme_is_case_insensitive_and_the_password_may_hold_colons() {
        consumers::register_password(
            Consumer {
                name: "carol".into(),
                ..Consumer::default()
            },
            "carol",
            "a:b:c",
        );
        let auth = plugin(r#"{"hide_credentials": false, "consumer_headers": false}"#);
        let value = basic("carol:a:b:c").replacen("Basic", "bAsIc", 1);
        let mut req = Request::new("GET", "/x").with_header("authorization", &value);
        assert!(matches!(
            auth.on_request(&mut req, &mut Context::new()),
            Action::Continue
        ));
        assert_eq!(req.headers().get("authorization"), Some(value.as_str()));
        assert_eq!(req.headers().get("x-consumer-name"), None);
    }

    #[test]
    fn bad_settings_are_refused() {
        assert!(BasicAuth::init(Config::from_json(r#"{"realm": "a\"b"}"#)).is_err());
        assert!(BasicAuth::init(Config::from_json(r#"{"header_prefix": ""}"#)).is_err());
        assert!(BasicAuth::init(Config::from_json(r#"{"relm": "x"}"#)).is_err());
    }
}
