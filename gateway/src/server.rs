//! The client-facing listener: accepts connections, speaks HTTP/1.1 and HTTP/2
//! (cleartext, negotiated per connection), enforces the edge limits hyper owns,
//! closes idle HTTP/2 connections, and drains connections on shutdown.

use crate::handler::{Connection, handle};
use crate::runtime::Runtime;
use crate::tls::ClientCert;
use arc_swap::ArcSwap;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulConnection;
use std::convert::Infallible;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::time::Instant;

/// Listener settings; changing them needs a restart.
#[derive(Debug, Clone, Copy)]
pub struct ListenerSettings {
    /// Time allowed for a request head to arrive.
    pub header_read_timeout: Duration,
    /// Largest request head.
    pub max_header_bytes: usize,
    /// How long an HTTP/2 connection may stay without an open stream.
    pub idle_timeout: Duration,
}

/// How often idle HTTP/2 client connections are pinged, and how long the
/// answer may take.
const HTTP2_KEEPALIVE: Duration = Duration::from_secs(60);

/// hyper's HTTP/1 read buffer cannot be smaller than this.
pub const MIN_HEADER_BYTES: usize = 8 * 1024;

/// Serves until `shutdown` resolves, then drains in-flight requests for up to
/// `[server] drain_timeout` (as the serving config says then). Each worker
/// thread runs one of these on its own listener.
pub async fn serve(
    listener: TcpListener,
    runtime: Arc<ArcSwap<Runtime>>,
    settings: ListenerSettings,
    tls: Option<crate::tls::Acceptor>,
    shutdown: impl Future<Output = ()>,
) {
    let scheme = if tls.is_some() { "https" } else { "http" };
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(settings.header_read_timeout)
        .max_buf_size(settings.max_header_bytes.max(MIN_HEADER_BYTES))
        .keep_alive(true);
    // Idle HTTP/2 clients are pinged: one that stopped answering (gone
    // without closing) gives its place under max_connections back.
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(HTTP2_KEEPALIVE))
        .keep_alive_timeout(HTTP2_KEEPALIVE)
        .max_header_list_size(u32::try_from(settings.max_header_bytes).unwrap_or(u32::MAX));
    // Sent once at shutdown; the drain is over when every connection has
    // dropped its receiver.
    let (stop, _) = watch::channel(());
    tokio::pin!(shutdown);

    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Out of file descriptors and similar: back off instead of spinning.
                    tracing::warn!(%err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let (max, per_ip) = {
            let limits = &runtime.load().limits;
            // Load balancers in trusted_proxies carry many clients each.
            let per_ip = limits
                .max_connections_per_ip
                .filter(|_| !limits.trusted_proxies.trusts(peer.ip()));
            (limits.max_connections, per_ip)
        };
        let Some(place) = crate::limit::CONNECTIONS.take(max) else {
            refused(peer, Refusal::Total);
            continue;
        };
        let client_place = match per_ip {
            Some(max) => match crate::limit::CLIENT_CONNECTIONS.take(peer.ip(), max) {
                Some(client_place) => Some(Arc::new(client_place)),
                None => {
                    refused(peer, Refusal::PerIp);
                    continue;
                }
            },
            None => None,
        };
        let place = Open::new(place, client_place.clone());
        let _ = stream.set_nodelay(true);
        let runtime = runtime.clone();
        let activity = Arc::new(Activity::new());
        let stopping = stop.subscribe();
        let idle_timeout = settings.idle_timeout;
        let service = move |client_cert: Option<Arc<ClientCert>>, activity: Arc<Activity>| {
            service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                // HTTP/2 streams are counted until their response ends, for
                // the idle timer; HTTP/1.1's idle wait is hyper's.
                let stream = (request.version() == http::Version::HTTP_2)
                    .then(|| Stream::open(activity.clone()));
                let snapshot = runtime.load_full();
                let conn = Connection {
                    peer,
                    scheme,
                    client: peer,
                    client_cert: client_cert.clone(),
                    client_place: client_place.clone(),
                };
                let request = request.map(crate::body::boxed);
                async move {
                    let response = handle(snapshot, request, conn).await;
                    Ok::<_, Infallible>(match stream {
                        Some(stream) => response.map(|body| crate::body::guarded(body, stream)),
                        None => response,
                    })
                }
            })
        };
        let Some(acceptor) = &tls else {
            let service = service(None, activity.clone());
            let connection = builder
                .serve_connection_with_upgrades(
                    TokioIo::new(FirstBytes::new(
                        stream,
                        settings.header_read_timeout,
                        activity.clone(),
                    )),
                    service,
                )
                .into_owned();
            tokio::spawn(async move {
                if let Err(err) = Drive::new(connection, activity, idle_timeout, stopping).await {
                    tracing::debug!(%peer, %err, "connection ended with an error");
                }
                drop(place);
            });
            continue;
        };
        // The handshake runs in the connection's task, bounded like a request
        // head, so a slow client holds up nobody else.
        let acceptor = acceptor.clone();
        let builder = builder.clone();
        let handshake_timeout = settings.header_read_timeout;
        tokio::spawn(async move {
            let Some(acceptor) = acceptor.current() else {
                return;
            };
            let stream =
                match tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await {
                    Ok(Ok(stream)) => stream,
                    Ok(Err(err)) => {
                        tracing::debug!(%peer, %err, "TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(%peer, "TLS handshake timed out");
                        return;
                    }
                };
            // Verified by the handshake when the listener asks for client
            // certificates; read once per connection.
            let client_cert = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|chain| chain.first())
                .map(|leaf| Arc::new(ClientCert::from_der(leaf)));
            let connection = builder
                .serve_connection_with_upgrades(
                    TokioIo::new(FirstBytes::new(stream, handshake_timeout, activity.clone())),
                    service(client_cert, activity.clone()),
                )
                .into_owned();
            if let Err(err) = Drive::new(connection, activity, idle_timeout, stopping).await {
                tracing::debug!(%peer, %err, "connection ended with an error");
            }
            drop(place);
        });
    }

    drop(listener);
    let drain_timeout = runtime.load().limits.shutdown.drain_timeout;
    tracing::info!(?drain_timeout, "draining in-flight requests");
    stop.send_replace(());
    tokio::select! {
        () = stop.closed() => tracing::info!("all connections closed"),
        () = tokio::time::sleep(drain_timeout) => {
            tracing::warn!("drain timeout reached; closing remaining connections");
        }
    }
}

/// Runs one client connection to its end. At shutdown (`stopping` changes),
/// or once an HTTP/2 connection has had no stream open for `idle_timeout`,
/// it is closed gracefully: HTTP/2 sends GOAWAY and finishes the streams
/// open, HTTP/1.1 finishes the response in progress. (A future written out,
/// not an `async fn`: generic over the connection, the latter trips rustc's
/// `Send` inference for the spawned task.)
struct Drive<C> {
    connection: std::pin::Pin<Box<C>>,
    /// Resolves when the connection should close; `None` once it did.
    close: Option<std::pin::Pin<Box<dyn Future<Output = ()> + Send>>>,
    /// Held until the connection ends: the drain waits for every one.
    _stopping: watch::Receiver<()>,
}

impl<C: GracefulConnection> Drive<C> {
    fn new(
        connection: C,
        activity: Arc<Activity>,
        idle_timeout: Duration,
        stopping: watch::Receiver<()>,
    ) -> Self {
        let mut stop = stopping.clone();
        let close = Box::pin(async move {
            tokio::select! {
                _ = stop.changed() => {}
                () = activity.idle_for(idle_timeout) => {
                    tracing::debug!("closing an HTTP/2 connection idle for idle_timeout");
                }
            }
        });
        Self {
            connection: Box::pin(connection),
            close: Some(close),
            _stopping: stopping,
        }
    }
}

impl<C: GracefulConnection> Future for Drive<C> {
    type Output = Result<(), C::Error>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        if let Some(close) = self.close.as_mut()
            && close.as_mut().poll(cx).is_ready()
        {
            self.close = None;
            self.connection.as_mut().graceful_shutdown();
        }
        self.connection.as_mut().poll(cx)
    }
}

/// Whether a client connection speaks HTTP/2, how many of its streams are
/// open, and since when none has been.
struct Activity {
    http2: AtomicBool,
    streams: Mutex<Streams>,
}

struct Streams {
    open: usize,
    quiet_since: Instant,
}

impl Activity {
    fn new() -> Self {
        Self {
            http2: AtomicBool::new(false),
            streams: Mutex::new(Streams {
                open: 0,
                quiet_since: Instant::now(),
            }),
        }
    }

    /// Since when the connection has been idle: `None` while it is not
    /// known to speak HTTP/2 or has a stream open.
    fn quiet_since(&self) -> Option<Instant> {
        if !self.http2.load(Ordering::Relaxed) {
            return None;
        }
        let streams = self.streams.lock().unwrap_or_else(|e| e.into_inner());
        (streams.open == 0).then_some(streams.quiet_since)
    }

    /// Resolves once the connection is HTTP/2 and has had no stream open for
    /// `timeout`; checks again at least every `timeout` meanwhile.
    async fn idle_for(&self, timeout: Duration) {
        loop {
            let wake = match self.quiet_since() {
                Some(since) if since.elapsed() >= timeout => return,
                Some(since) => since + timeout,
                None => Instant::now() + timeout,
            };
            tokio::time::sleep_until(wake).await;
        }
    }
}

/// An HTTP/2 stream counted open until its response ends or is dropped.
struct Stream(Arc<Activity>);

impl Stream {
    fn open(activity: Arc<Activity>) -> Self {
        activity
            .streams
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .open += 1;
        Stream(activity)
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        let mut streams = self.0.streams.lock().unwrap_or_else(|e| e.into_inner());
        streams.open -= 1;
        if streams.open == 0 {
            streams.quiet_since = Instant::now();
        }
    }
}

/// A client connection's place under `[server] max_connections` (and
/// `max_connections_per_ip`), counted in the `gateway_connections` gauge
/// while it is open.
struct Open {
    _place: crate::limit::Place,
    _client_place: Option<Arc<crate::limit::ClientPlace>>,
}

impl Open {
    fn new(
        place: crate::limit::Place,
        client_place: Option<Arc<crate::limit::ClientPlace>>,
    ) -> Self {
        crate::metrics::metrics().connections.inc();
        Open {
            _place: place,
            _client_place: client_place,
        }
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        crate::metrics::metrics().connections.dec();
    }
}

/// The limit a connection closed on arrival reached.
#[derive(Clone, Copy)]
enum Refusal {
    /// `max_connections`.
    Total,
    /// `max_connections_per_ip`.
    PerIp,
}

/// Counts a connection closed on arrival, and says so in the log at most
/// every 10 s per limit.
fn refused(peer: std::net::SocketAddr, refusal: Refusal) {
    static TOTAL: crate::limit::LogEvery = crate::limit::LogEvery::new(Duration::from_secs(10));
    static PER_IP: crate::limit::LogEvery = crate::limit::LogEvery::new(Duration::from_secs(10));
    let metrics = crate::metrics::metrics();
    match refusal {
        Refusal::Total => {
            metrics
                .connections_refused
                .get_or_create(&[("limit", "max_connections")])
                .inc();
            if let Some(suppressed) = TOTAL.ready() {
                tracing::warn!(%peer, open = crate::limit::CONNECTIONS.open(), suppressed, "max_connections reached: new connections are closed on arrival (logged at most every 10 s; `suppressed` since the last line; gateway_connections_refused_total counts them)");
            }
        }
        Refusal::PerIp => {
            metrics
                .connections_refused
                .get_or_create(&[("limit", "max_connections_per_ip")])
                .inc();
            if let Some(suppressed) = PER_IP.ready() {
                tracing::warn!(%peer, open = crate::limit::CLIENT_CONNECTIONS.open(peer.ip()), suppressed, "max_connections_per_ip reached: this client's new connections are closed on arrival (logged at most every 10 s for all clients; `suppressed` since the last line; gateway_connections_refused_total counts them)");
            }
        }
    }
}

/// What an HTTP/2 client sends first (RFC 9113, section 3.4).
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// A client connection whose first bytes must arrive within a deadline:
/// until they tell HTTP/1 from HTTP/2 (a byte off the HTTP/2 preface, or
/// the whole preface), nothing in hyper times the connection, so a client
/// that connects and sends nothing (or `P` and nothing) would hold a place
/// under `max_connections` for ever. Past them, reads and writes pass
/// through untouched and hyper's own timeouts apply.
struct FirstBytes<T> {
    inner: T,
    deadline: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
    /// Bytes read so far that matched the preface.
    matched: usize,
    /// Told when the whole preface arrived: the connection speaks HTTP/2.
    activity: Arc<Activity>,
}

impl<T> FirstBytes<T> {
    fn new(inner: T, within: Duration, activity: Arc<Activity>) -> Self {
        Self {
            inner,
            deadline: Some(Box::pin(tokio::time::sleep(within))),
            matched: 0,
            activity,
        }
    }
}

impl<T: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for FirstBytes<T> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        use std::task::Poll;
        let this = &mut *self;
        if let Some(deadline) = this.deadline.as_mut()
            && deadline.as_mut().poll(cx).is_ready()
        {
            return Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "no request within header_read_timeout",
            )));
        }
        let before = buf.filled().len();
        let polled = std::pin::Pin::new(&mut this.inner).poll_read(cx, buf);
        if this.deadline.is_some() && matches!(polled, Poll::Ready(Ok(()))) {
            for &byte in &buf.filled()[before..] {
                if PREFACE.get(this.matched) == Some(&byte) {
                    this.matched += 1;
                } else {
                    this.deadline = None;
                    break;
                }
            }
            if this.matched == PREFACE.len() {
                this.deadline = None;
                this.activity.http2.store(true, Ordering::Relaxed);
            }
        }
        polled
    }
}

impl<T: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for FirstBytes<T> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
