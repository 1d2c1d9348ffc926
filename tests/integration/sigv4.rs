//! The `aws-sigv4` built-in through the real binary, with requests signed by
//! AWS's own signer: botocore's `SigV4Auth` (the `Authorization` header) and
//! `SigV4QueryAuth` (presigned URLs), run by python3 with the botocore that
//! `tests/run` installs into `target/python-deps`.

use crate::support::config::{Config, Plugin, Route};
use crate::support::{Gateway, Reply, Upstream, client, python, send};
use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use serde_json::{Value, json};

const ACCESS_KEY: &str = "AKIAIOSFODNN7EXAMPLE";
const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
const REGION: &str = "eu-west-1";
const SERVICE: &str = "execute-api";

/// Signs a request with botocore and prints it as JSON: the method, URL,
/// headers and body botocore would send. `time` (epoch seconds) stands in
/// for botocore's clock; `expires` makes a presigned URL.
const SIGNER: &str = r#"
import datetime, json, sys
from unittest import mock
try:
    import botocore
    from botocore.auth import SigV4Auth, SigV4QueryAuth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials
except ImportError as error:
    sys.exit("botocore is not importable (%s)" % error)
spec = json.load(sys.stdin)
credentials = Credentials(spec["access_key"], spec["secret"])
request = AWSRequest(method=spec["method"], url=spec["url"], data=spec["body"].encode() or None, headers=spec["headers"])
if spec.get("expires") is not None:
    signer = SigV4QueryAuth(credentials, spec["service"], spec["region"], expires=spec["expires"])
else:
    signer = SigV4Auth(credentials, spec["service"], spec["region"])
if spec.get("time") is not None:
    at = datetime.datetime.fromtimestamp(spec["time"], datetime.timezone.utc).replace(tzinfo=None)
    with mock.patch("botocore.auth.get_current_datetime", return_value=at):
        signer.add_auth(request)
else:
    signer.add_auth(request)
prepared = request.prepare()
body = prepared.body or b""
print(json.dumps({
    "method": prepared.method,
    "url": prepared.url,
    "headers": [[k, v] for k, v in prepared.headers.items()],
    "body": body.decode() if isinstance(body, bytes) else body,
}))
"#;

/// What botocore signed.
#[derive(Debug, Clone)]
struct Signed {
    method: String,
    url: String,
    headers: Vec<(String, String)>,
    body: String,
}

/// What to sign.
struct Spec<'a> {
    method: &'a str,
    url: String,
    headers: Value,
    body: &'a str,
    access_key: &'a str,
    secret: &'a str,
    time: Option<u64>,
    expires: Option<u64>,
}

impl<'a> Spec<'a> {
    fn new(method: &'a str, url: String) -> Spec<'a> {
        Spec {
            method,
            url,
            headers: json!({}),
            body: "",
            access_key: ACCESS_KEY,
            secret: SECRET,
            time: None,
            expires: None,
        }
    }

    /// Signed by botocore; fails the test when python3 or botocore is
    /// missing.
    fn sign(&self) -> Signed {
        let input = json!({
            "method": self.method, "url": self.url, "headers": self.headers, "body": self.body,
            "access_key": self.access_key, "secret": self.secret,
            "region": REGION, "service": SERVICE, "time": self.time, "expires": self.expires,
        });
        let output = python(SIGNER, input.to_string().as_bytes());
        let signed: Value = serde_json::from_slice(&output).expect("signer JSON");
        let text = |v: &Value| v.as_str().expect("string").to_string();
        Signed {
            method: text(&signed["method"]),
            url: text(&signed["url"]),
            headers: signed["headers"]
                .as_array()
                .expect("headers")
                .iter()
                .map(|pair| (text(&pair[0]), text(&pair[1])))
                .collect(),
            body: text(&signed["body"]),
        }
    }
}

impl Signed {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn set_header(&mut self, name: &str, value: &str) {
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        self.headers.push((name.to_string(), value.to_string()));
    }

    /// Sends it as botocore would have.
    async fn send(&self) -> Reply {
        let mut builder = Request::builder()
            .method(self.method.as_str())
            .uri(&self.url);
        for (name, value) in &self.headers {
            builder = builder.header(name, value);
        }
        let request = builder
            .body(Full::new(Bytes::from(self.body.clone())))
            .expect("request");
        send(&client(), request).await
    }
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn sigv4(settings: Value) -> Plugin {
    let mut config = json!({ "region": REGION, "service": SERVICE });
    if let (Some(config), Some(more)) = (config.as_object_mut(), settings.as_object()) {
        config.extend(more.clone());
    }
    Plugin::new("aws-sigv4").config(config)
}

async fn gateway(upstream: &Upstream) -> Gateway {
    Config::new()
        .upstream("api", upstream)
        .consumer(json!({
            "name": "alice",
            "groups": ["ops"],
            "access_keys": [{ "id": ACCESS_KEY, "secret": { "env": "ALICE_AWS_SECRET" } }],
        }))
        .route(
            Route::new("api", "/api/{*rest}")
                .upstream("api")
                .plugin(sigv4(json!({}))),
        )
        .route(
            Route::new("once", "/once/{*rest}")
                .upstream("api")
                .plugin(sigv4(json!({ "single_use": true, "max_expires": "1h" }))),
        )
        .start_with_env(&[("ALICE_AWS_SECRET", SECRET)])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_signed_by_botocore_are_admitted_and_their_credentials_hidden() {
    let upstream = Upstream::start("api").await;
    let gw = gateway(&upstream).await;

    let get = Spec::new("GET", gw.url("/api/items?b=2&a=1&a=0&empty=&q=x%20y%2Bz")).sign();
    let reply = get.send().await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let echo = reply.json();
    assert_eq!(echo["headers"]["x-consumer-name"], "alice");
    assert_eq!(echo["headers"]["x-consumer-groups"], "ops");
    assert!(echo["headers"].get("authorization").is_none(), "{echo}");
    assert_eq!(echo["query"], "b=2&a=1&a=0&empty=&q=x%20y%2Bz");

    let mut post = Spec::new("POST", gw.url("/api/orders"));
    post.headers = json!({ "Content-Type": "application/json" });
    post.body = r#"{"item": "book", "qty": 2}"#;
    let post = post.sign();
    let reply = post.send().await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json()["body"], r#"{"item": "book", "qty": 2}"#);

    // Spaces, an encoded slash and UTF-8 in the path, as botocore encodes it.
    let encoded = Spec::new("GET", gw.url("/api/caf%C3%A9/a%20b/x%2Fy")).sign();
    let reply = encoded.send().await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json()["path"], "/api/caf%C3%A9/a%20b/x%2Fy");

    let mut presign = Spec::new("GET", gw.url("/api/report?format=csv"));
    presign.expires = Some(300);
    let presigned = presign.sign();
    assert!(
        presigned.url.contains("X-Amz-Signature="),
        "{}",
        presigned.url
    );
    let reply = presigned.send().await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json()["query"], "format=csv");
    assert_eq!(reply.json()["headers"]["x-consumer-name"], "alice");
    assert_eq!(upstream.hits(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anything_changed_after_signing_is_refused() {
    let upstream = Upstream::start("api").await;
    let gw = gateway(&upstream).await;
    let mut spec = Spec::new("POST", gw.url("/api/orders?page=1"));
    spec.headers = json!({ "Content-Type": "application/json", "X-Tenant": "acme" });
    spec.body = r#"{"qty": 1}"#;
    let signed = spec.sign();
    assert_eq!(signed.send().await.status, 200);

    let mut method = signed.clone();
    method.method = "PUT".into();
    let mut path = signed.clone();
    path.url = path.url.replace("/api/orders", "/api/orderz");
    let mut query = signed.clone();
    query.url = query.url.replace("page=1", "page=2");
    let mut header = signed.clone();
    header.set_header("X-Tenant", "other");
    let mut body = signed.clone();
    body.body = r#"{"qty": 9}"#.into();
    let mut date = signed.clone();
    let amz_date = signed.header("X-Amz-Date").expect("x-amz-date").to_string();
    let second = if amz_date.ends_with("0Z") { "1" } else { "0" };
    let later = format!("{}{second}Z", &amz_date[..14]);
    date.set_header("X-Amz-Date", &later);
    for (what, tampered) in [
        ("method", method),
        ("path", path),
        ("query", query),
        ("signed header", header),
        ("body", body),
        ("X-Amz-Date", date),
    ] {
        let reply = tampered.send().await;
        assert_eq!(reply.status, 403, "{what}: {}", reply.body);
        assert_eq!(
            reply.json()["error"],
            "forbidden: signature does not match",
            "{what}"
        );
    }
    assert_eq!(upstream.hits(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_keys_old_signatures_and_mixed_credentials_are_refused() {
    let upstream = Upstream::start("api").await;
    let gw = gateway(&upstream).await;
    let url = || gw.url("/api/items");

    let mut wrong_secret = Spec::new("GET", url());
    wrong_secret.secret = "not-the-secret-of-alice";
    assert_eq!(wrong_secret.sign().send().await.status, 403);
    let mut unknown = Spec::new("GET", url());
    unknown.access_key = "AKIAUNKNOWNKEY000000";
    let reply = unknown.sign().send().await;
    assert_eq!(reply.status, 403);
    assert_eq!(reply.json()["error"], "forbidden: signature does not match");

    let mut skewed = Spec::new("GET", url());
    skewed.time = Some(now() - 600);
    let reply = skewed.sign().send().await;
    assert_eq!(reply.status, 403);
    assert!(reply.body.contains("too far"), "{}", reply.body);
    let mut ahead = Spec::new("GET", url());
    ahead.time = Some(now() + 600);
    assert_eq!(ahead.sign().send().await.status, 403);

    let mut expired = Spec::new("GET", url());
    expired.time = Some(now() - 120);
    expired.expires = Some(60);
    let reply = expired.sign().send().await;
    assert_eq!(reply.status, 403);
    assert!(reply.body.contains("expired"), "{}", reply.body);

    let mut both = Spec::new("GET", url()).sign();
    let mut presign = Spec::new("GET", url());
    presign.expires = Some(300);
    both.url = presign.sign().url;
    let reply = both.send().await;
    assert_eq!(reply.status, 400, "{}", reply.body);

    let missing = crate::support::get(&url()).await;
    assert_eq!(missing.status, 401);
    assert_eq!(upstream.hits(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_use_refuses_a_replayed_signature() {
    let upstream = Upstream::start("api").await;
    let gw = gateway(&upstream).await;
    let signed = Spec::new("GET", gw.url("/once/x")).sign();
    assert_eq!(signed.send().await.status, 200);
    let replay = signed.send().await;
    assert_eq!(replay.status, 403, "{}", replay.body);
    assert!(replay.body.contains("already used"), "{}", replay.body);
    // Without single_use the same request passes twice.
    let signed = Spec::new("GET", gw.url("/api/x")).sign();
    assert_eq!(signed.send().await.status, 200);
    assert_eq!(signed.send().await.status, 200);
    assert_eq!(upstream.hits(), 3);
}
