//! TLS termination: the listener presents the configured certificate, the
//! upstream learns the client used https, and a renewed certificate is served
//! after a reload without a restart.

use crate::support::config::{Config, Plugin, Route};
use crate::support::{Gateway, Upstream};
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A self-signed certificate for `localhost`: (certificate PEM, key PEM, DER).
fn certificate() -> (String, String, CertificateDer<'static>) {
    let made = rcgen::generate_simple_self_signed(vec!["localhost".to_string()])
        .expect("self-signed certificate");
    (
        made.cert.pem(),
        made.signing_key.serialize_pem(),
        made.cert.der().clone(),
    )
}

/// A gateway terminating TLS with a fresh self-signed certificate for
/// `localhost` (files in the returned directory), in front of `upstream`;
/// and the certificate, for a client to trust.
fn tls_gateway(upstream: &Upstream) -> (Gateway, tempfile::TempDir, CertificateDer<'static>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert, key, der) = certificate();
    std::fs::write(dir.path().join("cert.pem"), &cert).expect("cert");
    std::fs::write(dir.path().join("key.pem"), &key).expect("key");
    tls_config(upstream, json!({}), |route| route).write(dir.path().join("gateway.toml"));
    let gw = Gateway::start_at(&dir.path().join("gateway.toml"));
    (gw, dir, der)
}

/// One HTTPS GET trusting only `root`; returns the certificate the server
/// presented and the response text, or `None` when the handshake fails (the
/// server presented another certificate).
async fn https_get(
    addr: std::net::SocketAddr,
    path: &str,
    root: &CertificateDer<'static>,
) -> Option<(CertificateDer<'static>, String)> {
    let connector = crate::support::tls_connector(root);
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let name = ServerName::try_from("localhost").expect("name");
    let mut tls = connector.connect(name, tcp).await.ok()?;
    let presented = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .expect("a certificate")
        .clone()
        .into_owned();
    let request = format!("GET {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n");
    tls.write_all(request.as_bytes()).await.expect("write");
    let mut response = Vec::new();
    let _ = tls.read_to_end(&mut response).await;
    Some((presented, String::from_utf8_lossy(&response).into_owned()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_is_terminated_and_a_renewed_certificate_is_served_after_reload() {
    let upstream = Upstream::start("api").await;
    let (gw, dir, first) = tls_gateway(&upstream);

    let (presented, response) = https_get(gw.addr, "/hello", &first)
        .await
        .expect("a handshake with the configured certificate");
    assert_eq!(presented, first);
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(
        response.contains("\"x-forwarded-proto\":\"https\""),
        "{response}"
    );

    // Renew: new key and certificate, written key first, then the certificate.
    let (cert, key, second) = certificate();
    std::fs::write(dir.path().join("key.pem"), &key).expect("key");
    std::fs::write(dir.path().join("cert.pem"), &cert).expect("cert");
    let started = Instant::now();
    loop {
        // Until the reload, the old certificate fails the handshake.
        if let Some((presented, response)) = https_get(gw.addr, "/hello", &second).await {
            assert_eq!(presented, second);
            assert!(response.starts_with("HTTP/1.1 200"), "{response}");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the renewed certificate was never served:\n{}",
            gw.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A certificate authority for client certificates: (CA PEM, issuer).
fn client_ca(name: &str) -> (String, rcgen::CertifiedIssuer<'static, rcgen::KeyPair>) {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    let key = rcgen::KeyPair::generate().expect("key");
    let issuer = rcgen::CertifiedIssuer::self_signed(params, key).expect("CA");
    (issuer.pem(), issuer)
}

/// A client certificate for `cn` with the DNS name `dns`, issued by `issuer`:
/// (chain, key, leaf DER).
fn client_certificate(
    issuer: &rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
    cn: &str,
    dns: &str,
) -> (
    Vec<CertificateDer<'static>>,
    rustls::pki_types::PrivateKeyDer<'static>,
) {
    let mut params = rcgen::CertificateParams::new(vec![dns.to_string()]).expect("params");
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, cn);
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = params.signed_by(&key, issuer).expect("signed");
    let key = rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).expect("key");
    (vec![cert.der().clone()], key)
}

/// One request over TLS trusting `root`, presenting `client` if given; the
/// response text, or `None` when the connection fails (handshake refused).
async fn mtls_request(
    addr: std::net::SocketAddr,
    root: &CertificateDer<'static>,
    client: Option<(
        Vec<CertificateDer<'static>>,
        rustls::pki_types::PrivateKeyDer<'static>,
    )>,
    request: &str,
) -> Option<String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(root.clone()).expect("root");
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots);
    let config = match client {
        Some((chain, key)) => builder
            .with_client_auth_cert(chain, key)
            .expect("client auth"),
        None => builder.with_no_client_auth(),
    };
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let name = ServerName::try_from("localhost").expect("name");
    let mut tls = connector.connect(name, tcp).await.ok()?;
    // With TLS 1.3 the server judges the client's certificate after the
    // client's side of the handshake is done: a refusal shows on reading.
    tls.write_all(request.as_bytes()).await.ok()?;
    let mut response = Vec::new();
    tls.read_to_end(&mut response).await.ok()?;
    let text = String::from_utf8_lossy(&response).into_owned();
    (!text.is_empty()).then_some(text)
}

/// Writes the listener's certificate and key and a client CA into `dir`
/// (`cert.pem`, `key.pem`, `clients.pem`): the root a client must trust, and
/// the CA that issues client certificates.
fn mtls_files(
    dir: &std::path::Path,
) -> (
    CertificateDer<'static>,
    rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
) {
    let (cert, key, server_root) = certificate();
    let (ca_pem, ca) = client_ca("Clients CA");
    std::fs::write(dir.join("cert.pem"), &cert).expect("cert");
    std::fs::write(dir.join("key.pem"), &key).expect("key");
    std::fs::write(dir.join("clients.pem"), &ca_pem).expect("ca");
    (server_root, ca)
}

/// A config with mutual TLS (`client_auth`) and one catch-all route to
/// `upstream` through `plugin`.
fn mtls_config(upstream: &Upstream, auth: &str, plugin: Plugin) -> Config {
    let client_auth = json!({ "client_ca": "clients.pem", "client_auth": auth });
    tls_config(upstream, client_auth, |route| route.plugin(plugin))
}

/// A config with TLS (`cert.pem`, `key.pem` and `tls` more `[server.tls]`
/// keys) and one catch-all route to `upstream`, with what `route` adds.
fn tls_config(upstream: &Upstream, tls: Value, route: impl FnOnce(Route) -> Route) -> Config {
    Config::new()
        .server(json!({ "tls": { "cert": "cert.pem", "key": "key.pem" } }))
        .server(json!({ "tls": tls }))
        .upstream("api", upstream)
        .route(route(Route::new("all", "/{*rest}").upstream("api")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_admits_clients_of_the_configured_authority_and_tells_who_they_are() {
    let upstream = Upstream::start("api").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (server_root, ca) = mtls_files(dir.path());
    let (_, stranger_ca) = client_ca("Another CA");
    let config = |auth: &str| {
        let seen = |expression: &str| format!("{{{{ {expression} | default(\"none\") }}}}");
        mtls_config(
            &upstream,
            auth,
            Plugin::new("transform").config(json!({ "request": { "headers": {
                "x-subject-seen-by-plugins": seen(r#"context["tls.client.subject"]"#),
                "x-names-seen-by-plugins": seen(r#"context["tls.client.names"]"#),
                "x-xfcc-seen-by-plugins": seen(r#"headers["x-forwarded-client-cert"]"#),
            } } })),
        )
    };
    config("required").write(dir.path().join("gateway.toml"));
    let gw = Gateway::start_at(&dir.path().join("gateway.toml"));
    let forged = "GET /hello HTTP/1.1\r\nhost: localhost\r\nx-forwarded-client-cert: Hash=forged\r\nconnection: close\r\n\r\n";

    let (chain, key) = client_certificate(&ca, "client-1", "client-1.example");
    let leaf = chain[0].clone();
    let response = mtls_request(gw.addr, &server_root, Some((chain, key)), forged)
        .await
        .expect("a client of the configured authority is admitted");
    assert!(
        response.starts_with("HTTP/1.1 200"),
        "{response}\n{}",
        gw.log()
    );
    let body = response.split("\r\n\r\n").nth(1).unwrap_or("");
    let echo: serde_json::Value = serde_json::from_str(body).expect("JSON echo");
    let headers = &echo["headers"];
    let fingerprint: String = {
        use sha2::Digest;
        sha2::Sha256::digest(leaf.as_ref())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    };
    assert_eq!(
        headers["x-forwarded-client-cert"],
        format!("Hash={fingerprint};Subject=\"CN=client-1\";DNS=client-1.example"),
        "{echo}"
    );
    assert_eq!(headers["x-subject-seen-by-plugins"], "CN=client-1");
    // The plugins already saw the gateway's header, not the client's.
    assert_eq!(
        headers["x-xfcc-seen-by-plugins"],
        headers["x-forwarded-client-cert"]
    );
    assert_eq!(headers["x-names-seen-by-plugins"], "DNS:client-1.example");

    // Refused: no certificate, and one from another authority.
    assert_eq!(
        mtls_request(gw.addr, &server_root, None, forged).await,
        None
    );
    let (chain, key) = client_certificate(&stranger_ca, "intruder", "intruder.example");
    assert_eq!(
        mtls_request(gw.addr, &server_root, Some((chain, key)), forged).await,
        None
    );

    // Optional: a client without a certificate gets through, and its forged
    // header does not.
    config("optional").write(dir.path().join("gateway.toml"));
    let started = Instant::now();
    let response = loop {
        if let Some(response) = mtls_request(gw.addr, &server_root, None, forged).await {
            break response;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "client_auth = \"optional\" was never applied:\n{}",
            gw.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(!response.contains("forged"), "{response}");
    assert!(!response.contains("x-forwarded-client-cert"), "{response}");
    assert!(
        response.contains("\"x-subject-seen-by-plugins\":\"none\""),
        "{response}"
    );
    assert!(
        response.contains("\"x-xfcc-seen-by-plugins\":\"none\""),
        "{response}"
    );
    // ... and one from another authority is still refused.
    let (chain, key) = client_certificate(&stranger_ca, "intruder", "intruder.example");
    assert_eq!(
        mtls_request(gw.addr, &server_root, Some((chain, key)), forged).await,
        None
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mtls_auth_makes_the_certificate_a_consumer_credential() {
    let upstream = Upstream::start("api").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (server_root, ca) = mtls_files(dir.path());
    mtls_config(
        &upstream,
        "optional",
        Plugin::new("mtls-auth").config(json!({ "consumer_from": ["dns", "cn"] })),
    )
    .with("usage_plans", json!({ "gold": { "rate": "100/s" } }))
    .consumer(json!({ "name": "billing", "plan": "gold" }))
    .write(dir.path().join("gateway.toml"));
    let gw = Gateway::start_at(&dir.path().join("gateway.toml"));
    let request = "GET /orders HTTP/1.1\r\nhost: localhost\r\nx-consumer-name: billing\r\nconnection: close\r\n\r\n";

    // The DNS name is no consumer; the CN is.
    let (chain, key) = client_certificate(&ca, "billing", "billing-7.pods.internal");
    let admitted = mtls_request(gw.addr, &server_root, Some((chain, key)), request)
        .await
        .expect("admitted");
    assert!(admitted.starts_with("HTTP/1.1 200"), "{admitted}");
    let body = admitted.split("\r\n\r\n").nth(1).unwrap_or("");
    let echo: serde_json::Value = serde_json::from_str(body).expect("JSON echo");
    assert_eq!(echo["headers"]["x-consumer-name"], "billing");
    assert_eq!(echo["headers"]["x-consumer-plan"], "gold");
    let hits = upstream.hits();

    // A valid certificate naming nobody: 403. No certificate (allowed by
    // the handshake in "optional" mode), claiming the consumer by header: 401.
    let (chain, key) = client_certificate(&ca, "reports", "reports.internal");
    let stranger = mtls_request(gw.addr, &server_root, Some((chain, key)), request)
        .await
        .expect("an answer");
    assert!(stranger.starts_with("HTTP/1.1 403"), "{stranger}");
    let anonymous = mtls_request(gw.addr, &server_root, None, request)
        .await
        .expect("an answer");
    assert!(anonymous.starts_with("HTTP/1.1 401"), "{anonymous}");
    assert_eq!(
        upstream.hits(),
        hits,
        "refused requests reached the upstream"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_chose_h2_by_alpn_and_speaks_http1_gets_goaway() {
    let upstream = Upstream::start("api").await;
    let (gw, _dir, root) = tls_gateway(&upstream);

    let mut roots = rustls::RootCertStore::empty();
    roots.add(root).expect("root");
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(gw.addr)
        .await
        .expect("connect");
    let name = ServerName::try_from("localhost").expect("name");
    let mut tls = connector.connect(name, tcp).await.expect("handshake");
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    tls.write_all(b"GET / HTTP/1.1\r\nhost: localhost\r\n\r\n")
        .await
        .expect("write");
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut answer))
        .await
        .expect("closed");
    assert!(!answer.starts_with(b"HTTP/1.1"), "{answer:?}");
    // GOAWAY (type 7, length 8, stream 0), last stream 0, PROTOCOL_ERROR.
    let goaway = [0u8, 0, 8, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
    assert!(
        answer.windows(goaway.len()).any(|frame| frame == goaway),
        "{answer:?}"
    );
    assert_eq!(upstream.hits(), 0);
}
