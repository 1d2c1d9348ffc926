//! TLS termination: the listener presents the configured certificate, the
//! upstream learns the client used https, and a renewed certificate is served
//! after a reload without a restart.

use crate::support::{Gateway, Upstream};
use rustls::pki_types::{CertificateDer, ServerName};
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

/// One HTTPS GET trusting only `root`; returns the certificate the server
/// presented and the response text, or `None` when the handshake fails (the
/// server presented another certificate).
async fn https_get(
    addr: std::net::SocketAddr,
    path: &str,
    root: &CertificateDer<'static>,
) -> Option<(CertificateDer<'static>, String)> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(root.clone()).expect("root");
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
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
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert, key, first) = certificate();
    std::fs::write(dir.path().join("cert.pem"), &cert).expect("cert");
    std::fs::write(dir.path().join("key.pem"), &key).expect("key");
    std::fs::write(
        dir.path().join("gateway.toml"),
        format!(
            r#"
[server]
listen = "127.0.0.1:0"
[server.tls]
cert = "cert.pem"
key = "key.pem"

[upstreams.api]
targets = ["{addr}"]
[[routes]]
name = "all"
path = "/{{*rest}}"
upstream = "api"
"#,
            addr = upstream.addr
        ),
    )
    .expect("config");
    let gw = Gateway::start_at(&dir.path().join("gateway.toml"));

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
