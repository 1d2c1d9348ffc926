//! A typed builder for the gateway's TOML config (docs/configuration.md), so
//! tests say what they configure and never escape TOML by hand:
//!
//! ```ignore
//! let gw = Config::new()
//!     .upstream("up", &up)
//!     .route(
//!         Route::new("users", "/users/{id}")
//!             .upstream("up")
//!             .plugin(Plugin::new("key-auth").on_error("continue")),
//!     )
//!     .consumer(json!({ "name": "alice", "keys": [{ "plaintext": "alice-key-0000000001" }] }))
//!     .start();
//! ```
//!
//! Every builder has `with(key, value)` for the keys it has no method for;
//! values are `serde_json::json!` values, rendered by the `toml` crate.

use super::{Gateway, Upstream, plugin_path};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::path::Path;

/// A whole config: `[server]` listens on an ephemeral port from the start.
#[derive(Clone)]
pub struct Config {
    root: serde_json::Map<String, Value>,
}

impl Default for Config {
    fn default() -> Self {
        Config::new()
    }
}

impl Config {
    /// `[server] listen = "127.0.0.1:0"` and nothing else.
    pub fn new() -> Config {
        let mut root = serde_json::Map::new();
        root.insert("server".into(), json!({ "listen": "127.0.0.1:0" }));
        Config { root }
    }

    /// More `[server]` keys (`json!({ "shutdown_delay": "1s" })`), merged
    /// into the table (sub-tables such as `tls` too).
    pub fn server(self, settings: Value) -> Config {
        self.merge("server", settings)
    }

    /// An `[admin]` listener on an ephemeral port.
    pub fn admin(self) -> Config {
        self.merge("admin", json!({ "listen": "127.0.0.1:0" }))
    }

    /// `[upstreams.NAME]`.
    pub fn upstream(mut self, name: &str, upstream: impl Into<Pool>) -> Config {
        let upstreams = self.table("upstreams");
        upstreams.insert(name.into(), Value::Object(upstream.into().0));
        self
    }

    /// One more `[[listeners]]` (`json!({ "name": .., "listen": "127.0.0.1:0" })`).
    pub fn listener(self, listener: Value) -> Config {
        self.push("listeners", listener)
    }

    /// One more `[[routes]]`, after the ones before it.
    pub fn route(self, route: Route) -> Config {
        self.push("routes", Value::Object(route.0))
    }

    /// One more `[[plugins]]` entry, which every route inherits.
    pub fn plugin(self, plugin: Plugin) -> Config {
        self.push("plugins", Value::Object(plugin.0))
    }

    /// One more `[[consumers]]` (`json!({ "name": .., "keys": [..] })`).
    pub fn consumer(self, consumer: Value) -> Config {
        self.push("consumers", consumer)
    }

    /// `[redis] url = ..`.
    pub fn redis(self, url: impl ToString) -> Config {
        self.merge("redis", json!({ "url": url.to_string() }))
    }

    /// Any other top-level table (`[plugin_defaults]`, `[usage_plans]`,
    /// `[cache]`, ..), merged into what is there.
    pub fn with(self, table: &str, settings: Value) -> Config {
        self.merge(table, settings)
    }

    /// The config as TOML text.
    pub fn toml(&self) -> String {
        let value = toml::Value::try_from(&self.root).expect("the config renders as TOML");
        // A first line of its own, so every table header follows a newline.
        format!(
            "# Written by the tests' config builder.\n{}",
            toml::to_string(&value).expect("the config renders as TOML")
        )
    }

    /// Writes the TOML to `path` (for tests that start the gateway on a
    /// file they change later).
    pub fn write(&self, path: impl AsRef<Path>) {
        std::fs::write(path, self.toml()).expect("write the config");
    }

    /// The real gateway serving this config.
    pub fn start(&self) -> Gateway {
        Gateway::start(&self.toml())
    }

    /// Like [`Config::start`], with extra environment variables.
    pub fn start_with_env(&self, env: &[(&str, &str)]) -> Gateway {
        Gateway::start_with_env(&self.toml(), env)
    }

    fn table(&mut self, name: &str) -> &mut serde_json::Map<String, Value> {
        let slot = self.root.entry(name).or_insert_with(|| json!({}));
        match slot {
            Value::Object(table) => table,
            other => panic!("`{name}` is not a table: {other}"),
        }
    }

    fn merge(mut self, name: &str, settings: Value) -> Config {
        merge_into(self.table(name), settings);
        self
    }

    fn push(mut self, name: &str, item: Value) -> Config {
        let slot = self.root.entry(name).or_insert_with(|| json!([]));
        match slot {
            Value::Array(items) => items.push(item),
            other => panic!("`{name}` is not an array: {other}"),
        }
        self
    }
}

/// Merges the keys of `settings` (an object) into `table`, tables into tables.
fn merge_into(table: &mut serde_json::Map<String, Value>, settings: Value) {
    let Value::Object(settings) = settings else {
        panic!("settings must be a JSON object: {settings}");
    };
    for (key, value) in settings {
        match (table.get_mut(&key), value) {
            (Some(Value::Object(inner)), Value::Object(more)) => {
                merge_into(inner, Value::Object(more));
            }
            (_, value) => {
                table.insert(key, value);
            }
        }
    }
}

/// One `[upstreams.NAME]` table: its targets and settings.
#[derive(Clone)]
pub struct Pool(serde_json::Map<String, Value>);

impl Pool {
    /// An upstream with these targets (`"host:port"`, URLs, addresses).
    pub fn new<T: ToString>(targets: impl IntoIterator<Item = T>) -> Pool {
        let targets: Vec<String> = targets.into_iter().map(|t| t.to_string()).collect();
        let mut table = serde_json::Map::new();
        table.insert("targets".into(), json!(targets));
        Pool(table)
    }

    /// `timeout = ..`.
    pub fn timeout(self, timeout: &str) -> Pool {
        self.with("timeout", json!(timeout))
    }

    /// `protocol = ..` (`"h2"`, `"h2c"`, ..).
    pub fn protocol(self, protocol: &str) -> Pool {
        self.with("protocol", json!(protocol))
    }

    /// `ca_file = ..`: the authorities `https://` targets must chain to.
    pub fn ca_file(self, path: &str) -> Pool {
        self.with("ca_file", json!(path))
    }

    /// `tls_server_name = ..`: the name `https://` targets' certificates
    /// are checked against.
    pub fn tls_server_name(self, name: &str) -> Pool {
        self.with("tls_server_name", json!(name))
    }

    /// Several more keys at once (`json!({ "max_fails": 2, "retries": 0 })`).
    pub fn settings(mut self, settings: Value) -> Pool {
        merge_into(&mut self.0, settings);
        self
    }

    /// Any other key.
    pub fn with(mut self, key: &str, value: Value) -> Pool {
        self.0.insert(key.into(), value);
        self
    }
}

impl From<&Upstream> for Pool {
    fn from(upstream: &Upstream) -> Pool {
        Pool::new([upstream.addr])
    }
}

impl From<SocketAddr> for Pool {
    fn from(addr: SocketAddr) -> Pool {
        Pool::new([addr])
    }
}

/// One `[[routes]]` entry.
#[derive(Clone)]
pub struct Route(serde_json::Map<String, Value>);

impl Route {
    /// A route named `name` on the path template `path`.
    pub fn new(name: &str, path: &str) -> Route {
        let mut table = serde_json::Map::new();
        table.insert("name".into(), json!(name));
        table.insert("path".into(), json!(path));
        Route(table)
    }

    /// `upstream = ..`.
    pub fn upstream(self, upstream: &str) -> Route {
        self.with("upstream", json!(upstream))
    }

    /// `upstreams = [..]`: several, a plugin chooses.
    pub fn upstreams(self, upstreams: &[&str]) -> Route {
        self.with("upstreams", json!(upstreams))
    }

    /// `methods = [..]`.
    pub fn methods(self, methods: &[&str]) -> Route {
        self.with("methods", json!(methods))
    }

    /// `hosts = [..]`.
    pub fn hosts(self, hosts: &[&str]) -> Route {
        self.with("hosts", json!(hosts))
    }

    /// `strip_prefix = ..`.
    pub fn strip_prefix(self, prefix: &str) -> Route {
        self.with("strip_prefix", json!(prefix))
    }

    /// One more `[[routes.plugins]]` entry, after the ones before it.
    pub fn plugin(mut self, plugin: Plugin) -> Route {
        let slot = self.0.entry("plugins").or_insert_with(|| json!([]));
        if let Value::Array(plugins) = slot {
            plugins.push(Value::Object(plugin.0));
        }
        self
    }

    /// Any other key.
    pub fn with(mut self, key: &str, value: Value) -> Route {
        self.0.insert(key.into(), value);
        self
    }
}

/// One `[[routes.plugins]]` entry.
#[derive(Clone)]
pub struct Plugin(serde_json::Map<String, Value>);

impl Plugin {
    /// A built-in by name (`"key-auth"`) or a plugin file by path.
    pub fn new(plugin: impl ToString) -> Plugin {
        let mut table = serde_json::Map::new();
        table.insert("plugin".into(), json!(plugin.to_string()));
        Plugin(table)
    }

    /// One of the plugins build.rs compiled (`"misbehave_plugin"`), by path.
    pub fn wasm(stem: &str) -> Plugin {
        Plugin::new(plugin_path(stem).display())
    }

    /// `config = ..`.
    pub fn config(self, config: Value) -> Plugin {
        self.with("config", config)
    }

    /// `on_error = ..` (`"continue"`, `"fail"`).
    pub fn on_error(self, on_error: &str) -> Plugin {
        self.with("on_error", json!(on_error))
    }

    /// Any other key (`deadline`, `max_body`, `memory`, `store`, ..).
    pub fn with(mut self, key: &str, value: Value) -> Plugin {
        self.0.insert(key.into(), value);
        self
    }
}
