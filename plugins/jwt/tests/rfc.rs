//! The RFC 7515 appendix A.1 (HS256) and A.2 (RS256) example JWTs, validated
//! as JWTs: signature and claims. (RFC 7520's cookbook figures run in
//! `wycheproof.rs`, which holds them as its rfc7520 groups.)

mod common;

use common::{plugin, verdict};
use serde_json::{Value, json};

/// Both examples sign this payload: `{"iss":"joe", "exp":1300819380,
/// "http://example.com/is_root":true}`, with CRLF line breaks.
const PAYLOAD: &str = "eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ";
const EXP: i64 = 1_300_819_380;

const A1_K: &str =
    "AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow";

fn a1_token() -> String {
    format!(
        "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9.{PAYLOAD}.dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
    )
}

fn a2_token() -> String {
    format!(
        "eyJhbGciOiJSUzI1NiJ9.{PAYLOAD}.\
         cC4hiUPoj9Eetdgtv3hF80EGrhuB__dzERat0XF9g2VtQgr9PJbu3XOiZj5RZmh7\
         AAuHIm4Bh-0Qc_lF5YKt_O8W2Fp5jujGbds9uJdbF9CUAr7t1dnZcAcQjbKBYNX4\
         BAynRFdiuB--f_nZLgrnbyTyWzO75vRK5h6xBArLIARNPvkSjtQBMHlb1L07Qe7K\
         0GarZRmB_eSN9383LcOLn6_dO--xi12jzDwusC-eOkHWEsqtFZESc6BfI7noOPqv\
         hJ1phCnvWh6IeYI2w9QOYEUipUTI8np6LbgGY9Fs98rqVt5AXLIhWkWywlVmtVrB\
         p0igcN_IoypGlUPQGe77Rw"
    )
}

fn a2_jwk() -> Value {
    json!({
        "kty": "RSA",
        "n": "ofgWCuLjybRlzo0tZWJjNiuSfb4p4fAkd_wWJcyQoTbji9k0l8W26mPddxHmfHQp-Vaw-4qPCJrcS2mJPMEzP1Pt0Bm4d4QlL-yRT-SFd2lZS-pCgNMsD1W_YpRPEwOWvG6b32690r2jZ47soMZo9wGzjb_7OMg0LOL-bSf63kpaSHSXndS5z5rexMdbBYUsLA9e-KXBdQOS-UTo7WTBEMa2R2CapHg665xsmtdVMTBQY4uDZlxvb3qCo5ZwKh9kG4LT6_I5IhlJH7aGhyxXFvUK-DWNmoudF8NAco9_h9iaGNj8q2ethFkMLs91kzk2PAcDTW9gb54h4FRWyuXpoQ",
        "e": "AQAB"
    })
}

#[test]
fn rfc7515_a1_hs256_verifies_before_exp() {
    for key in [
        json!({"alg": "HS256", "jwk": {"kty": "oct", "k": A1_K}}),
        json!({"alg": "HS256", "secret_base64": A1_K}),
    ] {
        let jwt = plugin(json!({"algorithms": ["HS256"], "keys": [key], "issuer": "joe"}));
        let verified = jwt
            .validator()
            .validate(&a1_token(), EXP - 100)
            .unwrap_or_else(|e| panic!("A.1: {e}"));
        assert_eq!(verified.claim("iss"), Some(&json!("joe")));
        assert_eq!(
            verified.claim("http://example.com/is_root"),
            Some(&json!(true))
        );
        assert_eq!(verified.alg().name(), "HS256");
        // Expired, once past exp plus the default leeway of 60 seconds.
        assert_eq!(verdict(&jwt, &a1_token(), EXP + 60), "token expired");
    }
}

#[test]
fn rfc7515_a2_rs256_verifies_before_exp() {
    let jwt = plugin(json!({
        "algorithms": ["RS256"],
        "jwks": json!({"keys": [a2_jwk()]}).to_string(),
    }));
    let verified = jwt
        .validator()
        .validate(&a2_token(), EXP - 100)
        .unwrap_or_else(|e| panic!("A.2: {e}"));
    assert_eq!(verified.claim("exp"), Some(&json!(EXP)));
    assert_eq!(verdict(&jwt, &a2_token(), EXP + 60), "token expired");

    let keyed =
        plugin(json!({"algorithms": ["RS256"], "keys": [{"alg": "RS256", "jwk": a2_jwk()}]}));
    assert_eq!(verdict(&keyed, &a2_token(), EXP - 100), "ok");
}

#[test]
fn the_examples_refuse_each_others_keys_and_edits() {
    let hs =
        plugin(json!({"algorithms": ["HS256"], "keys": [{"alg": "HS256", "secret_base64": A1_K}]}));
    assert_eq!(
        verdict(&hs, &a2_token(), EXP - 100),
        "algorithm not allowed"
    );
    let rs = plugin(
        json!({"algorithms": ["RS256", "HS256"], "keys": [{"alg": "RS256", "jwk": a2_jwk()}]}),
    );
    assert_eq!(verdict(&rs, &a1_token(), EXP - 100), "unknown key");

    // One bit flipped in the payload ("joe" -> "jof").
    let tampered = a1_token().replace("eyJpc3MiOiJqb2Ui", "eyJpc3MiOiJqb2Yi");
    assert_ne!(tampered, a1_token());
    assert_eq!(verdict(&hs, &tampered, EXP - 100), "invalid signature");
}
