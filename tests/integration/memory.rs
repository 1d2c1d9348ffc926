//! Memory after a large body: an instance whose linear memory grew past the
//! entry's `max_idle_memory` is dropped after its call, so the process's
//! resident memory returns to where it was, and `/metrics` counts the discard.

use crate::support::config::{Config, Plugin, Route};
use crate::support::{Gateway, Upstream, client, get, send};
use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use serde_json::json;
use std::path::Path;
use std::time::{Duration, Instant};

/// About `bytes` of XML: one root with many small, distinct elements.
fn large_xml(bytes: usize) -> String {
    let mut xml = String::with_capacity(bytes + 64);
    xml.push_str("<orders>");
    let mut n = 0u64;
    while xml.len() < bytes {
        xml.push_str(&format!(
            "<order id=\"{n}\"><sku>A-{n}</sku><qty>{}</qty></order>",
            n % 97
        ));
        n += 1;
    }
    xml.push_str("</orders>");
    xml
}

/// The pid of the gateway serving `config` (a child of this test process).
fn gateway_pid(config: &Path) -> u32 {
    let needle = config.display().to_string();
    let found = std::fs::read_dir("/proc")
        .expect("read /proc")
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .find(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|cmdline| String::from_utf8_lossy(&cmdline).contains(&needle))
                .unwrap_or(false)
        });
    found.expect("the gateway's process")
}

/// A `/proc/PID/status` field in bytes (`VmRSS`, `VmHWM`).
fn status_bytes(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    let line = status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .unwrap_or_else(|| panic!("no {field} in {status}"));
    let kib: u64 = line
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .expect("a size in kB");
    kib * 1024
}

/// One route converting XML to JSON with room for a 50 MiB document.
fn config(upstream: &Upstream) -> Config {
    Config::new()
        .server(json!({ "max_request_body": "64MiB" }))
        .admin()
        .upstream("api", upstream)
        .route(
            Route::new("convert", "/convert").upstream("api").plugin(
                Plugin::new("xml-json")
                    .with("max_body", json!("64MiB"))
                    .with("memory_limit", json!("1GiB"))
                    .with("deadline", json!("30s"))
                    .config(json!({
                        "request": "xml-to-json",
                        "response": "none",
                        "max_elements": 10000000,
                        "max_output": "256MiB",
                    })),
            ),
        )
}

async fn post_xml(gw: &Gateway, xml: String) {
    let request = Request::post(gw.url("/convert"))
        .header("content-type", "application/xml")
        .body(Full::new(Bytes::from(xml)))
        .expect("request");
    let reply = send(&client(), request).await;
    let shown: String = reply.body.chars().take(500).collect();
    assert_eq!(reply.status, 200, "{shown}");
}

/// Waits (up to 10 s) for the resident size to fall to `ceiling`; the last
/// reading either way.
async fn rss_settles_below(pid: u32, ceiling: u64) -> u64 {
    let waiting = Instant::now();
    loop {
        let rss = status_bytes(pid, "VmRSS");
        if rss <= ceiling || waiting.elapsed() > Duration::from_secs(10) {
            return rss;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_conversion_leaves_no_resident_memory_behind() {
    let upstream = Upstream::start("api").await;
    let gw = config(&upstream).start();
    let pid = gateway_pid(&gw.config_path());
    // Warm up the route and the allocator with a small document first.
    post_xml(&gw, large_xml(4 * 1024)).await;
    let before = status_bytes(pid, "VmRSS");

    post_xml(&gw, large_xml(50 << 20)).await;
    let peak = status_bytes(pid, "VmHWM");
    let grown = peak.saturating_sub(before);
    assert!(
        grown > 100 << 20,
        "the conversion should have grown the process: {before} -> peak {peak}"
    );
    let ceiling = before + grown / 3;
    let after = rss_settles_below(pid, ceiling).await;
    eprintln!(
        "VmRSS before {} MiB, peak {} MiB, after {} MiB",
        before >> 20,
        peak >> 20,
        after >> 20
    );
    assert!(
        after <= ceiling,
        "resident memory stayed up: {before} before, peak {peak}, {after} after (ceiling {ceiling})"
    );

    let metrics = get(&gw.admin_url("/metrics")).await.body;
    let discarded = r#"gateway_plugin_instances_discarded_total{route="convert",plugin="xml-json",reason="max_idle_memory"} 1"#;
    assert!(metrics.contains(discarded), "{metrics}");
    let status = get(&gw.admin_url("/status")).await.json();
    let entry = &status["routes"][0]["plugins"][0];
    assert_eq!(entry["oversized"], 1, "{entry}");
    // A later small call is served by a fresh instance.
    post_xml(&gw, large_xml(4 * 1024)).await;
}

/// As text, for the errors' line and column: a config with one `respond`
/// entry carrying `settings`, and `defaults` in
/// `[plugin_defaults]`.
fn entry_config(defaults: &str, settings: &str) -> String {
    format!(
        r#"[server]
listen = "127.0.0.1:0"

[plugin_defaults]
{defaults}

[[routes]]
name = "hello"
path = "/hello"

[[routes.plugins]]
plugin = "respond"
config = {{ status = 200, body = "hi" }}
{settings}
"#
    )
}

#[test]
fn max_idle_memory_is_checked_where_it_is_written() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cases = [
        // Above the entry's memory_limit, on the entry.
        (
            "",
            "memory_limit = \"32MiB\"\nmax_idle_memory = \"64MiB\"",
            "t.toml:15:19: route `hello`: max_idle_memory (64MiB) is above the entry's memory_limit (32MiB)",
        ),
        // Inherited from [plugin_defaults], above this entry's memory_limit.
        (
            "max_idle_memory = \"48MiB\"",
            "memory_limit = \"32MiB\"",
            "t.toml:5:19: route `hello`: max_idle_memory (48MiB, from [plugin_defaults]) is above the entry's memory_limit (32MiB)",
        ),
        // Below what the plugin holds right after init.
        (
            "",
            "max_idle_memory = \"64KiB\"",
            "t.toml:14:19: route `hello`: plugin `respond` holds ",
        ),
    ];
    for (defaults, settings, expected) in cases {
        std::fs::write(dir.path().join("t.toml"), entry_config(defaults, settings))
            .expect("write config");
        let (ok, out) = crate::support::check(dir.path(), "t.toml");
        assert!(!ok && out.contains(expected), "{expected}\n{out}");
    }
    let fine = entry_config("max_idle_memory = \"8MiB\"", "max_idle_memory = \"64MiB\"");
    std::fs::write(dir.path().join("t.toml"), fine).expect("write config");
    let (ok, out) = crate::support::check(dir.path(), "t.toml");
    assert!(ok, "{out}");
}

/// As text, for the errors' line and column: a config with one `respond`
/// entry answering `body_mib` MiB (which it
/// holds from `init` on, twice: the config text and the parsed body), plus
/// `settings` on the entry.
fn large_init_config(body_mib: usize, settings: &str) -> String {
    format!(
        r#"[server]
listen = "127.0.0.1:0"

[admin]
listen = "127.0.0.1:0"

[[routes]]
name = "large"
path = "/large"

[[routes.plugins]]
plugin = "respond"
{settings}
config = {{ status = 200, body = "{body}" }}
"#,
        body = "x".repeat(body_mib << 20)
    )
}

#[test]
fn the_default_max_idle_memory_admits_a_plugin_large_after_init() {
    let dir = tempfile::tempdir().expect("tempdir");
    // About 19MiB after init: above 16MiB, below memory_limit.
    for settings in ["", "memory_limit = \"256MiB\""] {
        std::fs::write(dir.path().join("t.toml"), large_init_config(6, settings))
            .expect("write config");
        let (ok, out) = crate::support::check(dir.path(), "t.toml");
        assert!(ok, "{settings}: {out}");
    }
    // A value the file sets below it is still refused, where it is written.
    let written = large_init_config(6, "max_idle_memory = \"16MiB\"");
    std::fs::write(dir.path().join("t.toml"), written).expect("write config");
    let (ok, out) = crate::support::check(dir.path(), "t.toml");
    let expected = "t.toml:13:19: route `large`: plugin `respond` holds ";
    assert!(!ok && out.contains(expected), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_max_idle_memory_is_4_times_the_memory_after_init() {
    // About 13MiB after init (in 64KiB pages): the default is about 52MiB,
    // under the default memory_limit (64MiB).
    let gw = Config::new()
        .admin()
        .route(Route::new("large", "/large").plugin(
            Plugin::new("respond").config(json!({ "status": 200, "body": "x".repeat(4 << 20) })),
        ))
        .start();
    for _ in 0..3 {
        let reply = get(&gw.url("/large")).await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.body.len(), 4 << 20);
    }
    let metrics = get(&gw.admin_url("/metrics")).await.body;
    let kept = r#"gateway_plugin_instances_discarded_total{route="large",plugin="respond",reason="max_idle_memory"} 0"#;
    assert!(metrics.contains(kept), "{metrics}");
    let status = get(&gw.admin_url("/status")).await.json();
    let entry = &status["routes"][0]["plugins"][0];
    assert_eq!(entry["oversized"], 0, "{entry}");
    let limit = entry["max_idle_memory"].as_u64().expect("max_idle_memory");
    assert_eq!(limit % (4 << 16), 0, "{entry}");
    assert!((12 << 20..14 << 20).contains(&(limit / 4)), "{entry}");
}
