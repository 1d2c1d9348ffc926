//! What the listener knows of each open client connection: whether it speaks
//! HTTP/2, how many requests it has in progress and since when it has had
//! none. That decides two closings: an HTTP/2 connection idle for
//! `idle_timeout`, and, when the listener nears `max_connections`, the
//! keep-alive connection idle the longest (the way Envoy's overload manager
//! makes room), so idle clients never lock new ones out.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;

/// One client connection's requests in progress.
pub(super) struct Activity {
    /// Set once the whole HTTP/2 preface arrived.
    pub(super) http2: AtomicBool,
    requests: Mutex<Requests>,
    /// Told when the connection is to close to make room for new ones.
    evicted: Notify,
    /// Set when it was told: it counts in [`closing`] until it has gone.
    closing: AtomicBool,
}

struct Requests {
    /// Requests (HTTP/2 streams) whose response has not ended.
    open: usize,
    /// When `open` last fell to 0 (or the connection opened).
    quiet_since: Instant,
    /// Whether a request has completed: a connection that never served one
    /// is new (its first request head is bounded by header_read_timeout),
    /// not a kept-alive one.
    served: bool,
}

impl Activity {
    pub(super) fn new() -> Self {
        Self {
            http2: AtomicBool::new(false),
            requests: Mutex::new(Requests {
                open: 0,
                quiet_since: Instant::now(),
                served: false,
            }),
            evicted: Notify::new(),
            closing: AtomicBool::new(false),
        }
    }

    fn requests(&self) -> std::sync::MutexGuard<'_, Requests> {
        self.requests.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Since when the connection has been idle: `None` while it is not
    /// known to speak HTTP/2 or has a stream open.
    fn http2_quiet_since(&self) -> Option<Instant> {
        if !self.http2.load(Ordering::Relaxed) {
            return None;
        }
        let requests = self.requests();
        (requests.open == 0).then_some(requests.quiet_since)
    }

    /// Since when a kept-alive connection has waited for its next request:
    /// `None` while a request is in progress or before the first one ended.
    fn kept_alive_since(&self) -> Option<Instant> {
        let requests = self.requests();
        (requests.open == 0 && requests.served).then_some(requests.quiet_since)
    }

    /// Whether no request has reached the handler on this connection yet:
    /// nothing written so far can be part of a response of the gateway's.
    pub(super) fn before_first_request(&self) -> bool {
        let requests = self.requests();
        requests.open == 0 && !requests.served
    }

    /// Resolves once the connection is HTTP/2 and has had no stream open for
    /// `timeout`; checks again at least every `timeout` meanwhile.
    pub(super) async fn http2_idle_for(&self, timeout: Duration) {
        loop {
            let wake = match self.http2_quiet_since() {
                Some(since) if since.elapsed() >= timeout => return,
                Some(since) => since + timeout,
                None => Instant::now() + timeout,
            };
            tokio::time::sleep_until(wake).await;
        }
    }

    /// Resolves when the connection is chosen to close to make room.
    pub(super) async fn evicted(&self) {
        self.evicted.notified().await;
    }
}

/// A request (an HTTP/2 stream) counted open until its response ends or is
/// dropped.
pub(super) struct InProgress(Arc<Activity>);

impl InProgress {
    pub(super) fn open(activity: Arc<Activity>) -> Self {
        activity.requests().open += 1;
        InProgress(activity)
    }
}

impl Drop for InProgress {
    fn drop(&mut self) {
        let mut requests = self.0.requests();
        requests.open -= 1;
        requests.served = true;
        if requests.open == 0 {
            requests.quiet_since = Instant::now();
        }
    }
}

/// Every open client connection of the process, to find the one idle the
/// longest.
struct Registry {
    next: AtomicU64,
    open: Mutex<HashMap<u64, Arc<Activity>>>,
    /// Connections told to close that have not gone yet.
    closing: AtomicUsize,
}

static REGISTRY: LazyLock<Registry> = LazyLock::new(|| Registry {
    next: AtomicU64::new(0),
    open: Mutex::new(HashMap::new()),
    closing: AtomicUsize::new(0),
});

/// How many registered connections one choice looks at: the longest idle
/// among them, as Redis approximates LRU, so a choice costs the same with
/// ten thousand connections open as with a hundred.
const SAMPLE: usize = 64;

impl Registry {
    fn open(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Activity>>> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A connection's entry in the registry, removed when dropped.
pub(super) struct Registered(u64, Arc<Activity>);

/// Lists `activity`'s connection among those that can be closed to make room.
pub(super) fn register(activity: Arc<Activity>) -> Registered {
    let id = REGISTRY.next.fetch_add(1, Ordering::Relaxed);
    REGISTRY.open().insert(id, activity.clone());
    Registered(id, activity)
}

impl Drop for Registered {
    fn drop(&mut self) {
        if self.1.closing.load(Ordering::Relaxed) {
            REGISTRY.closing.fetch_sub(1, Ordering::Relaxed);
        } else {
            REGISTRY.open().remove(&self.0);
        }
    }
}

/// Connections told to close to make room that have not gone yet: their
/// places are already promised to the newcomers that closed them.
pub(super) fn closing() -> usize {
    REGISTRY.closing.load(Ordering::Relaxed)
}

/// Tells the kept-alive connection idle the longest (of a sample of
/// [`SAMPLE`], from a point that moves with each call) to close, and takes
/// it off the registry (it is not chosen twice). False when every connection
/// looked at has a request in progress or has not finished its first.
pub(super) fn close_longest_idle() -> bool {
    let mut open = REGISTRY.open();
    if open.is_empty() {
        return false;
    }
    let start = REGISTRY.next.load(Ordering::Relaxed) as usize % open.len();
    let longest = open
        .iter()
        .cycle()
        .skip(start)
        .take(SAMPLE.min(open.len()))
        .filter_map(|(id, activity)| Some((activity.kept_alive_since()?, *id)))
        .min();
    let Some((_, id)) = longest else {
        return false;
    };
    let Some(activity) = open.remove(&id) else {
        return false;
    };
    activity.closing.store(true, Ordering::Relaxed);
    REGISTRY.closing.fetch_add(1, Ordering::Relaxed);
    // Stored if the connection is not waiting yet: it sees it next.
    activity.evicted.notify_one();
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_connection_idle_longest_is_closed_first() {
        let served = || {
            let activity = Arc::new(Activity::new());
            drop(InProgress::open(activity.clone()));
            activity
        };
        let older = served();
        tokio::time::sleep(Duration::from_millis(5)).await;
        let newer = served();
        let busy = Arc::new(Activity::new());
        let _request = InProgress::open(busy.clone());
        let fresh = Arc::new(Activity::new());
        let _entries = [
            register(newer.clone()),
            register(busy.clone()),
            register(fresh.clone()),
            register(older.clone()),
        ];
        assert!(close_longest_idle());
        tokio::time::timeout(Duration::from_secs(5), older.evicted())
            .await
            .expect("the oldest idle connection is told first");
        assert!(close_longest_idle());
        tokio::time::timeout(Duration::from_secs(5), newer.evicted())
            .await
            .expect("then the next");
        assert!(
            !close_longest_idle(),
            "a busy connection and one that never served a request are kept"
        );
    }
}
