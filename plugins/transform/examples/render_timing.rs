//! Times a typical request mapping over a ~10 KB JSON body, natively, against
//! a peer in the same run: parsing and re-serialising the same body with
//! serde_json, the least any body rewrite has to do. Also finds the fuel the
//! mapping needs, to compare with the default budget.
//!
//! `cargo run --release -p plugin-transform --example render_timing`

use plugin_sdk::{Action, Config, Context, Plugin, Request};
use plugin_transform::{DEFAULT_FUEL, Transform};
use serde_json::{Value, json};
use std::hint::black_box;
use std::time::Instant;

const TEMPLATE: &str = r#"{
  "orderId": {{ params.id }},
  "customer": {
    "name": {{ body.customer.first ~ " " ~ body.customer.last }},
    "email": {{ body.customer.email | lower }},
    "tier": {{ body.customer.tier | default("standard") }}
  },
  "lines": [
{% for item in body.items %}
    {"sku": {{ item.sku }}, "qty": {{ item.qty }}, "price": {{ item.price_cents / 100 }}, "note": {{ item.note | default(none) }}}{% if not loop.last %},{% endif %}

{% endfor %}
  ],
  "count": {{ body.items | length }},
  "channel": {{ headers["x-client"] | default("web") }},
  "consumer": {{ consumer | default("anonymous") }},
  "express": {{ query.express | default("no") == "yes" }}
}"#;

fn body() -> Vec<u8> {
    let items: Vec<Value> = (0..80)
        .map(|i| {
            json!({
                "sku": format!("SKU-{i:05}"),
                "qty": i % 7 + 1,
                "price_cents": 1999 + i * 13,
                "description": "A thing that is sold in this shop, described at some length",
            })
        })
        .collect();
    let body = json!({
        "customer": {"first": "Ann", "last": "Lee", "email": "Ann@Example.com"},
        "items": items,
    });
    serde_json::to_vec(&body).unwrap_or_default()
}

fn transform(fuel: u64) -> Option<Transform> {
    Transform::init(Config::from_value(
        json!({"fuel": fuel, "request": {"body": TEMPLATE}}),
    ))
    .ok()
}

fn request(body: &[u8]) -> Request {
    Request::new("POST", "/orders/o-1?express=yes")
        .with_param("id", "o-1")
        .with_header("x-client", "mobile")
        .with_header("content-type", "application/json")
        .with_body(body.to_vec())
}

fn maps(t: &Transform, body: &[u8]) -> bool {
    let mut ctx = Context::new();
    ctx.set("consumer", "alice");
    matches!(t.on_request(&mut request(body), &mut ctx), Action::Continue)
}

fn median_micros(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

fn main() {
    let body = body();
    let Some(t) = transform(DEFAULT_FUEL) else {
        eprintln!("the template does not compile");
        return;
    };
    assert!(maps(&t, &body), "the mapping fails");

    let rounds = 2000;
    let mut mapped = Vec::with_capacity(rounds);
    let mut peer = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let req = request(&body);
        let mut ctx = Context::new();
        ctx.set("consumer", "alice");
        let mut req2 = req.clone();
        let start = Instant::now();
        black_box(t.on_request(&mut req2, &mut ctx));
        mapped.push(start.elapsed().as_secs_f64() * 1e6);

        let start = Instant::now();
        let value: Value = serde_json::from_slice(black_box(req.body().unwrap_or_default()))
            .unwrap_or(Value::Null);
        black_box(serde_json::to_vec(&value).unwrap_or_default());
        peer.push(start.elapsed().as_secs_f64() * 1e6);
    }
    let (mapped, peer) = (median_micros(mapped), median_micros(peer));

    // The least fuel that still maps it.
    let (mut low, mut high) = (1_000u64, DEFAULT_FUEL);
    while low < high {
        let mid = (low + high) / 2;
        if transform(mid).is_some_and(|t| maps(&t, &body)) {
            high = mid;
        } else {
            low = mid + 1;
        }
    }

    println!("body: {} bytes, 80 items", body.len());
    println!("transform on_request (parse, render, validate): median {mapped:.1} us");
    println!("peer: serde_json parse + serialise:              median {peer:.1} us");
    println!("ratio: {:.1}x", mapped / peer);
    println!("fuel used: {low} of the default {DEFAULT_FUEL}");

    // How long a runaway template runs before the default fuel stops it.
    let runaway = Transform::init(Config::from_value(json!({"request": {
        "content_type": "text/plain",
        "body": "{% for i in range(100000) %}{% for j in range(100000) %}{{ i }}{% endfor %}{% endfor %}",
    }})));
    if let Ok(runaway) = runaway {
        let mut times = Vec::new();
        for _ in 0..50 {
            let start = Instant::now();
            black_box(runaway.on_request(&mut request(b""), &mut Context::new()));
            times.push(start.elapsed().as_secs_f64() * 1e6);
        }
        println!(
            "a runaway loop is stopped after: median {:.0} us",
            median_micros(times)
        );
    }
}
