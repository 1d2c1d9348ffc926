//! A token given more than once (two header lines, a comma-joined line, the
//! parameter or the cookie twice, or two places at once) is refused, and an
//! admitted request carries upstream only the one token that was verified.

mod common;

use common::{hmac_token, plugin, refusal};
use plugin_jwt::Jwt;
use plugin_sdk::{Action, Context, Plugin, Request, clock};
use serde_json::{Value, json};

const SECRET: &str = "0123456789abcdef0123456789abcdef";

/// A token for `sub`, valid for ten minutes, MACed with `secret`.
fn token_for(sub: &str, secret: &str) -> String {
    let now = i64::try_from(clock::now_millis() / 1000).unwrap_or_default();
    hmac_token(
        &json!({"alg": "HS256"}),
        &json!({"sub": sub, "exp": now + 600}),
        secret.as_bytes(),
    )
}

fn valid() -> String {
    token_for("alice", SECRET)
}

fn forged() -> String {
    token_for("root", "a-secret-the-gateway-does-not-know")
}

fn jwt(extra: Value) -> Jwt {
    let mut config = json!({
        "algorithms": ["HS256"],
        "keys": [{"alg": "HS256", "secret": SECRET}],
        "claims_to_headers": {"sub": "x-user"},
    });
    if let (Some(config), Value::Object(extra)) = (config.as_object_mut(), extra) {
        config.extend(extra);
    }
    plugin(config)
}

fn assert_refused_as_repeated(jwt: &Jwt, mut req: Request, case: &str) {
    let action = jwt.on_request(&mut req, &mut Context::new());
    let (status, challenge, body) = refusal(&action);
    assert_eq!(status, 401, "{case}");
    assert_eq!(
        body["error"], "unauthorized: credential given more than once",
        "{case}"
    );
    assert_eq!(
        challenge,
        "Bearer realm=\"gateway\", error=\"invalid_request\", \
         error_description=\"credential given more than once\"",
        "{case}"
    );
    assert!(!req.headers().contains("x-user"), "{case}");
}

fn admits(jwt: &Jwt, req: &mut Request) {
    let action = jwt.on_request(req, &mut Context::new());
    assert!(matches!(action, Action::Continue), "{:?}", refusal(&action));
}

#[test]
fn two_authorization_lines_are_refused_whichever_comes_first() {
    let jwt = jwt(json!({}));
    for (first, second) in [(valid(), forged()), (forged(), valid()), (valid(), valid())] {
        let req = Request::new("GET", "/")
            .with_header("authorization", &format!("Bearer {first}"))
            .with_header("Authorization", &format!("Bearer {second}"));
        assert_refused_as_repeated(&jwt, req, "two lines");
    }
    // A second line with another scheme is a second credential all the same.
    let req = Request::new("GET", "/")
        .with_header("authorization", &format!("Bearer {}", valid()))
        .with_header("authorization", "Basic YWxpY2U6cHc=");
    assert_refused_as_repeated(&jwt, req, "bearer and basic");
}

#[test]
fn a_comma_joined_authorization_line_is_refused() {
    let jwt = jwt(json!({}));
    for value in [
        format!("Bearer {}, Bearer {}", valid(), forged()),
        format!("Bearer {},{}", valid(), forged()),
        format!("Bearer {},", valid()),
    ] {
        let req = Request::new("GET", "/").with_header("authorization", &value);
        assert_refused_as_repeated(&jwt, req, &value);
    }
}

#[test]
fn the_parameter_or_the_cookie_twice_is_refused() {
    let jwt = jwt(json!({"query": "access_token", "cookie": "session"}));
    let (valid, forged) = (valid(), forged());
    for query in [
        format!("access_token={valid}&access_token={forged}"),
        format!("access_token=&access_token={valid}"),
        format!("access_token={valid}&access%5Ftoken={forged}"),
    ] {
        let req = Request::new("GET", &format!("/?{query}"));
        assert_refused_as_repeated(&jwt, req, &query);
    }
    let one_line = Request::new("GET", "/")
        .with_header("cookie", &format!("session={valid}; session={forged}"));
    assert_refused_as_repeated(&jwt, one_line, "one cookie line");
    let two_lines = Request::new("GET", "/")
        .with_header("cookie", &format!("session={valid}"))
        .with_header("cookie", &format!("theme=dark; session={forged}"));
    assert_refused_as_repeated(&jwt, two_lines, "two cookie lines");
}

#[test]
fn a_token_in_two_places_is_refused() {
    let jwt = jwt(json!({"query": "access_token", "cookie": "session"}));
    let (valid, forged) = (valid(), forged());
    let bearer = |token: &str| format!("Bearer {token}");
    let cases = [
        (
            "header and query",
            Request::new("GET", &format!("/?access_token={forged}"))
                .with_header("authorization", &bearer(&valid)),
        ),
        (
            "header and cookie",
            Request::new("GET", "/")
                .with_header("authorization", &bearer(&valid))
                .with_header("cookie", &format!("session={forged}")),
        ),
        (
            "query and cookie",
            Request::new("GET", &format!("/?access_token={valid}"))
                .with_header("cookie", &format!("session={forged}")),
        ),
        (
            "another scheme in the header beside a query token",
            Request::new("GET", &format!("/?access_token={valid}"))
                .with_header("authorization", "Basic YWxpY2U6cHc="),
        ),
    ];
    for (case, req) in cases {
        assert_refused_as_repeated(&jwt, req, case);
    }
}

#[test]
fn the_upstream_gets_exactly_the_one_token_verified() {
    let jwt = jwt(json!({}));
    let line = format!("Bearer {}", valid());
    let mut req = Request::new("GET", "/").with_header("authorization", &line);
    admits(&jwt, &mut req);
    assert_eq!(
        req.headers().get_all("authorization").collect::<Vec<_>>(),
        [line.as_str()]
    );
    assert_eq!(req.headers().get("x-user"), Some("alice"));
}

#[test]
fn hide_credentials_leaves_no_place_of_the_token() {
    let jwt = jwt(json!({
        "query": "access_token",
        "cookie": "session",
        "hide_credentials": true,
    }));
    let mut req = Request::new("GET", &format!("/?access_token={}&page=2", valid()))
        .with_header("authorization", "")
        .with_header("cookie", "session=; theme=dark");
    admits(&jwt, &mut req);
    assert_eq!(req.query(), "page=2");
    assert!(!req.headers().contains("authorization"));
    assert_eq!(
        req.headers().get_all("cookie").collect::<Vec<_>>(),
        ["theme=dark"]
    );
}
