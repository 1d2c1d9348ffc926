//! Test support: a real upstream server, the real `gateway` binary on an
//! ephemeral port, and a small HTTP client.

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::convert::Infallible;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::net::TcpListener;

pub mod config;

/// Where build.rs put the compiled plugins (built-ins, the example and test plugins).
pub fn plugin_path(stem: &str) -> PathBuf {
    Path::new(env!("GATEWAY_PLUGIN_DIR")).join(format!("{stem}.wasm"))
}

/// An entry of the misbehave test plugin, doing what `config` (`mode`, ..)
/// says.
pub fn misbehave(config: serde_json::Value) -> config::Plugin {
    config::Plugin::wasm("misbehave_plugin").config(config)
}

/// Serves HTTP/1.1 (upgrades included) with `service` on every connection
/// `listener` accepts, until the test ends; over TLS with `tls`, each
/// connection's handshake first.
pub fn serve_http1<S, B>(listener: TcpListener, tls: Option<rustls::ServerConfig>, service: S)
where
    S: hyper::service::Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let tls = tls.map(|config| tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config)));
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let (service, tls) = (service.clone(), tls.clone());
            tokio::spawn(async move {
                let http1 = hyper::server::conn::http1::Builder::new();
                let _ = match tls {
                    None => {
                        http1
                            .serve_connection(TokioIo::new(stream), service)
                            .with_upgrades()
                            .await
                    }
                    Some(tls) => {
                        let Ok(stream) = tls.accept(stream).await else {
                            return;
                        };
                        http1
                            .serve_connection(TokioIo::new(stream), service)
                            .with_upgrades()
                            .await
                    }
                };
            });
        }
    });
}

/// Serves `service` over HTTP/1.1 on a fresh loopback port, until the test
/// ends: its address.
pub async fn serve_local<S, B>(service: S) -> SocketAddr
where
    S: hyper::service::Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local addr");
    serve_http1(listener, None, service);
    addr
}

/// A request's whole body (empty when it cannot be read).
pub async fn body_bytes(body: Incoming) -> Bytes {
    body.collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default()
}

/// A TLS connector that trusts only `root` (rustls on aws-lc-rs).
pub fn tls_connector(
    root: &rustls::pki_types::CertificateDer<'static>,
) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(root.clone()).expect("root");
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

/// A client certificate (for client authentication) with common name `cn`,
/// issued by `issuer`, and its key.
pub fn client_certificate(
    issuer: &rcgen::Issuer<'_, rcgen::KeyPair>,
    cn: &str,
) -> (rcgen::Certificate, rcgen::KeyPair) {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, cn);
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = params.signed_by(&key, issuer).expect("signed");
    (cert, key)
}

/// A TLS server setup for `localhost` with a fresh self-signed certificate,
/// offering `alpn` (none: HTTP/1.1): the config and the certificate's PEM,
/// for a client's `ca_file`.
pub fn localhost_tls(alpn: &[&[u8]]) -> (rustls::ServerConfig, String) {
    let made =
        rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("certificate");
    let key =
        rustls::pki_types::PrivateKeyDer::try_from(made.signing_key.serialize_der()).expect("key");
    let mut config = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_no_client_auth()
    .with_single_cert(vec![made.cert.der().clone()], key)
    .expect("server config");
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    (config, made.cert.pem())
}

/// A real HTTP upstream that answers with a JSON echo of what it received and
/// its serial number (1 for its first request).
///
/// `/slow/{ms}` waits that long first; `/status/{code}` answers with that
/// status; a query parameter `h-NAME=VALUE` adds the response header NAME.
pub struct Upstream {
    pub addr: SocketAddr,
    hits: Arc<AtomicUsize>,
}

impl Upstream {
    pub async fn start(name: &'static str) -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind upstream");
        let addr = listener.local_addr().expect("upstream addr");
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = hits.clone();
        serve_http1(
            listener,
            None,
            service_fn(move |req| {
                let serial = counter.fetch_add(1, Ordering::SeqCst) + 1;
                echo(name, req, serial)
            }),
        );
        Upstream { addr, hits }
    }

    /// Requests this upstream has received.
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    /// Waits (up to 5 s) until a request has reached this upstream, so one
    /// sent to the gateway is truly in flight.
    pub async fn wait_for_a_hit(&self) {
        let waiting = std::time::Instant::now();
        while self.hits() == 0 && waiting.elapsed() < Duration::from_secs(5) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(self.hits() > 0, "no request reached the upstream");
    }
}

async fn echo(
    name: &'static str,
    req: Request<Incoming>,
    serial: usize,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_string();
    if let Some(ms) = path
        .strip_prefix("/slow/")
        .and_then(|ms| ms.parse::<u64>().ok())
    {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    let status = path
        .strip_prefix("/status/")
        .and_then(|code| code.parse::<u16>().ok())
        .and_then(|code| StatusCode::from_u16(code).ok())
        .unwrap_or(StatusCode::OK);
    let headers: serde_json::Map<String, serde_json::Value> = req
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into(),
            )
        })
        .collect();
    let method = req.method().to_string();
    let query = req.uri().query().unwrap_or_default().to_string();
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let extra_headers: Vec<(String, String)> = url_pairs(&query)
        .into_iter()
        .filter_map(|(k, v)| Some((k.strip_prefix("h-")?.to_string(), v)))
        .collect();
    let echo = serde_json::json!({
        "upstream": name,
        "serial": serial,
        "method": method,
        "path": path,
        "query": query,
        "headers": headers,
        "body": String::from_utf8_lossy(&body),
    });
    let mut response = Response::new(Full::new(Bytes::from(echo.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        "content-type",
        http::HeaderValue::from_static("application/json"),
    );
    response
        .headers_mut()
        .insert("x-upstream", http::HeaderValue::from_static(name));
    for (header, value) in extra_headers {
        if let (Ok(header), Ok(value)) = (
            http::HeaderName::from_bytes(header.as_bytes()),
            http::HeaderValue::from_str(&value),
        ) {
            response.headers_mut().append(header, value);
        }
    }
    Ok(response)
}

/// Decoded `name=value` pairs of a query string.
fn url_pairs(query: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect()
}

/// The real `gateway` binary serving a config written to a temporary directory.
pub struct Gateway {
    pub addr: SocketAddr,
    /// The admin listener, when the config has `[admin]`.
    pub admin: Option<SocketAddr>,
    /// The `[[listeners]]`: name and address, in order.
    pub listeners: Vec<(String, SocketAddr)>,
    child: Child,
    config_path: PathBuf,
    /// The config's directory (when the test gave only the text) and the log's.
    _dirs: (Option<tempfile::TempDir>, tempfile::TempDir),
    log: PathBuf,
}

impl Gateway {
    /// Starts the gateway on `config` (which should `listen = "127.0.0.1:0"`).
    pub fn start(config: &str) -> Gateway {
        Gateway::start_with_env(config, &[])
    }

    /// Like [`Gateway::start`], with extra environment variables.
    pub fn start_with_env(config: &str, env: &[(&str, &str)]) -> Gateway {
        let dir = tempfile::tempdir().expect("tempdir");
        let config_path = dir.path().join("gateway.toml");
        std::fs::write(&config_path, config).expect("write config");
        Gateway::spawn(config_path, Some(dir), env)
    }

    /// Starts the gateway on a config file that already exists (it stays
    /// where it is, so tests can change it).
    pub fn start_at(config_path: &Path) -> Gateway {
        Gateway::spawn(config_path.to_path_buf(), None, &[])
    }

    fn spawn(
        config_path: PathBuf,
        dir: Option<tempfile::TempDir>,
        env: &[(&str, &str)],
    ) -> Gateway {
        let config = std::fs::read_to_string(&config_path).expect("read config");
        let logs = tempfile::tempdir().expect("tempdir");
        let log = logs.path().join("gateway.log");
        let log_file = std::fs::File::create(&log).expect("log file");
        let mut child = Command::new(env!("CARGO_BIN_EXE_gateway"))
            .args(["run", "--config"])
            .arg(&config_path)
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(log_file)
            .spawn()
            .expect("spawn gateway");
        let stdout = child.stdout.take().expect("stdout");
        let mut stdout = BufReader::new(stdout);
        let mut line = String::new();
        // The first stdout line announces the bound address; EOF means it exited.
        let read = stdout.read_line(&mut line).unwrap_or(0);
        if read == 0 {
            let _ = child.wait();
            panic!(
                "gateway exited before listening:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        let addr = line
            .trim()
            .rsplit("://")
            .next()
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("unexpected first line: {line}"));
        // With `[admin]`, the second line announces the admin address.
        let admin = config.contains("\n[admin]").then(|| {
            let mut line = String::new();
            stdout.read_line(&mut line).unwrap_or(0);
            line.trim()
                .rsplit("http://")
                .next()
                .and_then(|a| a.parse().ok())
                .unwrap_or_else(|| panic!("unexpected admin line: {line}"))
        });
        // Then one line per `[[listeners]]`: `listener NAME listening on URL`.
        let listeners = (0..config.matches("[[listeners]]").count())
            .map(|_| {
                let mut line = String::new();
                stdout.read_line(&mut line).unwrap_or(0);
                let parsed = line
                    .trim()
                    .strip_prefix("listener ")
                    .and_then(|rest| rest.split_once(" listening on "))
                    .and_then(|(name, url)| {
                        let addr = url.rsplit("://").next()?.parse().ok()?;
                        Some((name.to_string(), addr))
                    });
                parsed.unwrap_or_else(|| panic!("unexpected listener line: {line}"))
            })
            .collect();
        Gateway {
            addr,
            admin,
            listeners,
            child,
            config_path,
            _dirs: (dir, logs),
            log,
        }
    }

    /// The address of the `[[listeners]]` entry `name`.
    pub fn listener(&self, name: &str) -> SocketAddr {
        self.listeners
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, addr)| *addr)
            .unwrap_or_else(|| panic!("no listener `{name}`"))
    }

    /// The config file the gateway serves.
    pub fn config_path(&self) -> PathBuf {
        self.config_path.clone()
    }

    /// Sends a signal (`"HUP"`, `"TERM"`) to the gateway.
    pub fn signal(&self, name: &str) {
        let _ = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status();
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// A URL on the admin listener.
    pub fn admin_url(&self, path: &str) -> String {
        let admin = self.admin.expect("the config has no [admin]");
        format!("http://{admin}{path}")
    }

    /// Everything the gateway has logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Whether `/readyz` on the admin listener turns 503 within `limit`.
    pub async fn turns_not_ready(&self, limit: Duration) -> bool {
        let started = std::time::Instant::now();
        while started.elapsed() < limit {
            if get(&self.admin_url("/readyz")).await.status == 503 {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        false
    }

    /// Waits up to `limit` for the process to exit by itself (after a
    /// signal); `None` if it did not (it is killed when dropped).
    pub async fn wait_for_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let until = std::time::Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait gateway") {
                return Some(status);
            }
            if std::time::Instant::now() >= until {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        self.child.wait().expect("wait gateway")
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `gateway check` in `dir` on `file` and returns (success, stdout + stderr).
pub fn check(dir: &Path, file: &str) -> (bool, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_gateway"))
        .current_dir(dir)
        .args(["check", "--config", file])
        .env("RUST_LOG", "error")
        .output()
        .expect("run gateway check");
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stderr));
    (output.status.success(), text)
}

/// Runs `gateway openapi export` in `dir` on `file` (only API `api` when
/// given) and returns (success, stdout, stderr).
pub fn run_export(dir: &Path, file: &str, api: Option<&str>) -> (bool, String, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_gateway"));
    command
        .current_dir(dir)
        .args(["openapi", "export", "--config", file])
        .env("RUST_LOG", "error");
    if let Some(api) = api {
        command.args(["--api", api]);
    }
    let output = command.output().expect("run gateway openapi export");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// The value of the first metric line starting with `prefix` (labels
/// included) in a Prometheus text exposition.
pub fn metric(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find(|line| line.starts_with(prefix))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
}

/// A keep-alive HTTP client.
pub fn client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build(HttpConnector::new())
}

/// A parsed response.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: String,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Sends `request` and reads the whole response.
pub async fn send(
    client: &Client<HttpConnector, Full<Bytes>>,
    request: Request<Full<Bytes>>,
) -> Reply {
    let response = client.request(request).await.expect("request failed");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("read body")
        .to_bytes();
    Reply {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

/// GET `url` with `headers`.
pub async fn get_with(url: &str, headers: &[(&str, &str)]) -> Reply {
    let mut request = Request::get(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    send(&client(), request.body(Full::default()).expect("request")).await
}

/// GET `url`.
pub async fn get(url: &str) -> Reply {
    send(
        &client(),
        Request::get(url).body(Full::default()).expect("request"),
    )
    .await
}

/// A real HTTP server answering every request with a document the test can
/// change (or replace with a 503), counting requests: a JWKS endpoint.
pub struct DocumentServer {
    pub addr: SocketAddr,
    document: Arc<std::sync::Mutex<Option<String>>>,
    hits: Arc<AtomicUsize>,
}

impl DocumentServer {
    pub async fn start(document: &str) -> DocumentServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let served = Arc::new(std::sync::Mutex::new(Some(document.to_string())));
        let hits = Arc::new(AtomicUsize::new(0));
        let (doc, counter) = (served.clone(), hits.clone());
        serve_http1(
            listener,
            None,
            service_fn(move |_req: Request<Incoming>| {
                counter.fetch_add(1, Ordering::SeqCst);
                let current = doc.lock().map(|d| d.clone()).unwrap_or_default();
                async move {
                    let mut response =
                        Response::new(Full::new(Bytes::from(current.clone().unwrap_or_default())));
                    if current.is_none() {
                        *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
                    }
                    Ok::<_, Infallible>(response)
                }
            }),
        );
        DocumentServer {
            addr,
            document: served,
            hits,
        }
    }

    /// Serves `document` from now on, or 503 for `None`.
    pub fn serve(&self, document: Option<&str>) {
        if let Ok(mut current) = self.document.lock() {
            *current = document.map(str::to_string);
        }
    }

    /// Requests served so far.
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

/// A real `redis-server` on an ephemeral port, with no persistence, killed on
/// drop.
pub struct RedisServer {
    pub port: u16,
    child: Option<Child>,
    _dir: tempfile::TempDir,
}

impl RedisServer {
    /// Starts `redis-server` (from PATH) and waits until it answers PING.
    pub fn start() -> RedisServer {
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            listener.local_addr().expect("addr").port()
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let mut server = RedisServer {
            port,
            child: None,
            _dir: dir,
        };
        server.restart();
        server
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts the server again on the same port (after [`RedisServer::kill`]).
    pub fn restart(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(self._dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start redis-server ({e}); install it, e.g. apt-get install -y redis-server")
            });
        self.child = Some(child);
        let started = std::time::Instant::now();
        while !self.answers() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "redis-server did not answer on port {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the server at once (SIGKILL), like a crash.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends one command (RESP over a fresh connection) and returns the raw
    /// reply.
    pub fn command(&self, args: &[&str]) -> String {
        self.try_command(args)
            .unwrap_or_else(|e| panic!("redis command {args:?} failed: {e}"))
    }

    fn try_command(&self, args: &[&str]) -> std::io::Result<String> {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", self.port))?;
        let mut request = format!("*{}\r\n", args.len());
        for arg in args {
            request.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
        }
        stream.write_all(request.as_bytes())?;
        stream.set_read_timeout(Some(Duration::from_secs(2)))?;
        let mut reply = vec![0u8; 64 * 1024];
        let n = stream.read(&mut reply)?;
        Ok(String::from_utf8_lossy(&reply[..n]).into_owned())
    }

    fn answers(&self) -> bool {
        self.try_command(&["PING"])
            .is_ok_and(|reply| reply.starts_with("+PONG"))
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs `script` with python3 and the packages `tests/run` installs into
/// `target/python-deps` (botocore, argon2-cffi, bcrypt), `input` on its
/// stdin; its stdout. Fails the test, saying to run `tests/run`, when python3
/// or a package is missing or the script fails.
pub fn python(script: &str, input: &[u8]) -> Vec<u8> {
    use std::io::Write as _;
    let deps = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/python-deps");
    let mut child = Command::new("python3")
        .arg("-c")
        .arg(script)
        .env("PYTHONPATH", &deps)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run python3 ({e}): run tests/run, which installs python3 and the packages"
            )
        });
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input)
        .expect("write to python3");
    let output = child.wait_with_output().expect("python3 output");
    assert!(
        output.status.success(),
        "python3 failed; run tests/run, which installs its packages into target/python-deps: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

/// `examples/NAME` run for real: its `gateway.toml` copied to a temporary
/// directory with `:PORT` (the port it listens on) replaced by a free one,
/// and `files` (paths relative to the example) copied beside it.
pub fn run_example(name: &str, port: u16, files: &[&str]) -> (Gateway, tempfile::TempDir) {
    let source = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples")
        .join(name);
    let dir = tempfile::tempdir().expect("tempdir");
    let free = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let config = std::fs::read_to_string(source.join("gateway.toml")).expect("read");
    let config = config.replace(&format!(":{port}"), &format!(":{free}"));
    std::fs::write(dir.path().join("gateway.toml"), config).expect("write");
    for file in files {
        let to = dir.path().join(file);
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent).expect("mkdir");
        }
        std::fs::copy(source.join(file), to).expect("copy");
    }
    (Gateway::start_at(&dir.path().join("gateway.toml")), dir)
}
