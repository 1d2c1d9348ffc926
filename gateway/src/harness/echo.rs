//! A tiny upstream for the harness: a hyper HTTP/1.1 server on 127.0.0.1
//! that answers every request `200` with JSON describing what it received
//! (method, path and query, headers in order, body), and counts requests.

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A running echo upstream; it stops with the test's runtime.
pub(crate) struct Echo {
    addr: SocketAddr,
    hits: Arc<AtomicUsize>,
}

impl Echo {
    /// Listens on a free port of 127.0.0.1 and serves in the background.
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a free port");
        let addr = listener.local_addr().expect("a bound address");
        let hits = Arc::new(AtomicUsize::new(0));
        let counted = hits.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let counted = counted.clone();
                let service = hyper::service::service_fn(move |request| {
                    counted.fetch_add(1, Ordering::SeqCst);
                    answer(request)
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service),
                );
            }
        });
        Self { addr, hits }
    }

    /// `127.0.0.1:PORT`, for `targets`.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// How many requests reached it.
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

/// The JSON report of `request`, with `X-Echo: yes` and `Server: echo`.
async fn answer(request: Request<Incoming>) -> Result<Response<Full<Bytes>>, hyper::Error> {
    let (parts, body) = request.into_parts();
    let body = body.collect().await?.to_bytes();
    let headers: Vec<(String, String)> = parts
        .headers
        .iter()
        .map(|(name, value)| {
            let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
            (name.as_str().to_string(), value)
        })
        .collect();
    let report = serde_json::json!({
        "method": parts.method.as_str(),
        "path": parts.uri.path_and_query().map_or("", |pq| pq.as_str()),
        "headers": headers,
        "body": String::from_utf8_lossy(&body),
    });
    let response = Response::builder()
        .header(http::header::CONTENT_TYPE, "application/json")
        .header("x-echo", "yes")
        .header(http::header::SERVER, "echo")
        .body(Full::new(Bytes::from(report.to_string())))
        .expect("a valid response");
    Ok(response)
}

/// What an echo upstream received, read back from its answer.
#[derive(Debug)]
pub(crate) struct Echoed {
    /// The method.
    pub method: String,
    /// The path and query.
    pub path: String,
    /// Every header, in the order received.
    pub headers: Vec<(String, String)>,
    /// The body, as text.
    pub body: String,
}

impl Echoed {
    /// Reads the JSON an echo answered with.
    pub fn from_json(json: &serde_json::Value) -> Self {
        let text = |key: &str| json[key].as_str().expect("an echo field").to_string();
        let headers = json["headers"]
            .as_array()
            .expect("the echoed headers")
            .iter()
            .map(|pair| {
                let field = |i: usize| pair[i].as_str().expect("a header").to_string();
                (field(0), field(1))
            })
            .collect();
        Self {
            method: text("method"),
            path: text("path"),
            headers,
            body: text("body"),
        }
    }

    /// The first value of header `name` (lower case) the upstream got.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.all(name).into_iter().next()
    }

    /// Every value of header `name` (lower case) the upstream got, in order.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}
