//! Helpers shared by the integration tests: building the plugin from JSON
//! config, and signing tokens (HMAC with the SDK, the rest with aws-lc-rs).

#![allow(dead_code)]

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeyPair as RsaKeyPair, KeySize};
use aws_lc_rs::signature::{self as lc, EcdsaKeyPair, KeyPair as _};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use plugin_jwt::{Jwt, Reason, token};
use plugin_sdk::crypto::{self, DigestAlgorithm};
use plugin_sdk::{Action, Config, Plugin, Response};
use serde_json::{Value, json};

/// The time tests validate at.
pub const NOW: i64 = 1_700_000_000;

/// The plugin for `config`, or a panic with the config error.
pub fn plugin(config: Value) -> Jwt {
    Jwt::init(Config::from_value(config)).unwrap_or_else(|e| panic!("init failed: {e}"))
}

/// The config error for `config`, or a panic if it loads.
pub fn init_error(config: Value) -> String {
    match Jwt::init(Config::from_value(config.clone())) {
        Ok(_) => panic!("config loaded but should not: {config}"),
        Err(e) => e,
    }
}

/// Validates `token` at `now` and gives the refusal text, or "ok".
pub fn verdict(jwt: &Jwt, token: &str, now: i64) -> String {
    match jwt.validator().validate(token, now) {
        Ok(_) => "ok".into(),
        Err(reason) => reason.to_string(),
    }
}

pub fn b64(bytes: &[u8]) -> String {
    token::encode(bytes)
}

/// `header.payload` for JSON values.
pub fn signing_input(header: &Value, claims: &Value) -> String {
    format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    )
}

/// A token with this header and claims, MACed with `secret`.
pub fn hmac_token(header: &Value, claims: &Value, secret: &[u8]) -> String {
    let input = signing_input(header, claims);
    let digest = match header["alg"].as_str() {
        Some("HS384") => DigestAlgorithm::Sha384,
        Some("HS512") => DigestAlgorithm::Sha512,
        _ => DigestAlgorithm::Sha256,
    };
    let mac = crypto::hmac(digest, secret, input.as_bytes());
    format!("{input}.{}", b64(&mac))
}

/// Claims valid at [`NOW`].
pub fn claims() -> Value {
    json!({"sub": "alice", "iat": NOW - 5, "exp": NOW + 600})
}

pub fn pem(label: &str, der: &[u8]) -> String {
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

/// A P-256 key pair that signs ES256 tokens.
pub struct EcKey {
    pair: EcdsaKeyPair,
}

impl EcKey {
    pub fn generate() -> EcKey {
        let pair = EcdsaKeyPair::generate(&lc::ECDSA_P256_SHA256_FIXED_SIGNING).expect("EC key");
        EcKey { pair }
    }

    /// The public JWK.
    pub fn jwk(&self) -> Value {
        let point = self.pair.public_key().as_ref();
        let (x, y) = point[1..].split_at(32);
        json!({"kty": "EC", "crv": "P-256", "x": b64(x), "y": b64(y)})
    }

    pub fn sign(&self, header: &Value, claims: &Value) -> String {
        let input = signing_input(header, claims);
        let signature = self
            .pair
            .sign(&SystemRandom::new(), input.as_bytes())
            .expect("ECDSA signing");
        format!("{input}.{}", b64(signature.as_ref()))
    }
}

/// An RSA 2048 key pair that signs RS256 tokens.
pub struct RsaKey {
    pair: RsaKeyPair,
}

impl RsaKey {
    pub fn generate() -> RsaKey {
        RsaKey {
            pair: RsaKeyPair::generate(KeySize::Rsa2048).expect("RSA key"),
        }
    }

    /// The public key as a PEM `PUBLIC KEY` block.
    pub fn pem(&self) -> String {
        let der = self.pair.public_key().as_der().expect("SPKI");
        pem("PUBLIC KEY", der.as_ref())
    }

    /// The public JWK.
    pub fn jwk(&self) -> Value {
        let public = self.pair.public_key();
        json!({
            "kty": "RSA",
            "n": b64(public.modulus().big_endian_without_leading_zero()),
            "e": b64(public.exponent().big_endian_without_leading_zero()),
        })
    }

    pub fn sign(&self, header: &Value, claims: &Value) -> String {
        let input = signing_input(header, claims);
        let mut signature = vec![0; self.pair.public_modulus_len()];
        self.pair
            .sign(
                &lc::RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                input.as_bytes(),
                &mut signature,
            )
            .expect("RSA signing");
        format!("{input}.{}", b64(&signature))
    }
}

/// The status, `WWW-Authenticate` and JSON body of a refusal.
pub fn refusal(action: &Action) -> (u16, String, Value) {
    let Action::Respond(response) = action else {
        panic!("expected a refusal, got {action:?}");
    };
    let response: &Response = response;
    let challenge = response
        .headers()
        .get("www-authenticate")
        .unwrap_or_default()
        .to_string();
    let body = serde_json::from_slice(response.body().unwrap_or_default()).unwrap_or_default();
    (response.status(), challenge, body)
}

/// Asserts `result` is the refusal `reason`.
pub fn assert_refused<T: std::fmt::Debug>(result: Result<T, Reason>, reason: &str, what: &str) {
    match result {
        Ok(ok) => panic!("{what}: accepted ({ok:?}), expected {reason:?}"),
        Err(actual) => assert_eq!(actual.to_string(), reason, "{what}"),
    }
}
