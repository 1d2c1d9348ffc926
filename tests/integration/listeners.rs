//! Listeners and TLS: client certificates presented to upstreams (mutual
//! TLS), certificates chosen by SNI, several listeners with routes limited
//! to some, the redirect to HTTPS, and the PROXY protocol.

use crate::support::config::{Config, Pool, Route};
use crate::support::{Gateway, get};
use bytes::Bytes;
use http_body_util::Full;
use rustls::pki_types::CertificateDer;
use std::sync::Arc;
use std::time::{Duration, Instant};

type Issuer = rcgen::CertifiedIssuer<'static, rcgen::KeyPair>;

/// A certificate authority named `name`: (its PEM, the issuer).
fn authority(name: &str) -> (String, Issuer) {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    let key = rcgen::KeyPair::generate().expect("key");
    let issuer = Issuer::self_signed(params, key).expect("CA");
    (issuer.pem(), issuer)
}

/// A client certificate for `cn` issued by `issuer`: (certificate PEM, key PEM).
fn client_certificate(issuer: &Issuer, cn: &str) -> (String, String) {
    let (cert, key) = crate::support::client_certificate(issuer, cn);
    (cert.pem(), key.serialize_pem())
}

/// An HTTPS upstream for `localhost` that requires a client certificate
/// chaining to `client_ca` (PEM) and answers `mtls`: its address and its
/// own certificate's PEM (for a `ca_file`).
async fn mtls_upstream(client_ca: &str) -> (std::net::SocketAddr, String) {
    let made =
        rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("certificate");
    let key =
        rustls::pki_types::PrivateKeyDer::try_from(made.signing_key.serialize_der()).expect("key");
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile_certs(client_ca) {
        roots.add(cert).expect("client CA");
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .expect("verifier");
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![made.cert.der().clone()], key)
        .expect("server config");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let service = hyper::service::service_fn(|_req: http::Request<hyper::body::Incoming>| async {
        Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(Bytes::from("mtls"))))
    });
    crate::support::serve_http1(listener, Some(config), service);
    (addr, made.cert.pem())
}

/// The certificates in a PEM text.
fn rustls_pemfile_certs(pem: &str) -> Vec<CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .expect("PEM certificates")
}

/// Polls `path` until it answers `status`, for at most 10 s.
async fn until_status(gw: &Gateway, path: &str, status: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while get(&gw.url(path)).await.status != status {
        assert!(
            Instant::now() < deadline,
            "{path} never answered {status}:\n{}",
            gw.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_presents_its_client_certificate_and_a_renewed_one_after_reload() {
    let (clients_pem, clients) = authority("Upstream clients");
    let (addr, server_pem) = mtls_upstream(&clients_pem).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let write = |name: &str, text: &str| std::fs::write(dir.path().join(name), text).expect(name);
    write("ca.pem", &server_pem);
    let (cert, key) = client_certificate(&clients, "gateway");
    write("client.pem", &cert);
    write("client-key.pem", &key);
    let target = format!("https://localhost:{}", addr.port());
    let identified = Pool::new([&target])
        .ca_file("ca.pem")
        .with("client_cert", serde_json::json!("client.pem"))
        .with("client_key", serde_json::json!("client-key.pem"));
    Config::new()
        .upstream("anonymous", Pool::new([&target]).ca_file("ca.pem"))
        .upstream("identified", identified)
        .route(Route::new("anonymous", "/anonymous").upstream("anonymous"))
        .route(Route::new("identified", "/identified").upstream("identified"))
        .write(dir.path().join("gateway.toml"));
    let gw = Gateway::start_at(&dir.path().join("gateway.toml"));

    let reply = get(&gw.url("/identified")).await;
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (200, "mtls"),
        "{}",
        gw.log()
    );
    // Without a client certificate the upstream refuses the handshake.
    assert_eq!(get(&gw.url("/anonymous")).await.status, 502);

    // A certificate from an authority the upstream does not trust, written
    // in place: the reload builds the upstream anew and presents it.
    let (_, strangers) = authority("Strangers");
    let (cert, key) = client_certificate(&strangers, "gateway");
    write("client-key.pem", &key);
    write("client.pem", &cert);
    until_status(&gw, "/identified", 502).await;
    // And back to a trusted one.
    let (cert, key) = client_certificate(&clients, "gateway-2");
    write("client-key.pem", &key);
    write("client.pem", &cert);
    until_status(&gw, "/identified", 200).await;
}

/// Writes a self-signed certificate whose subject is `cn`, for the DNS
/// names `names`, as `{file}.pem` and `{file}-key.pem` in `dir`.
fn write_certificate(dir: &std::path::Path, file: &str, cn: &str, names: &[&str]) {
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let mut params = rcgen::CertificateParams::new(names).expect("params");
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, cn);
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = params.self_signed(&key).expect("certificate");
    // The key first: a reload between the two writes sees a mismatch and
    // keeps the old pair rather than serving a broken one.
    std::fs::write(dir.join(format!("{file}-key.pem")), key.serialize_pem()).expect("key");
    std::fs::write(dir.join(format!("{file}.pem")), cert.pem()).expect("cert");
}

/// The subject line `openssl s_client` prints for the certificate the
/// listener at `addr` presents to a client asking for `name`.
fn presented_subject(addr: std::net::SocketAddr, name: &str) -> String {
    let output = std::process::Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &addr.to_string(),
            "-servername",
            name,
        ])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("openssl s_client (tests/run installs openssl)");
    let text = String::from_utf8_lossy(&output.stdout);
    text.lines()
        .find(|line| line.starts_with("subject="))
        .unwrap_or_else(|| panic!("no subject for {name}:\n{text}"))
        .replace(' ', "")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_certificate_is_chosen_by_sni_and_each_reloads_when_its_files_change() {
    let upstream = crate::support::Upstream::start("api").await;
    let dir = tempfile::tempdir().expect("tempdir");
    write_certificate(dir.path(), "default", "default-cert", &["default.test"]);
    write_certificate(dir.path(), "exact", "exact-cert", &["api.example.com"]);
    write_certificate(dir.path(), "wild", "wild-cert", &["*.example.com"]);
    write_certificate(dir.path(), "named", "named-cert", &["unlisted.test"]);
    let certificates = serde_json::json!([
        { "cert": "wild.pem", "key": "wild-key.pem" },
        { "cert": "exact.pem", "key": "exact-key.pem" },
        { "cert": "named.pem", "key": "named-key.pem", "names": ["Other.test"] },
    ]);
    Config::new()
        .server(serde_json::json!({ "tls": {
            "cert": "default.pem", "key": "default-key.pem", "certificates": certificates,
        } }))
        .upstream("api", &upstream)
        .route(Route::new("all", "/{*rest}").upstream("api"))
        .write(dir.path().join("gateway.toml"));
    let gw = Gateway::start_at(&dir.path().join("gateway.toml"));

    for (name, subject) in [
        ("api.example.com", "subject=CN=exact-cert"),
        ("www.example.com", "subject=CN=wild-cert"),
        // A wildcard covers one label.
        ("a.b.example.com", "subject=CN=default-cert"),
        ("example.com", "subject=CN=default-cert"),
        ("other.test", "subject=CN=named-cert"),
        // `names` replaces the certificate's own.
        ("unlisted.test", "subject=CN=default-cert"),
        ("unknown.test", "subject=CN=default-cert"),
        ("default.test", "subject=CN=default-cert"),
    ] {
        assert_eq!(presented_subject(gw.addr, name), subject, "{name}");
    }

    // The wildcard's files renewed in place: served without a restart, the
    // others unchanged.
    write_certificate(dir.path(), "wild", "renewed-wild-cert", &["*.example.com"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while presented_subject(gw.addr, "www.example.com") != "subject=CN=renewed-wild-cert" {
        assert!(Instant::now() < deadline, "not renewed:\n{}", gw.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        presented_subject(gw.addr, "api.example.com"),
        "subject=CN=exact-cert"
    );
}

/// Sends `request` (raw HTTP/1.1, `connection: close`) to `addr`, over TLS
/// trusting `root` when given; the whole response as text.
async fn exchange(
    addr: std::net::SocketAddr,
    root: Option<&CertificateDer<'static>>,
    request: &str,
) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let mut response = Vec::new();
    match root {
        None => {
            tcp.write_all(request.as_bytes()).await.expect("write");
            let _ = tcp.read_to_end(&mut response).await;
        }
        Some(root) => {
            let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
            let mut tls = crate::support::tls_connector(root)
                .connect(name, tcp)
                .await
                .expect("TLS handshake");
            tls.write_all(request.as_bytes()).await.expect("write");
            let _ = tls.read_to_end(&mut response).await;
        }
    }
    String::from_utf8_lossy(&response).into_owned()
}

/// The status code of a raw response.
fn status(response: &str) -> u16 {
    response
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("not a response: {response:?}"))
}

/// `GET path` with `host`, closing the connection.
fn get_request(method: &str, path: &str, host: &str) -> String {
    format!(
        "{method} {path} HTTP/1.1\r\nhost: {host}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_limited_to_a_listener_answer_there_only() {
    let upstream = crate::support::Upstream::start("api").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let made =
        rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("certificate");
    std::fs::write(dir.path().join("cert.pem"), made.cert.pem()).expect("cert");
    std::fs::write(dir.path().join("key.pem"), made.signing_key.serialize_pem()).expect("key");
    let root = made.cert.der().clone();
    let limited = |name: &str, path: &str, listeners: &[&str]| {
        Route::new(name, path)
            .upstream("api")
            .with("listeners", serde_json::json!(listeners))
    };
    Config::new()
        .listener(serde_json::json!({
            "name": "secure",
            "listen": "127.0.0.1:0",
            "tls": { "cert": "cert.pem", "key": "key.pem" },
        }))
        .upstream("api", &upstream)
        .route(limited("plain", "/plain", &["default"]))
        .route(limited("secure", "/secure", &["secure"]))
        .route(Route::new("both", "/both").upstream("api"))
        .write(dir.path().join("gateway.toml"));
    let gw = Gateway::start_at(&dir.path().join("gateway.toml"));
    let secure = gw.listener("secure");

    let plain = gw.addr;
    let on_plain = |path: &str| {
        let request = get_request("GET", path, "localhost");
        async move { exchange(plain, None, &request).await }
    };
    let root = &root;
    let on_secure = |path: &str| {
        let request = get_request("GET", path, "localhost");
        async move { exchange(secure, Some(root), &request).await }
    };
    assert_eq!(status(&on_plain("/plain").await), 200);
    assert_eq!(status(&on_plain("/both").await), 200);
    assert_eq!(status(&on_plain("/secure").await), 404);
    let reply = on_secure("/secure").await;
    assert_eq!(status(&reply), 200, "{reply}");
    assert!(reply.contains("\"x-forwarded-proto\":\"https\""), "{reply}");
    assert_eq!(status(&on_secure("/both").await), 200);
    assert_eq!(status(&on_secure("/plain").await), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirecting_listener_sends_every_request_to_https_without_routing_it() {
    let upstream = crate::support::Upstream::start("api").await;
    let gw = Config::new()
        .listener(serde_json::json!({
            "name": "web",
            "listen": "127.0.0.1:0",
            "redirect_https": true,
            "https_port": 8443,
        }))
        .upstream("api", &upstream)
        .route(Route::new("all", "/{*rest}").upstream("api"))
        .start();
    let web = gw.listener("web");

    let reply = exchange(
        web,
        None,
        &get_request("GET", "/a/b?x=1&y=%20", "Example.com:80"),
    )
    .await;
    assert_eq!(status(&reply), 301, "{reply}");
    assert!(
        reply.contains("location: https://Example.com:8443/a/b?x=1&y=%20\r\n"),
        "{reply}"
    );
    let reply = exchange(web, None, &get_request("POST", "/form", "example.com")).await;
    assert_eq!(status(&reply), 308, "{reply}");
    assert!(
        reply.contains("location: https://example.com:8443/form\r\n"),
        "{reply}"
    );
    // A host that is not a name or an address gets no location.
    let reply = exchange(web, None, &get_request("GET", "/", "bad_host!")).await;
    assert_eq!(status(&reply), 400, "{reply}");
    assert!(!reply.contains("location:"), "{reply}");
    assert_eq!(upstream.hits(), 0);
    // The default listener is not redirected.
    assert_eq!(get(&gw.url("/a")).await.status, 200);
    assert_eq!(upstream.hits(), 1);
}

/// A PROXY protocol v2 header for a TCP/IPv4 connection from `source`
/// (`PROXY` command), or the proxy's own (`LOCAL`) without one.
fn proxy_v2(source: Option<([u8; 4], u16)>) -> Vec<u8> {
    let mut header = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    match source {
        Some((ip, port)) => {
            header.extend_from_slice(&[0x21, 0x11, 0, 12]);
            header.extend_from_slice(&ip);
            header.extend_from_slice(&[127, 0, 0, 1]);
            header.extend_from_slice(&port.to_be_bytes());
            header.extend_from_slice(&443u16.to_be_bytes());
        }
        None => header.extend_from_slice(&[0x20, 0x00, 0, 0]),
    }
    header
}

/// Sends `bytes` then reads until the gateway closes: the response text.
async fn raw(addr: std::net::SocketAddr, bytes: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let _ = tcp.write_all(bytes).await;
    let mut response = Vec::new();
    let _ = tcp.read_to_end(&mut response).await;
    String::from_utf8_lossy(&response).into_owned()
}

/// The `X-Forwarded-For` the echo upstream received, from a raw response.
fn forwarded_for(response: &str) -> String {
    let body = response.split("\r\n\r\n").nth(1).unwrap_or_default();
    let echo: serde_json::Value =
        serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {response}"));
    echo["headers"]["x-forwarded-for"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_protocol_names_the_client_and_only_trusted_peers_may_send_it() {
    let upstream = crate::support::Upstream::start("api").await;
    let gw = Config::new()
        .listener(serde_json::json!({
            "name": "behind-lb",
            "listen": "127.0.0.1:0",
            "proxy_protocol": true,
            "proxy_protocol_from": ["127.0.0.0/8"],
        }))
        .listener(serde_json::json!({
            "name": "elsewhere",
            "listen": "127.0.0.1:0",
            "proxy_protocol": true,
            "proxy_protocol_from": ["10.0.0.0/8"],
        }))
        .upstream("api", &upstream)
        .route(Route::new("all", "/{*rest}").upstream("api"))
        .start();
    let behind = gw.listener("behind-lb");
    let request = get_request("GET", "/echo", "localhost");

    let v1 = format!("PROXY TCP4 203.0.113.7 127.0.0.1 51234 80\r\n{request}");
    let reply = raw(behind, v1.as_bytes()).await;
    assert_eq!(status(&reply), 200, "{reply}");
    assert_eq!(forwarded_for(&reply), "203.0.113.7");
    let v2 = [
        proxy_v2(Some(([198, 51, 100, 9], 8080))),
        request.clone().into_bytes(),
    ]
    .concat();
    let reply = raw(behind, &v2).await;
    assert_eq!(forwarded_for(&reply), "198.51.100.9", "{reply}");
    // A dual-stack balancer's IPv4-mapped address is the IPv4 client.
    let mapped = format!("PROXY TCP6 ::ffff:203.0.113.8 ::1 51234 80\r\n{request}");
    assert_eq!(
        forwarded_for(&raw(behind, mapped.as_bytes()).await),
        "203.0.113.8"
    );
    // LOCAL: the load balancer's own connection keeps its address.
    let local = [proxy_v2(None), request.clone().into_bytes()].concat();
    assert_eq!(forwarded_for(&raw(behind, &local).await), "127.0.0.1");
    // The access log has the client the header named.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !gw.log().contains("203.0.113.7") {
        assert!(Instant::now() < deadline, "{}", gw.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // From a trusted peer the header is required.
    assert_eq!(raw(behind, request.as_bytes()).await, "");
    // A peer not in proxy_protocol_from is closed on, header or not.
    assert_eq!(raw(gw.listener("elsewhere"), v1.as_bytes()).await, "");
    assert_eq!(upstream.hits(), 4);
    // The default listener takes no header.
    assert_eq!(get(&gw.url("/echo")).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_moves_route_limits_and_a_moved_listener_waits_for_a_restart() {
    let upstream = crate::support::Upstream::start("api").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = |listen: &str, on: &str| {
        Config::new()
            .listener(serde_json::json!({ "name": "side", "listen": listen }))
            .upstream("api", &upstream)
            .route(
                Route::new("limited", "/limited")
                    .upstream("api")
                    .with("listeners", serde_json::json!([on])),
            )
    };
    config("127.0.0.1:0", "default").write(dir.path().join("gateway.toml"));
    let gw = Gateway::start_at(&dir.path().join("gateway.toml"));
    let side = gw.listener("side");
    let request = get_request("GET", "/limited", "localhost");
    let on_side = || exchange(side, None, &request);
    assert_eq!(status(&on_side().await), 404);
    assert_eq!(get(&gw.url("/limited")).await.status, 200);

    // The route moves to `side`, whose address changes too: the route
    // follows at once, the address at the next restart (said in the log),
    // and the socket bound at start serves on.
    config("127.0.0.1:1", "side").write(dir.path().join("gateway.toml"));
    let deadline = Instant::now() + Duration::from_secs(10);
    while status(&on_side().await) != 200 {
        assert!(Instant::now() < deadline, "not reloaded:\n{}", gw.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(get(&gw.url("/limited")).await.status, 404);
    let log = gw.log();
    assert!(
        log.contains("[[listeners]] changed") && log.contains("next restart"),
        "{log}"
    );

    // Removed from the config: its socket refuses new connections until the
    // restart, rather than serving without its settings.
    Config::new()
        .upstream("api", &upstream)
        .route(Route::new("limited", "/limited").upstream("api"))
        .write(dir.path().join("gateway.toml"));
    let deadline = Instant::now() + Duration::from_secs(10);
    while get(&gw.url("/limited")).await.status != 200 {
        assert!(Instant::now() < deadline, "not reloaded:\n{}", gw.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        raw(side, request.as_bytes()).await,
        "",
        "a removed listener served a request"
    );
}
