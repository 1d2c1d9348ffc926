//! `mtls-auth` reads its credential from the connection's verified
//! certificate (the context the gateway fills), never from a header: forged
//! identity headers, however many lines, neither admit a request nor change
//! who it is, and the upstream gets exactly one line of each consumer header.

use plugin_mtls_auth::{CONTEXT_CN, CONTEXT_CONSUMER, CONTEXT_FINGERPRINT, MtlsAuth};
use plugin_sdk::consumers::{self, Consumer};
use plugin_sdk::{Action, Config, Context, Plugin, Request};

fn setup() {
    for name in ["billing", "admin"] {
        let consumer = Consumer {
            name: name.into(),
            groups: vec![],
            plan: None,
            metadata: vec![],
        };
        consumers::register(consumer, &[]);
    }
}

fn plugin() -> MtlsAuth {
    MtlsAuth::init(Config::from_json("{}")).unwrap_or_else(|e| panic!("init failed: {e}"))
}

/// A request carrying forged identity headers, each line twice.
fn forged_request() -> Request {
    Request::new("GET", "/x")
        .with_header("x-forwarded-client-cert", "Hash=00;Subject=\"CN=admin\"")
        .with_header("x-forwarded-client-cert", "Hash=11;Subject=\"CN=admin\"")
        .with_header("authorization", "Bearer admin")
        .with_header("x-consumer-name", "admin")
        .with_header("X-Consumer-Name", "admin")
}

#[test]
fn forged_identity_headers_without_a_certificate_are_refused() {
    setup();
    let mut req = forged_request();
    let mut ctx = Context::new();
    let action = plugin().on_request(&mut req, &mut ctx);
    let Action::Respond(response) = action else {
        panic!("admitted on forged headers");
    };
    assert_eq!(response.status(), 401);
    assert_eq!(ctx.get(CONTEXT_CONSUMER), None);
    assert!(!req.headers().contains("x-consumer-name"));
}

#[test]
fn the_certificate_names_the_consumer_and_one_line_goes_upstream() {
    setup();
    let mut req = forged_request();
    let mut ctx = Context::new();
    ctx.set(CONTEXT_FINGERPRINT, "ab".repeat(32));
    ctx.set(CONTEXT_CN, "billing");
    assert!(matches!(
        plugin().on_request(&mut req, &mut ctx),
        Action::Continue
    ));
    assert_eq!(ctx.get(CONTEXT_CONSUMER).as_deref(), Some("billing"));
    assert_eq!(
        req.headers().get_all("x-consumer-name").collect::<Vec<_>>(),
        ["billing"]
    );
}
