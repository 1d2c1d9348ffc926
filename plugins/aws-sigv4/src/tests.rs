//! The plugin against the AWS Signature Version 4 test suite, AWS's
//! documented IAM and S3 examples, and its own refusals.

use super::*;

/// The test suite's and the IAM example's secret (`AKIDEXAMPLE`).
const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
/// 2015-08-30T12:36:00Z, the test suite's time.
const SUITE_TIME: u64 = 1_440_938_160;
const SUITE_DATE: &str = "20150830T123600Z";

fn alice() -> Consumer {
    Consumer {
        name: "alice".into(),
        groups: vec!["gold".into()],
        plan: None,
        metadata: vec![],
    }
}

fn setup() {
    consumers::register_access_key(alice(), "AKIDEXAMPLE", SECRET);
    // The S3 documentation's examples use another key.
    consumers::register_access_key(
        alice(),
        "AKIAIOSFODNN7EXAMPLE",
        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    );
}

fn plugin(json: &str) -> AwsSigV4 {
    AwsSigV4::init(Config::from_json(json)).unwrap_or_else(|e| panic!("init failed: {e}"))
}

fn suite_plugin() -> AwsSigV4 {
    plugin(r#"{"region": "us-east-1", "service": "service"}"#)
}

fn status(action: &Action) -> Option<u16> {
    match action {
        Action::Respond(response) => Some(response.status()),
        _ => None,
    }
}

fn reason(action: &Action) -> String {
    match action {
        Action::Respond(response) => {
            String::from_utf8_lossy(response.body().unwrap_or_default()).into_owned()
        }
        _ => String::new(),
    }
}

/// A test-suite request: `path_and_query` on `example.amazonaws.com` at the
/// suite's time, signed with `signed_headers` and `signature`, with
/// `headers` (besides host and date).
fn suite_request(
    method: &str,
    path_and_query: &str,
    headers: &[(&str, &str)],
    signed_headers: &str,
    signature: &str,
) -> Request {
    let mut req = Request::new(method, path_and_query)
        .with_authority("example.amazonaws.com")
        .with_header("host", "example.amazonaws.com")
        .with_header("x-amz-date", SUITE_DATE);
    for (name, value) in headers {
        req = req.with_header(name, value);
    }
    req.with_header(
        "authorization",
        &format!(
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders={signed_headers}, Signature={signature}"
        ),
    )
}

fn admits(auth: &AwsSigV4, req: &mut Request, now: u64) -> Context {
    let mut ctx = Context::new();
    let action = auth.handle(req, &mut ctx, now);
    assert!(
        matches!(action, Action::Continue),
        "refused: {}",
        reason(&action)
    );
    ctx
}

/// A test-suite case: its name, path and query, extra headers, signed
/// headers and signature.
type SuiteCase = (
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str)],
    &'static str,
    &'static str,
);

/// Cases of the AWS Signature Version 4 test suite (`aws-sig-v4-test-suite`):
/// the request, the signed headers and the signature of its `.authz` file.
const SUITE: &[SuiteCase] = &[
    (
        "get-vanilla",
        "/",
        &[],
        "host;x-amz-date",
        "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
    ),
    (
        "get-vanilla-query-order-key-case",
        "/?Param2=value2&Param1=value1",
        &[],
        "host;x-amz-date",
        "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500",
    ),
    (
        "get-vanilla-query-order-value",
        "/?Param1=value2&Param1=value1",
        &[],
        "host;x-amz-date",
        "5772eed61e12b33fae39ee5e7012498b51d56abc0abb7c60486157bd471c4694",
    ),
    (
        "get-vanilla-query-order-key",
        "/?Param1=value2&Param1=Value1",
        &[],
        "host;x-amz-date",
        "eedbc4e291e521cf13422ffca22be7d2eb8146eecf653089df300a15b2382bd1",
    ),
    (
        "get-vanilla-empty-query-key",
        "/?Param1=value1",
        &[],
        "host;x-amz-date",
        "a67d582fa61cc504c4bae71f336f98b97f1ea3c7a6bfe1b6e45aec72011b9aeb",
    ),
    (
        "get-vanilla-utf8-query",
        "/?\u{1234}=bar",
        &[],
        "host;x-amz-date",
        "2cdec8eed098649ff3a119c94853b13c643bcf08f8b0a1d91e12c9027818dd04",
    ),
    (
        "get-vanilla-query-unreserved",
        "/?-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz=-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
        &[],
        "host;x-amz-date",
        "9c3e54bfcdf0b19771a7f523ee5669cdf59bc7cc0884027167c21bb143a40197",
    ),
    (
        "get-utf8",
        "/\u{1234}",
        &[],
        "host;x-amz-date",
        "8318018e0b0f223aa2bbf98705b62bb787dc9c0e678f255a891fd03141be5d85",
    ),
    (
        "get-unreserved",
        "/-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
        &[],
        "host;x-amz-date",
        "07ef7494c76fa4850883e2b006601f940f8a34d404d0cfa977f52a65bbf5f24f",
    ),
    (
        "get-header-value-trim",
        "/",
        &[("my-header1", " value1"), ("my-header2", " \"a   b   c\"")],
        "host;my-header1;my-header2;x-amz-date",
        "acc3ed3afb60bb290fc8d2dd0098b9911fcaa05412b367055dee359757a9c736",
    ),
    (
        "get-header-value-order",
        "/",
        &[
            ("my-header1", "value4"),
            ("my-header1", "value1"),
            ("my-header1", "value3"),
            ("my-header1", "value2"),
        ],
        "host;my-header1;x-amz-date",
        "08c7e5a9acfcfeb3ab6b2185e75ce8b1deb5e634ec47601a50643f830c755c01",
    ),
    (
        "get-header-key-duplicate",
        "/",
        &[
            ("my-header1", "value2"),
            ("my-header1", "value2"),
            ("my-header1", "value1"),
        ],
        "host;my-header1;x-amz-date",
        "c9d5ea9f3f72853aea855b47ea873832890dbdd183b4468f858259531a5138ea",
    ),
    (
        "get-space",
        "/example space/",
        &[],
        "host;x-amz-date",
        "652487583200325589f1fba4c7e578f72c47cb61beeca81406b39ddec1366741",
    ),
    (
        "post-vanilla",
        "/",
        &[],
        "host;x-amz-date",
        "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b",
    ),
    (
        "post-vanilla-query",
        "/?Param1=value1",
        &[],
        "host;x-amz-date",
        "28038455d6de14eafc1f9222cf5aa6f1a96197d7deb8263271d420d138af7f11",
    ),
    (
        "post-header-key-sort",
        "/",
        &[("my-header1", "value1")],
        "host;my-header1;x-amz-date",
        "c5410059b04c1ee005303aed430f6e6645f61f4dc9e1461ec8f8916fdf18852c",
    ),
    (
        "post-header-value-case",
        "/",
        &[("my-header1", "VALUE1")],
        "host;my-header1;x-amz-date",
        "cdbc9802e29d2942e5e10b5bccfdd67c5f22c7c4e8ae67b53629efa58b974b7d",
    ),
];

/// Each [`SUITE`] case verifies, and is refused with one digit of its
/// signature changed.
#[test]
fn the_aws_test_suite_verifies() {
    setup();
    let auth = suite_plugin();
    for (name, path, headers, signed, signature) in SUITE {
        let method = if name.starts_with("post") {
            "POST"
        } else {
            "GET"
        };
        let mut req = suite_request(method, path, headers, signed, signature);
        let mut ctx = Context::new();
        let action = auth.handle(&mut req, &mut ctx, SUITE_TIME);
        assert!(
            matches!(action, Action::Continue),
            "{name}: {}",
            reason(&action)
        );
        assert_eq!(
            ctx.get(CONTEXT_CONSUMER).as_deref(),
            Some("alice"),
            "{name}"
        );
        // One bit off: refused.
        let flipped = if signature.ends_with('0') { "1" } else { "0" };
        let wrong = format!("{}{flipped}", &signature[..63]);
        let mut req = suite_request(method, path, headers, signed, &wrong);
        assert_eq!(
            status(&auth.handle(&mut req, &mut Context::new(), SUITE_TIME)),
            Some(403),
            "{name}"
        );
    }
}

/// The suite's path-normalization cases (`get-relative`,
/// `get-relative-relative`, `get-slash`, `get-slash-dot-slash`,
/// `get-slash-pointless-dot`, `get-slashes`): AWS signs them normalized, and
/// the suite's signatures verify for the normalized paths (`/` is
/// `get-vanilla`'s); sent unnormalized they are refused, since the route was
/// chosen on the path as it came (`/reports/../admin`).
#[test]
fn unnormalized_paths_are_refused_and_hide_credentials_off_keeps_them() {
    setup();
    let vanilla = "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31";
    for path in ["/example/..", "/example1/example2/../..", "//", "/./"] {
        let mut req = suite_request("GET", path, &[], "host;x-amz-date", vanilla);
        let action = suite_plugin().handle(&mut req, &mut Context::new(), SUITE_TIME);
        assert_eq!(status(&action), Some(400), "{path}");
        assert!(reason(&action).contains("send it normalized"), "{path}");
    }
    let pointless = "ef75d96142cf21edca26f06005da7988e4f8dc83a165a80865db7089db637ec5";
    let mut req = suite_request("GET", "/example", &[], "host;x-amz-date", pointless);
    admits(&suite_plugin(), &mut req, SUITE_TIME);
    let slashes = "9a624bd73a37c9a373b5312afbebe7a714a789de108f0bdfe846570885f57e84";
    let keep = plugin(
        r#"{"region": "us-east-1", "service": "service", "hide_credentials": false, "consumer_headers": false}"#,
    );
    let mut req = suite_request("GET", "/example/", &[], "host;x-amz-date", slashes);
    admits(&keep, &mut req, SUITE_TIME);
    assert_eq!(req.path(), "/example/");
    assert!(req.headers().get("authorization").is_some());
    assert_eq!(req.headers().get("x-consumer-name"), None);
}

/// Headers the upstream would act on must be signed, and a signed header
/// must reach the upstream: an unsigned `x-amz-*` header, an unsigned
/// `Content-Type` over a body, a signed header named in `Connection`, and
/// one signed under one spelling and sent under another are refused.
#[test]
fn headers_the_upstream_reads_unsigned_are_refused() {
    setup();
    let vanilla = "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31";
    let refused = |req: &mut Request, says: &str| {
        let action = suite_plugin().handle(req, &mut Context::new(), SUITE_TIME);
        assert_eq!(status(&action), Some(400), "{says}");
        assert!(reason(&action).contains(says), "{}", reason(&action));
    };
    let extra: &[(&str, &str)] = &[("x-amz-acl", "public-read")];
    refused(
        &mut suite_request("GET", "/", extra, "host;x-amz-date", vanilla),
        "the x-amz-acl header must be signed",
    );
    let extra: &[(&str, &str)] = &[("connection", "keep-alive, X-Amz-Date")];
    refused(
        &mut suite_request("GET", "/", extra, "host;x-amz-date", vanilla),
        "named in Connection",
    );
    let extra: &[(&str, &str)] = &[("content-type", "application/json")];
    let mut with_body =
        suite_request("POST", "/", extra, "host;x-amz-date", vanilla).with_body("{}");
    refused(&mut with_body, "the content-type header must be signed");
    let header_trim = "acc3ed3afb60bb290fc8d2dd0098b9911fcaa05412b367055dee359757a9c736";
    let extra: &[(&str, &str)] = &[
        ("my_header1", "value1"),
        ("my-header1", "value1"),
        ("my-header2", "\"a   b   c\""),
    ];
    refused(
        &mut suite_request(
            "GET",
            "/",
            extra,
            "host;my-header1;my-header2;x-amz-date",
            header_trim,
        ),
        "under another spelling",
    );
}

/// The suite's `post-x-www-form-urlencoded` and
/// `post-x-www-form-urlencoded-parameters` (a body, hashed; the content
/// type, its `.sts` and `.authz` files agree on, is signed but not the
/// length) and `post-sts-header-before` (a session token, signed).
#[test]
fn the_aws_test_suite_with_a_body_and_a_token() {
    setup();
    let auth = suite_plugin();
    for (content_type, signature) in [
        (
            "application/x-www-form-urlencoded",
            "ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a",
        ),
        (
            "application/x-www-form-urlencoded; charset=utf8",
            "1a72ec8f64bd914b0e42e42607c7fbce7fb2c7465f63e3092b3b0d39fa77a6fe",
        ),
    ] {
        let form = [("content-type", content_type), ("content-length", "13")];
        let mut req = suite_request(
            "POST",
            "/",
            &form,
            "content-type;host;x-amz-date",
            signature,
        )
        .with_body("Param1=value1");
        admits(&auth, &mut req, SUITE_TIME);
        let mut tampered = suite_request(
            "POST",
            "/",
            &form,
            "content-type;host;x-amz-date",
            signature,
        )
        .with_body("Param1=value2");
        assert_eq!(
            status(&auth.handle(&mut tampered, &mut Context::new(), SUITE_TIME)),
            Some(403)
        );
    }

    let token = "AQoDYXdzEPT//////////wEXAMPLEtc764bNrC9SAPBSM22wDOk4x4HIZ8j4FZTwdQWLWsKWHGBuFqwAeMicRXmxfpSPfIeoIYRqTflfKD8YUuwthAx7mSEI/qkPpKPi/kMcGdQrmGdeehM4IC1NtBmUpp2wUE8phUZampKsburEDy0KPkyQDYwT7WZ0wq5VSXDvp75YU9HFvlRd8Tx6q6fE8YQcHNVXAkiY9q6d+xo0rKwT38xVqr7ZD0u0iPPkUL64lIZbqBAz+scqKmlzm8FDrypNC9Yjc8fPOLn9FX9KSYvKTr4rvx3iSIlTJabIQwj2ICCR/oLxBA==";
    let mut req = suite_request(
        "POST",
        "/",
        &[("x-amz-security-token", token)],
        "host;x-amz-date;x-amz-security-token",
        "85d96828115b5dc0cfc3bd16ad9e210dd772bbebba041836c64533a82be05ead",
    );
    admits(&auth, &mut req, SUITE_TIME);
}

/// The IAM `ListUsers` example of the AWS Signature Version 4
/// documentation.
#[test]
fn the_documented_iam_example_verifies_and_is_hidden() {
    setup();
    let auth = plugin(r#"{"region": "us-east-1", "service": "iam"}"#);
    let request = |signature: &str| {
        Request::new("GET", "/?Action=ListUsers&Version=2010-05-08")
            .with_authority("iam.amazonaws.com")
            .with_header("host", "iam.amazonaws.com")
            .with_header("content-type", "application/x-www-form-urlencoded; charset=utf-8")
            .with_header("x-amz-date", "20150830T123600Z")
            .with_header("x-consumer-name", "mallory")
            .with_header("authorization", &format!("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/iam/aws4_request, SignedHeaders=content-type;host;x-amz-date, Signature={signature}"))
    };
    let mut req = request("5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7");
    let ctx = admits(&auth, &mut req, SUITE_TIME + 60);
    assert_eq!(ctx.get(CONTEXT_AUTH).as_deref(), Some("aws-sigv4"));
    assert_eq!(ctx.get(CONTEXT_GROUPS).as_deref(), Some("gold"));
    assert_eq!(req.headers().get("authorization"), None);
    assert_eq!(req.headers().get("x-consumer-name"), Some("alice"));
    assert_eq!(req.headers().get_all("x-consumer-name").count(), 1);
    // Out of the five-minute window, either way: refused.
    for now in [SUITE_TIME + 301, SUITE_TIME - 301] {
        let mut late = request("5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7");
        let action = auth.handle(&mut late, &mut Context::new(), now);
        assert_eq!(status(&action), Some(403));
        assert!(reason(&action).contains("too far"), "{}", reason(&action));
    }
    // Scoped to the suite's service, not this one.
    let mut other = suite_request(
        "GET",
        "/",
        &[],
        "host;x-amz-date",
        "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
    );
    assert_eq!(
        status(&auth.handle(&mut other, &mut Context::new(), SUITE_TIME)),
        Some(403)
    );
}

/// The S3 documentation's presigned `GET` of `examplebucket/test.txt`.
const S3_PRESIGNED: &str = "/test.txt?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host&X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404";
/// 2013-05-24T00:00:00Z.
const S3_TIME: u64 = 1_369_353_600;

fn s3_request(path_and_query: &str) -> Request {
    Request::new("GET", path_and_query)
        .with_authority("examplebucket.s3.amazonaws.com")
        .with_header("host", "examplebucket.s3.amazonaws.com")
}

#[test]
fn the_documented_s3_presigned_url_verifies_until_it_expires() {
    setup();
    let auth = plugin(r#"{"region": "us-east-1", "service": "s3"}"#);
    let mut req = s3_request(&format!("{S3_PRESIGNED}&a=b%20c"));
    // An extra parameter is not signed: refused. Without it: admitted.
    assert_eq!(
        status(&auth.handle(&mut req, &mut Context::new(), S3_TIME + 10)),
        Some(403)
    );
    let mut req = s3_request(S3_PRESIGNED);
    admits(&auth, &mut req, S3_TIME + 86_400);
    assert_eq!(req.query(), "");
    let mut expired = s3_request(S3_PRESIGNED);
    let action = auth.handle(&mut expired, &mut Context::new(), S3_TIME + 86_401);
    assert!(reason(&action).contains("expired"), "{}", reason(&action));
    let mut early = s3_request(S3_PRESIGNED);
    let action = auth.handle(&mut early, &mut Context::new(), S3_TIME - 301);
    assert!(reason(&action).contains("future"), "{}", reason(&action));
    // Not accepted when presigned URLs are off; both forms at once: 400.
    let off = plugin(r#"{"region": "us-east-1", "service": "s3", "allow_presigned": false}"#);
    let mut req = s3_request(S3_PRESIGNED);
    assert_eq!(
        status(&off.handle(&mut req, &mut Context::new(), S3_TIME)),
        Some(401)
    );
    let mut both =
        s3_request(S3_PRESIGNED).with_header("authorization", "AWS4-HMAC-SHA256 Credential=x");
    assert_eq!(
        status(&auth.handle(&mut both, &mut Context::new(), S3_TIME)),
        Some(400)
    );
    let twice = S3_PRESIGNED.replace(
        "X-Amz-Expires=86400",
        "X-Amz-Expires=86400&X-Amz-Expires=60",
    );
    let mut req = s3_request(&twice);
    assert_eq!(
        status(&auth.handle(&mut req, &mut Context::new(), S3_TIME)),
        Some(400)
    );
}

#[test]
fn single_use_refuses_a_second_request_with_the_same_signature() {
    setup();
    let auth = plugin(
        r#"{"region": "us-east-1", "service": "service", "single_use": true, "allow_presigned": false}"#,
    );
    let vanilla = "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31";
    let request = || suite_request("GET", "/", &[], "host;x-amz-date", vanilla);
    admits(&auth, &mut request(), SUITE_TIME + 5);
    let action = auth.handle(&mut request(), &mut Context::new(), SUITE_TIME + 5);
    assert_eq!(status(&action), Some(403));
    assert!(
        reason(&action).contains("already used"),
        "{}",
        reason(&action)
    );
}

#[test]
fn missing_repeated_and_malformed_credentials() {
    setup();
    let auth = suite_plugin();
    let vanilla = "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31";
    let run = |req: &mut Request| auth.handle(req, &mut Context::new(), SUITE_TIME);
    let mut none = Request::new("GET", "/").with_header("host", "example.amazonaws.com");
    assert_eq!(status(&run(&mut none)), Some(401));
    let mut bearer = none.clone().with_header("authorization", "Bearer x");
    assert_eq!(status(&run(&mut bearer)), Some(401));
    // A literal + in the query: refused, whatever it was meant to be.
    let mut plus = suite_request("GET", "/?a=b+c", &[], "host;x-amz-date", vanilla);
    let action = run(&mut plus);
    assert_eq!(status(&action), Some(400));
    assert!(reason(&action).contains("%2B"), "{}", reason(&action));
    let mut twice = suite_request("GET", "/", &[], "host;x-amz-date", vanilla)
        .with_header("authorization", "x");
    assert_eq!(status(&run(&mut twice)), Some(400));
    let mut unsigned_host = suite_request("GET", "/", &[], "x-amz-date", vanilla);
    assert_eq!(status(&run(&mut unsigned_host)), Some(400));
    let mut unsigned_date = suite_request("GET", "/", &[], "host", vanilla);
    assert_eq!(status(&run(&mut unsigned_date)), Some(400));
    let mut missing = suite_request("GET", "/", &[], "host;my-header1;x-amz-date", vanilla);
    assert_eq!(status(&run(&mut missing)), Some(400));
    let mut alias = suite_request(
        "GET",
        "/",
        &[("my-header1", "a"), ("my_header1", "b")],
        "host;my-header1;x-amz-date",
        vanilla,
    );
    assert_eq!(status(&run(&mut alias)), Some(400));
    let mut streaming = suite_request(
        "GET",
        "/",
        &[("x-amz-content-sha256", "STREAMING-AWS4-HMAC-SHA256-PAYLOAD")],
        "host;x-amz-content-sha256;x-amz-date",
        vanilla,
    );
    assert_eq!(status(&run(&mut streaming)), Some(400));
    let mut unsigned_sha = suite_request(
        "GET",
        "/",
        &[("x-amz-content-sha256", "UNSIGNED-PAYLOAD")],
        "host;x-amz-date",
        vanilla,
    );
    assert_eq!(status(&run(&mut unsigned_sha)), Some(400));
    let wrong_hash = "0000000000000000000000000000000000000000000000000000000000000000";
    let mut mismatch = suite_request(
        "GET",
        "/",
        &[("x-amz-content-sha256", wrong_hash)],
        "host;x-amz-content-sha256;x-amz-date",
        vanilla,
    );
    let action = run(&mut mismatch);
    assert!(
        reason(&action).contains("does not match the body"),
        "{}",
        reason(&action)
    );
    // The unknown key and the wrong signature read alike.
    let mut unknown = suite_request("GET", "/", &[], "host;x-amz-date", vanilla);
    unknown.headers_mut().set("authorization", format!("AWS4-HMAC-SHA256 Credential=AKIDUNKNOWN/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature={vanilla}"));
    let action = run(&mut unknown);
    assert_eq!(status(&action), Some(403));
    assert!(
        reason(&action).contains("signature does not match"),
        "{}",
        reason(&action)
    );
}

#[test]
fn a_date_header_may_time_the_request() {
    setup();
    let auth = suite_plugin();
    // Sign a request timed by `Date` with the host's own code.
    let canonical = "GET\n/\n\ndate:Sun, 30 Aug 2015 12:36:00 GMT\nhost:example.amazonaws.com\n\ndate;host\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    let sts = format!(
        "AWS4-HMAC-SHA256\n{SUITE_DATE}\n20150830/us-east-1/service/aws4_request\n{}",
        sha256_hex(canonical.as_bytes())
    );
    let signature =
        consumers::sigv4::signature(SECRET.as_bytes(), "20150830", "us-east-1", "service", &sts);
    let mut req = Request::new("GET", "/")
        .with_header("host", "example.amazonaws.com")
        .with_header("date", "Sun, 30 Aug 2015 12:36:00 GMT")
        .with_header("authorization", &format!("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=date;host, Signature={}", canonical::hex(&signature)));
    admits(&auth, &mut req, SUITE_TIME);
}
