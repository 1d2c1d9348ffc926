//! `gateway new plugin`: the crate it writes, outside this repository,
//! passes its own native tests, builds for wasm32-wasip2 with nothing
//! changed, and its `gateway.toml` passes `gateway check` and serves.

use crate::support::{Gateway, check, get};
use std::path::Path;
use std::process::Command;

/// The toolchain this repository pins, for the nested cargo runs (a crate
/// outside it would otherwise get rustup's default).
fn pinned_toolchain() -> String {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../rust-toolchain.toml");
    let text = std::fs::read_to_string(file).expect("rust-toolchain.toml");
    text.lines()
        .find_map(|line| line.strip_prefix("channel = "))
        .map(|channel| channel.trim_matches('"').to_string())
        .expect("a pinned channel")
}

/// Runs cargo with `args` in `dir`, as a plugin author would.
fn cargo(dir: &Path, args: &[&str]) {
    let output = Command::new("cargo")
        .current_dir(dir)
        .args(args)
        .env("RUSTUP_TOOLCHAIN", pinned_toolchain())
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("RUSTFLAGS")
        .output()
        .expect("run cargo");
    assert!(
        output.status.success(),
        "cargo {args:?} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_plugin_tests_builds_and_loads_as_scaffolded() {
    let root = tempfile::tempdir().expect("tempdir");
    let dir = root.path().join("require-tenant");
    let output = Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args(["new", "plugin", "require-tenant", "--dir"])
        .arg(&dir)
        .output()
        .expect("run gateway new");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // A second time into the same directory is refused, nothing overwritten.
    let again = Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args(["new", "plugin", "require-tenant", "--dir"])
        .arg(&dir)
        .output()
        .expect("run gateway new");
    assert!(!again.status.success());

    cargo(&dir, &["test", "--quiet"]);
    cargo(
        &dir,
        &["build", "--quiet", "--release", "--target", "wasm32-wasip2"],
    );
    let (ok, text) = check(&dir, "gateway.toml");
    assert!(ok, "{text}");

    // Served on an ephemeral port instead of the scaffold's 8080.
    let config = std::fs::read_to_string(dir.join("gateway.toml")).expect("config");
    let config = config.replace("127.0.0.1:8080", "127.0.0.1:0");
    std::fs::write(dir.join("gateway.toml"), config).expect("config");
    let gw = Gateway::start_at(&dir.join("gateway.toml"));
    assert_eq!(get(&gw.url("/")).await.status, 400, "no x-tenant");
    let client = crate::support::client();
    let request = http::Request::get(gw.url("/"))
        .header("x-tenant", "acme")
        .body(http_body_util::Full::default())
        .expect("request");
    let reply = crate::support::send(&client, request).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
}
