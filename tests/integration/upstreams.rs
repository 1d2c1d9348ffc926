//! Several targets behind one upstream: failed connections retried on
//! another target, and targets that keep failing taken out of rotation for a
//! while (passive health checking).

use crate::support::config::{Config, Pool, Route};
use crate::support::{Gateway, Upstream, client, get, send};
use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use serde_json::{Value, json};
use std::time::Duration;

/// A local port nothing listens on: connections to it are refused.
async fn dead_port() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    addr.to_string()
}

/// An admin listener and a catch-all route to the upstream `svc`: `targets`,
/// a 2 s connect timeout and `settings`.
fn config(targets: &[&str], settings: Value) -> Config {
    Config::new()
        .admin()
        .upstream(
            "svc",
            Pool::new(targets)
                .with("connect_timeout", json!("2s"))
                .settings(settings),
        )
        .route(Route::new("all", "/{*rest}").upstream("svc"))
}

fn ejections(metrics: &str) -> Option<f64> {
    metrics
        .lines()
        .find(|line| line.starts_with("gateway_upstream_ejections_total{upstream=\"svc\"}"))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
}

async fn post(gw: &Gateway, body: &'static str) -> u16 {
    let request = Request::post(gw.url("/submit"))
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .expect("request");
    send(&client(), request).await.status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_connection_is_retried_on_another_target_when_there_is_no_body() {
    let live = Upstream::start("live").await;
    let dead = dead_port().await;
    // max_fails = 0: the dead target stays in rotation, so every other
    // request meets it.
    let gw = config(&[&dead, &live.addr.to_string()], json!({ "max_fails": 0 })).start();
    for _ in 0..6 {
        let reply = get(&gw.url("/items")).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert_eq!(reply.json()["upstream"], "live");
    }
    assert_eq!(live.hits(), 6);

    // A body may have been read already: never replayed. Of two requests in a
    // row, round robin sends one to each target.
    let mut statuses = vec![post(&gw, "one").await, post(&gw, "two").await];
    statuses.sort_unstable();
    assert_eq!(statuses, vec![200, 502]);
    assert_eq!(live.hits(), 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_zero_answers_502_for_the_dead_target() {
    let live = Upstream::start("live").await;
    let dead = dead_port().await;
    let gw = config(
        &[&dead, &live.addr.to_string()],
        json!({ "max_fails": 0, "retries": 0 }),
    )
    .start();
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(get(&gw.url("/items")).await.status);
    }
    statuses.sort_unstable();
    assert_eq!(statuses, vec![200, 200, 502, 502]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_failing_max_fails_times_is_skipped_for_fail_timeout() {
    let live = Upstream::start("live").await;
    let dead = dead_port().await;
    let gw = config(
        &[&dead, &live.addr.to_string()],
        json!({ "max_fails": 2, "fail_timeout": "1s", "retries": 0 }),
    )
    .start();
    // Round robin alternates until the dead target has failed twice; then
    // only the live one is used.
    let mut failed = 0;
    for _ in 0..10 {
        match get(&gw.url("/items")).await.status {
            200 => {}
            502 => failed += 1,
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!(failed, 2, "two failures take the target out");
    assert_eq!(live.hits(), 8);
    let metrics = get(&gw.admin_url("/metrics")).await.body;
    assert_eq!(ejections(&metrics), Some(1.0), "{metrics}");
    assert!(gw.log().contains("taken out of rotation"), "{}", gw.log());
    // The admin API shows which target is out, and for how long.
    let state = get(&gw.admin_url("/upstreams")).await.json();
    let targets = &state["upstreams"][0]["targets"];
    assert_eq!(state["upstreams"][0]["name"], "svc");
    assert_eq!(targets[0]["target"], format!("http://{dead}"));
    assert_eq!(targets[0]["state"], "ejected", "{state}");
    assert_eq!(targets[0]["failed_connections_in_a_row"], 2);
    let left = targets[0]["ejected_for_ms"].as_u64().unwrap_or(0);
    assert!((1..=1000).contains(&left), "{state}");
    assert_eq!(targets[1]["state"], "in rotation", "{state}");

    // After fail_timeout it is tried again, and one more failure is enough
    // to take it out again.
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let mut failed = 0;
    for _ in 0..6 {
        if get(&gw.url("/items")).await.status == 502 {
            failed += 1;
        }
    }
    assert_eq!(failed, 1);
    let metrics = get(&gw.admin_url("/metrics")).await.body;
    assert_eq!(ejections(&metrics), Some(2.0), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_taken_out_stays_out_when_a_reload_rebuilds_its_upstream() {
    let live = Upstream::start("live").await;
    let dead = dead_port().await;
    let live_addr = live.addr.to_string();
    let targets = [dead.as_str(), live_addr.as_str()];
    let settings = json!({ "max_fails": 1, "fail_timeout": "60s", "retries": 0 });
    let gw = config(&targets, settings.clone()).start();
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(get(&gw.url("/items")).await.status);
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 502).count(),
        1,
        "{statuses:?}"
    );

    let built_ms_ago = |state: &serde_json::Value| state["upstreams"][0]["built_ms_ago"].as_u64();
    let before = get(&gw.admin_url("/upstreams")).await.json();
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Another connect_timeout: the upstream is built anew (its pools too).
    let mut changed = settings;
    changed["connect_timeout"] = json!("3s");
    config(&targets, changed).write(gw.config_path());
    let reload = Request::post(gw.admin_url("/reload"))
        .body(Full::<Bytes>::default())
        .expect("request");
    let reply = send(&client(), reload).await;
    assert_eq!(reply.status, 200, "{}", reply.body);

    // The dead target is still out: nothing fails, the live one serves all.
    let hits = live.hits();
    for _ in 0..6 {
        assert_eq!(get(&gw.url("/items")).await.status, 200);
    }
    assert_eq!(live.hits() - hits, 6);
    let state = get(&gw.admin_url("/upstreams")).await.json();
    // Built anew by the reload (its age started over), not kept.
    assert!(
        built_ms_ago(&state) < built_ms_ago(&before).map(|ms| ms + 300),
        "{before} then {state}"
    );
    let target = &state["upstreams"][0]["targets"][0];
    assert_eq!(target["state"], "ejected", "{state}");
    let left = target["ejected_for_ms"].as_u64().unwrap_or(0);
    assert!((50_000..=60_000).contains(&left), "{state}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_every_target_is_out_they_are_still_tried() {
    let first = dead_port().await;
    let second = dead_port().await;
    let gw = config(
        &[&first, &second],
        json!({ "max_fails": 1, "fail_timeout": "1h" }),
    )
    .start();
    for _ in 0..4 {
        assert_eq!(get(&gw.url("/items")).await.status, 502);
    }
    let metrics = get(&gw.admin_url("/metrics")).await.body;
    assert_eq!(ejections(&metrics), Some(2.0), "{metrics}");

    // Both are out for an hour, yet a target that comes back is found, and
    // its first answer puts it back in rotation.
    let listener = tokio::net::TcpListener::bind(&first)
        .await
        .expect("bind the first target's port again");
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let mut head = Vec::new();
                let mut chunk = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&chunk[..n]),
                    }
                }
                let _ = stream
                    .write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\nconnection: close\r\n\r\nback",
                    )
                    .await;
            });
        }
    });
    let mut ok = 0;
    for _ in 0..6 {
        if get(&gw.url("/items")).await.status == 200 {
            ok += 1;
        }
    }
    assert!(ok >= 5, "{ok} of 6 answered after the target came back");
}

/// An HTTPS upstream presenting a self-signed certificate for `localhost`;
/// it answers `tls:HOST` (the `Host` it was sent). Returns its address and
/// the certificate's PEM.
async fn tls_upstream() -> (std::net::SocketAddr, String) {
    let (config, ca) = crate::support::localhost_tls(&[]);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let service =
        hyper::service::service_fn(|req: http::Request<hyper::body::Incoming>| async move {
            let host = req
                .headers()
                .get(http::header::HOST)
                .and_then(|h| h.to_str().ok())
                .unwrap_or("-")
                .to_string();
            Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(Bytes::from(format!(
                "tls:{host}"
            )))))
        });
    crate::support::serve_http1(listener, Some(config), service);
    (addr, ca)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_targets_are_verified_against_the_configured_authorities() {
    let (addr, ca) = tls_upstream().await;
    let port = addr.port();
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("ca.pem"), &ca).expect("ca");
    let by_name = format!("https://localhost:{port}");
    let by_address = format!("https://127.0.0.1:{port}");
    Config::new()
        // Trusted through ca_file, reached by name.
        .upstream("trusted", Pool::new([&by_name]).ca_file("ca.pem"))
        // Reached by address, checked against the name in tls_server_name.
        .upstream(
            "by-address",
            Pool::new([&by_address])
                .ca_file("ca.pem")
                .tls_server_name("localhost"),
        )
        // The built-in public roots do not know this certificate.
        .upstream("public-roots", Pool::new([&by_name]))
        // The certificate is not for this name.
        .upstream(
            "wrong-name",
            Pool::new([&by_address])
                .ca_file("ca.pem")
                .tls_server_name("api.example.com"),
        )
        .route(Route::new("trusted", "/trusted").upstream("trusted"))
        .route(Route::new("by-address", "/by-address").upstream("by-address"))
        .route(Route::new("public-roots", "/public-roots").upstream("public-roots"))
        .route(Route::new("wrong-name", "/wrong-name").upstream("wrong-name"))
        .write(dir.path().join("gateway.toml"));
    let gw = Gateway::start_at(&dir.path().join("gateway.toml"));

    let trusted = get(&gw.url("/trusted")).await;
    assert_eq!(trusted.status, 200, "{}", trusted.body);
    assert_eq!(trusted.body, format!("tls:localhost:{port}"));
    let by_address = get(&gw.url("/by-address")).await;
    assert_eq!(by_address.status, 200, "{}", by_address.body);
    assert_eq!(by_address.body, format!("tls:127.0.0.1:{port}"));

    for refused in ["/public-roots", "/wrong-name"] {
        let reply = get(&gw.url(refused)).await;
        assert_eq!(reply.status, 502, "{refused}: {}", reply.body);
    }
    // Another CA in ca_file is picked up by a reload: the upstream is built
    // anew (pooled connections included) and no longer trusts the target.
    let other =
        rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("certificate");
    std::fs::write(dir.path().join("ca.pem"), other.cert.pem()).expect("ca");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while get(&gw.url("/trusted")).await.status != 502 {
        assert!(
            std::time::Instant::now() < deadline,
            "the new ca_file was not applied:\n{}",
            gw.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let log = gw.log();
    assert!(log.contains("UnknownIssuer"), "{log}");
    assert!(
        log.contains("certificate not valid for name \"api.example.com\""),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_cutting_its_upload_short_is_not_held_against_the_target() {
    use tokio::io::AsyncWriteExt;
    let a = Upstream::start("a").await;
    let b = Upstream::start("b").await;
    let gw = config(
        &[&a.addr.to_string(), &b.addr.to_string()],
        json!({ "max_fails": 1, "fail_timeout": "1h" }),
    )
    .start();
    let addr = gw.url("");
    for _ in 0..4 {
        let mut stream = tokio::net::TcpStream::connect(addr.trim_start_matches("http://"))
            .await
            .expect("connect");
        stream
            .write_all(
                b"POST /upload HTTP/1.1\r\nhost: x\r\ncontent-length: 100000\r\n\r\nonly a little",
            )
            .await
            .expect("write");
        tokio::time::sleep(Duration::from_millis(100)).await;
        drop(stream);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let metrics = get(&gw.admin_url("/metrics")).await.body;
    assert_eq!(ejections(&metrics), Some(0.0), "{metrics}");
    // Both targets still take their share.
    let hits = (a.hits(), b.hits());
    for _ in 0..4 {
        assert_eq!(get(&gw.url("/items")).await.status, 200);
    }
    assert_eq!((a.hits() - hits.0, b.hits() - hits.1), (2, 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_health_checks_take_an_unhealthy_target_out_and_bring_it_back() {
    let steady = Upstream::start("steady").await;
    // Answers "flaky" to everything, or 503 to everything when switched off:
    // its connections never fail, so only the checks can see it is sick.
    let flaky = crate::support::DocumentServer::start("flaky").await;
    let gw = config(
        &[&steady.addr.to_string(), &flaky.addr.to_string()],
        json!({
            "health_check": {
                "path": "/healthz",
                "interval": "100ms",
                "timeout": "1s",
                "healthy": 2,
                "unhealthy": 2,
            },
        }),
    )
    .start();
    let served_by_flaky =
        |replies: &[crate::support::Reply]| replies.iter().filter(|r| r.body == "flaky").count();
    let round = || async {
        let mut replies = Vec::new();
        for _ in 0..10 {
            replies.push(get(&gw.url("/items")).await);
        }
        replies
    };
    let replies = round().await;
    assert_eq!(served_by_flaky(&replies), 5, "both targets in rotation");

    flaky.serve(None);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let replies = round().await;
    assert!(
        replies.iter().all(|r| r.status == 200),
        "the failing target still got traffic: {:?}",
        replies.iter().map(|r| r.status).collect::<Vec<_>>()
    );
    assert_eq!(served_by_flaky(&replies), 0);
    let metrics = get(&gw.admin_url("/metrics")).await.body;
    assert_eq!(ejections(&metrics), Some(1.0), "{metrics}");
    assert!(
        gw.log().contains("failed 2 health checks in a row"),
        "{}",
        gw.log()
    );

    // A reload that builds the upstream anew keeps it out: no request
    // reaches it while the new checks would still be counting.
    let config_text = std::fs::read_to_string(gw.config_path()).expect("read");
    std::fs::write(
        gw.config_path(),
        config_text.replace("connect_timeout = \"2s\"", "connect_timeout = \"3s\""),
    )
    .expect("write");
    let reload = Request::post(gw.admin_url("/reload"))
        .body(Full::<Bytes>::default())
        .expect("request");
    assert_eq!(send(&client(), reload).await.status, 200);
    let replies = round().await;
    assert!(
        replies.iter().all(|r| r.status == 200),
        "the failing target got traffic after the reload: {:?}",
        replies.iter().map(|r| r.status).collect::<Vec<_>>()
    );

    flaky.serve(Some("flaky"));
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let replies = round().await;
    assert_eq!(served_by_flaky(&replies), 5, "back in rotation");
    assert!(gw.log().contains("back in rotation"), "{}", gw.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_requests_sheds_load_at_once_while_the_upstream_is_slow() {
    let upstream = Upstream::start("api").await;
    let addr = upstream.addr.to_string();
    let gw = config(&[&addr], json!({ "max_requests": 2 })).start();
    // Two slow requests in flight...
    let slow = |gw_url: String| tokio::spawn(async move { get(&gw_url).await.status });
    let first = slow(gw.url("/slow/3000"));
    let second = slow(gw.url("/slow/3000"));
    let waiting = std::time::Instant::now();
    while upstream.hits() < 2 {
        assert!(
            waiting.elapsed() < Duration::from_secs(10),
            "the slow requests never arrived"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // ...a third is turned away at once (not after they end), without
    // reaching the upstream.
    let started = std::time::Instant::now();
    let third = get(&gw.url("/fast")).await;
    assert_eq!(third.status, 503, "{}", third.body);
    assert!(third.body.contains("upstream busy"), "{}", third.body);
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(upstream.hits(), 2);
    let state = get(&gw.admin_url("/upstreams")).await.json();
    assert_eq!(state["upstreams"][0]["max_requests"], 2, "{state}");
    assert_eq!(state["upstreams"][0]["requests_in_flight"], 2, "{state}");
    assert_eq!(first.await.expect("first"), 200);
    assert_eq!(second.await.expect("second"), 200);
    // Their places are given back when their responses end.
    assert_eq!(get(&gw.url("/fast")).await.status, 200);
    let metrics = get(&gw.admin_url("/metrics")).await.body;
    assert!(
        metrics.contains("gateway_upstream_busy_total{upstream=\"svc\"} 1"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weights_share_the_requests_and_zero_drains_a_target() {
    let heavy = Upstream::start("heavy").await;
    let light = Upstream::start("light").await;
    let drained = Upstream::start("drained").await;
    let targets = [
        heavy.addr.to_string(),
        light.addr.to_string(),
        drained.addr.to_string(),
    ];
    let targets: Vec<&str> = targets.iter().map(String::as_str).collect();
    let gw = config(&targets, json!({ "weights": [3, 1, 0] })).start();
    for _ in 0..40 {
        assert_eq!(get(&gw.url("/x")).await.status, 200);
    }
    // Every cycle of 4 gives 3 to the heavy target and 1 to the light one.
    assert_eq!((heavy.hits(), light.hits(), drained.hits()), (30, 10, 0));
    let state = get(&gw.admin_url("/upstreams")).await.json();
    let states: Vec<(u64, String)> = state["upstreams"][0]["targets"]
        .as_array()
        .map(|targets| {
            targets
                .iter()
                .map(|t| (t["weight"].as_u64().unwrap_or(99), t["state"].to_string()))
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(
        states,
        [
            (3, "\"in rotation\"".to_string()),
            (1, "\"in rotation\"".to_string()),
            (0, "\"drained\"".to_string())
        ],
        "{state}"
    );

    // The heavy one down: its requests are retried on, and its share goes
    // to, the light one, never the drained one.
    let dead = dead_port().await;
    let targets = [dead.as_str(), targets[1], targets[2]];
    let gw = config(&targets, json!({ "weights": [3, 1, 0] })).start();
    for _ in 0..8 {
        assert_eq!(get(&gw.url("/x")).await.status, 200);
    }
    assert_eq!(drained.hits(), 0);
    assert_eq!(light.hits(), 18);
}
