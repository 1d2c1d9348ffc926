//! Target choice and balancing: the targets as configured (`targets`,
//! `weights`), and the weighted round robin that picks one per attempt among
//! those in rotation and not tried yet.

use super::Upstream;
use crate::config::{ConfigError, Source, UpstreamConfig};
use http::uri::{Authority, Scheme, Uri};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use toml::Spanned;

/// The largest weight a target may have.
pub const MAX_WEIGHT: u32 = 1000;

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
}

impl Target {
    /// The target `target` (as configured, at `span` in `source`) with `weight`.
    fn new(target: &Spanned<String>, weight: u32, source: &Source) -> Result<Self, ConfigError> {
        let (scheme, authority) =
            parse_target(target.get_ref()).map_err(|msg| source.error(target.span(), msg))?;
        let host = http::HeaderValue::from_str(authority.as_str())
            .map_err(|_| source.error(target.span(), "invalid target"))?;
        let origin = Uri::builder()
            .scheme(scheme.clone())
            .authority(authority.clone())
            .path_and_query("/")
            .build()
            .map_err(|_| source.error(target.span(), "invalid target"))?;
        Ok(Target {
            weight: u64::from(weight),
            scheme,
            authority,
            host,
            origin,
            failures: AtomicU32::new(0),
            out_until: AtomicU64::new(0),
            checks_failing: AtomicBool::new(false),
        })
    }

    pub fn in_rotation(&self, now: u64) -> bool {
        !self.checks_failing.load(Ordering::Relaxed)
            && self.out_until.load(Ordering::Relaxed) <= now
    }
}

/// The targets of upstream `name`, with their weights.
pub(super) fn targets(
    name: &str,
    config: &Spanned<UpstreamConfig>,
    source: &Source,
) -> Result<Vec<Target>, ConfigError> {
    let settings = config.get_ref();
    if settings.targets.is_empty() {
        return Err(source.error(
            config.span(),
            format!("upstream `{name}` has no targets: add targets = [\"host:port\"]"),
        ));
    }
    let weights = match &settings.weights {
        None => vec![1; settings.targets.len()],
        Some(weights) => check_weights(weights.get_ref(), settings.targets.len())
            .map_err(|msg| source.error(weights.span(), format!("upstream `{name}`: {msg}")))?,
    };
    settings
        .targets
        .iter()
        .zip(weights)
        .map(|(target, weight)| Target::new(target, weight, source))
        .collect()
}

/// `weights` for `targets` targets, or what is wrong with them.
fn check_weights(weights: &[u32], targets: usize) -> Result<Vec<u32>, String> {
    if weights.len() != targets {
        return Err(format!(
            "weights has {} entries for {targets} targets: give one weight per target, in the same order",
            weights.len(),
        ));
    }
    if weights.iter().any(|w| *w > MAX_WEIGHT) {
        return Err(format!("a weight is at most {MAX_WEIGHT}"));
    }
    if weights.iter().all(|w| *w == 0) {
        return Err("every weight is 0: at least one target must get requests".to_string());
    }
    Ok(weights.to_vec())
}

/// `host:port`, `http://host:port` or `https://host[:port]`.
fn parse_target(target: &str) -> Result<(Scheme, Authority), String> {
    let (scheme, bare) = match target.split_once("://") {
        None => (Scheme::HTTP, target),
        Some(("http", rest)) => (Scheme::HTTP, rest),
        Some(("https", rest)) => (Scheme::HTTPS, rest),
        Some((other, _)) => {
            return Err(format!(
                "invalid target `{target}`: the scheme `{other}` is not supported; use http:// or https://"
            ));
        }
    };
    let authority: Authority = bare.trim_end_matches('/').parse().map_err(|_| {
        format!("invalid target `{target}`: expected host:port, for example \"127.0.0.1:9000\" or \"https://api.example.com\"")
    })?;
    if authority.port_u16().is_none() && scheme == Scheme::HTTP {
        return Err(format!(
            "invalid target `{target}`: a port is required, for example \"{}:80\"",
            authority.host()
        ));
    }
    Ok((scheme, authority))
}

impl Upstream {
    /// The next target to try, weighted round robin over those in rotation
    /// and not `tried` already. When every untried one is out, weighted round
    /// robin over those. Targets of weight 0 are never picked.
    pub(super) fn pick(&self, tried: &[usize]) -> usize {
        let count = self.targets.len();
        if count == 1 {
            // No shared counter to bump (and bounce between cores).
            return 0;
        }
        let turn = self.next.fetch_add(1, Ordering::Relaxed) as u64;
        let now = self.now();
        let untried = |i: &usize| !tried.contains(i);
        let usable = |i: &usize| untried(i) && self.targets[*i].in_rotation(now);
        // Summing first spreads a missing target's share over all the others
        // by their weights, not onto its neighbour. Each cycle of the sum's
        // length gives every candidate exactly its weight's share (and one
        // of weight 0 none).
        let pick_among = |keep: &dyn Fn(&usize) -> bool| {
            let total: u64 = (0..count)
                .filter(|i| keep(i))
                .map(|i| self.targets[i].weight)
                .sum();
            if total == 0 {
                return None;
            }
            let mut left = turn % total;
            (0..count).filter(|i| keep(i)).find(|i| {
                let weight = self.targets[*i].weight;
                if left < weight {
                    return true;
                }
                left -= weight;
                false
            })
        };
        pick_among(&usable)
            .or_else(|| pick_among(&untried))
            .or_else(|| pick_among(&|_| true))
            .unwrap_or(0)
    }
}
