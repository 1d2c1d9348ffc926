//! The limits the gateway enforces on what a plugin asks of it, in one place.
//!
//! The host checks each of them where a plugin's call arrives
//! (`gateway/src/plugin/host.rs` and the capability modules under
//! `gateway/src/plugin/capabilities/`), and the SDK's native test
//! support applies the same ones, through the same checks where there is a
//! decision to make, so a limit a plugin meets in production is one its
//! native tests already met. Changing a number here changes both sides.

use std::time::Duration;

/// Most entries one request's context holds. A new key past it is dropped
/// (with a warning); replacing an existing key is always allowed.
pub const CONTEXT_MAX_ENTRIES: usize = 64;
/// Longest context key, in bytes.
pub const CONTEXT_MAX_KEY: usize = 256;
/// Longest context value, in bytes.
pub const CONTEXT_MAX_VALUE: usize = 16 * 1024;
/// Most bytes of keys and values one context holds in all: implied by the
/// three caps above (an entry never exceeds its key and value caps).
pub const CONTEXT_MAX_TOTAL: usize = CONTEXT_MAX_ENTRIES * (CONTEXT_MAX_KEY + CONTEXT_MAX_VALUE);

/// Most headers the plugins of one request may set on the client's response
/// (`context.set-response-header`).
pub const RESPONSE_HEADERS_MAX: usize = 32;
/// Most bytes of names and values those headers hold in all.
pub const RESPONSE_HEADERS_MAX_BYTES: usize = 8 * 1024;
/// The hop-by-hop headers (RFC 9110, section 7.6.1): they describe one
/// connection and are never forwarded.
pub const HOP_BY_HOP_HEADERS: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "proxy-authenticate",
    "proxy-authorization",
];

/// Headers a plugin may not set on the client's response besides the
/// hop-by-hop ones: the body's framing and type are the answer's own.
const RESPONSE_BODY_HEADERS: [&str; 2] = ["content-length", "content-type"];

/// Headers that belong to one connection or frame the message (hop-by-hop
/// fields and `content-length`): the gateway's to set, never a plugin's
/// configuration's.
pub const FRAMING_HEADERS: [&str; 8] = [
    "connection",
    "content-length",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Longest log line a plugin may write, in bytes; the rest is cut and
/// replaced by `...`.
pub const LOG_MAX_LINE: usize = 4 * 1024;

/// Longest `kv` key, in bytes.
pub const KV_MAX_KEY: usize = 512;
/// Largest `kv` value, in bytes.
pub const KV_MAX_VALUE: usize = 1 << 20;
/// Longest `kv` lifetime: a longer TTL is cut to it.
pub const KV_MAX_TTL: Duration = Duration::from_secs(86_400);

/// Longest `cache` key, in bytes.
pub const CACHE_MAX_KEY: usize = 1024;
/// Longest `cache` entry lifetime: a longer TTL is cut to it.
pub const CACHE_MAX_TTL: Duration = Duration::from_secs(86_400);

/// Longest a `cache.lookup` waits for another request's fill of its key.
/// Natively nobody waits, so this has no native counterpart.
pub const CACHE_MAX_WAIT: Duration = Duration::from_secs(30);

/// Longest `rate-limit` key, in bytes (checks and quota counts alike).
pub const RATE_LIMIT_MAX_KEY: usize = 512;
/// Longest period of a `rate-limit` policy.
pub const RATE_LIMIT_MAX_PERIOD: Duration = Duration::from_secs(86_400);

/// Longest an `http-client` request may wait for its whole answer (also the
/// timeout of a request that names none).
pub const HTTP_CLIENT_MAX_TIMEOUT: Duration = Duration::from_secs(10);

/// Largest JWK or PEM text a `crypto` key is made from, in bytes.
pub const CRYPTO_MAX_INPUT: usize = 1 << 20;
/// Most `crypto` keys one plugin instance holds at once. Keys are host
/// resources in the gateway and plain values natively, so this one has no
/// native counterpart.
pub const CRYPTO_MAX_KEYS: usize = 4096;

/// The longest basic-auth user name `consumers.verify-password` checks;
/// longer ones are invalid unchecked.
pub const PASSWORD_MAX_USERNAME: usize = 256;
/// The longest password `consumers.verify-password` checks.
pub const PASSWORD_MAX_LENGTH: usize = 1024;
/// Password checks one request may ask for, all its plugins together; more
/// are answered busy unchecked.
pub const PASSWORD_CHECKS_PER_REQUEST: u8 = 4;

/// Whether `username` and `password` can be checked: a user name of 1 to
/// [`PASSWORD_MAX_USERNAME`] bytes without a colon (RFC 7617) or control
/// characters, a password of 1 to [`PASSWORD_MAX_LENGTH`] bytes.
pub fn password_checkable(username: &str, password: &str) -> bool {
    !username.is_empty()
        && username.len() <= PASSWORD_MAX_USERNAME
        && !username.contains(':')
        && !username.chars().any(char::is_control)
        && !password.is_empty()
        && password.len() <= PASSWORD_MAX_LENGTH
}

/// `duration` in whole milliseconds, as it crosses the contract: cut, not
/// rounded (1.9 ms is 1 ms, 0.5 ms is 0), and saturating. The SDK converts
/// with this inside the gateway and natively alike, so a sub-millisecond TTL
/// or period is the same zero on both sides.
pub fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// [`millis`] for the contract's 32-bit fields (timeouts, waits).
pub fn millis_u32(duration: Duration) -> u32 {
    u32::try_from(duration.as_millis()).unwrap_or(u32::MAX)
}

/// Whether a context entry of `key_len` and `value_len` bytes may be stored
/// in a context holding `entries` entries, `replacing` one of the same key.
pub fn context_entry_fits(
    key_len: usize,
    value_len: usize,
    entries: usize,
    replacing: bool,
) -> bool {
    let fits = key_len <= CONTEXT_MAX_KEY && value_len <= CONTEXT_MAX_VALUE;
    let has_room = entries < CONTEXT_MAX_ENTRIES || replacing;
    fits && has_room
}

/// Whether a plugin may set the response header `name` (lower-case) at all.
pub fn response_header_settable(name: &str) -> bool {
    !HOP_BY_HOP_HEADERS.contains(&name) && !RESPONSE_BODY_HEADERS.contains(&name)
}

/// Whether the response headers set so far would stay within the caps with
/// `count` headers of `bytes` bytes in all; the message says which caps.
pub fn response_headers_within(count: usize, bytes: usize) -> Result<(), String> {
    if count > RESPONSE_HEADERS_MAX || bytes > RESPONSE_HEADERS_MAX_BYTES {
        return Err(format!(
            "over the cap of {RESPONSE_HEADERS_MAX} response headers or {RESPONSE_HEADERS_MAX_BYTES} bytes"
        ));
    }
    Ok(())
}

/// Cuts `message` to [`LOG_MAX_LINE`] bytes (on a character boundary) and
/// marks the cut with `...`.
pub fn cut_log_line(message: &mut String) {
    if message.len() > LOG_MAX_LINE {
        let mut end = LOG_MAX_LINE;
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        message.truncate(end);
        message.push_str("...");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn millis_cut_and_saturate() {
        assert_eq!(millis(Duration::from_micros(1_900)), 1);
        assert_eq!(millis(Duration::from_micros(500)), 0);
        assert_eq!(millis(Duration::MAX), u64::MAX);
        assert_eq!(millis_u32(Duration::from_secs(u64::MAX)), u32::MAX);
    }

    #[test]
    fn context_entries_fit_their_caps() {
        assert!(context_entry_fits(
            CONTEXT_MAX_KEY,
            CONTEXT_MAX_VALUE,
            0,
            false
        ));
        assert!(!context_entry_fits(CONTEXT_MAX_KEY + 1, 1, 0, false));
        assert!(!context_entry_fits(1, CONTEXT_MAX_VALUE + 1, 0, false));
        assert!(!context_entry_fits(1, 1, CONTEXT_MAX_ENTRIES, false));
        assert!(context_entry_fits(1, 1, CONTEXT_MAX_ENTRIES, true));
    }

    #[test]
    fn log_lines_are_cut_on_a_character_boundary() {
        let mut line = "é".repeat(LOG_MAX_LINE);
        cut_log_line(&mut line);
        assert_eq!(line.len(), LOG_MAX_LINE + 3);
        assert!(line.ends_with("..."));
        let mut short = String::from("short");
        cut_log_line(&mut short);
        assert_eq!(short, "short");
    }
}
