//! Black-box tests: the real `gateway` binary on an ephemeral port, in front of
//! real upstream servers, driven over real sockets. One module per topic;
//! `support` starts gateways (from a typed config builder), upstreams and redis.

mod apis;
mod caching;
mod config_checks;
mod cors;
mod credentials;
mod edge;
mod ext_auth;
mod grpc;
mod identity;
mod introspection;
mod jwt;
mod limits;
mod listeners;
mod memory;
mod mirroring;
mod observability;
mod openapi_export;
mod outbound;
mod pipeline;
mod policies;
mod reload;
mod resilience;
mod routing;
mod sandbox;
mod scaffold;
mod shared;
mod shutdown;
mod support;
mod tls;
mod traffic;
mod traffic_example;
mod transform;
mod upstreams;
mod validation;
mod websocket;
