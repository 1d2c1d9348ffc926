//! The mapping rule by rule, as documented in `docs/transformation.md`.

use plugin_sdk::Config;
use plugin_xml_json::{ConvertError, Mapping, Options, json_to_xml, xml_to_json};
use serde_json::{Value, json};

fn mapping(config: Value) -> Mapping {
    Options::from_config(&Config::from_value(config))
        .unwrap_or_else(|e| panic!("{e}"))
        .mapping
}

fn xj_with(config: Value, xml: &str) -> Result<String, ConvertError> {
    xml_to_json(xml.as_bytes(), &mapping(config))
        .map(|json| String::from_utf8(json).expect("UTF-8"))
}

fn xj(xml: &str) -> String {
    xj_with(json!({}), xml).unwrap_or_else(|e| panic!("{xml}: {e}"))
}

fn jx_with(mut config: Value, json: &str) -> Result<String, ConvertError> {
    if config.get("declaration").is_none() {
        config["declaration"] = false.into();
    }
    json_to_xml(json.as_bytes(), &mapping(config)).map(|xml| String::from_utf8(xml).expect("UTF-8"))
}

fn jx(json: &str) -> String {
    jx_with(json!({}), json).unwrap_or_else(|e| panic!("{json}: {e}"))
}

#[test]
fn elements_text_and_attributes() {
    let cases = [
        ("<a/>", r#"{"a":null}"#),
        ("<a></a>", r#"{"a":null}"#),
        ("<a>t</a>", r#"{"a":"t"}"#),
        (r#"<a x="1"/>"#, r#"{"a":{"@x":"1"}}"#),
        (
            r##"<a x="1" y='2'>t</a>"##,
            r##"{"a":{"@x":"1","@y":"2","#text":"t"}}"##,
        ),
        ("<a><b>1</b><c/></a>", r#"{"a":{"b":"1","c":null}}"#),
        ("<é日本>ü</é日本>", r#"{"é日本":"ü"}"#),
    ];
    for (xml, json) in cases {
        assert_eq!(xj(xml), json, "{xml}");
    }
}

#[test]
fn repeated_elements_become_one_array_at_the_first_ones_place() {
    assert_eq!(
        xj("<a><x>1</x><y>2</y><x>3</x><z/><x>4</x></a>"),
        r#"{"a":{"x":["1","3","4"],"y":"2","z":null}}"#
    );
    // Past 16 children the grouping goes through a map; same result.
    let names: Vec<String> = (0..20).map(|i| format!("n{i}")).collect();
    let mut xml = String::from("<a>");
    for name in names.iter().chain(&names[..3]) {
        xml.push_str(&format!("<{name}>{name}</{name}>"));
    }
    xml.push_str("</a>");
    let json: Value = serde_json::from_str(&xj(&xml)).expect("valid");
    assert_eq!(json["a"]["n0"], json!(["n0", "n0"]));
    assert_eq!(json["a"]["n19"], json!("n19"));
    assert_eq!(json["a"].as_object().map(|o| o.len()), Some(20));
    assert!(
        xj(&xml)
            .starts_with(r#"{"a":{"n0":["n0","n0"],"n1":["n1","n1"],"n2":["n2","n2"],"n3":"n3""#)
    );
}

#[test]
fn arrays_are_forced_by_path() {
    let config = json!({ "arrays": ["/a/list/item", "//tag", "/a"] });
    assert_eq!(
        xj_with(
            config,
            "<a><list><item>1</item></list><x><tag>t</tag></x><tag/></a>"
        )
        .expect("valid"),
        r#"{"a":[{"list":{"item":["1"]},"x":{"tag":["t"]},"tag":[null]}]}"#
    );
}

#[test]
fn mixed_content_joins_the_text_nodes_after_the_children() {
    assert_eq!(
        xj("<p>x <b>y</b> z</p>"),
        r##"{"p":{"b":"y","#text":"x  z"}}"##
    );
    assert_eq!(
        xj("<p>a<br/>b<br/>c</p>"),
        r##"{"p":{"br":[null,null],"#text":"abc"}}"##
    );
    // Whitespace-only text beside elements is indentation, and dropped.
    assert_eq!(
        xj("<a>\n  <b>1</b>\n  <b>2</b>\n</a>"),
        r#"{"a":{"b":["1","2"]}}"#
    );
    // Alone, whitespace is text.
    assert_eq!(xj("<a>  </a>"), r#"{"a":"  "}"#);
    assert_eq!(
        xj(r##"<a x="1"> </a>"##),
        r##"{"a":{"@x":"1","#text":" "}}"##
    );
}

#[test]
fn trim_whitespace() {
    let trim = json!({ "trim_whitespace": true });
    assert_eq!(
        xj_with(trim.clone(), "<a> x\n</a>").expect("valid"),
        r#"{"a":"x"}"#
    );
    assert_eq!(
        xj_with(trim.clone(), "<a>   </a>").expect("valid"),
        r#"{"a":null}"#
    );
    // XML whitespace only: a no-break space is text.
    assert_eq!(
        xj_with(trim.clone(), "<a>\u{A0}x </a>").expect("valid"),
        "{\"a\":\"\u{A0}x\"}"
    );
    assert_eq!(
        xj_with(trim, "<p> x <b>y</b> z </p>").expect("valid"),
        r##"{"p":{"b":"y","#text":"x  z"}}"##
    );
}

#[test]
fn references_cdata_comments_and_line_ends() {
    assert_eq!(
        xj("<a>&lt;&gt;&amp;&apos;&quot;&#65;&#x42;&#x1F600;</a>"),
        r#"{"a":"<>&'\"AB😀"}"#
    );
    assert_eq!(xj("<a><![CDATA[<b>&amp;]]></a>"), r#"{"a":"<b>&amp;"}"#);
    assert_eq!(xj("<a>t<!-- c -->u<?pi data?>v</a>"), r#"{"a":"tuv"}"#);
    assert_eq!(
        xj("<?xml version=\"1.0\"?>\n<!-- c -->\n<a/>\n<!-- d -->\n"),
        r#"{"a":null}"#
    );
    // Line ends are normalised as XML requires; a reference keeps a CR.
    assert_eq!(xj("<a>x\r\ny\rz&#xD;</a>"), r#"{"a":"x\ny\nz\r"}"#);
    // Attribute values are normalised too: tabs and newlines become spaces.
    assert_eq!(
        xj("<a v=\"x\ty\nz&#10;&amp;\"/>"),
        r#"{"a":{"@v":"x y z\n&"}}"#
    );
    // A byte order mark is not content.
    assert_eq!(xj("\u{FEFF}<a/>"), r#"{"a":null}"#);
}

#[test]
fn namespaces_keep_or_strip() {
    let xml = r#"<s:r xmlns:s="urn:s" xmlns="urn:d" xmlns:o="urn:o" s:x="1" o:x="2" y="3"><s:c>1</s:c><c>2</c></s:r>"#;
    assert_eq!(
        xj(xml),
        r#"{"s:r":{"@xmlns:s":"urn:s","@xmlns":"urn:d","@xmlns:o":"urn:o","@s:x":"1","@o:x":"2","@y":"3","s:c":"1","c":"2"}}"#
    );
    // Stripped: declarations go, prefixes go, the first of two `x` stays,
    // and `s:c` and `c` become one array.
    assert_eq!(
        xj_with(json!({ "namespaces": "strip" }), xml).expect("valid"),
        r#"{"r":{"@x":"1","@y":"3","c":["1","2"]}}"#
    );
}

#[test]
fn recognition_is_off_by_default_and_never_rounds() {
    let xml = "<a n=\"5\"><i>12</i><f>-1.5e3</f><big>123456789012345678901234567890</big><inf>1e999</inf>\
               <zero>007</zero><plus>+1</plus><dot>.5</dot><t>true</t><no>False</no><n>null</n><s> 1</s></a>";
    assert_eq!(
        xj(xml),
        r#"{"a":{"@n":"5","i":"12","f":"-1.5e3","big":"123456789012345678901234567890","inf":"1e999","zero":"007","plus":"+1","dot":".5","t":"true","no":"False","n":"null","s":" 1"}}"#
    );
    let all = json!({ "recognize": { "numbers": true, "booleans": true, "null": true } });
    assert_eq!(
        xj_with(all, xml).expect("valid"),
        r#"{"a":{"@n":5,"i":12,"f":-1.5e3,"big":123456789012345678901234567890,"inf":1e999,"zero":"007","plus":"+1","dot":".5","t":true,"no":"False","n":null,"s":" 1"}}"#
    );
    let numbers = json!({ "recognize": { "numbers": true } });
    assert_eq!(
        xj_with(numbers, "<a><t>true</t><n>null</n><i>1</i></a>").expect("valid"),
        r#"{"a":{"t":"true","n":"null","i":1}}"#
    );
}

#[test]
fn custom_keys() {
    let config = json!({ "attribute_prefix": "-", "text_key": "$t" });
    assert_eq!(
        xj_with(config.clone(), r#"<a x="1">t</a>"#).expect("valid"),
        r#"{"a":{"-x":"1","$t":"t"}}"#
    );
    assert_eq!(
        jx_with(config, r#"{"a":{"-x":"1","$t":"t"}}"#).expect("valid"),
        r#"<a x="1">t</a>"#
    );
}

#[test]
fn pretty_json() {
    assert_eq!(
        xj_with(json!({ "pretty": true }), r#"<a x="1"><b/><b>2</b></a>"#).expect("valid"),
        "{\n  \"a\": {\n    \"@x\": \"1\",\n    \"b\": [\n      null,\n      \"2\"\n    ]\n  }\n}"
    );
}

#[test]
fn json_to_xml_elements() {
    let cases = [
        (r#"{"a":null}"#, "<a/>"),
        (r#"{"a":""}"#, "<a></a>"),
        (r#"{"a":{}}"#, "<a/>"),
        (r#"{"a":{"b":[]}}"#, "<a></a>"),
        (r#"{"a":true}"#, "<a>true</a>"),
        (
            r##"{"a":{"b":1,"@x":2,"#text":"t","@y":null}}"##,
            r##"<a x="2" y=""><b>1</b>t</a>"##,
        ),
        (
            r#"{"a":{"b":[1,{"c":2},null]}}"#,
            "<a><b>1</b><b><c>2</c></b><b/></a>",
        ),
        (
            r#"{"a":{"m":[[1,2],[3]]}}"#,
            "<a><m><item>1</item><item>2</item></m><m><item>3</item></m></a>",
        ),
        (
            r#"{"n":[1e999,123456789012345678901234567890,-0.0,1E+2]}"#,
            "<root><n>1e999</n><n>123456789012345678901234567890</n><n>-0.0</n><n>1E+2</n></root>",
        ),
    ];
    for (json, xml) in cases {
        assert_eq!(jx(json), xml, "{json}");
    }
}

#[test]
fn json_to_xml_roots_and_items() {
    let cases = [
        (r#"{"a":1,"b":2}"#, "<root><a>1</a><b>2</b></root>"),
        (r#"{"a":[1,2]}"#, "<root><a>1</a><a>2</a></root>"),
        (r#"{"@x":"1"}"#, r#"<root x="1"/>"#),
        (r##"{"#text":"t"}"##, "<root>t</root>"),
        ("{}", "<root/>"),
        ("[]", "<root/>"),
        (
            "[1,[2,3],{}]",
            "<root><item>1</item><item><item>2</item><item>3</item></item><item/></root>",
        ),
        (r#""text""#, "<root>text</root>"),
        ("5", "<root>5</root>"),
        ("null", "<root/>"),
    ];
    for (json, xml) in cases {
        assert_eq!(jx(json), xml, "{json}");
    }
    let named = json!({ "root": "doc", "array_item": "entry" });
    assert_eq!(
        jx_with(named, "[1,[2]]").expect("valid"),
        "<doc><entry>1</entry><entry><entry>2</entry></entry></doc>"
    );
}

#[test]
fn json_to_xml_escapes() {
    assert_eq!(
        jx(r##"{"a":{"@v":"\"<&>'\t\n\r","#text":"<&>\"'\t\n\r]]>"}}"##),
        "<a v=\"&quot;&lt;&amp;&gt;'&#x9;&#xA;&#xD;\">&lt;&amp;&gt;\"'\t\n&#xD;]]&gt;</a>"
    );
    // What was escaped reads back as it was.
    let json = r##"{"a":{"@v":"\"<&>'\t\n\r","#text":"<&>\"'\t\n\r]]>"}}"##;
    assert_eq!(xj(&jx(json)), json);
}

#[test]
fn json_to_xml_declaration_pretty_and_namespaces() {
    assert_eq!(
        jx_with(json!({ "declaration": true }), r#"{"a":1}"#).expect("valid"),
        r#"<?xml version="1.0" encoding="UTF-8"?><a>1</a>"#
    );
    assert_eq!(
        jx_with(
            json!({ "pretty": true }),
            r##"{"a":{"b":{"c":1},"p":{"i":"x","#text":"y"}}}"##
        )
        .expect("valid"),
        "<a>\n  <b>\n    <c>1</c>\n  </b>\n  <p><i>x</i>y</p>\n</a>\n"
    );
    assert_eq!(
        jx_with(
            json!({ "namespaces": "strip" }),
            r#"{"s:a":{"@xmlns:s":"urn:s","@s:x":"1","@x":"2","s:b":null}}"#
        )
        .expect("valid"),
        r#"<a x="1"><b/></a>"#
    );
}

#[test]
fn json_to_xml_refusals() {
    let cases = [
        (
            r#"{"first name":1}"#,
            ConvertError::InvalidName("first name".into()),
        ),
        (r#"{"1a":1}"#, ConvertError::InvalidName("1a".into())),
        (r#"{"":1}"#, ConvertError::InvalidName(String::new())),
        (r#"{"a":{"@":1}}"#, ConvertError::InvalidName(String::new())),
        (
            r#"{"a":{"@b c":1}}"#,
            ConvertError::InvalidName("b c".into()),
        ),
        (
            r#"{"a":{"@x":{"y":1}}}"#,
            ConvertError::NotScalar("@x".into()),
        ),
        (
            r##"{"a":{"#text":[1]}}"##,
            ConvertError::NotScalar("#text".into()),
        ),
        (r#"{"a":"\u0001"}"#, ConvertError::InvalidChar(1)),
        (r#"{"a":"\uFFFE"}"#, ConvertError::InvalidChar(0xFFFE)),
        (r#"{"a":{"@x":"\u001F"}}"#, ConvertError::InvalidChar(0x1F)),
        (
            "{\"a\":1",
            ConvertError::Json {
                at: 6,
                reason: "unexpected end",
            },
        ),
    ];
    for (json, error) in cases {
        assert_eq!(jx_with(json!({}), json), Err(error), "{json}");
    }
    // Two attributes with one name: the first wins.
    assert_eq!(jx(r#"{"a":{"@x":1,"@x":2}}"#), r#"<a x="1"/>"#);
    let strip = json!({ "namespaces": "strip" });
    assert_eq!(
        jx_with(strip, r#"{"a":{"@p:x":1,"@q:x":2}}"#).expect("valid"),
        r#"<a x="1"/>"#
    );
}

#[test]
fn xml_refusals() {
    let cases = [
        ("", "no root element"),
        ("<a>", "unexpected end: `a` is not closed"),
        ("<a/><b/>", "a second element outside the root element"),
        ("x<a/>", "text outside the root element"),
        ("<a/>&amp;", "a reference outside the root element"),
    ];
    for (xml, reason) in cases {
        match xj_with(json!({}), xml) {
            Err(ConvertError::Xml { reason: r, .. }) => assert_eq!(r, reason, "{xml}"),
            other => panic!("{xml}: {other:?}"),
        }
    }
    for xml in [
        "<a></b>",
        "<a x=1/>",
        r#"<a x="1" x="2"/>"#,
        "<a><</a>",
        "<1a/>",
        "<a &/>",
        "<a>&#0;</a>",
        "<a>&unknown</a>",
    ] {
        assert!(
            matches!(
                xj_with(json!({}), xml),
                Err(ConvertError::Xml { .. } | ConvertError::InvalidName(_))
            ),
            "{xml}: {:?}",
            xj_with(json!({}), xml)
        );
    }
    assert_eq!(
        xj_with(json!({}), "<a>&nbsp;</a>"),
        Err(ConvertError::UnknownEntity("nbsp".into()))
    );
    assert_eq!(
        xj_with(json!({}), "<a v='&nbsp;'/>"),
        Err(ConvertError::UnknownEntity("nbsp".into()))
    );
    assert_eq!(
        xj_with(json!({}), "<a>&#1;</a>"),
        Err(ConvertError::InvalidChar(1))
    );
    assert_eq!(
        xj_with(json!({}), "<a>\u{1}</a>"),
        Err(ConvertError::InvalidChar(1))
    );
    assert_eq!(
        xj_with(
            json!({}),
            r#"<?xml version="1.0" encoding="ISO-8859-1"?><a/>"#
        ),
        Err(ConvertError::Charset("ISO-8859-1".into()))
    );
    assert_eq!(
        xml_to_json(b"<a>\xff</a>", &Mapping::default()),
        Err(ConvertError::NotUtf8(3))
    );
    assert_eq!(
        json_to_xml(b"\"\xc3\"", &Mapping::default()),
        Err(ConvertError::NotUtf8(1))
    );
}
