//! HTTP/2 connections to an upstream's targets, opened as the streams need
//! them.
//!
//! hyper-util's pool keeps one HTTP/2 connection per target, and requests
//! beyond the target's limit of concurrent streams wait on it: a few
//! long-lived gRPC streams can starve every other call. Here each worker keeps
//! a list of connections per target; a connection carries at most
//! `max_streams` requests at once (a stream counts until its response body is
//! dropped), and when every connection is full another one is opened, as
//! Envoy and Go's HTTP/2 client do. Extra connections idle for the upstream's
//! `idle_timeout` are closed; closed ones (GOAWAY, a failed ping) are dropped.

use super::upstream::TimedConnector;
use crate::body::{self, Body, BoxError};
use http::{Request, Response, Uri};
use hyper::body::Incoming;
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// How one request failed.
pub enum SendError {
    /// No connection could be opened: nothing reached the target.
    Connect(BoxError),
    /// The request went out (or may have) and failed.
    Send(hyper::Error),
}

/// The HTTP/2 connections of one upstream.
pub struct H2Pool {
    connector: TimedConnector,
    keepalive: Duration,
    max_streams: usize,
    idle_timeout: Duration,
    /// Per worker, per target.
    slots: Box<[Box<[Connections]>]>,
}

/// The connections of one worker to one target.
type Connections = Mutex<Vec<Conn>>;

struct Conn {
    sender: SendRequest<Body>,
    streams: Arc<AtomicUsize>,
    last_used: Instant,
}

impl H2Pool {
    /// A pool for `targets` targets, one set of connections per worker.
    pub fn new(
        connector: TimedConnector,
        keepalive: Duration,
        max_streams: usize,
        idle_timeout: Duration,
        targets: usize,
    ) -> Self {
        let slots = (0..crate::worker::count())
            .map(|_| (0..targets).map(|_| Mutex::new(Vec::new())).collect())
            .collect();
        Self {
            connector,
            keepalive,
            max_streams: max_streams.max(1),
            idle_timeout,
            slots,
        }
    }

    fn slot(&self, target: usize) -> MutexGuard<'_, Vec<Conn>> {
        let worker = &self.slots[crate::worker::index() % self.slots.len()];
        worker[target]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Sends `request` (its URI absolute) to `target` (reached at `origin`,
    /// scheme and authority) on a connection with a free stream, opening
    /// one if none has.
    pub async fn send(
        &self,
        target: usize,
        origin: &Uri,
        request: Request<Body>,
    ) -> Result<Response<Body>, SendError> {
        let mut request = request;
        // A connection that closed just before the request went out hands it
        // back: it is sent once more, on a fresh connection.
        let mut fresh_only = false;
        loop {
            let found = if fresh_only { None } else { self.take(target) };
            let (mut sender, stream) = match found {
                Some(found) => found,
                None => self
                    .connect(target, origin)
                    .await
                    .map_err(SendError::Connect)?,
            };
            match sender.try_send_request(request).await {
                Ok(response) => {
                    return Ok(response.map(|body| {
                        Counted {
                            body,
                            _stream: stream,
                        }
                        .into_body()
                    }));
                }
                Err(mut failed) => match failed.take_message() {
                    Some(unsent) if !fresh_only => {
                        request = unsent;
                        fresh_only = true;
                    }
                    _ => return Err(SendError::Send(failed.into_error())),
                },
            }
        }
    }

    /// A stream on an open connection to `target` with one to spare.
    fn take(&self, target: usize) -> Option<(SendRequest<Body>, Stream)> {
        let now = Instant::now();
        let mut conns = self.slot(target);
        // Closed connections go; so do idle ones beyond the first.
        let mut kept = 0;
        conns.retain(|conn| {
            let keep = !conn.sender.is_closed()
                && (kept == 0
                    || conn.streams.load(Ordering::Relaxed) > 0
                    || now.duration_since(conn.last_used) < self.idle_timeout);
            kept += usize::from(keep);
            keep
        });
        let conn = conns
            .iter_mut()
            .find(|conn| conn.streams.load(Ordering::Relaxed) < self.max_streams)?;
        conn.last_used = now;
        Some((conn.sender.clone(), Stream::open(&conn.streams)))
    }

    /// Opens a connection to `target` and takes its first stream.
    async fn connect(
        &self,
        target: usize,
        origin: &Uri,
    ) -> Result<(SendRequest<Body>, Stream), BoxError> {
        use tower_service::Service;
        let mut connector = self.connector.clone();
        std::future::poll_fn(|cx| connector.poll_ready(cx)).await?;
        let io = connector.call(origin.clone()).await?;
        let (sender, connection) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .keep_alive_interval(self.keepalive)
            .keep_alive_timeout(self.keepalive)
            .keep_alive_while_idle(true)
            .handshake(io)
            .await?;
        let authority = origin.authority().map(ToString::to_string);
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                tracing::debug!(target = authority.as_deref().unwrap_or("-"), %err, "HTTP/2 upstream connection ended");
            }
        });
        let streams = Arc::new(AtomicUsize::new(0));
        let stream = Stream::open(&streams);
        self.slot(target).push(Conn {
            sender: sender.clone(),
            streams,
            last_used: Instant::now(),
        });
        Ok((sender, stream))
    }
}

/// One stream in use on a connection, until dropped.
struct Stream(Arc<AtomicUsize>);

impl Stream {
    fn open(streams: &Arc<AtomicUsize>) -> Self {
        streams.fetch_add(1, Ordering::Relaxed);
        Stream(streams.clone())
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A response body that holds its stream until it is dropped.
struct Counted {
    body: Incoming,
    _stream: Stream,
}

impl Counted {
    fn into_body(self) -> Body {
        body::boxed(self)
    }
}

impl http_body::Body for Counted {
    type Data = bytes::Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        std::pin::Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}
