//! `plugin_sdk::crypto` natively: Wycheproof's JOSE vectors, the RFC examples,
//! every algorithm round-tripped with fresh keys, and the key confusions the
//! module exists to stop.

use std::collections::BTreeSet;
use std::sync::OnceLock;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeyPair as RsaKeyPair, KeySize};
use aws_lc_rs::signature::{self as lc, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use plugin_sdk::crypto::{self, Algorithm, DigestAlgorithm, VerifyingKey};
use serde_json::{Value, json};

// ---------------------------------------------------------------------------
// Wycheproof

const JWS_VECTORS: &str = include_str!("fixtures/wycheproof/json_web_signature_test.json");
const JWK_VECTORS: &str = include_str!("fixtures/wycheproof/json_web_key_test.json");

// Invalid cases that this module cannot refuse on its own: what makes them
// invalid is the JWS or JWK-set layer, which the JWT plugin owns. Each must
// show up in that plugin's tests. "Unparsed" cases never reach the module
// because a strict compact-JWS split refuses them first.
const NOT_THREE_SEGMENTS: &str = "compact JWS is exactly three segments (JWT plugin parser)";
const HEADER_NOT_JSON: &str = "protected header empty or not JSON (JWT plugin parser)";
const ALG_NONE: &str = "alg none or unknown: the JWT plugin's allow-list refuses it";
const JSON_SERIALIZATION: &str = "JSON serialization, not compact (JWT plugin parser)";
const BAD_BASE64_SIGNATURE: &str = "signature segment is not base64url (JWT plugin parser)";
const BAD_BASE64_HEADER: &str = "header segment is not base64url (JWT plugin parser)";
const BAD_BASE64_PAYLOAD: &str =
    "payload segment is not base64url; the MAC covers it as sent (JWT plugin must decode strictly)";
const NON_CANONICAL_PAYLOAD: &str = "payload \"AB\" has nonzero unused bits; the MAC covers it \
     as sent (JWT plugin must decode strictly)";
const SAME_AS_VALID: &str = "token is byte-identical to valid tcId 357 (the padding it \
     should carry is missing); no verifier can refuse it";

const JWS_DEFERRED: &[(u64, &str)] = &[
    (4, NOT_THREE_SEGMENTS),
    (7, NOT_THREE_SEGMENTS),
    (9, HEADER_NOT_JSON),
    (10, NOT_THREE_SEGMENTS),
    (11, HEADER_NOT_JSON),
    (12, NOT_THREE_SEGMENTS),
    (13, NOT_THREE_SEGMENTS),
    (14, NOT_THREE_SEGMENTS),
    (15, NOT_THREE_SEGMENTS),
    (16, ALG_NONE),
    (17, JSON_SERIALIZATION),
    (21, NOT_THREE_SEGMENTS),
    (24, NOT_THREE_SEGMENTS),
    (26, HEADER_NOT_JSON),
    (27, NOT_THREE_SEGMENTS),
    (28, HEADER_NOT_JSON),
    (29, NOT_THREE_SEGMENTS),
    (30, NOT_THREE_SEGMENTS),
    (36, NOT_THREE_SEGMENTS),
    (39, NOT_THREE_SEGMENTS),
    (41, HEADER_NOT_JSON),
    (42, NOT_THREE_SEGMENTS),
    (43, HEADER_NOT_JSON),
    (44, NOT_THREE_SEGMENTS),
    (45, NOT_THREE_SEGMENTS),
    (341, ALG_NONE),
    (342, ALG_NONE),
    (343, ALG_NONE),
    (344, ALG_NONE),
    (360, BAD_BASE64_SIGNATURE),
    (361, BAD_BASE64_SIGNATURE),
    (362, BAD_BASE64_SIGNATURE),
    (363, BAD_BASE64_SIGNATURE),
    (364, BAD_BASE64_SIGNATURE),
    (365, BAD_BASE64_HEADER),
    (366, BAD_BASE64_HEADER),
    (367, SAME_AS_VALID),
    (368, BAD_BASE64_PAYLOAD),
    (369, BAD_BASE64_PAYLOAD),
    (370, SAME_AS_VALID),
    (371, BAD_BASE64_PAYLOAD),
    (375, NON_CANONICAL_PAYLOAD),
];

// Valid cases this module refuses on purpose.
const JWK_ALG_DIFFERS: &str = "the key's JWK says PS256 and the token PS384: one algorithm per \
     key (RFC 8725 3.1), the bug Wycheproof's own notes call WrongPrimitive";
const STRAY_CHARACTER: &str = "a '?' inside a segment: strict base64url refuses it, and the MAC \
     does not cover the bytes as sent";

const JWS_VALID_REFUSED: &[(u64, &str)] = &[
    (346, JWK_ALG_DIFFERS),
    (350, JWK_ALG_DIFFERS),
    (372, STRAY_CHARACTER),
    (373, STRAY_CHARACTER),
];

const JWK_DEFERRED: &[(u64, &str)] = &[
    (
        1,
        "a key set mixing HMAC and EC keys: the JWT plugin refuses such sets",
    ),
    (
        4,
        "two keys with the same kid: the JWT plugin refuses such sets",
    ),
];

#[derive(Clone, Copy, Debug, PartialEq)]
enum Outcome {
    Verified,
    /// Key creation failed for every key, or no key verified the signature.
    Refused,
    /// A strict compact-JWS split refused the token before any crypto.
    Unparsed,
}

/// What this module makes of `jws` with any of `keys`, for the `alg` its
/// protected header names.
fn outcome(keys: &[Value], jws: &str) -> Outcome {
    let segments: Vec<&str> = jws.split('.').collect();
    let [header, payload, signature] = segments[..] else {
        return Outcome::Unparsed;
    };
    let alg = URL_SAFE_NO_PAD
        .decode(header)
        .ok()
        .and_then(|header| serde_json::from_slice::<Value>(&header).ok())
        .and_then(|header| Algorithm::from_name(header.get("alg")?.as_str()?));
    let (Some(alg), Ok(signature)) = (alg, URL_SAFE_NO_PAD.decode(signature)) else {
        return Outcome::Unparsed;
    };
    let signing_input = &jws.as_bytes()[..header.len() + 1 + payload.len()];
    let verified = keys.iter().any(|jwk| {
        VerifyingKey::from_jwk(alg, &jwk.to_string())
            .is_ok_and(|key| key.verify(signing_input, &signature))
    });
    if verified {
        Outcome::Verified
    } else {
        Outcome::Refused
    }
}

/// The group's public JWK(s), or its private one(s) for HMAC groups.
fn group_keys(group: &Value) -> Vec<Value> {
    let set = group
        .get("public")
        .or_else(|| group.get("private"))
        .expect("a test group has keys");
    match set.get("keys") {
        Some(Value::Array(keys)) => keys.clone(),
        _ => vec![set.clone()],
    }
}

fn ids(list: &[(u64, &str)]) -> BTreeSet<u64> {
    list.iter().map(|&(id, _)| id).collect()
}

fn run_wycheproof(
    name: &str,
    vectors: &str,
    deferred: &[(u64, &str)],
    valid_refused: &[(u64, &str)],
) {
    let vectors: Value = serde_json::from_str(vectors).expect("vectors are JSON");
    let (mut valid, mut valid_verified) = (0, 0);
    let (mut invalid, mut invalid_refused) = (0, 0);
    let mut acceptable = 0;
    let mut passed_through = BTreeSet::new();
    let mut valid_not_verified = BTreeSet::new();
    let mut seen = 0;

    for group in vectors["testGroups"].as_array().expect("testGroups") {
        let keys = group_keys(group);
        for test in group["tests"].as_array().expect("tests") {
            seen += 1;
            let id = test["tcId"].as_u64().expect("tcId");
            let jws = test["jws"].as_str().expect("jws");
            let outcome = outcome(&keys, jws);
            match test["result"].as_str().expect("result") {
                "valid" => {
                    valid += 1;
                    if outcome == Outcome::Verified {
                        valid_verified += 1;
                    } else {
                        valid_not_verified.insert(id);
                    }
                }
                "invalid" => {
                    invalid += 1;
                    if outcome == Outcome::Refused {
                        invalid_refused += 1;
                    } else {
                        passed_through.insert(id);
                    }
                }
                "acceptable" => acceptable += 1,
                other => panic!("tcId {id}: unknown result {other:?}"),
            }
        }
    }

    println!(
        "{name}: {valid_verified}/{valid} valid verified, {invalid_refused}/{invalid} invalid \
         refused, {} invalid deferred to the JWT plugin, {} valid refused by design, \
         {acceptable} acceptable",
        passed_through.len(),
        valid_not_verified.len(),
    );
    assert_eq!(
        seen,
        vectors["numberOfTests"].as_u64().expect("numberOfTests"),
        "{name}: every test ran"
    );
    assert_eq!(
        passed_through,
        ids(deferred),
        "{name}: the invalid cases this module does not refuse are exactly the deferred list"
    );
    assert_eq!(
        valid_not_verified,
        ids(valid_refused),
        "{name}: the valid cases refused are exactly the by-design list"
    );
}

#[test]
fn wycheproof_json_web_signature() {
    run_wycheproof(
        "json_web_signature_test.json",
        JWS_VECTORS,
        JWS_DEFERRED,
        JWS_VALID_REFUSED,
    );
}

#[test]
fn wycheproof_json_web_key() {
    run_wycheproof("json_web_key_test.json", JWK_VECTORS, JWK_DEFERRED, &[]);
}

#[test]
fn the_roca_key_is_refused_for_roca_itself() {
    let vectors: Value = serde_json::from_str(JWK_VECTORS).expect("vectors are JSON");
    let group = vectors["testGroups"]
        .as_array()
        .expect("testGroups")
        .iter()
        .find(|group| group["comment"] == "jws_rsa_roca_key")
        .expect("the ROCA group");
    let jwk = group_keys(group)[0].to_string();
    let error = VerifyingKey::from_jwk(Algorithm::Rs256, &jwk).expect_err("ROCA key refused");
    assert!(error.contains("ROCA"), "{error}");
}

// ---------------------------------------------------------------------------
// RFC examples

/// RFC 7515 A.1 to A.3 sign this payload.
const JWT_PAYLOAD: &str = "eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ";

const RFC7515_A1_KEY: &str = r#"{"kty":"oct",
 "k":"AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow"}"#;

const RFC7515_A2_KEY: &str = r#"{"kty":"RSA",
 "n":"ofgWCuLjybRlzo0tZWJjNiuSfb4p4fAkd_wWJcyQoTbji9k0l8W26mPddxHmfHQp-Vaw-4qPCJrcS2mJPMEzP1Pt0Bm4d4QlL-yRT-SFd2lZS-pCgNMsD1W_YpRPEwOWvG6b32690r2jZ47soMZo9wGzjb_7OMg0LOL-bSf63kpaSHSXndS5z5rexMdbBYUsLA9e-KXBdQOS-UTo7WTBEMa2R2CapHg665xsmtdVMTBQY4uDZlxvb3qCo5ZwKh9kG4LT6_I5IhlJH7aGhyxXFvUK-DWNmoudF8NAco9_h9iaGNj8q2ethFkMLs91kzk2PAcDTW9gb54h4FRWyuXpoQ",
 "e":"AQAB"}"#;

const RFC7515_A3_KEY: &str = r#"{"kty":"EC","crv":"P-256",
 "x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
 "y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0",
 "d":"jpsQnnGQmL-YBIffH1136cspYG6-0iY7X1fCE9-E9LI"}"#;

const RFC7515_A4_KEY: &str = r#"{"kty":"EC","crv":"P-521",
 "x":"AekpBQ8ST8a8VcfVOTNl353vSrDCLLJXmPk06wTjxrrjcBpXp5EOnYG_NjFZ6OvLFV1jSfS9tsz4qUxcWceqwQGk",
 "y":"ADSmRA43Z1DSNx_RvcLI87cdL07l6jQyyBXMoxVg_l2Th-x3S1WDhjDly79ajL4Kkd0AZMaZmh9ubmf63e3kyMj2"}"#;

const RFC8037_A_KEY: &str = r#"{"kty":"OKP","crv":"Ed25519",
 "d":"nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A",
 "x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}"#;

fn rfc_tokens() -> [(Algorithm, &'static str, String); 5] {
    [
        (
            Algorithm::Hs256,
            RFC7515_A1_KEY,
            format!(
                "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9.{JWT_PAYLOAD}.\
                 dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
            ),
        ),
        (
            Algorithm::Rs256,
            RFC7515_A2_KEY,
            format!(
                "eyJhbGciOiJSUzI1NiJ9.{JWT_PAYLOAD}.\
                 cC4hiUPoj9Eetdgtv3hF80EGrhuB__dzERat0XF9g2VtQgr9PJbu3XOiZj5RZmh7\
                 AAuHIm4Bh-0Qc_lF5YKt_O8W2Fp5jujGbds9uJdbF9CUAr7t1dnZcAcQjbKBYNX4\
                 BAynRFdiuB--f_nZLgrnbyTyWzO75vRK5h6xBArLIARNPvkSjtQBMHlb1L07Qe7K\
                 0GarZRmB_eSN9383LcOLn6_dO--xi12jzDwusC-eOkHWEsqtFZESc6BfI7noOPqv\
                 hJ1phCnvWh6IeYI2w9QOYEUipUTI8np6LbgGY9Fs98rqVt5AXLIhWkWywlVmtVrB\
                 p0igcN_IoypGlUPQGe77Rw"
            ),
        ),
        (
            Algorithm::Es256,
            RFC7515_A3_KEY,
            format!(
                "eyJhbGciOiJFUzI1NiJ9.{JWT_PAYLOAD}.\
                 DtEhU3ljbEg8L38VWAfUAqOyKAM6-Xx-F4GawxaepmXFCgfTjDxw5djxLa8ISlSApmWQxfKTUJqPP3-Kg6NU1Q"
            ),
        ),
        (
            Algorithm::Es512,
            RFC7515_A4_KEY,
            "eyJhbGciOiJFUzUxMiJ9.UGF5bG9hZA.\
             AdwMgeerwtHoh-l192l60hp9wAHZFVJbLfD_UxMi70cwnZOYaRI1bKPWROc-mZZq\
             wqT2SI-KGDKB34XO0aw_7XdtAG8GaSwFKdCAPZgoXD2YBJZCPEX3xKpRwcdOO8Kp\
             EHwJjyqOgzDO7iKvU8vcnwNrmxYbSW9ERBXukOXolLzeO_Jn"
                .to_string(),
        ),
        (
            Algorithm::EdDsa,
            RFC8037_A_KEY,
            "eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc.\
             hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg"
                .to_string(),
        ),
    ]
}

/// The signing input and signature bytes of a compact JWS.
fn split(token: &str) -> (&[u8], Vec<u8>) {
    let (signing_input, signature) = token.rsplit_once('.').expect("a compact JWS");
    let signature = URL_SAFE_NO_PAD
        .decode(signature)
        .expect("base64url signature");
    (signing_input.as_bytes(), signature)
}

#[test]
fn rfc_examples_verify() {
    for (alg, jwk, token) in rfc_tokens() {
        let key = VerifyingKey::from_jwk(alg, jwk).unwrap_or_else(|e| panic!("{alg:?}: {e}"));
        assert_eq!(key.algorithm(), alg);
        let (signing_input, signature) = split(&token);
        assert!(key.verify(signing_input, &signature), "{alg:?} example");

        let mut tampered = signing_input.to_vec();
        tampered[0] ^= 1;
        assert!(!key.verify(&tampered, &signature), "{alg:?} tampered input");
        let mut flipped = signature.clone();
        flipped[5] ^= 1;
        assert!(
            !key.verify(signing_input, &flipped),
            "{alg:?} tampered signature"
        );
        assert!(
            !key.verify(signing_input, &signature[..signature.len() - 1]),
            "{alg:?} short signature"
        );
    }
}

#[test]
fn rfc7515_a1_verifies_from_the_raw_secret_too() {
    let jwk: Value = serde_json::from_str(RFC7515_A1_KEY).expect("JSON");
    let secret = URL_SAFE_NO_PAD
        .decode(jwk["k"].as_str().expect("k"))
        .expect("base64url");
    let key = VerifyingKey::from_secret(Algorithm::Hs256, &secret).expect("64-byte secret");
    let (_, _, token) = &rfc_tokens()[0];
    let (signing_input, signature) = split(token);
    assert!(key.verify(signing_input, &signature));
    assert_eq!(
        crypto::hmac(DigestAlgorithm::Sha256, &secret, signing_input),
        signature
    );
}

#[test]
fn ecdsa_signatures_are_fixed_size_only() {
    let key = VerifyingKey::from_jwk(Algorithm::Es256, RFC7515_A3_KEY).expect("A.3 key");
    let (_, _, token) = &rfc_tokens()[2];
    let (signing_input, signature) = split(token);
    let (r, s) = signature.split_at(32);
    // The same (r, s) as ASN.1 DER, as X.509 would carry it: not JWS.
    let mut der = vec![0x30, 0x46, 0x02, 0x21, 0x00];
    der.extend_from_slice(r);
    der.extend_from_slice(&[0x02, 0x21, 0x00]);
    der.extend_from_slice(s);
    assert!(key.verify(signing_input, &signature));
    assert!(!key.verify(signing_input, &der));
    assert!(!key.verify(signing_input, &[signature.as_slice(), &[0]].concat()));
    assert!(!key.verify(signing_input, &[]));
}

// ---------------------------------------------------------------------------
// Every algorithm with fresh keys, as JWK and PEM

const MESSAGE: &[u8] = b"eyJhbGciOiJub25lIn0.eyJzdWIiOiJyb3VuZC10cmlwIn0";

struct Fresh {
    jwk: String,
    /// SubjectPublicKeyInfo DER; `None` for HMAC.
    spki: Option<Vec<u8>>,
    signature: Vec<u8>,
}

fn rsa_pair() -> &'static RsaKeyPair {
    static PAIR: OnceLock<RsaKeyPair> = OnceLock::new();
    PAIR.get_or_init(|| RsaKeyPair::generate(KeySize::Rsa2048).expect("RSA key generation"))
}

fn b64url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn fresh(alg: Algorithm) -> Fresh {
    let rng = SystemRandom::new();
    match alg {
        Algorithm::Hs256 | Algorithm::Hs384 | Algorithm::Hs512 => {
            let secret = [0x5a; 64];
            let digest = match alg {
                Algorithm::Hs256 => DigestAlgorithm::Sha256,
                Algorithm::Hs384 => DigestAlgorithm::Sha384,
                _ => DigestAlgorithm::Sha512,
            };
            Fresh {
                jwk: json!({"kty": "oct", "k": b64url(&secret)}).to_string(),
                spki: None,
                signature: crypto::hmac(digest, &secret, MESSAGE),
            }
        }
        Algorithm::Rs256
        | Algorithm::Rs384
        | Algorithm::Rs512
        | Algorithm::Ps256
        | Algorithm::Ps384
        | Algorithm::Ps512 => {
            let pair = rsa_pair();
            let encoding: &'static dyn lc::RsaEncoding = match alg {
                Algorithm::Rs256 => &lc::RSA_PKCS1_SHA256,
                Algorithm::Rs384 => &lc::RSA_PKCS1_SHA384,
                Algorithm::Rs512 => &lc::RSA_PKCS1_SHA512,
                Algorithm::Ps256 => &lc::RSA_PSS_SHA256,
                Algorithm::Ps384 => &lc::RSA_PSS_SHA384,
                _ => &lc::RSA_PSS_SHA512,
            };
            let mut signature = vec![0; pair.public_modulus_len()];
            pair.sign(encoding, &rng, MESSAGE, &mut signature)
                .expect("RSA signing");
            let public = pair.public_key();
            Fresh {
                jwk: json!({
                    "kty": "RSA",
                    "n": b64url(public.modulus().big_endian_without_leading_zero()),
                    "e": b64url(public.exponent().big_endian_without_leading_zero()),
                })
                .to_string(),
                spki: Some(public.as_der().expect("SPKI").as_ref().to_vec()),
                signature,
            }
        }
        Algorithm::Es256 | Algorithm::Es384 | Algorithm::Es512 => {
            let (signing, crv, len) = match alg {
                Algorithm::Es256 => (&lc::ECDSA_P256_SHA256_FIXED_SIGNING, "P-256", 32),
                Algorithm::Es384 => (&lc::ECDSA_P384_SHA384_FIXED_SIGNING, "P-384", 48),
                _ => (&lc::ECDSA_P521_SHA512_FIXED_SIGNING, "P-521", 66),
            };
            let pair = EcdsaKeyPair::generate(signing).expect("EC key generation");
            let point = pair.public_key().as_ref();
            let (x, y) = point[1..].split_at(len);
            Fresh {
                jwk: json!({"kty": "EC", "crv": crv, "x": b64url(x), "y": b64url(y)}).to_string(),
                spki: Some(pair.public_key().as_der().expect("SPKI").as_ref().to_vec()),
                signature: pair
                    .sign(&rng, MESSAGE)
                    .expect("ECDSA signing")
                    .as_ref()
                    .to_vec(),
            }
        }
        Algorithm::EdDsa => {
            let pair = Ed25519KeyPair::generate().expect("Ed25519 key generation");
            Fresh {
                jwk:
                    json!({"kty": "OKP", "crv": "Ed25519", "x": b64url(pair.public_key().as_ref())})
                        .to_string(),
                spki: Some(pair.public_key().as_der().expect("SPKI").as_ref().to_vec()),
                signature: pair.sign(MESSAGE).as_ref().to_vec(),
            }
        }
    }
}

fn pem(label: &str, der: &[u8]) -> String {
    let body = STANDARD.encode(der);
    let lines: Vec<&str> = body
        .as_bytes()
        .chunks(64)
        .map(|line| std::str::from_utf8(line).expect("base64 is ASCII"))
        .collect();
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        lines.join("\n")
    )
}

#[test]
fn every_algorithm_round_trips_and_no_other_algorithm_accepts_its_signature() {
    for alg in Algorithm::ALL {
        let fresh = fresh(alg);
        let key =
            VerifyingKey::from_jwk(alg, &fresh.jwk).unwrap_or_else(|e| panic!("{alg:?}: {e}"));
        assert!(key.verify(MESSAGE, &fresh.signature), "{alg:?} JWK");
        assert!(!key.verify(b"another message", &fresh.signature), "{alg:?}");

        if let Some(spki) = &fresh.spki {
            let key = VerifyingKey::from_pem(alg, &pem("PUBLIC KEY", spki))
                .unwrap_or_else(|e| panic!("{alg:?} PEM: {e}"));
            assert!(key.verify(MESSAGE, &fresh.signature), "{alg:?} PEM");
        }

        for other in Algorithm::ALL.into_iter().filter(|&other| other != alg) {
            // Same key type (RS256 and PS384 share RSA keys) may load, but never verifies.
            if let Ok(key) = VerifyingKey::from_jwk(other, &fresh.jwk) {
                assert!(
                    !key.verify(MESSAGE, &fresh.signature),
                    "an {alg:?} signature verified as {other:?}"
                );
            }
        }
    }
}

#[test]
fn pkcs1_rsa_public_key_pem_loads() {
    let pair = rsa_pair();
    let public = pair.public_key();
    let key = VerifyingKey::from_pem(Algorithm::Ps256, &pem("RSA PUBLIC KEY", public.as_ref()))
        .expect("PKCS#1 PEM");
    let fresh = fresh(Algorithm::Ps256);
    assert!(key.verify(MESSAGE, &fresh.signature));
    // PKCS#1 is RSA-only.
    assert!(
        VerifyingKey::from_pem(Algorithm::Es256, &pem("RSA PUBLIC KEY", public.as_ref())).is_err()
    );
}

#[test]
fn pem_of_the_wrong_kind_is_refused_by_name() {
    let p384 = fresh(Algorithm::Es384).spki.expect("SPKI");
    let p384 = pem("PUBLIC KEY", &p384);
    let error = VerifyingKey::from_pem(Algorithm::Es256, &p384).expect_err("P-384 for ES256");
    assert!(
        error.contains("P-256") && error.contains("P-384"),
        "{error}"
    );
    let error = VerifyingKey::from_pem(Algorithm::Rs256, &p384).expect_err("EC for RS256");
    assert!(error.contains("RSA") && error.contains("P-384"), "{error}");
    let error = VerifyingKey::from_pem(Algorithm::Hs256, &p384).expect_err("PEM for HS256");
    assert!(error.contains("HS256"), "{error}");

    let private = pem("PRIVATE KEY", &[0x30, 0x00]);
    let error = VerifyingKey::from_pem(Algorithm::Es256, &private).expect_err("private key");
    assert!(error.contains("PRIVATE KEY"), "{error}");
    assert!(VerifyingKey::from_pem(Algorithm::Es256, "not pem").is_err());
}

// ---------------------------------------------------------------------------
// Key confusion and JWK rules

fn with(jwk: &str, member: &str, value: Value) -> String {
    let mut jwk: Value = serde_json::from_str(jwk).expect("JSON");
    jwk[member] = value;
    jwk.to_string()
}

#[test]
fn an_rsa_public_key_is_never_an_hmac_secret() {
    let error = VerifyingKey::from_jwk(Algorithm::Hs256, RFC7515_A2_KEY).expect_err("confusion");
    assert!(
        error.contains("HS256") && error.contains("\"RSA\""),
        "{error}"
    );
    // Nor a PEM public key; and an RSA algorithm takes no secret.
    assert!(VerifyingKey::from_pem(Algorithm::Hs256, &pem("PUBLIC KEY", &[0x30])).is_err());
    let error =
        VerifyingKey::from_secret(Algorithm::Rs256, &[7; 64]).expect_err("secret for RS256");
    assert!(error.contains("RS256"), "{error}");
}

#[test]
fn each_algorithm_takes_only_its_own_key_type() {
    let p384 = fresh(Algorithm::Es384).jwk;
    let error = VerifyingKey::from_jwk(Algorithm::Es256, &p384).expect_err("P-384 for ES256");
    assert!(
        error.contains("P-256") && error.contains("P-384"),
        "{error}"
    );
    assert!(VerifyingKey::from_jwk(Algorithm::Es512, RFC7515_A3_KEY).is_err());
    assert!(VerifyingKey::from_jwk(Algorithm::EdDsa, RFC7515_A3_KEY).is_err());
    assert!(VerifyingKey::from_jwk(Algorithm::Es256, RFC8037_A_KEY).is_err());
    assert!(VerifyingKey::from_jwk(Algorithm::Rs256, RFC7515_A1_KEY).is_err());
    let x25519 = with(RFC8037_A_KEY, "crv", json!("X25519"));
    assert!(VerifyingKey::from_jwk(Algorithm::EdDsa, &x25519).is_err());
}

#[test]
fn the_jwk_alg_use_and_key_ops_must_allow_this_algorithm() {
    let rs256 = with(RFC7515_A2_KEY, "alg", json!("RS256"));
    assert!(VerifyingKey::from_jwk(Algorithm::Rs256, &rs256).is_ok());
    let error = VerifyingKey::from_jwk(Algorithm::Ps256, &rs256).expect_err("alg mismatch");
    assert!(
        error.contains("RS256") && error.contains("PS256"),
        "{error}"
    );

    let sig = with(RFC7515_A3_KEY, "use", json!("sig"));
    assert!(VerifyingKey::from_jwk(Algorithm::Es256, &sig).is_ok());
    let enc = with(RFC7515_A3_KEY, "use", json!("enc"));
    let error = VerifyingKey::from_jwk(Algorithm::Es256, &enc).expect_err("use enc");
    assert!(error.contains("enc"), "{error}");

    let verify = with(RFC7515_A3_KEY, "key_ops", json!(["sign", "verify"]));
    assert!(VerifyingKey::from_jwk(Algorithm::Es256, &verify).is_ok());
    let encrypt = with(RFC7515_A3_KEY, "key_ops", json!(["encrypt"]));
    assert!(VerifyingKey::from_jwk(Algorithm::Es256, &encrypt).is_err());
    let malformed = with(RFC7515_A3_KEY, "key_ops", json!("verify"));
    assert!(VerifyingKey::from_jwk(Algorithm::Es256, &malformed).is_err());
}

#[test]
fn hmac_secrets_must_be_as_long_as_the_hash() {
    for (alg, len) in [
        (Algorithm::Hs256, 32),
        (Algorithm::Hs384, 48),
        (Algorithm::Hs512, 64),
    ] {
        assert!(
            VerifyingKey::from_secret(alg, &vec![1; len]).is_ok(),
            "{alg:?}"
        );
        let error = VerifyingKey::from_secret(alg, &vec![1; len - 1]).expect_err("short secret");
        assert!(error.contains(&len.to_string()), "{error}");
        let short = json!({"kty": "oct", "k": b64url(&vec![1; len - 1])}).to_string();
        assert!(VerifyingKey::from_jwk(alg, &short).is_err(), "{alg:?} JWK");
    }
    assert!(VerifyingKey::from_secret(Algorithm::Hs256, &[]).is_err());
}

#[test]
fn jwk_members_are_strict_unpadded_base64url() {
    let jwk: Value = serde_json::from_str(RFC7515_A1_KEY).expect("JSON");
    let k = jwk["k"].as_str().expect("k");
    // 64 bytes encode to 86 characters: standard base64 would add "==".
    let padded = with(RFC7515_A1_KEY, "k", json!(format!("{k}==")));
    assert!(VerifyingKey::from_jwk(Algorithm::Hs256, &padded).is_err());
    let standard = with(
        RFC7515_A1_KEY,
        "k",
        json!(k.replace('-', "+").replace('_', "/")),
    );
    assert!(VerifyingKey::from_jwk(Algorithm::Hs256, &standard).is_err());
    let spaced = with(RFC7515_A1_KEY, "k", json!(format!(" {k}")));
    assert!(VerifyingKey::from_jwk(Algorithm::Hs256, &spaced).is_err());
}

#[test]
fn weak_or_malformed_public_keys_are_refused() {
    let jwk: Value = serde_json::from_str(RFC7515_A2_KEY).expect("JSON");
    let n = URL_SAFE_NO_PAD
        .decode(jwk["n"].as_str().expect("n"))
        .expect("base64url");

    // A stray leading zero changes nothing.
    let padded_n = with(
        RFC7515_A2_KEY,
        "n",
        json!(b64url(&[&[0], n.as_slice()].concat())),
    );
    assert!(VerifyingKey::from_jwk(Algorithm::Rs256, &padded_n).is_ok());

    for (e, why) in [(vec![1], "exponent 1"), (vec![1, 0, 0], "even exponent")] {
        let weak = with(RFC7515_A2_KEY, "e", json!(b64url(&e)));
        assert!(
            VerifyingKey::from_jwk(Algorithm::Rs256, &weak).is_err(),
            "{why}"
        );
    }
    let short = with(RFC7515_A2_KEY, "n", json!(b64url(&n[1..])));
    let error = VerifyingKey::from_jwk(Algorithm::Rs256, &short).expect_err("2040-bit modulus");
    assert!(error.contains("2048"), "{error}");

    let jwk: Value = serde_json::from_str(RFC7515_A3_KEY).expect("JSON");
    let mut y = URL_SAFE_NO_PAD
        .decode(jwk["y"].as_str().expect("y"))
        .expect("base64url");
    y[31] ^= 1;
    let off_curve = with(RFC7515_A3_KEY, "y", json!(b64url(&y)));
    let error = VerifyingKey::from_jwk(Algorithm::Es256, &off_curve).expect_err("off the curve");
    assert!(error.contains("not on P-256"), "{error}");
    let short_x = with(RFC7515_A3_KEY, "x", json!(b64url(&[1; 31])));
    assert!(VerifyingKey::from_jwk(Algorithm::Es256, &short_x).is_err());
}

#[test]
fn malformed_jwks_are_refused() {
    for jwk in [
        "",
        "[]",
        r#"{"keys": []}"#,
        r#"{"kty": 1}"#,
        r#"{"kty": "oct"}"#,
        r#"{"kty": "oct", "k": 5}"#,
    ] {
        assert!(
            VerifyingKey::from_jwk(Algorithm::Hs256, jwk).is_err(),
            "{jwk}"
        );
    }
}

#[test]
fn debug_output_names_the_algorithm_and_hides_the_secret() {
    let key = VerifyingKey::from_secret(Algorithm::Hs512, &[0xab; 64]).expect("secret");
    let debug = format!("{key:?}");
    assert_eq!(debug, "VerifyingKey { algorithm: Hs512, .. }");
}

#[test]
fn keys_are_shareable_across_threads() {
    fn shareable<T: Send + Sync + Clone + 'static>() {}
    shareable::<VerifyingKey>();
}

// ---------------------------------------------------------------------------
// Names, digests, HMAC

#[test]
fn algorithm_names_are_the_exact_jose_names() {
    let names: Vec<&str> = Algorithm::ALL.iter().map(|alg| alg.name()).collect();
    assert_eq!(
        names,
        [
            "HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512",
            "ES256", "ES384", "ES512", "EdDSA"
        ]
    );
    for alg in Algorithm::ALL {
        assert_eq!(Algorithm::from_name(alg.name()), Some(alg));
    }
    for name in ["none", "None", "hs256", "EDDSA", "Ed25519", "ES521", ""] {
        assert_eq!(Algorithm::from_name(name), None, "{name}");
    }
}

fn hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex"))
        .collect()
}

#[test]
fn sha256_of_abc() {
    assert_eq!(
        crypto::digest(DigestAlgorithm::Sha256, b"abc"),
        hex("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    );
    assert_eq!(crypto::digest(DigestAlgorithm::Sha384, b"abc").len(), 48);
    assert_eq!(crypto::digest(DigestAlgorithm::Sha512, b"abc").len(), 64);
}

#[test]
fn rfc4231_test_case_2() {
    let (key, data) = (b"Jefe", b"what do ya want for nothing?");
    for (alg, expected) in [
        (
            DigestAlgorithm::Sha256,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
        ),
        (
            DigestAlgorithm::Sha384,
            "af45d2e376484031617f78d2b58a6b1b9c7ef464f5a01b47e42ec3736322445e\
             8e2240ca5e69e2c78b3239ecfab21649",
        ),
        (
            DigestAlgorithm::Sha512,
            "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea250554\
             9758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737",
        ),
    ] {
        assert_eq!(crypto::hmac(alg, key, data), hex(expected), "{alg:?}");
    }
}

#[test]
fn constant_time_eq_compares_contents_and_lengths() {
    assert!(crypto::constant_time_eq(b"", b""));
    assert!(crypto::constant_time_eq(b"abc", b"abc"));
    assert!(!crypto::constant_time_eq(b"abc", b"abd"));
    assert!(!crypto::constant_time_eq(b"abc", b"ab"));
}
