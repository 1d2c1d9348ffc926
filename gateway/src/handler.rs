//! One request, start to finish: route, request phase, upstream (or a plugin's
//! answer), response phase, access log.

use crate::body::{self, Body};
use crate::error::{Origin, RequestError};
use crate::pipeline::{RequestPhase, ResponseBody};
use crate::plugin::{
    Context, Request as WitRequest, Response as WitResponse, decode_headers, edit_head,
    encode_head, encode_headers, head_field, head_headers,
};
use crate::proxy::upstream::Sending;
use crate::proxy::{TRACEPARENT, Traceparent, Upstream, apply_forwarded, strip_hop_by_hop};
use crate::router::Miss;
use crate::runtime::{Route, Runtime};
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::request::Parts;
use http::uri::PathAndQuery;
use http::{Method, Request, Response, StatusCode, Uri};
use http_body_util::BodyExt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;
use tracing::Instrument;

static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
static X_FORWARDED_CLIENT_CERT: HeaderName = HeaderName::from_static("x-forwarded-client-cert");
static UPGRADE_TOKEN: HeaderValue = HeaderValue::from_static("upgrade");
static TRAILERS: HeaderValue = HeaderValue::from_static("trailers");
static WEBSOCKET: HeaderValue = HeaderValue::from_static("websocket");

/// What the gateway knows about the connection a request came on.
#[derive(Debug, Clone)]
pub struct Connection {
    /// The client (or the proxy in front of us).
    pub peer: SocketAddr,
    /// `http` or `https`.
    pub scheme: &'static str,
    /// The client, as the trusted proxies before us report it (`peer` when
    /// there are none): what plugins and the access log see.
    pub client: SocketAddr,
    /// The certificate the client presented, verified, with mutual TLS.
    pub client_cert: Option<Arc<crate::tls::ClientCert>>,
    /// The connection's place under `max_connections_per_ip`: a WebSocket
    /// tunnel keeps it once the connection itself has ended in the upgrade.
    pub client_place: Option<Arc<crate::limit::ClientPlace>>,
    /// The name of the listener it came on (routes may be limited to some).
    pub listener: Arc<str>,
}

/// Serves one request on the runtime snapshot it started with.
pub async fn handle(
    runtime: Arc<Runtime>,
    request: Request<Body>,
    conn: Connection,
) -> Response<Body> {
    let started = Instant::now();
    let mut request = request;
    let conn = Connection {
        client: runtime
            .limits
            .trusted_proxies
            .client(conn.peer, request.headers()),
        ..conn
    };
    crate::request_head::drop_connection_options(request.headers_mut());
    let request_id = request_id(request.headers());
    let id = request_id.to_str().unwrap_or("-");
    let trace = Traceparent::continue_or_start(request.headers());
    request
        .headers_mut()
        .insert(TRACEPARENT.clone(), trace.header());
    let method = request.method().clone();
    let accept = accept_encoding(request.headers());
    // For the access log; cloning a parsed URI shares its bytes.
    let uri = request.uri().clone();
    let span = tracing::info_span!("request", id = %id);
    let mut access = Access::default();
    let result = process(&runtime, request, &conn, &request_id, &mut access)
        .instrument(span.clone())
        .await;
    let compressible = result.is_ok();
    let mut response = match result {
        Ok(response) => response,
        Err(err) => {
            let _entered = span.enter();
            match err.origin() {
                Origin::Client => tracing::debug!(error = %err, "request refused"),
                // The pipeline said which plugin failed, how and where.
                Origin::Plugin => tracing::debug!(error = %err, "request failed"),
                _ => tracing::warn!(error = %err, "request failed"),
            }
            err.into_response(id)
        }
    };
    response
        .headers_mut()
        .insert(X_REQUEST_ID.clone(), request_id.clone());
    // Headers request-phase plugins set for the client, on whatever answer it
    // gets (upstream, plugin or error), after every response hook.
    for (name, value) in access.context.take_response_headers() {
        response.headers_mut().insert(name, value);
    }
    // Last, so it sees every header the answer will have (a plugin's `Vary`
    // or `Cache-Control: no-transform`) and its own are not overwritten.
    let compression = access.route.and_then(|route| route.compression.as_ref());
    if let Some(compression) = compression.filter(|_| compressible) {
        let accept = accept.as_ref().and_then(|a| a.to_str().ok());
        response = compression.apply(&method, accept, response);
    }
    finish(
        &runtime,
        &access,
        &response,
        started,
        &Finished {
            id,
            trace: &trace,
            conn: &conn,
            method: &method,
            uri: &uri,
        },
    );
    response
}

/// What [`finish`] records of a request besides its response.
struct Finished<'a> {
    id: &'a str,
    trace: &'a Traceparent,
    conn: &'a Connection,
    method: &'a Method,
    uri: &'a Uri,
}

/// A request's last step: its route's metrics and its access-log line
/// (errors always, successes as sampled).
fn finish(
    runtime: &Runtime,
    access: &Access<'_>,
    response: &Response<Body>,
    started: Instant,
    request: &Finished<'_>,
) {
    let Finished {
        id,
        trace,
        conn,
        method,
        uri,
    } = request;
    let elapsed = started.elapsed();
    let status = response.status().as_u16();
    let route_name = access.route.map_or("-", |route| route.name.as_str());
    match access.route {
        Some(route) => {
            route.latency.observe(elapsed.as_secs_f64());
            route.requests.inc(method, status);
        }
        None => runtime.unrouted.inc(method, status),
    }
    if status >= 400 || runtime.limits.access_log.sampled() {
        tracing::info!(
            target: "access",
            request_id = %id,
            trace_id = %trace.trace_id(),
            client = %conn.client,
            method = %method,
            path = %uri.path(),
            route = route_name,
            consumer = access.context.get("consumer").map_or("-", String::as_str),
            status,
            micros = elapsed.as_micros() as u64,
            upstream_micros = access.upstream_micros,
            bytes = content_length(response.headers()),
        );
    }
}

/// What the access log and metrics need to know of a request.
#[derive(Default)]
struct Access<'rt> {
    route: Option<&'rt Route>,
    /// The pipeline's context: the consumer and headers set for the client.
    context: Context,
    upstream_micros: Option<u64>,
}

/// The phases of one request, in order: [`prepare`] (route, limits, the
/// client certificate, forwarding of the request id), [`request_phase`]
/// (the route's request hooks), [`dispatch`] (to the upstream, into a
/// WebSocket tunnel, or nowhere when a plugin answered), [`response_phase`]
/// (the response hooks, then the client's response). [`handle`] finishes
/// (response headers from plugins, metrics, access log).
async fn process<'rt>(
    runtime: &'rt Runtime,
    request: Request<Body>,
    conn: &Connection,
    request_id: &HeaderValue,
    access: &mut Access<'rt>,
) -> Result<Response<Body>, RequestError> {
    let mut exchange = prepare(runtime, request, conn, request_id, access)?;
    let answer = match request_phase(&mut exchange, &mut access.context).await? {
        Some(plugin_answer) => Pending::answered_by_plugin(plugin_answer),
        None => match dispatch(&mut exchange, access).await? {
            Dispatched::Final(response) => return Ok(response),
            Dispatched::ForPlugins(pending) => pending,
        },
    };
    response_phase(exchange, answer, &mut access.context).await
}

/// One request between its phases.
struct Exchange<'rt, 'a> {
    runtime: &'rt Runtime,
    conn: &'a Connection,
    request_id: &'a HeaderValue,
    route: &'rt Route,
    parts: Parts,
    body: Body,
    /// Told when the upstream answered, so a body still being read stops
    /// counting against its read timeout; none when the body had ended.
    answered: Option<crate::body::Answered>,
    upgrade: Option<Upgrade>,
    /// The head the plugins see, built once when any entry takes a phase.
    wit: Option<WitRequest>,
    /// Where the request goes: the route's first upstream, or the one a
    /// request hook chose.
    upstream: Option<&'rt Arc<Upstream>>,
    /// How many entries (from the first) run their response phase: all,
    /// or those before the plugin that answered.
    respond_upto: usize,
}

/// A response on its way to the response phase.
struct Pending {
    wit: WitResponse,
    /// The upstream's body when no plugin buffered it.
    stream: Option<Body>,
    /// The upstream's head, to pass on as is when no hook changed anything.
    upstream_parts: Option<http::response::Parts>,
    /// The upstream's trailers (gRPC's status) when its body was buffered
    /// for the plugins, with the body they came after.
    trailers: Option<(Bytes, HeaderMap)>,
}

impl Pending {
    fn answered_by_plugin(wit: WitResponse) -> Self {
        Self {
            wit,
            stream: None,
            upstream_parts: None,
            trailers: None,
        }
    }
}

/// What [`dispatch`] ended in.
enum Dispatched {
    /// The client's response: no response hook runs (none is declared, or
    /// the upstream switched to WebSocket).
    Final(Response<Body>),
    /// The upstream's answer, for the response hooks.
    ForPlugins(Pending),
}

/// Checks the request head, finds its route, and readies the request for
/// the plugins: the client certificate in the context and in
/// `X-Forwarded-Client-Cert`, the body under its size limit and read
/// timeout, the request id in `X-Request-Id`, the head plugins see.
fn prepare<'rt, 'a>(
    runtime: &'rt Runtime,
    mut request: Request<Body>,
    conn: &'a Connection,
    request_id: &'a HeaderValue,
    access: &mut Access<'rt>,
) -> Result<Exchange<'rt, 'a>, RequestError> {
    crate::request_head::check(&mut request)?;
    // The verified client certificate, as Envoy reports it, set before the
    // routes' conditions and the plugins see the request; a client's own
    // claim to one is dropped.
    match &conn.client_cert {
        Some(cert) => {
            request
                .headers_mut()
                .insert(X_FORWARDED_CLIENT_CERT.clone(), cert.header.clone());
        }
        None => {
            request.headers_mut().remove(&X_FORWARDED_CLIENT_CERT);
        }
    }
    let (route, params) = find_route(runtime, &request, &conn.listener)?;
    access.route = Some(route);
    if let Some(cert) = &conn.client_cert
        && !route.pipeline.entries().is_empty()
    {
        client_cert_context(cert, &mut access.context);
    }
    let upgrade = route
        .websocket
        .and_then(|idle| websocket_upgrade(&mut request, idle));
    let limit = runtime.limits.max_request_body;
    if let Some(length) = content_length(request.headers())
        && length > limit
    {
        return Err(RequestError::BodyTooLarge { limit });
    }
    let (mut parts, body) = request.into_parts();
    // A body still to come must keep coming, within the limit; one that
    // ended is left as it is (nothing more can come to time or to count).
    let (body, answered) = if http_body::Body::is_end_stream(&body) {
        (body, None)
    } else {
        let (body, answered) = crate::body::read_timeout(body, runtime.limits.body_read_timeout);
        (body::limited(body, limit), Some(answered))
    };
    // Plugins that read the body read it decoded, up to their cap; it then
    // goes upstream decoded. Unread, it passes as it came.
    let body = match route.pipeline.plan().request_body {
        Some(cap) => crate::compress::decoded_request(&mut parts.headers, body, cap)
            .map_err(RequestError::UnsupportedEncoding)?,
        None => body,
    };
    // Plugins see the id the client will get back (to quote it in their answers).
    parts
        .headers
        .insert(X_REQUEST_ID.clone(), request_id.clone());
    let pipeline = &route.pipeline;
    let respond_upto = pipeline.entries().len();
    let upstream = route.first_upstream();
    let wit = pipeline
        .plan()
        .any_phase()
        .then(|| wit_request(&parts, conn, route, upstream, &params, request_id));
    Ok(Exchange {
        runtime,
        conn,
        request_id,
        route,
        parts,
        body,
        answered,
        upgrade,
        wit,
        upstream,
        respond_upto,
    })
}

/// A route's path parameters, by name, in template order.
type Params = Vec<(String, String)>;

/// The request's route and its path parameters (captured only when its
/// plugins, which alone read them, take a phase).
fn find_route<'rt>(
    runtime: &'rt Runtime,
    request: &Request<Body>,
    listener: &str,
) -> Result<(&'rt Route, Params), RequestError> {
    let wants_params = |route: usize| {
        runtime
            .routes
            .get(route)
            .is_none_or(|route| route.pipeline.plan().any_phase())
    };
    let routed = crate::router::Request {
        host: authority(request.uri(), request.headers()),
        method: request.method(),
        path: request.uri().path(),
        headers: request.headers(),
        query: request.uri().query(),
        listener,
    };
    let matched = runtime
        .router
        .find_with(&routed, wants_params)
        .map_err(|miss| match miss {
            Miss::NotFound => RequestError::NoRoute,
            Miss::MethodNotAllowed(methods) => RequestError::MethodNotAllowed {
                allow: methods
                    .iter()
                    .map(Method::as_str)
                    .collect::<Vec<_>>()
                    .join(", "),
            },
        })?;
    Ok((&runtime.routes[matched.route], matched.params))
}

/// Who the client proved to be, in the context for the plugins
/// (`ClientCert` keeps each value within the context's limits).
fn client_cert_context(cert: &crate::tls::ClientCert, context: &mut Context) {
    let _ = context.set("tls.client.fingerprint".into(), cert.fingerprint.clone());
    if !cert.subject.is_empty() {
        let _ = context.set("tls.client.subject".into(), cert.subject.clone());
    }
    if let Some(cn) = &cert.common_name {
        let _ = context.set("tls.client.cn".into(), cn.clone());
    }
    if !cert.names.is_empty() {
        let _ = context.set("tls.client.names".into(), cert.names_joined());
    }
    if cert.incomplete {
        let _ = context.set("tls.client.incomplete".into(), "true".into());
    }
}

/// Runs the route's request hooks and applies what they changed: the head,
/// the upstream, the body. Returns a plugin's answer, when one answered.
async fn request_phase(
    exchange: &mut Exchange<'_, '_>,
    context: &mut Context,
) -> Result<Option<WitResponse>, RequestError> {
    let pipeline = &exchange.route.pipeline;
    let Some(wit) = exchange
        .wit
        .as_mut()
        .filter(|_| pipeline.plan().request_phase)
    else {
        return Ok(None);
    };
    // Read when the first plugin that reads it is reached: one before it
    // that refuses the request (an auth check) spares reading the body.
    let unread = pipeline
        .plan()
        .request_body
        .map(|cap| (&mut exchange.body, cap));
    match pipeline.run_request(wit, context, unread).await? {
        RequestPhase::Proceed { edited } => {
            if edited {
                apply_request(&mut exchange.parts, wit).map_err(|reason| RequestError::Plugin {
                    plugin: "request phase".to_string(),
                    reason,
                })?;
                exchange.upstream = chosen_upstream(exchange.route, wit).or(exchange.upstream);
            }
            if let Some(new_body) = wit.body.take() {
                exchange.parts.headers.remove(header::CONTENT_LENGTH);
                exchange.parts.headers.remove(header::TRANSFER_ENCODING);
                exchange.body = body::full(new_body);
            }
            Ok(None)
        }
        RequestPhase::Respond { response, by } => {
            exchange.respond_upto = by;
            Ok(Some(response))
        }
    }
}

/// Sends the request to its upstream and takes the answer: into a
/// WebSocket tunnel when the upstream switched protocols, straight to the
/// client when no response hook runs, else (its body buffered when a hook
/// reads it) on to the response phase.
async fn dispatch<'rt>(
    exchange: &mut Exchange<'rt, '_>,
    access: &mut Access<'rt>,
) -> Result<Dispatched, RequestError> {
    let runtime = exchange.runtime;
    // A request hook that dropped the handshake's headers turned it into a
    // plain request.
    let upgrade = exchange
        .upgrade
        .take()
        .filter(|_| has_token(&exchange.parts.headers, &header::UPGRADE, "websocket"));
    let permit = match &upgrade {
        Some(_) => Some(
            crate::limit::TUNNELS
                .take(runtime.limits.max_websocket_connections)
                .ok_or(RequestError::Overloaded {
                    what: "WebSocket connections",
                })?,
        ),
        None => None,
    };
    let upstream = exchange.upstream;
    let upstream_started = Instant::now();
    let parts = std::mem::replace(&mut exchange.parts, Request::new(()).into_parts().0);
    let body = std::mem::replace(&mut exchange.body, body::empty());
    let response = match upstream {
        Some(upstream) => {
            let to = Forward {
                upstream,
                websocket: upgrade.is_some(),
            };
            let (route, conn) = (exchange.route, exchange.conn);
            forward(runtime, route, to, parts, body, conn, exchange.request_id).await
        }
        None => Err(RequestError::NoAnswer {
            route: exchange.route.name.clone(),
        }),
    };
    if let (Ok(_), Some(answered)) = (&response, &exchange.answered) {
        answered.set();
    }
    let upstream_elapsed = upstream_started.elapsed();
    access.upstream_micros = Some(upstream_elapsed.as_micros() as u64);
    if let Some(upstream) = upstream {
        upstream.latency.observe(upstream_elapsed.as_secs_f64());
    }
    let response = response?;
    if response.status() == StatusCode::SWITCHING_PROTOCOLS {
        return tunnel(exchange, response, upgrade.zip(permit)).map(Dispatched::Final);
    }
    let plan = exchange.route.pipeline.response_plan(exchange.respond_upto);
    if !plan.hooks {
        return Ok(Dispatched::Final(response));
    }
    let pending = for_plugins(response, plan.body, upstream).await?;
    Ok(Dispatched::ForPlugins(pending))
}

/// The upstream switched to WebSocket: the connection becomes a tunnel, if
/// the client asked for exactly that. Response hooks do not run: the answer
/// has no body, and a hook changing it would leave the client and upstream
/// speaking different protocols.
fn tunnel(
    exchange: &Exchange<'_, '_>,
    mut response: Response<Body>,
    asked: Option<(Upgrade, crate::limit::Place)>,
) -> Result<Response<Body>, RequestError> {
    let upstream = upstream_name(exchange.upstream);
    let Some((upgrade, permit)) = asked else {
        return Err(RequestError::UpstreamBody {
            upstream,
            reason: "answered 101 Switching Protocols to a request that asked for no upgrade"
                .to_string(),
        });
    };
    if !has_token(response.headers(), &header::UPGRADE, "websocket") {
        return Err(RequestError::UpstreamBody {
            upstream,
            reason: "answered 101 Switching Protocols without `Upgrade: websocket`".to_string(),
        });
    }
    let upstream_side = hyper::upgrade::on(&mut response);
    crate::proxy::tunnel::spawn(
        upgrade.client,
        upstream_side,
        upgrade.idle,
        exchange.route.name.clone(),
        (permit, exchange.conn.client_place.clone()),
    );
    Ok(response)
}

/// The upstream's answer as the response hooks get it: its body buffered
/// (up to `cap`, the pipeline's response body cap) when one of them reads
/// it, else left streaming; a body over the cap passes by unread when every
/// reader lets it.
async fn for_plugins(
    response: Response<Body>,
    cap: Option<ResponseBody>,
    upstream: Option<&Arc<Upstream>>,
) -> Result<Pending, RequestError> {
    let (mut response_parts, mut response_body) = response.into_parts();
    // A body larger (as sent) than the cap passes as it came, encoded or not,
    // when every reader lets it: it is never decoded for nothing.
    let passes_whole = cap.as_ref().is_some_and(|c| {
        c.large_passes
            && content_length(&response_parts.headers).is_some_and(|len| len > c.cap as u64)
    });
    // Otherwise the hooks that read the body read it decoded (a coding the
    // gateway does not know is left to them); their cap counts decoded bytes.
    if let Some(c) = cap.as_ref().filter(|_| !passes_whole) {
        let (status, headers) = (response_parts.status, &mut response_parts.headers);
        response_body = crate::compress::decoded_response(status, headers, response_body, c.cap);
    }
    let mut pending = Pending {
        wit: wit_response(&response_parts),
        stream: None,
        upstream_parts: None,
        trailers: None,
    };
    let failed = |reason| RequestError::UpstreamBody {
        upstream: upstream_name(upstream),
        reason,
    };
    pending.stream = match cap {
        Some(_) if passes_whole => Some(response_body),
        Some(ResponseBody {
            cap,
            large_passes: passes,
        }) => match collect_or_keep(response_body, cap).await {
            Ok(Ok((bytes, after))) => {
                pending.wit.body = Some(bytes.to_vec());
                pending.trailers = after.map(|after| (bytes, after));
                None
            }
            Ok(Err((read, rest))) if passes => Some(body::prefixed(read, rest)),
            Ok(Err(_)) => {
                return Err(failed(format!(
                    "larger than the {cap}-byte cap for plugins"
                )));
            }
            Err(reason) => return Err(failed(reason)),
        },
        None => Some(response_body),
    };
    pending.upstream_parts = Some(response_parts);
    Ok(pending)
}

/// Runs the response hooks (those before the plugin that answered, if one
/// did) and builds the client's response: the upstream's untouched when no
/// hook changed it, else from what the hooks left, with the upstream's
/// trailers when its body is still the one they followed.
async fn response_phase(
    exchange: Exchange<'_, '_>,
    mut pending: Pending,
    context: &mut Context,
) -> Result<Response<Body>, RequestError> {
    let pipeline = &exchange.route.pipeline;
    if pipeline.response_plan(exchange.respond_upto).hooks {
        let head = response_head(
            exchange.wit.unwrap_or_else(|| WitRequest {
                head: Vec::new(),
                body: None,
            }),
            context,
        );
        let edited = pipeline
            .run_response(&head, &mut pending.wit, exchange.respond_upto, context)
            .await?;
        if !edited
            && let (Some(parts), Some(stream)) =
                (pending.upstream_parts.take(), pending.stream.take())
        {
            return Ok(Response::from_parts(parts, stream));
        }
    }
    // Trailers belong to the body they followed: kept if the plugins left it
    // as it was.
    let trailers = pending
        .trailers
        .filter(|(original, _)| pending.wit.body.as_deref() == Some(original.as_ref()))
        .map(|(_, trailers)| trailers);
    let mut response = into_http_response(pending.wit, pending.stream)?;
    if let Some(trailers) = trailers {
        let body = std::mem::replace(response.body_mut(), body::empty());
        *response.body_mut() = body::with_trailers(body, trailers);
    }
    Ok(response)
}

/// A WebSocket upgrade the client asked for, on a route that lets it through.
struct Upgrade {
    /// The client's connection, once the `101` has reached it.
    client: hyper::upgrade::OnUpgrade,
    /// The route's idle timeout for the upgraded connection.
    idle: std::time::Duration,
}

/// The upgrade `request` asks for, when it is an HTTP/1.1 WebSocket
/// handshake: a `GET` without a body, with `Connection: upgrade` and
/// `Upgrade: websocket` (RFC 6455, section 4.1). Takes the client
/// connection's upgrade handle out of the request.
fn websocket_upgrade(request: &mut Request<Body>, idle: std::time::Duration) -> Option<Upgrade> {
    let headers = request.headers();
    let asks = request.version() == http::Version::HTTP_11
        && request.method() == Method::GET
        && http_body::Body::is_end_stream(request.body())
        && has_token(headers, &header::CONNECTION, "upgrade")
        && has_token(headers, &header::UPGRADE, "websocket");
    if !asks {
        return None;
    }
    let client = request
        .extensions_mut()
        .remove::<hyper::upgrade::OnUpgrade>()?;
    Some(Upgrade { client, idle })
}

/// Whether a comma-separated header lists `token` (any case).
fn has_token(headers: &HeaderMap, name: &HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|item| item.trim().eq_ignore_ascii_case(token))
}

/// An upstream's name, for errors.
fn upstream_name(upstream: Option<&Arc<Upstream>>) -> String {
    upstream.map_or("-", |u| u.name.as_str()).to_string()
}

/// The upstream a request hook chose (`:upstream` in the head), among the
/// route's; the pipeline refused any other name.
fn chosen_upstream<'r>(route: &'r Route, wit: &WitRequest) -> Option<&'r Arc<Upstream>> {
    let name = head_field(&wit.head, ":upstream")?;
    route.upstreams.iter().find(|u| u.name == name)
}

/// Where [`forward`] sends a request.
struct Forward<'a> {
    upstream: &'a Arc<Upstream>,
    /// Ask the upstream for the WebSocket upgrade too; a `101` answer keeps
    /// the headers that say so.
    websocket: bool,
}

/// Proxies to `to.upstream` (the route's, or the one a request hook chose
/// among the route's). With `websocket`, the upgrade to
/// WebSocket is asked of the upstream too, and a `101` answer keeps the
/// headers that say so.
async fn forward(
    runtime: &Runtime,
    route: &Route,
    to: Forward<'_>,
    mut parts: Parts,
    body: Body,
    conn: &Connection,
    request_id: &HeaderValue,
) -> Result<Response<Body>, RequestError> {
    let Forward {
        upstream,
        websocket,
    } = to;
    // The host the client asked for, as a header value (for HTTP/1 a shared
    // copy of its `Host`).
    let authority = match parts.uri.authority() {
        Some(authority) => HeaderValue::from_str(authority.as_str()).ok(),
        None => parts.headers.get(header::HOST).cloned(),
    };
    // `TE: trailers` says the client takes trailers (gRPC's clients send it,
    // and some of its servers insist on it). It is hop-by-hop, but HTTP/2
    // allows exactly this value: passed on when the next hop speaks HTTP/2.
    let trailers = upstream.http2() && has_token(&parts.headers, &header::TE, "trailers");
    strip_hop_by_hop(&mut parts.headers);
    if trailers {
        parts.headers.insert(header::TE, TRAILERS.clone());
    }
    if websocket {
        parts
            .headers
            .insert(header::CONNECTION, UPGRADE_TOKEN.clone());
        parts.headers.insert(header::UPGRADE, WEBSOCKET.clone());
    }
    apply_forwarded(
        &mut parts.headers,
        conn.peer,
        conn.scheme,
        authority.as_ref(),
        &runtime.limits.trusted_proxies,
    );
    parts
        .headers
        .insert(X_REQUEST_ID.clone(), request_id.clone());
    if route.preserve_host
        && !parts.headers.contains_key(header::HOST)
        && let Some(value) = authority
    {
        parts.headers.insert(header::HOST, value);
    }
    let path_and_query = upstream_target(route, &parts.uri)?;
    let body = match &route.mirror {
        Some(mirror) if !websocket => mirror.copy(&parts, &path_and_query, body, conn.client.ip()),
        _ => body,
    };
    let request = Request::from_parts(parts, body);
    let mut response = upstream
        .send(
            request,
            path_and_query,
            Sending {
                set_host: !route.preserve_host,
                retry: route.retry.as_ref(),
                client: Some(conn.client.ip()),
            },
        )
        .await?;
    let switched = match response.status() {
        StatusCode::SWITCHING_PROTOCOLS => response.headers().get(header::UPGRADE).cloned(),
        _ => None,
    };
    strip_hop_by_hop(response.headers_mut());
    if let Some(protocol) = switched {
        let headers = response.headers_mut();
        headers.insert(header::CONNECTION, UPGRADE_TOKEN.clone());
        headers.insert(header::UPGRADE, protocol);
    }
    Ok(response)
}

/// The path and query the upstream gets: the request's, without the route's
/// `strip_prefix`.
fn upstream_target(route: &Route, uri: &Uri) -> Result<PathAndQuery, RequestError> {
    let path = uri.path();
    let path = match &route.strip_prefix {
        Some(prefix) => match path.strip_prefix(prefix.as_str()) {
            Some("") => "/",
            Some(rest) if rest.starts_with('/') => rest,
            _ => path,
        },
        None => path,
    };
    match uri.path_and_query() {
        // Unchanged: share the parsed bytes.
        Some(unchanged) if path.len() == unchanged.path().len() => Ok(unchanged.clone()),
        _ => {
            let rebuilt = match uri.query() {
                Some(query) => format!("{path}?{query}"),
                None => path.to_string(),
            };
            PathAndQuery::try_from(rebuilt)
                .map_err(|e| RequestError::BadRequest(format!("invalid path: {e}")))
        }
    }
}

/// The client's `X-Request-Id` when it is sane (1 to 200 visible ASCII
/// characters), else a new UUID.
fn request_id(headers: &HeaderMap) -> HeaderValue {
    if let Some(id) = headers.get(&X_REQUEST_ID)
        && (1..=200).contains(&id.len())
        && id.as_bytes().iter().all(u8::is_ascii_graphic)
    {
        return id.clone();
    }
    let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
    let text = uuid::Uuid::new_v4().hyphenated().encode_lower(&mut text);
    HeaderValue::from_str(text).unwrap_or_else(|_| HeaderValue::from_static("-"))
}

/// The host the client asked for: the URI's authority (HTTP/2, absolute
/// form) or the `Host` header.
fn authority<'a>(uri: &'a Uri, headers: &'a HeaderMap) -> Option<&'a str> {
    match uri.authority() {
        Some(authority) => Some(authority.as_str()),
        None => headers.get(header::HOST).and_then(|h| h.to_str().ok()),
    }
}

/// The client's `Accept-Encoding`, its lines joined: what the route's
/// compression negotiates with once the answer is known.
fn accept_encoding(headers: &HeaderMap) -> Option<HeaderValue> {
    let mut lines = headers.get_all(header::ACCEPT_ENCODING).iter();
    let first = lines.next()?;
    let rest: Vec<&HeaderValue> = lines.collect();
    if rest.is_empty() {
        return Some(first.clone());
    }
    let mut joined = first.as_bytes().to_vec();
    for line in rest {
        joined.extend_from_slice(b", ");
        joined.extend_from_slice(line.as_bytes());
    }
    HeaderValue::from_bytes(&joined).ok()
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// A body read whole, and the trailers that followed it.
type Buffered = (Bytes, Option<HeaderMap>);

/// Buffers `body` (and its trailers) if it is at most `cap` bytes; otherwise
/// gives back what was read and the rest, so the body can still be streamed on.
async fn collect_or_keep(
    mut body: Body,
    cap: usize,
) -> Result<Result<Buffered, (Bytes, Body)>, String> {
    let mut buffer = bytes::BytesMut::new();
    let mut trailers: Option<HeaderMap> = None;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|err| err.to_string())?;
        match frame.into_data() {
            Ok(data) => {
                buffer.extend_from_slice(&data);
                if buffer.len() > cap {
                    return Ok(Err((buffer.freeze(), body)));
                }
            }
            Err(frame) => {
                if let Ok(more) = frame.into_trailers() {
                    trailers.get_or_insert_with(HeaderMap::new).extend(more);
                }
            }
        }
    }
    Ok(Ok((buffer.freeze(), trailers)))
}

/// The request head as plugins see it: the pseudo-fields (method, path,
/// route, parameters, ...) then the header fields.
fn wit_request(
    parts: &Parts,
    conn: &Connection,
    route: &Route,
    upstream: Option<&Arc<Upstream>>,
    params: &[(String, String)],
    request_id: &HeaderValue,
) -> WitRequest {
    let client = conn.client.to_string();
    let mut pseudo = vec![
        (":method", parts.method.as_str()),
        (":scheme", conn.scheme),
        (
            ":authority",
            authority(&parts.uri, &parts.headers).unwrap_or_default(),
        ),
        (":path", parts.uri.path()),
        (":client-addr", client.as_str()),
        (":route", route.name.as_str()),
        (":request-id", request_id.to_str().unwrap_or_default()),
    ];
    if let Some(query) = parts.uri.query().filter(|q| !q.is_empty()) {
        pseudo.push((":query", query));
    }
    if let Some(upstream) = upstream {
        pseudo.push((":upstream", upstream.name.as_str()));
    }
    WitRequest {
        head: encode_head(&pseudo, params, &parts.headers),
        body: None,
    }
}

/// The head the response phase sees: the request's as the request phase left
/// it, without its body, with the consumer the request phase identified.
fn response_head(mut wit: WitRequest, context: &Context) -> WitRequest {
    wit.body = None;
    if let Some(consumer) = context.get("consumer") {
        wit.head = edit_head(&wit.head, &[(":consumer", Some(consumer.as_str()))], None);
    }
    wit
}

fn wit_response(parts: &http::response::Parts) -> WitResponse {
    WitResponse {
        status: parts.status.as_u16(),
        headers: encode_headers(&parts.headers),
        body: None,
    }
}

/// Writes a plugin's edits back into the request head.
fn apply_request(parts: &mut Parts, wit: &WitRequest) -> Result<(), String> {
    let field = |name| head_field(&wit.head, name).unwrap_or_default();
    let (method, path, query) = (field(":method"), field(":path"), field(":query"));
    parts.method =
        Method::from_bytes(method.as_bytes()).map_err(|_| format!("invalid method `{method}`"))?;
    if !path.starts_with('/') {
        return Err(format!("invalid path `{path}`: must start with `/`"));
    }
    parts.headers = decode_headers(head_headers(&wit.head).to_vec())?;
    if path == parts.uri.path() && query == parts.uri.query().unwrap_or_default() {
        return Ok(());
    }
    let path_and_query = if query.is_empty() {
        path.to_string()
    } else {
        format!("{path}?{query}")
    };
    let mut uri = Uri::builder().path_and_query(path_and_query);
    if let Some(authority) = parts.uri.authority() {
        uri = uri.authority(authority.clone());
    }
    if let Some(scheme) = parts.uri.scheme() {
        uri = uri.scheme(scheme.clone());
    }
    parts.uri = uri
        .build()
        .map_err(|e| format!("invalid path or query: {e}"))?;
    Ok(())
}

/// Builds the client response from the pipeline's result. `stream` is the
/// upstream body when no plugin buffered it.
fn into_http_response(
    wit: WitResponse,
    stream: Option<Body>,
) -> Result<Response<Body>, RequestError> {
    let invalid = |reason: String| RequestError::Plugin {
        plugin: "response".to_string(),
        reason,
    };
    let status = StatusCode::from_u16(wit.status)
        .map_err(|_| invalid(format!("invalid status {}", wit.status)))?;
    let mut headers = decode_headers(wit.headers).map_err(invalid)?;
    strip_hop_by_hop(&mut headers);
    let body = match (wit.body, stream) {
        (Some(bytes), _) => {
            headers.remove(header::CONTENT_LENGTH);
            body::full(bytes)
        }
        (None, Some(stream)) => stream,
        (None, None) => body::empty(),
    };
    let mut response = Response::new(body);
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    Ok(response)
}
