//! Conversion time, natively, against peers in the same run. Ignored by
//! default; run in release mode:
//!
//! ```text
//! cargo test -p plugin-xml-json --release --test perf -- --ignored --nocapture
//! ```
//!
//! Prints the median of 1000 runs for a ~10 KB XML response through
//! `on_response`, next to two peers on the same bytes: quick-xml's bare event
//! loop (the floor for any converter built on it) and serde_json parsing and
//! re-serialising the resulting JSON. Then time per byte at 10 KB, 100 KB and
//! 1 MB, which should stay flat (linear).

use plugin_sdk::{Config, Context, Plugin, Request, Response};
use plugin_xml_json::{Mapping, XmlJson, json_to_xml, xml_to_json};
use std::hint::black_box;
use std::time::{Duration, Instant};

/// An order-list response of about `size` bytes: attributes, namespaces,
/// repeated records, entities, mixed lengths.
fn document(size: usize) -> String {
    let mut xml = String::from(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/" xmlns:m="urn:example:orders">
  <soap:Body>
    <m:ListOrdersResponse total="many">
"#,
    );
    let mut i = 0;
    while xml.len() < size - 60 {
        xml.push_str(&format!(
            r#"      <m:Order id="A-{i}" status="shipped">
        <m:Customer>Customer {i} &amp; Co</m:Customer>
        <m:Total currency="EUR">{i}.50</m:Total>
        <m:Line sku="X-{i}" qty="2">Gear</m:Line>
        <m:Line sku="Y-{i}" qty="1">Card reader</m:Line>
      </m:Order>
"#
        ));
        i += 1;
    }
    xml.push_str("    </m:ListOrdersResponse>\n  </soap:Body>\n</soap:Envelope>\n");
    xml
}

fn median(runs: usize, mut work: impl FnMut()) -> Duration {
    for _ in 0..runs / 10 {
        work();
    }
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let started = Instant::now();
            work();
            started.elapsed()
        })
        .collect();
    times.sort();
    times[runs / 2]
}

fn quick_xml_events(xml: &str) -> usize {
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut events = 0;
    while !matches!(
        reader.read_event(),
        Ok(quick_xml::events::Event::Eof) | Err(_)
    ) {
        events += 1;
    }
    events
}

#[test]
#[ignore = "timing; run in release with --ignored --nocapture"]
fn conversion_time() {
    let xml = document(10 * 1024);
    let json = xml_to_json(xml.as_bytes(), &Mapping::default()).expect("converts");
    let plugin = XmlJson::init(Config::from_json("{}")).expect("valid");
    let response = Response::new(200)
        .with_header("content-type", "text/xml; charset=utf-8")
        .with_body(xml.clone());

    let on_response = median(1000, || {
        let mut resp = response.clone();
        plugin.on_response(&Request::new("GET", "/"), &mut resp, &mut Context::new());
        black_box(resp);
    });
    let converter = median(1000, || {
        black_box(xml_to_json(black_box(xml.as_bytes()), &Mapping::default()).ok());
    });
    let events = median(1000, || {
        black_box(quick_xml_events(black_box(&xml)));
    });
    let serde = median(1000, || {
        let value: serde_json::Value = serde_json::from_slice(black_box(&json)).expect("valid");
        black_box(serde_json::to_vec(&value).ok());
    });
    let back = median(1000, || {
        black_box(json_to_xml(black_box(&json), &Mapping::default()).ok());
    });
    println!(
        "{} bytes of XML -> {} bytes of JSON, median of 1000 runs:",
        xml.len(),
        json.len()
    );
    println!("  on_response (clone, convert, headers)  {on_response:>10.1?}");
    println!("  xml_to_json                            {converter:>10.1?}");
    println!(
        "  peer: quick-xml events only            {events:>10.1?}  (converter / peer = {:.2})",
        converter.as_secs_f64() / events.as_secs_f64()
    );
    println!(
        "  peer: serde_json parse + write JSON    {serde:>10.1?}  (converter / peer = {:.2})",
        converter.as_secs_f64() / serde.as_secs_f64()
    );
    println!("  json_to_xml of that JSON               {back:>10.1?}");

    println!("time per byte (linear if flat):");
    for size in [10 << 10, 100 << 10, 1 << 20] {
        let xml = document(size);
        let runs = if size > 1 << 19 { 50 } else { 200 };
        let time = median(runs, || {
            black_box(xml_to_json(black_box(xml.as_bytes()), &Mapping::default()).ok());
        });
        let json = xml_to_json(xml.as_bytes(), &Mapping::default()).expect("converts");
        let back = median(runs, || {
            black_box(json_to_xml(black_box(&json), &Mapping::default()).ok());
        });
        println!(
            "  {:>8} bytes  xml_to_json {:>10.1?} ({:.2} ns/byte)  json_to_xml {:>10.1?} ({:.2} ns/byte)",
            xml.len(),
            time,
            time.as_nanos() as f64 / xml.len() as f64,
            back,
            back.as_nanos() as f64 / json.len() as f64,
        );
    }
}
