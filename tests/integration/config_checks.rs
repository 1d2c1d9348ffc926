//! `gateway check`: the corpus of bad configs (each rejected with file, line
//! and column) and the example configs, kept as the text they are.

use crate::support::check;

#[test]
fn bad_configs_are_rejected_with_file_line_and_column() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/config-errors");
    let mut cases: Vec<_> = std::fs::read_dir(&dir)
        .expect("config-errors dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    cases.sort();
    assert!(
        cases.len() >= 10,
        "expected the config error corpus, found {}",
        cases.len()
    );
    let mut failures = Vec::new();
    for case in &cases {
        let file = case.file_name().and_then(|f| f.to_str()).expect("name");
        let expected_path = case.with_extension("err");
        let expected = std::fs::read_to_string(&expected_path)
            .unwrap_or_else(|_| panic!("missing {}", expected_path.display()));
        let (ok, output) = check(&dir, file);
        let first_line = output
            .lines()
            .find(|l| l.starts_with("error:"))
            .unwrap_or_default();
        if ok || first_line != expected.trim_end() {
            failures.push(format!("{file}:\n  expected: {}\n  got:      {first_line}\n  (exit ok = {ok}; full output: {output})", expected.trim_end()));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn the_quickstart_config_checks() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/quickstart");
    let (ok, output) = check(&dir, "gateway.toml");
    assert!(ok, "{output}");
}

#[test]
fn the_openapi_example_checks_with_its_levels_of_entries() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/openapi");
    let (ok, output) = check(&dir, "gateway.toml");
    assert!(ok, "{output}");
    assert!(
        output.lines().any(|l| l
            == "  route `getBook`: openapi-security=key-auth, headers (global), api-version=headers (api), openapi-validation=request-validator (api), openapi-mock=respond"),
        "{output}"
    );
}

#[test]
fn the_secured_api_example_checks() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/secured-api");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_gateway"))
        .current_dir(&dir)
        .args(["check", "--config", "gateway.toml"])
        .env("JWT_SECRET", "change-me-to-32-bytes-or-more!!!!")
        .env("RUST_LOG", "error")
        .output()
        .expect("run gateway check");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn the_traffic_example_checks() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/traffic");
    let (ok, output) = check(&dir, "gateway.toml");
    assert!(ok, "{output}");
}
