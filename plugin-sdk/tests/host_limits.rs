//! The host's limits apply natively: each capability refuses, with the
//! gateway's outcome, what the gateway would refuse, so a plugin that passes
//! its native tests is not refused in production for a limit they skipped.

use plugin_sdk::Context;
use plugin_sdk::cache::{self, Entry};
use plugin_sdk::crypto::{Algorithm, VerifyingKey};
use plugin_sdk::kv::{self, StoreError};
use plugin_sdk::rate_limit::{self, Policy, Quota, QuotaPeriod};
use plugin_shared::limits;
use std::time::Duration;

#[test]
fn context_refuses_entries_over_the_caps() {
    let mut ctx = Context::new();
    ctx.set(&"k".repeat(limits::CONTEXT_MAX_KEY + 1), "v");
    ctx.set("big", "v".repeat(limits::CONTEXT_MAX_VALUE + 1));
    assert!(ctx.keys().is_empty(), "oversized entries were kept");
    for i in 0..limits::CONTEXT_MAX_ENTRIES {
        ctx.set(&format!("k{i}"), "v");
    }
    ctx.set("one-more", "v");
    assert_eq!(ctx.get("one-more"), None);
    assert_eq!(ctx.keys().len(), limits::CONTEXT_MAX_ENTRIES);
    // Replacing an entry is allowed at the cap.
    ctx.set("k0", "w");
    assert_eq!(ctx.get("k0").as_deref(), Some("w"));
}

#[test]
fn response_headers_are_refused_as_the_gateway_refuses_them() {
    let mut ctx = Context::new();
    for (name, value) in [
        ("bad name", "v"),
        ("", "v"),
        ("x-ok", "bad\nvalue"),
        ("Connection", "close"),
        ("transfer-encoding", "chunked"),
        ("content-length", "5"),
        ("content-type", "text/plain"),
    ] {
        assert!(
            ctx.set_response_header(name, value).is_err(),
            "{name}: {value}"
        );
    }
    for i in 0..limits::RESPONSE_HEADERS_MAX {
        assert_eq!(ctx.set_response_header(&format!("x-h{i}"), "v"), Ok(()));
    }
    assert!(ctx.set_response_header("x-one-more", "v").is_err());
    assert_eq!(ctx.set_response_header("X-H0", "w"), Ok(()));

    let mut ctx = Context::new();
    let big = "v".repeat(limits::RESPONSE_HEADERS_MAX_BYTES / 2);
    assert_eq!(ctx.set_response_header("x-a", &big), Ok(()));
    assert!(ctx.set_response_header("x-b", &big).is_err());
    // A refused replacement keeps the earlier value.
    let huge = "v".repeat(limits::RESPONSE_HEADERS_MAX_BYTES);
    assert!(ctx.set_response_header("x-a", &huge).is_err());
    assert_eq!(ctx.response_headers(), [("x-a".to_string(), big)]);
}

#[test]
fn kv_refuses_long_keys_large_values_and_zero_ttls() {
    let ttl = Duration::from_secs(60);
    let long_key = "k".repeat(limits::KV_MAX_KEY + 1);
    assert_eq!(
        kv::set(&long_key, b"v", ttl),
        Err(StoreError::KeyTooLong(512))
    );
    let large = vec![0; limits::KV_MAX_VALUE + 1];
    assert_eq!(
        kv::set("k", &large, ttl),
        Err(StoreError::TooLarge(1 << 20))
    );
    assert_eq!(kv::set("k", b"v", Duration::ZERO), Err(StoreError::ZeroTtl));
    // Under a millisecond is zero on its way to the gateway.
    assert_eq!(
        kv::set("k", b"v", Duration::from_micros(999)),
        Err(StoreError::ZeroTtl)
    );
    assert_eq!(kv::get("k"), None);
    assert_eq!(kv::set(&"k".repeat(limits::KV_MAX_KEY), b"v", ttl), Ok(()));
}

#[test]
fn cache_refuses_long_keys_and_zero_ttls() {
    let entry = Entry {
        status: 200,
        headers: plugin_sdk::Headers::new(),
        body: b"body".to_vec(),
        stored_at_ms: 0,
        vary: vec![],
    };
    let ttl = Duration::from_secs(60);
    let long_key = "k".repeat(limits::CACHE_MAX_KEY + 1);
    assert_eq!(
        cache::put(&long_key, entry.clone(), ttl),
        Err(StoreError::KeyTooLong(1024))
    );
    assert_eq!(
        cache::put("k", entry.clone(), Duration::from_micros(500)),
        Err(StoreError::ZeroTtl)
    );
    assert_eq!(cache::lookup("k", Duration::ZERO), None);
    assert_eq!(cache::put("k", entry.clone(), ttl), Ok(()));
    assert_eq!(cache::lookup("k", Duration::ZERO), Some(entry));
}

#[test]
fn rate_limits_refuse_long_keys_and_policies_the_host_cannot_honour() {
    let policy = Policy {
        limit: 10,
        period: Duration::from_secs(1),
        burst: 10,
    };
    let long_key = "k".repeat(limits::RATE_LIMIT_MAX_KEY + 1);
    assert_eq!(
        rate_limit::check(&long_key, policy),
        Err("rate-limit keys are at most 512 bytes".to_string())
    );
    let quota = Quota {
        limit: 10,
        period: QuotaPeriod::Day,
    };
    assert_eq!(
        rate_limit::count(&long_key, quota),
        Err("rate-limit keys are at most 512 bytes".to_string())
    );
    let too_long = Policy {
        period: limits::RATE_LIMIT_MAX_PERIOD + Duration::from_millis(1),
        ..policy
    };
    assert!(rate_limit::check("k", too_long).is_err());
    // A period under a millisecond reaches the gateway as zero: refused.
    let sub_ms = Policy {
        period: Duration::from_micros(999),
        ..policy
    };
    assert!(rate_limit::check("k", sub_ms).is_err());
    assert!(rate_limit::check("k", policy).is_ok_and(|d| d.allowed));
}

#[test]
fn crypto_refuses_inputs_over_the_cap() {
    let huge = " ".repeat(limits::CRYPTO_MAX_INPUT + 1);
    assert_eq!(
        VerifyingKey::from_jwk(Algorithm::Hs256, &huge).map(|_| ()),
        Err("the JWK is too large".to_string())
    );
    assert_eq!(
        VerifyingKey::from_pem(Algorithm::Rs256, &huge).map(|_| ()),
        Err("the PEM is too large".to_string())
    );
}
