//! Micro-benchmark: the cost of one hook call through the plugin host, measured
//! on warm instances. Run with `cargo bench -p gateway --bench plugin_call`.
//!
//! Prints one line per case: median and p99 nanoseconds per call over batches.

use gateway::config::OnError;
use gateway::pipeline::{Entry, Pipeline};
use gateway::plugin::{Context, EntryLimits, HostEnv, InstancePool, PluginEngine, Request};
use std::time::{Duration, Instant};

fn request() -> Request {
    Request {
        method: "GET".into(),
        scheme: "http".into(),
        authority: "api.example.com".into(),
        path: "/users/42".into(),
        query: "page=1".into(),
        headers: {
            let mut headers = http::HeaderMap::new();
            for i in 0..10 {
                let name = http::HeaderName::try_from(format!("x-header-{i}")).expect("name");
                headers.insert(
                    name,
                    http::HeaderValue::from_static("some-typical-value-0123456789"),
                );
            }
            gateway::plugin::encode_headers(&headers)
        },
        body: None,
        client_addr: "127.0.0.1:50000".into(),
        route: "users".into(),
        params: vec![("id".into(), "42".into())],
    }
}

async fn pipeline(engine: &PluginEngine, bytes: &[u8], config: &str) -> Pipeline {
    let compiled = engine.compile(bytes).expect("compile");
    let limits = EntryLimits {
        deadline: Duration::from_millis(100),
        memory: 64 << 20,
        pool_size: 4,
    };
    let pool = InstancePool::new(
        engine.engine(),
        compiled.pre,
        config.to_string(),
        limits,
        HostEnv::default(),
    )
    .await
    .expect("init");
    Pipeline::new(vec![Entry {
        reference: "bench".into(),
        pool,
        on_error: OnError::Fail,
        max_body: 1 << 20,
    }])
}

async fn measure(name: &str, pipeline: &Pipeline) {
    const BATCH: u32 = 2_000;
    let mut per_call = Vec::new();
    for round in 0..60 {
        let mut req = request();
        let mut ctx = Context::new();
        let started = Instant::now();
        for _ in 0..BATCH {
            let _ = pipeline
                .run_request(&mut req, &mut ctx)
                .await
                .expect("call");
        }
        // The first rounds warm caches and the allocator.
        if round >= 10 {
            per_call.push(started.elapsed().as_nanos() as f64 / f64::from(BATCH));
        }
    }
    per_call.sort_by(f64::total_cmp);
    let median = per_call[per_call.len() / 2];
    let p99 = per_call[per_call.len() * 99 / 100];
    println!("plugin_call {name}: median {median:.0} ns/call, p99 {p99:.0} ns/call");
}

fn main() {
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio");
    tokio.block_on(run());
}

async fn run() {
    let engine = PluginEngine::new().expect("engine");
    let headers = gateway::builtin::find("headers").expect("headers built-in");
    let noop = pipeline(&engine, headers, r#"{"response": {"set": {"x-a": "1"}}}"#).await;
    // The response-only entry is skipped by the request phase: the host's cost
    // of deciding not to call.
    measure("skipped (phase not declared)", &noop).await;
    let set = pipeline(&engine, headers, r#"{"request": {"set": {"x-a": "1"}}}"#).await;
    measure("headers: set one request header (edit crosses back)", &set).await;
    let misbehave = std::fs::read(concat!(
        env!("GATEWAY_PLUGIN_DIR"),
        "/misbehave_plugin.wasm"
    ))
    .expect("misbehave");
    let ok = pipeline(&engine, &misbehave, r#"{"mode": "ok"}"#).await;
    measure("no-op request hook (request crosses in, nothing back)", &ok).await;
}
