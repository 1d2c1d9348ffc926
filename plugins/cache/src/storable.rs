//! Which responses are stored, and for how long: RFC 9111 as a shared cache
//! applies it, with the operator's `ttl` for responses that state no lifetime
//! and `max_ttl` over all of them.

use crate::config::Options;
use plugin_sdk::{Headers, Response};
use std::time::{Duration, UNIX_EPOCH};

/// Why a response was not stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotStored {
    /// Its status is not in `statuses`.
    Status,
    /// The gateway did not hand the body over (it is over the entry's cap).
    NoBody,
    /// The body is over `max_body`.
    TooLarge,
    /// It sets a cookie and `cache_set_cookie` is off.
    SetCookie,
    /// `Cache-Control: no-store`.
    NoStore,
    /// `Cache-Control: private`: for one user only.
    Private,
    /// `Cache-Control: no-cache`: every reuse must be revalidated, which this
    /// cache does not do.
    NoCache,
    /// `s-maxage` or `max-age` is not a number of seconds.
    InvalidMaxAge,
    /// `Expires` is not an HTTP date.
    InvalidExpires,
    /// No lifetime is left (zero max-age, past `Expires`, a `ttl` of 0s).
    Stale,
    /// `Vary: *`: it depends on more than any request header.
    VaryAnything,
    /// It varies on request headers that were not kept for the response phase.
    VaryUnknown,
    /// The key of its variant is over the longest key.
    KeyTooLong,
    /// The host refused the entry (over its per-entry cap).
    Refused,
}

/// How long `resp` may be served from the cache, or why it must not be.
pub fn check(resp: &Response, options: &Options, now_ms: u64) -> Result<Duration, NotStored> {
    if !options.statuses.contains(&resp.status()) {
        return Err(NotStored::Status);
    }
    match resp.body() {
        None => return Err(NotStored::NoBody),
        Some(body) if body.len() > options.max_body => return Err(NotStored::TooLarge),
        Some(_) => {}
    }
    if !options.cache_set_cookie && resp.headers().contains("set-cookie") {
        return Err(NotStored::SetCookie);
    }
    lifetime(resp.headers(), now_ms, options.ttl, options.max_ttl)
}

/// The freshness lifetime left, capped at `max_ttl`: `s-maxage`, else
/// `max-age`, else `Expires` minus `Date` (minus now without a `Date`), else
/// `ttl`. An upstream `Age` counts against a lifetime the response states.
pub fn lifetime(
    headers: &Headers,
    now_ms: u64,
    ttl: Duration,
    max_ttl: Duration,
) -> Result<Duration, NotStored> {
    let directives = CacheControl::read(headers);
    if directives.no_store {
        return Err(NotStored::NoStore);
    }
    if directives.private {
        return Err(NotStored::Private);
    }
    if directives.no_cache {
        return Err(NotStored::NoCache);
    }
    let age = age_secs(headers);
    let left = if let Some(seconds) = directives.s_maxage.or(directives.max_age) {
        Duration::from_secs(seconds?.saturating_sub(age))
    } else if let Some(expires) = headers.get("expires") {
        let expires = http_date_ms(expires).ok_or(NotStored::InvalidExpires)?;
        match headers.get("date").and_then(http_date_ms) {
            Some(date) => Duration::from_millis(
                expires
                    .saturating_sub(date)
                    .saturating_sub(age.saturating_mul(1000)),
            ),
            None => Duration::from_millis(expires.saturating_sub(now_ms)),
        }
    } else {
        ttl
    };
    let left = left.min(max_ttl);
    if left.is_zero() {
        Err(NotStored::Stale)
    } else {
        Ok(left)
    }
}

/// The largest age this cache counts, as RFC 9111 1.2.2 says: larger
/// received values and sums saturate here.
pub const MAX_AGE_SECS: u64 = 1 << 31;

/// The response's `Age` in seconds (RFC 9111 5.1): the first member of the
/// field value, over every `Age` line, so `7200, 0` is 7200; a first member
/// that is not delta-seconds (`-1`, `abc`, `"5"`) means the field is ignored
/// and counts as 0. At most [`MAX_AGE_SECS`].
pub fn age_secs(headers: &Headers) -> u64 {
    let Some(first_line) = headers.get_all("age").next() else {
        return 0;
    };
    let first_member = first_line.split(',').next().unwrap_or_default().trim();
    if first_member.is_empty() || !first_member.bytes().all(|b| b.is_ascii_digit()) {
        return 0;
    }
    first_member
        .parse::<u64>()
        .map_or(MAX_AGE_SECS, |age| age.min(MAX_AGE_SECS))
}

/// The `Cache-Control` directives this cache obeys.
#[derive(Debug, Default, PartialEq, Eq)]
struct CacheControl {
    no_store: bool,
    private: bool,
    no_cache: bool,
    s_maxage: Option<Result<u64, NotStored>>,
    max_age: Option<Result<u64, NotStored>>,
}

impl CacheControl {
    fn read(headers: &Headers) -> CacheControl {
        let mut directives = CacheControl::default();
        for value in headers.get_all("cache-control") {
            for directive in value.split(',') {
                let (name, argument) = match directive.split_once('=') {
                    Some((name, argument)) => (name, Some(argument)),
                    None => (directive, None),
                };
                let seconds = || {
                    Some(
                        argument
                            .and_then(delta_seconds)
                            .ok_or(NotStored::InvalidMaxAge),
                    )
                };
                // `private="set-cookie"` and `no-cache="..."` name fields; this
                // cache cannot store a response without them, so it does not
                // store it at all.
                match name.trim().to_ascii_lowercase().as_str() {
                    "no-store" => directives.no_store = true,
                    "private" => directives.private = true,
                    "no-cache" => directives.no_cache = true,
                    // The first of repeated directives wins.
                    "s-maxage" if directives.s_maxage.is_none() => directives.s_maxage = seconds(),
                    "max-age" if directives.max_age.is_none() => directives.max_age = seconds(),
                    _ => {}
                }
            }
        }
        directives
    }
}

/// RFC 9111 delta-seconds (quotes tolerated); too large saturates.
fn delta_seconds(text: &str) -> Option<u64> {
    let text = text.trim();
    let text = text
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or(text);
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(text.parse().unwrap_or(u64::MAX))
}

/// An HTTP date in milliseconds since the Unix epoch.
fn http_date_ms(text: &str) -> Option<u64> {
    let time = httpdate::parse_http_date(text.trim()).ok()?;
    let since_epoch = time.duration_since(UNIX_EPOCH).ok()?;
    u64::try_from(since_epoch.as_millis()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_secs(60);
    const MAX: Duration = Duration::from_secs(3600);
    /// Sun, 06 Nov 1994 08:49:37 GMT
    const NOW: u64 = 784_111_777_000;

    fn headers(fields: &[(&str, &str)]) -> Headers {
        let mut h = Headers::new();
        for (name, value) in fields {
            h.append(name, *value);
        }
        h
    }

    fn life(fields: &[(&str, &str)]) -> Result<u64, NotStored> {
        lifetime(&headers(fields), NOW, TTL, MAX).map(|d| d.as_secs())
    }

    #[test]
    fn ttl_applies_when_the_response_states_nothing() {
        assert_eq!(life(&[]), Ok(60));
        assert_eq!(life(&[("cache-control", "public")]), Ok(60));
        assert_eq!(
            lifetime(&headers(&[]), NOW, Duration::ZERO, MAX),
            Err(NotStored::Stale)
        );
    }

    #[test]
    fn s_maxage_beats_max_age_beats_expires() {
        let expires = ("expires", "Sun, 06 Nov 1994 08:59:37 GMT");
        assert_eq!(
            life(&[("cache-control", "max-age=30, s-maxage=20"), expires]),
            Ok(20)
        );
        assert_eq!(life(&[("cache-control", "max-age=30"), expires]), Ok(30));
        assert_eq!(life(&[expires]), Ok(600));
        // s-maxage=0 wins over a long max-age: a shared cache must not store.
        assert_eq!(
            life(&[("cache-control", "s-maxage=0, max-age=600")]),
            Err(NotStored::Stale)
        );
        assert_eq!(
            life(&[("cache-control", "max-age=0")]),
            Err(NotStored::Stale)
        );
    }

    #[test]
    fn every_lifetime_is_capped_at_max_ttl() {
        assert_eq!(life(&[("cache-control", "max-age=86400")]), Ok(3600));
        assert_eq!(
            life(&[("cache-control", "s-maxage=99999999999999999999999")]),
            Ok(3600)
        );
        assert_eq!(
            life(&[("expires", "Thu, 01 Jan 2037 00:00:00 GMT")]),
            Ok(3600)
        );
        assert_eq!(
            lifetime(&headers(&[]), NOW, MAX, Duration::from_secs(10)),
            Ok(Duration::from_secs(10))
        );
    }

    #[test]
    fn expires_counts_from_date_or_from_now() {
        // The upstream's clock is ten minutes behind ours: Expires - Date holds.
        assert_eq!(
            life(&[
                ("date", "Sun, 06 Nov 1994 08:39:37 GMT"),
                ("expires", "Sun, 06 Nov 1994 08:44:37 GMT"),
            ]),
            Ok(300)
        );
        assert_eq!(
            life(&[("expires", "Sunday, 06-Nov-94 08:54:37 GMT")]),
            Ok(300)
        );
        assert_eq!(
            life(&[
                ("date", "yesterday"),
                ("expires", "Sun Nov  6 08:54:37 1994")
            ]),
            Ok(300)
        );
    }

    #[test]
    fn invalid_or_past_expires_is_not_stored() {
        assert_eq!(life(&[("expires", "0")]), Err(NotStored::InvalidExpires));
        assert_eq!(
            life(&[("expires", "tomorrow")]),
            Err(NotStored::InvalidExpires)
        );
        assert_eq!(
            life(&[("expires", "Sun, 06 Nov 1994 08:49:36 GMT")]),
            Err(NotStored::Stale)
        );
        assert_eq!(
            life(&[
                ("date", "Sun, 06 Nov 1994 08:49:37 GMT"),
                ("expires", "Sun, 06 Nov 1994 08:49:37 GMT"),
            ]),
            Err(NotStored::Stale)
        );
    }

    #[test]
    fn refusing_directives_win_whatever_else_is_said() {
        for (value, why) in [
            ("no-store", NotStored::NoStore),
            ("public, max-age=60, No-Store", NotStored::NoStore),
            ("private", NotStored::Private),
            ("private=\"set-cookie\", max-age=60", NotStored::Private),
            ("no-cache", NotStored::NoCache),
            ("s-maxage=60, no-cache=\"x-user\"", NotStored::NoCache),
        ] {
            assert_eq!(life(&[("cache-control", value)]), Err(why), "{value}");
        }
        // Across several fields too.
        assert_eq!(
            life(&[
                ("cache-control", "max-age=60"),
                ("cache-control", "private")
            ]),
            Err(NotStored::Private)
        );
    }

    #[test]
    fn invalid_max_age_is_not_stored_and_quotes_are_tolerated() {
        assert_eq!(
            life(&[("cache-control", "max-age=soon")]),
            Err(NotStored::InvalidMaxAge)
        );
        assert_eq!(
            life(&[("cache-control", "s-maxage=-5, max-age=60")]),
            Err(NotStored::InvalidMaxAge)
        );
        assert_eq!(
            life(&[("cache-control", "max-age")]),
            Err(NotStored::InvalidMaxAge)
        );
        assert_eq!(life(&[("cache-control", "max-age=\"45\"")]), Ok(45));
        assert_eq!(life(&[("cache-control", "max-age=45, max-age=5")]), Ok(45));
    }

    #[test]
    fn upstream_age_counts_against_stated_lifetimes_only() {
        assert_eq!(
            life(&[("cache-control", "max-age=60"), ("age", "25")]),
            Ok(35)
        );
        assert_eq!(
            life(&[("cache-control", "max-age=60"), ("age", "60")]),
            Err(NotStored::Stale)
        );
        assert_eq!(
            life(&[
                ("date", "Sun, 06 Nov 1994 08:49:37 GMT"),
                ("expires", "Sun, 06 Nov 1994 08:50:37 GMT"),
                ("age", "10"),
            ]),
            Ok(50)
        );
        // Our own default is not the upstream's statement.
        assert_eq!(life(&[("age", "25")]), Ok(60));
        assert_eq!(
            life(&[("cache-control", "max-age=60"), ("age", "x")]),
            Ok(60)
        );
    }
}
