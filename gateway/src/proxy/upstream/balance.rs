//! Target choice and balancing: the targets with what their health checks
//! learned, and the choice of one per attempt among those in rotation and
//! not tried yet: weighted round robin, least request (the less busy of two
//! drawn by weight), or consistent hashing of a request's key on a ring of
//! points (a target added or removed moves only the keys it takes or had).

use super::Upstream;
use super::settings::{Balance, HashOn, TargetSpec};
use http::HeaderMap;
use http::uri::{Authority, Scheme, Uri};
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};

/// One target and what passive and active health checking know of it.
pub(super) struct Target {
    /// Its share of the requests, relative to the others' (0: none).
    pub weight: u64,
    /// `http` or `https`.
    pub scheme: Scheme,
    pub authority: Authority,
    /// The authority as a `Host` header value.
    pub host: http::HeaderValue,
    /// `scheme://authority/`, where connections to it are opened.
    pub origin: Uri,
    /// Connections that failed in a row.
    pub failures: AtomicU32,
    /// Milliseconds after `Upstream::born` until which the target is skipped.
    pub out_until: AtomicU64,
    /// Failed its active health checks (and has not passed enough since).
    pub checks_failing: AtomicBool,
    /// Errors in a row, for outlier detection.
    pub errors: AtomicU32,
    /// Ejections by outlier detection in a row.
    pub ejections: AtomicU32,
    /// When its last ejection ended (as `out_until`).
    pub ejected_until: AtomicU64,
    /// Requests in flight to it (until their response body ends), for
    /// least-request balancing.
    pub active: Arc<AtomicUsize>,
}

impl Target {
    /// The target `spec` describes, in rotation.
    pub fn new(spec: &TargetSpec) -> Self {
        Target {
            weight: u64::from(spec.weight),
            scheme: spec.scheme.clone(),
            authority: spec.authority.clone(),
            host: spec.host.clone(),
            origin: spec.origin.clone(),
            failures: AtomicU32::new(0),
            out_until: AtomicU64::new(0),
            checks_failing: AtomicBool::new(false),
            errors: AtomicU32::new(0),
            ejections: AtomicU32::new(0),
            ejected_until: AtomicU64::new(0),
            active: Arc::new(AtomicUsize::new(0)),
        }
    }

    pub fn in_rotation(&self, now: u64) -> bool {
        !self.checks_failing.load(Ordering::Relaxed)
            && self.out_until.load(Ordering::Relaxed) <= now
    }
}

/// Points on the hash ring per target of the largest weight (fewer for
/// lighter ones, at least one): enough for shares within a few percent.
const RING_POINTS: u64 = 160;

/// The consistent-hash ring: points sorted by hash, each a target's index.
pub(super) struct Ring(Vec<(u64, usize)>);

impl Ring {
    /// Each target's points: hashes of its address and a number, so every
    /// gateway builds the same ring for the same targets, and a target's
    /// points do not depend on the others.
    pub fn new(targets: &[Target]) -> Self {
        let heaviest = targets.iter().map(|t| t.weight).max().unwrap_or(1).max(1);
        let mut points = Vec::new();
        for (index, target) in targets.iter().enumerate() {
            if target.weight == 0 {
                continue;
            }
            let count = (RING_POINTS * target.weight).div_ceil(heaviest).max(1);
            let name = format!("{}://{}", target.scheme, target.authority);
            for point in 0..count {
                let hash = xxhash_rust::xxh3::xxh3_64(format!("{name}#{point}").as_bytes());
                points.push((hash, index));
            }
        }
        points.sort_unstable();
        Ring(points)
    }

    /// The first target clockwise from `key` that `keep` accepts.
    fn find(&self, key: u64, keep: impl Fn(&usize) -> bool) -> Option<usize> {
        let start = self.0.partition_point(|(hash, _)| *hash < key);
        let (before, after) = self.0.split_at(start);
        after
            .iter()
            .chain(before)
            .map(|(_, index)| *index)
            .find(|index| keep(index))
    }
}

/// The key a request is hashed on, when it has one.
pub(super) fn hash_key(on: &HashOn, headers: &HeaderMap, client: Option<IpAddr>) -> Option<u64> {
    let hash = |bytes: &[u8]| xxhash_rust::xxh3::xxh3_64(bytes);
    match on {
        HashOn::Header(name) => headers.get(name).map(|value| hash(value.as_bytes())),
        HashOn::Cookie(name) => cookie(headers, name).map(hash),
        HashOn::ClientIp => client.map(|ip| match ip {
            IpAddr::V4(v4) => hash(&v4.octets()),
            IpAddr::V6(v6) => hash(&v6.octets()),
        }),
    }
}

/// The value of cookie `name` in the request's `Cookie` headers.
fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h [u8]> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .flat_map(|value| value.as_bytes().split(|b| *b == b';'))
        .find_map(|pair| {
            let pair = pair.trim_ascii();
            let (key, value) = pair.split_at(pair.iter().position(|b| *b == b'=')?);
            (key == name.as_bytes()).then_some(&value[1..])
        })
}

impl Upstream {
    /// The next target to try, among those in rotation and not `tried`
    /// already, as the upstream balances (a hashing upstream by `key`, when
    /// the request has one). Targets of weight 0 are never picked.
    pub(super) fn pick(&self, tried: &[usize], key: Option<u64>) -> usize {
        if self.targets.len() == 1 {
            // No shared counter to bump (and bounce between cores).
            return 0;
        }
        let chosen = match (&self.settings.balance, &self.ring, key) {
            (Balance::Hash(_), Some(ring), Some(key)) => self.hashed(ring, tried, key),
            (Balance::LeastRequest, _, _) => self.least_request(tried),
            _ => None,
        };
        chosen.unwrap_or_else(|| self.round_robin(tried))
    }

    /// The target `key` falls on, skipping those out of rotation or tried
    /// (the next point's target takes their keys); when every untried one
    /// is out, the key's own among them still beats a turn of round robin.
    fn hashed(&self, ring: &Ring, tried: &[usize], key: u64) -> Option<usize> {
        let now = self.now();
        let untried = |i: &usize| !tried.contains(i);
        ring.find(key, |i| untried(i) && self.targets[*i].in_rotation(now))
            .or_else(|| ring.find(key, untried))
    }

    /// The less busy of two different targets drawn by weight among those
    /// in rotation and untried: fewer requests in flight per unit of weight.
    fn least_request(&self, tried: &[usize]) -> Option<usize> {
        let now = self.now();
        let usable = |i: &usize| {
            !tried.contains(i) && self.targets[*i].weight > 0 && self.targets[*i].in_rotation(now)
        };
        let a = self.draw(&usable)?;
        let Some(b) = self.draw(&|i: &usize| *i != a && usable(i)) else {
            return Some(a);
        };
        let load = |i: usize| self.targets[i].active.load(Ordering::Relaxed) as u64 + 1;
        // (load a / weight a) <= (load b / weight b), without dividing.
        let (wa, wb) = (self.targets[a].weight, self.targets[b].weight);
        Some(if load(a) * wb <= load(b) * wa { a } else { b })
    }

    /// A target drawn at random by weight among those `keep` accepts.
    fn draw(&self, keep: &dyn Fn(&usize) -> bool) -> Option<usize> {
        self.weighted(keep, |total| fastrand::u64(0..total))
    }

    /// The target at `position(total)` (below `total`) when the weights of
    /// those `keep` accepts are laid end to end: each gets its weight's
    /// share of positions, one of weight 0 none. `None` when their weights
    /// sum to 0.
    fn weighted(
        &self,
        keep: &dyn Fn(&usize) -> bool,
        position: impl FnOnce(u64) -> u64,
    ) -> Option<usize> {
        let count = self.targets.len();
        let total: u64 = (0..count)
            .filter(|i| keep(i))
            .map(|i| self.targets[i].weight)
            .sum();
        if total == 0 {
            return None;
        }
        let mut left = position(total);
        (0..count).filter(|i| keep(i)).find(|i| {
            let weight = self.targets[*i].weight;
            match left.checked_sub(weight) {
                Some(rest) => {
                    left = rest;
                    false
                }
                None => true,
            }
        })
    }

    /// Weighted round robin over the targets in rotation and untried; when
    /// every untried one is out, over those.
    fn round_robin(&self, tried: &[usize]) -> usize {
        // A retry takes the turn's next candidate without using a turn: the
        // target it moves away from does not get the following request too.
        let turn = if tried.is_empty() {
            self.next.fetch_add(1, Ordering::Relaxed)
        } else {
            self.next.load(Ordering::Relaxed)
        } as u64;
        let now = self.now();
        let untried = |i: &usize| !tried.contains(i);
        let usable = |i: &usize| untried(i) && self.targets[*i].in_rotation(now);
        // Laying out only the candidates spreads a missing target's share
        // over all the others by their weights, not onto its neighbour. Each
        // cycle of the total's length gives every candidate exactly its
        // weight's share.
        let pick_among = |keep: &dyn Fn(&usize) -> bool| self.weighted(keep, |total| turn % total);
        pick_among(&usable)
            .or_else(|| pick_among(&untried))
            .or_else(|| pick_among(&|_| true))
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn targets(names: &[&str]) -> Vec<Target> {
        names
            .iter()
            .map(|name| Target::new(&TargetSpec::parse(name, 1).expect("target")))
            .collect()
    }

    #[test]
    fn a_target_added_to_the_ring_takes_keys_only_for_itself() {
        let before = Ring::new(&targets(&["a:1", "b:1", "c:1"]));
        let after = Ring::new(&targets(&["a:1", "b:1", "c:1", "d:1"]));
        let mut moved = 0;
        for key in 0..4000u64 {
            let key = xxhash_rust::xxh3::xxh3_64(&key.to_le_bytes());
            let (old, new) = (before.find(key, |_| true), after.find(key, |_| true));
            if old != new {
                assert_eq!(new, Some(3), "a key moved between old targets");
                moved += 1;
            }
        }
        // About a quarter of the keys go to the fourth target.
        assert!((700..1300).contains(&moved), "{moved} keys moved");
    }

    #[test]
    fn weights_set_each_targets_share_of_the_ring() {
        let mut list = targets(&["a:1", "b:1"]);
        list[1].weight = 3;
        let ring = Ring::new(&list);
        let on_b = (0..4000u64)
            .map(|key| xxhash_rust::xxh3::xxh3_64(&key.to_le_bytes()))
            .filter(|key| ring.find(*key, |_| true) == Some(1))
            .count();
        assert!(
            (2600..3400).contains(&on_b),
            "{on_b} of 4000 on the heavier target"
        );
    }

    #[test]
    fn the_hash_key_is_a_header_a_cookie_or_the_client() {
        let mut headers = HeaderMap::new();
        headers.insert("x-user", "alice".parse().expect("value"));
        headers.append("cookie", "a=1; session=s3cr3t".parse().expect("value"));
        let header = HashOn::Header(http::HeaderName::from_static("x-user"));
        assert_eq!(
            hash_key(&header, &headers, None),
            Some(xxhash_rust::xxh3::xxh3_64(b"alice"))
        );
        let session = HashOn::Cookie("session".into());
        assert_eq!(
            hash_key(&session, &headers, None),
            Some(xxhash_rust::xxh3::xxh3_64(b"s3cr3t"))
        );
        assert_eq!(
            hash_key(&HashOn::Cookie("sess".into()), &headers, None),
            None
        );
        let ip = "192.0.2.7".parse().ok();
        assert!(hash_key(&HashOn::ClientIp, &headers, ip).is_some());
        assert_eq!(hash_key(&HashOn::ClientIp, &headers, None), None);
    }
}
