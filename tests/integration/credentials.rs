//! A credential given more than once, through the real binary: `key-auth`
//! and `jwt` refuse it before the upstream sees anything, and with one valid
//! credential the upstream receives exactly that one (or none, with
//! `hide_credentials`); `mtls-auth` takes the certificate, never a forged
//! header. The upstream records every header line it gets, so a second line
//! cannot hide behind the first.

use crate::support::config::{Config, Plugin, Route};
use crate::support::{Gateway, Reply, client, send, serve_http1};
use aws_lc_rs::hmac;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::json;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const REPEATED: &str = "unauthorized: credential given more than once";
const KEY: &str = "alice-key-0000000001";
const HS_SECRET: &str = "an-hs256-secret-of-at-least-32-bytes!!";

/// Every header line of one request, in order, names lower-cased.
type Lines = Vec<(String, String)>;

/// A real upstream that answers 200 and records the header lines and query
/// of every request it receives.
struct Recorder {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<(Lines, String)>>>,
}

impl Recorder {
    async fn start() -> Recorder {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind upstream");
        let addr = listener.local_addr().expect("upstream addr");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        serve_http1(
            listener,
            None,
            service_fn(move |req: Request<Incoming>| {
                let lines = req
                    .headers()
                    .iter()
                    .map(|(n, v)| (n.to_string(), String::from_utf8_lossy(v.as_bytes()).into()))
                    .collect();
                let query = req.uri().query().unwrap_or_default().to_string();
                if let Ok(mut log) = log.lock() {
                    log.push((lines, query));
                }
                async { Ok::<_, Infallible>(Response::new(Full::new(Bytes::from("ok")))) }
            }),
        );
        Recorder { addr, seen }
    }

    /// How many requests reached this upstream.
    fn requests(&self) -> usize {
        self.seen.lock().map(|seen| seen.len()).unwrap_or_default()
    }

    /// The values of header `name` in the last request, one per line.
    fn last_lines(&self, name: &str) -> Vec<String> {
        let seen = self.seen.lock().expect("recorder lock");
        let (lines, _) = seen.last().expect("no request reached the upstream");
        lines
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// The query string of the last request.
    fn last_query(&self) -> String {
        let seen = self.seen.lock().expect("recorder lock");
        seen.last()
            .map(|(_, query)| query.clone())
            .unwrap_or_default()
    }
}

/// A GET of `url` with these header lines, in order (repeats kept).
fn get_with(url: &str, headers: &[(&str, &str)]) -> Request<Full<Bytes>> {
    let mut builder = Request::get(url);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(Full::default()).expect("request")
}

/// `request` with one more header line, its value raw bytes (not text).
fn with_raw(
    mut request: Request<Full<Bytes>>,
    name: &'static str,
    value: &[u8],
) -> Request<Full<Bytes>> {
    let value = http::HeaderValue::from_bytes(value).expect("header value");
    request.headers_mut().append(name, value);
    request
}

fn assert_refused_as_repeated(reply: &Reply, case: &str) {
    assert_eq!(reply.status, 401, "{case}: {}", reply.body);
    assert_eq!(reply.json()["error"], REPEATED, "{case}");
}

/// An HS256 token for `sub`, valid for five minutes, MACed with `secret`.
pub(crate) fn hs256(secret: &str, sub: &str) -> String {
    hs256_with(secret, json!({ "sub": sub }))
}

/// An HS256 token with `claims` and an `exp` five minutes away.
pub(crate) fn hs256_with(secret: &str, mut claims: serde_json::Value) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    claims["exp"] = json!(now + 300);
    let header = B64.encode(json!({"alg": "HS256"}).to_string());
    let claims = B64.encode(claims.to_string());
    let input = format!("{header}.{claims}");
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
    let tag = hmac::sign(&key, input.as_bytes());
    format!("{input}.{}", B64.encode(tag.as_ref()))
}

fn key_auth_gateway(upstream: SocketAddr) -> Gateway {
    Config::new()
        .consumer(json!({ "name": "alice", "keys": [{ "plaintext": KEY.to_string() }] }))
        .upstream("api", upstream)
        .route(
            Route::new("kept", "/kept/{*rest}").upstream("api").plugin(
                Plugin::new("key-auth")
                    .config(json!({ "query": ["api_key"], "hide_credentials": false })),
            ),
        )
        .route(
            Route::new("hidden", "/hidden/{*rest}")
                .upstream("api")
                .plugin(Plugin::new("key-auth").config(json!({ "query": ["api_key"] }))),
        )
        .start()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_auth_refuses_a_key_given_twice_before_the_upstream_sees_it() {
    let upstream = Recorder::start().await;
    let gw = key_auth_gateway(upstream.addr);
    let client = client();
    let joined = format!("{KEY}, forged-key-0000000002");
    let cases = [
        (
            "two header lines, valid first",
            get_with(
                &gw.url("/kept/x"),
                &[("x-api-key", KEY), ("x-api-key", "forged-key-0000000002")],
            ),
        ),
        (
            "one comma-joined line",
            get_with(&gw.url("/kept/x"), &[("x-api-key", &joined)]),
        ),
        (
            "the parameter twice",
            get_with(
                &gw.url(&format!("/kept/x?api_key={KEY}&api_key=forged")),
                &[],
            ),
        ),
        (
            "header and parameter",
            get_with(&gw.url("/kept/x?api_key=forged"), &[("x-api-key", KEY)]),
        ),
        (
            "parameter and a header line that is not text",
            with_raw(
                get_with(&gw.url(&format!("/kept/x?api_key={KEY}")), &[]),
                "x-api-key",
                b"forged\xff",
            ),
        ),
    ];
    for (case, request) in cases {
        assert_refused_as_repeated(&send(&client, request).await, case);
    }
    assert_eq!(
        upstream.requests(),
        0,
        "a refused request reached the upstream"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_auth_forwards_exactly_the_one_key_it_checked_or_none() {
    let upstream = Recorder::start().await;
    let gw = key_auth_gateway(upstream.addr);
    let client = client();

    let reply = send(&client, get_with(&gw.url("/kept/x"), &[("x-api-key", KEY)])).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(upstream.last_lines("x-api-key"), [KEY]);

    // Hidden: neither the key nor an empty copy beside it goes on.
    let reply = send(
        &client,
        get_with(
            &gw.url(&format!("/hidden/x?api_key={KEY}&page=2")),
            &[("x-api-key", "")],
        ),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(upstream.last_query(), "page=2");
    assert!(upstream.last_lines("x-api-key").is_empty());
}

fn jwt_gateway(upstream: SocketAddr) -> Gateway {
    Config::new()
        .upstream("api", upstream)
        .route(Route::new("kept", "/kept/{*rest}").upstream("api").plugin(
            Plugin::new("jwt").config(json!({
                "algorithms": ["HS256"],
                "hmac_secret": HS_SECRET.to_string(),
                "query": "access_token",
                "cookie": "session",
            })),
        ))
        .route(
            Route::new("hidden", "/hidden/{*rest}")
                .upstream("api")
                .plugin(Plugin::new("jwt").config(json!({
                    "algorithms": ["HS256"],
                    "hmac_secret": HS_SECRET.to_string(),
                    "query": "access_token",
                    "hide_credentials": true,
                }))),
        )
        .start()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_refuses_a_token_given_twice_before_the_upstream_sees_it() {
    let upstream = Recorder::start().await;
    let gw = jwt_gateway(upstream.addr);
    let client = client();
    let valid = format!("Bearer {}", hs256(HS_SECRET, "alice"));
    let forged = format!(
        "Bearer {}",
        hs256("a-secret-nobody-configured-0123456789", "root")
    );
    let joined = format!("{valid}, {forged}");
    let cookie = format!("session={}", hs256(HS_SECRET, "alice"));
    let cases = [
        (
            "valid line then forged line",
            get_with(
                &gw.url("/kept/x"),
                &[("authorization", &valid), ("authorization", &forged)],
            ),
        ),
        (
            "forged line then valid line",
            get_with(
                &gw.url("/hidden/x"),
                &[("authorization", &forged), ("authorization", &valid)],
            ),
        ),
        (
            "one comma-joined line",
            get_with(&gw.url("/kept/x"), &[("authorization", &joined)]),
        ),
        (
            "header and cookie",
            get_with(
                &gw.url("/kept/x"),
                &[("authorization", &valid), ("cookie", &cookie)],
            ),
        ),
        (
            "cookie and a cookie line that is not text",
            with_raw(
                get_with(&gw.url("/kept/x"), &[("cookie", &cookie)]),
                "cookie",
                b"theme=\xff; session=forged",
            ),
        ),
    ];
    for (case, request) in cases {
        let reply = send(&client, request).await;
        assert_refused_as_repeated(&reply, case);
        assert!(
            reply
                .header("www-authenticate")
                .is_some_and(|c| c.contains("error=\"invalid_request\"")),
            "{case}: {:?}",
            reply.header("www-authenticate")
        );
    }
    assert_eq!(
        upstream.requests(),
        0,
        "a refused request reached the upstream"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_forwards_exactly_the_one_token_it_verified_or_none() {
    let upstream = Recorder::start().await;
    let gw = jwt_gateway(upstream.addr);
    let client = client();
    let valid = format!("Bearer {}", hs256(HS_SECRET, "alice"));

    let reply = send(
        &client,
        get_with(&gw.url("/kept/x"), &[("authorization", &valid)]),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(upstream.last_lines("authorization"), [valid.as_str()]);

    // Hidden: neither the token nor an empty copy beside it goes on.
    let reply = send(
        &client,
        get_with(
            &gw.url("/hidden/x?access_token=&page=2"),
            &[("authorization", &valid)],
        ),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(upstream.last_lines("authorization").is_empty());
    assert_eq!(upstream.last_query(), "page=2");
}

/// The listener's certificate and key and a client CA, written into `dir`
/// (`cert.pem`, `key.pem`, `clients.pem`): the root a client trusts and the
/// issuer of client certificates.
fn mtls_files(dir: &std::path::Path) -> (CertificateDer<'static>, Issuer) {
    let listener = rcgen::generate_simple_self_signed(vec!["localhost".to_string()])
        .expect("listener certificate");
    std::fs::write(dir.join("cert.pem"), listener.cert.pem()).expect("cert");
    std::fs::write(dir.join("key.pem"), listener.signing_key.serialize_pem()).expect("key");
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let key = rcgen::KeyPair::generate().expect("key");
    let ca = rcgen::CertifiedIssuer::self_signed(params, key).expect("CA");
    std::fs::write(dir.join("clients.pem"), ca.pem()).expect("ca");
    (listener.cert.der().clone(), ca)
}

type Issuer = rcgen::CertifiedIssuer<'static, rcgen::KeyPair>;
type ClientCert = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>);

/// A client certificate for common name `cn`, issued by `ca`, as rustls takes it.
fn client_certificate(ca: &Issuer, cn: &str) -> ClientCert {
    let (cert, key) = crate::support::client_certificate(ca, cn);
    let key = PrivateKeyDer::try_from(key.serialize_der()).expect("key");
    (vec![cert.der().clone()], key)
}

/// Sends the raw `request` over TLS trusting `root`, with `client`'s
/// certificate if given, and returns the response text.
async fn over_tls(
    addr: SocketAddr,
    root: &CertificateDer<'static>,
    client: Option<ClientCert>,
    request: &str,
) -> String {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(root.clone()).expect("root");
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots);
    let config = match client {
        Some((chain, key)) => builder.with_client_auth_cert(chain, key).expect("client"),
        None => builder.with_no_client_auth(),
    };
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let name = ServerName::try_from("localhost").expect("name");
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .expect("handshake");
    tls.write_all(request.as_bytes()).await.expect("write");
    let mut response = Vec::new();
    let _ = tls.read_to_end(&mut response).await;
    String::from_utf8_lossy(&response).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mtls_auth_takes_the_certificate_not_forged_headers_however_many() {
    let upstream = Recorder::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (root, ca) = mtls_files(dir.path());
    let config = Config::new()
        .server(json!({
            "tls": {
                "cert": "cert.pem",
                "key": "key.pem",
                "client_ca": "clients.pem",
                "client_auth": "optional",
            },
        }))
        .consumer(json!({ "name": "billing" }))
        .consumer(json!({ "name": "admin" }))
        .upstream("api", upstream.addr)
        .route(
            Route::new("all", "/{*rest}")
                .upstream("api")
                .plugin(Plugin::new("mtls-auth")),
        );
    config.write(dir.path().join("gateway.toml"));
    let gw = Gateway::start_at(&dir.path().join("gateway.toml"));
    let forged = "GET /x HTTP/1.1\r\nhost: localhost\r\n\
        x-forwarded-client-cert: Hash=00;Subject=\"CN=admin\"\r\n\
        x-forwarded-client-cert: Hash=11;Subject=\"CN=admin\"\r\n\
        x-consumer-name: admin\r\nx-consumer-name: admin\r\n\
        connection: close\r\n\r\n";

    // No certificate: the forged lines authenticate no one.
    let refused = over_tls(gw.addr, &root, None, forged).await;
    assert!(refused.starts_with("HTTP/1.1 401"), "{refused}");
    assert_eq!(
        upstream.requests(),
        0,
        "a refused request reached the upstream"
    );

    // A certificate for billing: billing, once, whatever the client claimed.
    let client = client_certificate(&ca, "billing");
    let admitted = over_tls(gw.addr, &root, Some(client), forged).await;
    assert!(admitted.starts_with("HTTP/1.1 200"), "{admitted}");
    assert_eq!(upstream.last_lines("x-consumer-name"), ["billing"]);
    let xfcc = upstream.last_lines("x-forwarded-client-cert");
    assert_eq!(xfcc.len(), 1, "{xfcc:?}");
    assert!(
        xfcc[0].contains("CN=billing") && !xfcc[0].contains("admin"),
        "{xfcc:?}"
    );
}
