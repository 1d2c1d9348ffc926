//! The client-facing listener: accepts connections, speaks HTTP/1.1 and HTTP/2
//! (cleartext, negotiated per connection), enforces the edge limits hyper owns,
//! closes idle connections (HTTP/2 after `idle_timeout`; kept-alive ones,
//! longest idle first, when the listener nears `max_connections`), and drains
//! connections on shutdown. One `serve` runs per listener and worker; a
//! listener may read a PROXY protocol header first (`proxy_protocol`) or
//! answer everything with a redirect to HTTPS (`redirect`).

mod acceptor;
mod activity;
mod edge_io;
mod proxy_protocol;
mod redirect;

pub use crate::config::{ListenerSettings, MAX_HEADERS, MIN_HEADER_BYTES};
use crate::handler::{Connection, handle};
use crate::runtime::Runtime;
use crate::tls::ClientCert;
pub use acceptor::Acceptor;
use activity::{Activity, InProgress};
use arc_swap::ArcSwap;
use edge_io::EdgeIo;
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

/// How often idle HTTP/2 client connections are pinged, and how long the
/// answer may take.
const HTTP2_KEEPALIVE: Duration = Duration::from_secs(60);

/// Serves until `shutdown` resolves, then drains in-flight requests for up to
/// `[server] drain_timeout` (as the serving config says then). Each worker
/// thread runs one of these on its own socket of each listener (`name`).
pub async fn serve(
    listener: TcpListener,
    name: Arc<str>,
    runtime: Arc<ArcSwap<Runtime>>,
    settings: ListenerSettings,
    tls: Option<Acceptor>,
    shutdown: impl Future<Output = ()>,
) {
    // Sent once at shutdown; the drain is over when every connection has
    // dropped its receiver.
    let (stop, stopping) = watch::channel(());
    let opening = Arc::new(Opening {
        runtime: runtime.clone(),
        scheme: if tls.is_some() { "https" } else { "http" },
        builder: http_builder(&settings),
        name,
        settings,
        tls,
        stopping,
    });
    tokio::pin!(shutdown);

    loop {
        let (stream, peer) = tokio::select! {
            accepted = accept(&listener) => accepted,
            () = &mut shutdown => break,
        };
        match opening.proxy_protocol(peer) {
            Proxied::No => opening.open(stream, peer),
            Proxied::Refused => {
                tracing::debug!(%peer, "connection refused: not in proxy_protocol_from");
            }
            Proxied::Removed => {
                tracing::debug!(%peer, listener = %opening.name, "connection refused: the listener is no longer in the config");
            }
            Proxied::Yes => {
                // Counted among the connections while its header is read.
                let Some(place) = crate::limit::CONNECTIONS.take(opening.max_connections()) else {
                    tracing::debug!(%peer, "connection refused: max_connections");
                    continue;
                };
                let opening = opening.clone();
                tokio::spawn(async move { opening.open_proxied(stream, peer, place).await });
            }
        }
    }

    drop(listener);
    drop(opening);
    drain(stop, runtime.load().limits.shutdown.drain_timeout).await;
}

/// Whether a connection starts with a PROXY protocol header.
enum Proxied {
    /// The listener does not take the protocol.
    No,
    /// It does, and the peer is allowed to send it.
    Yes,
    /// It does, and the peer is not allowed to connect.
    Refused,
    /// A reload removed the listener (its socket serves until a restart):
    /// its connections are closed, not served without its protections.
    Removed,
}

/// What the connections of one listener are opened with.
struct Opening {
    runtime: Arc<ArcSwap<Runtime>>,
    name: Arc<str>,
    scheme: &'static str,
    builder: auto::Builder<TokioExecutor>,
    settings: ListenerSettings,
    tls: Option<Acceptor>,
    /// Held by every connection until it ends: the drain waits for them.
    stopping: watch::Receiver<()>,
}

impl Opening {
    /// The most connections open at once, as the serving config says.
    fn max_connections(&self) -> usize {
        self.runtime.load().limits.max_connections
    }

    /// Whether a connection from `peer` starts with a PROXY protocol
    /// header, as the serving config says for this listener.
    fn proxy_protocol(&self, peer: std::net::SocketAddr) -> Proxied {
        let runtime = self.runtime.load();
        let listener = runtime
            .server
            .listeners
            .iter()
            .find(|l| *l.name == *self.name);
        let Some(listener) = listener else {
            return Proxied::Removed;
        };
        match listener.proxy_protocol.as_ref() {
            None => Proxied::No,
            Some(from) if from.trusts(peer.ip().to_canonical()) => Proxied::Yes,
            Some(_) => Proxied::Refused,
        }
    }

    /// Reads the PROXY protocol header (within `header_read_timeout`) and
    /// opens the connection as the client's it names; closes it when the
    /// header is missing or wrong.
    async fn open_proxied(
        &self,
        mut stream: tokio::net::TcpStream,
        peer: std::net::SocketAddr,
        reading_place: crate::limit::Place,
    ) {
        let timeout = self.settings.header_read_timeout;
        let reading = proxy_protocol::read_header(&mut stream, peer);
        let read = tokio::time::timeout(timeout, reading).await;
        // The connection takes its own place (and its client's) when admitted.
        drop(reading_place);
        match read {
            Ok(Ok(client)) => self.open(stream, client),
            Ok(Err(err)) => tracing::debug!(%peer, %err, "connection closed"),
            Err(_) => tracing::debug!(%peer, "connection closed: no PROXY protocol header in time"),
        }
    }

    /// Serves the connection from `peer` when it is admitted: the TLS
    /// handshake first on a TLS listener, then HTTP, in a task of its own.
    fn open(&self, stream: tokio::net::TcpStream, peer: std::net::SocketAddr) {
        let activity = Arc::new(Activity::new());
        let Some(place) = admit(&self.runtime.load(), peer, activity.clone()) else {
            return;
        };
        let serving = Serving {
            runtime: self.runtime.clone(),
            peer,
            scheme: self.scheme,
            client_place: place.client_place.clone(),
            listener: self.name.clone(),
        };
        let _ = stream.set_nodelay(true);
        let stopping = self.stopping.clone();
        let (idle_timeout, builder) = (self.settings.idle_timeout, self.builder.clone());
        let service = move |client_cert: Option<Arc<ClientCert>>, activity: Arc<Activity>| {
            service_fn(move |request| serving.answer(request, &client_cert, &activity))
        };
        let Some(acceptor) = self.tls.clone() else {
            let service = service(None, activity.clone());
            let io = EdgeIo::new(stream, self.settings.header_read_timeout, activity.clone());
            let connection = builder
                .serve_connection_with_upgrades(TokioIo::new(io), service)
                .into_owned();
            tokio::spawn(async move {
                if let Err(err) = Drive::new(connection, activity, idle_timeout, stopping).await {
                    tracing::debug!(%peer, %err, "connection ended with an error");
                }
                drop(place);
            });
            return;
        };
        // The handshake runs in the connection's task, bounded like a request
        // head, so a slow client holds up nobody else.
        let handshake_timeout = self.settings.header_read_timeout;
        tokio::spawn(async move {
            let Some((stream, client_cert, h2)) =
                handshake(&acceptor, stream, handshake_timeout, peer).await
            else {
                return;
            };
            let mut io = EdgeIo::new(stream, handshake_timeout, activity.clone());
            if h2 {
                io = io.expecting_http2();
            }
            let connection = builder
                .serve_connection_with_upgrades(
                    TokioIo::new(io),
                    service(client_cert, activity.clone()),
                )
                .into_owned();
            if let Err(err) = Drive::new(connection, activity, idle_timeout, stopping).await {
                tracing::debug!(%peer, %err, "connection ended with an error");
            }
            drop(place);
        });
    }
}

/// What a connection's requests are served with.
struct Serving {
    runtime: Arc<ArcSwap<Runtime>>,
    peer: std::net::SocketAddr,
    scheme: &'static str,
    client_place: Option<Arc<crate::limit::ClientPlace>>,
    listener: Arc<str>,
}

impl Serving {
    /// Answers one request on the runtime snapshot current at its start,
    /// counted in progress until its response ends (for the idle timers).
    fn answer(
        &self,
        request: hyper::Request<hyper::body::Incoming>,
        client_cert: &Option<Arc<ClientCert>>,
        activity: &Arc<Activity>,
    ) -> impl Future<Output = Result<hyper::Response<crate::body::Body>, Infallible>> + Send + use<>
    {
        let in_progress = InProgress::open(activity.clone());
        let snapshot = self.runtime.load_full();
        let redirect = snapshot
            .server
            .listeners
            .iter()
            .find(|l| *l.name == *self.listener)
            .and_then(|l| l.redirect_https);
        let conn = Connection {
            peer: self.peer,
            scheme: self.scheme,
            client: self.peer,
            client_cert: client_cert.clone(),
            client_place: self.client_place.clone(),
            listener: self.listener.clone(),
        };
        let request = request.map(crate::body::boxed);
        async move {
            let response = match redirect {
                Some(redirect) => redirect::answer(&request, redirect),
                None => handle(snapshot, request, conn).await,
            };
            Ok(response.map(|body| crate::body::guarded(body, in_progress)))
        }
    }
}

/// The next client connection; errors (out of file descriptors and the
/// like) are logged and waited out instead of spinning.
async fn accept(listener: &TcpListener) -> (tokio::net::TcpStream, std::net::SocketAddr) {
    loop {
        match listener.accept().await {
            Ok(accepted) => return accepted,
            Err(err) => {
                tracing::warn!(%err, "accept failed");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

/// The TLS handshake, bounded like a request head: the stream, the client
/// certificate (verified by the handshake when the listener asks for one;
/// read once per connection) and whether ALPN chose HTTP/2. `None` when it
/// failed or timed out (logged at debug).
async fn handshake(
    acceptor: &Acceptor,
    stream: tokio::net::TcpStream,
    timeout: Duration,
    peer: std::net::SocketAddr,
) -> Option<(
    tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
    Option<Arc<ClientCert>>,
    bool,
)> {
    let acceptor = acceptor.current()?;
    let stream = match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(err)) => {
            tracing::debug!(%peer, %err, "TLS handshake failed");
            return None;
        }
        Err(_) => {
            tracing::debug!(%peer, "TLS handshake timed out");
            return None;
        }
    };
    let session = stream.get_ref().1;
    let client_cert = session
        .peer_certificates()
        .and_then(|chain| chain.first())
        .map(|leaf| Arc::new(ClientCert::from_der(leaf)));
    let h2 = session.alpn_protocol() == Some(b"h2");
    Some((stream, client_cert, h2))
}

/// Tells every connection to close gracefully, then waits for them for up
/// to `drain_timeout`.
async fn drain(stop: watch::Sender<()>, drain_timeout: Duration) {
    tracing::info!(?drain_timeout, "draining in-flight requests");
    stop.send_replace(());
    tokio::select! {
        () = stop.closed() => tracing::info!("all connections closed"),
        () = tokio::time::sleep(drain_timeout) => {
            tracing::warn!("drain timeout reached; closing remaining connections");
        }
    }
}

/// hyper's connection settings from the listener's.
fn http_builder(settings: &ListenerSettings) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(settings.header_read_timeout)
        .max_buf_size(settings.max_header_bytes.max(MIN_HEADER_BYTES))
        .max_headers(settings.max_headers)
        .keep_alive(true);
    // Idle HTTP/2 clients are pinged: one that stopped answering (gone
    // without closing) gives its place under max_connections back.
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(HTTP2_KEEPALIVE))
        .keep_alive_timeout(HTTP2_KEEPALIVE)
        .max_header_list_size(u32::try_from(settings.max_header_bytes).unwrap_or(u32::MAX));
    builder
}

/// A place for a new connection under `max_connections_per_ip` and
/// `max_connections`, or `None` when it is to be closed. From
/// `close_idle_from` connections on, an admitted newcomer first closes the
/// kept-alive connection idle the longest, and takes its place if need be
/// (the places of connections told to close count as free): it is refused
/// only when none is idle.
fn admit(runtime: &Runtime, peer: std::net::SocketAddr, activity: Arc<Activity>) -> Option<Open> {
    let limits = &runtime.limits;
    // Load balancers in trusted_proxies carry many clients each.
    let per_ip = limits
        .max_connections_per_ip
        .filter(|_| !limits.trusted_proxies.trusts(peer.ip()));
    // First, so a client over its own limit closes nobody's connection.
    let client_place = match per_ip {
        Some(max) => match crate::limit::CLIENT_CONNECTIONS.take(peer.ip(), max) {
            Some(client_place) => Some(Arc::new(client_place)),
            None => {
                refused(peer, Refusal::PerIp);
                return None;
            }
        },
        None => None,
    };
    let open = crate::limit::CONNECTIONS.open();
    if open >= limits.close_idle_from && activity::close_longest_idle() {
        crate::metrics::metrics().connections_idle_closed.inc();
    }
    let max = limits.max_connections + activity::closing();
    let Some(place) = crate::limit::CONNECTIONS.take(max) else {
        refused(peer, Refusal::Total);
        return None;
    };
    Some(Open::new(place, client_place, activity))
}

/// Runs one client connection to its end. At shutdown (`stopping` changes),
/// or once an HTTP/2 connection has had no stream open for `idle_timeout`,
/// it is closed gracefully: HTTP/2 sends GOAWAY and finishes the streams
/// open, HTTP/1.1 finishes the response in progress. (A future written out,
/// not an `async fn`: generic over the connection, the latter trips rustc's
/// `Send` inference for the spawned task.)
///
/// The connection's task is woken several times per request (the client's
/// bytes, the upstream's answer, room to write); the reasons to close are
/// looked at again only when one of them woke it ([`CloseWake`]), not at
/// every wake-up.
struct Drive<C> {
    connection: std::pin::Pin<Box<C>>,
    /// Resolves when the connection should close; `None` once it did.
    close: Option<std::pin::Pin<Box<dyn Future<Output = ()> + Send>>>,
    /// What `close` is polled with: records that it was woken.
    close_wake: Arc<CloseWake>,
    close_waker: std::task::Waker,
    /// The task's waker as `close_wake` last got it.
    task_waker: Option<std::task::Waker>,
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
                () = activity.http2_idle_for(idle_timeout) => {
                    tracing::debug!("closing an HTTP/2 connection idle for idle_timeout");
                }
                () = activity.evicted() => {
                    tracing::debug!("closing the connection idle the longest, to make room");
                }
            }
        });
        let close_wake = Arc::new(CloseWake::default());
        Self {
            connection: Box::pin(connection),
            close: Some(close),
            close_waker: std::task::Waker::from(close_wake.clone()),
            close_wake,
            task_waker: None,
            _stopping: stopping,
        }
    }

    /// Polls `close` if it was woken since it was last polled, and closes the
    /// connection gracefully once it resolves.
    fn poll_close(&mut self, cx: &std::task::Context<'_>) {
        if !self
            .task_waker
            .as_ref()
            .is_some_and(|known| known.will_wake(cx.waker()))
        {
            let waker = cx.waker().clone();
            *self.close_wake.task() = Some(waker.clone());
            self.task_waker = Some(waker);
        }
        // After the task's waker is in place: a wake from now on is seen
        // here or wakes the task again.
        if !self.close_wake.woken.swap(false, Ordering::AcqRel) {
            return;
        }
        let Some(close) = self.close.as_mut() else {
            return;
        };
        if close
            .as_mut()
            .poll(&mut std::task::Context::from_waker(&self.close_waker))
            .is_ready()
        {
            self.close = None;
            self.connection.as_mut().graceful_shutdown();
        }
    }
}

impl<C: GracefulConnection> Future for Drive<C> {
    type Output = Result<(), C::Error>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        if self.close.is_some() {
            self.poll_close(cx);
        }
        self.connection.as_mut().poll(cx)
    }
}

/// The waker a connection's reasons to close are polled with: it notes that
/// one of them may be ready, and wakes the connection's task.
struct CloseWake {
    /// Set by a wake, cleared when `close` is polled (set at first, so the
    /// first poll registers its timers and channels).
    woken: AtomicBool,
    task: Mutex<Option<std::task::Waker>>,
}

impl Default for CloseWake {
    fn default() -> Self {
        Self {
            woken: AtomicBool::new(true),
            task: Mutex::new(None),
        }
    }
}

impl CloseWake {
    fn task(&self) -> std::sync::MutexGuard<'_, Option<std::task::Waker>> {
        self.task.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl std::task::Wake for CloseWake {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        if let Some(task) = self.task().as_ref() {
            task.wake_by_ref();
        }
    }
}

/// A client connection's place under `[server] max_connections` (and
/// `max_connections_per_ip`), counted in the `gateway_connections` gauge
/// while it is open, and its entry among the connections that can be closed
/// to make room.
struct Open {
    _place: crate::limit::Place,
    client_place: Option<Arc<crate::limit::ClientPlace>>,
    _registered: activity::Registered,
}

impl Open {
    fn new(
        place: crate::limit::Place,
        client_place: Option<Arc<crate::limit::ClientPlace>>,
        activity: Arc<Activity>,
    ) -> Self {
        crate::metrics::metrics().connections.inc();
        Open {
            _place: place,
            client_place,
            _registered: activity::register(activity),
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
    let (limit, log) = match refusal {
        Refusal::Total => ("max_connections", &TOTAL),
        Refusal::PerIp => ("max_connections_per_ip", &PER_IP),
    };
    crate::metrics::metrics()
        .connections_refused
        .get_or_create(&[("limit", limit)])
        .inc();
    // Counting the open connections takes a lock: only for a log line.
    let Some(suppressed) = log.ready() else {
        return;
    };
    match refusal {
        Refusal::Total => {
            let open = crate::limit::CONNECTIONS.open();
            tracing::warn!(%peer, open, suppressed, "max_connections reached: new connections are closed on arrival (logged at most every 10 s; `suppressed` since the last line; gateway_connections_refused_total counts them)");
        }
        Refusal::PerIp => {
            let open = crate::limit::CLIENT_CONNECTIONS.open(peer.ip());
            tracing::warn!(%peer, open, suppressed, "max_connections_per_ip reached: this client's new connections are closed on arrival (logged at most every 10 s for all clients; `suppressed` since the last line; gateway_connections_refused_total counts them)");
        }
    }
}
