//! The `jwt` built-in through the real binary: tokens signed here with
//! aws-lc-rs (ES256 through a JWKS file, HS256 with a secret from the
//! environment), and the attacks that must never reach the upstream.

use crate::support::config::{Config, Plugin, Route};
use crate::support::{DocumentServer, Upstream, client, send};
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use aws_lc_rs::{hmac, rand::SystemRandom};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use serde_json::{Value, json};

const HS_SECRET: &str = "an-hs256-secret-of-at-least-32-bytes!!";

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn segment(value: &Value) -> String {
    B64.encode(value.to_string())
}

fn es256(key: &EcdsaKeyPair, header: &Value, claims: &Value) -> String {
    let input = format!("{}.{}", segment(header), segment(claims));
    let signature = key
        .sign(&SystemRandom::new(), input.as_bytes())
        .expect("sign");
    format!("{input}.{}", B64.encode(signature.as_ref()))
}

fn hs256(secret: &[u8], header: &Value, claims: &Value) -> String {
    let input = format!("{}.{}", segment(header), segment(claims));
    let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, secret), input.as_bytes());
    format!("{input}.{}", B64.encode(tag.as_ref()))
}

fn jwk(key: &EcdsaKeyPair, kid: &str) -> Value {
    let point = key.public_key().as_ref();
    json!({
        "kty": "EC", "crv": "P-256", "kid": kid, "use": "sig",
        "x": B64.encode(&point[1..33]), "y": B64.encode(&point[33..65]),
    })
}

fn bearer(url: &str, token: &str) -> Request<Full<Bytes>> {
    Request::get(url)
        .header("authorization", format!("Bearer {token}"))
        .header("x-jwt-sub", "spoofed")
        .body(Full::default())
        .expect("request")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_admits_valid_tokens_and_refuses_every_attack() {
    let upstream = Upstream::start("api").await;
    let key = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).expect("keygen");
    let attacker = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).expect("keygen");
    let dir = tempfile::tempdir().expect("tempdir");
    let jwks = dir.path().join("jwks.json");
    std::fs::write(&jwks, json!({ "keys": [jwk(&key, "k1")] }).to_string()).expect("jwks");

    let gw = Config::new()
        .upstream("api", &upstream)
        .route(
            Route::new("es", "/es/{*rest}").upstream("api").plugin(
                Plugin::new("jwt")
                    .with(
                        "config_files",
                        json!({ "jwks": jwks.display().to_string() }),
                    )
                    .config(json!({
                        "algorithms": ["ES256"],
                        "issuer": "https://issuer.test",
                        "audience": "orders",
                        "consumer_claim": "sub",
                        "claims_to_headers": { "sub": "x-jwt-sub" },
                    })),
            ),
        )
        .route(
            Route::new("hs", "/hs/{*rest}").upstream("api").plugin(
                Plugin::new("jwt")
                    .with("config_env", json!({ "hmac_secret": "HS_SECRET" }))
                    .config(json!({ "algorithms": ["HS256"] })),
            ),
        )
        .start_with_env(&[("HS_SECRET", HS_SECRET)]);
    let client = client();
    let header = json!({"alg": "ES256", "typ": "JWT", "kid": "k1"});
    let claims = json!({
        "iss": "https://issuer.test", "aud": ["billing", "orders"], "sub": "alice",
        "exp": now() + 300, "iat": now(),
    });

    // A valid token: admitted, claims forwarded, the spoofed header replaced.
    let good = es256(&key, &header, &claims);
    let reply = send(&client, bearer(&gw.url("/es/orders"), &good)).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json()["headers"]["x-jwt-sub"], "alice");
    // Twice: the second is served from the verified-token cache.
    let reply = send(&client, bearer(&gw.url("/es/orders"), &good)).await;
    assert_eq!(reply.status, 200, "{}", reply.body);

    let hs_good = hs256(
        HS_SECRET.as_bytes(),
        &json!({"alg": "HS256"}),
        &json!({"exp": now() + 60}),
    );
    assert_eq!(
        send(&client, bearer(&gw.url("/hs/x"), &hs_good))
            .await
            .status,
        200
    );

    let hits = upstream.hits();
    let with = |patch: Value| {
        let mut claims = claims.clone();
        for (k, v) in patch.as_object().expect("object") {
            claims[k] = v.clone();
        }
        es256(&key, &header, &claims)
    };
    let public_pem_bytes = key.public_key().as_ref().to_vec();
    let attacks: Vec<(&str, String, &str)> = vec![
        (
            "expired",
            with(json!({"exp": now() - 120})),
            "token expired",
        ),
        (
            "not yet valid",
            with(json!({"nbf": now() + 600})),
            "token not yet valid",
        ),
        (
            "wrong issuer",
            with(json!({"iss": "https://evil.test"})),
            "invalid issuer",
        ),
        (
            "wrong audience",
            with(json!({"aud": "billing"})),
            "invalid audience",
        ),
        (
            "tampered",
            {
                let mut parts: Vec<String> = good.split('.').map(str::to_string).collect();
                parts[1] = segment(
                    &json!({"iss": "https://issuer.test", "aud": "orders", "sub": "root", "exp": now() + 300}),
                );
                parts.join(".")
            },
            "invalid signature",
        ),
        (
            "attacker key",
            es256(&attacker, &header, &claims),
            "invalid signature",
        ),
        (
            "embedded jwk",
            es256(
                &attacker,
                &json!({"alg": "ES256", "kid": "k1", "jwk": jwk(&attacker, "k1")}),
                &claims,
            ),
            "invalid signature",
        ),
        (
            "unknown kid",
            es256(&key, &json!({"alg": "ES256", "kid": "k2"}), &claims),
            "unknown key",
        ),
        (
            "kid traversal",
            es256(
                &key,
                &json!({"alg": "ES256", "kid": "../../../etc/passwd"}),
                &claims,
            ),
            "unknown key",
        ),
        (
            "alg none",
            format!("{}.{}.", segment(&json!({"alg": "none"})), segment(&claims)),
            "algorithm not allowed",
        ),
        (
            "alg NoNe",
            format!(
                "{}.{}.",
                segment(&json!({"alg": "NoNe", "kid": "k1"})),
                segment(&claims)
            ),
            "algorithm not allowed",
        ),
        (
            "HS256 with the public key",
            hs256(
                &public_pem_bytes,
                &json!({"alg": "HS256", "kid": "k1"}),
                &claims,
            ),
            "algorithm not allowed",
        ),
        (
            "two segments",
            format!("{}.{}", segment(&header), segment(&claims)),
            "malformed token",
        ),
        (
            "bad base64",
            format!("{}.{}.%%%", segment(&header), segment(&claims)),
            "malformed token",
        ),
        (
            "oversized",
            format!("{}.{}.x", segment(&header), "A".repeat(20_000)),
            "token too large",
        ),
    ];
    for (name, token, reason) in attacks {
        let reply = send(&client, bearer(&gw.url("/es/orders"), &token)).await;
        assert_eq!(reply.status, 401, "{name}: {}", reply.body);
        let error = reply.json()["error"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert_eq!(error, format!("unauthorized: {reason}"), "{name}");
        let challenge = reply.header("www-authenticate").unwrap_or_default();
        assert!(
            challenge.starts_with("Bearer realm=\"gateway\""),
            "{name}: {challenge}"
        );
    }
    // No token at all: a bare challenge (RFC 6750 3.1).
    let reply = send(
        &client,
        Request::get(gw.url("/es/orders"))
            .body(Full::default())
            .expect("request"),
    )
    .await;
    assert_eq!(reply.status, 401);
    assert_eq!(
        reply.header("www-authenticate"),
        Some("Bearer realm=\"gateway\"")
    );
    // HS route: a token MACed with another secret.
    let forged = hs256(
        b"another-secret-of-at-least-32-bytes!!!",
        &json!({"alg": "HS256"}),
        &json!({"exp": now() + 60}),
    );
    assert_eq!(
        send(&client, bearer(&gw.url("/hs/x"), &forged))
            .await
            .status,
        401
    );

    assert_eq!(
        upstream.hits(),
        hits,
        "a refused token reached the upstream"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwks_url_is_shared_refetched_on_rotation_and_survives_an_outage() {
    let upstream = Upstream::start("api").await;
    let first = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).expect("keygen");
    let second = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).expect("keygen");
    let set = |keys: Vec<Value>| json!({ "keys": keys }).to_string();
    let jwks = DocumentServer::start(&set(vec![jwk(&first, "k1")])).await;
    let gw = Config::new()
        .upstream("api", &upstream)
        .route(
            Route::new("es", "/{*rest}").upstream("api").plugin(
                Plugin::new("jwt")
                    .with(
                        "allowed_hosts",
                        json!([format!("127.0.0.1:{}", jwks.addr.port())]),
                    )
                    .with("pool_size", json!(4))
                    .config(json!({
                        "algorithms": ["ES256"],
                        "jwks_url": format!("http://{}/.well-known/jwks.json", jwks.addr),
                        "jwks_refresh": 300,
                        "jwks_min_refetch": 1,
                    })),
            ),
        )
        .start();
    let client = client();
    let claims = json!({"sub": "alice", "exp": now() + 300});
    let token =
        |key: &EcdsaKeyPair, kid: &str| es256(key, &json!({"alg": "ES256", "kid": kid}), &claims);
    let status = |token: String| {
        let client = client.clone();
        let url = gw.url("/x");
        async move { send(&client, bearer(&url, &token)).await.status }
    };

    // Every instance at load and every request after it: one fetch in all.
    for _ in 0..5 {
        assert_eq!(status(token(&first, "k1")).await, 200);
    }
    assert_eq!(jwks.hits(), 1, "instances did not share the JWKS fetch");

    // Rotation: k2 replaces k1. A token with the new kid triggers a refetch.
    jwks.serve(Some(&set(vec![jwk(&second, "k2")])));
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(status(token(&second, "k2")).await, 200);
    assert_eq!(jwks.hits(), 2);

    // A flood of made-up kids refetches at most once per jwks_min_refetch.
    for i in 0..30 {
        assert_eq!(status(token(&second, &format!("bogus-{i}"))).await, 401);
    }
    assert!(
        jwks.hits() <= 3,
        "unknown kids hammered the JWKS server: {}",
        jwks.hits()
    );

    // The flood reached every instance (the pool hands them out in turn), so
    // each has caught up with the rotation: k1 no longer verifies.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    for _ in 0..8 {
        assert_eq!(status(token(&first, "k1")).await, 401);
    }

    // The JWKS server goes down: the keys already fetched keep working.
    jwks.serve(None);
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    for _ in 0..8 {
        assert_eq!(status(token(&second, "k2")).await, 200);
    }
    assert_eq!(status(token(&first, "k1")).await, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scopes_and_claim_rules_answer_403_with_insufficient_scope() {
    let upstream = Upstream::start("api").await;
    let jwt = |rules: Value| {
        let mut config = json!({ "algorithms": ["HS256"] });
        if let (Value::Object(into), Value::Object(from)) = (&mut config, rules) {
            into.extend(from);
        }
        Plugin::new("jwt")
            .with("config_env", json!({ "hmac_secret": "HS_SECRET" }))
            .config(config)
    };
    let gw = Config::new()
        .upstream("api", &upstream)
        .route(
            Route::new("read", "/orders")
                .upstream("api")
                .plugin(jwt(json!({ "scopes": { "all_of": ["orders:read"] } }))),
        )
        .route(
            Route::new("admin", "/admin")
                .upstream("api")
                .plugin(jwt(json!({
                    "scopes": { "any_of": ["admin", "ops"] },
                    "claim_rules": [{ "claim": "tenant", "equals": "acme" }],
                }))),
        )
        .start_with_env(&[("HS_SECRET", HS_SECRET)]);
    let header = json!({ "alg": "HS256", "typ": "JWT" });
    let token = |claims: Value| {
        let mut all = json!({ "exp": now() + 300 });
        if let (Value::Object(into), Value::Object(from)) = (&mut all, claims) {
            into.extend(from);
        }
        hs256(HS_SECRET.as_bytes(), &header, &all)
    };
    let client = client();
    let reader = token(json!({ "scope": "orders:read profile" }));
    assert_eq!(
        send(&client, bearer(&gw.url("/orders"), &reader))
            .await
            .status,
        200
    );

    let writer = token(json!({ "scope": "orders:write" }));
    let refused = send(&client, bearer(&gw.url("/orders"), &writer)).await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert_eq!(
        refused.header("www-authenticate"),
        Some(
            "Bearer realm=\"gateway\", error=\"insufficient_scope\", error_description=\"insufficient scope\", scope=\"orders:read\""
        )
    );

    let ops = token(json!({ "scp": ["ops"], "tenant": "acme" }));
    assert_eq!(
        send(&client, bearer(&gw.url("/admin"), &ops)).await.status,
        200
    );
    let other_tenant = token(json!({ "scp": ["ops"], "tenant": "initech" }));
    let refused = send(&client, bearer(&gw.url("/admin"), &other_tenant)).await;
    assert_eq!(refused.status, 403);
    assert!(refused.body.contains("claim tenant"), "{}", refused.body);
    // Neither refusal reached the upstream.
    assert_eq!(upstream.hits(), 2);
}
