//! The built-in `jwt` plugin: bearer JSON Web Tokens (compact JWS, RFC 7515
//! and RFC 7519), verified with the keys in the configuration.
//!
//! The token is read from the `Authorization: Bearer` header (or the
//! configured `header`), the `query` parameter or the `cookie`: from one of
//! them, once. A request that holds something in two of them, or repeats one
//! (two header lines, a comma-joined line, the parameter or the cookie
//! twice), is refused (RFC 6750 2), since the upstream might read another
//! copy than the one verified here. Its
//! signature is checked with the SDK's `crypto` host functions, each key bound
//! to one algorithm of the `algorithms` allow-list, and its claims against the
//! clock (`exp`, `nbf` with `leeway`), `required_claims`, `issuer` and
//! `audience`; then against the route's `scopes` and `claim_rules`
//! (`plugin_sdk::authz`: `403` with an `insufficient_scope` challenge when
//! they do not hold). On success, chosen claims go into the request context
//! (`jwt.claim.<name>`) and upstream headers, the consumer named by
//! `consumer_claim` into `consumer`, `consumer.groups` and `consumer.plan`,
//! and `auth.method` is `jwt`. On failure the client gets 401 with an
//! RFC 6750 challenge and a JSON body, and the log gets one info line with
//! the route, the reason and the (sanitised) `kid`, never the token.
//!
//! The rules that matter for security, each tested in `tests/`:
//!
//! - The token is three segments of strict unpadded base64url; header and
//!   payload are JSON objects with unique member names. A token longer than
//!   `max_token_bytes` is refused before any decoding.
//! - `alg` must be in the allow-list, case-sensitively; `none` cannot be
//!   configured. `crit` (RFC 7515 4.1.11) and `b64: false` (RFC 7797) are
//!   refused: this plugin implements no extension.
//! - Keys come from the configuration and `jwks_url` only: header `jwk`,
//!   `jku`, `x5u` and `x5c` are never read. A key is found by `kid` and `alg`; a `kid` naming
//!   several keys for that algorithm, or both a secret and a public key, is
//!   refused as ambiguous. A token without a `kid` (or with one no key has)
//!   is tried against at most 8 keys of its algorithm that carry no `kid`
//!   (all keys of that algorithm when the token has no `kid`).
//! - A JWK set that mixes HMAC secrets with public keys is a config error;
//!   a set fetched from `jwks_url` gives public keys only.
//!
//! **Keys from a URL.** With `jwks_url`, the set is fetched at `init` through
//! the host's shared fetch, again when older than `jwks_refresh`, and early
//! when a token names an unknown `kid`, at most once per `jwks_min_refetch`
//! (see `jwks_url.rs`). A failed fetch keeps the last good keys; a new set
//! replaces the previous one's keys and empties the verified-token cache.
//!
//! **Verified-token cache.** Like Envoy's `jwt_cache`, each instance keeps up
//! to 1024 tokens that passed every check, keyed by the exact token text, with
//! their claims. A repeated token skips the signature check (the expensive
//! part, especially RSA); `exp` and `nbf` are still checked against the clock
//! on every hit, and an expired token is dropped. The cache is cleared when
//! full. It holds nothing a request could not recompute, and it lives and dies
//! with the instance, so a config reload starts it empty.
//!
//! Whatever the outcome, the headers named in `claims_to_headers` are removed
//! from the request first, so a client cannot pose as a claim.

mod cache;
mod claims;
mod config;
mod extract;
mod jwks_url;
mod keys;
mod reason;
pub mod token;
mod validator;

pub use claims::{ClaimRules, Window};
pub use keys::{KeyConfig, KeyList, KeyStore, MAX_ATTEMPTS};
pub use reason::Reason;
pub use validator::{Jws, Validator, Verified};

use config::{Loaded, Options};
use jwks_url::JwksUrl;
use plugin_sdk::{
    Action, Config, Context, Needs, Plugin, Repeated, Request, Response, clock, consumers, log,
};
use serde_json::Value;

pub use plugin_sdk::consumers::{CONTEXT_AUTH, CONTEXT_CONSUMER, CONTEXT_GROUPS, CONTEXT_PLAN};
/// Prefix of the context keys that hold claims (`claims_to_context`).
pub const CONTEXT_CLAIM_PREFIX: &str = "jwt.claim.";

/// The plugin with its checked settings and keys.
#[derive(Debug)]
pub struct Jwt {
    options: Options,
    validator: Validator,
    jwks_url: Option<JwksUrl>,
}

impl Jwt {
    /// [`init`](Plugin::init) at a chosen time, in milliseconds since the
    /// epoch: the time the first `jwks_url` fetch is taken to happen at.
    pub fn init_at(config: Config, now_ms: u64) -> Result<Jwt, String> {
        let Loaded {
            options,
            validator,
            jwks_url,
        } = config::load(&config)?;
        if let Some(jwks_url) = &jwks_url {
            jwks_url.start(&validator, now_ms)?;
        }
        Ok(Jwt {
            options,
            validator,
            jwks_url,
        })
    }

    /// The validator, to check tokens at a chosen time in tests.
    pub fn validator(&self) -> &Validator {
        &self.validator
    }

    /// Checks `token` as a request at `now_ms` (milliseconds since the epoch)
    /// does: with `jwks_url`, the keys are first refreshed if due, and a token
    /// refused for a `kid` no key has is checked again if an early refetch
    /// brings new keys.
    pub fn check(&self, token: &str, now_ms: u64) -> Result<Verified, Reason> {
        let now = i64::try_from(now_ms / 1000).unwrap_or(i64::MAX);
        let Some(jwks_url) = &self.jwks_url else {
            return self.validator.validate(token, now);
        };
        jwks_url.refresh_if_due(&self.validator, now_ms);
        let result = self.validator.validate(token, now);
        // A kid without a key may be a key the issuer just rotated in. Keys
        // without a kid serve such a token too, so an invalid signature can
        // mean the same.
        if let Err(Reason::UnknownKey | Reason::InvalidSignature) = result
            && token::peek_kid(token).is_some_and(|kid| !self.validator.knows_kid(&kid))
            && jwks_url.refetch_for_unknown_kid(&self.validator, now_ms)
        {
            return self.validator.validate(token, now);
        }
        result
    }

    fn refuse(&self, req: &Request, token: Option<&str>, reason: &Reason) -> Action {
        let kid = token
            .filter(|token| token.len() <= self.validator.max_token_bytes())
            .and_then(token::peek_kid)
            .map_or_else(|| "-".to_string(), |kid| sanitise(&kid));
        log::info(&format!(
            "jwt: refused a request on route `{}`: {reason} (kid {kid})",
            req.route()
        ));
        let realm = &self.options.realm;
        let challenge = match reason {
            // RFC 6750 3.1: no error code when the request had no credentials.
            Reason::MissingToken => format!("Bearer realm=\"{realm}\""),
            // RFC 6750 3.1: more than one method, or a repeated parameter.
            Reason::Repeated => format!(
                "Bearer realm=\"{realm}\", error=\"invalid_request\", error_description=\"{reason}\""
            ),
            reason => format!(
                "Bearer realm=\"{realm}\", error=\"invalid_token\", error_description=\"{reason}\""
            ),
        };
        Action::Respond(
            Response::denied(401, &reason.to_string(), req)
                .with_header("www-authenticate", challenge),
        )
    }

    /// Removes client-sent copies of the claim headers.
    fn strip_spoofed(&self, req: &mut Request) {
        for (_, header) in &self.options.claims_to_headers {
            req.headers_mut().remove_alike(header);
        }
    }

    /// Sets the consumer context; `Err` when the token must be refused.
    fn identify(&self, ctx: &mut Context, verified: &Verified) -> Result<(), Reason> {
        let Some(claim) = &self.options.consumer_claim else {
            return Ok(());
        };
        let name = match verified.claim(claim) {
            Some(Value::String(name)) if !name.is_empty() => name,
            _ => return Err(Reason::MissingClaim(claim.clone())),
        };
        match consumers::get(name) {
            Some(consumer) => consumer.identify(ctx, "jwt"),
            None if self.options.consumer_must_exist => return Err(Reason::UnknownConsumer),
            None => {
                ctx.set(CONTEXT_CONSUMER, name.as_str());
                ctx.remove(CONTEXT_GROUPS);
                ctx.remove(CONTEXT_PLAN);
            }
        }
        Ok(())
    }

    fn admit(&self, req: &mut Request, ctx: &mut Context, verified: &Verified) {
        ctx.set(CONTEXT_AUTH, "jwt");
        for name in &self.options.claims_to_context {
            if let Some(value) = verified.claim(name) {
                ctx.set(&format!("{CONTEXT_CLAIM_PREFIX}{name}"), claim_text(value));
            }
        }
        for (claim, header) in &self.options.claims_to_headers {
            let Some(value) = verified.claim(claim) else {
                continue;
            };
            let value = claim_text(value);
            // A claim is signed, not sanitised: a line break in a header
            // value would split the request upstream.
            if value.chars().any(|c| c.is_control() && c != '\t') {
                log::warn(&format!(
                    "jwt: claim `{claim}` has control characters; header `{header}` not set"
                ));
                continue;
            }
            req.headers_mut().set(header, value);
        }
        if self.options.hide_credentials {
            extract::hide(req, &self.options);
        }
    }
}

/// A claim as context or header text: strings as they are, anything else as
/// compact JSON.
fn claim_text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// A `kid` fit for a log line: at most 64 characters, anything but printable
/// ASCII (and quotes and backslashes) replaced with `?`.
fn sanitise(kid: &str) -> String {
    let clean: String = kid
        .chars()
        .take(64)
        .map(|c| {
            if c == ' ' || (c.is_ascii_graphic() && c != '"' && c != '\\') {
                c
            } else {
                '?'
            }
        })
        .collect();
    format!("\"{clean}\"")
}

impl Plugin for Jwt {
    const NAME: &'static str = "jwt";

    fn needs(&self) -> Needs {
        Needs::REQUEST
    }

    fn init(config: Config) -> Result<Self, String> {
        Jwt::init_at(config, clock::now_millis())
    }

    fn on_request(&self, req: &mut Request, ctx: &mut Context) -> Action {
        self.strip_spoofed(req);
        let token = match extract::find(req, &self.options) {
            Ok(Some(token)) => token,
            Ok(None) => return self.refuse(req, None, &Reason::MissingToken),
            Err(Repeated) => return self.refuse(req, None, &Reason::Repeated),
        };
        let verified = match self.check(&token, clock::now_millis()) {
            Ok(verified) => verified,
            Err(reason) => return self.refuse(req, Some(&token), &reason),
        };
        if let Err(reason) = self.identify(ctx, &verified) {
            return self.refuse(req, Some(&token), &reason);
        }
        if let Err(unmet) = self.options.authz.check(verified.claims()) {
            log::info(&format!(
                "jwt: refused a request on route `{}`: {unmet}",
                req.route()
            ));
            return Action::Respond(unmet.response(&self.options.realm, req));
        }
        self.admit(req, ctx, &verified);
        Action::Continue
    }
}

plugin_sdk::export!(Jwt);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kids_are_sanitised_for_logs() {
        assert_eq!(sanitise("key-1"), "\"key-1\"");
        assert_eq!(sanitise("a\nb\u{1b}[31m\"c\\"), "\"a?b?[31m?c?\"");
        assert_eq!(sanitise("ключ"), "\"????\"");
        assert_eq!(sanitise(&"k".repeat(100)).len(), 64 + 2);
    }

    #[test]
    fn claims_become_text() {
        assert_eq!(claim_text(&Value::String("a b".into())), "a b");
        assert_eq!(claim_text(&serde_json::json!(["x", 1])), r#"["x",1]"#);
        assert_eq!(claim_text(&serde_json::json!({"a": true})), r#"{"a":true}"#);
        assert_eq!(claim_text(&serde_json::json!(7)), "7");
    }
}
