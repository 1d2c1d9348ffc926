//! The built-in `cors` plugin: Cross-Origin Resource Sharing for browser
//! clients, as in the Fetch standard.
//!
//! - A preflight (`OPTIONS` with `Origin` and `Access-Control-Request-Method`)
//!   from an allowed origin, for an allowed method and headers, is answered
//!   `204` with the `Access-Control-Allow-*` headers, without reaching the
//!   upstream; any other preflight is answered `403` with the reason.
//! - Any other request from an allowed origin proceeds, and its answer
//!   (upstream, plugin or gateway error) carries `Access-Control-Allow-Origin`
//!   (and `-Credentials`, `-Expose-Headers` when configured). A request from
//!   another origin proceeds without them, so the browser withholds the answer.
//! - Unless every origin gets `*`, answers vary by `Origin`, and the response
//!   hook adds it to the upstream's `Vary` rather than replacing it.

use plugin_sdk::{Action, Config, Context, Headers, Needs, Plugin, Request, Response};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    /// `"*"`, `"https://app.example.com"` or `"https://*.example.com"`.
    origins: Vec<String>,
    #[serde(default = "default_methods")]
    methods: Vec<String>,
    /// Request headers a cross-origin request may carry; `"*"` for any.
    #[serde(default)]
    headers: Vec<String>,
    /// Response headers the browser lets the page read.
    #[serde(default)]
    expose_headers: Vec<String>,
    /// Cookies and `Authorization` allowed on cross-origin requests.
    #[serde(default)]
    credentials: bool,
    /// How long the browser may cache a preflight's answer.
    #[serde(default)]
    max_age: Option<String>,
}

fn default_methods() -> Vec<String> {
    ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]
        .map(String::from)
        .to_vec()
}

/// One entry of `origins`.
#[derive(Debug, PartialEq)]
enum Origin {
    Any,
    Exact(String),
    /// `scheme://*.rest`: the scheme part and `.rest`.
    Subdomains {
        scheme: String,
        suffix: String,
    },
}

impl Origin {
    fn parse(text: &str) -> Result<Origin, String> {
        if text == "*" {
            return Ok(Origin::Any);
        }
        let lower = text.to_ascii_lowercase();
        let (scheme, host) = lower
            .split_once("://")
            .filter(|(scheme, host)| !scheme.is_empty() && !host.is_empty())
            .ok_or_else(|| {
                format!("origin `{text}`: expected scheme://host[:port], for example \"https://app.example.com\"")
            })?;
        if host.contains('/') {
            return Err(format!(
                "origin `{text}`: an origin has no path (remove the trailing `/...`)"
            ));
        }
        // `*.` must be followed by two labels at least: `https://*.com` would
        // let every .com site in.
        let registrable = |suffix: &str| {
            let domain = suffix.split(':').next().unwrap_or_default();
            domain.len() > 1 && domain[1..].contains('.') && !domain.ends_with('.')
        };
        match host.strip_prefix('*') {
            Some(suffix)
                if suffix.starts_with('.') && !suffix.contains('*') && registrable(suffix) =>
            {
                Ok(Origin::Subdomains {
                    scheme: format!("{scheme}://"),
                    suffix: suffix.to_string(),
                })
            }
            Some(_) => Err(format!(
                "origin `{text}`: a wildcard may only open the host, as in \"https://*.example.com\""
            )),
            None if host.contains('*') => Err(format!(
                "origin `{text}`: a wildcard may only open the host, as in \"https://*.example.com\""
            )),
            None => Ok(Origin::Exact(lower)),
        }
    }

    fn allows(&self, origin: &str) -> bool {
        match self {
            Origin::Any => true,
            Origin::Exact(exact) => origin.eq_ignore_ascii_case(exact),
            Origin::Subdomains { scheme, suffix } => {
                let origin = origin.to_ascii_lowercase();
                origin
                    .strip_prefix(scheme.as_str())
                    .and_then(|host| host.strip_suffix(suffix.as_str()))
                    .is_some_and(|label| {
                        !label.is_empty()
                            && label
                                .bytes()
                                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
                    })
            }
        }
    }
}

/// The plugin, its settings checked at init.
#[derive(Debug)]
pub struct Cors {
    origins: Vec<Origin>,
    /// Upper case.
    methods: Vec<String>,
    /// Lower case; `None` for any.
    headers: Option<Vec<String>>,
    allow_methods: String,
    expose_headers: String,
    credentials: bool,
    max_age: Option<String>,
}

/// Where the request hook leaves the `Access-Control-Allow-Origin` value for
/// the response hook.
const ALLOWED: &str = "cors.allowed-origin";

impl Cors {
    /// `*` for everyone: no credentials, and the answer does not vary by origin.
    fn answers_star(&self) -> bool {
        !self.credentials && self.origins.contains(&Origin::Any)
    }

    /// The `Access-Control-Allow-Origin` value for `origin`, if it is allowed.
    fn allow_origin(&self, origin: &str) -> Option<String> {
        if self.answers_star() {
            return Some("*".to_string());
        }
        self.origins
            .iter()
            .any(|allowed| allowed.allows(origin))
            .then(|| origin.to_string())
    }

    fn preflight(&self, req: &Request, origin: &str, method: &str) -> Response {
        let refuse = |reason: String| {
            Response::json(
                403,
                &serde_json::json!({"error": format!("CORS preflight refused: {reason}"), "status": 403}),
            )
        };
        let Some(allow_origin) = self.allow_origin(origin) else {
            return refuse(format!("origin `{origin}` is not allowed"));
        };
        // GET, HEAD and POST are always allowed by the Fetch standard.
        let safelisted = ["GET", "HEAD", "POST"].contains(&method);
        if !safelisted && !self.methods.iter().any(|m| m.eq_ignore_ascii_case(method)) {
            return refuse(format!("method `{method}` is not allowed"));
        }
        let requested: Vec<String> = req
            .headers()
            .get_all("access-control-request-headers")
            .flat_map(|value| value.split(','))
            .map(|name| name.trim().to_ascii_lowercase())
            .filter(|name| !name.is_empty())
            .collect();
        if let Some(allowed) = &self.headers
            && let Some(refused) = requested.iter().find(|name| !allowed.contains(name))
        {
            return refuse(format!("header `{refused}` is not allowed"));
        }
        let mut answer = Response::new(204)
            .with_header("access-control-allow-origin", allow_origin)
            .with_header("access-control-allow-methods", self.allow_methods.as_str());
        if !requested.is_empty() {
            answer = answer.with_header("access-control-allow-headers", requested.join(", "));
        }
        if self.credentials {
            answer = answer.with_header("access-control-allow-credentials", "true");
        }
        if let Some(seconds) = &self.max_age {
            answer = answer.with_header("access-control-max-age", seconds.as_str());
        }
        if !self.answers_star() {
            answer = answer.with_header(
                "vary",
                "Origin, Access-Control-Request-Method, Access-Control-Request-Headers",
            );
        }
        answer
    }
}

impl Cors {
    /// Puts the allow headers on the answer, whatever it is (upstream, a later
    /// plugin, a gateway error), so the page can read why its request failed.
    fn mark(&self, ctx: &mut Context, allow: &str) {
        let _ = ctx.set_response_header("access-control-allow-origin", allow);
        if self.credentials {
            let _ = ctx.set_response_header("access-control-allow-credentials", "true");
        }
        if !self.expose_headers.is_empty() {
            let _ = ctx.set_response_header("access-control-expose-headers", &self.expose_headers);
        }
        ctx.set(ALLOWED, allow);
    }
}

impl Plugin for Cors {
    const NAME: &'static str = "cors";

    fn needs(&self) -> Needs {
        Needs::REQUEST | Needs::RESPONSE
    }

    fn init(config: Config) -> Result<Self, String> {
        let settings: Settings = config.parse()?;
        if settings.origins.is_empty() {
            return Err("origins: list at least one origin, or \"*\" for any".to_string());
        }
        let origins = settings
            .origins
            .iter()
            .map(|o| Origin::parse(o).map_err(|e| format!("origins: {e}")))
            .collect::<Result<Vec<_>, _>>()?;
        if settings.credentials && origins.contains(&Origin::Any) {
            return Err(
                "credentials = true cannot go with origins = [\"*\"]: list the origins that may send credentials"
                    .to_string(),
            );
        }
        if settings.methods.is_empty() {
            return Err("methods: list at least one method".to_string());
        }
        let methods: Vec<String> = settings
            .methods
            .iter()
            .map(|m| m.to_ascii_uppercase())
            .collect();
        if let Some(bad) = methods
            .iter()
            .find(|m| !Headers::is_valid_name(m) || *m == "*")
        {
            return Err(format!(
                "methods: invalid method `{bad}` (list the methods; there is no wildcard)"
            ));
        }
        let any_header = settings.headers.iter().any(|h| h == "*");
        if any_header && settings.credentials {
            return Err(
                "headers = [\"*\"] cannot go with credentials = true: list the headers".to_string(),
            );
        }
        if settings.credentials && settings.expose_headers.iter().any(|h| h == "*") {
            return Err(
                "expose_headers = [\"*\"] cannot go with credentials = true (browsers then read `*` as a header name): list the headers"
                    .to_string(),
            );
        }
        let names = settings.headers.iter().filter(|h| *h != "*");
        if let Some(bad) = names
            .chain(settings.expose_headers.iter())
            .find(|h| !Headers::is_valid_name(h))
        {
            return Err(format!("invalid header name `{bad}`"));
        }
        let max_age = settings
            .max_age
            .as_deref()
            .map(|text| {
                plugin_sdk::units::parse_duration(text)
                    .map(|d| d.as_secs().to_string())
                    .map_err(|e| format!("max_age: {e}"))
            })
            .transpose()?;
        Ok(Cors {
            origins,
            allow_methods: methods.join(", "),
            methods,
            headers: (!any_header).then(|| {
                settings
                    .headers
                    .iter()
                    .map(|h| h.to_ascii_lowercase())
                    .collect()
            }),
            expose_headers: settings.expose_headers.join(", "),
            credentials: settings.credentials,
            max_age,
        })
    }

    fn on_request(&self, req: &mut Request, ctx: &mut Context) -> Action {
        let Some(origin) = req.headers().get("origin").map(str::to_string) else {
            if self.answers_star() {
                // The same answer for every origin, with or without one, so a
                // cache may serve it to anyone.
                self.mark(ctx, "*");
            }
            return Action::Continue;
        };
        if req.method() == "OPTIONS"
            && let Some(method) = req.headers().get("access-control-request-method")
        {
            let method = method.to_string();
            return Action::Respond(self.preflight(req, &origin, &method));
        }
        if let Some(allow) = self.allow_origin(&origin) {
            self.mark(ctx, &allow);
        }
        Action::Continue
    }

    fn on_response(&self, _req: &Request, resp: &mut Response, _ctx: &mut Context) {
        if self.answers_star() {
            return;
        }
        // The answer depends on the request's `Origin`: caches must key on it.
        let headers = resp.headers_mut();
        let listed = headers
            .get_all("vary")
            .flat_map(|value| value.split(','))
            .any(|name| {
                let name = name.trim();
                name == "*" || name.eq_ignore_ascii_case("origin")
            });
        if !listed {
            headers.append("vary", "Origin");
        }
    }
}

plugin_sdk::export!(Cors);

#[cfg(test)]
mod tests {
    use super::*;

    fn cors(config: &str) -> Cors {
        match Cors::init(Config::from_json(config)) {
            Ok(plugin) => plugin,
            Err(err) => panic!("{config}: {err}"),
        }
    }

    fn refused(config: &str) -> String {
        Cors::init(Config::from_json(config))
            .err()
            .unwrap_or_else(|| panic!("{config} was accepted"))
    }

    fn respond(action: Action) -> Response {
        match action {
            Action::Respond(response) => response,
            Action::Continue => panic!("expected an answer"),
        }
    }

    #[test]
    fn origins_match_exactly_or_by_subdomain() {
        let exact = Origin::parse("https://App.example.com").expect("exact");
        assert!(exact.allows("https://app.example.com"));
        assert!(!exact.allows("http://app.example.com"));
        assert!(!exact.allows("https://app.example.com.evil.net"));
        let wild = Origin::parse("https://*.example.com").expect("wildcard");
        assert!(wild.allows("https://a.example.com"));
        assert!(wild.allows("https://a.b.example.com"));
        assert!(!wild.allows("https://example.com"));
        assert!(!wild.allows("https://evil-example.com"));
        assert!(!wild.allows("https://a.example.com:8443"));
        assert!(!wild.allows("http://a.example.com"));
        assert!(!wild.allows("https://a/b.example.com"));
        let port = Origin::parse("https://*.example.com:8443").expect("port");
        assert!(port.allows("https://a.example.com:8443"));
        for bad in [
            "example.com",
            "https://",
            "https://*example.com",
            "https://a.*.com",
            "https://a.com/x",
            "https://*.com",
            "https://*.com:443",
        ] {
            assert!(Origin::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn preflights_are_answered_here() {
        let p = cors(
            r#"{"origins": ["https://app.example.com"], "methods": ["get", "put"],
                "headers": ["Authorization", "content-type"], "credentials": true, "max_age": "10m"}"#,
        );
        let mut req = Request::new("OPTIONS", "/items")
            .with_header("origin", "https://app.example.com")
            .with_header("access-control-request-method", "PUT")
            .with_header(
                "access-control-request-headers",
                "content-type, authorization",
            );
        let answer = respond(p.on_request(&mut req, &mut Context::new()));
        let h = answer.headers();
        assert_eq!(answer.status(), 204);
        assert_eq!(
            h.get("access-control-allow-origin"),
            Some("https://app.example.com")
        );
        assert_eq!(h.get("access-control-allow-methods"), Some("GET, PUT"));
        assert_eq!(
            h.get("access-control-allow-headers"),
            Some("content-type, authorization")
        );
        assert_eq!(h.get("access-control-allow-credentials"), Some("true"));
        assert_eq!(h.get("access-control-max-age"), Some("600"));
        assert!(h.get("vary").is_some_and(|v| v.starts_with("Origin")));

        for (header, value, reason) in [
            (
                "origin",
                "https://evil.example.net",
                "origin `https://evil.example.net`",
            ),
            ("access-control-request-method", "DELETE", "method `DELETE`"),
            (
                "access-control-request-headers",
                "x-secret",
                "header `x-secret`",
            ),
        ] {
            let mut bad = req.clone();
            bad.headers_mut().set(header, value);
            let answer = respond(p.on_request(&mut bad, &mut Context::new()));
            assert_eq!(answer.status(), 403, "{header}");
            let body = String::from_utf8_lossy(answer.body().unwrap_or_default()).to_string();
            assert!(body.contains(reason), "{body}");
        }
    }

    #[test]
    fn requests_from_allowed_origins_get_the_headers_and_others_do_not() {
        let p = cors(
            r#"{"origins": ["https://*.example.com"], "expose_headers": ["x-request-id"], "credentials": true}"#,
        );
        let mut ctx = Context::new();
        let mut req =
            Request::new("GET", "/items").with_header("origin", "https://shop.example.com");
        assert!(matches!(p.on_request(&mut req, &mut ctx), Action::Continue));
        let set: Vec<(String, String)> = ctx.response_headers().to_vec();
        assert!(set.contains(&(
            "access-control-allow-origin".into(),
            "https://shop.example.com".into()
        )));
        assert!(set.contains(&("access-control-allow-credentials".into(), "true".into())));
        assert!(set.contains(&(
            "access-control-expose-headers".into(),
            "x-request-id".into()
        )));

        let mut other = Context::new();
        let mut req = Request::new("GET", "/items").with_header("origin", "https://example.org");
        assert!(matches!(
            p.on_request(&mut req, &mut other),
            Action::Continue
        ));
        assert!(other.response_headers().is_empty());
        // Not a preflight without Access-Control-Request-Method.
        let mut options =
            Request::new("OPTIONS", "/items").with_header("origin", "https://a.example.com");
        assert!(matches!(
            p.on_request(&mut options, &mut Context::new()),
            Action::Continue
        ));

        // The upstream's Vary is kept, and Origin added once.
        let mut resp = Response::new(200).with_header("vary", "Accept-Encoding");
        p.on_response(&Request::new("GET", "/"), &mut resp, &mut ctx);
        assert_eq!(
            resp.headers().get_all("vary").collect::<Vec<_>>(),
            ["Accept-Encoding", "Origin"]
        );
        p.on_response(&Request::new("GET", "/"), &mut resp, &mut ctx);
        assert_eq!(resp.headers().get_all("vary").count(), 2);
    }

    #[test]
    fn star_for_everyone_needs_no_vary() {
        let p = cors(r#"{"origins": ["*"]}"#);
        // Without an Origin too: a cached copy must serve cross-origin pages.
        let mut plain = Context::new();
        p.on_request(&mut Request::new("GET", "/"), &mut plain);
        assert_eq!(
            plain.response_headers(),
            [("access-control-allow-origin".to_string(), "*".to_string())]
        );
        let mut ctx = Context::new();
        let mut req = Request::new("GET", "/").with_header("origin", "https://anyone.test");
        p.on_request(&mut req, &mut ctx);
        assert_eq!(
            ctx.response_headers(),
            [("access-control-allow-origin".to_string(), "*".to_string())]
        );
        let mut resp = Response::new(200);
        p.on_response(&Request::new("GET", "/"), &mut resp, &mut ctx);
        assert!(!resp.headers().contains("vary"));
    }

    #[test]
    fn unsafe_or_invalid_settings_are_refused() {
        assert!(refused(r#"{"origins": ["*"], "credentials": true}"#).contains("credentials"));
        assert!(
            refused(r#"{"origins": ["https://a.com"], "headers": ["*"], "credentials": true}"#)
                .contains("headers")
        );
        assert!(refused(r#"{"origins": []}"#).contains("at least one origin"));
        assert!(refused(r#"{"origins": ["https://*.*.com"]}"#).contains("wildcard"));
        assert!(refused(r#"{"origins": ["*"], "max_age": "soon"}"#).contains("max_age"));
        assert!(refused(r#"{"origins": ["*"], "methods": ["GE T"]}"#).contains("GE T"));
        assert!(refused(r#"{"origins": ["*"], "methods": ["*"]}"#).contains("no wildcard"));
        assert!(
            refused(
                r#"{"origins": ["https://a.com"], "expose_headers": ["*"], "credentials": true}"#
            )
            .contains("expose_headers")
        );
        assert!(refused(r#"{"origin": ["*"]}"#).contains("unknown field"));
    }
}
