//! A client connection's bytes as the listener sees them before and around
//! hyper: the first bytes' deadline, the HTTP/2 connection preface, and the
//! refusals hyper writes by itself.
//!
//! - Until the first bytes tell HTTP/1 from HTTP/2 (a byte off the HTTP/2
//!   preface, or the whole preface), nothing in hyper times the connection,
//!   so a client that connects and sends nothing (or `P` and nothing) would
//!   hold a place under `max_connections` for ever: they must come within
//!   `header_read_timeout`.
//! - A client committed to HTTP/2 (by ALPN, or by sending the preface's
//!   request line `PRI * HTTP/2.0`) whose preface then goes wrong gets a
//!   GOAWAY with PROTOCOL_ERROR (RFC 9113, section 3.4), not an HTTP/1.1 400.
//! - When hyper's HTTP/1 parser refuses a connection's first request head
//!   (400, 414, 431), it writes a bare response itself; that response is
//!   rewritten into the JSON error body every other answer of the gateway
//!   carries. Only before the first request reaches the handler: from then
//!   on a write may be any part of a response body or of an upgraded
//!   connection's stream, and is never looked into. (A head refused later
//!   on a kept-alive connection keeps hyper's empty body.)
//!
//! Past the first bytes, reads pass through untouched.

use super::activity::Activity;
use bytes::{Bytes, BytesMut};
use http::StatusCode;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// What an HTTP/2 client sends first (RFC 9113, section 3.4).
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The preface's request line: a client that sent it speaks HTTP/2.
const PREFACE_LINE: usize = b"PRI * HTTP/2.0\r\n".len();

/// An empty SETTINGS frame (the server's connection preface) and a GOAWAY
/// with last stream 0 and PROTOCOL_ERROR (RFC 9113, sections 6.5 and 6.8).
const GOAWAY_PROTOCOL_ERROR: &[u8] = &[
    0, 0, 0, 0x4, 0, 0, 0, 0, 0, // SETTINGS, length 0, stream 0
    0, 0, 8, 0x7, 0, 0, 0, 0, 0, // GOAWAY, length 8, stream 0
    0, 0, 0, 0, // last stream id
    0, 0, 0, 1, // PROTOCOL_ERROR
];

/// A client connection, watched as the module says.
pub(super) struct EdgeIo<T> {
    inner: T,
    /// Until the protocol is known.
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    /// Bytes read so far that matched the preface.
    matched: usize,
    /// ALPN chose HTTP/2: the first bytes must be the preface.
    expect_h2: bool,
    /// Told when the whole preface arrived: the connection speaks HTTP/2.
    activity: Arc<Activity>,
    /// Bytes to write before anything else (a GOAWAY, a rewritten refusal).
    pending: Bytes,
    /// The preface went wrong: reads fail once the GOAWAY is out.
    broken_preface: bool,
}

impl<T> EdgeIo<T> {
    pub(super) fn new(inner: T, within: Duration, activity: Arc<Activity>) -> Self {
        Self {
            inner,
            deadline: Some(Box::pin(tokio::time::sleep(within))),
            matched: 0,
            expect_h2: false,
            activity,
            pending: Bytes::new(),
            broken_preface: false,
        }
    }

    /// The connection negotiated HTTP/2 with ALPN.
    pub(super) fn expecting_http2(mut self) -> Self {
        self.expect_h2 = true;
        self
    }

    /// Follows the preface through `read` (the bytes just read). False when
    /// a client committed to HTTP/2 went off it.
    fn follow_preface(&mut self, read: &[u8]) -> bool {
        for &byte in read {
            if PREFACE.get(self.matched) != Some(&byte) {
                self.deadline = None;
                return !(self.expect_h2 || self.matched >= PREFACE_LINE);
            }
            self.matched += 1;
            if self.matched == PREFACE.len() {
                // The frames that follow are hyper's to read.
                self.deadline = None;
                self.activity.http2.store(true, Ordering::Relaxed);
                return true;
            }
        }
        true
    }

    /// Whether `buf` may be a refusal hyper wrote itself: it looks like one,
    /// and no request has reached the handler yet.
    fn may_be_refusal(&self, buf: &[u8]) -> bool {
        looks_like_refusal(buf)
            && !self.activity.http2.load(Ordering::Relaxed)
            && self.activity.before_first_request()
    }
}

impl<T: AsyncWrite + Unpin> EdgeIo<T> {
    /// Writes out `pending`.
    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.pending.is_empty() {
            let written = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.pending))?;
            if written == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            let _ = self.pending.split_to(written);
        }
        Poll::Ready(Ok(()))
    }

    /// Writes `buf`, or its rewrite when it is a refusal hyper wrote itself.
    fn poll_write_head(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        ready!(self.poll_pending(cx))?;
        if self.may_be_refusal(buf)
            && let Some(rewritten) = rewrite_refusal(buf)
        {
            self.pending = rewritten;
            // Taken whole; written out by this or the next write or flush.
            let _ = self.poll_pending(cx)?;
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncRead for EdgeIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.broken_preface {
            ready!(this.poll_pending(cx))?;
            // Out of any buffer (TLS) before hyper drops the connection.
            ready!(Pin::new(&mut this.inner).poll_flush(cx))?;
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "invalid HTTP/2 connection preface",
            )));
        }
        if let Some(deadline) = this.deadline.as_mut()
            && deadline.as_mut().poll(cx).is_ready()
        {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "no request within header_read_timeout",
            )));
        }
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
        if this.deadline.is_some() && !this.follow_preface(&buf.filled()[before..]) {
            // Nothing of it reaches hyper: the connection ends in the GOAWAY.
            buf.set_filled(before);
            this.broken_preface = true;
            this.pending = Bytes::from_static(GOAWAY_PROTOCOL_ERROR);
            return Pin::new(this).poll_read(cx, buf);
        }
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for EdgeIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_head(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        // A response head is the first slice of its write.
        if let Some(first) = bufs.iter().find(|b| !b.is_empty())
            && self.may_be_refusal(first)
        {
            return self.poll_write_head(cx, first);
        }
        ready!(self.poll_pending(cx))?;
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_pending(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_pending(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The statuses hyper answers a head it cannot parse with.
const REFUSALS: [(&[u8], StatusCode, &str); 3] = [
    (
        b"HTTP/1.1 400 ",
        StatusCode::BAD_REQUEST,
        "bad request: malformed request head",
    ),
    (
        b"HTTP/1.1 414 ",
        StatusCode::URI_TOO_LONG,
        "request target too long",
    ),
    (
        b"HTTP/1.1 431 ",
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        "request header fields too large or too many",
    ),
];

fn looks_like_refusal(buf: &[u8]) -> bool {
    REFUSALS.iter().any(|(line, _, _)| buf.starts_with(line))
}

/// The JSON answer for a response head hyper wrote on its own: one with a
/// parse-error status, a whole head, and no `x-request-id` (every response
/// the gateway's handler gives has one).
fn rewrite_refusal(buf: &[u8]) -> Option<Bytes> {
    let (_, status, message) = REFUSALS.iter().find(|(line, _, _)| buf.starts_with(line))?;
    let head_end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = &buf[..head_end];
    if contains_ignore_case(head, b"\r\nx-request-id:") {
        return None;
    }
    let request_id = uuid::Uuid::new_v4().hyphenated().to_string();
    let body = crate::error::json_body(*status, message, &request_id);
    let mut out = BytesMut::with_capacity(200 + body.len());
    out.extend_from_slice(
        format!(
            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\nx-request-id: {request_id}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    out.extend_from_slice(body.as_bytes());
    tracing::debug!(%status, %request_id, "refused a request head hyper could not parse");
    Some(out.freeze())
}

fn contains_ignore_case(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window.eq_ignore_ascii_case(needle))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hypers_own_refusals_are_rewritten_into_json() {
        let bare =
            b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\ndate: x\r\n\r\n";
        let rewritten = rewrite_refusal(bare).expect("rewritten");
        let text = String::from_utf8_lossy(&rewritten);
        assert!(text.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"));
        assert!(text.contains("content-type: application/json\r\n"));
        assert!(text.contains("connection: close\r\n"));
        let body = text.split("\r\n\r\n").nth(1).expect("body");
        let json: serde_json::Value = serde_json::from_str(body).expect("json");
        assert_eq!(json["status"], 431);
        assert!(text.contains(&format!(
            "x-request-id: {}\r\n",
            json["request_id"].as_str().expect("id")
        )));
    }

    #[test]
    fn the_gateways_own_answers_pass_untouched() {
        let ours = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 9\r\nX-Request-Id: abc\r\n\r\n";
        assert!(rewrite_refusal(ours).is_none());
        assert!(rewrite_refusal(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").is_none());
        assert!(
            rewrite_refusal(b"HTTP/1.1 400 Bad Request\r\ncontent-le").is_none(),
            "not a whole head"
        );
    }

    /// What `EdgeIo` passes on of `written`, with `dispatched` requests
    /// served on the connection before.
    async fn written_through(written: &[u8], dispatched: usize) -> Vec<u8> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        let activity = Arc::new(Activity::new());
        for _ in 0..dispatched {
            drop(super::super::activity::InProgress::open(activity.clone()));
        }
        let mut io = EdgeIo::new(server, Duration::from_secs(5), activity);
        io.write_all(written).await.expect("write");
        io.flush().await.expect("flush");
        drop(io);
        let mut seen = Vec::new();
        client.read_to_end(&mut seen).await.expect("read");
        seen
    }

    #[tokio::test]
    async fn only_a_refusal_before_the_first_request_is_rewritten() {
        let bare = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n";
        let first = written_through(bare, 0).await;
        assert!(
            first.ends_with(b"\"status\":400}"),
            "{}",
            String::from_utf8_lossy(&first)
        );
        // Later, the same bytes may be a response body or a tunnel's.
        assert_eq!(written_through(bare, 1).await, bare);
    }

    #[tokio::test]
    async fn a_broken_preface_is_caught_once_committed_to_http2() {
        let io = || EdgeIo::new((), Duration::from_secs(1), Arc::new(Activity::new()));
        let mut http1 = io();
        assert!(
            http1.follow_preface(b"PRI /x HTTP/1.1\r\n"),
            "HTTP/1 by its first line"
        );
        let mut committed = io();
        assert!(!committed.follow_preface(b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n"));
        let mut alpn = io().expecting_http2();
        assert!(!alpn.follow_preface(b"GET / HTTP/1.1\r\n"));
        let mut whole = io();
        let settings = [0u8, 0, 0, 4, 0, 0, 0, 0, 0];
        assert!(
            whole.follow_preface(&[PREFACE, &settings[..]].concat()),
            "the frames after the preface are not part of it"
        );
        assert!(whole.activity.http2.load(Ordering::Relaxed));
    }
}
