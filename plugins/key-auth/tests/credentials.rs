//! A key given more than once (two header lines, a comma-joined line, a
//! query parameter twice, or a header and a parameter) is refused, and an
//! admitted request carries upstream only the one key that was checked.

use plugin_key_auth::KeyAuth;
use plugin_sdk::consumers::{self, Consumer};
use plugin_sdk::{Action, Config, Context, Plugin, Request};

const KEY: &str = "alice-key-123";
const OTHER_KEY: &str = "bob-key-456";

fn setup() {
    for (name, key) in [("alice", KEY), ("bob", OTHER_KEY)] {
        let consumer = Consumer {
            name: name.into(),
            groups: vec![],
            plan: None,
            metadata: vec![],
        };
        consumers::register(consumer, &[key]);
    }
}

fn plugin(json: &str) -> KeyAuth {
    KeyAuth::init(Config::from_json(json)).unwrap_or_else(|e| panic!("init failed: {e}"))
}

/// The refusal's status and `error` text, or a panic if admitted.
fn refusal(action: &Action) -> (u16, String) {
    let Action::Respond(response) = action else {
        panic!("admitted");
    };
    let body: serde_json::Value =
        serde_json::from_slice(response.body().unwrap_or_default()).unwrap_or_default();
    let error = body["error"].as_str().unwrap_or_default().to_string();
    (response.status(), error)
}

fn assert_refused_as_repeated(auth: &KeyAuth, mut req: Request, case: &str) {
    let mut ctx = Context::new();
    let action = auth.on_request(&mut req, &mut ctx);
    assert_eq!(
        refusal(&action),
        (401, "unauthorized: credential given more than once".into()),
        "{case}"
    );
    assert_eq!(ctx.get("consumer"), None, "{case}");
}

#[test]
fn two_key_header_lines_are_refused_whichever_comes_first() {
    setup();
    let auth = plugin("{}");
    for (first, second) in [
        (KEY, "forged"),
        ("forged", KEY),
        (KEY, KEY),
        (KEY, OTHER_KEY),
    ] {
        let req = Request::new("GET", "/x")
            .with_header("x-api-key", first)
            .with_header("X-Api-Key", second);
        assert_refused_as_repeated(&auth, req, &format!("{first} then {second}"));
    }
}

#[test]
fn a_comma_joined_key_header_is_refused() {
    setup();
    let auth = plugin("{}");
    for value in [format!("{KEY}, forged"), format!("forged,{KEY}")] {
        let req = Request::new("GET", "/x").with_header("x-api-key", &value);
        assert_refused_as_repeated(&auth, req, &value);
    }
}

#[test]
fn a_key_parameter_twice_is_refused() {
    setup();
    let auth = plugin(r#"{"query": ["api_key"]}"#);
    for query in [
        format!("api_key={KEY}&api_key=forged"),
        format!("api_key=&api_key={KEY}"),
        format!("api_key={KEY}&api%5Fkey=forged"),
    ] {
        let req = Request::new("GET", &format!("/x?{query}"));
        assert_refused_as_repeated(&auth, req, &query);
    }
}

#[test]
fn a_key_in_two_configured_places_is_refused() {
    setup();
    let both = plugin(r#"{"headers": ["x-api-key", "apikey"], "query": ["api_key"]}"#);
    let header_and_query =
        Request::new("GET", &format!("/x?api_key={KEY}")).with_header("x-api-key", KEY);
    assert_refused_as_repeated(&both, header_and_query, "header and query");
    let two_headers = Request::new("GET", "/x")
        .with_header("x-api-key", KEY)
        .with_header("apikey", "forged");
    assert_refused_as_repeated(&both, two_headers, "two headers");
}

#[test]
fn an_empty_place_beside_the_key_is_no_second_key_and_is_hidden_too() {
    setup();
    let auth = plugin(r#"{"headers": ["x-api-key", "apikey"], "query": ["api_key"]}"#);
    let mut req = Request::new("GET", &format!("/x?api_key={KEY}&page=2"))
        .with_header("x-api-key", "")
        .with_header("apikey", " ");
    assert!(matches!(
        auth.on_request(&mut req, &mut Context::new()),
        Action::Continue
    ));
    assert!(!req.headers().contains("x-api-key") && !req.headers().contains("apikey"));
    assert_eq!(req.query(), "page=2");
}

#[test]
fn a_place_listed_twice_in_the_config_is_one_place() {
    setup();
    let auth = plugin(r#"{"headers": ["x-api-key", "X-API-Key"], "hide_credentials": false}"#);
    let mut req = Request::new("GET", "/x").with_header("x-api-key", KEY);
    assert!(matches!(
        auth.on_request(&mut req, &mut Context::new()),
        Action::Continue
    ));
}

#[test]
fn the_upstream_gets_exactly_the_one_key_checked_or_none() {
    setup();
    let kept = plugin(r#"{"hide_credentials": false, "query": ["api_key"]}"#);
    let mut req = Request::new("GET", "/x?page=2").with_header("x-api-key", KEY);
    assert!(matches!(
        kept.on_request(&mut req, &mut Context::new()),
        Action::Continue
    ));
    assert_eq!(
        req.headers().get_all("x-api-key").collect::<Vec<_>>(),
        [KEY]
    );
    assert_eq!(req.query(), "page=2");

    let hidden = plugin(r#"{"query": ["api_key"]}"#);
    let mut req = Request::new("GET", &format!("/x?api_key={KEY}&page=2"));
    assert!(matches!(
        hidden.on_request(&mut req, &mut Context::new()),
        Action::Continue
    ));
    assert_eq!(req.query(), "page=2");
    assert!(!req.headers().contains("x-api-key"));
}

#[test]
fn an_underscore_spelling_of_the_key_header_is_a_second_copy() {
    setup();
    let auth = plugin("{}");
    for (first, second) in [("x-api-key", "x_api_key"), ("X_API_KEY", "x-api-key")] {
        let req = Request::new("GET", "/x")
            .with_header(first, KEY)
            .with_header(second, "forged");
        assert_refused_as_repeated(&auth, req, &format!("{first} + {second}"));
    }
    // Alone, another spelling is no key at all.
    let mut req = Request::new("GET", "/x").with_header("x_api_key", KEY);
    let mut ctx = Context::new();
    let action = auth.on_request(&mut req, &mut ctx);
    assert_eq!(refusal(&action).0, 401);
    // And hide_credentials removes every spelling of what it verified.
    let hiding = plugin(r#"{"hide_credentials": true}"#);
    let mut req = Request::new("GET", "/x").with_header("x-api-key", KEY);
    let mut ctx = Context::new();
    assert!(matches!(
        hiding.on_request(&mut req, &mut ctx),
        Action::Continue
    ));
    assert!(!req.headers().contains("x-api-key"));
}
