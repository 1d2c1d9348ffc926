//! Compiles the built-in plugins (and the plugins the tests use) to
//! `wasm32-wasip2` components, so the binary can embed them.
//!
//! A nested `cargo build` with its own target directory avoids deadlocking on
//! the outer build's lock. Set `GATEWAY_SKIP_PLUGIN_BUILD=1` only if you provide
//! the `.wasm` files in `$OUT_DIR` yourself.

use std::path::{Path, PathBuf};
use std::process::Command;

/// (crate name, file stem of the produced component)
const PLUGINS: &[(&str, &str)] = &[
    ("plugin-headers", "plugin_headers"),
    ("plugin-respond", "plugin_respond"),
    ("plugin-key-auth", "plugin_key_auth"),
    ("plugin-mtls-auth", "plugin_mtls_auth"),
    ("plugin-ip-restriction", "plugin_ip_restriction"),
    ("plugin-acl", "plugin_acl"),
    ("plugin-jwt", "plugin_jwt"),
    ("plugin-rate-limit", "plugin_rate_limit"),
    ("plugin-cache", "plugin_cache"),
    ("plugin-transform", "plugin_transform"),
    ("plugin-xml-json", "plugin_xml_json"),
    ("plugin-cors", "plugin_cors"),
    ("plugin-canary", "plugin_canary"),
    ("plugin-oauth2-introspection", "plugin_oauth2_introspection"),
    ("plugin-ext-auth", "plugin_ext_auth"),
    ("plugin-basic-auth", "plugin_basic_auth"),
    ("plugin-aws-sigv4", "plugin_aws_sigv4"),
    ("plugin-request-validator", "plugin_request_validator"),
    ("hello-plugin", "hello_plugin"),
    ("misbehave-plugin", "misbehave_plugin"),
    ("body-reader-plugin", "body_reader_plugin"),
    ("outbound-plugin", "outbound_plugin"),
];

fn main() {
    let manifest_dir = PathBuf::from(env("CARGO_MANIFEST_DIR"));
    let root = manifest_dir
        .parent()
        .expect("the gateway crate lives inside the workspace")
        .to_path_buf();
    let out_dir = PathBuf::from(env("OUT_DIR"));
    for watched in [
        "wit",
        "plugin-sdk",
        "plugins",
        "examples/hello-plugin",
        "tests/plugins",
        "Cargo.lock",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }
    println!("cargo:rerun-if-env-changed=GATEWAY_SKIP_PLUGIN_BUILD");

    if std::env::var_os("GATEWAY_SKIP_PLUGIN_BUILD").is_none() {
        build_plugins(&root, &out_dir);
    }
    println!("cargo:rustc-env=GATEWAY_PLUGIN_DIR={}", out_dir.display());
}

/// The toolchain file names the target, but rustup only installs listed
/// targets when it installs the toolchain itself; a machine that already had
/// the toolchain lacks it. Add it once so a fresh clone builds with no step.
fn ensure_wasm_target() {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_string());
    let libdir = Command::new(&rustc)
        .args(["--print", "target-libdir", "--target", "wasm32-wasip2"])
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()));
    if libdir.is_some_and(|dir| dir.is_dir()) {
        return;
    }
    let mut rustup = Command::new("rustup");
    rustup.args(["target", "add", "wasm32-wasip2"]);
    if let Ok(toolchain) = std::env::var("RUSTUP_TOOLCHAIN") {
        rustup.args(["--toolchain", &toolchain]);
    }
    match rustup.status() {
        Ok(status) if status.success() => {}
        _ => println!(
            "cargo:warning=could not add the wasm32-wasip2 target with rustup; install it yourself"
        ),
    }
}

fn build_plugins(root: &Path, out_dir: &Path) {
    ensure_wasm_target();
    let target_dir = root.join("target").join("plugins");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let mut command = Command::new(cargo);
    command
        .current_dir(root)
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--target-dir",
        ])
        .arg(&target_dir);
    for (krate, _) in PLUGINS {
        command.args(["-p", krate]);
    }
    // The outer build's flags and wrappers (clippy, coverage) are for the host
    // target, not for the plugins.
    for var in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "RUSTC_WORKSPACE_WRAPPER",
        "RUSTC_WRAPPER",
        "CARGO_BUILD_TARGET",
        "CARGO_TARGET_DIR",
    ] {
        command.env_remove(var);
    }
    let status = command
        .status()
        .expect("could not run cargo to build the plugins");
    if !status.success() {
        panic!(
            "building the plugins for wasm32-wasip2 failed; is the target installed? (rustup target add wasm32-wasip2)"
        );
    }
    for (_, stem) in PLUGINS {
        let built = target_dir
            .join("wasm32-wasip2")
            .join("release")
            .join(format!("{stem}.wasm"));
        let dest = out_dir.join(format!("{stem}.wasm"));
        std::fs::copy(&built, &dest)
            .unwrap_or_else(|e| panic!("copying {} failed: {e}", built.display()));
    }
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("cargo sets {name} for build scripts"))
}
