//! The request hook: where the token is read from, what a success writes,
//! what a refusal looks like, and the verified-token cache.

mod common;

use common::{NOW, b64, hmac_token, plugin, refusal, verdict};
use plugin_jwt::{Jwt, MAX_ATTEMPTS};
use plugin_sdk::consumers::{self, Consumer};
use plugin_sdk::{Action, Context, Plugin, Request, clock};
use serde_json::{Value, json};

const SECRET: &str = "0123456789abcdef0123456789abcdef";

fn now() -> i64 {
    i64::try_from(clock::now_millis() / 1000).unwrap_or_default()
}

/// A token valid for the next ten minutes, with these extra claims.
fn token(extra: Value) -> String {
    let mut claims = json!({"sub": "alice", "exp": now() + 600});
    if let (Some(claims), Value::Object(extra)) = (claims.as_object_mut(), extra) {
        claims.extend(extra);
    }
    hmac_token(
        &json!({"alg": "HS256", "typ": "JWT"}),
        &claims,
        SECRET.as_bytes(),
    )
}

fn jwt(extra: Value) -> Jwt {
    let mut config = json!({"algorithms": ["HS256"], "keys": [{"alg": "HS256", "secret": SECRET}]});
    if let (Some(config), Value::Object(extra)) = (config.as_object_mut(), extra) {
        config.extend(extra);
    }
    plugin(config)
}

fn bearer(token: &str) -> Request {
    Request::new("GET", "/orders").with_header("authorization", &format!("Bearer {token}"))
}

fn admits(jwt: &Jwt, req: &mut Request, ctx: &mut Context) {
    let action = jwt.on_request(req, ctx);
    assert!(
        matches!(action, Action::Continue),
        "refused: {:?}",
        refusal(&action)
    );
}

#[test]
fn a_valid_bearer_token_is_admitted_with_its_claims() {
    let jwt = jwt(json!({
        "claims_to_context": ["sub", "roles", "absent"],
        "claims_to_headers": {"sub": "X-User", "roles": "x-roles"},
    }));
    let token = token(json!({"roles": ["admin", "ops"]}));
    let mut req = bearer(&token)
        .with_header("x-user", "mallory")
        .with_header("X-User", "mallory2")
        .with_header("x-request-id", "r-1");
    let mut ctx = Context::new();
    admits(&jwt, &mut req, &mut ctx);
    assert_eq!(ctx.get("auth.method").as_deref(), Some("jwt"));
    assert_eq!(ctx.get("jwt.claim.sub").as_deref(), Some("alice"));
    assert_eq!(
        ctx.get("jwt.claim.roles").as_deref(),
        Some(r#"["admin","ops"]"#)
    );
    assert_eq!(ctx.get("jwt.claim.absent"), None);
    assert_eq!(ctx.get("consumer"), None, "no consumer_claim, no consumer");
    assert_eq!(
        req.headers().get_all("x-user").collect::<Vec<_>>(),
        ["alice"]
    );
    assert_eq!(req.headers().get("x-roles"), Some(r#"["admin","ops"]"#));
    // hide_credentials is off by default.
    assert_eq!(
        req.headers().get("authorization"),
        Some(format!("Bearer {token}").as_str())
    );
}

#[test]
fn spoofed_claim_headers_are_removed_whatever_the_outcome() {
    let jwt = jwt(json!({"claims_to_headers": {"sub": "x-user", "tenant": "x-tenant"}}));
    // Refused: the client's copies are gone anyway.
    let mut req = Request::new("GET", "/")
        .with_header("x-user", "admin")
        .with_header("x-tenant", "t1");
    let action = jwt.on_request(&mut req, &mut Context::new());
    assert_eq!(refusal(&action).0, 401);
    assert!(!req.headers().contains("x-user") && !req.headers().contains("x-tenant"));
    // Admitted without a `tenant` claim: no header, not the client's.
    let mut req = bearer(&token(json!({}))).with_header("x-tenant", "t1");
    admits(&jwt, &mut req, &mut Context::new());
    assert_eq!(req.headers().get("x-tenant"), None);
    // A claim that would break the header is not copied.
    let mut req = bearer(&token(json!({"tenant": "t1\r\nx-admin: 1"})));
    admits(&jwt, &mut req, &mut Context::new());
    assert_eq!(req.headers().get("x-tenant"), None);
}

#[test]
fn the_token_is_read_from_the_header_the_query_or_the_cookie() {
    let jwt = jwt(json!({
        "header": "X-JWT",
        "query": "access_token",
        "cookie": "session",
        "claims_to_context": ["sub"],
    }));
    let (header, query, cookie) = (
        token(json!({"sub": "header"})),
        token(json!({"sub": "query"})),
        token(json!({"sub": "cookie"})),
    );
    let found_in = |mut req: Request| {
        let mut ctx = Context::new();
        admits(&jwt, &mut req, &mut ctx);
        ctx.get("jwt.claim.sub").unwrap_or_default()
    };
    let in_header = Request::new("GET", "/?a=1").with_header("x-jwt", &format!("BEARER {header}"));
    assert_eq!(found_in(in_header), "header");
    let in_query = Request::new("GET", &format!("/?a=1&access_token={query}"))
        .with_header("cookie", "theme=dark");
    assert_eq!(found_in(in_query), "query");
    // Empty places beside the token hold nothing.
    let cookie_only = Request::new("GET", "/?access_token=")
        .with_header("x-jwt", "")
        .with_header("cookie", "theme=dark")
        .with_header("cookie", &format!("a=b; session=\"{cookie}\""));
    assert_eq!(found_in(cookie_only), "cookie");
    // Authorization is not read when another header is configured.
    let mut req = bearer(&header);
    assert_eq!(
        refusal(&jwt.on_request(&mut req, &mut Context::new())).0,
        401
    );
}

#[test]
fn query_and_cookie_are_read_only_when_configured() {
    let jwt = jwt(json!({}));
    let token = token(json!({}));
    let mut req = Request::new("GET", &format!("/?access_token={token}"))
        .with_header("cookie", &format!("session={token}"));
    let (status, challenge, body) = refusal(&jwt.on_request(&mut req, &mut Context::new()));
    assert_eq!(
        (status, challenge.as_str()),
        (401, "Bearer realm=\"gateway\"")
    );
    assert_eq!(body["error"], "unauthorized: missing token");
}

#[test]
fn hide_credentials_strips_the_token_where_it_was_found() {
    let jwt = jwt(json!({"query": "access_token", "cookie": "session", "hide_credentials": true}));
    let token = token(json!({}));

    let mut req = bearer(&token);
    admits(&jwt, &mut req, &mut Context::new());
    assert!(!req.headers().contains("authorization"));

    let mut req = Request::new("GET", &format!("/?a=1&access_token={token}&b=2"));
    admits(&jwt, &mut req, &mut Context::new());
    assert_eq!(req.query(), "a=1&b=2");

    let mut req = Request::new("GET", "/")
        .with_header("cookie", &format!("theme=dark; session={token}; lang=en"))
        .with_header("cookie", "session=");
    assert_eq!(
        refusal(&jwt.on_request(&mut req, &mut Context::new())).0,
        401,
        "the cookie twice, once empty"
    );
    let mut req = Request::new("GET", "/")
        .with_header("cookie", &format!("theme=dark; session={token}; lang=en"))
        .with_header("cookie", "a=b");
    admits(&jwt, &mut req, &mut Context::new());
    assert_eq!(
        req.headers().get_all("cookie").collect::<Vec<_>>(),
        ["theme=dark; lang=en", "a=b"]
    );
}

#[test]
fn a_refusal_is_a_401_with_an_rfc6750_challenge_and_a_json_body() {
    let jwt = jwt(json!({"realm": "orders api"}));
    let mut req = Request::new("GET", "/").with_header("x-request-id", "req-42");
    let (status, challenge, body) = refusal(&jwt.on_request(&mut req, &mut Context::new()));
    assert_eq!(status, 401);
    assert_eq!(challenge, "Bearer realm=\"orders api\"");
    assert_eq!(
        body,
        json!({"error": "unauthorized: missing token", "status": 401, "request_id": "req-42"})
    );

    for (token, reason) in [
        ("a.b".to_string(), "malformed token"),
        (token(json!({"exp": now() - 3600})), "token expired"),
        (
            format!("{}.e30.", b64(br#"{"alg":"none"}"#)),
            "algorithm not allowed",
        ),
    ] {
        let mut req = bearer(&token);
        let (status, challenge, body) = refusal(&jwt.on_request(&mut req, &mut Context::new()));
        assert_eq!(status, 401);
        assert_eq!(
            challenge,
            format!(
                "Bearer realm=\"orders api\", error=\"invalid_token\", error_description=\"{reason}\""
            )
        );
        assert_eq!(
            body,
            json!({"error": format!("unauthorized: {reason}"), "status": 401, "request_id": ""})
        );
    }
    // "Bearer" with nothing after it carries no token.
    let mut req = Request::new("GET", "/").with_header("authorization", "Bearer ");
    let (_, challenge, _) = refusal(&jwt.on_request(&mut req, &mut Context::new()));
    assert_eq!(challenge, "Bearer realm=\"orders api\"");
}

#[test]
fn the_consumer_comes_from_the_configured_claim() {
    consumers::register(
        Consumer {
            name: "bob".into(),
            groups: vec!["silver".into(), "beta".into()],
            plan: Some("silver".into()),
            metadata: vec![],
        },
        &[],
    );
    let jwt = jwt(json!({"consumer_claim": "client_id"}));

    let mut ctx = Context::new();
    admits(
        &jwt,
        &mut bearer(&token(json!({"client_id": "bob"}))),
        &mut ctx,
    );
    assert_eq!(ctx.get("consumer").as_deref(), Some("bob"));
    assert_eq!(ctx.get("consumer.groups").as_deref(), Some("silver,beta"));
    assert_eq!(ctx.get("consumer.plan").as_deref(), Some("silver"));
    assert_eq!(ctx.get("auth.method").as_deref(), Some("jwt"));

    // Unknown, but not required to exist: named, with no groups or plan.
    let mut ctx = Context::new();
    ctx.set("consumer.plan", "stale");
    admits(
        &jwt,
        &mut bearer(&token(json!({"client_id": "carol"}))),
        &mut ctx,
    );
    assert_eq!(ctx.get("consumer").as_deref(), Some("carol"));
    assert_eq!(ctx.get("consumer.groups"), None);
    assert_eq!(ctx.get("consumer.plan"), None);

    let (_, _, body) =
        refusal(&jwt.on_request(&mut bearer(&token(json!({}))), &mut Context::new()));
    assert_eq!(body["error"], "unauthorized: missing claim client_id");
}

#[test]
fn a_cached_token_skips_the_signature_but_not_the_clock() {
    let jwt = jwt(json!({"leeway": 0, "claims_to_context": ["sub"]}));
    let validator = jwt.validator();
    let token = hmac_token(
        &json!({"alg": "HS256"}),
        &json!({"sub": "alice", "exp": NOW + 100}),
        SECRET.as_bytes(),
    );

    let first = validator
        .validate(&token, NOW)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(validator.signature_checks(), 1);
    assert_eq!(validator.cached_tokens(), 1);
    let second = validator
        .validate(&token, NOW + 50)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        validator.signature_checks(),
        1,
        "a hit does not verify again"
    );
    assert_eq!(second.claims(), first.claims());

    // Expired on a hit: refused, and forgotten.
    assert_eq!(verdict(&jwt, &token, NOW + 100), "token expired");
    assert_eq!(validator.signature_checks(), 1);
    assert_eq!(validator.cached_tokens(), 0);
    assert_eq!(verdict(&jwt, &token, NOW + 50), "ok");
    assert_eq!(validator.signature_checks(), 2);

    // Refused tokens are not cached, and a one-character change is a miss.
    let mut forged = token.clone();
    forged.pop();
    forged.push(if token.ends_with('A') { 'Q' } else { 'A' });
    for _ in 0..2 {
        assert_eq!(verdict(&jwt, &forged, NOW), "invalid signature");
    }
    assert_eq!(validator.signature_checks(), 4);
    assert_eq!(validator.cached_tokens(), 1);
}

#[test]
fn the_cache_is_bounded() {
    let jwt = jwt(json!({}));
    let validator = jwt.validator();
    for i in 0..1024 {
        let token = hmac_token(
            &json!({"alg": "HS256"}),
            &json!({"exp": NOW + 100, "n": i}),
            SECRET.as_bytes(),
        );
        assert_eq!(verdict(&jwt, &token, NOW), "ok");
    }
    assert_eq!(validator.cached_tokens(), 1024);
    let token = hmac_token(
        &json!({"alg": "HS256"}),
        &json!({"exp": NOW + 100, "n": "one more"}),
        SECRET.as_bytes(),
    );
    assert_eq!(verdict(&jwt, &token, NOW), "ok");
    assert_eq!(
        validator.cached_tokens(),
        1,
        "cleared when full, then the new token"
    );
}

#[test]
fn a_token_without_kid_is_tried_against_a_bounded_number_of_keys() {
    let keys: Vec<Value> = (0..12u8)
        .map(|i| json!({"alg": "HS256", "secret_base64": b64(&[i; 32])}))
        .collect();
    let jwt = plugin(json!({"algorithms": ["HS256"], "keys": keys}));
    let token = hmac_token(
        &json!({"alg": "HS256"}),
        &json!({"exp": NOW + 100}),
        &[99; 32],
    );
    assert_eq!(verdict(&jwt, &token, NOW), "invalid signature");
    assert_eq!(jwt.validator().signature_checks(), MAX_ATTEMPTS as u64);
    let early = hmac_token(
        &json!({"alg": "HS256"}),
        &json!({"exp": NOW + 100}),
        &[3; 32],
    );
    assert_eq!(verdict(&jwt, &early, NOW), "ok");
}
