//! Ceilings on things open at once in the whole process (client
//! connections, WebSocket tunnels): a place is taken before the thing opens
//! and given back when its [`Place`] is dropped.

use std::sync::atomic::{AtomicUsize, Ordering};

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
}
