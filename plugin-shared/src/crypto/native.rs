//! The in-process implementation of the `crypto` interface, on aws-lc-rs.
//!
//! The gateway implements the `crypto` host interface with this very code, and
//! the SDK's `VerifyingKey` wraps it natively, so a plugin unit-tested
//! natively and the same plugin in the gateway get identical answers.
//! Everything is checked when a key is made (including the input cap,
//! [`CRYPTO_MAX_INPUT`]); [`NativeKey::verify`] only runs the primitive.

use aws_lc_rs::signature::{
    self, EcdsaVerificationAlgorithm, ParsedPublicKey, RsaParameters, RsaPublicKeyComponents,
};
use aws_lc_rs::{constant_time, digest as lc_digest, hmac as lc_hmac, rsa};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::{Map, Value};
use std::fmt;

use super::{Algorithm, DigestAlgorithm};
use crate::limits::CRYPTO_MAX_INPUT;

/// A key bound to one [`Algorithm`]; what `VerifyingKey` wraps natively.
#[derive(Clone)]
pub struct NativeKey {
    alg: Algorithm,
    material: Material,
}

#[derive(Clone)]
enum Material {
    // Boxed: aws-lc's HMAC key holds precomputed contexts, over a kilobyte.
    Hmac(Box<lc_hmac::Key>),
    Public(ParsedPublicKey),
}

impl fmt::Debug for NativeKey {
    // Only the algorithm: an HMAC key is a secret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NativeKey")
            .field("algorithm", &self.alg)
            .finish_non_exhaustive()
    }
}

impl NativeKey {
    /// A key from one JSON Web Key; see the SDK's `VerifyingKey::from_jwk` for the rules.
    pub fn from_jwk(alg: Algorithm, jwk: &str) -> Result<NativeKey, String> {
        if jwk.len() > CRYPTO_MAX_INPUT {
            return Err("the JWK is too large".into());
        }
        let jwk = match serde_json::from_str(jwk) {
            Ok(Value::Object(jwk)) => jwk,
            Ok(_) => return Err("a JWK must be a JSON object".into()),
            Err(e) => return Err(format!("the JWK is not valid JSON: {e}")),
        };
        if jwk.contains_key("keys") {
            return Err("this is a JWK set: make a key from one of its \"keys\"".into());
        }
        let family = Family::of(alg);
        let kty = text(&jwk, "kty")?.ok_or("the JWK has no \"kty\"")?;
        if kty != family.kty() {
            return Err(format!(
                "{} needs {}, found a JWK with kty {kty:?}",
                alg.name(),
                family.describe()
            ));
        }
        check_intent(alg, &jwk)?;

        let material = match family {
            Family::Hmac(hmac) => hmac_key(alg, hmac, &member_bytes(&jwk, "k")?)?,
            Family::Rsa(params) => {
                rsa_key(params, &member_bytes(&jwk, "n")?, &member_bytes(&jwk, "e")?)?
            }
            Family::Ec(curve) => {
                let crv = text(&jwk, "crv")?.ok_or("the EC JWK has no \"crv\"")?;
                if crv != curve.name {
                    return Err(format!(
                        "{} needs {}, found a JWK on {crv}",
                        alg.name(),
                        family.describe()
                    ));
                }
                ec_key(curve, &member_bytes(&jwk, "x")?, &member_bytes(&jwk, "y")?)?
            }
            Family::Ed25519 => {
                let crv = text(&jwk, "crv")?.ok_or("the OKP JWK has no \"crv\"")?;
                if crv != "Ed25519" {
                    return Err(format!("EdDSA needs crv \"Ed25519\", found {crv:?}"));
                }
                let x = member_bytes(&jwk, "x")?;
                if x.len() != 32 {
                    return Err(format!("an Ed25519 \"x\" is 32 bytes, got {}", x.len()));
                }
                let key = ParsedPublicKey::new(&signature::ED25519, &x)
                    .map_err(|_| "the Ed25519 public key is invalid")?;
                Material::Public(key)
            }
        };
        Ok(NativeKey { alg, material })
    }

    /// A key from a PEM `PUBLIC KEY` (SubjectPublicKeyInfo) or, for RSA, an
    /// `RSA PUBLIC KEY` (PKCS#1) block.
    pub fn from_pem(alg: Algorithm, pem: &str) -> Result<NativeKey, String> {
        if pem.len() > CRYPTO_MAX_INPUT {
            return Err("the PEM is too large".into());
        }
        let family = Family::of(alg);
        if let Family::Hmac(_) = family {
            return Err(format!(
                "{} keys are shared secrets, not PEM public keys: use from_secret or an \"oct\" JWK",
                alg.name()
            ));
        }
        let (label, der) = pem_decode(pem)?;
        match (label, &family) {
            ("PUBLIC KEY", _) | ("RSA PUBLIC KEY", Family::Rsa(_)) => {}
            (label, _) if label.contains("PRIVATE KEY") => {
                return Err(format!(
                    "the PEM block is {label:?}: give the public key only"
                ));
            }
            (label, _) => {
                return Err(format!(
                    "{} needs a PEM \"PUBLIC KEY\" block, found {label:?}",
                    alg.name()
                ));
            }
        }
        // A raw EC point or Ed25519 key would parse too; PEM holds DER.
        if der.first() != Some(&0x30) {
            return Err("the PEM body is not a DER public key".into());
        }
        let wrong_kind = || {
            format!(
                "{} needs {}, found {}",
                alg.name(),
                family.describe(),
                describe_der(&der)
            )
        };
        let material = match family {
            Family::Hmac(_) => return Err(wrong_kind()),
            Family::Rsa(params) => {
                let key = rsa::PublicKey::from_der(&der).map_err(|_| wrong_kind())?;
                rsa_key(
                    params,
                    key.modulus().big_endian_without_leading_zero(),
                    key.exponent().big_endian_without_leading_zero(),
                )?
            }
            Family::Ec(curve) => Material::Public(
                ParsedPublicKey::new(curve.verification, &der).map_err(|_| wrong_kind())?,
            ),
            Family::Ed25519 => Material::Public(
                ParsedPublicKey::new(&signature::ED25519, &der).map_err(|_| wrong_kind())?,
            ),
        };
        Ok(NativeKey { alg, material })
    }

    /// An HMAC key from raw secret bytes, for HS* only.
    pub fn from_secret(alg: Algorithm, secret: &[u8]) -> Result<NativeKey, String> {
        match Family::of(alg) {
            Family::Hmac(hmac) => Ok(NativeKey {
                alg,
                material: hmac_key(alg, hmac, secret)?,
            }),
            family => Err(format!(
                "{} needs {}, not a raw secret: only HS256, HS384 and HS512 take one",
                alg.name(),
                family.describe()
            )),
        }
    }

    /// The one algorithm this key verifies.
    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }

    /// Whether `signature` is a valid JWS signature or MAC of `message`.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        match &self.material {
            // Constant-time comparison of the tag.
            Material::Hmac(key) => lc_hmac::verify(key, message, signature).is_ok(),
            Material::Public(key) => key.verify_sig(message, signature).is_ok(),
        }
    }
}

/// The hash of `data`.
pub fn digest(alg: DigestAlgorithm, data: &[u8]) -> Vec<u8> {
    lc_digest::digest(digest_algorithm(alg), data)
        .as_ref()
        .to_vec()
}

/// The HMAC of `data` under `key` (any length, unlike a verifying key).
pub fn hmac(alg: DigestAlgorithm, key: &[u8], data: &[u8]) -> Vec<u8> {
    let key = lc_hmac::Key::new(hmac_algorithm(alg), key);
    lc_hmac::sign(&key, data).as_ref().to_vec()
}

/// Whether `a` and `b` are equal, in time that depends only on their lengths.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    constant_time::verify_slices_are_equal(a, b).is_ok()
}

fn digest_algorithm(alg: DigestAlgorithm) -> &'static lc_digest::Algorithm {
    match alg {
        DigestAlgorithm::Sha256 => &lc_digest::SHA256,
        DigestAlgorithm::Sha384 => &lc_digest::SHA384,
        DigestAlgorithm::Sha512 => &lc_digest::SHA512,
    }
}

fn hmac_algorithm(alg: DigestAlgorithm) -> lc_hmac::Algorithm {
    match alg {
        DigestAlgorithm::Sha256 => lc_hmac::HMAC_SHA256,
        DigestAlgorithm::Sha384 => lc_hmac::HMAC_SHA384,
        DigestAlgorithm::Sha512 => lc_hmac::HMAC_SHA512,
    }
}

/// The kind of key an algorithm takes, and the primitive it runs.
enum Family {
    Hmac(lc_hmac::Algorithm),
    Rsa(&'static RsaParameters),
    Ec(&'static Curve),
    Ed25519,
}

struct Curve {
    name: &'static str,
    coordinate_len: usize,
    verification: &'static EcdsaVerificationAlgorithm,
}

const P256: Curve = Curve {
    name: "P-256",
    coordinate_len: 32,
    verification: &signature::ECDSA_P256_SHA256_FIXED,
};
const P384: Curve = Curve {
    name: "P-384",
    coordinate_len: 48,
    verification: &signature::ECDSA_P384_SHA384_FIXED,
};
const P521: Curve = Curve {
    name: "P-521",
    coordinate_len: 66,
    verification: &signature::ECDSA_P521_SHA512_FIXED,
};

impl Family {
    fn of(alg: Algorithm) -> Family {
        match alg {
            Algorithm::Hs256 => Family::Hmac(lc_hmac::HMAC_SHA256),
            Algorithm::Hs384 => Family::Hmac(lc_hmac::HMAC_SHA384),
            Algorithm::Hs512 => Family::Hmac(lc_hmac::HMAC_SHA512),
            Algorithm::Rs256 => Family::Rsa(&signature::RSA_PKCS1_2048_8192_SHA256),
            Algorithm::Rs384 => Family::Rsa(&signature::RSA_PKCS1_2048_8192_SHA384),
            Algorithm::Rs512 => Family::Rsa(&signature::RSA_PKCS1_2048_8192_SHA512),
            Algorithm::Ps256 => Family::Rsa(&signature::RSA_PSS_2048_8192_SHA256),
            Algorithm::Ps384 => Family::Rsa(&signature::RSA_PSS_2048_8192_SHA384),
            Algorithm::Ps512 => Family::Rsa(&signature::RSA_PSS_2048_8192_SHA512),
            Algorithm::Es256 => Family::Ec(&P256),
            Algorithm::Es384 => Family::Ec(&P384),
            Algorithm::Es512 => Family::Ec(&P521),
            Algorithm::EdDsa => Family::Ed25519,
        }
    }

    /// The JWK `kty` this family takes.
    fn kty(&self) -> &'static str {
        match self {
            Family::Hmac(_) => "oct",
            Family::Rsa(_) => "RSA",
            Family::Ec(_) => "EC",
            Family::Ed25519 => "OKP",
        }
    }

    fn describe(&self) -> String {
        match self {
            Family::Hmac(_) => "an HMAC secret (kty \"oct\")".into(),
            Family::Rsa(_) => "an RSA key".into(),
            Family::Ec(curve) => format!("an EC key on {}", curve.name),
            Family::Ed25519 => "an Ed25519 key (kty \"OKP\")".into(),
        }
    }
}

/// What a DER public key is, for error messages.
fn describe_der(der: &[u8]) -> String {
    if rsa::PublicKey::from_der(der).is_ok() {
        return "an RSA key".into();
    }
    for curve in [&P256, &P384, &P521] {
        if ParsedPublicKey::new(curve.verification, der).is_ok() {
            return format!("an EC key on {}", curve.name);
        }
    }
    if ParsedPublicKey::new(&signature::ED25519, der).is_ok() {
        return "an Ed25519 key".into();
    }
    "a key of another type, or malformed DER".into()
}

/// The JWK's `alg`, `use` and `key_ops` must all allow verifying with `alg`.
fn check_intent(alg: Algorithm, jwk: &Map<String, Value>) -> Result<(), String> {
    // A key is used with exactly the algorithm its JWK names (RFC 8725 3.1).
    // "ES521" is accepted as ES512: RFC 7520's examples carry that typo.
    if let Some(jwk_alg) = text(jwk, "alg")?
        && jwk_alg != alg.name()
        && !(jwk_alg == "ES521" && alg == Algorithm::Es512)
    {
        return Err(format!(
            "the JWK's \"alg\" is {jwk_alg:?}, not {:?}",
            alg.name()
        ));
    }
    if let Some(key_use) = text(jwk, "use")?
        && key_use != "sig"
    {
        return Err(format!(
            "the JWK's \"use\" is {key_use:?}; a verification key needs \"sig\""
        ));
    }
    if let Some(ops) = jwk.get("key_ops") {
        let ops = ops
            .as_array()
            .ok_or("the JWK's \"key_ops\" must be an array")?;
        let mut verify = false;
        for op in ops {
            let op = op
                .as_str()
                .ok_or("the JWK's \"key_ops\" must hold strings")?;
            verify |= op == "verify";
        }
        if !verify {
            return Err("the JWK's \"key_ops\" does not include \"verify\"".into());
        }
    }
    Ok(())
}

/// An optional string member.
fn text<'a>(jwk: &'a Map<String, Value>, name: &str) -> Result<Option<&'a str>, String> {
    match jwk.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(format!("the JWK's {name:?} must be a string")),
    }
}

/// A required base64url member (RFC 7515 section 2: no padding, URL alphabet).
fn member_bytes(jwk: &Map<String, Value>, name: &str) -> Result<Vec<u8>, String> {
    let encoded = text(jwk, name)?.ok_or_else(|| format!("the JWK has no {name:?}"))?;
    URL_SAFE_NO_PAD
        .decode(encoded)
        .map_err(|_| format!("the JWK's {name:?} is not unpadded base64url"))
}

fn hmac_key(alg: Algorithm, hmac: lc_hmac::Algorithm, secret: &[u8]) -> Result<Material, String> {
    // RFC 7518 section 3.2: a key at least as long as the hash output.
    let min_len = hmac.digest_algorithm().output_len();
    if secret.is_empty() {
        return Err("the HMAC secret is empty".into());
    }
    if secret.len() < min_len {
        return Err(format!(
            "{} needs a secret of at least {min_len} bytes (RFC 7518 section 3.2), got {}",
            alg.name(),
            secret.len()
        ));
    }
    Ok(Material::Hmac(Box::new(lc_hmac::Key::new(hmac, secret))))
}

fn rsa_key(params: &'static RsaParameters, n: &[u8], e: &[u8]) -> Result<Material, String> {
    // RFC 7518 asks for minimal encodings, but a stray leading zero (some
    // libraries emit one) changes no value, so it is dropped, not refused.
    let n = without_leading_zeros(n);
    let e = without_leading_zeros(e);
    let bits = bit_length(n);
    if bits < 2048 {
        return Err(format!(
            "the RSA modulus has {bits} bits; at least 2048 are required"
        ));
    }
    if bits > 8192 {
        return Err(format!(
            "the RSA modulus has {bits} bits; at most 8192 are supported"
        ));
    }
    if n.last().is_some_and(|low| low & 1 == 0) {
        return Err("the RSA modulus is even".into());
    }
    match e {
        [] | [1] => return Err("the RSA public exponent is 0 or 1".into()),
        [.., low] if low & 1 == 0 => return Err("the RSA public exponent is even".into()),
        _ => {}
    }
    if has_roca_fingerprint(n) {
        return Err(
            "the RSA modulus has the ROCA fingerprint (CVE-2017-15361): its private key can be recovered"
                .into(),
        );
    }
    let key = RsaPublicKeyComponents { n, e }
        .to_parsed_public_key(params)
        .map_err(|_| "the RSA public key is invalid")?;
    Ok(Material::Public(key))
}

fn ec_key(curve: &Curve, x: &[u8], y: &[u8]) -> Result<Material, String> {
    // RFC 7518 section 6.2.1.2: coordinates are full-length.
    if x.len() != curve.coordinate_len || y.len() != curve.coordinate_len {
        return Err(format!(
            "{} coordinates are {} bytes each, got {} and {}",
            curve.name,
            curve.coordinate_len,
            x.len(),
            y.len()
        ));
    }
    let mut point = Vec::with_capacity(1 + 2 * curve.coordinate_len);
    point.push(0x04); // SEC1 uncompressed
    point.extend_from_slice(x);
    point.extend_from_slice(y);
    // aws-lc checks that the point is on the curve here.
    let key = ParsedPublicKey::new(curve.verification, &point)
        .map_err(|_| format!("the point (x, y) is not on {}", curve.name))?;
    Ok(Material::Public(key))
}

fn without_leading_zeros(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
    &bytes[start..]
}

/// The bit length of a big-endian number with no leading zero bytes.
fn bit_length(n: &[u8]) -> usize {
    match n.first() {
        None => 0,
        Some(&top) => n.len() * 8 - top.leading_zeros() as usize,
    }
}

/// The ROCA test (Nemec et al., "The Return of Coppersmith's Attack", CCS
/// 2017). Infineon's RSALib made primes `k * M + (65537^a mod M)`, with `M` the
/// product of the first primes, so for each small prime `p` dividing `M`,
/// `n mod p` lies in the subgroup that 65537 generates modulo `p`. A sound
/// modulus passes all 38 checks with negligible probability.
fn has_roca_fingerprint(n: &[u8]) -> bool {
    const PRIMES: [u32; 38] = [
        3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61, 67, 71, 73, 79, 83, 89,
        97, 101, 103, 107, 109, 113, 127, 131, 137, 139, 149, 151, 157, 163, 167,
    ];
    PRIMES.iter().all(|&p| {
        let residue = n
            .iter()
            .fold(0, |acc, &byte| (acc * 256 + u32::from(byte)) % p);
        let generator = 65537 % p;
        // Walk the cyclic subgroup <65537> until it returns to 1.
        let mut power = 1;
        loop {
            if power == residue {
                return true;
            }
            power = power * generator % p;
            if power == 1 {
                return false;
            }
        }
    })
}

/// The label and DER body of a single PEM block (RFC 7468).
fn pem_decode(pem: &str) -> Result<(&str, Vec<u8>), String> {
    let mut lines = pem.trim().lines().map(str::trim);
    let label = lines
        .next()
        .and_then(|line| line.strip_prefix("-----BEGIN "))
        .and_then(|line| line.strip_suffix("-----"))
        .ok_or("not PEM: expected a \"-----BEGIN PUBLIC KEY-----\" line first")?;
    let end = format!("-----END {label}-----");
    let mut body = String::new();
    loop {
        match lines.next() {
            None => return Err(format!("the PEM block has no {end:?} line")),
            Some(line) if line == end => break,
            Some(line) => body.push_str(line),
        }
    }
    if lines.next().is_some() {
        return Err("text after the PEM block: give exactly one public key".into());
    }
    let der = STANDARD
        .decode(body)
        .map_err(|_| "the PEM body is not valid base64")?;
    Ok((label, der))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bit_length_counts_from_the_top_set_bit() {
        assert_eq!(bit_length(&[]), 0);
        assert_eq!(bit_length(&[1]), 1);
        assert_eq!(bit_length(&[0x80, 0]), 16);
        assert_eq!(bit_length(&[0x01, 0xff]), 9);
    }

    #[test]
    fn roca_walks_the_subgroup() {
        // 65537 mod 3 = 2 generates {1, 2}: 0 mod 3 is outside it.
        assert!(!has_roca_fingerprint(&[3]));
        // 1 is in every subgroup, so n = 1 "passes" every prime.
        assert!(has_roca_fingerprint(&[1]));
    }

    #[test]
    fn pem_needs_one_complete_block() {
        assert!(pem_decode("-----BEGIN PUBLIC KEY-----\nAAAA\n").is_err());
        assert!(pem_decode("AAAA").is_err());
        let two = "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n\
                   -----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----";
        assert!(pem_decode(two).is_err());
        let ok = pem_decode(
            "\r\n-----BEGIN PUBLIC KEY-----\r\nAA\r\nAA\r\n-----END PUBLIC KEY-----\r\n",
        );
        assert_eq!(ok, Ok(("PUBLIC KEY", vec![0, 0, 0])));
    }
}
