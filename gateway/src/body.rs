//! The one body type that flows through the gateway, in both directions.

use bytes::Bytes;
use http_body_util::{BodyExt, Full, combinators::UnsyncBoxBody};

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
    let body = ReadTimeout {
        body,
        timeout,
        deadline: None,
        armed: false,
        answered: answered.clone(),
    }
    .boxed_unsync();
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
    let body = NotifyEnd {
        body,
        ended: Some(tx),
    }
    .boxed_unsync();
    (body, rx)
}

struct NotifyEnd {
    body: Body,
    ended: Option<tokio::sync::oneshot::Sender<()>>,
}

impl http_body::Body for NotifyEnd {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, BoxError>>> {
        let polled = std::pin::Pin::new(&mut self.body).poll_frame(cx);
        let ended = match &polled {
            std::task::Poll::Ready(None) => true,
            std::task::Poll::Ready(Some(Ok(_))) => self.body.is_end_stream(),
            _ => false,
        };
        if ended && let Some(tx) = self.ended.take() {
            let _ = tx.send(());
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
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

struct ReadTimeout {
    body: Body,
    timeout: std::time::Duration,
    /// Made at the first wait, then reset for each later one.
    deadline: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
    /// Whether `deadline` times the current wait.
    armed: bool,
    answered: Answered,
}

impl http_body::Body for ReadTimeout {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, BoxError>>> {
        use std::task::Poll;
        let this = &mut *self;
        if let Poll::Ready(frame) = std::pin::Pin::new(&mut this.body).poll_frame(cx) {
            this.armed = false;
            return Poll::Ready(frame);
        }
        if this.answered.is_set() {
            this.deadline = None;
            return Poll::Pending;
        }
        let at = tokio::time::Instant::now() + this.timeout;
        let deadline = match &mut this.deadline {
            Some(deadline) => {
                if !this.armed {
                    deadline.as_mut().reset(at);
                }
                deadline
            }
            None => this.deadline.insert(Box::pin(tokio::time::sleep_until(at))),
        };
        this.armed = true;
        match deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(ReadTimedOut(this.timeout))))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
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
    Guarded {
        body,
        _guard: guard,
    }
    .map_err(Into::into)
    .boxed_unsync()
}

struct Guarded<B, G> {
    body: B,
    _guard: G,
}

impl<B: http_body::Body + Unpin, G: Unpin> http_body::Body for Guarded<B, G> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<B::Data>, B::Error>>> {
        std::pin::Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
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

impl http_body::Body for Prefixed {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, BoxError>>> {
        if let Some(prefix) = self.prefix.take() {
            return std::task::Poll::Ready(Some(Ok(http_body::Frame::data(prefix))));
        }
        std::pin::Pin::new(&mut self.rest).poll_frame(cx)
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
