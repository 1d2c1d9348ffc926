//! Which responses are stored, and for how long: RFC 9111 as a shared cache
//! applies it, with the operator's `ttl` for responses that state no lifetime
//! and `max_ttl` over all of them.

use crate::config::Options;
use crate::sf;
use plugin_sdk::{Headers, Response};
use std::time::{Duration, UNIX_EPOCH};

/// Why a response was not stored.
#[derive(Debug, Clone, PartialEq, Eq)]
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
    /// `Cache-Control: no-cache` without a validator: every reuse must be
    /// revalidated, and there is nothing to revalidate with.
    NoCache,
    /// `s-maxage` or `max-age` is not a number of seconds.
    InvalidMaxAge,
    /// `Expires` is not an HTTP date.
    InvalidExpires,
    /// No lifetime is left (zero max-age, past `Expires`, a `ttl` of 0s) and
    /// no validator to revalidate it with.
    Stale,
    /// `Vary: *`: it depends on more than any request header.
    VaryAnything,
    /// It varies on request headers that were not kept for the response phase.
    VaryUnknown,
    /// The key of its variant is over the longest key.
    KeyTooLong,
    /// The host refused the entry (over its per-entry cap, or the store
    /// unreachable), saying why.
    Refused(plugin_sdk::cache::StoreError),
}

/// How a storable response is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Storage {
    /// How long it is served without asking the upstream (may be zero).
    pub fresh: Duration,
    /// How long the store keeps it: `fresh`, plus `keep` when it has a
    /// validator to be revalidated with once stale.
    pub ttl: Duration,
}

/// The longest any entry is stored: the store's own cap (a day) less a
/// margin, so that a URI's generation entry, written with the store's cap
/// (`invalidation.rs`), outlives every entry stored under an older
/// generation, even one written by a request that was under way when the
/// URI was invalidated.
pub const LONGEST_STORAGE: Duration = Duration::from_secs(86_400 - GENERATION_MARGIN_SECS);
/// How much longer than any entry a generation entry lives.
pub const GENERATION_MARGIN_SECS: u64 = 10 * 60;

/// How `resp` may be stored, or why it must not be.
pub fn check(resp: &Response, options: &Options, now_ms: u64) -> Result<Storage, NotStored> {
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
    storage(resp.headers(), options, now_ms)
}

/// How a response with `headers`, received at `now_ms`, is kept: fresh for
/// its lifetime, and past it for `keep` when it has a validator. Without a
/// validator, a response with no lifetime left is not stored.
pub fn storage(headers: &Headers, options: &Options, now_ms: u64) -> Result<Storage, NotStored> {
    let fresh = match freshness(headers, options, now_ms) {
        Ok(fresh) if !fresh.is_zero() => Ok(fresh),
        Ok(_) => Err(NotStored::Stale),
        Err(NotStored::NoCache) => Err(NotStored::NoCache),
        Err(refused) => return Err(refused),
    };
    if has_validator(headers) {
        let fresh = fresh.unwrap_or(Duration::ZERO);
        let ttl = fresh.saturating_add(options.keep).min(LONGEST_STORAGE);
        if ttl.is_zero() {
            return Err(NotStored::Stale);
        }
        return Ok(Storage { fresh, ttl });
    }
    let fresh = fresh?;
    Ok(Storage {
        fresh,
        ttl: fresh.min(LONGEST_STORAGE),
    })
}

/// Whether a stored response can be revalidated: it has an `ETag` or a
/// `Last-Modified`.
pub fn has_validator(headers: &Headers) -> bool {
    headers.contains("etag") || headers.contains("last-modified")
}

/// Whether an entry with `headers`, stored at `stored_at_ms`, is still fresh
/// at `now_ms`: younger than the lifetime it had left when stored.
pub fn is_fresh(headers: &Headers, options: &Options, stored_at_ms: u64, now_ms: u64) -> bool {
    let resident = Duration::from_millis(now_ms.saturating_sub(stored_at_ms));
    freshness(headers, options, stored_at_ms).is_ok_and(|fresh| resident < fresh)
}

/// The freshness lifetime left when received at `now_ms`, capped at
/// `max_ttl` (zero: stale on arrival): `s-maxage`, else `max-age`, else
/// `Expires` minus `Date` (minus now without a `Date`), else `ttl`. An
/// upstream `Age` counts against a lifetime the response states.
///
/// The directives come from the first configured targeted field (RFC 9213,
/// `CDN-Cache-Control`) that is present and valid; `Cache-Control` and
/// `Expires` are then ignored. `no-cache` is [`NotStored::NoCache`].
pub fn freshness(headers: &Headers, options: &Options, now_ms: u64) -> Result<Duration, NotStored> {
    let directives = Directives::read(headers, &options.targeted);
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
    let expires = headers.get("expires").filter(|_| directives.expires_apply);
    let left = if let Some(seconds) = directives.s_maxage.or(directives.max_age) {
        Duration::from_secs(seconds?.saturating_sub(age))
    } else if let Some(expires) = expires {
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
        options.ttl
    };
    Ok(left.min(options.max_ttl))
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

/// The directives this cache obeys, from `Cache-Control` or a targeted field.
#[derive(Debug, Default, PartialEq, Eq)]
struct Directives {
    no_store: bool,
    private: bool,
    no_cache: bool,
    s_maxage: Option<Result<u64, NotStored>>,
    max_age: Option<Result<u64, NotStored>>,
    /// Whether `Expires` counts: not when a targeted field decides.
    expires_apply: bool,
}

impl Directives {
    /// From the first of `targeted` present with a valid, non-empty value,
    /// else from `Cache-Control`.
    fn read(headers: &Headers, targeted: &[String]) -> Directives {
        targeted
            .iter()
            .find_map(|name| Directives::targeted(headers, name))
            .unwrap_or_else(|| Directives::cache_control(headers))
    }

    fn cache_control(headers: &Headers) -> Directives {
        let mut directives = Directives {
            expires_apply: true,
            ..Directives::default()
        };
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
                // `private="set-cookie"` names fields; this cache cannot
                // store a response without them, so it does not store it at
                // all. `no-cache="..."` is taken as `no-cache`.
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

    /// A targeted field (RFC 9213) as a Structured Field Dictionary: `None`
    /// when absent, empty or invalid, so `Cache-Control` decides. Directives
    /// mean what they mean in `Cache-Control`; the last of repeated ones wins.
    fn targeted(headers: &Headers, name: &str) -> Option<Directives> {
        let value = headers.get_all(name).collect::<Vec<_>>().join(", ");
        let members = sf::parse_dictionary(&value)?;
        if members.is_empty() {
            return None;
        }
        let mut directives = Directives::default();
        for (key, value) in members {
            let on = value != sf::Value::Boolean(false);
            let seconds = match value {
                sf::Value::Integer(n) => u64::try_from(n).map_err(|_| NotStored::InvalidMaxAge),
                _ => Err(NotStored::InvalidMaxAge),
            };
            match key.as_str() {
                "no-store" => directives.no_store = on,
                "private" => directives.private = on,
                "no-cache" => directives.no_cache = on,
                "s-maxage" => directives.s_maxage = Some(seconds),
                "max-age" => directives.max_age = Some(seconds),
                _ => {}
            }
        }
        Some(directives)
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

    fn options_with(ttl: Duration, max_ttl: Duration) -> Options {
        let config = plugin_sdk::Config::from_value(serde_json::json!({}));
        let defaults = Options::from_config(&config).unwrap_or_else(|e| panic!("{e}"));
        Options {
            ttl,
            max_ttl,
            ..defaults
        }
    }

    /// How long a response without a validator is fresh, or why it is not
    /// stored.
    fn lifetime(
        headers: &Headers,
        now: u64,
        ttl: Duration,
        max_ttl: Duration,
    ) -> Result<Duration, NotStored> {
        storage(headers, &options_with(ttl, max_ttl), now).map(|s| s.fresh)
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

    /// No entry is stored for as long as a URI's generation entry lives
    /// (the store's cap of a day), with or without a validator.
    #[test]
    fn no_entry_is_stored_for_a_whole_day() {
        let day = Duration::from_secs(86_400);
        let options = options_with(TTL, day);
        for fields in [
            &[("cache-control", "max-age=86400")][..],
            &[("cache-control", "max-age=86400"), ("etag", "\"v1\"")][..],
        ] {
            let stored = storage(&headers(fields), &options, NOW);
            assert_eq!(stored.map(|s| s.ttl), Ok(LONGEST_STORAGE), "{fields:?}");
        }
        assert!(LONGEST_STORAGE + Duration::from_secs(5 * 60) <= day);
    }

    #[test]
    fn stale_or_no_cache_responses_with_a_validator_are_kept_for_revalidation() {
        let options = options_with(TTL, MAX);
        let keep = options.keep;
        for fields in [
            &[("cache-control", "no-cache"), ("etag", "\"v1\"")][..],
            &[
                ("cache-control", "max-age=0"),
                ("last-modified", "Sun, 06 Nov 1994 08:00:00 GMT"),
            ][..],
            &[
                ("cache-control", "max-age=60"),
                ("age", "7200"),
                ("etag", "W/\"1\""),
            ][..],
        ] {
            assert_eq!(
                storage(&headers(fields), &options, NOW),
                Ok(Storage {
                    fresh: Duration::ZERO,
                    ttl: keep
                }),
                "{fields:?}"
            );
        }
        assert_eq!(
            storage(
                &headers(&[("cache-control", "max-age=60"), ("etag", "\"v1\"")]),
                &options,
                NOW
            ),
            Ok(Storage {
                fresh: Duration::from_secs(60),
                ttl: Duration::from_secs(60) + keep
            })
        );
        assert_eq!(
            storage(&headers(&[("cache-control", "no-cache")]), &options, NOW),
            Err(NotStored::NoCache)
        );
        assert_eq!(
            storage(
                &headers(&[("cache-control", "no-store"), ("etag", "\"v1\"")]),
                &options,
                NOW
            ),
            Err(NotStored::NoStore)
        );
    }

    #[test]
    fn freshness_is_judged_from_when_the_entry_was_stored() {
        let options = options_with(TTL, MAX);
        let h = headers(&[("cache-control", "max-age=60"), ("age", "20")]);
        assert!(is_fresh(&h, &options, NOW, NOW + 39_999));
        assert!(!is_fresh(&h, &options, NOW, NOW + 40_000));
        let no_cache = headers(&[("cache-control", "no-cache"), ("etag", "\"v1\"")]);
        assert!(!is_fresh(&no_cache, &options, NOW, NOW));
    }

    #[test]
    fn a_valid_targeted_field_replaces_cache_control_and_expires() {
        let options = Options {
            targeted: vec!["cdn-cache-control".into()],
            ..options_with(TTL, MAX)
        };
        let fresh = |fields: &[(&str, &str)]| {
            storage(&headers(fields), &options, NOW).map(|s| s.fresh.as_secs())
        };
        let cdn = |value| ("cdn-cache-control", value);
        assert_eq!(
            fresh(&[("cache-control", "no-store"), cdn("max-age=600")]),
            Ok(600)
        );
        assert_eq!(
            fresh(&[("cache-control", "max-age=600"), cdn("no-store")]),
            Err(NotStored::NoStore)
        );
        assert_eq!(
            fresh(&[("expires", "Sun, 06 Nov 1994 08:59:37 GMT"), cdn("none")]),
            Ok(60)
        );
        assert_eq!(fresh(&[cdn("max-age=30, max-age=90")]), Ok(90));
        assert_eq!(fresh(&[cdn("max-age=600"), ("age", "100")]), Ok(500));
        assert_eq!(fresh(&[cdn("max-age=-1")]), Err(NotStored::InvalidMaxAge));
        assert_eq!(fresh(&[cdn("no-cache")]), Err(NotStored::NoCache));
        assert_eq!(fresh(&[cdn("private=?0, max-age=5")]), Ok(5));
        // Invalid or empty: Cache-Control decides.
        for value in ["max-age=600,", "Max-Age=600", ""] {
            assert_eq!(
                fresh(&[("cache-control", "max-age=20"), cdn(value)]),
                Ok(20),
                "{value}"
            );
        }
        // Without the option, the field means nothing to this cache.
        assert_eq!(
            life(&[("cache-control", "max-age=20"), cdn("max-age=600")]),
            Ok(20)
        );
    }

    #[test]
    fn age_is_the_first_member_and_saturates() {
        let age = |values: &[&str]| {
            let mut h = Headers::new();
            for v in values {
                h.append("age", *v);
            }
            age_secs(&h)
        };
        assert_eq!(age(&[]), 0);
        assert_eq!(age(&["7200, 0"]), 7200);
        assert_eq!(age(&["7200", "0"]), 7200);
        assert_eq!(age(&[" 12 "]), 12);
        for invalid in ["-1", "abc", "1.5", "\"5\"", "", ", 5"] {
            assert_eq!(age(&[invalid]), 0, "{invalid}");
        }
        assert_eq!(age(&["99999999999999999999999"]), MAX_AGE_SECS);
        assert_eq!(age(&["2147483649"]), MAX_AGE_SECS);
    }
}
