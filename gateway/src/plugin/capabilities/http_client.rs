//! `gateway:plugin/http-client`: outbound HTTP(S) from a plugin to the hosts
//! its entry allows, and `fetch-shared`, a single-flight cached GET.
//!
//! The client ([`Outbound`]) and its shared documents live as long as the
//! process (not one config), so a reload keeps connections and documents.
//! Waits on the network are marked on the instance's `IoWaits`: they do not
//! count against its CPU deadline; the request timeout bounds them instead.
//!
//! The host functions run on an [`HttpClientView`] of the instance's state.

pub use super::allowed_hosts::HostPattern;
use crate::plugin::bindings::gateway::plugin::http_client;
use crate::plugin::watchdog::IoWaits;
use crate::plugin::wire::{decode_headers, encode_headers};
use bytes::Bytes;
use http::Uri;
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use wasmtime::component::HasData;

/// Longest a plugin may wait for one outbound answer.
pub const MAX_TIMEOUT: Duration = plugin_shared::limits::HTTP_CLIENT_MAX_TIMEOUT;
/// Connect timeout of outbound requests.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Longest a shared fetch may take: a request waits for it.
const SHARED_TIMEOUT: Duration = Duration::from_secs(5);
/// Most documents the shared-fetch cache holds.
const MAX_SHARED: usize = 1024;
/// Most documents one plugin may share, so one cannot crowd out the others.
const MAX_SHARED_PER_PLUGIN: usize = 64;

/// Why an outbound request got no response: the error plugins get, so host
/// and plugin name failures alike.
pub use plugin_shared::http_client::Error as OutboundError;

/// A complete outbound answer.
#[derive(Debug, Clone)]
pub struct Answer {
    /// Status code.
    pub status: u16,
    /// Headers.
    pub headers: http::HeaderMap,
    /// The whole body.
    pub body: Bytes,
}

/// Checks `url` against `allowed` and returns it parsed.
pub fn check_url(url: &str, allowed: &[HostPattern]) -> Result<Uri, OutboundError> {
    let uri: Uri = url
        .parse()
        .map_err(|e| OutboundError::InvalidRequest(format!("bad URL: {e}")))?;
    let scheme = uri.scheme_str().unwrap_or_default();
    let default_port = match scheme {
        "http" => 80,
        "https" => 443,
        _ => {
            return Err(OutboundError::InvalidRequest(
                "only http:// and https:// URLs".into(),
            ));
        }
    };
    let host = uri
        .host()
        .ok_or_else(|| OutboundError::InvalidRequest("the URL has no host".into()))?
        .to_ascii_lowercase();
    let port = uri.port_u16().unwrap_or(default_port);
    if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
        return Err(OutboundError::InvalidRequest(
            "credentials in URLs are not allowed".into(),
        ));
    }
    if !allowed.iter().any(|p| p.matches(scheme, &host, port)) {
        return Err(OutboundError::NotAllowed(format!("{host}:{port}")));
    }
    Ok(uri)
}

/// A cached shared document.
struct Shared {
    body: Bytes,
    fetched: Instant,
}

type SharedSlot = Arc<tokio::sync::Mutex<Option<Shared>>>;

/// The outbound client and the documents fetched for sharing.
pub struct Outbound {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    shared: Mutex<HashMap<(Arc<str>, String), SharedSlot>>,
}

impl Outbound {
    /// The client: webpki roots, HTTP/1.1, no redirects.
    pub fn new() -> Self {
        let mut http = HttpConnector::new();
        http.set_connect_timeout(Some(CONNECT_TIMEOUT));
        http.set_nodelay(true);
        http.enforce_http(false);
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_webpki_roots()
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        Outbound {
            client,
            shared: Mutex::new(HashMap::new()),
        }
    }

    /// Sends one request to an allowed host and reads the whole answer.
    pub async fn send(
        &self,
        request: http::Request<Full<Bytes>>,
        timeout: Duration,
        max_body: usize,
    ) -> Result<Answer, OutboundError> {
        let exchange = async {
            let response = self.client.request(request).await.map_err(|e| {
                if e.is_connect() {
                    OutboundError::Connect(format!("{e:#}"))
                } else {
                    OutboundError::Protocol(format!("{e:#}"))
                }
            })?;
            let (parts, body) = response.into_parts();
            let body = Limited::new(body, max_body)
                .collect()
                .await
                .map_err(|e| {
                    if e.is::<http_body_util::LengthLimitError>() {
                        OutboundError::TooLarge
                    } else {
                        OutboundError::Protocol(format!("{e:#}"))
                    }
                })?
                .to_bytes();
            Ok(Answer {
                status: parts.status.as_u16(),
                headers: parts.headers,
                body,
            })
        };
        tokio::time::timeout(timeout.min(MAX_TIMEOUT), exchange)
            .await
            .unwrap_or(Err(OutboundError::Timeout))
    }

    /// A GET of `uri` shared by every caller in `namespace`: the cached copy when
    /// it is at most `max_age` old, else one fetch for all concurrent callers.
    /// Returns the body and its age.
    pub async fn fetch_shared(
        &self,
        namespace: &Arc<str>,
        uri: Uri,
        max_age: Duration,
        max_body: usize,
    ) -> Result<(Bytes, Duration), OutboundError> {
        let slot = {
            let mut shared = self.shared.lock().unwrap_or_else(|p| p.into_inner());
            let key = (namespace.clone(), uri.to_string());
            if !shared.contains_key(&key) {
                let mine = shared.keys().filter(|(ns, _)| ns == namespace).count();
                if mine >= MAX_SHARED_PER_PLUGIN || shared.len() >= MAX_SHARED {
                    return Err(OutboundError::InvalidRequest(format!(
                        "too many shared documents (at most {MAX_SHARED_PER_PLUGIN} per plugin)"
                    )));
                }
            }
            shared.entry(key).or_default().clone()
        };
        // Callers for one document queue here; the first fetches, the rest
        // find its copy fresh.
        let mut copy = slot.lock().await;
        if let Some(cached) = copy.as_ref()
            && cached.fetched.elapsed() <= max_age
        {
            return Ok((cached.body.clone(), cached.fetched.elapsed()));
        }
        let request = http::Request::get(uri)
            .header(http::header::USER_AGENT, "gateway")
            .body(Full::default())
            .map_err(|e| OutboundError::InvalidRequest(e.to_string()))?;
        let answer = self.send(request, SHARED_TIMEOUT, max_body).await?;
        if !(200..300).contains(&answer.status) {
            return Err(OutboundError::Protocol(format!("status {}", answer.status)));
        }
        *copy = Some(Shared {
            body: answer.body.clone(),
            fetched: Instant::now(),
        });
        Ok((answer.body, Duration::ZERO))
    }
}

/// The contract's form of an outbound failure.
fn to_wit(error: OutboundError) -> http_client::Error {
    match error {
        OutboundError::NotAllowed(host) => http_client::Error::NotAllowed(host),
        OutboundError::InvalidRequest(why) => http_client::Error::InvalidRequest(why),
        OutboundError::Connect(why) => http_client::Error::Connect(why),
        OutboundError::Timeout => http_client::Error::Timeout,
        OutboundError::TooLarge => http_client::Error::TooLarge,
        OutboundError::Protocol(why) => http_client::Error::Protocol(why),
    }
}

/// What the `http-client` host functions serve from, borrowed from an
/// instance's state for one call.
pub struct HttpClientView<'a> {
    /// The plugin's name, for logs.
    pub plugin: &'a str,
    /// The process's client and shared documents.
    pub outbound: &'a Outbound,
    /// Where the entry may connect.
    pub allowed_hosts: &'a [HostPattern],
    /// Whose shared documents these are: the entry's plugin reference.
    pub namespace: &'a Arc<str>,
    /// Largest outbound response body.
    pub max_body: usize,
    /// Where waits on the network are marked.
    pub io: &'a IoWaits,
}

/// The `http-client` interface's data in the linker: an [`HttpClientView`].
pub struct HasHttpClient;

impl HasData for HasHttpClient {
    type Data<'a> = HttpClientView<'a>;
}

impl HttpClientView<'_> {
    fn log_outbound(&self, url: &str, result: &Result<u16, OutboundError>, started: Instant) {
        let plugin = self.plugin;
        let elapsed_ms = started.elapsed().as_millis();
        match result {
            Ok(status) => tracing::debug!(plugin, url, status, elapsed_ms, "outbound request"),
            Err(error) => {
                tracing::info!(plugin, url, ?error, elapsed_ms, "outbound request failed")
            }
        }
    }
}

impl http_client::Host for HttpClientView<'_> {
    async fn send(
        &mut self,
        mut request: http_client::OutgoingRequest,
    ) -> Result<http_client::IncomingResponse, http_client::Error> {
        let started = Instant::now();
        let uri = check_url(&request.url, self.allowed_hosts).map_err(to_wit)?;
        let headers = decode_headers(std::mem::take(&mut request.headers))
            .map_err(|e| http_client::Error::InvalidRequest(format!("bad headers: {e}")))?;
        let method = http::Method::from_bytes(request.method.as_bytes())
            .map_err(|_| http_client::Error::InvalidRequest("bad method".into()))?;
        let mut outgoing = http::Request::builder()
            .method(method)
            .uri(uri)
            .body(Full::new(Bytes::from(request.body.unwrap_or_default())))
            .map_err(|e| http_client::Error::InvalidRequest(e.to_string()))?;
        *outgoing.headers_mut() = headers;
        outgoing.headers_mut().remove(http::header::HOST);
        let timeout = request
            .timeout_ms
            .map_or(MAX_TIMEOUT, |ms| Duration::from_millis(u64::from(ms)));
        let sent = self.outbound.send(outgoing, timeout, self.max_body);
        let result = self.io.around(sent).await;
        self.log_outbound(
            &request.url,
            &result.as_ref().map(|a| a.status).map_err(Clone::clone),
            started,
        );
        let answer = result.map_err(to_wit)?;
        Ok(http_client::IncomingResponse {
            status: answer.status,
            headers: encode_headers(&answer.headers),
            body: answer.body.to_vec(),
        })
    }

    async fn fetch_shared(
        &mut self,
        url: String,
        max_age_ms: u64,
    ) -> Result<(Vec<u8>, u64), http_client::Error> {
        let started = Instant::now();
        let uri = check_url(&url, self.allowed_hosts).map_err(to_wit)?;
        let fetched = self.outbound.fetch_shared(
            self.namespace,
            uri,
            Duration::from_millis(max_age_ms),
            self.max_body,
        );
        let result = self.io.around(fetched).await;
        self.log_outbound(
            &url,
            &result.as_ref().map(|_| 200).map_err(Clone::clone),
            started,
        );
        let (body, age) = result.map_err(to_wit)?;
        Ok((
            body.to_vec(),
            u64::try_from(age.as_millis()).unwrap_or(u64::MAX),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed(patterns: &[&str]) -> Vec<HostPattern> {
        patterns
            .iter()
            .map(|p| HostPattern::parse(p).unwrap_or_else(|e| panic!("{e}")))
            .collect()
    }

    #[test]
    fn allow_list_matches_host_port_scheme_and_wildcards() {
        let list = allowed(&["https://id.example.com", "*.corp.test:8443", "127.0.0.1"]);
        assert!(check_url("https://id.example.com/jwks", &list).is_ok());
        assert!(check_url("https://ID.example.com:443/x", &list).is_ok());
        assert!(check_url("http://id.example.com/jwks", &list).is_err());
        assert!(check_url("https://a.corp.test:8443/", &list).is_ok());
        assert!(check_url("https://corp.test:8443/", &list).is_err());
        assert!(check_url("https://evilcorp.test:8443/", &list).is_err());
        assert!(check_url("https://a.corp.test/", &list).is_err());
        assert!(check_url("http://127.0.0.1:9999/x", &list).is_ok());
        assert_eq!(
            check_url("https://other.example.com/", &list).err(),
            Some(OutboundError::NotAllowed("other.example.com:443".into()))
        );
        assert!(matches!(
            check_url("https://user@id.example.com/", &list),
            Err(OutboundError::InvalidRequest(_))
        ));
        assert!(matches!(
            check_url("file:///etc/passwd", &list),
            Err(OutboundError::InvalidRequest(_))
        ));
    }

    #[test]
    fn bad_patterns_are_refused() {
        for bad in ["", "ftp://x", "a*b.com", "host:port", "*.", "exa mple.com"] {
            assert!(HostPattern::parse(bad).is_err(), "{bad}");
        }
    }
}
