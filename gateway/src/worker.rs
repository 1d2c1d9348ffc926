//! Worker threads, one per core, each with its own single-threaded tokio
//! runtime, its own listening socket (`SO_REUSEPORT`, so the kernel spreads
//! connections) and its own upstream connection pools.
//!
//! This is the shape of nginx's and Envoy's workers: a request is accepted,
//! run through its plugins, proxied and answered on one thread, with no
//! cross-thread wake-ups on the hot path. Shared state (the runtime snapshot,
//! plugin instance pools) is lock-free.

use std::cell::Cell;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

static WORKERS: AtomicUsize = AtomicUsize::new(1);

thread_local! {
    static INDEX: Cell<usize> = const { Cell::new(0) };
    static IS_WORKER: Cell<bool> = const { Cell::new(false) };
}

/// Sets how many workers serve; upstreams built afterwards get one pool each.
pub fn set_count(count: usize) {
    WORKERS.store(count.max(1), Ordering::Relaxed);
}

/// How many workers serve.
pub fn count() -> usize {
    WORKERS.load(Ordering::Relaxed)
}

/// Marks the current thread as worker `index`.
pub fn enter(index: usize) {
    INDEX.with(|i| i.set(index));
    IS_WORKER.with(|w| w.set(true));
}

/// The current worker's index (0 on threads that are not workers).
pub fn index() -> usize {
    INDEX.with(Cell::get)
}

/// The current worker's index, or `None` on threads that are not workers.
pub fn current() -> Option<usize> {
    IS_WORKER.with(Cell::get).then(index)
}

/// One `T` per worker, so that a worker touches only its own (no lock
/// contention, no cache lines bouncing between cores). Threads that are not
/// workers use the first.
pub struct PerWorker<T>(Box<[Mutex<T>]>);

impl<T: Default> PerWorker<T> {
    /// A default `T` for each worker.
    pub fn new() -> Self {
        Self((0..count()).map(|_| Mutex::default()).collect())
    }
}

impl<T: Default> Default for PerWorker<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> PerWorker<T> {
    /// The current worker's `T`.
    pub fn mine(&self) -> MutexGuard<'_, T> {
        self.slot(0)
    }

    /// The `T` of the worker `offset` places after the current one (0 is its
    /// own), wrapping around: to look at every worker's, starting with one's own.
    pub fn slot(&self, offset: usize) -> MutexGuard<'_, T> {
        self.0[(index() + offset) % self.0.len()]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// How many there are.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none (never: there is at least one worker).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The default worker count: one per available core.
pub fn default_count() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
}

/// Binds `count` listening sockets to `addr` with `SO_REUSEPORT`. When `addr`
/// has port 0, the first socket picks the port and the others share it.
pub fn bind(addr: SocketAddr, count: usize) -> std::io::Result<Vec<std::net::TcpListener>> {
    use socket2::{Domain, Protocol, Socket, Type};
    let mut listeners = Vec::with_capacity(count);
    let mut addr = addr;
    for _ in 0..count.max(1) {
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        socket.set_reuse_address(true)?;
        #[cfg(unix)]
        socket.set_reuse_port(true)?;
        socket.set_nonblocking(true)?;
        socket.set_tcp_nodelay(true)?;
        socket.bind(&addr.into())?;
        socket.listen(1024)?;
        let listener: std::net::TcpListener = socket.into();
        addr = listener.local_addr()?;
        listeners.push(listener);
    }
    Ok(listeners)
}
