//! The fixture corpus (`tests/fixtures/`), converted in both directions.
//!
//! `*.xmltodict.json` and `*.xmltodict.xml` were written once by
//! `make_fixtures.py` with Python's xmltodict, an independent implementation
//! of the same mapping: the default mapping must reproduce them byte for byte
//! (`parse` pretty-printed, `unparse` compact). The other
//! expected files are the plugin's own output, reviewed when written; run with
//! `UPDATE_FIXTURES=1` to rewrite those (never the xmltodict ones).

use plugin_sdk::Config;
use plugin_xml_json::{Mapping, Options, json_to_xml, xml_to_json};
use serde_json::{Value, json};
use std::path::PathBuf;

/// The documents that xmltodict's default mapping is checked against.
const DOCUMENTS: &[&str] = &["soap", "rss", "atom", "config", "mixed"];

fn mapping(config: Value) -> Mapping {
    Options::from_config(&Config::from_value(config))
        .unwrap_or_else(|e| panic!("{e}"))
        .mapping
}

fn pretty() -> Mapping {
    mapping(json!({ "pretty": true }))
}

fn path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn fixture(name: &str) -> String {
    std::fs::read_to_string(path(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn to_json(xml: &str, mapping: &Mapping) -> String {
    let json = xml_to_json(xml.as_bytes(), mapping).unwrap_or_else(|e| panic!("{e}"));
    String::from_utf8(json).expect("JSON is UTF-8")
}

fn to_xml(json: &str, mapping: &Mapping) -> String {
    let xml = json_to_xml(json.as_bytes(), mapping).unwrap_or_else(|e| panic!("{e}"));
    String::from_utf8(xml).expect("XML is UTF-8")
}

/// Compares `actual` with the fixture `name` (or rewrites it, on request).
fn expect_file(name: &str, actual: &str) {
    if std::env::var_os("UPDATE_FIXTURES").is_some() {
        std::fs::write(path(name), actual).unwrap_or_else(|e| panic!("{name}: {e}"));
        return;
    }
    assert_eq!(actual, fixture(name), "output differs from {name}");
}

#[test]
fn default_mapping_matches_xmltodict() {
    for name in DOCUMENTS {
        let json = to_json(&fixture(&format!("{name}.xml")), &pretty());
        assert_eq!(
            json + "\n",
            fixture(&format!("{name}.xmltodict.json")),
            "{name}"
        );
    }
}

#[test]
fn compact_output_is_the_same_json() {
    for name in DOCUMENTS {
        let compact = to_json(&fixture(&format!("{name}.xml")), &Mapping::default());
        assert!(!compact.contains('\n'), "{name} is compact");
        let expected: Value =
            serde_json::from_str(&fixture(&format!("{name}.xmltodict.json"))).expect("valid");
        assert_eq!(
            serde_json::from_str::<Value>(&compact).expect("valid"),
            expected,
            "{name}"
        );
    }
}

/// The JSON -> XML direction against `xmltodict.unparse` of the same JSON.
#[test]
fn json_to_xml_matches_xmltodict_unparse() {
    let bare = mapping(json!({ "declaration": false }));
    for name in DOCUMENTS.iter().chain(&["whitespace"]) {
        let xml = to_xml(&fixture(&format!("{name}.xmltodict.json")), &bare);
        assert_eq!(
            xml + "\n",
            fixture(&format!("{name}.xmltodict.xml")),
            "{name}"
        );
    }
}

#[test]
fn forced_arrays_match_xmltodict_force_list() {
    let expected = fixture("rss.arrays.xmltodict.json");
    for arrays in [
        json!(["//item", "//category"]),
        json!(["/rss/channel/item", "/rss/*/item/category"]),
    ] {
        let forced = mapping(json!({ "pretty": true, "arrays": arrays }));
        assert_eq!(
            to_json(&fixture("rss.xml"), &forced) + "\n",
            expected,
            "{arrays}"
        );
    }
}

/// xmltodict strips whitespace around text; the plugin keeps it unless
/// `trim_whitespace`, which makes the two agree.
#[test]
fn whitespace_is_kept_by_default_and_trimmed_like_xmltodict() {
    let xml = fixture("whitespace.xml");
    let kept = to_json(&xml, &pretty()) + "\n";
    assert_ne!(kept, fixture("whitespace.xmltodict.json"));
    expect_file("whitespace.json", &kept);
    let trimmed = mapping(json!({ "pretty": true, "trim_whitespace": true }));
    assert_eq!(
        to_json(&xml, &trimmed) + "\n",
        fixture("whitespace.xmltodict.json")
    );
}

/// JSON -> XML of each expected JSON, and back: the XML written is the
/// fixture `NAME.out.xml`, and reading it gives the same JSON again.
#[test]
fn json_goes_back_to_xml_and_round_trips() {
    let sources = DOCUMENTS
        .iter()
        .map(|name| (*name, format!("{name}.xmltodict.json")))
        .chain([("whitespace", "whitespace.json".to_string())]);
    for (name, json_file) in sources {
        let json = fixture(&json_file);
        let xml = to_xml(&json, &pretty());
        expect_file(&format!("{name}.out.xml"), &xml);
        assert_eq!(
            to_json(&xml, &pretty()) + "\n",
            json,
            "{name}: XML -> JSON -> XML -> JSON"
        );
        // Compact XML says the same.
        let compact = to_xml(&json, &Mapping::default());
        assert_eq!(
            to_json(&compact, &pretty()) + "\n",
            json,
            "{name} (compact)"
        );
    }
}

#[test]
fn namespaces_stripped() {
    let strip = mapping(json!({ "pretty": true, "namespaces": "strip" }));
    let json = to_json(&fixture("soap.xml"), &strip) + "\n";
    assert!(!json.contains("soap:") && !json.contains("xmlns"), "{json}");
    expect_file("soap.strip.json", &json);
}

/// A JSON-first document: the XML it becomes, and what reading that XML
/// back (with every `recognize` option) recovers, which shows what the
/// mapping cannot carry: the wrapping root, one-item arrays, "" vs null.
#[test]
fn json_document_to_xml_and_back() {
    let xml = to_xml(&fixture("order.json"), &pretty());
    expect_file("order.out.xml", &xml);
    let recognize = mapping(json!({
        "pretty": true,
        "recognize": { "numbers": true, "booleans": true, "null": true },
    }));
    expect_file("order.back.json", &(to_json(&xml, &recognize) + "\n"));
}
