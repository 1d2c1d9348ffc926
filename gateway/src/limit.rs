//! Ceilings on things open at once in the whole process (client
//! connections, WebSocket tunnels): a place is taken before the thing opens
//! and given back when its [`Place`] is dropped. And [`LogEvery`], the
//! ceiling on how often one warning is written.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// A count of things open now, with a ceiling given at each [`Ceiling::take`]
/// (so a reload can change it).
pub struct Ceiling {
    open: AtomicUsize,
}

impl Ceiling {
    /// Nothing open.
    pub const fn new() -> Self {
        Self {
            open: AtomicUsize::new(0),
        }
    }

    /// A place, unless `max` are taken already.
    pub fn take(&'static self, max: usize) -> Option<Place> {
        self.open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |open| {
                (open < max).then_some(open + 1)
            })
            .ok()
            .map(|_| Place(self))
    }

    /// How many are open now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }
}

impl Default for Ceiling {
    fn default() -> Self {
        Self::new()
    }
}

/// One place under a [`Ceiling`], given back on drop.
pub struct Place(&'static Ceiling);

impl Drop for Place {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Lets one log line through per period and counts the ones it held back,
/// for warnings that a failing dependency or a flood would repeat per request.
pub struct LogEvery {
    period: Duration,
    /// When the last line was let through, and the lines held back since.
    state: Mutex<(Option<Instant>, u64)>,
}

impl LogEvery {
    /// At most one line per `period`.
    pub const fn new(period: Duration) -> Self {
        Self {
            period,
            state: Mutex::new((None, 0)),
        }
    }

    /// `Some(lines held back since the last one)` when a line may be written
    /// now; `None` (and one more held back) otherwise.
    pub fn ready(&self) -> Option<u64> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let (last, held) = &mut *state;
        if last.is_some_and(|at| at.elapsed() < self.period) {
            *held += 1;
            return None;
        }
        *last = Some(Instant::now());
        Some(std::mem::take(held))
    }
}

/// Client connections open now, process-wide.
pub static CONNECTIONS: Ceiling = Ceiling::new();

/// Upgraded (WebSocket) connections open now, and handshakes on their way to
/// becoming one, process-wide.
pub static TUNNELS: Ceiling = Ceiling::new();

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_are_given_back_and_the_ceiling_holds() {
        static CEILING: Ceiling = Ceiling::new();
        let first = CEILING.take(2);
        let second = CEILING.take(2);
        assert!(first.is_some() && second.is_some());
        assert!(CEILING.take(2).is_none());
        assert_eq!(CEILING.open(), 2);
        drop(first);
        assert!(CEILING.take(2).is_some());
        assert_eq!(CEILING.open(), 1);
        // A lower ceiling after a reload: nothing new until under it.
        assert!(CEILING.take(1).is_none());
    }

    #[test]
    fn one_line_per_period_and_a_count_of_the_rest() {
        let every = LogEvery::new(Duration::from_millis(50));
        assert_eq!(every.ready(), Some(0));
        assert_eq!(every.ready(), None);
        assert_eq!(every.ready(), None);
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(every.ready(), Some(2));
        assert_eq!(every.ready(), None);
    }
}
