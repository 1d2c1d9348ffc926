//! The one body type that flows through the gateway, in both directions.

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame};
use http_body_util::{BodyExt, Full, combinators::UnsyncBoxBody};
use std::pin::Pin;
use std::task::{Context, Poll};

/// Errors from any body source (client, upstream, plugin output).
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A streamed or buffered body.
pub type Body = UnsyncBoxBody<Bytes, BoxError>;

/// A body from bytes already in memory.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// An empty body.
pub fn empty() -> Body {
    full(Bytes::new())
}

/// `body`, failing with [`TooLarge`] once more than `limit` bytes came.
pub fn limited(body: Body, limit: u64) -> Body {
    http_body_util::Limited::new(body, usize::try_from(limit).unwrap_or(usize::MAX))
        .map_err(move |err| {
            if err.is::<http_body_util::LengthLimitError>() {
                Box::new(TooLarge(limit))
            } else {
                err
            }
        })
        .boxed_unsync()
}

/// A body went over its limit (the number of bytes), which errors carry to
/// the client's 413.
#[derive(Debug)]
pub struct TooLarge(pub u64);

impl std::fmt::Display for TooLarge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the body is over its limit of {} bytes", self.0)
    }
}

impl std::error::Error for TooLarge {}

/// Boxes any compatible body.
pub fn boxed<B>(body: B) -> Body
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    body.map_err(Into::into).boxed_unsync()
}

/// `body`, failing with [`ReadTimedOut`] when it is read and its next bytes
/// take longer than `timeout` to come (the time between two reads, like
/// nginx's `client_body_timeout`; a reader that stops asking, held back by a
/// slow upstream, runs no clock). The clock stops for good once the returned
/// [`Answered`] is told the upstream answered: from then on the request is
/// a stream the upstream is part of (gRPC, say), whose client may be quiet.
pub fn read_timeout(body: Body, timeout: std::time::Duration) -> (Body, Answered) {
    let answered = Answered(std::sync::Arc::new(std::sync::atomic::AtomicBool::new(
        false,
    )));
    let watch = ReadTimeout {
        timeout,
        deadline: None,
        armed: false,
        answered: answered.clone(),
    };
    let body = Watched { body, watch }.boxed_unsync();
    (body, answered)
}

/// Stops a [`read_timeout`] clock.
#[derive(Clone, Debug)]
pub struct Answered(std::sync::Arc<std::sync::atomic::AtomicBool>);

impl Answered {
    /// The upstream's response head arrived.
    pub fn set(&self) {
        self.0.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    fn is_set(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// `body`, and a receiver told when it has been read to its end.
pub fn notify_end(body: Body) -> (Body, tokio::sync::oneshot::Receiver<()>) {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let body = Watched {
        body,
        watch: NotifyEnd(Some(tx)),
    }
    .boxed_unsync();
    (body, rx)
}

/// What a body's reader is answered: a frame, an error, the end, or not yet.
type Polled<B> = Poll<Option<Result<Frame<<B as HttpBody>::Data>, <B as HttpBody>::Error>>>;

/// `body`, read through `watch`: the frames, end and size are `body`'s, and
/// `watch` sees each answer to a read (and may answer otherwise). What
/// [`notify_end`], [`read_timeout`] and [`guarded`] wrap a body in.
struct Watched<B, W> {
    body: B,
    watch: W,
}

/// What a [`Watched`] body does after each read of the body it wraps.
trait Watch<B: HttpBody>: Unpin {
    /// The answer to a read that `body` answered with `polled`.
    fn after(&mut self, body: &B, polled: Polled<B>, cx: &mut Context<'_>) -> Polled<B>;
}

impl<B: HttpBody + Unpin, W: Watch<B>> HttpBody for Watched<B, W> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Polled<B> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.body).poll_frame(cx);
        this.watch.after(&this.body, polled, cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// Tells its receiver when the body has been read to its end.
struct NotifyEnd(Option<tokio::sync::oneshot::Sender<()>>);

impl Watch<Body> for NotifyEnd {
    fn after(&mut self, body: &Body, polled: Polled<Body>, _: &mut Context<'_>) -> Polled<Body> {
        let ended = match &polled {
            Poll::Ready(None) => true,
            Poll::Ready(Some(Ok(_))) => body.is_end_stream(),
            _ => false,
        };
        if ended && let Some(tx) = self.0.take() {
            let _ = tx.send(());
        }
        polled
    }
}

/// `body`, and a receiver of a copy of its bytes once it has been read to
/// its end, if they were at most `cap` bytes (`None` as soon as they are
/// more): what a mirrored request is sent with, without delaying the
/// original's body. A body that fails, or is abandoned before its end,
/// sends nothing (the receiver sees the sender dropped).
pub fn copied(body: Body, cap: usize) -> (Body, tokio::sync::oneshot::Receiver<Option<Bytes>>) {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let body = Watched {
        body,
        watch: Copied {
            bytes: bytes::BytesMut::new(),
            cap,
            tx: Some(tx),
        },
    }
    .boxed_unsync();
    (body, rx)
}

/// Keeps a copy of the frames read, up to `cap` bytes, for its receiver.
struct Copied {
    bytes: bytes::BytesMut,
    cap: usize,
    tx: Option<tokio::sync::oneshot::Sender<Option<Bytes>>>,
}

impl Watch<Body> for Copied {
    fn after(&mut self, body: &Body, polled: Polled<Body>, _: &mut Context<'_>) -> Polled<Body> {
        let ended = match &polled {
            Poll::Ready(None) => true,
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    if self.bytes.len() + data.len() > self.cap {
                        // Over the cap: say so, and keep nothing more.
                        if let Some(tx) = self.tx.take() {
                            let _ = tx.send(None);
                        }
                        self.bytes = bytes::BytesMut::new();
                    } else if self.tx.is_some() {
                        self.bytes.extend_from_slice(data);
                    }
                }
                body.is_end_stream()
            }
            Poll::Ready(Some(Err(_))) => {
                self.tx = None;
                false
            }
            Poll::Pending => false,
        };
        if ended && let Some(tx) = self.tx.take() {
            let _ = tx.send(Some(std::mem::take(&mut self.bytes).freeze()));
        }
        polled
    }
}

/// Reads `body` to its end, or until more than `max` bytes have passed: an
/// answer nobody will see, read so its connection can serve again.
pub async fn drain(mut body: Body, max: usize) {
    let mut read = 0;
    while read <= max {
        match body.frame().await {
            Some(Ok(frame)) => read += frame.data_ref().map_or(0, Bytes::len),
            _ => return,
        }
    }
}

/// A request body whose next bytes did not come within the read timeout.
#[derive(Debug)]
pub struct ReadTimedOut(pub std::time::Duration);

impl std::fmt::Display for ReadTimedOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "no request body bytes for {:?}", self.0)
    }
}

impl std::error::Error for ReadTimedOut {}

/// Fails a read whose bytes take longer than `timeout` to come.
struct ReadTimeout {
    timeout: std::time::Duration,
    /// Made at the first wait, then reset for each later one.
    deadline: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
    /// Whether `deadline` times the current wait.
    armed: bool,
    answered: Answered,
}

impl Watch<Body> for ReadTimeout {
    fn after(&mut self, _: &Body, polled: Polled<Body>, cx: &mut Context<'_>) -> Polled<Body> {
        if polled.is_ready() {
            self.armed = false;
            return polled;
        }
        if self.answered.is_set() {
            self.deadline = None;
            return Poll::Pending;
        }
        let at = tokio::time::Instant::now() + self.timeout;
        let deadline = match &mut self.deadline {
            Some(deadline) => {
                if !self.armed {
                    deadline.as_mut().reset(at);
                }
                deadline
            }
            None => self.deadline.insert(Box::pin(tokio::time::sleep_until(at))),
        };
        self.armed = true;
        match deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(ReadTimedOut(self.timeout))))),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// `body` followed by `trailers`.
pub fn with_trailers(body: Body, trailers: http::HeaderMap) -> Body {
    body.with_trailers(std::future::ready(Some(Ok(trailers))))
        .boxed_unsync()
}

/// `body`, keeping `guard` alive until the body is dropped (read to the end,
/// or abandoned): what holds a place (a request in flight, an HTTP/2 stream)
/// for as long as the response streams.
pub fn guarded<B, G>(body: B, guard: G) -> Body
where
    B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError>,
    G: Send + Unpin + 'static,
{
    let watch = Guard(guard);
    Watched { body, watch }.map_err(Into::into).boxed_unsync()
}

/// Holds a guard for as long as the body lives; reads pass untouched.
struct Guard<G>(G);

impl<B: HttpBody, G: Unpin> Watch<B> for Guard<G> {
    fn after(&mut self, _: &B, polled: Polled<B>, _: &mut Context<'_>) -> Polled<B> {
        polled
    }
}

/// `prefix` followed by the rest of `body`: a body partly read already.
pub fn prefixed(prefix: Bytes, rest: Body) -> Body {
    Prefixed {
        prefix: Some(prefix).filter(|p| !p.is_empty()),
        rest,
    }
    .boxed_unsync()
}

struct Prefixed {
    prefix: Option<Bytes>,
    rest: Body,
}

impl HttpBody for Prefixed {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Polled<Body> {
        if let Some(prefix) = self.prefix.take() {
            return Poll::Ready(Some(Ok(Frame::data(prefix))));
        }
        Pin::new(&mut self.rest).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.prefix.is_none() && self.rest.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        let mut hint = self.rest.size_hint();
        let extra = self.prefix.as_ref().map_or(0, |p| p.len() as u64);
        hint.set_lower(hint.lower() + extra);
        if let Some(upper) = hint.upper() {
            hint.set_upper(upper + extra);
        }
        hint
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_prefixed_body_yields_the_prefix_then_the_rest() {
        let body = prefixed(Bytes::from_static(b"hello "), full("world"));
        let bytes = body
            .collect()
            .await
            .map(|c| c.to_bytes())
            .unwrap_or_default();
        assert_eq!(bytes, Bytes::from_static(b"hello world"));
    }
}
