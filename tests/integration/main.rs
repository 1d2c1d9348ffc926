//! Black-box tests: the real `gateway` binary on an ephemeral port, in front of
//! real upstream servers, driven over real sockets. One module per topic;
//! `support` starts gateways (from a typed config builder), upstreams and redis.

mod apis;
mod caching;
mod compression;
mod config_checks;
mod cors;
mod credentials;
mod edge;
mod grpc;
mod identity;
mod jwt;
mod limits;
mod memory;
mod observability;
mod openapi_export;
mod outbound;
mod pipeline;
mod policies;
mod reload;
mod routing;
mod sandbox;
mod scaffold;
mod shared;
mod shutdown;
mod support;
mod tls;
mod traffic;
mod transform;
mod upstreams;
mod validation;
mod websocket;
