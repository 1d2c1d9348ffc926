//! W3C Trace Context: every request leaves the gateway with a `traceparent`
//! that continues the client's trace (a new span whose parent is the
//! client's) or starts one, so upstream logs and the access log share a
//! trace id. `tracestate` passes through untouched.

use http::HeaderMap;
use http::header::HeaderName;

/// The `traceparent` header.
pub static TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");

/// The trace a request belongs to and the gateway's span in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Traceparent {
    /// 32 lower-case hex digits.
    pub trace_id: String,
    /// The gateway's span: 16 lower-case hex digits.
    pub span_id: String,
    /// Trace flags, 2 hex digits (`01`: sampled).
    pub flags: String,
}

impl Traceparent {
    /// Continues the trace in `headers` (a valid version-00 `traceparent`)
    /// with a new span, or starts a new trace.
    pub fn continue_or_start(headers: &HeaderMap) -> Self {
        let random = uuid::Uuid::new_v4().simple().to_string();
        let span_id = random[..16].to_string();
        let incoming = headers
            .get(&TRACEPARENT)
            .and_then(|v| v.to_str().ok())
            .and_then(parse);
        match incoming {
            Some((trace_id, flags)) => Self {
                trace_id,
                span_id,
                flags,
            },
            None => Self {
                trace_id: uuid::Uuid::new_v4().simple().to_string(),
                span_id,
                flags: "00".to_string(),
            },
        }
    }

    /// The header value to send on.
    pub fn header(&self) -> String {
        format!("00-{}-{}-{}", self.trace_id, self.span_id, self.flags)
    }
}

/// The trace id and flags of a valid `traceparent`.
fn parse(value: &str) -> Option<(String, String)> {
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
    valid.then(|| (trace.to_string(), flags.to_string()))
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
        assert_eq!(trace.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(trace.flags, "01");
        assert_ne!(trace.span_id, "00f067aa0ba902b7");
        assert_eq!(trace.span_id.len(), 16);
        assert!(
            trace
                .header()
                .starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-")
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
            assert_ne!(trace.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736", "{bad}");
            assert_eq!(trace.trace_id.len(), 32);
        }
        let fresh = Traceparent::continue_or_start(&HeaderMap::new());
        assert_eq!(
            parse(&fresh.header()),
            Some((fresh.trace_id.clone(), "00".into()))
        );
    }
}
