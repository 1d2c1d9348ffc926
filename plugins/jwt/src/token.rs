//! The compact JWS form, read strictly: three segments of unpadded base64url,
//! a header and a payload that are JSON objects with unique member names.
//!
//! Strictness here is a security property, not pedantry: the signature covers
//! the segments as sent, so a lenient decoder (padding, whitespace, stray
//! characters, non-zero trailing bits) lets one signed token have many
//! spellings, and a JSON parser that keeps the first of two `alg` members
//! while another component keeps the last is a known bypass.

use crate::Reason;
use base64::Engine as _;
use base64::alphabet::URL_SAFE;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use serde::de::{Deserialize, Deserializer, Error as _, MapAccess, Visitor};
use serde_json::{Map, Value};
use std::fmt;

/// RFC 7515 section 2: base64url without padding. Padding, any character
/// outside the URL-safe alphabet and non-zero unused bits are errors.
const BASE64URL: GeneralPurpose = GeneralPurpose::new(
    &URL_SAFE,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::RequireNone)
        .with_decode_allow_trailing_bits(false),
);

/// A compact JWS split into its three segments, still encoded.
#[derive(Debug, Clone, Copy)]
pub struct Segments<'a> {
    /// `header.payload`, the bytes the signature covers.
    pub signing_input: &'a str,
    /// The encoded protected header.
    pub header: &'a str,
    /// The encoded payload.
    pub payload: &'a str,
    /// The encoded signature.
    pub signature: &'a str,
}

/// Splits `token` into exactly three segments.
pub fn split(token: &str) -> Result<Segments<'_>, Reason> {
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Reason::Malformed);
    };
    Ok(Segments {
        signing_input: &token[..header.len() + 1 + payload.len()],
        header,
        payload,
        signature,
    })
}

/// Decodes one segment as strict unpadded base64url.
pub fn decode(segment: &str) -> Result<Vec<u8>, Reason> {
    BASE64URL.decode(segment).map_err(|_| Reason::Malformed)
}

/// Encodes bytes as unpadded base64url (for tests and tools).
pub fn encode(bytes: &[u8]) -> String {
    BASE64URL.encode(bytes)
}

/// Parses `json` as one JSON object whose member names are unique.
pub fn parse_object(json: &[u8]) -> Result<Map<String, Value>, Reason> {
    serde_json::from_slice::<UniqueObject>(json)
        .map(|object| object.0)
        .map_err(|_| Reason::Malformed)
}

/// A JSON object that refuses a repeated member name (RFC 7515 section 4
/// allows refusing; refusing is the only choice that cannot disagree with
/// another parser about which `alg` counts).
struct UniqueObject(Map<String, Value>);

impl<'de> Deserialize<'de> for UniqueObject {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObjectVisitor;

        impl<'de> Visitor<'de> for ObjectVisitor {
            type Value = UniqueObject;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<UniqueObject, A::Error> {
                let mut object = Map::new();
                while let Some(name) = access.next_key::<String>()? {
                    if object.contains_key(&name) {
                        return Err(A::Error::custom(format!("duplicate member {name:?}")));
                    }
                    let value = access.next_value::<Value>()?;
                    object.insert(name, value);
                }
                Ok(UniqueObject(object))
            }
        }

        deserializer.deserialize_map(ObjectVisitor)
    }
}

/// The protected header, with the members this plugin acts on checked for type.
///
/// `jwk`, `jku`, `x5u`, `x5c` and `x5t` are deliberately not read: keys come
/// from the configuration only, never from the token that is being checked.
#[derive(Debug, Clone)]
pub struct Header {
    /// The `alg` member, as sent (not yet checked against the allow-list).
    pub alg: String,
    /// The `kid` member.
    pub kid: Option<String>,
    /// Whether a `crit` member is present, whatever its value.
    pub crit: bool,
    /// Whether `b64` is `false` (RFC 7797 unencoded payload).
    pub unencoded_payload: bool,
}

impl Header {
    /// Decodes and checks the encoded header segment.
    pub fn parse(segment: &str) -> Result<Header, Reason> {
        let members = parse_object(&decode(segment)?)?;
        let alg = match members.get("alg") {
            Some(Value::String(alg)) => alg.clone(),
            _ => return Err(Reason::Malformed),
        };
        let kid = match members.get("kid") {
            None => None,
            Some(Value::String(kid)) => Some(kid.clone()),
            Some(_) => return Err(Reason::Malformed),
        };
        let unencoded_payload = match members.get("b64") {
            None | Some(Value::Bool(true)) => false,
            Some(Value::Bool(false)) => true,
            Some(_) => return Err(Reason::Malformed),
        };
        Ok(Header {
            alg,
            kid,
            crit: members.contains_key("crit"),
            unencoded_payload,
        })
    }
}

/// The `kid` of a token's header, for a log line on the failure path only.
/// Anything that does not parse gives `None`.
pub fn peek_kid(token: &str) -> Option<String> {
    let header = token.split('.').next()?;
    match parse_object(&decode(header).ok()?).ok()?.remove("kid")? {
        Value::String(kid) => Some(kid),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exactly_three_segments() {
        assert!(split("a.b.c").is_ok());
        let parts = split("aa.bb.cc").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(parts.signing_input, "aa.bb");
        assert_eq!(parts.signature, "cc");
        assert!(
            split("..").is_ok(),
            "empty segments are for the decoder to judge"
        );
        for bad in ["", "a", "a.b", "a.b.c.d", "a.b.c.", ".a.b.c"] {
            assert_eq!(split(bad).err(), Some(Reason::Malformed), "{bad:?}");
        }
    }

    #[test]
    fn base64url_is_strict() {
        assert_eq!(decode("Zm9v"), Ok(b"foo".to_vec()));
        assert_eq!(decode("Zm8"), Ok(b"fo".to_vec()));
        assert_eq!(decode(""), Ok(Vec::new()));
        assert_eq!(decode("-_8"), Ok(vec![0xfb, 0xff]));
        for bad in [
            "Zm8=",  // padding
            "Zm9v=", // stray padding
            "+/8",   // standard alphabet
            "Zm 9v", // whitespace
            " Zm9v", // leading whitespace
            "Zm9v\n", "Zm9?", // stray character
            "Zm9",  // non-zero unused bits ("Zm8" is canonical)
            "Z",    // impossible length
        ] {
            assert_eq!(decode(bad), Err(Reason::Malformed), "{bad:?}");
        }
    }

    #[test]
    fn objects_only_and_member_names_unique() {
        assert!(parse_object(br#"{"a":1,"b":{"c":2}}"#).is_ok());
        for bad in [
            &br#"{"alg":"HS256","alg":"none"}"#[..],
            br#"[]"#,
            br#""text""#,
            br#"1"#,
            br#"null"#,
            br#"{"a":1} x"#,
            b"\xef\xbb\xbf{}",
            b"",
        ] {
            assert_eq!(
                parse_object(bad),
                Err(Reason::Malformed),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn header_members_are_typed() {
        let header = |json: &str| Header::parse(&encode(json.as_bytes()));
        let ok =
            header(r#"{"alg":"ES256","kid":"k1","typ":"JWT"}"#).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((ok.alg.as_str(), ok.kid.as_deref()), ("ES256", Some("k1")));
        assert!(!ok.crit && !ok.unencoded_payload);
        assert!(header(r#"{"alg":"HS256","crit":[]}"#).is_ok_and(|h| h.crit));
        assert!(header(r#"{"alg":"HS256","b64":false}"#).is_ok_and(|h| h.unencoded_payload));
        for bad in [
            r#"{}"#,
            r#"{"alg":null}"#,
            r#"{"alg":["HS256"]}"#,
            r#"{"alg":"HS256","kid":7}"#,
            r#"{"alg":"HS256","b64":"false"}"#,
        ] {
            assert_eq!(header(bad).err(), Some(Reason::Malformed), "{bad}");
        }
    }

    #[test]
    fn peek_kid_reads_only_what_parses() {
        let token = format!("{}.x.y", encode(br#"{"alg":"none","kid":"k"}"#));
        assert_eq!(peek_kid(&token).as_deref(), Some("k"));
        assert_eq!(peek_kid("!!!.x.y"), None);
        assert_eq!(peek_kid(&format!("{}.x", encode(br#"{"kid":1}"#))), None);
    }
}
