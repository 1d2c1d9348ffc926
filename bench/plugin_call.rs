//! Micro-benchmark: the cost of one hook call through the plugin host, measured
//! on warm instances. Run with `cargo bench -p gateway --bench plugin_call`.
//!
//! Prints one line per case: median and p99 nanoseconds per call over batches.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use gateway::config::OnError;
use gateway::pipeline::{Entry, Pipeline};
use gateway::plugin::{
    Context, EntryLimits, HostEnv, InstancePool, PluginEngine, Request, Response,
};
use plugin_shared::crypto::Algorithm;
use plugin_shared::crypto::native::NativeKey as VerifyingKey;
use std::time::{Duration, Instant};

fn request() -> Request {
    request_with(&[])
}

fn request_with(extra: &[(&str, &str)]) -> Request {
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
    let pseudo = [
        (":method", "GET"),
        (":scheme", "http"),
        (":authority", "api.example.com"),
        (":path", "/users/42"),
        (":query", "page=1"),
        (":client-addr", "127.0.0.1:50000"),
        (":route", "users"),
        (":request-id", "0b9c6c2e-1f0c-4c59-9d3a-8a4f3f2d6e11"),
    ];
    let params = [("id".to_string(), "42".to_string())];
    Request {
        head: gateway::plugin::encode_head(&pseudo, &params, &headers),
        body: None,
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
    let compiled_hash = compiled.hash.to_string();
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
    Pipeline::new(
        vec![std::sync::Arc::new(Entry::new(
            "bench".into(),
            pool,
            OnError::Fail,
            1 << 20,
            compiled_hash,
        ))],
        u64::MAX,
    )
}

async fn measure(name: &str, pipeline: &Pipeline) {
    measure_with(name, pipeline, request).await;
}

async fn measure_with(name: &str, pipeline: &Pipeline, make: impl Fn() -> Request) {
    const BATCH: u32 = 2_000;
    // `PLUGIN_CALL_ONLY=no-op` measures only the cases whose name contains it
    // (to profile one case).
    if let Ok(only) = std::env::var("PLUGIN_CALL_ONLY")
        && !name.contains(&only)
    {
        return;
    }
    let mut per_call = Vec::new();
    for round in 0..60 {
        let mut req = make();
        let mut ctx = Context::new();
        let started = Instant::now();
        for _ in 0..BATCH {
            let _ = pipeline
                .run_request(&mut req, &mut ctx, None)
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

    // The same call after the caches were filled with other data, as happens
    // between a gateway's calls (sockets, hyper, other requests).
    // `PLUGIN_CALL_COLD=0` skips it (to profile the hot call alone).
    if std::env::var("PLUGIN_CALL_COLD").is_ok_and(|v| v == "0") {
        return;
    }
    let mut evict = vec![0u8; EVICT_BYTES];
    let mut cold = Vec::new();
    let mut req = make();
    let mut ctx = Context::new();
    for round in 0..COLD_CALLS {
        for line in evict.chunks_mut(64) {
            line[0] = line[0].wrapping_add(round as u8);
        }
        std::hint::black_box(&evict);
        let started = Instant::now();
        let _ = pipeline
            .run_request(&mut req, &mut ctx, None)
            .await
            .expect("call");
        cold.push(started.elapsed().as_nanos() as f64);
    }
    cold.sort_by(f64::total_cmp);
    println!(
        "plugin_call {name}, caches cold: median {:.0} ns/call",
        cold[cold.len() / 2]
    );
}

/// Data written between cold calls: more than the caches hold.
const EVICT_BYTES: usize = 16 << 20;
/// Cold calls measured per case.
const COLD_CALLS: usize = 300;

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

    let jwt = gateway::builtin::find("jwt").expect("jwt built-in");
    let es_key = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).expect("keygen");
    let point = es_key.public_key().as_ref();
    let jwks = serde_json::json!({"keys": [{
        "kty": "EC", "crv": "P-256", "kid": "k1",
        "x": B64.encode(&point[1..33]), "y": B64.encode(&point[33..65]),
    }]});
    let config = serde_json::json!({
        "algorithms": ["ES256"], "jwks": jwks.to_string(), "audience": "bench",
        "claims_to_headers": {"sub": "x-user"},
    });
    let token = es256_token(&es_key);
    let verified = pipeline_in(
        &engine,
        jwt,
        &config.to_string(),
        HostEnv::new(engine.services().clone()),
    )
    .await;
    let bearer = format!("Bearer {token}");
    measure_with(
        "jwt: ES256 token, verified-token cache hit, one claim to a header",
        &verified,
        || request_with(&[("authorization", bearer.as_str())]),
    )
    .await;

    let rate_limit = gateway::builtin::find("rate-limit").expect("rate-limit built-in");
    let limited = pipeline(
        &engine,
        rate_limit,
        r#"{"limits": [{"rate": "1000000000/s", "by": ["ip"]}], "headers": false}"#,
    )
    .await;
    measure("rate-limit: one limit by client IP, allowed", &limited).await;

    let xml_json = gateway::builtin::find("xml-json").expect("xml-json built-in");
    let converting = pipeline(&engine, xml_json, "{}").await;
    // The bench document, then smaller and larger ones up to the 1 MiB body
    // cap: the conversion's cost per byte should stay flat.
    for items in [48, 5, 480, 5000] {
        measure_xml_to_json(&converting, items).await;
    }

    // What the cache saves: one signature check, natively, per algorithm.
    verify_cost("ES256", &es_key_check(&es_key, &token));
    let (rsa_key, rsa_token) = rs256_token();
    verify_cost("RS256 (2048-bit)", &(rsa_key, rsa_token));
}

fn es256_token(key: &EcdsaKeyPair) -> String {
    let header = B64.encode(r#"{"alg":"ES256","kid":"k1","typ":"JWT"}"#);
    let claims = B64.encode(
        serde_json::json!({"sub": "user-42", "aud": "bench", "exp": 4_102_444_800u64}).to_string(),
    );
    let input = format!("{header}.{claims}");
    let signature = key
        .sign(&SystemRandom::new(), input.as_bytes())
        .expect("sign");
    format!("{input}.{}", B64.encode(signature.as_ref()))
}

fn es_key_check(key: &EcdsaKeyPair, token: &str) -> (VerifyingKey, String) {
    let point = key.public_key().as_ref();
    let jwk = serde_json::json!({
        "kty": "EC", "crv": "P-256",
        "x": B64.encode(&point[1..33]), "y": B64.encode(&point[33..65]),
    });
    (
        VerifyingKey::from_jwk(Algorithm::Es256, &jwk.to_string()).expect("key"),
        token.to_string(),
    )
}

fn rs256_token() -> (VerifyingKey, String) {
    let key = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).expect("keygen");
    let der = key.public_key().as_ref();
    let pem = format!(
        "-----BEGIN RSA PUBLIC KEY-----\n{}\n-----END RSA PUBLIC KEY-----\n",
        base64::engine::general_purpose::STANDARD.encode(der)
    );
    let input = format!(
        "{}.{}",
        B64.encode(r#"{"alg":"RS256"}"#),
        B64.encode(r#"{"sub":"user-42"}"#)
    );
    let mut signature = vec![0u8; key.public_modulus_len()];
    key.sign(
        &aws_lc_rs::signature::RSA_PKCS1_SHA256,
        &SystemRandom::new(),
        input.as_bytes(),
        &mut signature,
    )
    .expect("sign");
    let token = format!("{input}.{}", B64.encode(&signature));
    (
        VerifyingKey::from_pem(Algorithm::Rs256, &pem).expect("key"),
        token,
    )
}

/// Median time of one native signature check of `token` under `key`.
fn verify_cost(name: &str, (key, token): &(VerifyingKey, String)) {
    if std::env::var("PLUGIN_CALL_ONLY").is_ok_and(|only| !"signature check".contains(&only)) {
        return;
    }
    let (input, signature) = token.rsplit_once('.').expect("token");
    let signature = B64.decode(signature).expect("signature");
    assert!(
        key.verify(input.as_bytes(), &signature),
        "{name}: bench token does not verify"
    );
    let mut samples = Vec::new();
    for _ in 0..30 {
        let started = Instant::now();
        for _ in 0..200 {
            std::hint::black_box(key.verify(input.as_bytes(), &signature));
        }
        samples.push(started.elapsed().as_nanos() as f64 / 200.0);
    }
    samples.sort_by(f64::total_cmp);
    println!(
        "plugin_call signature check, {name}, native (what a cache miss adds): median {:.0} ns",
        samples[samples.len() / 2]
    );
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

/// An RSS document of `count` items; with 48 it is the 10 KB document
/// `bench/run.sh` serves.
fn rss_document(count: usize) -> Vec<u8> {
    let mut items = String::new();
    for i in 0..count {
        items.push_str(&format!(
            "<item id=\"{i}\"><title>Item number {i}</title><link>https://example.com/items/{i}</link>\
             <description>Description of item {i}, with a little text.</description>\
             <price currency=\"EUR\">{i}.99</price></item>"
        ));
    }
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><rss version=\"2.0\"><channel>\
         <title>Bench feed</title>{items}</channel></rss>"
    )
    .into_bytes()
}

/// One response-phase call converting a document of `items` items to JSON:
/// the body crosses in, is converted by the plugin, and the JSON crosses back.
async fn measure_xml_to_json(pipeline: &Pipeline, items: usize) {
    let document = rss_document(items);
    let name = format!(
        "xml-json: {}-byte XML response body to JSON (body crosses both ways)",
        document.len()
    );
    if let Ok(only) = std::env::var("PLUGIN_CALL_ONLY")
        && !name.contains(&only)
    {
        return;
    }
    // About 2 MB converted per round, at least one call.
    let batch = u32::try_from((2_000_000 / document.len()).clamp(1, 200)).unwrap_or(1);
    let mut headers = http::HeaderMap::new();
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/xml"),
    );
    let headers = gateway::plugin::encode_headers(&headers);
    let head = request();
    let mut per_call = Vec::new();
    for round in 0..25 {
        let mut ctx = Context::new();
        let started = Instant::now();
        for _ in 0..batch {
            let mut response = Response {
                status: 200,
                headers: headers.clone(),
                body: Some(document.clone()),
            };
            pipeline
                .run_response(&head, &mut response, 1, &mut ctx)
                .await
                .expect("convert");
            assert!(
                response
                    .body
                    .as_deref()
                    .is_some_and(|b| b.first() == Some(&b'{'))
            );
        }
        if round >= 5 {
            per_call.push(started.elapsed().as_nanos() as f64 / f64::from(batch));
        }
    }
    per_call.sort_by(f64::total_cmp);
    let median = per_call[per_call.len() / 2];
    println!(
        "plugin_call {name}: median {median:.0} ns/call, {:.2} ns/byte",
        median / document.len() as f64
    );
}
