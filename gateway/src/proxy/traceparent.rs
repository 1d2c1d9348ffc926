//! W3C Trace Context: every request leaves the gateway with a `traceparent`
//! that continues the client's trace (a new span whose parent is the
//! client's) or starts one, so upstream logs and the access log share a
//! trace id. `tracestate` passes through untouched.
//!
//! Every request makes one, so the ids live in fixed arrays and the header
//! is written once into its exact size: no strings are built per request.

use http::HeaderMap;
use http::header::{HeaderName, HeaderValue};

/// The `traceparent` header.
pub static TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");

/// The length of a version-00 `traceparent` value.
const HEADER_LEN: usize = 55;

/// The trace a request belongs to and the gateway's span in it, as lower-case
/// hex digits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Traceparent {
    trace_id: [u8; 32],
    span_id: [u8; 16],
    flags: [u8; 2],
}

impl Traceparent {
    /// Continues the trace in `headers` (a valid version-00 `traceparent`)
    /// with a new span, or starts a new trace.
    pub fn continue_or_start(headers: &HeaderMap) -> Self {
        let mut span_id = [0u8; 16];
        span_id.copy_from_slice(&random_hex()[..16]);
        let incoming = headers
            .get(&TRACEPARENT)
            .and_then(|v| v.to_str().ok())
            .and_then(parse);
        let (trace_id, flags) = incoming.unwrap_or_else(|| (random_hex(), *b"00"));
        Self {
            trace_id,
            span_id,
            flags,
        }
    }

    /// The trace id: 32 lower-case hex digits.
    pub fn trace_id(&self) -> &str {
        ascii(&self.trace_id)
    }

    /// The gateway's span: 16 lower-case hex digits.
    pub fn span_id(&self) -> &str {
        ascii(&self.span_id)
    }

    /// Trace flags, 2 hex digits (`01`: sampled).
    pub fn flags(&self) -> &str {
        ascii(&self.flags)
    }

    /// The header value to send on.
    pub fn header(&self) -> HeaderValue {
        let mut text = [0u8; HEADER_LEN];
        let parts: [&[u8]; 6] = [
            b"00-",
            &self.trace_id,
            b"-",
            &self.span_id,
            b"-",
            &self.flags,
        ];
        let mut at = 0;
        for part in parts {
            text[at..at + part.len()].copy_from_slice(part);
            at += part.len();
        }
        // Hex digits and dashes only: always a valid value.
        HeaderValue::from_bytes(&text).unwrap_or_else(|_| HeaderValue::from_static(""))
    }
}

/// 32 random lower-case hex digits (a v4 UUID's, as before).
fn random_hex() -> [u8; 32] {
    let mut text = [0u8; 32];
    uuid::Uuid::new_v4().simple().encode_lower(&mut text);
    text
}

/// Hex digits as text (never anything else: they are written by this module
/// or checked by [`parse`]).
fn ascii(hex: &[u8]) -> &str {
    std::str::from_utf8(hex).unwrap_or_default()
}

/// The trace id and flags of a valid `traceparent`.
fn parse(value: &str) -> Option<([u8; 32], [u8; 2])> {
    let mut parts = value.trim().split('-');
    let (version, trace, parent, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex = |s: &str, len: usize| {
        s.len() == len
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    let valid = version == "00"
        && parts.next().is_none()
        && hex(trace, 32)
        && hex(parent, 16)
        && hex(flags, 2)
        && trace.bytes().any(|b| b != b'0')
        && parent.bytes().any(|b| b != b'0');
    if !valid {
        return None;
    }
    Some((
        trace.as_bytes().try_into().ok()?,
        flags.as_bytes().try_into().ok()?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(&TRACEPARENT, value.parse().expect("header value"));
        headers
    }

    #[test]
    fn a_valid_trace_is_continued_with_a_new_span() {
        let incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let trace = Traceparent::continue_or_start(&with(incoming));
        assert_eq!(trace.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(trace.flags(), "01");
        assert_ne!(trace.span_id(), "00f067aa0ba902b7");
        assert_eq!(trace.span_id().len(), 16);
        assert!(
            trace
                .header()
                .as_bytes()
                .starts_with(b"00-4bf92f3577b34da6a3ce929d0e0e4736-")
        );
    }

    #[test]
    fn invalid_or_missing_traces_start_a_new_one() {
        for bad in [
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "garbage",
        ] {
            let trace = Traceparent::continue_or_start(&with(bad));
            assert_ne!(
                trace.trace_id(),
                "4bf92f3577b34da6a3ce929d0e0e4736",
                "{bad}"
            );
            assert_eq!(trace.trace_id().len(), 32);
        }
        let fresh = Traceparent::continue_or_start(&HeaderMap::new());
        let header = fresh.header();
        assert_eq!(header.len(), HEADER_LEN);
        assert_eq!(
            parse(header.to_str().expect("ascii")),
            Some((fresh.trace_id, *b"00"))
        );
    }
}
