//! Several targets behind one upstream: failed connections retried on
//! another target, and targets that keep failing taken out of rotation for a
//! while (passive health checking).

use crate::support::{Gateway, Upstream, client, get, send};
use bytes::Bytes;
use http::Request;
use http_body_util::Full;
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

fn config(targets: &[&str], extra: &str) -> String {
    let targets = targets
        .iter()
        .map(|t| format!("\"{t}\""))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
[admin]
listen = "127.0.0.1:0"

[upstreams.svc]
targets = [{targets}]
connect_timeout = "2s"
{extra}

[[routes]]
name = "all"
path = "/{{*rest}}"
upstream = "svc"
"#
    )
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
    let gw = Gateway::start(&config(&[&dead, &live.addr.to_string()], "max_fails = 0"));
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
    let gw = Gateway::start(&config(
        &[&dead, &live.addr.to_string()],
        "max_fails = 0\nretries = 0",
    ));
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
    let gw = Gateway::start(&config(
        &[&dead, &live.addr.to_string()],
        "max_fails = 2\nfail_timeout = \"1s\"\nretries = 0",
    ));
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
async fn when_every_target_is_out_they_are_still_tried() {
    let first = dead_port().await;
    let second = dead_port().await;
    let gw = Gateway::start(&config(
        &[&first, &second],
        "max_fails = 1\nfail_timeout = \"1h\"",
    ));
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
