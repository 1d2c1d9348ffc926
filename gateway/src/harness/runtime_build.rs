//! `Runtime::build` on its own: what a valid config builds into, the route
//! errors it reports at the offending key, and a rebuild keeping the
//! upstreams that did not change.

use super::{build, build_error};
use crate::config::ConfigError;
use std::sync::Arc;

/// Two upstreams (`a`, `b`) on addresses nothing needs to answer at: pools
/// connect lazily.
const UPSTREAMS: &str = r#"
[upstreams.a]
targets = ["127.0.0.1:9"]

[upstreams.b]
targets = ["127.0.0.1:10"]
"#;

/// The 1-based line and column of the `nth` (from 1) `needle` in `text`.
fn position(text: &str, needle: &str, nth: usize) -> (usize, usize) {
    let offset = text
        .match_indices(needle)
        .nth(nth - 1)
        .unwrap_or_else(|| panic!("`{needle}` is not {nth} times in the config"))
        .0;
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let column = before[before.rfind('\n').map_or(0, |i| i + 1)..]
        .chars()
        .count()
        + 1;
    (line, column)
}

/// Asserts `err` is `message` at the `nth` `needle` of `text`.
fn assert_at(err: &ConfigError, text: &str, (needle, nth): (&str, usize), message: &str) {
    let (line, column) = position(text, needle, nth);
    match err {
        ConfigError::At {
            file,
            line: l,
            column: c,
            message: m,
        } => {
            assert_eq!(file, "t.toml");
            assert_eq!(m, message);
            assert_eq!((*l, *c), (line, column), "where: {err}");
        }
        other => panic!("not located: {other}"),
    }
}

#[tokio::test]
async fn a_valid_config_builds_the_routes_and_upstreams_it_names() {
    let text = format!(
        r#"{UPSTREAMS}
[[routes]]
name = "one"
path = "/one/{{*rest}}"
methods = ["GET"]
upstream = "a"
strip_prefix = "/one/"

[[routes]]
name = "two"
path = "/two"
upstreams = ["b", "a"]
preserve_host = true

[[routes.plugins]]
plugin = "headers"
config = {{ request = {{ set = {{ "x-two" = "1" }} }} }}
"#
    );
    let runtime = build(&text, None).await.expect("builds");
    let mut upstreams: Vec<&str> = runtime.upstreams.keys().map(String::as_str).collect();
    upstreams.sort_unstable();
    assert_eq!(upstreams, ["a", "b"]);
    let names: Vec<&str> = runtime.routes.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["one", "two"]);

    let (one, two) = (&runtime.routes[0], &runtime.routes[1]);
    let first = one.upstream.as_ref().expect("one's upstream");
    assert!(Arc::ptr_eq(first, &runtime.upstreams["a"]));
    assert_eq!(one.strip_prefix.as_deref(), Some("/one"));
    assert!(!one.preserve_host);
    assert!(one.pipeline.entries().is_empty());

    let listed: Vec<&str> = two.upstreams.iter().map(|u| u.name.as_str()).collect();
    assert_eq!(listed, ["b", "a"]);
    let first = two.upstream.as_ref().expect("two's upstream");
    assert!(Arc::ptr_eq(first, &runtime.upstreams["b"]));
    assert_eq!(two.strip_prefix, None);
    assert!(two.preserve_host);
    let plugins: Vec<&str> = two
        .pipeline
        .entries()
        .iter()
        .map(|e| e.reference.as_str())
        .collect();
    assert_eq!(plugins, ["headers"]);
    assert!(two.pipeline.plan().request_phase);
}

#[tokio::test]
async fn an_unknown_upstream_is_an_error_at_its_name() {
    let text =
        format!("{UPSTREAMS}\n[[routes]]\nname = \"r\"\npath = \"/\"\nupstream = \"nope\"\n");
    let err = build_error(&text).await;
    assert_at(
        &err,
        &text,
        ("\"nope\"", 1),
        "route `r`: unknown upstream `nope`; defined upstreams: a, b",
    );
}

#[tokio::test]
async fn a_duplicate_route_name_is_an_error_at_the_second() {
    let route = "[[routes]]\nname = \"dup\"\npath = \"/PATH\"\nupstream = \"a\"\n";
    let text = format!(
        "{UPSTREAMS}\n{}\n{}",
        route.replace("PATH", "first"),
        route.replace("PATH", "second")
    );
    let err = build_error(&text).await;
    assert_at(
        &err,
        &text,
        ("\"dup\"", 2),
        "duplicate route name `dup`: route names must be unique",
    );
}

/// A route `r` to upstream `a` with `methods` as given.
fn with_methods(methods: &str) -> String {
    format!(
        "{UPSTREAMS}\n[[routes]]\nname = \"r\"\npath = \"/\"\nupstream = \"a\"\nmethods = {methods}\n"
    )
}

#[tokio::test]
async fn a_bad_method_is_an_error_at_the_method_list() {
    let text = with_methods(r#"["GET", "GE T"]"#);
    let err = build_error(&text).await;
    assert_at(
        &err,
        &text,
        ("[\"GET\"", 1),
        "route `r`: invalid method `GE T`",
    );
}

#[tokio::test]
async fn empty_methods_are_an_error_at_the_list() {
    let text = with_methods("[]");
    let err = build_error(&text).await;
    assert_at(
        &err,
        &text,
        ("[]", 1),
        "route `r`: methods cannot be empty; leave it out to accept every method",
    );
}

#[tokio::test]
async fn both_upstream_and_upstreams_is_an_error_at_the_list() {
    let text = format!(
        "{UPSTREAMS}\n[[routes]]\nname = \"r\"\npath = \"/\"\nupstream = \"a\"\nupstreams = [\"a\", \"b\"]\n"
    );
    let err = build_error(&text).await;
    assert_at(
        &err,
        &text,
        ("[\"a\", \"b\"]", 1),
        "route `r`: give either `upstream` or `upstreams`, not both",
    );
}

/// Upstreams `kept` and `changed` (with `timeout`), a route to each; a
/// comment first when `shifted`, so every span moves.
fn reloadable(timeout: &str, shifted: bool) -> String {
    format!(
        r#"{}
[upstreams.kept]
targets = ["127.0.0.1:9"]

[upstreams.changed]
targets = ["127.0.0.1:10"]
timeout = "{timeout}"

[[routes]]
name = "k"
path = "/k"
upstream = "kept"

[[routes]]
name = "c"
path = "/c"
upstream = "changed"
"#,
        if shifted { "# reloaded\n" } else { "" }
    )
}

#[tokio::test]
async fn a_rebuild_keeps_an_unchanged_upstream_and_replaces_a_changed_one() {
    let before = build(&reloadable("5s", false), None).await.expect("builds");
    let after = build(&reloadable("7s", true), Some(&before))
        .await
        .expect("rebuilds");
    assert!(Arc::ptr_eq(
        &before.upstreams["kept"],
        &after.upstreams["kept"]
    ));
    assert!(!Arc::ptr_eq(
        &before.upstreams["changed"],
        &after.upstreams["changed"]
    ));
    let routed = |name: &str| {
        let route = after.routes.iter().find(|r| r.name == name).expect("route");
        route.upstream.clone().expect("an upstream")
    };
    assert!(Arc::ptr_eq(&routed("k"), &after.upstreams["kept"]));
    assert!(Arc::ptr_eq(&routed("c"), &after.upstreams["changed"]));
    // Without `previous` nothing is kept.
    let fresh = build(&reloadable("5s", false), None).await.expect("builds");
    assert!(!Arc::ptr_eq(
        &before.upstreams["kept"],
        &fresh.upstreams["kept"]
    ));
}
