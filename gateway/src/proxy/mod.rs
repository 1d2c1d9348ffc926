//! Talking to upstreams: pooled clients, target selection, the headers a
//! proxy owes the hop it forwards to, and mirrored copies of requests.

mod connect;
pub mod forwarded;
mod h2pool;
pub mod mirror;
mod traceparent;
pub mod tunnel;
pub mod upstream;

pub use forwarded::{
    TrustedProxies, apply_forwarded, is_hop_by_hop, names_hop_by_hop, strip_hop_by_hop,
};
pub use traceparent::{TRACEPARENT, Traceparent};
pub use upstream::Upstream;
