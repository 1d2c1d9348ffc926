//! The plugin as the pipeline drives it: `on_request`, then (unless the
//! plugin answered itself) the upstream's response through `on_response`.
//!
//! The SDK's native cache is a per-thread map on the real clock, and every
//! test runs on its own thread, so each test starts with an empty cache.

use plugin_cache::{CONTEXT_STATUS, Cache, MAX_KEY, POISONING_HEADERS};
use plugin_sdk::cache::{self, Entry};
use plugin_sdk::{Action, Config, Context, Headers, Plugin, Request, Response, clock};
use serde_json::{Value, json};
use std::time::Duration;

fn plugin(config: Value) -> Cache {
    Cache::init(Config::from_value(config)).unwrap_or_else(|e| panic!("{e}"))
}

/// One request's trip: what the client got, and what reached the upstream
/// (`None` when the plugin answered).
struct Trip {
    response: Response,
    upstream: Option<Request>,
}

impl Trip {
    fn x_cache(&self) -> Option<&str> {
        self.response.headers().get("x-cache")
    }

    fn body(&self) -> &str {
        std::str::from_utf8(self.response.body().unwrap_or_default()).unwrap_or("<binary>")
    }

    fn reached_upstream(&self) -> bool {
        self.upstream.is_some()
    }
}

/// Runs `req` through the plugin for the consumer `consumer`; on a miss the
/// upstream answers `upstream`.
fn trip_as(cache: &Cache, consumer: Option<&str>, mut req: Request, upstream: Response) -> Trip {
    let mut ctx = Context::new();
    if let Some(consumer) = consumer {
        ctx.set("consumer", consumer);
    }
    match cache.on_request(&mut req, &mut ctx) {
        // As in the pipeline: the answering entry's response phase is skipped.
        Action::Respond(response) => Trip {
            response,
            upstream: None,
        },
        Action::Continue => {
            let mut response = upstream;
            cache.on_response(&Request::new("GET", "/"), &mut response, &mut ctx);
            Trip {
                response,
                upstream: Some(req),
            }
        }
    }
}

fn trip(cache: &Cache, req: Request, upstream: Response) -> Trip {
    trip_as(cache, None, req, upstream)
}

fn get(path: &str) -> Request {
    Request::new("GET", path).with_authority("api.example.com")
}

fn ok(body: &str) -> Response {
    Response::text(200, body)
}

/// A request that must be answered from the cache with `body`.
fn assert_hit(cache: &Cache, req: Request, body: &str) {
    let t = trip(cache, req, ok("upstream was called"));
    assert_eq!(t.x_cache(), Some("HIT"));
    assert!(!t.reached_upstream());
    assert_eq!(t.body(), body);
}

/// A request that must go to the upstream (and gets `fresh` from it).
fn assert_miss(cache: &Cache, req: Request) {
    let t = trip(cache, req, ok("fresh"));
    assert_eq!(t.x_cache(), Some("MISS"));
    assert!(t.reached_upstream());
}

#[test]
fn hit_after_miss_replays_status_headers_and_body() {
    let c = plugin(json!({}));
    let first = trip(
        &c,
        get("/users"),
        Response::json(200, &json!({"users": []})).with_header("etag", "\"v1\""),
    );
    assert_eq!(first.x_cache(), Some("MISS"));
    assert!(first.reached_upstream());

    let second = trip(&c, get("/users"), ok("upstream was called"));
    assert_eq!(second.x_cache(), Some("HIT"));
    assert!(!second.reached_upstream());
    assert_eq!(second.response.status(), 200);
    assert_eq!(second.body(), r#"{"users":[]}"#);
    assert_eq!(
        second.response.headers().get("content-type"),
        Some("application/json")
    );
    assert_eq!(second.response.headers().get("etag"), Some("\"v1\""));
    assert_eq!(second.response.headers().get("age"), Some("0"));
}

#[test]
fn hit_sets_the_context_status_and_is_never_stored_again() {
    let c = plugin(json!({}));
    trip(&c, get("/once"), ok("v1"));
    let mut ctx = Context::new();
    let Action::Respond(mut answer) = c.on_request(&mut get("/once"), &mut ctx) else {
        panic!("expected a hit");
    };
    assert_eq!(ctx.get(CONTEXT_STATUS).as_deref(), Some("HIT"));
    // Were the response phase to see the plugin's own answer, it must not be
    // stored again (its Age would be replayed, its lifetime extended).
    cache::purge("GET api.example.com/once");
    c.on_response(&Request::new("GET", "/"), &mut answer, &mut ctx);
    assert_eq!(
        cache::lookup("GET api.example.com/once", Duration::ZERO),
        None
    );
    assert_eq!(
        answer.headers().get_all("x-cache").collect::<Vec<_>>(),
        ["HIT"]
    );
}

#[test]
fn age_counts_whole_seconds_since_stored_plus_the_upstreams_age() {
    let c = plugin(json!({}));
    let mut headers = Headers::new();
    headers.append("content-type", "text/plain");
    let stored = |headers: Headers, ago_ms: u64| Entry {
        status: 200,
        headers,
        body: b"old".to_vec(),
        stored_at_ms: clock::now_millis() - ago_ms,
        vary: vec![],
    };
    assert_eq!(
        cache::put(
            "GET api.example.com/aged",
            stored(headers.clone(), 5_500),
            Duration::from_secs(60)
        ),
        Ok(())
    );
    let t = trip(&c, get("/aged"), ok("upstream was called"));
    assert_eq!(t.response.headers().get("age"), Some("5"));
    assert_eq!(t.x_cache(), Some("HIT"));

    headers.append("age", "100");
    assert_eq!(
        cache::put(
            "GET api.example.com/aged-upstream",
            stored(headers, 2_000),
            Duration::from_secs(60)
        ),
        Ok(())
    );
    let t = trip(&c, get("/aged-upstream"), ok("upstream was called"));
    assert_eq!(t.response.headers().get("age"), Some("102"));
}

#[test]
fn head_is_served_from_get_entries_and_never_stores() {
    let c = plugin(json!({}));
    let head = || Request::new("HEAD", "/doc").with_authority("api.example.com");
    let t = trip(
        &c,
        head(),
        Response::new(200).with_header("content-length", "5"),
    );
    assert_eq!(t.x_cache(), Some("MISS"));
    assert_eq!(t.upstream.as_ref().map(Request::method), Some("HEAD"));
    // The HEAD response was not stored under the GET key.
    assert_miss(&c, get("/doc"));

    let t = trip(&c, head(), ok("upstream was called"));
    assert_eq!(t.x_cache(), Some("HIT"));
    assert_eq!(t.response.body(), None);
    assert_eq!(
        t.response.headers().get("content-type"),
        Some("text/plain; charset=utf-8")
    );

    let get_only = plugin(json!({"methods": ["GET"]}));
    trip(&get_only, get("/doc2"), ok("v1"));
    let t = trip(
        &get_only,
        Request::new("HEAD", "/doc2").with_authority("api.example.com"),
        Response::new(200),
    );
    assert_eq!(t.x_cache(), Some("BYPASS"));
}

#[test]
fn other_methods_bypass_and_are_never_stored() {
    let c = plugin(json!({}));
    for method in ["POST", "PUT", "DELETE", "OPTIONS"] {
        let req = Request::new(method, "/m").with_authority("api.example.com");
        let t = trip(&c, req, ok("done"));
        assert_eq!(t.x_cache(), Some("BYPASS"), "{method}");
    }
    assert_miss(&c, get("/m"));
}

#[test]
fn entries_expire_after_their_lifetime() {
    let c = plugin(json!({"ttl": "50ms"}));
    trip(&c, get("/short"), ok("v1"));
    assert_hit(&c, get("/short"), "v1");
    // The native cache runs on the real clock; no other test sleeps.
    std::thread::sleep(Duration::from_millis(80));
    assert_miss(&c, get("/short"));
}

#[test]
fn refusing_cache_control_is_obeyed() {
    let c = plugin(json!({}));
    for (path, value) in [
        ("/no-store", "no-store"),
        ("/private", "private, max-age=60"),
        ("/no-cache", "no-cache"),
        ("/s-maxage-0", "s-maxage=0, max-age=60"),
    ] {
        let t = trip(&c, get(path), ok("v1").with_header("cache-control", value));
        assert_eq!(t.x_cache(), Some("MISS"));
        assert_miss(&c, get(path));
    }
    trip(
        &c,
        get("/public"),
        ok("v1").with_header("cache-control", "public, max-age=60"),
    );
    assert_hit(&c, get("/public"), "v1");
}

#[test]
fn expires_in_the_past_or_invalid_is_not_stored() {
    let c = plugin(json!({}));
    trip(
        &c,
        get("/past"),
        ok("v1").with_header("expires", "Thu, 01 Jan 1970 00:00:01 GMT"),
    );
    assert_miss(&c, get("/past"));
    trip(&c, get("/zero"), ok("v1").with_header("expires", "0"));
    assert_miss(&c, get("/zero"));
    trip(
        &c,
        get("/future"),
        ok("v1").with_header("expires", "Fri, 01 Jan 2100 00:00:00 GMT"),
    );
    assert_hit(&c, get("/future"), "v1");
}

#[test]
fn set_cookie_responses_are_not_stored_unless_allowed_and_then_without_the_cookie() {
    let c = plugin(json!({}));
    trip(
        &c,
        get("/login"),
        ok("v1").with_header("set-cookie", "session=alice"),
    );
    assert_miss(&c, get("/login"));

    let c = plugin(json!({"cache_set_cookie": true}));
    let first = trip(
        &c,
        get("/banner"),
        ok("v1").with_header("set-cookie", "seen=1"),
    );
    // The client that fetched it still gets its cookie ...
    assert_eq!(first.response.headers().get("set-cookie"), Some("seen=1"));
    // ... nobody else does.
    let t = trip(&c, get("/banner"), ok("upstream was called"));
    assert_eq!(t.x_cache(), Some("HIT"));
    assert_eq!(t.response.headers().get("set-cookie"), None);
}

#[test]
fn authorization_bypasses_unless_opted_in() {
    let c = plugin(json!({}));
    trip(&c, get("/me"), ok("public"));
    let with_auth = || get("/me").with_header("authorization", "Bearer t");
    let t = trip(&c, with_auth(), ok("alice's"));
    assert_eq!(t.x_cache(), Some("BYPASS"));
    assert_eq!(t.body(), "alice's");
    assert!(t.reached_upstream());
    // Neither served from nor stored into the cache.
    assert_hit(&c, get("/me"), "public");
    let t = trip(&c, with_auth(), ok("alice's again"));
    assert_eq!(t.body(), "alice's again");

    let opted_in = plugin(json!({"cache_authorized": true}));
    trip_as(&opted_in, Some("alice"), with_auth(), ok("alice's"));
    let t = trip_as(
        &opted_in,
        Some("alice"),
        with_auth(),
        ok("upstream was called"),
    );
    assert_eq!(t.x_cache(), Some("HIT"));
    assert_eq!(t.body(), "alice's");
    // The consumer is in the key: bob never sees alice's copy.
    let t = trip_as(&opted_in, Some("bob"), with_auth(), ok("bob's"));
    assert_eq!(t.x_cache(), Some("MISS"));
}

#[test]
fn only_listed_statuses_are_stored() {
    let c = plugin(json!({}));
    for status in [200, 301, 404] {
        let path = format!("/s{status}");
        trip(&c, get(&path), Response::text(status, "stored"));
        let t = trip(&c, get(&path), ok("upstream was called"));
        assert_eq!(t.x_cache(), Some("HIT"), "{status}");
        assert_eq!(t.response.status(), status);
    }
    for status in [201, 302, 403, 429, 500, 502, 503] {
        let path = format!("/s{status}");
        trip(&c, get(&path), Response::text(status, "not stored"));
        assert_miss(&c, get(&path));
    }
    let c = plugin(json!({"statuses": [200, 410]}));
    trip(&c, get("/gone"), Response::text(410, "gone"));
    assert_hit(&c, get("/gone"), "gone");
    trip(&c, get("/missing"), Response::text(404, "missing"));
    assert_miss(&c, get("/missing"));
}

#[test]
fn config_errors_refuse_init() {
    for (config, message) in [
        (
            json!({"statuses": [200, 500]}),
            "cache: status 500 cannot be cached: expected statuses from 200 to 499 (errors of the upstream are never stored)",
        ),
        (
            json!({"methods": ["GET", "POST"]}),
            "cache: method `POST` cannot be cached: expected GET or HEAD",
        ),
        (
            json!({"ttl": "1 minute"}),
            "cache: ttl: invalid duration `1 minute`: expected a number followed by ms, s, m or h (for example \"30s\" or \"250ms\")",
        ),
        (
            json!({"max_ttl": "48h"}),
            "cache: max_ttl `48h` must be between 1ms and 24h",
        ),
        (
            json!({"cache_cookies": true}),
            "cache: invalid config: unknown field `cache_cookies`, expected one of `ttl`, `max_ttl`, `statuses`, `methods`, `key_query`, `key_headers`, `strip_headers`, `cache_authorized`, `cache_set_cookie`, `refresh`, `collapse_wait`, `max_body`, `keep`, `targeted_cache_control`, `strip_targeted_cache_control`",
        ),
    ] {
        assert_eq!(
            Cache::init(Config::from_value(config.clone()))
                .err()
                .as_deref(),
            Some(message),
            "{config}"
        );
    }
}

#[test]
fn query_order_does_not_split_the_cache_but_values_do() {
    let c = plugin(json!({}));
    trip(&c, get("/search?b=2&a=1"), ok("a1b2"));
    assert_hit(&c, get("/search?a=1&b=2"), "a1b2");
    assert_hit(&c, get("/search?a=1&&b=2&"), "a1b2");
    assert_miss(&c, get("/search?a=1&b=3"));
    assert_miss(&c, get("/search?a=1"));
    assert_miss(&c, get("/search"));
    // The upstream got the query as the client sent it.
    let t = trip(&c, get("/other?z=1&y=2"), ok("v"));
    assert_eq!(t.upstream.as_ref().map(Request::query), Some("z=1&y=2"));
}

#[test]
fn key_query_removes_unkeyed_parameters_from_the_upstream_request() {
    let c = plugin(json!({"key_query": ["page", "sort"]}));
    let t = trip(
        &c,
        get("/items?utm_source=mail&page=2&debug=1&sort=name"),
        ok("page 2"),
    );
    assert_eq!(t.x_cache(), Some("MISS"));
    // An unkeyed parameter never reaches the upstream, so it cannot change
    // what is stored for everyone.
    assert_eq!(
        t.upstream.as_ref().map(Request::query),
        Some("page=2&sort=name")
    );
    assert_hit(&c, get("/items?sort=name&page=2&utm_source=ad"), "page 2");
    assert_miss(&c, get("/items?page=3&sort=name"));
}

#[test]
fn key_headers_split_the_cache() {
    let c = plugin(json!({"key_headers": ["X-Tenant"]}));
    trip(
        &c,
        get("/conf").with_header("x-tenant", "a"),
        ok("tenant a"),
    );
    assert_hit(&c, get("/conf").with_header("X-Tenant", "a"), "tenant a");
    assert_miss(&c, get("/conf").with_header("x-tenant", "b"));
    assert_miss(&c, get("/conf"));
    // A value spelling another part of the key is escaped, not obeyed.
    let c = plugin(json!({"key_headers": ["x-tenant"], "cache_authorized": true}));
    trip_as(
        &c,
        Some("alice"),
        get("/conf").with_header("x-tenant", "a"),
        ok("alice's"),
    );
    let forged = trip(
        &c,
        get("/conf").with_header("x-tenant", "a c:alice"),
        ok("anonymous"),
    );
    assert_eq!(forged.x_cache(), Some("MISS"));
}

#[test]
fn consumers_and_hosts_are_kept_apart() {
    let c = plugin(json!({}));
    trip_as(&c, Some("alice"), get("/profile"), ok("alice's"));
    let t = trip_as(
        &c,
        Some("alice"),
        get("/profile"),
        ok("upstream was called"),
    );
    assert_eq!(t.body(), "alice's");
    assert_eq!(
        trip_as(&c, Some("bob"), get("/profile"), ok("bob's")).x_cache(),
        Some("MISS")
    );
    assert_miss(&c, get("/profile"));

    trip(&c, get("/home"), ok("api"));
    let other = Request::new("GET", "/home").with_authority("www.example.com");
    assert_eq!(trip(&c, other, ok("www")).x_cache(), Some("MISS"));
    // Host names are case-insensitive.
    let shouting = Request::new("GET", "/home").with_authority("API.EXAMPLE.COM");
    assert_hit(&c, shouting, "api");
}

#[test]
fn keys_are_documented_strings_the_admin_api_can_purge() {
    let c = plugin(json!({"key_headers": ["accept-language"]}));
    let req = Request::new("HEAD", "/v1/users?b=2&a=1")
        .with_authority("API.example.com")
        .with_header("accept-language", "de");
    trip_as(&c, Some("alice"), req.clone(), Response::new(200));
    trip_as(
        &c,
        Some("alice"),
        Request::new("GET", "/v1/users?b=2&a=1")
            .with_authority("API.example.com")
            .with_header("accept-language", "de"),
        ok("v1"),
    );
    let key = "GET api.example.com/v1/users?a=1&b=2 h:accept-language=de c:alice";
    assert!(cache::lookup(key, Duration::ZERO).is_some());
    cache::purge(key);
    assert_eq!(
        trip_as(&c, Some("alice"), req, Response::new(200)).x_cache(),
        Some("MISS")
    );
}

#[test]
fn overlong_keys_bypass() {
    let c = plugin(json!({}));
    let long = format!("/{}", "a".repeat(MAX_KEY));
    let t = trip(&c, get(&long), ok("v1"));
    assert_eq!(t.x_cache(), Some("BYPASS"));
    let t = trip(&c, get(&long), ok("v2"));
    assert_eq!(t.body(), "v2");
    // Just under the limit is still cached.
    let fits = format!("/{}", "a".repeat(MAX_KEY - "GET api.example.com/".len()));
    trip(&c, get(&fits), ok("v1"));
    assert_hit(&c, get(&fits), "v1");
}

#[test]
fn poisoning_headers_are_stripped_from_cacheable_requests() {
    let c = plugin(json!({"strip_headers": ["X-Debug"]}));
    let mut req = get("/page")
        .with_header("x-debug", "1")
        .with_header("accept", "*/*");
    for name in POISONING_HEADERS {
        req = req.with_header(name, "evil.example");
    }
    let t = trip(&c, req, ok("built for the real host"));
    let sent = t.upstream.unwrap_or_else(|| panic!("not proxied"));
    for name in POISONING_HEADERS.iter().chain(&["x-debug"]) {
        assert!(
            !sent.headers().contains(name),
            "{name} reached the upstream"
        );
    }
    assert_eq!(sent.headers().get("accept"), Some("*/*"));
    // So the stored answer is the one everybody would get anyway.
    assert_hit(&c, get("/page"), "built for the real host");

    // Bypassed requests are left alone.
    let t = trip(
        &c,
        Request::new("POST", "/page").with_header("x-http-method-override", "PUT"),
        ok("done"),
    );
    let sent = t.upstream.unwrap_or_else(|| panic!("not proxied"));
    assert!(sent.headers().contains("x-http-method-override"));
}

#[test]
fn a_keyed_poisoning_header_is_kept_and_keyed() {
    let c = plugin(json!({"key_headers": ["x-forwarded-host"]}));
    let t = trip(
        &c,
        get("/p").with_header("x-forwarded-host", "a.example"),
        ok("for a"),
    );
    let sent = t.upstream.unwrap_or_else(|| panic!("not proxied"));
    assert_eq!(sent.headers().get("x-forwarded-host"), Some("a.example"));
    assert_miss(&c, get("/p").with_header("x-forwarded-host", "b.example"));
    assert_hit(
        &c,
        get("/p").with_header("x-forwarded-host", "a.example"),
        "for a",
    );
}

#[test]
fn vary_stores_each_variant_apart_behind_a_marker() {
    let c = plugin(json!({}));
    let lang = |value: &str| get("/greeting").with_header("accept-language", value);
    let varying = |body: &str| ok(body).with_header("vary", "Accept-Language");
    trip(&c, lang("de"), varying("Hallo"));
    let t = trip(&c, lang("en"), varying("Hello"));
    assert_eq!(t.x_cache(), Some("MISS"));
    assert_hit(&c, lang("de"), "Hallo");
    assert_hit(&c, lang("en"), "Hello");
    // No Accept-Language is a variant of its own.
    let t = trip(&c, get("/greeting"), varying("Hi"));
    assert_eq!(t.x_cache(), Some("MISS"));
    assert_hit(&c, get("/greeting"), "Hi");

    let marker = cache::lookup("GET api.example.com/greeting", Duration::ZERO)
        .unwrap_or_else(|| panic!("no marker"));
    assert_eq!(marker.status, 0);
    assert!(marker.body.is_empty());
    assert_eq!(marker.vary, ["accept-language"]);
    let variant = cache::lookup("GET api.example.com/greeting\nde", Duration::ZERO)
        .unwrap_or_else(|| panic!("no variant"));
    assert_eq!(variant.body, b"Hallo");
    // Purging the primary key takes the variants with it.
    cache::purge("GET api.example.com/greeting");
    assert_miss(&c, lang("de"));
}

#[test]
fn vary_star_is_not_stored() {
    let c = plugin(json!({}));
    trip(&c, get("/random"), ok("v1").with_header("vary", "*"));
    assert_miss(&c, get("/random"));
    trip(
        &c,
        get("/random2"),
        ok("v1").with_header("vary", "accept, *"),
    );
    assert_miss(&c, get("/random2"));
}

#[test]
fn a_response_that_stops_varying_replaces_the_marker() {
    let c = plugin(json!({}));
    let enc = |value: &str| get("/asset").with_header("accept-encoding", value);
    trip(
        &c,
        enc("gzip"),
        ok("zipped").with_header("vary", "accept-encoding"),
    );
    // A request for another variant misses and gets an answer without Vary:
    // it is now the answer for everyone.
    trip(&c, enc("br"), ok("plain"));
    assert_hit(&c, enc("gzip"), "plain");
    assert_hit(&c, get("/asset"), "plain");
}

#[test]
fn refresh_is_for_listed_consumers_only() {
    let c = plugin(json!({"refresh": ["ops"]}));
    let no_cache = || get("/news").with_header("cache-control", "no-cache");
    // Anyone else asking for a fresh copy is served from the cache.
    trip(&c, get("/news"), ok("old"));
    assert_hit(&c, no_cache(), "old");
    trip_as(&c, Some("alice"), get("/news"), ok("alice's old"));
    let t = trip_as(&c, Some("alice"), no_cache(), ok("upstream was called"));
    assert_eq!(t.x_cache(), Some("HIT"));
    assert_eq!(t.body(), "alice's old");
    // A listed consumer skips the lookup and replaces its entry (entries are
    // per consumer, so that is the copy ops is served).
    trip_as(&c, Some("ops"), get("/news"), ok("old"));
    let t = trip_as(
        &c,
        Some("ops"),
        get("/news").with_header("cache-control", "max-age=0"),
        ok("new"),
    );
    assert_eq!(t.x_cache(), Some("MISS"));
    assert!(t.reached_upstream());
    let t = trip_as(&c, Some("ops"), get("/news"), ok("upstream was called"));
    assert_eq!(t.x_cache(), Some("HIT"));
    assert_eq!(t.body(), "new");
}

#[test]
fn refresh_star_lets_anonymous_callers_refresh() {
    let c = plugin(json!({"refresh": ["*"]}));
    trip(&c, get("/feed"), ok("old"));
    let t = trip(
        &c,
        get("/feed").with_header("Cache-Control", "max-stale, No-Cache"),
        ok("new"),
    );
    assert_eq!(t.x_cache(), Some("MISS"));
    assert_hit(&c, get("/feed"), "new");
    // Other directives are not a refresh.
    assert_hit(
        &c,
        get("/feed").with_header("cache-control", "max-age=10"),
        "new",
    );
}

#[test]
fn bodies_over_max_body_or_withheld_are_not_stored() {
    let c = plugin(json!({"max_body": "1KiB"}));
    trip(&c, get("/big"), ok(&"x".repeat(1025)));
    assert_miss(&c, get("/big"));
    trip(&c, get("/fits"), ok(&"x".repeat(1024)));
    assert_eq!(trip(&c, get("/fits"), ok("")).x_cache(), Some("HIT"));
    // The gateway withholds bodies over the entry's own cap.
    let t = trip(&c, get("/withheld"), Response::new(200));
    assert_eq!(t.x_cache(), Some("MISS"));
    assert_miss(&c, get("/withheld"));
    // An empty body is a body.
    trip(
        &c,
        get("/empty"),
        Response::new(301)
            .with_header("location", "/x")
            .with_body(""),
    );
    assert_hit(&c, get("/empty"), "");
}

#[test]
fn a_miss_remembers_only_what_the_response_phase_needs() {
    let c = plugin(json!({}));
    let mut ctx = Context::new();
    let mut req = get("/ctx?b=1").with_header("accept", "text/html");
    assert!(matches!(c.on_request(&mut req, &mut ctx), Action::Continue));
    let mut keys = ctx.keys();
    keys.sort();
    assert_eq!(
        keys,
        [
            "cache.fill",
            "cache.key",
            "cache.request_headers",
            "cache.status"
        ]
    );
    assert!(keys.iter().all(|k| k.starts_with("cache.")));
    assert_eq!(
        ctx.get("cache.key").as_deref(),
        Some("GET api.example.com/ctx?b=1")
    );
    // A bypass leaves only its status ...
    let mut ctx = Context::new();
    c.on_request(&mut Request::new("OPTIONS", "/ctx"), &mut ctx);
    assert_eq!(ctx.keys(), ["cache.status"]);
    assert_eq!(ctx.get(CONTEXT_STATUS).as_deref(), Some("BYPASS"));
    // ... and an unsafe request the URI its success invalidates.
    let mut ctx = Context::new();
    c.on_request(&mut Request::new("POST", "/ctx?b=1"), &mut ctx);
    let mut keys = ctx.keys();
    keys.sort();
    assert_eq!(keys, ["cache.invalidate", "cache.status"]);
}

#[test]
fn a_response_phase_without_a_request_phase_changes_nothing() {
    let c = plugin(json!({}));
    let mut resp = ok("v1");
    c.on_response(&Request::new("GET", "/"), &mut resp, &mut Context::new());
    assert!(!resp.is_edited());
    assert_eq!(resp.headers().get("x-cache"), None);
}

/// RFC 9111 5.1: Age is one delta-seconds; of a list, the first member counts
/// (over several lines too), and an invalid value is ignored, never read as a
/// small age.
#[test]
fn age_lists_count_their_first_member_and_invalid_ages_are_ignored() {
    let c = plugin(json!({}));
    let aged = |age: &[&str]| {
        let mut resp = ok("v1").with_header("cache-control", "max-age=3600");
        for value in age {
            resp = resp.with_header("age", *value);
        }
        resp
    };
    // 7200 seconds old with an hour of lifetime: stale on arrival.
    for (path, age) in [
        ("/list", &["7200, 0"][..]),
        ("/lines", &["7200", "0"][..]),
        ("/huge", &["99999999999999999999999"][..]),
    ] {
        trip(&c, get(path), aged(age));
        assert_miss(&c, get(path));
    }
    // Invalid: ignored, as if absent.
    for (path, age) in [("/negative", "-1"), ("/word", "abc"), ("/float", "1.5")] {
        trip(&c, get(path), aged(&[age]));
        let t = trip(&c, get(path), ok("upstream was called"));
        assert_eq!(t.x_cache(), Some("HIT"), "{age}");
        assert_eq!(t.response.headers().get("age"), Some("0"), "{age}");
    }
    // A valid first member is served on, plus the time resident.
    trip(&c, get("/small"), aged(&["10, 7200"]));
    let t = trip(&c, get("/small"), ok("upstream was called"));
    assert_eq!(t.response.headers().get("age"), Some("10"));
}

#[test]
fn served_age_saturates_at_two_to_the_31() {
    let c = plugin(json!({}));
    let entry = Entry {
        status: 200,
        headers: {
            let mut h = Headers::new();
            h.append("age", "99999999999999999999999");
            h
        },
        body: b"old".to_vec(),
        stored_at_ms: clock::now_millis() - 5_000,
        vary: vec![],
    };
    assert_eq!(
        cache::put(
            "GET api.example.com/ancient",
            entry,
            Duration::from_secs(60)
        ),
        Ok(())
    );
    let t = trip(&c, get("/ancient"), ok("upstream was called"));
    assert_eq!(t.response.headers().get("age"), Some("2147483648"));
}

/// RFC 9111 4.4: a successful unsafe request invalidates every stored copy of
/// its target URI, whoever the consumer, whatever the key headers or variant.
#[test]
fn successful_unsafe_requests_invalidate_every_copy_of_their_uri() {
    let c = plugin(json!({"key_headers": ["x-tenant"]}));
    let german = || get("/items").with_header("accept-language", "de");
    let varying = || ok("Hallo").with_header("vary", "accept-language");
    let t1 = || get("/items").with_header("x-tenant", "t1");
    // Every copy of /items, each a miss that stores it (again).
    let fill = || {
        let misses = [
            trip(&c, get("/items"), ok("anonymous")),
            trip_as(&c, Some("alice"), get("/items"), ok("alice's")),
            trip(&c, t1(), ok("t1's")),
            trip_as(&c, Some("bob"), german(), varying()),
        ];
        misses.iter().all(|t| t.x_cache() == Some("MISS"))
    };
    trip(&c, get("/items?page=2"), ok("page 2"));
    assert!(fill());
    assert_hit(&c, get("/items"), "anonymous");
    assert_hit(&c, t1(), "t1's");
    for method in ["POST", "PUT", "DELETE", "PATCH", "FROBNICATE"] {
        let unsafe_request = Request::new(method, "/items").with_authority("api.example.com");
        let t = trip(&c, unsafe_request, Response::text(204, ""));
        assert_eq!(t.x_cache(), Some("BYPASS"), "{method}");
        assert!(fill(), "{method} left a copy");
        assert_hit(&c, get("/items"), "anonymous");
        let t = trip_as(&c, Some("bob"), german(), ok("upstream was called"));
        assert_eq!((t.x_cache(), t.body()), (Some("HIT"), "Hallo"));
        // Another URI (the query is part of it) is left alone.
        assert_hit(&c, get("/items?page=2"), "page 2");
    }
    let post = Request::new("POST", "/items?page=2").with_authority("api.example.com");
    trip(&c, post, Response::text(201, "created"));
    assert_miss(&c, get("/items?page=2"));
    assert_hit(&c, get("/items"), "anonymous");
}

#[test]
fn failed_or_safe_requests_invalidate_nothing() {
    let c = plugin(json!({}));
    trip(&c, get("/items"), ok("stored"));
    for (method, status) in [
        ("POST", 400),
        ("PUT", 404),
        ("DELETE", 500),
        ("OPTIONS", 200),
        ("TRACE", 200),
    ] {
        let req = Request::new(method, "/items").with_authority("api.example.com");
        trip(&c, req, Response::text(status, "no"));
        assert_hit(&c, get("/items"), "stored");
    }
    // A redirect is a success.
    let req = Request::new("POST", "/items").with_authority("api.example.com");
    trip(
        &c,
        req,
        Response::new(303).with_header("location", "/items/1"),
    );
    assert_miss(&c, get("/items"));
}

/// `Location` and `Content-Location` are invalidated too when they are on the
/// request's host, relative references resolved against the request URI.
#[test]
fn unsafe_requests_invalidate_same_origin_location_and_content_location() {
    let c = plugin(json!({"key_query": ["page"]}));
    let paths = [
        "/shop/cart",
        "/shop/items/7",
        "/shop/items/8",
        "/shop/list?page=2",
        "/elsewhere",
    ];
    for path in paths {
        trip(&c, get(path), ok(path));
    }
    let post = || Request::new("POST", "/shop/items/new?x=1").with_authority("API.example.com");
    trip(
        &c,
        post(),
        Response::new(201)
            .with_header("location", "7")
            .with_header("content-location", "http://api.example.com/shop/cart#top"),
    );
    assert_miss(&c, get("/shop/items/7"));
    assert_miss(&c, get("/shop/cart"));
    assert_hit(&c, get("/shop/items/8"), "/shop/items/8");
    trip(
        &c,
        post(),
        Response::new(303).with_header("location", "../list?utm=mail&page=2"),
    );
    assert_miss(&c, get("/shop/list?page=2"));
    // Other hosts are not this cache's to invalidate.
    trip(
        &c,
        post(),
        Response::new(201)
            .with_header("location", "http://evil.example/elsewhere")
            .with_header("content-location", "//other.example/shop/items/8"),
    );
    assert_hit(&c, get("/elsewhere"), "/elsewhere");
    assert_hit(&c, get("/shop/items/8"), "/shop/items/8");
}

fn sent<'a>(t: &'a Trip, name: &str) -> Option<&'a str> {
    t.upstream.as_ref().and_then(|req| req.headers().get(name))
}

/// RFC 9111 4.3: a stale entry with an `ETag` is revalidated with
/// `If-None-Match`; a `304` refreshes its headers and the client gets the
/// stored body with the stored status.
#[test]
fn a_stale_entry_is_revalidated_and_a_304_refreshes_it() {
    let c = plugin(json!({}));
    // An hour of lifetime, two hours old: stale on arrival, yet kept.
    let first = trip(
        &c,
        get("/doc"),
        ok("v1")
            .with_header("etag", "\"v1\"")
            .with_header("cache-control", "max-age=3600")
            .with_header("age", "7200")
            .with_header("x-version", "1"),
    );
    assert_eq!(first.x_cache(), Some("MISS"));
    let t = trip(
        &c,
        get("/doc"),
        Response::new(304)
            .with_header("etag", "\"v1\"")
            .with_header("cache-control", "max-age=3600")
            .with_header("x-version", "2")
            .with_header("content-length", "0"),
    );
    assert_eq!(sent(&t, "if-none-match"), Some("\"v1\""));
    assert_eq!(t.x_cache(), Some("REVALIDATED"));
    assert_eq!(t.response.status(), 200);
    assert_eq!(t.body(), "v1");
    assert_eq!(t.response.headers().get("x-version"), Some("2"));
    assert_eq!(t.response.headers().get("age"), Some("0"));
    assert_eq!(
        t.response.headers().get("content-type"),
        Some("text/plain; charset=utf-8")
    );
    // Refreshed: fresh again, with the new headers.
    let t = trip(&c, get("/doc"), ok("upstream was called"));
    assert_eq!((t.x_cache(), t.body()), (Some("HIT"), "v1"));
    assert_eq!(t.response.headers().get("x-version"), Some("2"));
}

#[test]
fn no_cache_and_must_revalidate_entries_are_revalidated_on_every_stale_use() {
    let c = plugin(json!({}));
    let lm = "Sun, 06 Nov 1994 08:49:37 GMT";
    trip(
        &c,
        get("/nc"),
        ok("kept")
            .with_header("cache-control", "no-cache")
            .with_header("etag", "W/\"a\""),
    );
    trip(
        &c,
        get("/mr"),
        ok("dated")
            .with_header("cache-control", "max-age=0, must-revalidate")
            .with_header("last-modified", lm),
    );
    for _ in 0..2 {
        let t = trip(&c, get("/nc"), Response::new(304));
        assert_eq!(sent(&t, "if-none-match"), Some("W/\"a\""));
        assert_eq!((t.x_cache(), t.body()), (Some("REVALIDATED"), "kept"));
        let t = trip(&c, get("/mr"), Response::new(304));
        assert_eq!(sent(&t, "if-modified-since"), Some(lm));
        assert_eq!(sent(&t, "if-none-match"), None);
        assert_eq!((t.x_cache(), t.body()), (Some("REVALIDATED"), "dated"));
    }
    // A full answer replaces the entry.
    let t = trip(
        &c,
        get("/mr"),
        ok("new").with_header("cache-control", "max-age=60"),
    );
    assert_eq!((t.x_cache(), t.body()), (Some("MISS"), "new"));
    assert_hit(&c, get("/mr"), "new");
    // Without a validator, a stale response is not kept at all.
    trip(
        &c,
        get("/plain"),
        ok("v1").with_header("cache-control", "no-cache"),
    );
    let t = trip(&c, get("/plain"), ok("v2"));
    assert_eq!(sent(&t, "if-none-match"), None);
    assert_eq!(t.x_cache(), Some("MISS"));
}

/// The client's own conditional headers are answered by the cache, not sent
/// upstream beside the cache's validators.
#[test]
fn the_clients_own_conditions_are_answered_by_the_cache() {
    let c = plugin(json!({}));
    let tagged = |body: &str, cache_control: &str| {
        ok(body)
            .with_header("etag", "\"v1\"")
            .with_header("cache-control", cache_control)
    };
    trip(&c, get("/fresh"), tagged("fresh", "max-age=60"));
    let t = trip(
        &c,
        get("/fresh").with_header("if-none-match", "\"v0\", \"v1\""),
        ok("upstream was called"),
    );
    assert_eq!((t.x_cache(), t.response.status()), (Some("HIT"), 304));
    assert_eq!(t.response.body(), None);
    assert_eq!(t.response.headers().get("etag"), Some("\"v1\""));
    assert_eq!(t.response.headers().get("content-type"), None);
    let t = trip(
        &c,
        get("/fresh").with_header("if-none-match", "\"v2\""),
        ok("upstream was called"),
    );
    assert_eq!((t.response.status(), t.body()), (200, "fresh"));

    trip(&c, get("/stale"), tagged("stale", "no-cache"));
    let client_etag = || get("/stale").with_header("if-none-match", "\"mine\"");
    let t = trip(&c, client_etag(), Response::new(304));
    assert_eq!(sent(&t, "if-none-match"), Some("\"v1\""));
    assert_eq!((t.response.status(), t.body()), (200, "stale"));
    let t = trip(
        &c,
        get("/stale").with_header("if-none-match", "\"v1\""),
        Response::new(304),
    );
    assert_eq!(
        (t.x_cache(), t.response.status()),
        (Some("REVALIDATED"), 304)
    );
    // A new version that is the client's: 304 too.
    let t = trip(
        &c,
        get("/stale").with_header("if-none-match", "\"v2\""),
        ok("v2").with_header("etag", "\"v2\""),
    );
    assert_eq!((t.x_cache(), t.response.status()), (Some("MISS"), 304));
}

/// RFC 9213: configured as a CDN, the cache takes its freshness from
/// `CDN-Cache-Control` before `Cache-Control`, and strips it if told to.
#[test]
fn cdn_cache_control_decides_when_configured() {
    let both = || {
        ok("v1")
            .with_header("cache-control", "no-store")
            .with_header("cdn-cache-control", "max-age=600")
    };
    let plain = plugin(json!({}));
    trip(&plain, get("/cdn"), both());
    assert_miss(&plain, get("/cdn"));

    let cdn = plugin(json!({"targeted_cache_control": ["CDN-Cache-Control"]}));
    trip(&cdn, get("/cdn2"), both());
    let t = trip(&cdn, get("/cdn2"), ok("upstream was called"));
    assert_eq!((t.x_cache(), t.body()), (Some("HIT"), "v1"));
    assert_eq!(
        t.response.headers().get("cdn-cache-control"),
        Some("max-age=600")
    );
    // CDN-Cache-Control: no-store wins over a Cache-Control max-age.
    trip(
        &cdn,
        get("/cdn3"),
        ok("v1")
            .with_header("cache-control", "max-age=600")
            .with_header("cdn-cache-control", "no-store"),
    );
    assert_miss(&cdn, get("/cdn3"));

    let stripping = plugin(json!({
        "targeted_cache_control": ["CDN-Cache-Control"],
        "strip_targeted_cache_control": true,
    }));
    let miss = trip(&stripping, get("/cdn4"), both());
    assert_eq!(miss.response.headers().get("cdn-cache-control"), None);
    assert_eq!(
        miss.response.headers().get("cache-control"),
        Some("no-store")
    );
    let t = trip(&stripping, get("/cdn4"), ok("upstream was called"));
    assert_eq!((t.x_cache(), t.body()), (Some("HIT"), "v1"));
    assert_eq!(t.response.headers().get("cdn-cache-control"), None);
}

/// Stores a stale `ETag`ged entry under `path`, then runs `req` to it: the
/// request phase (a revalidation), `between` (what happens to the store
/// meanwhile), and the response phase with the upstream's `upstream`.
fn revalidate_with(
    cache: &Cache,
    path: &str,
    etag: &str,
    req: Request,
    between: impl FnOnce(),
    upstream: Response,
) -> Trip {
    trip(
        cache,
        get(path),
        ok("stored")
            .with_header("etag", etag)
            .with_header("cache-control", "no-cache"),
    );
    let mut req = req;
    let mut ctx = Context::new();
    assert!(matches!(
        cache.on_request(&mut req, &mut ctx),
        Action::Continue
    ));
    assert_eq!(req.headers().get("if-none-match"), Some(etag));
    between();
    let mut response = upstream;
    cache.on_response(&Request::new("GET", "/"), &mut response, &mut ctx);
    Trip {
        response,
        upstream: Some(req),
    }
}

fn error_message(t: &Trip) -> String {
    let body: Value = serde_json::from_str(t.body()).unwrap_or(Value::Null);
    assert_eq!(
        t.response.headers().get("content-type"),
        Some("application/json")
    );
    body["error"].as_str().unwrap_or_default().to_string()
}

/// The stale entry is evicted while its revalidation is under way: a plain
/// GET must not get the upstream's bodiless 304, but a 503 to retry at once
/// (the retry is a plain miss); a client whose own conditions the 304 meets
/// gets the 304.
#[test]
fn a_304_for_an_entry_gone_meanwhile_is_an_error_unless_the_client_asked() {
    let c = plugin(json!({}));
    let purge = || cache::purge("GET api.example.com/gone");
    let not_modified = || Response::new(304).with_header("etag", "\"v1\"");

    let t = revalidate_with(
        &c,
        "/gone",
        "\"v1\"",
        get("/gone").with_header("x-request-id", "r-1"),
        purge,
        not_modified(),
    );
    assert_eq!(t.response.status(), 503);
    assert_eq!(t.response.headers().get("retry-after"), Some("0"));
    assert_eq!(t.x_cache(), Some("MISS"));
    assert!(error_message(&t).contains("gone"));
    let body: Value = serde_json::from_str(t.body()).unwrap_or(Value::Null);
    assert_eq!(body["request_id"], "r-1");
    // The retry fetches in full.
    assert_miss(&c, get("/gone"));
    cache::purge("GET api.example.com/gone");

    // The client's own validator is the one the 304 is about (or that was
    // sent, when the 304 names none): the 304 answers it.
    let mine = || get("/gone").with_header("if-none-match", "\"v1\"");
    let t = revalidate_with(&c, "/gone", "\"v1\"", mine(), purge, not_modified());
    assert_eq!((t.response.status(), t.x_cache()), (304, Some("MISS")));
    let t = revalidate_with(&c, "/gone", "\"v1\"", mine(), purge, Response::new(304));
    assert_eq!(t.response.status(), 304);
    // Another validator of the client's is no reason for a 304.
    let other = get("/gone").with_header("if-none-match", "\"v0\"");
    let t = revalidate_with(&c, "/gone", "\"v1\"", other, purge, not_modified());
    assert_eq!(t.response.status(), 503);
}

/// RFC 9111 4.3.4: a 304 whose strong ETag is not the entry's validates
/// nothing; the stale body must not be served as REVALIDATED. The client
/// gets a 502 and the entry is dropped, so a retry fetches in full.
#[test]
fn a_304_naming_another_representation_is_a_bad_gateway() {
    let c = plugin(json!({}));
    let t = revalidate_with(
        &c,
        "/other",
        "\"v1\"",
        get("/other"),
        || {},
        Response::new(304).with_header("etag", "\"v2\""),
    );
    assert_eq!((t.response.status(), t.x_cache()), (502, Some("MISS")));
    assert_ne!(t.body(), "stored");
    assert!(error_message(&t).contains("304"));
    let retry = trip(&c, get("/other"), ok("v2").with_header("etag", "\"v2\""));
    assert_eq!(sent(&retry, "if-none-match"), None);
    assert_eq!((retry.x_cache(), retry.body()), (Some("MISS"), "v2"));

    // A client that has the 304's representation gets the 304.
    let t = revalidate_with(
        &c,
        "/other2",
        "\"v1\"",
        get("/other2").with_header("if-none-match", "\"v2\""),
        || {},
        Response::new(304).with_header("etag", "\"v2\""),
    );
    assert_eq!(t.response.status(), 304);
    assert_eq!(t.response.headers().get("etag"), Some("\"v2\""));
}

/// RFC 9111 4.3.4, RFC 9110 8.8.3.2: a weak ETag in a 304 refreshes only an
/// entry whose ETag matches it weakly, and keeps the entry's body.
#[test]
fn a_304_with_a_weak_etag_refreshes_only_a_weakly_matching_entry() {
    let c = plugin(json!({}));
    let t = revalidate_with(
        &c,
        "/weak",
        "\"v1\"",
        get("/weak"),
        || {},
        Response::new(304).with_header("etag", "W/\"v2\""),
    );
    assert_eq!(t.response.status(), 502);
    assert_ne!(t.x_cache(), Some("REVALIDATED"));

    for stored in ["W/\"v2\"", "\"v2\""] {
        let path = if stored.starts_with('W') {
            "/weak2"
        } else {
            "/weak3"
        };
        let t = revalidate_with(
            &c,
            path,
            stored,
            get(path),
            || {},
            Response::new(304)
                .with_header("etag", "W/\"v2\"")
                .with_header("x-version", "2"),
        );
        assert_eq!(
            (t.response.status(), t.x_cache(), t.body()),
            (200, Some("REVALIDATED"), "stored"),
            "{stored}"
        );
        assert_eq!(t.response.headers().get("x-version"), Some("2"));
    }
}

/// `strip_targeted_cache_control` applies to every answer that passes the
/// plugin: hits, stored misses, HEAD misses, bypasses and its own errors.
#[test]
fn targeted_fields_are_stripped_from_every_answer() {
    let c = plugin(json!({
        "targeted_cache_control": ["CDN-Cache-Control"],
        "strip_targeted_cache_control": true,
    }));
    let targeted = |status: u16| {
        Response::new(status)
            .with_header("cdn-cache-control", "max-age=600")
            .with_header("cache-control", "no-store")
    };
    let head = Request::new("HEAD", "/s").with_authority("api.example.com");
    let t = trip(&c, head, targeted(200));
    assert_eq!(t.x_cache(), Some("MISS"));
    assert_eq!(t.response.headers().get("cdn-cache-control"), None);
    assert_eq!(t.response.headers().get("cache-control"), Some("no-store"));

    let post = Request::new("POST", "/s").with_authority("api.example.com");
    let t = trip(&c, post, targeted(201));
    assert_eq!(t.x_cache(), Some("BYPASS"));
    assert_eq!(t.response.headers().get("cdn-cache-control"), None);

    let authorized = get("/s").with_header("authorization", "Bearer t");
    let t = trip(&c, authorized, targeted(200));
    assert_eq!(t.x_cache(), Some("BYPASS"));
    assert_eq!(t.response.headers().get("cdn-cache-control"), None);

    let t = revalidate_with(
        &c,
        "/s304",
        "\"v1\"",
        get("/s304").with_header("if-none-match", "\"v1\""),
        || cache::purge("GET api.example.com/s304"),
        Response::new(304)
            .with_header("etag", "\"v1\"")
            .with_header("cdn-cache-control", "max-age=600"),
    );
    assert_eq!(t.response.status(), 304);
    assert_eq!(t.response.headers().get("cdn-cache-control"), None);
}
