//! Deadlines for plugin calls, enforced through wasmtime's epoch.
//!
//! A call's time counts while its future is being polled (guest code and the
//! host functions it calls) and while it is suspended, except when it is
//! suspended in one of the gateway's own network waits (`http-client`,
//! Redis), which have their own timeouts: a slow server never gets an
//! instance killed, while a loop, or a loop of WASI sleeps, still is.
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
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, OnceLock, Weak};
use std::task::Poll;
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
/// looks often enough to stop them on time. The shortest ever noted stays:
/// scanning too often after a reload dropped it costs little, too seldom
/// would let calls overrun.
pub fn expect_deadline(deadline: Duration) {
    WATCHDOG
        .shortest_deadline
        .fetch_min(nanos(deadline), Ordering::Relaxed);
}

/// Whether the guest running on this thread is past its budget: the epoch
/// callback's question. (During thread teardown, when the slot is gone, yes.)
pub fn overdue() -> bool {
    SLOT.try_with(|slot| {
        let expires_at = slot.expires_at.load(Ordering::Relaxed);
        expires_at != 0 && now() >= expires_at
    })
    .unwrap_or(true)
}

/// Host functions of one instance that are waiting on the network now; a
/// call suspended while one is does not spend its budget.
#[derive(Debug, Clone, Default)]
pub struct IoWaits(Arc<AtomicU64>);

impl IoWaits {
    /// Marks a wait on the network until the guard is dropped.
    fn enter(&self) -> IoWait {
        self.0.fetch_add(1, Ordering::Relaxed);
        IoWait(self.0.clone())
    }

    /// Awaits `wait`, a wait on the network, marked as one.
    pub async fn around<F: Future>(&self, wait: F) -> F::Output {
        let _waiting = self.enter();
        wait.await
    }

    fn waiting(&self) -> bool {
        self.0.load(Ordering::Relaxed) > 0
    }
}

/// See [`IoWaits::enter`].
#[derive(Debug)]
pub struct IoWait(Arc<AtomicU64>);

impl Drop for IoWait {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Runs `call` with `budget` of guest time. Time spent polling it counts,
/// and so does time it spends suspended, except while one of its host
/// functions waits on the network (`io`): those waits have their own
/// timeouts. Past the budget the guest traps with `Trap::Interrupt` at its
/// next check; a call suspended past it (a WASI sleep, say) is cut off with
/// the same error, and its instance must then be discarded.
pub async fn timed<T, F>(budget: Duration, io: &IoWaits, call: F) -> wasmtime::Result<T>
where
    F: Future<Output = wasmtime::Result<T>>,
{
    timed_wall(budget, io, call).await.0
}

/// [`timed`], also returning the call's wall time, from its first poll to
/// the end of its last: the clock reads the deadline needs anyway, so the
/// caller measuring the call's latency need not read the clock twice more.
pub async fn timed_wall<T, F>(
    budget: Duration,
    io: &IoWaits,
    call: F,
) -> (wasmtime::Result<T>, Duration)
where
    F: Future<Output = wasmtime::Result<T>>,
{
    let mut call = pin!(call);
    let mut first: Option<u64> = None;
    let mut last = 0;
    let mut left = nanos(budget);
    // Since when the call is suspended, and whether that time counts.
    let mut suspended: Option<(u64, bool)> = None;
    // Armed only while a suspension counts (rare: calls finish in one poll).
    let mut alarm: Option<Pin<Box<tokio::time::Sleep>>> = None;
    let result = std::future::poll_fn(|cx| {
        let started = now();
        first.get_or_insert(started);
        last = started;
        if let Some((since, true)) = suspended.take() {
            left = left.saturating_sub(started.saturating_sub(since));
            if left == 0 {
                return Poll::Ready(Err(wasmtime::Trap::Interrupt.into()));
            }
        }
        let stretch = Stretch::begin(started.saturating_add(left).max(1));
        let result = call.as_mut().poll(cx);
        drop(stretch);
        let ended = now();
        last = ended;
        left = left.saturating_sub(ended.saturating_sub(started));
        if result.is_pending() {
            let counts = !io.waiting();
            suspended = Some((ended, counts));
            if counts {
                let deadline = tokio::time::Instant::now() + Duration::from_nanos(left);
                let alarm =
                    alarm.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                alarm.as_mut().reset(deadline);
                if alarm.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Err(wasmtime::Trap::Interrupt.into()));
                }
            }
        }
        result
    })
    .await;
    let wall = last.saturating_sub(first.unwrap_or(last));
    (result, Duration::from_nanos(wall))
}

/// One stretch of guest time on this thread; ends when dropped, even if the
/// poll panicked.
struct Stretch {
    previous: u64,
}

impl Stretch {
    fn begin(expires_at: u64) -> Self {
        let previous = SLOT
            .try_with(|slot| {
                let previous = slot.expires_at.swap(expires_at, Ordering::SeqCst);
                let begun = slot.begun.load(Ordering::Relaxed);
                slot.begun.store(begun.wrapping_add(1), Ordering::Relaxed);
                previous
            })
            .unwrap_or(0);
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
        let _ = SLOT.try_with(|slot| slot.expires_at.store(self.previous, Ordering::Release));
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

    /// Burns CPU on this thread for `duration`.
    fn spin(duration: Duration) {
        let until = Instant::now() + duration;
        while Instant::now() < until {
            std::hint::spin_loop();
        }
    }

    /// Pending once, woken by another thread after `duration`: a wait that
    /// the timer cannot see.
    async fn suspend(duration: Duration) {
        let mut waited = false;
        std::future::poll_fn(|cx| {
            if waited {
                Poll::Ready(())
            } else {
                waited = true;
                let waker = cx.waker().clone();
                std::thread::spawn(move || {
                    std::thread::sleep(duration);
                    waker.wake();
                });
                Poll::Pending
            }
        })
        .await;
    }

    fn interrupted<T: std::fmt::Debug>(result: &wasmtime::Result<T>) -> bool {
        result
            .as_ref()
            .err()
            .and_then(|e| e.downcast_ref::<wasmtime::Trap>())
            == Some(&wasmtime::Trap::Interrupt)
    }

    #[test]
    fn nothing_is_overdue_outside_a_call() {
        assert!(!overdue());
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_stretch_past_the_budget_is_overdue() {
        let seen = timed(Duration::from_millis(50), &IoWaits::default(), async {
            let before = overdue();
            spin(Duration::from_millis(150));
            Ok((before, overdue()))
        })
        .await
        .expect("not cut off: it never suspended");
        assert_eq!(seen, (false, true));
        assert!(!overdue(), "the stretch ended with the call");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn time_spent_waiting_on_the_network_does_not_count() {
        // 20 ms of work around a 1.2 s network wait, under a 1 s budget.
        let io = IoWaits::default();
        let seen = timed(Duration::from_secs(1), &io, async {
            spin(Duration::from_millis(10));
            io.around(suspend(Duration::from_millis(1200))).await;
            spin(Duration::from_millis(10));
            Ok(overdue())
        })
        .await;
        assert_eq!(seen.ok(), Some(false), "the network wait was counted");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn other_waits_count_and_are_cut_off_at_the_budget() {
        // A wait the gateway does not own (a WASI sleep, say) spends the
        // budget: a 2 s wait under a 200 ms budget ends at the budget.
        let started = Instant::now();
        let result = timed(Duration::from_millis(200), &IoWaits::default(), async {
            suspend(Duration::from_secs(2)).await;
            Ok(())
        })
        .await;
        assert!(interrupted(&result), "{result:?}");
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(200), "{took:?}");
        assert!(took < Duration::from_secs(2), "not cut off: {took:?}");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn the_budget_is_spread_over_the_polls() {
        // Two polls of 120 ms under a 200 ms budget: the second one ends over.
        let seen = timed(Duration::from_millis(200), &IoWaits::default(), async {
            spin(Duration::from_millis(120));
            let first = overdue();
            tokio::task::yield_now().await;
            spin(Duration::from_millis(120));
            Ok((first, overdue()))
        })
        .await
        .expect("a yield is not a wait");
        assert_eq!(seen, (false, true));
    }
}
