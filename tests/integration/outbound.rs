//! The `http-client` and `kv` capabilities through the real binary: allow-lists,
//! shared fetches, the deadline pausing while a plugin waits, kv across requests.

use crate::support::config::{Config, Plugin, Route};
use crate::support::{Upstream, check, client, get, plugin_path, send};
use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use serde_json::json;

fn outbound() -> String {
    plugin_path("outbound_plugin").display().to_string()
}

/// The outbound test plugin, granted `http-client` and `kv`.
fn fetcher() -> Plugin {
    Plugin::wasm("outbound_plugin").with("grants", json!(["http-client", "kv"]))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugins_reach_allowed_hosts_share_fetches_and_keep_kv() {
    let api = Upstream::start("api").await;
    let docs = Upstream::start("docs").await;
    let gw = Config::new()
        .route(
            Route::new("fetch", "/fetch").plugin(
                fetcher()
                    .with("allowed_hosts", json!(["127.0.0.1"]))
                    .config(json!({ "mode": "fetch", "url": format!("http://{}/data", api.addr) })),
            ),
        )
        .route(
            Route::new("denied", "/denied").plugin(
                fetcher()
                    .with("allowed_hosts", json!(["https://example.com"]))
                    .config(json!({ "mode": "fetch", "url": format!("http://{}/data", api.addr) })),
            ),
        )
        .route(
            Route::new("slow", "/slow").plugin(
                fetcher()
                    .with(
                        "allowed_hosts",
                        json!([format!("127.0.0.1:{}", api.addr.port())]),
                    )
                    .with("deadline", json!("20ms"))
                    .config(
                        json!({ "mode": "fetch", "url": format!("http://{}/slow/150", api.addr) }),
                    ),
            ),
        )
        .route(
            Route::new("shared", "/shared").plugin(
                fetcher()
                    .with("allowed_hosts", json!(["127.0.0.1"]))
                    .with("pool_size", json!(8))
                    .config(json!({
                        "mode": "fetch-shared",
                        "url": format!("http://{}/jwks", docs.addr),
                        "max_age_ms": 60000,
                    })),
            ),
        )
        .route(
            Route::new("counter", "/counter").plugin(
                Plugin::wasm("outbound_plugin")
                    .with("grants", json!(["kv", "http-client"]))
                    .config(json!({ "mode": "kv-counter" })),
            ),
        )
        .start();

    let reply = get(&gw.url("/fetch")).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.header("x-fetched"), Some("yes"));
    assert_eq!(reply.json()["path"], "/data");

    let reply = get(&gw.url("/denied")).await;
    assert_eq!(reply.status, 502);
    assert_eq!(
        reply.body,
        format!(
            "outbound: host 127.0.0.1:{} is not allowed",
            api.addr.port()
        )
    );

    // 150 ms of waiting on the network under a 20 ms CPU deadline: the wait
    // does not count.
    let reply = get(&gw.url("/slow")).await;
    assert_eq!(reply.status, 200, "{}", reply.body);

    // Many instances asking at once: one fetch.
    let client = client();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..16 {
        let client = client.clone();
        let url = gw.url("/shared");
        tasks.spawn(async move {
            send(
                &client,
                Request::get(url)
                    .body(Full::<Bytes>::default())
                    .expect("request"),
            )
            .await
        });
    }
    let replies = tasks.join_all().await;
    for reply in &replies {
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert_eq!(reply.json()["path"], "/jwks");
    }
    assert_eq!(
        docs.hits(),
        1,
        "concurrent shared fetches were not coalesced"
    );
    let again = get(&gw.url("/shared")).await;
    assert_eq!(again.status, 200);
    assert_eq!(docs.hits(), 1, "a fresh shared copy was fetched again");

    for expected in 1..=3 {
        let reply = get(&gw.url("/counter")).await;
        assert_eq!(reply.body, expected.to_string());
    }
}

#[test]
fn outbound_capabilities_need_grants_and_valid_hosts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = |extra: &str| {
        format!(
            "[[routes]]\nname = \"r\"\npath = \"/\"\n\n[[routes.plugins]]\nplugin = \"{}\"\n{extra}\nconfig = {{ mode = \"fetch\", url = \"http://127.0.0.1:1/\" }}\n",
            outbound()
        )
    };
    std::fs::write(
        dir.path().join("ungranted.toml"),
        config("grants = [\"kv\"]"),
    )
    .expect("write");
    let (ok, out) = check(dir.path(), "ungranted.toml");
    assert!(!ok);
    assert!(
        out.contains("imports gateway:plugin/http-client but its entry does not grant it"),
        "{out}"
    );
    std::fs::write(
        dir.path().join("bad-host.toml"),
        config("grants = [\"http-client\", \"kv\"]\nallowed_hosts = [\"ftp://files.example.com\"]"),
    )
    .expect("write");
    let (ok, out) = check(dir.path(), "bad-host.toml");
    assert!(!ok);
    assert!(
        out.contains(
            "bad-host.toml:8:18: route `r`: invalid allowed host `ftp://files.example.com`"
        ),
        "{out}"
    );
}
