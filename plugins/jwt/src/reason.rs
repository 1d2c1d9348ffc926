//! Why a request was refused: the short, non-leaky text the client sees.

use std::fmt;

/// Why a token (or a request without one) was refused.
///
/// The [`Display`](fmt::Display) text goes to the client in the JSON body and
/// the `WWW-Authenticate` challenge, so it says what kind of check failed and
/// nothing about keys or claim values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// No token in the header, query parameter or cookie.
    MissingToken,
    /// The token given more than once: in two places (header, query
    /// parameter, cookie), or twice in one.
    Repeated,
    /// Not three segments of strict base64url, or a header or payload that is
    /// not a JSON object, or a registered claim of the wrong type.
    Malformed,
    /// Longer than `max_token_bytes`; refused before any decoding.
    TooLarge,
    /// The header's `alg` is not in the allow-list (this includes `none`).
    AlgorithmNotAllowed,
    /// No configured key has the token's `kid` and `alg`.
    UnknownKey,
    /// The token's `kid` names more than one configured key.
    AmbiguousKey,
    /// No candidate key verified the signature.
    InvalidSignature,
    /// `now >= exp + leeway`.
    Expired,
    /// `now < nbf - leeway`.
    NotYetValid,
    /// `iss` is missing or not one of the configured issuers.
    InvalidIssuer,
    /// `aud` is missing or names none of the configured audiences.
    InvalidAudience,
    /// A required claim is absent.
    MissingClaim(String),
    /// The header has `crit`, or `b64: false` (RFC 7797): extensions this
    /// plugin does not implement.
    UnsupportedCritical,
    /// `consumer_must_exist` is set and the consumer claim names no consumer.
    UnknownConsumer,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self {
            Reason::MissingToken => "missing token",
            Reason::Repeated => "credential given more than once",
            Reason::Malformed => "malformed token",
            Reason::TooLarge => "token too large",
            Reason::AlgorithmNotAllowed => "algorithm not allowed",
            Reason::UnknownKey => "unknown key",
            Reason::AmbiguousKey => "ambiguous key",
            Reason::InvalidSignature => "invalid signature",
            Reason::Expired => "token expired",
            Reason::NotYetValid => "token not yet valid",
            Reason::InvalidIssuer => "invalid issuer",
            Reason::InvalidAudience => "invalid audience",
            Reason::MissingClaim(name) => return write!(f, "missing claim {name}"),
            Reason::UnsupportedCritical => "unsupported critical header",
            Reason::UnknownConsumer => "unknown consumer",
        };
        f.write_str(text)
    }
}

impl std::error::Error for Reason {}
