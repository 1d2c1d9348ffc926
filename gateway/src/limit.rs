//! Ceilings on things open at once in the whole process (client
//! connections, WebSocket tunnels): a place is taken before the thing opens
//! and given back when its [`Place`] is dropped. [`PerClient`] is the same
//! per client address. And [`LogEvery`], the ceiling on how often one
//! warning is written.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{LazyLock, Mutex, PoisonError};
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

/// Counts of things open now per client address, each with the same ceiling.
/// IPv6 clients are counted per /64, the block one subscriber usually gets,
/// so one client cannot take a fresh address per connection.
#[derive(Debug)]
pub struct PerClient {
    open: Mutex<HashMap<IpAddr, usize>>,
}

impl PerClient {
    /// Nothing open.
    pub fn new() -> Self {
        Self {
            open: Mutex::new(HashMap::new()),
        }
    }

    /// A place for `client`, unless `max` from its address are open already.
    pub fn take(&'static self, client: IpAddr, max: usize) -> Option<ClientPlace> {
        let key = client_key(client);
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        if open.get(&key).is_some_and(|count| *count >= max) || max == 0 {
            return None;
        }
        *open.entry(key).or_insert(0) += 1;
        Some(ClientPlace { ceiling: self, key })
    }

    /// How many are open now from `client`'s address (or /64).
    pub fn open(&self, client: IpAddr) -> usize {
        let open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        open.get(&client_key(client)).copied().unwrap_or(0)
    }

    /// Addresses with something open: the map never outgrows them.
    pub fn clients(&self) -> usize {
        self.open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

impl Default for PerClient {
    fn default() -> Self {
        Self::new()
    }
}

/// What a client is counted by: its IPv4 address (IPv4-mapped IPv6 ones
/// included), or the /64 its IPv6 address is in.
fn client_key(client: IpAddr) -> IpAddr {
    match client.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6(std::net::Ipv6Addr::from_bits(
            v6.to_bits() & !((1u128 << 64) - 1),
        )),
        v4 => v4,
    }
}

/// One place under a [`PerClient`] ceiling, given back on drop.
#[derive(Debug)]
pub struct ClientPlace {
    ceiling: &'static PerClient,
    key: IpAddr,
}

impl Drop for ClientPlace {
    fn drop(&mut self) {
        let mut open = self
            .ceiling
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = open.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.key);
            }
        }
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

/// Client connections open now, per client address.
pub static CLIENT_CONNECTIONS: LazyLock<PerClient> = LazyLock::new(PerClient::new);

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
    fn clients_are_counted_by_address_and_ipv6_by_its_64() {
        static PER_CLIENT: LazyLock<PerClient> = LazyLock::new(PerClient::new);
        let ip = |text: &str| text.parse::<IpAddr>().expect("address");
        let first = PER_CLIENT.take(ip("192.0.2.1"), 2);
        let mapped = PER_CLIENT.take(ip("::ffff:192.0.2.1"), 2);
        assert!(
            first.is_some() && mapped.is_some(),
            "one client, two places"
        );
        assert!(PER_CLIENT.take(ip("192.0.2.1"), 2).is_none());
        assert!(
            PER_CLIENT.take(ip("192.0.2.2"), 2).is_some(),
            "another client"
        );
        // Two addresses in one /64 are one client; the next /64 another.
        let v6 = PER_CLIENT.take(ip("2001:db8:1:2::1"), 1);
        assert!(v6.is_some());
        assert!(PER_CLIENT.take(ip("2001:db8:1:2:ffff::9"), 1).is_none());
        assert!(PER_CLIENT.take(ip("2001:db8:1:3::1"), 1).is_some());
        assert_eq!(PER_CLIENT.open(ip("192.0.2.1")), 2);
        drop(first);
        assert_eq!(PER_CLIENT.open(ip("192.0.2.1")), 1);
        // Places given back leave no entry behind.
        drop(mapped);
        drop(v6);
        assert_eq!(PER_CLIENT.open(ip("192.0.2.1")), 0);
        assert_eq!(PER_CLIENT.clients(), 0);
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
