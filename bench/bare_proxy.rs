//! The floor for `bench/run.sh`: the smallest proxy hyper can make with the
//! gateway's own stack (one current-thread runtime per core on a SO_REUSEPORT
//! listener, hyper-util's auto server and pooled client), with no router,
//! pipeline, limits or headers. Not a product: it shows how much of the gap to
//! nginx is hyper's and how much is ours.
//!
//!     bare_proxy LISTEN_ADDR UPSTREAM_ADDR WORKERS

use std::convert::Infallible;
use std::net::SocketAddr;

use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty};
use hyper::body::{Bytes, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;

type Body = BoxBody<Bytes, hyper::Error>;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, listen, upstream, workers] = args.as_slice() else {
        anyhow::bail!("usage: bare_proxy LISTEN_ADDR UPSTREAM_ADDR WORKERS");
    };
    let listen: SocketAddr = listen.parse()?;
    let upstream = upstream.clone();
    let workers: usize = workers.parse()?;
    let threads: Vec<_> = (0..workers)
        .map(|_| {
            let upstream = upstream.clone();
            std::thread::spawn(move || -> anyhow::Result<()> {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                runtime.block_on(serve(listen, upstream))
            })
        })
        .collect();
    for thread in threads {
        thread
            .join()
            .map_err(|_| anyhow::anyhow!("worker panicked"))??;
    }
    Ok(())
}

async fn serve(listen: SocketAddr, upstream: String) -> anyhow::Result<()> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    socket.set_reuse_port(true)?;
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&listen.into())?;
    socket.listen(1024)?;
    let listener = tokio::net::TcpListener::from_std(socket.into())?;
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client: Client<HttpConnector, Body> =
        Client::builder(TokioExecutor::new()).build(connector);
    let builder = auto::Builder::new(TokioExecutor::new());
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let client = client.clone();
        let upstream = upstream.clone();
        let service = service_fn(move |request: Request<Incoming>| {
            let client = client.clone();
            let uri = format!(
                "http://{upstream}{}",
                request.uri().path_and_query().map_or("/", |pq| pq.as_str())
            );
            async move {
                let (mut parts, body) = request.into_parts();
                parts.uri = uri.parse::<Uri>().unwrap_or_default();
                let request = Request::from_parts(parts, body.boxed());
                let response = match client.request(request).await {
                    Ok(response) => response.map(BodyExt::boxed),
                    Err(_) => Response::builder()
                        .status(502)
                        .body(Empty::new().map_err(|never| match never {}).boxed())
                        .unwrap_or_default(),
                };
                Ok::<Response<Body>, Infallible>(response)
            }
        });
        let connection = builder
            .serve_connection(TokioIo::new(stream), service)
            .into_owned();
        tokio::spawn(async move {
            let _ = connection.await;
        });
    }
}
