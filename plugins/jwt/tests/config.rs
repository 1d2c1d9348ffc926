//! Config errors, as pairs: a bad config and the exact message the operator
//! reads. Good configs are everywhere else in the tests.

mod common;

use common::{init_error, plugin};
use serde_json::{Value, json};

const SECRET: &str = "0123456789abcdef0123456789abcdef";

/// A config that loads, with `changes` merged in (a `null` removes a key).
fn config(changes: Value) -> Value {
    let mut config = json!({"algorithms": ["HS256"], "keys": [{"alg": "HS256", "secret": SECRET}]});
    if let (Some(map), Value::Object(changes)) = (config.as_object_mut(), changes) {
        for (key, value) in changes {
            if value.is_null() {
                map.remove(&key);
            } else {
                map.insert(key, value);
            }
        }
    }
    config
}

#[test]
fn the_base_config_loads() {
    let jwt = plugin(config(json!({})));
    assert_eq!(jwt.validator().key_count(), 1);
    assert_eq!(jwt.validator().max_token_bytes(), 8192);
}

/// RFC 7515 A.3's P-256 public key.
fn p256() -> Value {
    json!({"kty": "EC", "crv": "P-256", "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU", "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"})
}

/// `keys` as a JWK set document.
fn set(keys: Value) -> String {
    json!({ "keys": keys }).to_string()
}

/// [`SECRET`] as base64url.
const SECRET_B64: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY";

#[test]
fn each_bad_config_gives_its_message() {
    let cases = [
        (
            json!({"algorithms": null}),
            "invalid config: missing field `algorithms`",
        ),
        (
            json!({"algorithms": []}),
            "jwt: algorithms must list at least one algorithm; expected one of HS256, HS384, HS512, RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, ES512, EdDSA (case-sensitive)",
        ),
        (
            json!({"algorithms": ["none"]}),
            r#"jwt: "none" is never allowed in algorithms: it would accept unsigned tokens"#,
        ),
        (
            json!({"algorithms": ["NoNe", "HS256"]}),
            r#"jwt: "NoNe" is never allowed in algorithms: it would accept unsigned tokens"#,
        ),
        (
            json!({"algorithms": ["hs256"]}),
            r#"jwt: unknown algorithm "hs256" in algorithms; expected one of HS256, HS384, HS512, RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, ES512, EdDSA (case-sensitive)"#,
        ),
        (
            json!({"algorithm": ["HS256"]}),
            "invalid config: unknown field `algorithm`, expected one of `algorithms`, `keys`, `jwks`, `hmac_secret`, `jwks_url`, `jwks_refresh`, `jwks_min_refetch`, `header`, `query`, `cookie`, `leeway`, `issuer`, `audience`, `required_claims`, `max_token_bytes`, `claims_to_context`, `claims_to_headers`, `consumer_claim`, `consumer_must_exist`, `hide_credentials`, `realm`, `scopes`, `claim_rules`",
        ),
        (
            json!({"keys": []}),
            "jwt: no key configured: give at least one in `keys`, `jwks`, `hmac_secret` or `jwks_url`",
        ),
        (
            json!({"keys": [{"alg": "HS512", "secret": SECRET}]}),
            "jwt: keys[0]: alg HS512 is not in `algorithms`",
        ),
        (
            json!({"keys": [{"alg": "HS256", "secret": "short"}]}),
            "jwt: keys[0]: HS256 needs a secret of at least 32 bytes (RFC 7518 section 3.2), got 5",
        ),
        (
            json!({"keys": [{"alg": "HS256"}]}),
            "jwt: keys[0]: give exactly one of `jwk`, `pem`, `secret`, `secret_base64` (found none)",
        ),
        (
            json!({"keys": [{"alg": "HS256", "secret": SECRET, "secret_base64": "AAAA"}]}),
            "jwt: keys[0]: give exactly one of `jwk`, `pem`, `secret`, `secret_base64` (found secret, secret_base64)",
        ),
        (
            json!({"keys": [{"alg": "HS256", "secret_base64": "not base64!"}]}),
            "jwt: keys[0]: `secret_base64` is not base64",
        ),
        (
            json!({"keys": [{"alg": "HS256", "secret": SECRET, "kid": "a"}, {"alg": "HS256", "secret": SECRET, "kid": "a"}]}),
            r#"jwt: keys[1]: kid "a" is already used by keys[0] (HS256); a kid must name one key per algorithm, and never both a secret and a public key"#,
        ),
        (
            json!({"keys": [{"alg": "HS256", "jwk": {"kty": "oct", "alg": "HS384", "k": "AAAA"}}]}),
            "jwt: keys[0]: the JWK's alg is HS384, the entry's is HS256; a key serves one algorithm",
        ),
        (
            json!({"keys": [{"alg": "HS256", "jwk": {"kty": "oct", "alg": "A256GCM", "k": "AAAA"}}]}),
            r#"jwt: keys[0]: the JWK's alg "A256GCM" is not a JWS signature algorithm"#,
        ),
        (
            json!({"keys": [{"alg": "HS256", "jwk": "{}"}]}),
            "jwt: keys[0]: `jwk` must be a JSON object",
        ),
        (
            json!({"keys": [{"alg": "HS256", "secret": SECRET, "use": "sig"}]}),
            "invalid config: unknown field `use`, expected one of `kid`, `alg`, `jwk`, `pem`, `secret`, `secret_base64`",
        ),
        (
            json!({"keys": null, "jwks": "{"}),
            "jwt: jwks is not valid JSON: EOF while parsing an object at line 1 column 1",
        ),
        (
            json!({"keys": null, "jwks": "[]"}),
            r#"jwt: jwks must be a JWK set: a JSON object with a "keys" array"#,
        ),
        (
            json!({"keys": null, "jwks": r#"{"keys": []}"#}),
            "jwt: jwks has no keys",
        ),
        (
            json!({"keys": null, "algorithms": ["HS256", "ES256"], "jwks": set(json!([{"kty": "oct", "k": SECRET_B64}, p256()]))}),
            r#"jwt: jwks mixes shared secrets (kty "oct") with public keys; a key set that does both invites key confusion: keep HMAC secrets in `keys`"#,
        ),
        (
            json!({"keys": null, "jwks": set(json!([p256()]))}),
            "jwt: none of the 1 keys in jwks can verify any of the allowed algorithms [HS256] (each is logged above with the reason)",
        ),
        (
            json!({"jwks_url": "ftp://issuer.example.com/jwks"}),
            r#"jwt: jwks_url "ftp://issuer.example.com/jwks" is not an https:// URL (http:// is allowed to localhost, 127.0.0.1 and [::1] only)"#,
        ),
        (
            json!({"jwks_url": "issuer.example.com/jwks"}),
            r#"jwt: jwks_url "issuer.example.com/jwks" is not an https:// URL (http:// is allowed to localhost, 127.0.0.1 and [::1] only)"#,
        ),
        (
            json!({"jwks_url": "http://issuer.example.com/jwks"}),
            r#"jwt: jwks_url "http://issuer.example.com/jwks": plain http:// can be read and changed on the way; use https:// (http:// is allowed to localhost, 127.0.0.1 and [::1] only)"#,
        ),
        (
            json!({"jwks_url": "http://127.0.0.1.example.com/jwks"}),
            r#"jwt: jwks_url "http://127.0.0.1.example.com/jwks": plain http:// can be read and changed on the way; use https:// (http:// is allowed to localhost, 127.0.0.1 and [::1] only)"#,
        ),
        (
            json!({"jwks_url": "https://user:pw@issuer.example.com/jwks"}),
            r#"jwt: jwks_url "https://user:pw@issuer.example.com/jwks" carries credentials; the URL is logged, so it must not"#,
        ),
        (
            json!({"jwks_url": "https:///jwks"}),
            r#"jwt: jwks_url "https:///jwks" has no host"#,
        ),
        (
            json!({"jwks_url": "https://issuer.example.com/jwks "}),
            r#"jwt: jwks_url "https://issuer.example.com/jwks " holds whitespace or control characters"#,
        ),
        (
            json!({"jwks_url": "https://issuer.example.com/jwks", "jwks_refresh": 9}),
            "jwt: jwks_refresh must be between 10 and 86400 seconds, got 9",
        ),
        (
            json!({"jwks_url": "https://issuer.example.com/jwks", "jwks_refresh": 86401}),
            "jwt: jwks_refresh must be between 10 and 86400 seconds, got 86401",
        ),
        (
            json!({"jwks_url": "https://issuer.example.com/jwks", "jwks_min_refetch": 0}),
            "jwt: jwks_min_refetch must be between 1 and jwks_refresh (300) seconds, got 0",
        ),
        (
            json!({"jwks_url": "https://issuer.example.com/jwks", "jwks_refresh": 60, "jwks_min_refetch": 61}),
            "jwt: jwks_min_refetch must be between 1 and jwks_refresh (60) seconds, got 61",
        ),
        (
            json!({"jwks_refresh": 600}),
            "jwt: jwks_refresh needs jwks_url, the JWK set it refreshes",
        ),
        (
            json!({"jwks_min_refetch": 5}),
            "jwt: jwks_min_refetch needs jwks_url, the JWK set it refreshes",
        ),
        (
            json!({"jwks_url": 5}),
            "invalid config: invalid type: integer `5`, expected a string",
        ),
        (
            json!({"leeway": 601}),
            "jwt: leeway is 601 seconds; at most 600 are allowed",
        ),
        (
            json!({"leeway": -1}),
            "invalid config: invalid value: integer `-1`, expected u64",
        ),
        (
            json!({"max_token_bytes": 64}),
            "jwt: max_token_bytes must be between 128 and 65536, got 64",
        ),
        (
            json!({"issuer": []}),
            "jwt: issuer is an empty list; leave it out to skip the check",
        ),
        (
            json!({"issuer": 5}),
            "invalid config: invalid type: integer `5`, expected a string or a list of strings",
        ),
        (
            json!({"audience": ["api", ""]}),
            "jwt: audience holds an empty string",
        ),
        (
            json!({"required_claims": ["has space"]}),
            r#"jwt: required_claims: "has space" is not a usable claim name (1 to 200 printable ASCII characters, no quotes or backslashes)"#,
        ),
        (
            json!({"header": "bad header"}),
            r#"jwt: header: "bad header" is not a valid header name"#,
        ),
        (
            json!({"query": ""}),
            r#"jwt: query "" is not a usable parameter name"#,
        ),
        (
            json!({"cookie": "a;b"}),
            r#"jwt: cookie "a;b" is not a valid cookie name"#,
        ),
        (
            json!({"claims_to_headers": {"sub": "authorization"}}),
            "jwt: claims_to_headers.sub: the claim cannot be written to `authorization`, which the gateway or this plugin reads",
        ),
        (
            json!({"claims_to_headers": {"sub": "Host"}}),
            "jwt: claims_to_headers.sub: the claim cannot be written to `host`, which the gateway or this plugin reads",
        ),
        (
            json!({"claims_to_headers": {"sub": "x-user", "name": "X-User"}}),
            "jwt: claims_to_headers: `name` and `sub` both write header `x-user`",
        ),
        (
            json!({"claims_to_context": [""]}),
            r#"jwt: claims_to_context: "" is not a usable claim name (1 to 200 printable ASCII characters, no quotes or backslashes)"#,
        ),
        (
            json!({"consumer_must_exist": true}),
            "jwt: consumer_must_exist needs consumer_claim, the claim naming the consumer",
        ),
        (
            json!({"realm": "a\"b"}),
            "jwt: realm must be non-empty, without quotes, backslashes or control characters",
        ),
    ];
    for (changes, expected) in cases {
        assert_eq!(init_error(config(changes.clone())), expected, "{changes}");
    }
}

#[test]
fn hmac_secret_keys_every_allowed_hs_algorithm() {
    let jwt = plugin(
        json!({"algorithms": ["HS256", "HS512", "ES256"], "hmac_secret": SECRET.repeat(2), "jwks": set(json!([p256()]))}),
    );
    // One key per HS algorithm plus the EC key.
    assert_eq!(jwt.validator().key_count(), 3);
    assert_eq!(
        init_error(
            json!({"algorithms": ["ES256"], "hmac_secret": SECRET, "jwks": set(json!([p256()]))})
        ),
        "jwt: hmac_secret needs an HS256, HS384 or HS512 entry in algorithms"
    );
}
