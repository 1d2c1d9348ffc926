//! The built-in `mtls-auth` plugin: the client certificate as the credential,
//! as in Kong's mtls-auth. The gateway verifies the certificate during the
//! TLS handshake (`[server.tls] client_ca`) and puts who it names in the
//! request context; this plugin maps that identity to a configured consumer.
//!
//! The candidate names are read in the configured order (`consumer_from`):
//! the subject's common name, then DNS, URI or email subject alternative
//! names. The first that names a consumer admits the request: the consumer
//! goes into the context (`consumer`, `consumer.groups`, `consumer.plan`) for
//! later plugins such as rate limiting, and optionally into `x-consumer-*`
//! headers for the upstream. No certificate: 401; a certificate that names no
//! consumer: 403. Headers under the consumer prefix sent by the client are
//! removed first, so a client cannot claim to be a consumer.

use plugin_sdk::consumers::{self, Consumer};
use plugin_sdk::{Action, Config, Context, Needs, Plugin, Request, Response, log};
use serde::Deserialize;

pub use plugin_sdk::consumers::{CONTEXT_AUTH, CONTEXT_CONSUMER, CONTEXT_GROUPS, CONTEXT_PLAN};
/// Context key the gateway fills with the certificate's subject common name.
pub const CONTEXT_CN: &str = "tls.client.cn";
/// Context key the gateway fills with the certificate's alternative names.
pub const CONTEXT_NAMES: &str = "tls.client.names";
/// Context key the gateway fills with the certificate's SHA-256 fingerprint.
pub const CONTEXT_FINGERPRINT: &str = "tls.client.fingerprint";
/// Context key the gateway sets when it could not read all of the
/// certificate's names (too many, or not text).
pub const CONTEXT_INCOMPLETE: &str = "tls.client.incomplete";

/// Where a consumer name may come from in the certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Source {
    /// The subject's common name.
    Cn,
    /// A `DNS` subject alternative name.
    Dns,
    /// A `URI` subject alternative name (a SPIFFE id, say).
    Uri,
    /// An `email` subject alternative name.
    Email,
}

impl Source {
    fn prefix(self) -> &'static str {
        match self {
            Source::Cn => "",
            Source::Dns => "DNS:",
            Source::Uri => "URI:",
            Source::Email => "email:",
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    /// The certificate's names to look consumers up by, in order.
    #[serde(default = "default_sources")]
    consumer_from: Vec<Source>,
    /// Send `<prefix>name`, `<prefix>groups` and `<prefix>plan` upstream.
    #[serde(default = "yes")]
    consumer_headers: bool,
    /// The prefix of the consumer headers.
    #[serde(default = "consumers::default_header_prefix")]
    header_prefix: String,
}

fn default_sources() -> Vec<Source> {
    vec![Source::Cn]
}

fn yes() -> bool {
    true
}

/// The plugin with its checked settings.
#[derive(Debug)]
pub struct MtlsAuth {
    settings: Settings,
}

impl MtlsAuth {
    /// The certificate's names to try, in the configured order.
    fn candidates(&self, ctx: &Context) -> Vec<String> {
        let names = ctx.get(CONTEXT_NAMES).unwrap_or_default();
        let mut candidates = Vec::new();
        for source in &self.settings.consumer_from {
            match source {
                Source::Cn => candidates.extend(ctx.get(CONTEXT_CN)),
                _ => candidates.extend(
                    names
                        .split(',')
                        .filter_map(|name| name.strip_prefix(source.prefix()))
                        .map(unescape),
                ),
            }
        }
        candidates.retain(|name| !name.is_empty());
        candidates
    }

    fn refuse(req: &Request, status: u16, reason: &str) -> Action {
        Action::Respond(Response::denied(status, reason, req))
    }

    fn admit(&self, req: &mut Request, ctx: &mut Context, consumer: &Consumer) {
        consumer.identify(ctx, "mtls-auth");
        if self.settings.consumer_headers {
            consumer.set_headers(req.headers_mut(), &self.settings.header_prefix);
        }
    }
}

/// One name of `tls.client.names`, where the gateway wrote `%` and `,` as
/// `%25` and `%2C`.
fn unescape(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut rest = name;
    while let Some(at) = rest.find('%') {
        out.push_str(&rest[..at]);
        let escaped = &rest[at..];
        if let Some(after) = escaped.strip_prefix("%2C") {
            out.push(',');
            rest = after;
        } else if let Some(after) = escaped.strip_prefix("%25") {
            out.push('%');
            rest = after;
        } else {
            out.push('%');
            rest = &escaped[1..];
        }
    }
    out.push_str(rest);
    out
}

impl Plugin for MtlsAuth {
    const NAME: &'static str = "mtls-auth";

    fn needs(&self) -> Needs {
        Needs::REQUEST
    }

    fn init(config: Config) -> Result<Self, String> {
        let mut settings: Settings = config.parse()?;
        if settings.consumer_from.is_empty() {
            return Err(
                "mtls-auth: consumer_from needs at least one of \"cn\", \"dns\", \"uri\", \"email\""
                    .into(),
            );
        }
        settings.header_prefix =
            consumers::checked_header_prefix("mtls-auth", &settings.header_prefix)?;
        Ok(MtlsAuth { settings })
    }

    fn on_request(&self, req: &mut Request, ctx: &mut Context) -> Action {
        req.headers_mut()
            .remove_prefixed(&self.settings.header_prefix);
        if ctx.get(CONTEXT_FINGERPRINT).is_none() {
            return Self::refuse(req, 401, "a client certificate is required");
        }
        if ctx.get(CONTEXT_INCOMPLETE).is_some() {
            // A name left out could have been the one that matched first.
            return Self::refuse(req, 403, "the client certificate could not be read in full");
        }
        let candidates = self.candidates(ctx);
        match candidates.iter().find_map(|name| consumers::get(name)) {
            Some(consumer) => {
                self.admit(req, ctx, &consumer);
                Action::Continue
            }
            None => {
                log::info(&format!(
                    "mtls-auth: no consumer named by the certificate ({}) on route `{}` from {}",
                    candidates.join(", "),
                    req.route(),
                    req.client_addr()
                ));
                Self::refuse(req, 403, "the client certificate names no consumer")
            }
        }
    }
}

plugin_sdk::export!(MtlsAuth);

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() {
        consumers::register(
            Consumer {
                name: "billing".into(),
                groups: vec!["internal".into()],
                plan: Some("gold".into()),
                metadata: vec![],
            },
            &[],
        );
        consumers::register(
            Consumer {
                name: "spiffe://acme/ns/prod/sa/orders".into(),
                groups: vec![],
                plan: None,
                metadata: vec![],
            },
            &[],
        );
    }

    fn plugin(json: &str) -> MtlsAuth {
        match MtlsAuth::init(Config::from_json(json)) {
            Ok(plugin) => plugin,
            Err(e) => panic!("init failed: {e}"),
        }
    }

    /// The context the gateway fills for a verified certificate.
    fn presented(cn: Option<&str>, names: &str) -> Context {
        let mut ctx = Context::new();
        ctx.set(CONTEXT_FINGERPRINT, "ab".repeat(32));
        if let Some(cn) = cn {
            ctx.set(CONTEXT_CN, cn);
        }
        ctx.set(CONTEXT_NAMES, names);
        ctx
    }

    fn status(action: &Action) -> Option<u16> {
        match action {
            Action::Respond(response) => Some(response.status()),
            _ => None,
        }
    }

    #[test]
    fn the_common_name_names_the_consumer() {
        setup();
        let auth = plugin("{}");
        let mut req = Request::new("GET", "/x").with_header("x-consumer-name", "mallory");
        let mut ctx = presented(Some("billing"), "DNS:billing.internal");
        assert!(matches!(
            auth.on_request(&mut req, &mut ctx),
            Action::Continue
        ));
        assert_eq!(ctx.get(CONTEXT_CONSUMER).as_deref(), Some("billing"));
        assert_eq!(ctx.get(CONTEXT_PLAN).as_deref(), Some("gold"));
        assert_eq!(ctx.get(CONTEXT_AUTH).as_deref(), Some("mtls-auth"));
        assert_eq!(req.headers().get("x-consumer-name"), Some("billing"));
        assert_eq!(req.headers().get_all("x-consumer-name").count(), 1);
        assert_eq!(req.headers().get("x-consumer-groups"), Some("internal"));
    }

    #[test]
    fn alternative_names_are_tried_in_the_configured_order() {
        setup();
        let auth = plugin(r#"{"consumer_from": ["dns", "uri"]}"#);
        let mut ctx = presented(
            Some("billing"),
            "DNS:unknown.internal,URI:spiffe://acme/ns/prod/sa/orders",
        );
        let mut req = Request::new("GET", "/x");
        assert!(matches!(
            auth.on_request(&mut req, &mut ctx),
            Action::Continue
        ));
        // The CN was not asked for: the URI matched.
        assert_eq!(
            ctx.get(CONTEXT_CONSUMER).as_deref(),
            Some("spiffe://acme/ns/prod/sa/orders")
        );
    }

    #[test]
    fn no_certificate_is_401_and_an_unknown_one_403() {
        setup();
        let auth = plugin("{}");
        let mut req = Request::new("GET", "/x");
        let mut none = Context::new();
        assert_eq!(status(&auth.on_request(&mut req, &mut none)), Some(401));
        let mut unknown = presented(Some("intruder"), "DNS:billing");
        let action = auth.on_request(&mut req, &mut unknown);
        assert_eq!(status(&action), Some(403));
        if let Action::Respond(response) = &action {
            let body: serde_json::Value =
                serde_json::from_slice(response.body().unwrap_or_default()).unwrap_or_default();
            assert_eq!(
                body["error"],
                "forbidden: the client certificate names no consumer"
            );
        }
        assert_eq!(unknown.get(CONTEXT_CONSUMER), None);
        // A certificate the gateway could not read in full.
        let mut partial = presented(Some("billing"), "DNS:billing");
        partial.set(CONTEXT_INCOMPLETE, "true");
        assert_eq!(status(&auth.on_request(&mut req, &mut partial)), Some(403));
        // A certificate without a CN, asked for by CN only.
        let mut no_cn = presented(None, "DNS:billing");
        assert_eq!(status(&auth.on_request(&mut req, &mut no_cn)), Some(403));
    }

    #[test]
    fn a_comma_inside_a_name_does_not_make_two_names() {
        setup();
        consumers::register(
            Consumer {
                name: "admin.example".into(),
                groups: vec![],
                plan: None,
                metadata: vec![],
            },
            &[],
        );
        let auth = plugin(r#"{"consumer_from": ["dns"]}"#);
        // One URI name, `spiffe://acme/x,DNS:admin.example`, as the gateway writes it.
        let mut ctx = presented(None, "URI:spiffe://acme/x%2CDNS:admin.example");
        let mut req = Request::new("GET", "/x");
        assert_eq!(status(&auth.on_request(&mut req, &mut ctx)), Some(403));
        assert_eq!(unescape("a%2Cb%252C%"), "a,b%2C%");
    }

    #[test]
    fn bad_settings_are_refused() {
        assert!(MtlsAuth::init(Config::from_json(r#"{"consumer_from": []}"#)).is_err());
        assert!(MtlsAuth::init(Config::from_json(r#"{"consumer_from": ["ou"]}"#)).is_err());
        assert!(MtlsAuth::init(Config::from_json(r#"{"header_prefix": ""}"#)).is_err());
        assert!(MtlsAuth::init(Config::from_json(r#"{"consumer_form": ["cn"]}"#)).is_err());
    }
}
