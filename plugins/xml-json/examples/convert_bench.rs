//! Times XML -> JSON on `bench/run.sh`'s RSS document (48 items, 9465 bytes)
//! with the default mapping: natively with `cargo run --release --example
//! convert_bench`, or in Wasm, built for `wasm32-wasip2` and run by
//! `bench/wasm_run.rs`, so the two compare the same code.
//!
//! Prints the median and fastest of 30 rounds of about 2 MB each.

use std::time::Instant;

fn main() {
    let mut doc = String::from(
        r#"<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel><title>Bench feed</title>"#,
    );
    for i in 0..48 {
        doc.push_str(&format!(
            r#"<item id="{i}"><title>Item number {i}</title><link>https://example.com/items/{i}</link><description>Description of item {i}, with a little text.</description><price currency="EUR">{i}.99</price></item>"#
        ));
    }
    doc.push_str("</channel></rss>");
    let config = plugin_sdk::Config::from_value(serde_json::json!({}));
    let options = match plugin_xml_json::Options::from_config(&config) {
        Ok(options) => options,
        Err(error) => panic!("the default options: {error}"),
    };
    let batch = (2_000_000 / doc.len()).clamp(1, 400);
    let mut rounds = Vec::new();
    let mut output = 0;
    for _ in 0..30 {
        let started = Instant::now();
        for _ in 0..batch {
            match plugin_xml_json::xml_to_json(doc.as_bytes(), &options.mapping) {
                Ok(json) => output = json.len(),
                Err(error) => panic!("the bench document: {error}"),
            }
        }
        rounds.push(started.elapsed().as_nanos() as f64 / batch as f64);
    }
    rounds.sort_by(f64::total_cmp);
    let median = rounds[rounds.len() / 2];
    println!(
        "{} bytes -> {output} bytes: median {median:.0} ns/call, fastest {:.0}, {:.2} ns/byte",
        doc.len(),
        rounds[0],
        median / doc.len() as f64
    );
}
