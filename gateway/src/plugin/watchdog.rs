//! CPU deadlines for plugin calls, enforced through wasmtime's epoch.
//!
//! A call's time counts only while its future is being polled: guest code and
//! the host functions it calls synchronously. While the call waits on the
//! network (`http-client`, Redis) its future is not polled and its clock
//! stops, so a slow server never gets an instance killed while a loop still
//! is.
//!
//! Each thread that runs guest code has a [`Slot`] saying when the stretch of
//! guest time it is running now would exceed its call's budget. One watchdog
//! thread per process reads the slots: it wakes every scan period while calls
//! happen (a tenth of the shortest configured deadline, between 1 and 10 ms),
//! sleeps until a running call's expiry when it sees one, and advances the
//! engines' epoch only when a call is past its expiry. Every store's epoch
//! deadline is the next epoch, so each guest running at that moment asks
//! [`overdue`] whether it is the one over time: only that one traps, the
//! others carry on. After a second without calls the watchdog parks, and the
//! next call wakes it.
//!
//! This replaces a ticker that advanced the epoch every millisecond while any
//! call ran: it woke the process a thousand times a second under any traffic
//! and could stop a call only at tick granularity.

use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};
use wasmtime::{Engine, EngineWeak};

/// Bounds of the scan period (a tenth of the shortest deadline in between).
const SHORTEST_SCAN: Duration = Duration::from_millis(1);
const LONGEST_SCAN: Duration = Duration::from_millis(10);
/// Between two advances of the epoch while an overdue call has not trapped
/// yet (it is in a host function, or the guest's next check is coming).
const INTERRUPT_AGAIN: Duration = Duration::from_millis(1);
/// Quiet time before the watchdog parks.
const PARK_AFTER: Duration = Duration::from_secs(1);

/// What one thread is running.
#[derive(Debug, Default)]
struct Slot {
    /// When the guest time being spent now would exceed its call's budget, in
    /// nanoseconds since [`BASE`]; 0 while no guest runs on the thread.
    expires_at: AtomicU64,
    /// Stretches of guest time begun on this thread (written by it alone).
    begun: AtomicU64,
}

struct Watchdog {
    /// Every thread's slot; dead threads' slots are dropped as found.
    slots: Mutex<Vec<Weak<Slot>>>,
    engines: Mutex<Vec<EngineWeak>>,
    /// The shortest deadline of any entry loaded, in nanoseconds.
    shortest_deadline: AtomicU64,
    parked: AtomicBool,
    thread: OnceLock<std::thread::Thread>,
}

static BASE: LazyLock<Instant> = LazyLock::new(Instant::now);

static WATCHDOG: LazyLock<Watchdog> = LazyLock::new(|| Watchdog {
    slots: Mutex::new(Vec::new()),
    engines: Mutex::new(Vec::new()),
    shortest_deadline: AtomicU64::new(u64::MAX),
    parked: AtomicBool::new(false),
    thread: OnceLock::new(),
});

thread_local! {
    static SLOT: Arc<Slot> = {
        let slot = Arc::new(Slot::default());
        lock(&WATCHDOG.slots).push(Arc::downgrade(&slot));
        slot
    };
}

fn now() -> u64 {
    u64::try_from(BASE.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The watchdog's lists stay consistent even if a holder panicked.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Puts `engine`'s stores under the watchdog, starting its thread the first
/// time.
pub fn watch(engine: &Engine) -> std::io::Result<()> {
    {
        let mut engines = lock(&WATCHDOG.engines);
        engines.retain(|weak| weak.upgrade().is_some());
        engines.push(engine.weak());
    }
    static STARTING: Mutex<()> = Mutex::new(());
    let _one_at_a_time = lock(&STARTING);
    if WATCHDOG.thread.get().is_none() {
        let handle = std::thread::Builder::new()
            .name("wasm-watchdog".into())
            .spawn(|| WATCHDOG.run())?;
        let _ = WATCHDOG.thread.set(handle.thread().clone());
    }
    Ok(())
}

/// Notes that some entry's calls may run for `deadline`, so the watchdog
/// looks often enough to stop them on time.
pub fn expect_deadline(deadline: Duration) {
    WATCHDOG
        .shortest_deadline
        .fetch_min(nanos(deadline), Ordering::Relaxed);
}

/// Whether the guest running on this thread is past its budget: the epoch
/// callback's question.
pub fn overdue() -> bool {
    SLOT.with(|slot| {
        let expires_at = slot.expires_at.load(Ordering::Relaxed);
        expires_at != 0 && now() >= expires_at
    })
}

/// Runs `call` with `budget` of CPU time: only the time spent polling it
/// counts. Past the budget the guest traps with `Trap::Interrupt`.
pub async fn timed<F: Future>(budget: Duration, call: F) -> F::Output {
    let mut call = pin!(call);
    let mut left = nanos(budget);
    std::future::poll_fn(move |cx| {
        let started = now();
        let stretch = Stretch::begin(started.saturating_add(left).max(1));
        let result = call.as_mut().poll(cx);
        drop(stretch);
        left = left.saturating_sub(now().saturating_sub(started));
        result
    })
    .await
}

/// One stretch of guest time on this thread; ends when dropped, even if the
/// poll panicked.
struct Stretch {
    previous: u64,
}

impl Stretch {
    fn begin(expires_at: u64) -> Self {
        let previous = SLOT.with(|slot| {
            let previous = slot.expires_at.swap(expires_at, Ordering::SeqCst);
            let begun = slot.begun.load(Ordering::Relaxed);
            slot.begun.store(begun.wrapping_add(1), Ordering::Relaxed);
            previous
        });
        // Pairs with the watchdog's store of `parked` and its scan after it:
        // either it sees this stretch running, or this sees it parked and
        // wakes it. (A stretch that ended before the scan needs no watching,
        // so `begun` only keeps the watchdog awake while calls come.)
        if WATCHDOG.parked.load(Ordering::SeqCst)
            && WATCHDOG.parked.swap(false, Ordering::SeqCst)
            && let Some(thread) = WATCHDOG.thread.get()
        {
            thread.unpark();
        }
        Stretch { previous }
    }
}

impl Drop for Stretch {
    fn drop(&mut self) {
        SLOT.with(|slot| slot.expires_at.store(self.previous, Ordering::Release));
    }
}

/// What a scan of the slots found.
#[derive(PartialEq, Eq)]
struct Seen {
    /// The earliest expiry of a running stretch.
    earliest: Option<u64>,
    /// Stretches begun so far, over all live threads.
    begun: u64,
}

impl Watchdog {
    fn run(&self) {
        let mut last = self.scan();
        let mut quiet_since = Instant::now();
        loop {
            let seen = self.scan();
            let now = now();
            if seen.earliest.is_some_and(|expiry| expiry <= now) {
                self.interrupt();
                std::thread::sleep(INTERRUPT_AGAIN);
                continue;
            }
            if seen.earliest.is_some() || seen.begun != last.begun {
                quiet_since = Instant::now();
            }
            last = seen;
            if quiet_since.elapsed() >= PARK_AFTER {
                self.park(&last);
                quiet_since = Instant::now();
                continue;
            }
            let scan = self.scan_period();
            let sleep = last
                .earliest
                .map_or(scan, |expiry| Duration::from_nanos(expiry - now).min(scan));
            std::thread::sleep(sleep);
        }
    }

    fn scan(&self) -> Seen {
        let mut earliest: Option<u64> = None;
        let mut begun = 0u64;
        lock(&self.slots).retain(|weak| {
            let Some(slot) = weak.upgrade() else {
                return false;
            };
            let expires_at = slot.expires_at.load(Ordering::SeqCst);
            if expires_at != 0 {
                earliest = Some(earliest.map_or(expires_at, |e| e.min(expires_at)));
            }
            begun = begun.wrapping_add(slot.begun.load(Ordering::SeqCst));
            true
        });
        Seen { earliest, begun }
    }

    fn scan_period(&self) -> Duration {
        let shortest = self.shortest_deadline.load(Ordering::Relaxed);
        Duration::from_nanos(shortest / 10).clamp(SHORTEST_SCAN, LONGEST_SCAN)
    }

    /// Advances every live engine's epoch: each running guest checks
    /// [`overdue`] at its next loop edge or function entry.
    fn interrupt(&self) {
        let mut engines = lock(&self.engines);
        engines.retain(|weak| match weak.upgrade() {
            Some(engine) => {
                engine.increment_epoch();
                true
            }
            None => false,
        });
    }

    /// Sleeps until a stretch begins. `parked` is set before the last scan,
    /// so a stretch begun meanwhile is either seen here or wakes the thread.
    fn park(&self, last: &Seen) {
        self.parked.store(true, Ordering::SeqCst);
        if self.scan() == *last {
            std::thread::park();
        }
        self.parked.store(false, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::Poll;

    /// Burns CPU on this thread for `duration`.
    fn spin(duration: Duration) {
        let until = Instant::now() + duration;
        while Instant::now() < until {
            std::hint::spin_loop();
        }
    }

    #[test]
    fn nothing_is_overdue_outside_a_call() {
        assert!(!overdue());
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_stretch_past_the_budget_is_overdue() {
        let seen = timed(Duration::from_millis(50), async {
            let before = overdue();
            spin(Duration::from_millis(150));
            (before, overdue())
        })
        .await;
        assert_eq!(seen, (false, true));
        assert!(!overdue(), "the stretch ended with the call");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn time_spent_waiting_does_not_count() {
        // 20 ms of work in two polls around a 1.2 s wait, under a 1 s budget:
        // only the polls count.
        let mut polls = 0;
        let seen = timed(Duration::from_secs(1), async {
            spin(Duration::from_millis(10));
            let mut waited = false;
            std::future::poll_fn(|cx| {
                polls += 1;
                if waited {
                    Poll::Ready(())
                } else {
                    waited = true;
                    let waker = cx.waker().clone();
                    std::thread::spawn(move || {
                        std::thread::sleep(Duration::from_millis(1200));
                        waker.wake();
                    });
                    Poll::Pending
                }
            })
            .await;
            spin(Duration::from_millis(10));
            overdue()
        })
        .await;
        assert_eq!(polls, 2);
        assert!(!seen, "waiting was counted against the budget");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn the_budget_is_spread_over_the_polls() {
        // Two polls of 120 ms under a 200 ms budget: the second one ends over.
        let seen = timed(Duration::from_millis(200), async {
            spin(Duration::from_millis(120));
            let first = overdue();
            tokio::task::yield_now().await;
            spin(Duration::from_millis(120));
            (first, overdue())
        })
        .await;
        assert_eq!(seen, (false, true));
    }
}
