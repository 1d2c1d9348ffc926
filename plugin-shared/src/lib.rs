//! What the gateway and the plugin SDK must agree on, in one crate both
//! depend on.
//!
//! A plugin is tested natively (`cargo test`, the SDK emulating the host) and
//! then runs inside the gateway. Whatever decides an outcome on both sides
//! lives here, so the two cannot drift apart: the [`limits`] the host enforces
//! (a plugin that passes its native tests is never refused by the gateway for
//! a limit its tests did not apply), the [`units`] configs are written in, the
//! GCRA and calendar-quota arithmetic of [`rate_limit`], the key checks and
//! verification of [`crypto`], the AWS Signature Version 4 checks of
//! [`sigv4`], and the plain types both sides name
//! ([`consumers::UsagePlan`], [`http_client::Error`], [`store::StoreError`]).
//!
//! Plugin authors never depend on this crate: the SDK re-exports what they
//! use under its own paths. The gateway depends on it instead of on the guest
//! SDK, so host internals do not come from a crate meant for guests.
//!
//! The crate builds for `wasm32-wasip2` with no dependencies; the host-only
//! parts (governor clocks, aws-lc-rs) exist on native targets only.

#![deny(missing_docs)]

pub mod consumers;
pub mod crypto;
pub mod http_client;
pub mod limits;
pub mod rate_limit;
pub mod sigv4;
pub mod store;
pub mod units;
