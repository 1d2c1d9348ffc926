//! Known attacks on JWT verifiers, each refused for the exact reason the
//! client is told.

mod common;

use common::{EcKey, NOW, RsaKey, b64, claims, hmac_token, init_error, plugin, refusal, verdict};
use plugin_jwt::Jwt;
use plugin_sdk::consumers::{self, Consumer};
use plugin_sdk::{Action, Context, Plugin, Request, clock};
use serde_json::{Value, json};

const SECRET: &str = "0123456789abcdef0123456789abcdef";

fn hs256() -> Jwt {
    plugin(json!({"algorithms": ["HS256"], "keys": [{"alg": "HS256", "secret": SECRET}]}))
}

fn hs256_token(header: Value, claims: &Value) -> String {
    hmac_token(&header, claims, SECRET.as_bytes())
}

/// A token from raw header and payload text, MACed with [`SECRET`].
fn raw_token(header: &str, payload: &str) -> String {
    let input = format!("{}.{}", b64(header.as_bytes()), b64(payload.as_bytes()));
    let mac = plugin_sdk::crypto::hmac(
        plugin_sdk::crypto::DigestAlgorithm::Sha256,
        SECRET.as_bytes(),
        input.as_bytes(),
    );
    format!("{input}.{}", b64(&mac))
}

#[test]
fn alg_none_is_refused_in_every_casing() {
    let jwt = hs256();
    let valid = hs256_token(json!({"alg": "HS256"}), &claims());
    assert_eq!(verdict(&jwt, &valid, NOW), "ok");
    let signature = valid.rsplit('.').next().unwrap_or_default();
    for none in ["none", "None", "NONE", "nOnE"] {
        let header = b64(json!({"alg": none}).to_string().as_bytes());
        let payload = b64(claims().to_string().as_bytes());
        for token in [
            format!("{header}.{payload}."),
            format!("{header}.{payload}.{signature}"),
        ] {
            assert_eq!(
                verdict(&jwt, &token, NOW),
                "algorithm not allowed",
                "{none}"
            );
        }
        let error =
            init_error(json!({"algorithms": [none], "keys": [{"alg": "HS256", "secret": SECRET}]}));
        assert!(error.contains("never allowed"), "{error}");
    }
    // Other spellings of real algorithms are not aliases either.
    for alg in ["hs256", "Hs256", "HS256 ", "HMAC", ""] {
        let token = hs256_token(json!({ "alg": alg }), &claims());
        assert_eq!(
            verdict(&jwt, &token, NOW),
            "algorithm not allowed",
            "{alg:?}"
        );
    }
}

#[test]
fn an_rsa_public_key_is_never_an_hmac_secret() {
    let rsa = RsaKey::generate();
    let pem = rsa.pem();
    let legit = rsa.sign(&json!({"alg": "RS256", "kid": "rsa"}), &claims());
    // The classic confusion: HS256, keyed with the public key as published.
    let forged: Vec<String> = [
        pem.as_bytes(),
        pem.trim_end().as_bytes(),
        rsa.jwk().to_string().as_bytes(),
    ]
    .into_iter()
    .flat_map(|secret| {
        [
            json!({"alg": "HS256"}),
            json!({"alg": "HS256", "kid": "rsa"}),
        ]
        .map(|header| hmac_token(&header, &claims(), secret))
    })
    .collect();

    let rs256_only = plugin(
        json!({"algorithms": ["RS256"], "keys": [{"kid": "rsa", "alg": "RS256", "pem": pem}]}),
    );
    assert_eq!(verdict(&rs256_only, &legit, NOW), "ok");
    for token in &forged {
        assert_eq!(verdict(&rs256_only, token, NOW), "algorithm not allowed");
    }

    // Both algorithms allowed, the RSA key as PEM or as a JWK without alg:
    // the key is bound to RS256 (and its RSA siblings) only.
    for keys in [
        json!({"keys": [{"kid": "rsa", "alg": "RS256", "pem": pem}]}),
        json!({"jwks": json!({"keys": [{"kid": "rsa", "kty": "RSA", "n": rsa.jwk()["n"], "e": rsa.jwk()["e"]}]}).to_string()}),
    ] {
        let mut config = keys;
        config["algorithms"] = json!(["RS256", "HS256"]);
        let both = plugin(config);
        assert_eq!(verdict(&both, &legit, NOW), "ok");
        for token in &forged {
            assert_eq!(verdict(&both, token, NOW), "unknown key");
        }
    }

    // And an operator cannot make the mistake in the config either.
    let error =
        init_error(json!({"algorithms": ["HS256"], "keys": [{"alg": "HS256", "pem": pem}]}));
    assert!(
        error.contains("keys[0]") && error.contains("HS256"),
        "{error}"
    );
    let error =
        init_error(json!({"algorithms": ["HS256"], "keys": [{"alg": "HS256", "secret": pem}]}));
    assert!(error.contains("PEM"), "{error}");
    let error =
        init_error(json!({"algorithms": ["HS256"], "keys": [{"alg": "HS256", "jwk": rsa.jwk()}]}));
    assert!(error.contains("keys[0]"), "{error}");
}

#[test]
fn keys_embedded_in_the_header_are_never_used() {
    let legit = EcKey::generate();
    let attacker = EcKey::generate();
    let mut legit_jwk = legit.jwk();
    legit_jwk["kid"] = "legit".into();
    let jwt =
        plugin(json!({"algorithms": ["ES256"], "jwks": json!({"keys": [legit_jwk]}).to_string()}));

    let mut attacker_jwk = attacker.jwk();
    attacker_jwk["kid"] = "legit".into();
    for header in [
        json!({"alg": "ES256", "jwk": attacker.jwk()}),
        json!({"alg": "ES256", "kid": "legit", "jwk": attacker_jwk}),
        json!({"alg": "ES256", "jku": "https://attacker.example/jwks.json"}),
        json!({"alg": "ES256", "kid": "legit", "jku": "https://attacker.example/jwks.json"}),
        json!({"alg": "ES256", "x5u": "https://attacker.example/cert.pem"}),
        json!({"alg": "ES256", "x5c": ["MIIB"]}),
    ] {
        let token = attacker.sign(&header, &claims());
        assert_eq!(verdict(&jwt, &token, NOW), "invalid signature", "{header}");
    }
    // The members are ignored, not refused: the configured key still decides.
    let token = legit.sign(
        &json!({"alg": "ES256", "kid": "legit", "jwk": attacker.jwk()}),
        &claims(),
    );
    assert_eq!(verdict(&jwt, &token, NOW), "ok");
}

#[test]
fn a_kid_is_only_ever_a_name() {
    let jwt = plugin(json!({
        "algorithms": ["HS256"],
        "keys": [{"kid": "k1", "alg": "HS256", "secret": SECRET}],
    }));
    assert_eq!(
        verdict(
            &jwt,
            &hs256_token(json!({"alg": "HS256", "kid": "k1"}), &claims()),
            NOW
        ),
        "ok"
    );
    for kid in [
        "k2",
        "K1",
        "k1 ",
        "../../etc/passwd",
        "/dev/null",
        "k1\u{0}",
        "",
        "../k1",
    ] {
        let token = hs256_token(json!({"alg": "HS256", "kid": kid}), &claims());
        assert_eq!(verdict(&jwt, &token, NOW), "unknown key", "{kid:?}");
    }
    // A kid that is not a string is not a name at all.
    let token = hs256_token(json!({"alg": "HS256", "kid": ["k1"]}), &claims());
    assert_eq!(verdict(&jwt, &token, NOW), "malformed token");
}

#[test]
fn exp_and_nbf_at_the_leeway_boundary() {
    // Fresh plugins: the boundary is checked on the full path, not a cache hit.
    let at = |token: &str, now: i64| verdict(&hs256(), token, now);
    let expiring = hs256_token(json!({"alg": "HS256"}), &json!({"exp": NOW}));
    assert_eq!(at(&expiring, NOW + 59), "ok");
    assert_eq!(at(&expiring, NOW + 60), "token expired");
    assert_eq!(at(&expiring, NOW + 61), "token expired");

    let maturing = hs256_token(
        json!({"alg": "HS256"}),
        &json!({"exp": NOW + 3600, "nbf": NOW}),
    );
    assert_eq!(at(&maturing, NOW - 61), "token not yet valid");
    assert_eq!(at(&maturing, NOW - 60), "ok");
    assert_eq!(at(&maturing, NOW - 59), "ok");

    let strict = || {
        plugin(
            json!({"algorithms": ["HS256"], "keys": [{"alg": "HS256", "secret": SECRET}], "leeway": 0}),
        )
    };
    assert_eq!(verdict(&strict(), &expiring, NOW - 1), "ok");
    assert_eq!(verdict(&strict(), &expiring, NOW), "token expired");

    for bad in [
        json!({"exp": "1700000600"}),
        json!({"exp": NOW + 60, "nbf": "0"}),
        json!({"exp": NOW + 60, "iat": null}),
    ] {
        let token = hs256_token(json!({"alg": "HS256"}), &bad);
        assert_eq!(verdict(&hs256(), &token, NOW), "malformed token", "{bad}");
    }
    let token = hs256_token(json!({"alg": "HS256"}), &json!({"sub": "a"}));
    assert_eq!(verdict(&hs256(), &token, NOW), "missing claim exp");
}

#[test]
fn issuer_and_audience_must_match() {
    let jwt = || {
        plugin(json!({
            "algorithms": ["HS256"],
            "keys": [{"alg": "HS256", "secret": SECRET}],
            "issuer": ["https://a.example", "https://b.example"],
            "audience": "api",
        }))
    };
    let token = |iss: Value, aud: Value| {
        let mut c = claims();
        c["iss"] = iss;
        c["aud"] = aud;
        hs256_token(json!({"alg": "HS256"}), &c)
    };
    assert_eq!(
        verdict(
            &jwt(),
            &token(json!("https://b.example"), json!("api")),
            NOW
        ),
        "ok"
    );
    assert_eq!(
        verdict(
            &jwt(),
            &token(json!("https://b.example"), json!(["x", "api"])),
            NOW
        ),
        "ok"
    );
    for iss in [
        json!("https://c.example"),
        json!("https://a.example/"),
        json!(["https://a.example"]),
        Value::Null,
    ] {
        assert_eq!(
            verdict(&jwt(), &token(iss.clone(), json!("api")), NOW),
            "invalid issuer",
            "{iss}"
        );
    }
    for aud in [
        json!("apii"),
        json!(["x", "y"]),
        json!([]),
        json!(["API"]),
        Value::Null,
    ] {
        assert_eq!(
            verdict(&jwt(), &token(json!("https://a.example"), aud.clone()), NOW),
            "invalid audience",
            "{aud}"
        );
    }
}

#[test]
fn only_strict_compact_serialization_is_read() {
    let jwt = hs256();
    let valid = hs256_token(json!({"alg": "HS256"}), &claims());
    let [header, payload, signature]: [&str; 3] = valid
        .split('.')
        .collect::<Vec<_>>()
        .try_into()
        .unwrap_or_else(|_| panic!("three segments"));
    let mut bad = vec![
        format!("{header}.{payload}"),
        format!("{header}.{payload}.{signature}.{signature}"),
        format!("{header}.{payload}.{signature}."),
        format!("{header}=.{payload}.{signature}"),
        format!("{header}.{payload}.{signature}="),
        format!("{header}.{payload}=.{signature}"),
        format!("{header}.{payload}.{signature}\n"),
        format!(" {valid}"),
        format!("{header}.{payload}.+{}", &signature[1..]),
        format!("{header}.{payload}./{}", &signature[1..]),
        format!("{header}.{payload}.{}", &signature[..signature.len() - 1]),
        String::new(),
        "..".into(),
    ];
    // The same signature with non-zero unused bits: 32 bytes leave 2 spare
    // bits in the last character, so setting the lowest one changes no byte.
    const ALPHABET: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let last = signature.chars().last().unwrap_or('A');
    let index = ALPHABET.find(last).unwrap_or_default();
    let sibling = ALPHABET.as_bytes()[index | 1] as char;
    bad.push(format!(
        "{header}.{payload}.{}{sibling}",
        &signature[..signature.len() - 1]
    ));
    for token in &bad {
        assert_eq!(verdict(&jwt, token, NOW), "malformed token", "{token:?}");
    }
    assert_eq!(verdict(&jwt, &valid, NOW), "ok");

    // Header and payload are JSON objects with unique members.
    for (header, payload) in [
        (r#"{"alg":"HS256","alg":"none"}"#, r#"{"exp":1700000600}"#),
        (r#"{"alg":"none","alg":"HS256"}"#, r#"{"exp":1700000600}"#),
        (r#"["HS256"]"#, r#"{"exp":1700000600}"#),
        (r#"{"alg":"HS256"}"#, r#"[{"exp":1700000600}]"#),
        (r#"{"alg":"HS256"}"#, r#"{"exp":1700000600,"exp":1}"#),
        (r#"{"alg":"HS256"}"#, "not json"),
        (r#"{"alg":"HS256"}"#, ""),
    ] {
        assert_eq!(
            verdict(&jwt, &raw_token(header, payload), NOW),
            "malformed token",
            "{header} {payload}"
        );
    }
}

#[test]
fn an_oversized_token_is_refused_before_decoding() {
    let jwt = hs256();
    assert_eq!(verdict(&jwt, &"!".repeat(8193), NOW), "token too large");
    assert_eq!(verdict(&jwt, &"!".repeat(8192), NOW), "malformed token");
    let mut big = claims();
    big["padding"] = "x".repeat(9000).into();
    let token = hs256_token(json!({"alg": "HS256"}), &big);
    assert_eq!(verdict(&jwt, &token, NOW), "token too large");
    let roomy = plugin(json!({
        "algorithms": ["HS256"],
        "keys": [{"alg": "HS256", "secret": SECRET}],
        "max_token_bytes": 16384,
    }));
    assert_eq!(verdict(&roomy, &token, NOW), "ok");
}

#[test]
fn crit_and_unencoded_payloads_are_refused() {
    let jwt = hs256();
    for header in [
        json!({"alg": "HS256", "crit": ["exp"], "exp": NOW + 60}),
        json!({"alg": "HS256", "crit": []}),
        json!({"alg": "HS256", "crit": ["b64"], "b64": false}),
        json!({"alg": "HS256", "b64": false}),
        json!({"alg": "HS256", "crit": "nonsense"}),
    ] {
        let token = hs256_token(header.clone(), &claims());
        assert_eq!(
            verdict(&jwt, &token, NOW),
            "unsupported critical header",
            "{header}"
        );
    }
    let token = hs256_token(json!({"alg": "HS256", "b64": true}), &claims());
    assert_eq!(verdict(&jwt, &token, NOW), "ok");
}

#[test]
fn an_ambiguous_kid_is_refused() {
    let other = "fedcba9876543210fedcba9876543210";
    let jwks = json!({"keys": [
        {"kty": "oct", "kid": "dup", "k": b64(SECRET.as_bytes())},
        {"kty": "oct", "kid": "dup", "k": b64(other.as_bytes())},
        {"kty": "oct", "kid": "solo", "k": b64(other.as_bytes())},
    ]});
    let jwt = plugin(json!({"algorithms": ["HS256"], "jwks": jwks.to_string()}));
    let token = hs256_token(json!({"alg": "HS256", "kid": "dup"}), &claims());
    assert_eq!(verdict(&jwt, &token, NOW), "ambiguous key");
    let token = hmac_token(
        &json!({"alg": "HS256", "kid": "solo"}),
        &claims(),
        other.as_bytes(),
    );
    assert_eq!(verdict(&jwt, &token, NOW), "ok");
    // Without a kid, the keys are simply tried.
    let token = hs256_token(json!({"alg": "HS256"}), &claims());
    assert_eq!(verdict(&jwt, &token, NOW), "ok");

    // A secret in `keys` and a public key in `jwks` under one kid.
    let ec = EcKey::generate();
    let mut jwk = ec.jwk();
    jwk["kid"] = "dup".into();
    let mixed = plugin(json!({
        "algorithms": ["HS256", "ES256"],
        "keys": [{"kid": "dup", "alg": "HS256", "secret": SECRET}],
        "jwks": json!({"keys": [jwk]}).to_string(),
    }));
    let token = hs256_token(json!({"alg": "HS256", "kid": "dup"}), &claims());
    assert_eq!(verdict(&mixed, &token, NOW), "ambiguous key");
    let token = ec.sign(&json!({"alg": "ES256", "kid": "dup"}), &claims());
    assert_eq!(verdict(&mixed, &token, NOW), "ambiguous key");

    // RFC 7517 4.5: one kid on keys of different types is not ambiguous.
    let rsa = RsaKey::generate();
    let mut rsa_jwk = rsa.jwk();
    rsa_jwk["kid"] = "dup".into();
    let mut ec_jwk = ec.jwk();
    ec_jwk["kid"] = "dup".into();
    let alternatives = plugin(json!({
        "algorithms": ["RS256", "ES256"],
        "jwks": json!({"keys": [rsa_jwk, ec_jwk]}).to_string(),
    }));
    let token = ec.sign(&json!({"alg": "ES256", "kid": "dup"}), &claims());
    assert_eq!(verdict(&alternatives, &token, NOW), "ok");
    let token = rsa.sign(&json!({"alg": "RS256", "kid": "dup"}), &claims());
    assert_eq!(verdict(&alternatives, &token, NOW), "ok");
}

#[test]
fn consumer_must_exist_refuses_an_unknown_subject() {
    consumers::register(
        Consumer {
            name: "alice".into(),
            groups: vec!["gold".into()],
            plan: Some("gold".into()),
            metadata: vec![],
        },
        &[],
    );
    let jwt = plugin(json!({
        "algorithms": ["HS256"],
        "keys": [{"alg": "HS256", "secret": SECRET}],
        "consumer_claim": "sub",
        "consumer_must_exist": true,
    }));
    let now = i64::try_from(clock::now_millis() / 1000).unwrap_or_default();
    let token = |sub: Value| {
        hs256_token(
            json!({"alg": "HS256"}),
            &json!({"sub": sub, "exp": now + 600}),
        )
    };
    let request = |token: &str| {
        Request::new("GET", "/").with_header("authorization", &format!("Bearer {token}"))
    };

    let mut ctx = Context::new();
    let action = jwt.on_request(&mut request(&token(json!("alice"))), &mut ctx);
    assert!(matches!(action, Action::Continue), "{action:?}");
    assert_eq!(ctx.get("consumer").as_deref(), Some("alice"));

    for (sub, reason) in [
        (json!("mallory"), "unknown consumer"),
        (json!("ALICE"), "unknown consumer"),
        (json!(""), "missing claim sub"),
        (json!(7), "missing claim sub"),
    ] {
        let mut ctx = Context::new();
        let (status, challenge, body) =
            refusal(&jwt.on_request(&mut request(&token(sub.clone())), &mut ctx));
        assert_eq!(status, 401);
        assert_eq!(body["error"], format!("unauthorized: {reason}"), "{sub}");
        assert!(
            challenge.ends_with(&format!("error_description=\"{reason}\"")),
            "{challenge}"
        );
        assert_eq!(ctx.get("consumer"), None);
    }
}
