//! AWS Signature Version 4: what the `consumers` interface's `verify-sigv4`
//! accepts, and (natively) the signing key and signature the gateway computes
//! for it.
//!
//! The gateway answers `verify-sigv4` with [`verify`], and the SDK runs the
//! same code for a plugin's native tests, so an access key id or a request
//! refused in a test is refused alike in the gateway. Secrets stay with the
//! caller of [`verify`]: a plugin builds the string to sign and gets back a
//! yes or no.

/// The longest string to sign accepted: its four lines are short (the
/// algorithm, a timestamp, a credential scope and a 64-digit hash).
pub const MAX_STRING_TO_SIGN: usize = 4096;

/// The longest region or service name accepted.
pub const MAX_SCOPE_PART: usize = 64;

/// The longest secret access key accepted, in bytes (AWS's are 40). With
/// `AWS4` in front it stays within HMAC-SHA256's 64-byte block, so every
/// key, and the dummy an unknown id is checked with, costs the same: a
/// longer one would be hashed first, one more SHA-256 a timing could tell.
pub const MAX_SECRET: usize = 60;

/// Whether `id` can be an access key id: 8 to 128 characters of `A-Z` and
/// `0-9`, as AWS issues them (`AKIA...`, `ASIA...`).
pub fn check_access_key_id(id: &str) -> Result<(), String> {
    if !(8..=128).contains(&id.len()) {
        return Err(format!(
            "access key id `{id}` must be 8 to 128 characters (A-Z and 0-9)"
        ));
    }
    if !id
        .bytes()
        .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
    {
        return Err(format!(
            "access key id `{id}` must be upper-case letters and digits only (A-Z and 0-9)"
        ));
    }
    Ok(())
}

/// Whether `secret` can be a secret access key: 1 to [`MAX_SECRET`] bytes.
pub fn check_secret(secret: &[u8]) -> Result<(), String> {
    if secret.is_empty() {
        return Err("a secret access key must not be empty".to_string());
    }
    if secret.len() > MAX_SECRET {
        return Err(format!(
            "a secret access key must be at most {MAX_SECRET} bytes"
        ));
    }
    Ok(())
}

/// Whether `part` can be the region or service of a credential scope:
/// 1 to [`MAX_SCOPE_PART`] characters of `a-z`, `0-9` and `-`.
pub fn is_scope_part(part: &str) -> bool {
    !part.is_empty()
        && part.len() <= MAX_SCOPE_PART
        && part
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// Whether `date` is a credential scope's date: exactly eight digits
/// (`YYYYMMDD`).
pub fn is_scope_date(date: &str) -> bool {
    date.len() == 8 && date.bytes().all(|b| b.is_ascii_digit())
}

/// The 32 bytes a signature's 64 lower-case hex digits spell; `None` for
/// anything else.
pub fn parse_signature(hex: &str) -> Option<[u8; 32]> {
    let digits = hex.as_bytes();
    if digits.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (byte, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
        *byte = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Some(out)
}

fn nibble(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        _ => None,
    }
}

/// The inputs of a verification, checked: the date, region, service and
/// string to sign as [`is_scope_date`], [`is_scope_part`] and
/// [`MAX_STRING_TO_SIGN`] allow, and the signature parsed. `Err` names what
/// is wrong.
pub fn check_inputs(
    date: &str,
    region: &str,
    service: &str,
    string_to_sign: &str,
    signature: &str,
) -> Result<[u8; 32], &'static str> {
    if !is_scope_date(date) {
        return Err("the date must be eight digits (YYYYMMDD)");
    }
    if !is_scope_part(region) || !is_scope_part(service) {
        return Err("the region and service must be 1 to 64 of a-z, 0-9 and -");
    }
    if string_to_sign.is_empty() || string_to_sign.len() > MAX_STRING_TO_SIGN {
        return Err("the string to sign must be 1 to 4096 bytes");
    }
    parse_signature(signature).ok_or("the signature must be 64 lower-case hex digits")
}

#[cfg(not(target_arch = "wasm32"))]
mod native {
    //! The computation, on aws-lc-rs: the gateway's, and the SDK's in a
    //! plugin's native tests.

    use aws_lc_rs::{constant_time, hmac};

    /// The secret an unknown access key id is checked against, so that an
    /// unknown id costs what a known one does.
    const DUMMY_SECRET: &[u8] = b"gateway-sigv4-unknown-access-key-id-0000";

    fn sign(key: &[u8], data: &[u8]) -> hmac::Tag {
        hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), data)
    }

    /// The signing key: HMAC-SHA256 of `"AWS4" + secret` over the date, then
    /// the region, the service and `aws4_request`.
    pub fn signing_key(secret: &[u8], date: &str, region: &str, service: &str) -> [u8; 32] {
        let mut first = Vec::with_capacity(4 + secret.len());
        first.extend_from_slice(b"AWS4");
        first.extend_from_slice(secret);
        let k_date = sign(&first, date.as_bytes());
        let k_region = sign(k_date.as_ref(), region.as_bytes());
        let k_service = sign(k_region.as_ref(), service.as_bytes());
        let k_signing = sign(k_service.as_ref(), b"aws4_request");
        let mut out = [0u8; 32];
        out.copy_from_slice(k_signing.as_ref());
        out
    }

    /// The signature of `string_to_sign` under `secret`'s signing key for
    /// `date`, `region` and `service`.
    pub fn signature(
        secret: &[u8],
        date: &str,
        region: &str,
        service: &str,
        string_to_sign: &str,
    ) -> [u8; 32] {
        let key = signing_key(secret, date, region, service);
        let mut out = [0u8; 32];
        out.copy_from_slice(sign(&key, string_to_sign.as_bytes()).as_ref());
        out
    }

    /// Whether `signature` (64 lower-case hex digits) signs `string_to_sign`
    /// under `secret`, compared in constant time. With no secret (an
    /// unknown access key id) the same work is done against a dummy secret
    /// and the answer is no. Inputs that [`super::check_inputs`] refuses are
    /// a no without any work.
    pub fn verify(
        secret: Option<&[u8]>,
        date: &str,
        region: &str,
        service: &str,
        string_to_sign: &str,
        signature: &str,
    ) -> bool {
        let Ok(given) = super::check_inputs(date, region, service, string_to_sign, signature)
        else {
            return false;
        };
        let expected = self::signature(
            secret.unwrap_or(DUMMY_SECRET),
            date,
            region,
            service,
            string_to_sign,
        );
        let equal = constant_time::verify_slices_are_equal(&expected, &given).is_ok();
        equal && secret.is_some()
    }
}

#[cfg(not(target_arch = "wasm32"))]
pub use native::{signature, signing_key, verify};

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The example of the AWS General Reference, "Examples of how to derive
    /// a signing key for Signature Version 4": secret
    /// `wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY`, 20120215, us-east-1, iam.
    #[test]
    fn signing_key_matches_the_documented_example() {
        let key = signing_key(
            b"wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            "20120215",
            "us-east-1",
            "iam",
        );
        assert_eq!(
            hex(&key),
            "f4780e2d9f65fa895f9c67b32ce1baf0b0d8a43505a000a1a9e090d414db404d"
        );
    }

    /// The IAM `ListUsers` example of the Signature Version 4 documentation
    /// (20150830T123600Z, us-east-1, iam).
    const LIST_USERS_STS: &str = "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/iam/aws4_request\nf536975d06c0309214f805bb90ccff089219ecd68b2577efef23edd43b7e1a59";
    const LIST_USERS_SIG: &str = "5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7";
    const SECRET: &[u8] = b"wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

    #[test]
    fn signature_matches_the_documented_example() {
        let sig = signature(SECRET, "20150830", "us-east-1", "iam", LIST_USERS_STS);
        assert_eq!(hex(&sig), LIST_USERS_SIG);
        let args = ("20150830", "us-east-1", "iam", LIST_USERS_STS);
        assert!(verify(
            Some(SECRET),
            args.0,
            args.1,
            args.2,
            args.3,
            LIST_USERS_SIG
        ));
        // Another secret, date, region, or an unknown key: no.
        assert!(!verify(
            Some(&b"other"[..]),
            args.0,
            args.1,
            args.2,
            args.3,
            LIST_USERS_SIG
        ));
        assert!(!verify(
            Some(SECRET),
            "20150831",
            args.1,
            args.2,
            args.3,
            LIST_USERS_SIG
        ));
        assert!(!verify(
            Some(SECRET),
            args.0,
            "us-east-2",
            args.2,
            args.3,
            LIST_USERS_SIG
        ));
        assert!(!verify(
            None,
            args.0,
            args.1,
            args.2,
            args.3,
            LIST_USERS_SIG
        ));
        // Upper-case hex is not the canonical form.
        let upper = LIST_USERS_SIG.to_ascii_uppercase();
        assert!(!verify(
            Some(SECRET),
            args.0,
            args.1,
            args.2,
            args.3,
            &upper
        ));
    }

    #[test]
    fn inputs_are_checked() {
        let sig = LIST_USERS_SIG;
        assert!(check_inputs("20150830", "us-east-1", "iam", "x", sig).is_ok());
        assert!(check_inputs("2015083", "us-east-1", "iam", "x", sig).is_err());
        assert!(check_inputs("2015083a", "us-east-1", "iam", "x", sig).is_err());
        assert!(check_inputs("20150830", "us/east", "iam", "x", sig).is_err());
        assert!(check_inputs("20150830", "us-east-1", "", "x", sig).is_err());
        assert!(check_inputs("20150830", "us-east-1", "iam", "", sig).is_err());
        let long = "x".repeat(MAX_STRING_TO_SIGN + 1);
        assert!(check_inputs("20150830", "us-east-1", "iam", &long, sig).is_err());
        assert!(check_inputs("20150830", "us-east-1", "iam", "x", &sig[1..]).is_err());
    }

    #[test]
    fn access_key_ids_and_secrets() {
        assert!(check_access_key_id("AKIDEXAMPLE").is_ok());
        assert!(check_access_key_id("AKID").is_err());
        assert!(check_access_key_id("AKIAIOSFODNN7EXAMPLE").is_ok());
        assert!(check_access_key_id("akiaiosfodnn7example").is_err());
        assert!(check_access_key_id("AKIAIOSFODNN7EXAMP-E").is_err());
        assert!(check_access_key_id(&"A".repeat(129)).is_err());
        assert!(check_secret(b"").is_err());
        assert!(check_secret(&[b'a'; 61]).is_err());
        assert!(check_secret(&[b'a'; 60]).is_ok());
        assert!(check_secret(SECRET).is_ok());
    }
}
