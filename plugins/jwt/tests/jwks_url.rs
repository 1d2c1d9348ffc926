//! Keys from `jwks_url`: the fetch at `init`, the refresh as the set ages,
//! the early refetch for an unknown `kid`, rotation, and what happens while
//! the JWKS server is down or serves something unusable. Time is injected
//! (`Jwt::init_at`, `Jwt::check`); fetches are counted with the SDK's
//! `http_client::testing`, which natively answers every `fetch_shared` call.

mod common;

use common::{EcKey, NOW, hmac_token, plugin};
use plugin_jwt::Jwt;
use plugin_sdk::http_client::{Error, testing};
use plugin_sdk::{Action, Config, Context, Plugin, Request};
use serde_json::{Value, json};

const URL: &str = "https://issuer.example.com/.well-known/jwks.json";
const SECRET: &str = "0123456789abcdef0123456789abcdef";
/// The time `init` runs at, in milliseconds.
const T0: u64 = NOW as u64 * 1000;
const SECOND: u64 = 1000;

/// A JWK set of these keys, each with its kid.
fn set(keys: &[(&str, &EcKey)]) -> String {
    let keys: Vec<Value> = keys
        .iter()
        .map(|(kid, key)| {
            let mut jwk = key.jwk();
            jwk["kid"] = json!(kid);
            jwk
        })
        .collect();
    json!({ "keys": keys }).to_string()
}

/// A fresh ES256 token (ECDSA signatures are randomised, so never a cache
/// hit), valid for days after [`NOW`].
fn token(key: &EcKey, kid: Option<&str>) -> String {
    let mut header = json!({"alg": "ES256", "typ": "JWT"});
    if let Some(kid) = kid {
        header["kid"] = json!(kid);
    }
    key.sign(&header, &json!({"sub": "alice", "exp": NOW + 864_000}))
}

/// `algorithms = ["ES256"]` and `jwks_url`, with `extra` merged in.
fn config(extra: Value) -> Value {
    let mut config = json!({"algorithms": ["ES256"], "jwks_url": URL});
    if let (Some(config), Value::Object(extra)) = (config.as_object_mut(), extra) {
        config.extend(extra);
    }
    config
}

/// The plugin, started at [`T0`].
fn start(config: Value) -> Jwt {
    Jwt::init_at(Config::from_value(config), T0).unwrap_or_else(|e| panic!("init failed: {e}"))
}

fn start_error(config: Value) -> String {
    match Jwt::init_at(Config::from_value(config), T0) {
        Ok(_) => panic!("init succeeded"),
        Err(e) => e,
    }
}

/// The check of `token` at `at` ms: "ok" or the refusal.
fn verdict(jwt: &Jwt, token: &str, at: u64) -> String {
    match jwt.check(token, at) {
        Ok(_) => "ok".into(),
        Err(reason) => reason.to_string(),
    }
}

/// Calls made to the JWKS server so far.
fn fetches() -> usize {
    let calls = testing::calls();
    assert!(
        calls.iter().all(|call| *call == format!("GET {URL}")),
        "{calls:?}"
    );
    calls.len()
}

#[test]
fn init_fetches_the_set_once_and_its_keys_verify() {
    testing::reset();
    let k1 = EcKey::generate();
    testing::respond(URL, 200, set(&[("k1", &k1)]));
    let jwt = start(config(json!({})));
    assert_eq!(fetches(), 1);
    assert_eq!(jwt.validator().key_count(), 1);
    for at in [T0, T0 + 100 * SECOND, T0 + 300 * SECOND] {
        assert_eq!(verdict(&jwt, &token(&k1, Some("k1")), at), "ok");
    }
    assert_eq!(fetches(), 1, "a fresh set is not fetched again");
}

#[test]
fn the_request_hook_uses_the_fetched_keys() {
    testing::reset();
    let k1 = EcKey::generate();
    testing::respond(URL, 200, set(&[("k1", &k1)]));
    let jwt = plugin(config(json!({})));
    let token = k1.sign(
        &json!({"alg": "ES256", "kid": "k1"}),
        &json!({"sub": "alice", "exp": 4_000_000_000u64}),
    );
    let mut req =
        Request::new("GET", "/orders").with_header("authorization", &format!("Bearer {token}"));
    let action = jwt.on_request(&mut req, &mut Context::new());
    assert!(matches!(action, Action::Continue), "{action:?}");
    assert_eq!(fetches(), 1);
}

#[test]
fn init_fails_without_the_set_when_no_other_key_is_configured() {
    let cases = [
        (
            Err(Error::Connect("connection refused".into())),
            r#"jwt: jwks_url "https://issuer.example.com/.well-known/jwks.json": cannot fetch it: cannot connect: connection refused; no `keys`, `jwks` or `hmac_secret` is configured either, so every token would be refused"#,
        ),
        (
            Ok((503, "down".to_string())),
            r#"jwt: jwks_url "https://issuer.example.com/.well-known/jwks.json": cannot fetch it: protocol error: status 503; no `keys`, `jwks` or `hmac_secret` is configured either, so every token would be refused"#,
        ),
        (
            Ok((200, "<html>".to_string())),
            r#"jwt: jwks_url "https://issuer.example.com/.well-known/jwks.json": the document at jwks_url is not valid JSON: expected value at line 1 column 1; no `keys`, `jwks` or `hmac_secret` is configured either, so every token would be refused"#,
        ),
        (
            Ok((200, r#"{"keys": []}"#.to_string())),
            r#"jwt: jwks_url "https://issuer.example.com/.well-known/jwks.json": the document at jwks_url has no keys; no `keys`, `jwks` or `hmac_secret` is configured either, so every token would be refused"#,
        ),
    ];
    for (answer, expected) in cases {
        testing::reset();
        match answer {
            Ok((status, body)) => testing::respond(URL, status, body),
            Err(error) => testing::fail(URL, error),
        }
        assert_eq!(start_error(config(json!({}))), expected);
        assert_eq!(fetches(), 1);
    }
}

#[test]
fn a_host_outside_allowed_hosts_fails_init_even_with_other_keys() {
    testing::reset();
    testing::fail(URL, Error::NotAllowed("issuer.example.com".into()));
    let with_secret = config(json!({"algorithms": ["ES256", "HS256"], "hmac_secret": SECRET}));
    assert_eq!(
        start_error(with_secret),
        r#"jwt: jwks_url "https://issuer.example.com/.well-known/jwks.json": host issuer.example.com is not allowed: list it in the entry's `allowed_hosts`"#
    );
}

#[test]
fn init_succeeds_on_other_keys_and_the_set_is_fetched_later() {
    testing::reset();
    testing::fail(URL, Error::Timeout);
    let jwt = start(config(
        json!({"algorithms": ["ES256", "HS256"], "hmac_secret": SECRET}),
    ));
    assert_eq!(fetches(), 1);
    let hs = hmac_token(
        &json!({"alg": "HS256"}),
        &json!({"exp": NOW + 600}),
        SECRET.as_bytes(),
    );
    assert_eq!(verdict(&jwt, &hs, T0), "ok");

    // The server comes back; the retry waits for jwks_min_refetch (30 s).
    let k1 = EcKey::generate();
    testing::respond(URL, 200, set(&[("k1", &k1)]));
    assert_eq!(
        verdict(&jwt, &token(&k1, Some("k1")), T0 + 29 * SECOND),
        "unknown key"
    );
    assert_eq!(fetches(), 1);
    assert_eq!(
        verdict(&jwt, &token(&k1, Some("k1")), T0 + 30 * SECOND),
        "ok"
    );
    assert_eq!(fetches(), 2);
    assert_eq!(
        verdict(&jwt, &hs, T0 + 30 * SECOND),
        "ok",
        "static keys stay"
    );
}

#[test]
fn the_set_is_fetched_again_once_older_than_jwks_refresh() {
    testing::reset();
    let k1 = EcKey::generate();
    testing::respond(URL, 200, set(&[("k1", &k1)]));
    let jwt = start(config(json!({"jwks_refresh": 60})));
    let same = token(&k1, Some("k1"));
    assert_eq!(verdict(&jwt, &same, T0), "ok");
    assert_eq!(jwt.validator().signature_checks(), 1);

    assert_eq!(verdict(&jwt, &same, T0 + 60 * SECOND), "ok");
    assert_eq!(fetches(), 1, "60 s old is not older than jwks_refresh");
    assert_eq!(verdict(&jwt, &same, T0 + 60 * SECOND + 1), "ok");
    assert_eq!(fetches(), 2);
    // The same set again changes nothing: the cached token is still a hit.
    assert_eq!(jwt.validator().signature_checks(), 1);
    assert_eq!(jwt.validator().cached_tokens(), 1);

    // The next refresh is due 60 s after that fetch, not after init.
    assert_eq!(verdict(&jwt, &same, T0 + 120 * SECOND), "ok");
    assert_eq!(fetches(), 2);
    assert_eq!(verdict(&jwt, &same, T0 + 121 * SECOND), "ok");
    assert_eq!(fetches(), 3);
}

#[test]
fn while_the_server_is_down_the_last_good_keys_keep_verifying() {
    testing::reset();
    let k1 = EcKey::generate();
    testing::respond(URL, 200, set(&[("k1", &k1)]));
    let jwt = start(config(json!({})));
    testing::fail(URL, Error::Connect("connection refused".into()));

    let due = T0 + 301 * SECOND;
    assert_eq!(verdict(&jwt, &token(&k1, Some("k1")), due), "ok");
    assert_eq!(fetches(), 2);
    // Retried at most once per jwks_min_refetch, not on every request.
    for at in (due..due + 30 * SECOND).step_by(1000) {
        assert_eq!(verdict(&jwt, &token(&k1, Some("k1")), at), "ok");
    }
    assert_eq!(fetches(), 2);
    assert_eq!(
        verdict(&jwt, &token(&k1, Some("k1")), due + 30 * SECOND),
        "ok"
    );
    assert_eq!(fetches(), 3);

    // Back up: the next retry picks up the new set.
    let k2 = EcKey::generate();
    testing::respond(URL, 200, set(&[("k2", &k2)]));
    assert_eq!(
        verdict(&jwt, &token(&k2, Some("k2")), due + 60 * SECOND),
        "ok"
    );
    assert_eq!(fetches(), 4);
}

#[test]
fn rotation_replaces_the_fetched_keys_and_empties_the_cache() {
    testing::reset();
    let (k1, k2, local) = (EcKey::generate(), EcKey::generate(), EcKey::generate());
    testing::respond(URL, 200, set(&[("k1", &k1)]));
    let mut local_jwk = local.jwk();
    local_jwk["kid"] = json!("local");
    let jwt = start(config(
        json!({"keys": [{"alg": "ES256", "jwk": local_jwk}]}),
    ));
    assert_eq!(jwt.validator().key_count(), 2);
    let old = token(&k1, Some("k1"));
    assert_eq!(verdict(&jwt, &old, T0), "ok");
    assert_eq!(jwt.validator().cached_tokens(), 1);

    testing::respond(URL, 200, set(&[("k2", &k2)]));
    let due = T0 + 301 * SECOND;
    // Cached with a key that is gone: refused all the same.
    assert_eq!(verdict(&jwt, &old, due), "unknown key");
    assert_eq!(verdict(&jwt, &token(&k1, Some("k1")), due), "unknown key");
    assert_eq!(verdict(&jwt, &token(&k2, Some("k2")), due), "ok");
    assert_eq!(
        verdict(&jwt, &token(&local, Some("local")), due),
        "ok",
        "configured keys survive a refresh"
    );
    assert_eq!(jwt.validator().key_count(), 2);
    assert_eq!(fetches(), 2, "the refresh was the only fetch");
}

#[test]
fn an_unknown_kid_refetches_at_most_once_per_jwks_min_refetch() {
    testing::reset();
    let (k1, k2, forger) = (EcKey::generate(), EcKey::generate(), EcKey::generate());
    testing::respond(URL, 200, set(&[("k1", &k1)]));
    let jwt = start(config(json!({})));
    // The issuer rotates k2 in right after our fetch.
    testing::respond(URL, 200, set(&[("k1", &k1), ("k2", &k2)]));

    // The copy is younger than jwks_min_refetch: no early fetch.
    assert_eq!(
        verdict(&jwt, &token(&k2, Some("k2")), T0 + 29 * SECOND),
        "unknown key"
    );
    assert_eq!(fetches(), 1);
    // Old enough: one refetch, and the new kid verifies.
    assert_eq!(
        verdict(&jwt, &token(&k2, Some("k2")), T0 + 30 * SECOND),
        "ok"
    );
    assert_eq!(fetches(), 2);

    // A flood of made-up kids: one fetch per 30 s whatever the rate.
    let mut at = T0 + 30 * SECOND;
    for i in 0..600 {
        let kid = format!("made-up-{i}");
        assert_eq!(
            verdict(&jwt, &token(&forger, Some(&kid)), at),
            "unknown key"
        );
        at += 100;
    }
    // 60 s of flood after the fetch at 30 s: fetches at 60 s and 90 s would be
    // allowed, the one at 90 s falls just outside the flood.
    assert_eq!(fetches(), 3);
    assert_eq!(verdict(&jwt, &token(&forger, Some("x")), at), "unknown key");
    assert_eq!(fetches(), 4);

    // A kid-less token that no key verifies is not a reason to fetch.
    let at = at + 60 * SECOND;
    assert_eq!(
        verdict(&jwt, &token(&forger, None), at),
        "invalid signature"
    );
    assert_eq!(fetches(), 4);
    // Nor is a token with a known kid and a bad signature.
    assert_eq!(
        verdict(&jwt, &token(&forger, Some("k1")), at),
        "invalid signature"
    );
    assert_eq!(fetches(), 4);
}

#[test]
fn an_unusable_document_keeps_the_old_keys() {
    testing::reset();
    let k1 = EcKey::generate();
    testing::respond(URL, 200, set(&[("k1", &k1)]));
    let jwt = start(config(json!({"algorithms": ["ES256", "HS256"]})));
    let secret =
        json!({"kty": "oct", "kid": "s", "k": "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY"});
    let unusable = [
        "<html>oops</html>".to_string(),
        "[]".to_string(),
        json!({"keys": []}).to_string(),
        json!({"keys": [{"kty": "EC", "crv": "P-256", "kid": "bad", "x": "AA", "y": "AA"}]})
            .to_string(),
        // Shared secrets are never taken from a URL.
        json!({ "keys": [secret] }).to_string(),
    ];
    let mut at = T0 + 301 * SECOND;
    for (i, document) in unusable.iter().enumerate() {
        testing::respond(URL, 200, document.as_str());
        assert_eq!(
            verdict(&jwt, &token(&k1, Some("k1")), at),
            "ok",
            "{document}"
        );
        assert_eq!(fetches(), i + 2, "{document}");
        assert_eq!(jwt.validator().key_count(), 1);
        at += 30 * SECOND;
    }
    let hs = hmac_token(
        &json!({"alg": "HS256", "kid": "s"}),
        &json!({"exp": NOW + 864_000}),
        b"0123456789abcdef0123456789abcdef",
    );
    assert_eq!(verdict(&jwt, &hs, at), "unknown key");
}

#[test]
fn loopback_urls_may_be_plain_http() {
    let k1 = EcKey::generate();
    for url in [
        "http://127.0.0.1:8080/jwks",
        "http://localhost/jwks",
        "http://[::1]:9000/jwks",
        "HTTPS://issuer.example.com/jwks",
    ] {
        testing::reset();
        testing::respond(url, 200, set(&[("k1", &k1)]));
        let jwt = start(json!({"algorithms": ["ES256"], "jwks_url": url}));
        assert_eq!(verdict(&jwt, &token(&k1, Some("k1")), T0), "ok", "{url}");
    }
}

#[test]
fn a_short_jwks_refresh_lowers_the_default_min_refetch() {
    testing::reset();
    let (k1, k2) = (EcKey::generate(), EcKey::generate());
    testing::respond(URL, 200, set(&[("k1", &k1)]));
    let jwt = start(config(json!({"jwks_refresh": 10})));
    testing::respond(URL, 200, set(&[("k2", &k2)]));
    assert_eq!(
        verdict(&jwt, &token(&k2, Some("k2")), T0 + 10 * SECOND),
        "ok"
    );
    assert_eq!(fetches(), 2);
}
