//! HTTP/2 connections to an upstream's targets, opened as the streams need
//! them.
//!
//! hyper-util's pool keeps one HTTP/2 connection per target, and requests
//! beyond the target's limit of concurrent streams wait on it: a few
//! long-lived gRPC streams can starve every other call. Here each worker keeps
//! a list of connections per target; a connection carries at most
//! `max_streams` requests at once (a stream counts until its response body is
//! dropped), and when every connection is full another one is opened, as
//! Envoy and Go's HTTP/2 client do. One connection is opened at a time per
//! worker and target: requests arriving meanwhile wait for it (a burst does
//! not open a connection each, and a dead target costs them one connect
//! timeout, not one each). Past [`MAX_CONNECTIONS`], requests share the least
//! busy connection. Closed connections (GOAWAY, a failed ping) are dropped,
//! and extra ones idle for the upstream's `idle_timeout` are closed by
//! [`H2Pool::sweep`].

use super::connect::TimedConnector;
use crate::body::{self, Body, BoxError};
use http::{Request, Response, Uri};
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// Connections per worker and target at most: past it, requests share the
/// least busy connection (and wait there for a stream if it is full).
const MAX_CONNECTIONS: usize = 64;

/// How one request failed.
pub enum SendError {
    /// No connection could be opened: nothing reached the target. `shared`:
    /// another request's attempt failed while this one waited for it (so the
    /// target's failure is counted once, by that request).
    Connect { error: BoxError, shared: bool },
    /// The request went out (or may have) and failed.
    Send(hyper::Error),
    /// The request did not go out: connections closed under it twice.
    Unsent(hyper::Error),
}

/// The HTTP/2 connections of one upstream.
pub struct H2Pool {
    connector: TimedConnector,
    keepalive: Duration,
    max_streams: usize,
    idle_timeout: Duration,
    /// The origin of the connections' last-use times.
    epoch: Instant,
    /// Per worker, per target.
    slots: Box<[Box<[Slot]>]>,
}

/// The connections of one worker to one target.
#[derive(Default)]
struct Slot {
    conns: Mutex<Vec<Conn>>,
    /// Held while a connection is being opened; holds the last failure to
    /// open one (when, and why).
    connecting: tokio::sync::Mutex<Option<(Instant, String)>>,
}

struct Conn {
    sender: SendRequest<Body>,
    use_: Arc<Use>,
    opened: Instant,
}

/// How a connection is used: streams open on it now, and when one last
/// started or ended (milliseconds after the pool's epoch).
#[derive(Default)]
struct Use {
    streams: AtomicUsize,
    last: AtomicU64,
}

impl Use {
    fn idle_for(&self, now_ms: u64) -> Option<u64> {
        (self.streams.load(Ordering::Relaxed) == 0)
            .then(|| now_ms.saturating_sub(self.last.load(Ordering::Relaxed)))
    }
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
            .map(|_| (0..targets).map(|_| Slot::default()).collect())
            .collect();
        Self {
            connector,
            keepalive,
            max_streams: max_streams.max(1),
            idle_timeout,
            epoch: Instant::now(),
            slots,
        }
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn slot(&self, target: usize) -> &Slot {
        &self.slots[crate::worker::index() % self.slots.len()][target]
    }

    /// Closes connections that are closing anyway and extra ones idle for
    /// `idle_timeout`, on every worker (run now and then, off the request path).
    pub fn sweep(&self) {
        let now = self.now_ms();
        for slot in self.slots.iter().flat_map(|worker| worker.iter()) {
            prune(&mut lock(&slot.conns), now, self.idle_timeout);
        }
    }

    /// How often [`H2Pool::sweep`] should run.
    pub fn sweep_every(&self) -> Duration {
        (self.idle_timeout / 2).max(Duration::from_secs(1))
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
        let mut fresh = false;
        loop {
            let found = if fresh { None } else { self.take(target, None) };
            let (mut sender, stream) = match found {
                Some(found) => found,
                None => self.open(target, origin, fresh).await?,
            };
            match sender.try_send_request(request).await {
                Ok(response) => return Ok(response.map(|body| body::guarded(body, stream))),
                Err(mut failed) => match failed.take_message() {
                    Some(unsent) if !fresh => {
                        request = unsent;
                        fresh = true;
                    }
                    Some(_) => return Err(SendError::Unsent(failed.into_error())),
                    None => return Err(SendError::Send(failed.into_error())),
                },
            }
        }
    }

    /// A stream on an open connection to `target` (opened after
    /// `opened_after`, if given) with one to spare; with [`MAX_CONNECTIONS`]
    /// open and all full, on the least busy.
    fn take(
        &self,
        target: usize,
        opened_after: Option<Instant>,
    ) -> Option<(SendRequest<Body>, Stream)> {
        let mut conns = lock(&self.slot(target).conns);
        prune(&mut conns, self.now_ms(), self.idle_timeout);
        let at_cap = conns.len() >= MAX_CONNECTIONS;
        let recent = |conn: &&Conn| opened_after.is_none_or(|after| conn.opened >= after);
        let busy = |conn: &&Conn| conn.use_.streams.load(Ordering::Relaxed);
        let conn = match conns
            .iter()
            .filter(recent)
            .find(|c| busy(c) < self.max_streams)
        {
            Some(conn) => conn,
            None if at_cap => conns.iter().filter(recent).min_by_key(busy)?,
            None => return None,
        };
        Some((conn.sender.clone(), self.stream_on(&conn.use_)))
    }

    fn stream_on(&self, use_: &Arc<Use>) -> Stream {
        use_.streams.fetch_add(1, Ordering::Relaxed);
        use_.last.store(self.now_ms(), Ordering::Relaxed);
        Stream {
            use_: use_.clone(),
            epoch: self.epoch,
        }
    }

    /// A stream on a connection opened for it, one opening at a time per
    /// worker and target: a request that waited while another opened one
    /// takes a stream on it (one opened since it began waiting, if it wants
    /// a `fresh` one), or fails at once with the error that opening met.
    async fn open(
        &self,
        target: usize,
        origin: &Uri,
        fresh: bool,
    ) -> Result<(SendRequest<Body>, Stream), SendError> {
        let waiting_since = Instant::now();
        let mut gate = self.slot(target).connecting.lock().await;
        if let Some(found) = self.take(target, fresh.then_some(waiting_since)) {
            return Ok(found);
        }
        if let Some((at, why)) = gate.as_ref()
            && *at >= waiting_since
        {
            return Err(SendError::Connect {
                error: why.clone().into(),
                shared: true,
            });
        }
        match self.connect(target, origin).await {
            Ok(opened) => {
                *gate = None;
                Ok(opened)
            }
            Err(error) => {
                *gate = Some((Instant::now(), error.to_string()));
                Err(SendError::Connect {
                    error,
                    shared: false,
                })
            }
        }
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
                tracing::debug!(
                    target = authority.as_deref().unwrap_or("-"),
                    %err,
                    "HTTP/2 upstream connection ended"
                );
            }
        });
        let use_ = Arc::new(Use::default());
        let stream = self.stream_on(&use_);
        lock(&self.slot(target).conns).push(Conn {
            sender: sender.clone(),
            use_,
            opened: Instant::now(),
        });
        Ok((sender, stream))
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Drops closed connections, and idle ones beyond the first that have had
/// no stream for `idle_timeout` (dropping a connection's last handle closes
/// it). `now` is in milliseconds after the pool's epoch.
fn prune(conns: &mut Vec<Conn>, now: u64, idle_timeout: Duration) {
    let idle_timeout = idle_timeout.as_millis() as u64;
    let mut kept = 0;
    conns.retain(|conn| {
        let keep = !conn.sender.is_closed()
            && (kept == 0
                || conn
                    .use_
                    .idle_for(now)
                    .is_none_or(|idle| idle < idle_timeout));
        kept += usize::from(keep);
        keep
    });
}

/// One stream in use on a connection, until dropped.
struct Stream {
    use_: Arc<Use>,
    epoch: Instant,
}

impl Drop for Stream {
    fn drop(&mut self) {
        // The connection's idle time starts when its last stream ends.
        self.use_
            .last
            .store(self.epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
        self.use_.streams.fetch_sub(1, Ordering::Relaxed);
    }
}
