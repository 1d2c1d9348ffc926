//! The TOML configuration: its shape, and loading it with every error located.
//!
//! [`Source::parse`] reads the file section by section (`parse`), so every
//! mistake in it is reported in one run (`problems` gathers them and says
//! them in the config's terms); [`ServerSettings`] checks `[server]` and
//! `[admin]` into plain values; [`crate::runtime::Runtime::build`] then
//! checks what only makes sense as a whole (routes against upstreams, plugins
//! against their components), every error located at its key.
//!
//! The modules import each other in one direction: `source` (the text and
//! its errors) and `units` below everything, `shape` (what serde reads) above
//! the sections it is made of, `parse` on top.

mod compression;
mod identity;
mod listener;
mod parse;
pub mod problems;
mod route;
mod server;
mod shape;
mod source;
mod store;
mod units;
mod upstream;

pub use compression::{CompressionConfig, route_compression};
pub use identity::{
    AccessKeyConfig, ConsumerConfig, IdentityConfig, KeyConfig, Quota, QuotaPeriod, Rate, Secret,
    UsagePlanConfig, read_env, read_file, resolve_secret,
};
pub use listener::{DEFAULT_LISTENER, HttpsRedirect, Listener, ListenerConfig, route_listeners};
pub use route::{RouteSettings, path_fault, route_settings};
pub use server::{
    AdminSettings, CertificateConfig, ClientAuth, ListenerSettings, MAX_HEADERS, MIN_HEADER_BYTES,
    RestartOnly, ServerConfig, ServerSettings, TlsConfig,
};
pub use shape::{
    ApiConfig, Config, DEFAULT_MAX_IDLE_MEMORY, DEFAULT_WEBSOCKET_IDLE_TIMEOUT, HealthCheckConfig,
    OnError, PluginDefaults, PluginEntryConfig, RouteConfig, UpstreamConfig, UpstreamProtocol,
};
pub use source::{ConfigError, Source};
pub use store::{AdminConfig, CacheConfig, RedisConfig, StoreFailure, StoreKind};
pub use units::{ByteSize, Duration};
pub use upstream::upstream_settings;

#[cfg(test)]
mod tests {
    use super::{Config, Source};
    use std::path::Path;

    fn parse(text: &str) -> Result<Config, String> {
        Source::from_text(Path::new("t.toml"), text.to_string())
            .parse()
            .map_err(|e| e.to_string())
    }

    #[test]
    fn unknown_key_is_located() {
        let err = parse("[server]\nlisten = \"127.0.0.1:0\"\nlisen = 1\n").err();
        let err = err.unwrap_or_default();
        assert!(
            err.starts_with("t.toml:3:1: unknown key `lisen`; did you mean `listen`?"),
            "{err}"
        );
    }

    #[test]
    fn every_section_error_is_reported_in_one_run() {
        let text = "[server]\nlisen = 1\n[[routes]]\nname = \"a\"\npath = \"/a\"\nupstram = \"x\"\n[[routes]]\nname = \"b\"\n[upstream.x]\n";
        let err = parse(text).err().unwrap_or_default();
        let lines: Vec<&str> = err.lines().collect();
        assert_eq!(lines.len(), 5, "{err}");
        assert!(
            lines[0].starts_with("t.toml:2:1: unknown key `lisen`"),
            "{err}"
        );
        assert!(
            lines[1].starts_with("t.toml:6:1: unknown key `upstram`; did you mean `upstream`?"),
            "{err}"
        );
        assert!(
            lines[2].starts_with("t.toml:7:") && lines[2].contains("missing key `path`"),
            "{err}"
        );
        assert!(
            lines[3]
                .starts_with("t.toml:9:2: unknown section `upstream`; did you mean `upstreams`?"),
            "{err}"
        );
        assert_eq!(lines[4], "4 errors");
    }

    #[test]
    fn bad_duration_is_located() {
        let err = parse("[plugin_defaults]\ndeadline = \"10 parsecs\"\n").err();
        let err = err.unwrap_or_default();
        assert!(err.starts_with("t.toml:2:12: invalid duration"), "{err}");
    }
}
