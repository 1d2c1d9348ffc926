//! Signature verification, MACs and digests, computed by the host.
//!
//! Plugins that check tokens or signed requests need real cryptography, and a
//! Wasm guest is the wrong place for it: slow, and one more copy of code that
//! must be right. Inside the gateway these functions call the host's `crypto`
//! interface; natively (plugin unit tests) they run in-process on aws-lc-rs,
//! with the code the gateway implements that interface with (`plugin-shared`),
//! so both sides give the same answers.
//!
//! A [`VerifyingKey`] is bound to one [`Algorithm`] when it is made and refuses
//! keys of any other kind, so an RSA public key can never be used as an HMAC
//! secret. Signatures are in JWS form: ECDSA is the fixed-size `r || s`.
//!
//! ```
//! use plugin_sdk::crypto::{Algorithm, VerifyingKey};
//!
//! // RFC 7515, appendix A.1.
//! let jwk = r#"{"kty":"oct","k":"AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow"}"#;
//! let key = VerifyingKey::from_jwk(Algorithm::Hs256, jwk)?;
//! let signing_input = "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ";
//! let mac = [
//!     116, 24, 223, 180, 151, 153, 224, 37, 79, 250, 96, 125, 216, 173, 187, 186, 22, 212,
//!     37, 77, 105, 214, 191, 240, 91, 88, 5, 88, 83, 132, 141, 121,
//! ];
//! assert!(key.verify(signing_input.as_bytes(), &mac));
//! assert!(VerifyingKey::from_jwk(Algorithm::Rs256, jwk).is_err());
//! # Ok::<(), String>(())
//! ```

use std::fmt;

#[cfg(not(target_arch = "wasm32"))]
use plugin_shared::crypto::native::{self as backend, NativeKey as Inner};

#[cfg(target_arch = "wasm32")]
use host::{self as backend, Inner};

pub use plugin_shared::crypto::{Algorithm, DigestAlgorithm};

/// A key that checks signatures or MACs for exactly one [`Algorithm`].
///
/// Make one at configuration load and keep it: creation parses and validates
/// the key, so [`verify`](VerifyingKey::verify) does no parsing per request.
#[derive(Clone)]
pub struct VerifyingKey {
    inner: Inner,
}

impl VerifyingKey {
    /// A key from a JSON Web Key (RFC 7517), for `alg`.
    ///
    /// The key type must fit `alg`: `oct` for HS*, `RSA` for RS* and PS*, `EC`
    /// on P-256, P-384 or P-521 for ES256, ES384 and ES512, `OKP` Ed25519 for
    /// EdDSA. The JWK's `alg`, when present, must equal `alg`; `use`, when
    /// present, must be `"sig"`; `key_ops`, when present, must include
    /// `"verify"`. RSA moduli under 2048 bits, exponent 1 or even, ROCA-weak
    /// moduli, points off the curve and HMAC secrets shorter than the hash
    /// output are refused. Private members such as `d` are ignored.
    pub fn from_jwk(alg: Algorithm, jwk: &str) -> Result<VerifyingKey, String> {
        Inner::from_jwk(alg, jwk).map(|inner| VerifyingKey { inner })
    }

    /// A key from a PEM public key (`PUBLIC KEY`, or `RSA PUBLIC KEY` for RSA),
    /// for an RS*, PS*, ES* or EdDSA `alg`, under the same rules as
    /// [`from_jwk`](VerifyingKey::from_jwk).
    pub fn from_pem(alg: Algorithm, pem: &str) -> Result<VerifyingKey, String> {
        Inner::from_pem(alg, pem).map(|inner| VerifyingKey { inner })
    }

    /// An HMAC key for an HS* `alg` from raw secret bytes, which must be at
    /// least as long as the hash output (32, 48 or 64 bytes; RFC 7518 3.2).
    pub fn from_secret(alg: Algorithm, secret: &[u8]) -> Result<VerifyingKey, String> {
        Inner::from_secret(alg, secret).map(|inner| VerifyingKey { inner })
    }

    /// The one algorithm this key verifies.
    pub fn algorithm(&self) -> Algorithm {
        self.inner.algorithm()
    }

    /// Whether `signature` is a valid JWS signature (or MAC) of `message`, the
    /// JWS signing input. Any malformed signature is simply `false`.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        self.inner.verify(message, signature)
    }
}

impl fmt::Debug for VerifyingKey {
    // Only the algorithm: an HMAC key is a secret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyingKey")
            .field("algorithm", &self.algorithm())
            .finish_non_exhaustive()
    }
}

/// The hash of `data`.
pub fn digest(alg: DigestAlgorithm, data: &[u8]) -> Vec<u8> {
    backend::digest(alg, data)
}

/// The HMAC of `data` under `key`. To check a MAC, compare with
/// [`constant_time_eq`], or better use a [`VerifyingKey`].
pub fn hmac(alg: DigestAlgorithm, key: &[u8], data: &[u8]) -> Vec<u8> {
    backend::hmac(alg, key, data)
}

/// Whether `a` and `b` are equal, in time that depends only on their lengths.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    backend::constant_time_eq(a, b)
}

#[cfg(target_arch = "wasm32")]
mod host {
    //! Inside the gateway: every call goes to the host's `crypto` interface.
    use super::{Algorithm, DigestAlgorithm};
    use crate::bindings::gateway::plugin::crypto as wit;
    use std::rc::Rc;

    /// A host key handle, shared by clones, with its algorithm cached so
    /// `algorithm()` costs no call.
    #[derive(Clone)]
    pub(super) struct Inner {
        key: Rc<wit::VerifyingKey>,
        alg: Algorithm,
    }

    fn to_wit(alg: Algorithm) -> wit::Algorithm {
        match alg {
            Algorithm::Hs256 => wit::Algorithm::Hs256,
            Algorithm::Hs384 => wit::Algorithm::Hs384,
            Algorithm::Hs512 => wit::Algorithm::Hs512,
            Algorithm::Rs256 => wit::Algorithm::Rs256,
            Algorithm::Rs384 => wit::Algorithm::Rs384,
            Algorithm::Rs512 => wit::Algorithm::Rs512,
            Algorithm::Ps256 => wit::Algorithm::Ps256,
            Algorithm::Ps384 => wit::Algorithm::Ps384,
            Algorithm::Ps512 => wit::Algorithm::Ps512,
            Algorithm::Es256 => wit::Algorithm::Es256,
            Algorithm::Es384 => wit::Algorithm::Es384,
            Algorithm::Es512 => wit::Algorithm::Es512,
            Algorithm::EdDsa => wit::Algorithm::EdDsa,
        }
    }

    fn digest_to_wit(alg: DigestAlgorithm) -> wit::DigestAlgorithm {
        match alg {
            DigestAlgorithm::Sha256 => wit::DigestAlgorithm::Sha256,
            DigestAlgorithm::Sha384 => wit::DigestAlgorithm::Sha384,
            DigestAlgorithm::Sha512 => wit::DigestAlgorithm::Sha512,
        }
    }

    impl Inner {
        fn wrap(alg: Algorithm, key: Result<wit::VerifyingKey, String>) -> Result<Inner, String> {
            key.map(|key| Inner {
                key: Rc::new(key),
                alg,
            })
        }

        pub(super) fn from_jwk(alg: Algorithm, jwk: &str) -> Result<Inner, String> {
            Self::wrap(alg, wit::VerifyingKey::from_jwk(to_wit(alg), jwk))
        }

        pub(super) fn from_pem(alg: Algorithm, pem: &str) -> Result<Inner, String> {
            Self::wrap(alg, wit::VerifyingKey::from_pem(to_wit(alg), pem))
        }

        pub(super) fn from_secret(alg: Algorithm, secret: &[u8]) -> Result<Inner, String> {
            Self::wrap(alg, wit::VerifyingKey::from_secret(to_wit(alg), secret))
        }

        pub(super) fn algorithm(&self) -> Algorithm {
            self.alg
        }

        pub(super) fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
            self.key.verify(message, signature)
        }
    }

    pub(super) fn digest(alg: DigestAlgorithm, data: &[u8]) -> Vec<u8> {
        wit::digest(digest_to_wit(alg), data)
    }

    pub(super) fn hmac(alg: DigestAlgorithm, key: &[u8], data: &[u8]) -> Vec<u8> {
        wit::hmac(digest_to_wit(alg), key, data)
    }

    pub(super) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
        wit::constant_time_eq(a, b)
    }
}
