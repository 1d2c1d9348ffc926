//! Consumers, API keys and capability grants, through the real binary.

use crate::support::config::{Config, Plugin, Route};
use crate::support::{Upstream, check, client, plugin_path, send};
use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use serde_json::json;
use std::io::Write as _;
use std::process::{Command, Stdio};

const SECRET: &str = "test-secret-0123456789abcdef";

/// `gateway hash-key`, as an operator would run it.
fn hash_key(key: &str) -> String {
    let mut child = Command::new(env!("CARGO_BIN_EXE_gateway"))
        .arg("hash-key")
        .env("GATEWAY_KEY_HASH_SECRET", SECRET)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn gateway hash-key");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(format!("{key}\n").as_bytes())
        .expect("write key");
    let output = child.wait_with_output().expect("hash-key output");
    assert!(output.status.success(), "hash-key failed");
    let hash = String::from_utf8_lossy(&output.stdout).trim().to_string();
    assert!(
        hash.starts_with("hmac-sha256:") && hash.len() == 12 + 64,
        "{hash}"
    );
    hash
}

fn request(url: &str, headers: &[(&str, &str)]) -> Request<Full<Bytes>> {
    let mut builder = Request::get(url);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(Full::default()).expect("request")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_auth_admits_known_keys_and_refuses_everything_else() {
    let upstream = Upstream::start("api").await;
    let bob_hash = hash_key("bob-key-0000000001");
    let gw = Config::new()
        .with(
            "identity",
            json!({ "key_hash_secret": { "env": "KEY_SECRET" } }),
        )
        .with(
            "usage_plans",
            json!({ "gold": { "rate": "100/s", "quota": "10000/day" } }),
        )
        .consumer(json!({
            "name": "alice",
            "groups": ["admins", "beta"],
            "plan": "gold",
            "keys": [{ "plaintext": "alice-key-0000000001" }],
        }))
        .consumer(json!({ "name": "bob", "keys": [{ "hash": bob_hash.to_string() }] }))
        .consumer(json!({ "name": "carol", "keys": [{ "env": "CAROL_KEY" }] }))
        .upstream("api", &upstream)
        .route(
            Route::new("api", "/api/{*rest}")
                .upstream("api")
                .plugin(Plugin::new("key-auth").config(json!({ "query": ["api_key"] }))),
        )
        .start_with_env(&[
            ("KEY_SECRET", SECRET),
            ("CAROL_KEY", "carol-key-0000000001"),
        ]);
    let client = client();

    // The right key, by each way of storing it.
    for (key, name) in [
        ("alice-key-0000000001", "alice"),
        ("bob-key-0000000001", "bob"),
        ("carol-key-0000000001", "carol"),
    ] {
        let reply = send(&client, request(&gw.url("/api/x"), &[("x-api-key", key)])).await;
        assert_eq!(reply.status, 200, "{name}: {}", reply.body);
        let seen = &reply.json()["headers"];
        assert_eq!(seen["x-consumer-name"], name);
        assert!(
            seen.get("x-api-key").is_none(),
            "the key was forwarded upstream"
        );
    }

    // Groups and plan travel upstream; a spoofed consumer header is replaced.
    let reply = send(
        &client,
        request(
            &gw.url("/api/x"),
            &[
                ("x-api-key", "alice-key-0000000001"),
                ("x-consumer-name", "root"),
            ],
        ),
    )
    .await;
    let seen = &reply.json()["headers"];
    assert_eq!(seen["x-consumer-name"], "alice");
    assert_eq!(seen["x-consumer-groups"], "admins,beta");
    assert_eq!(seen["x-consumer-plan"], "gold");

    // In the query, and stripped from it.
    let reply = send(
        &client,
        request(&gw.url("/api/x?api_key=bob-key-0000000001&page=2"), &[]),
    )
    .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["query"], "page=2");

    let hits = upstream.hits();
    // Wrong, missing, empty, and spoofed-only.
    for headers in [
        vec![("x-api-key", "alice-key-0000000002")],
        vec![],
        vec![("x-api-key", "")],
        vec![("x-consumer-name", "alice")],
        vec![("x-api-key", "hmac-sha256:00")],
    ] {
        let reply = send(&client, request(&gw.url("/api/x"), &headers)).await;
        assert_eq!(reply.status, 401, "{headers:?}");
        assert_eq!(
            reply.header("www-authenticate"),
            Some("ApiKey realm=\"gateway\", header=\"x-api-key\"")
        );
        let error = reply.json()["error"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(error.starts_with("unauthorized: "), "{error}");
        assert!(
            !reply.json()["request_id"]
                .as_str()
                .unwrap_or_default()
                .is_empty()
        );
    }
    assert_eq!(
        upstream.hits(),
        hits,
        "a refused request reached the upstream"
    );
}

#[test]
fn a_plugin_file_gets_only_the_capabilities_its_entry_grants() {
    let dir = tempfile::tempdir().expect("tempdir");
    let wasm = plugin_path("plugin_key_auth");
    let config = |grants: &str| {
        format!(
            r#"[server]
listen = "127.0.0.1:0"

[[routes]]
name = "r"
path = "/"

[[routes.plugins]]
plugin = "{wasm}"
{grants}
"#,
            wasm = wasm.display()
        )
    };
    std::fs::write(dir.path().join("ungranted.toml"), config("")).expect("write");
    let (ok, out) = check(dir.path(), "ungranted.toml");
    assert!(!ok);
    assert!(
        out.contains("ungranted.toml:9:10: route `r`: plugin `")
            && out.contains("imports gateway:plugin/consumers but its entry does not grant it"),
        "{out}"
    );

    std::fs::write(
        dir.path().join("granted.toml"),
        config("grants = [\"consumers\"]"),
    )
    .expect("write");
    let (ok, out) = check(dir.path(), "granted.toml");
    assert!(ok, "{out}");

    std::fs::write(
        dir.path().join("unknown.toml"),
        config("grants = [\"filesystem\"]"),
    )
    .expect("write");
    let (ok, out) = check(dir.path(), "unknown.toml");
    assert!(!ok);
    assert!(
        out.contains("unknown.toml:10:11: route `r`: unknown grant `filesystem`; grantable capabilities: crypto, consumers, http-client, kv, rate-limit"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ip_restriction_lets_only_allowed_clients_through() {
    let up = Upstream::start("up").await;
    // The test client is the trusted proxy: X-Forwarded-For says which
    // client each request comes from.
    let gw = Config::new()
        .server(json!({ "trusted_proxies": ["127.0.0.1"] }))
        .upstream("up", &up)
        .route(Route::new("office", "/office").upstream("up").plugin(
            Plugin::new("ip-restriction").config(
                json!({ "allow": ["203.0.113.0/24", "2001:db8::/32"], "deny": ["203.0.113.66"] }),
            ),
        ))
        .route(
            Route::new("internal", "/internal")
                .upstream("up")
                .plugin(Plugin::new("ip-restriction").config(json!({ "allow": ["127.0.0.0/8"] }))),
        )
        .start();
    let from = |client: Option<&str>| {
        let mut request = Request::get(gw.url("/office"));
        if let Some(client) = client {
            request = request.header("x-forwarded-for", client);
        }
        request.body(Full::<Bytes>::default()).expect("request")
    };
    for address in ["203.0.113.5", "2001:db8::7"] {
        let reply = send(&client(), from(Some(address))).await;
        assert_eq!(reply.status, 200, "{address}: {}", reply.body);
    }
    assert_eq!(up.hits(), 2);
    for address in [Some("203.0.113.66"), Some("198.51.100.1"), None] {
        let reply = send(&client(), from(address)).await;
        assert_eq!(reply.status, 403, "{address:?}");
        assert_eq!(reply.json()["error"], "your IP address is not allowed");
        assert_eq!(
            reply.json()["request_id"].as_str(),
            reply.header("x-request-id")
        );
    }
    // The nearest untrusted entry counts, not one the client put left of
    // it; junk bytes in the client's own entry hide nothing.
    for header in [
        b"203.0.113.5, 198.51.100.1".as_slice(),
        b"\xff, 198.51.100.1".as_slice(),
    ] {
        let request = Request::get(gw.url("/office"))
            .header(
                "x-forwarded-for",
                http::HeaderValue::from_bytes(header).expect("value"),
            )
            .body(Full::<Bytes>::default())
            .expect("request");
        let reply = send(&client(), request).await;
        assert_eq!(reply.status, 403, "{}", String::from_utf8_lossy(header));
    }
    // "Internal only" (the trusted proxy's own range): a client behind the
    // proxy cannot pass for the proxy with junk in its entry.
    let internal = |header: Option<&[u8]>| {
        let mut request = Request::get(gw.url("/internal"));
        if let Some(header) = header {
            request = request.header(
                "x-forwarded-for",
                http::HeaderValue::from_bytes(header).expect("value"),
            );
        }
        request.body(Full::<Bytes>::default()).expect("request")
    };
    assert_eq!(send(&client(), internal(None)).await.status, 200);
    let reply = send(&client(), internal(Some(b"\xff, 198.51.100.1"))).await;
    assert_eq!(reply.status, 403);
    assert_eq!(up.hits(), 3);
    // A peer that is not a trusted proxy is not believed at all.
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket
            .bind(std::net::SocketAddr::from(([127, 0, 0, 2], 0)))
            .expect("bind");
        let mut stream = socket.connect(gw.addr).await.expect("connect");
        stream
            .write_all(
                b"GET /office HTTP/1.1\r\nhost: gw\r\nx-forwarded-for: 203.0.113.5\r\nconnection: close\r\n\r\n",
            )
            .await
            .expect("write");
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.expect("read");
        assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    }
    assert_eq!(up.hits(), 3, "refused requests never reach the upstream");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acl_admits_consumers_by_group_after_key_auth() {
    let up = Upstream::start("up").await;
    let gw = Config::new()
        .consumer(json!({
            "name": "alice",
            "groups": ["admins", "beta"],
            "keys": [{ "plaintext": "alice-key-0000000001" }],
        }))
        .consumer(json!({
            "name": "bob",
            "groups": ["beta"],
            "keys": [{ "plaintext": "bob-key-00000000000002" }],
        }))
        .consumer(json!({
            "name": "mallory",
            "groups": ["admins", "suspended"],
            "keys": [{ "plaintext": "mallory-key-0000000003" }],
        }))
        .upstream("up", &up)
        .route(
            Route::new("admin", "/admin")
                .upstream("up")
                .plugin(Plugin::new("key-auth"))
                .plugin(
                    Plugin::new("acl")
                        .config(json!({ "allow": ["admins"], "deny": ["suspended"] })),
                ),
        )
        .route(
            Route::new("anonymous", "/anonymous")
                .upstream("up")
                .plugin(Plugin::new("acl").config(json!({ "allow": ["admins"] }))),
        )
        .start();
    let ask = |path: &str, key: Option<&str>| {
        let mut request = Request::get(gw.url(path));
        if let Some(key) = key {
            request = request.header("x-api-key", key);
        }
        request.body(Full::<Bytes>::default()).expect("request")
    };
    let reply = send(&client(), ask("/admin", Some("alice-key-0000000001"))).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(up.hits(), 1);
    let reply = send(&client(), ask("/admin", Some("bob-key-00000000000002"))).await;
    assert_eq!(reply.status, 403, "not in an allowed group");
    assert_eq!(
        reply.json()["error"],
        "forbidden: this consumer may not use this route"
    );
    let reply = send(&client(), ask("/admin", Some("mallory-key-0000000003"))).await;
    assert_eq!(reply.status, 403, "in a denied group");
    // No key: key-auth refuses before acl is asked.
    let reply = send(&client(), ask("/admin", None)).await;
    assert_eq!(reply.status, 401);
    // A route that authenticates no one: acl has no consumer to check.
    let reply = send(&client(), ask("/anonymous", Some("alice-key-0000000001"))).await;
    assert_eq!(reply.status, 401);
    assert_eq!(
        reply.json()["error"],
        "unauthorized: no authenticated consumer"
    );
    assert_eq!(up.hits(), 1, "refused requests never reach the upstream");
    assert!(
        gw.log()
            .contains("consumer `bob` (groups: beta) refused on route `admin`"),
        "{}",
        gw.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_the_client_names_in_connection_cannot_take_the_consumer_headers_away() {
    let upstream = Upstream::start("api").await;
    let gw = Config::new()
        .consumer(json!({ "name": "alice", "keys": [{ "plaintext": "alice-key-0000000001" }] }))
        .upstream("api", &upstream)
        .route(
            Route::new("api", "/api/{*rest}")
                .upstream("api")
                .plugin(Plugin::new("key-auth")),
        )
        .start();
    let reply = send(
        &client(),
        request(
            &gw.url("/api/x"),
            &[
                ("x-api-key", "alice-key-0000000001"),
                ("connection", "x-consumer-name, x-private, traceparent"),
                ("x-private", "for the gateway only"),
            ],
        ),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let seen = &reply.json()["headers"];
    assert_eq!(seen["x-consumer-name"], "alice");
    assert!(seen.get("x-private").is_none(), "{seen}");
    // The gateway's own trace context, set after the client's options went.
    assert!(
        seen["traceparent"]
            .as_str()
            .is_some_and(|t| t.starts_with("00-")),
        "{seen}"
    );
}
