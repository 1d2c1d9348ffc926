//! Micro-benchmark: the cost of one hook call through the plugin host, measured
//! on warm instances. Run with `cargo bench -p gateway --bench plugin_call`.
//!
//! Prints one line per case: median and p99 nanoseconds per call over batches.

use gateway::config::OnError;
use gateway::pipeline::{Entry, Pipeline};
use gateway::plugin::{Context, EntryLimits, HostEnv, InstancePool, PluginEngine, Request};
use std::time::{Duration, Instant};

fn request() -> Request {
    request_with(&[])
}

fn request_with(extra: &[(&str, &str)]) -> Request {
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
            for (name, value) in extra {
                headers.insert(
                    http::HeaderName::try_from(*name).expect("name"),
                    http::HeaderValue::try_from(*value).expect("value"),
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
    pipeline_in(
        engine,
        bytes,
        config,
        HostEnv::new(engine.services().clone()),
    )
    .await
}

async fn pipeline_in(engine: &PluginEngine, bytes: &[u8], config: &str, env: HostEnv) -> Pipeline {
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
        env,
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
    measure_with(name, pipeline, request).await;
}

async fn measure_with(name: &str, pipeline: &Pipeline, make: impl Fn() -> Request) {
    const BATCH: u32 = 2_000;
    let mut per_call = Vec::new();
    for round in 0..60 {
        let mut req = make();
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

    let identity = identity_env(&engine);
    let key_auth = gateway::builtin::find("key-auth").expect("key-auth built-in");
    let keyed = pipeline_in(
        &engine,
        key_auth,
        r#"{"hide_credentials": false}"#,
        identity,
    )
    .await;
    measure_with("key-auth: valid key, consumer headers set", &keyed, || {
        request_with(&[("x-api-key", "bench-key-0123456789")])
    })
    .await;
}

/// A host environment with 1000 consumers, one of which owns the bench key.
fn identity_env(engine: &PluginEngine) -> HostEnv {
    let mut text = String::new();
    for i in 0..1000 {
        text.push_str(&format!(
            "[[consumers]]\nname = \"c{i}\"\ngroups = [\"g\"]\nkeys = [{{ plaintext = \"key-{i:010}\" }}]\n"
        ));
    }
    text.push_str(
        "[[consumers]]\nname = \"bench\"\nkeys = [{ plaintext = \"bench-key-0123456789\" }]\n",
    );
    let source = gateway::config::Source::from_text(std::path::Path::new("bench.toml"), text);
    let config = source.parse().expect("bench config");
    let consumers = gateway::identity::Consumers::build(&source, &config).expect("consumers");
    let mut env = HostEnv::new(engine.services().clone());
    env.consumers = std::sync::Arc::new(consumers);
    env
}
