//! Outbound HTTP(S) from a plugin: needs the `http-client` grant, and reaches
//! only the hosts in the entry's `allowed_hosts`.
//!
//! Calls block the plugin (not the gateway) until the answer is complete; the
//! plugin's CPU deadline does not run while it waits.
//!
//! Natively there is no network: tests declare answers with [`testing`], and
//! every call is recorded so a test can count them.

use crate::Headers;
use std::time::Duration;

/// A request to send.
#[derive(Debug, Clone)]
pub struct Request {
    /// `GET`, `POST`, ...
    pub method: String,
    /// An `http://` or `https://` URL.
    pub url: String,
    /// Request headers.
    pub headers: Headers,
    /// The body, if any.
    pub body: Option<Vec<u8>>,
    /// How long to wait for the whole answer (the host caps it at 10 s).
    pub timeout: Option<Duration>,
}

impl Request {
    /// A `GET` of `url` with no headers.
    pub fn get(url: &str) -> Self {
        Request {
            method: "GET".into(),
            url: url.into(),
            headers: Headers::new(),
            body: None,
            timeout: None,
        }
    }

    /// Adds a header.
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers.append(name, value);
        self
    }
}

/// Whether `url` is fit for a plugin to call with secrets or for keys: an
/// `https://` URL, or `http://` to this machine (a local identity provider,
/// tests), with a host and no credentials in it (URLs end up in logs). The
/// error starts with the URL, quoted, for the caller to prefix with its key.
pub fn check_url(url: &str) -> Result<(), String> {
    let lower = url.to_ascii_lowercase();
    const LOOPBACK: &str = "(http:// is allowed to localhost, 127.0.0.1 and [::1] only)";
    let (secure, rest) = match (
        lower.strip_prefix("https://"),
        lower.strip_prefix("http://"),
    ) {
        (Some(rest), _) => (true, rest),
        (None, Some(rest)) => (false, rest),
        (None, None) => return Err(format!("{url:?} is not an https:// URL {LOOPBACK}")),
    };
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("{url:?} holds whitespace or control characters"));
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.contains('@') {
        return Err(format!(
            "{url:?} carries credentials; the URL is logged, so it must not"
        ));
    }
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().map(|ip| format!("[{ip}]")),
        None => authority.split(':').next().map(str::to_string),
    }
    .unwrap_or_default();
    if host.is_empty() || host == "[]" {
        return Err(format!("{url:?} has no host"));
    }
    let loopback = host == "localhost"
        || host == "[::1]"
        || host
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|ip| ip.is_loopback());
    if !secure && !loopback {
        return Err(format!(
            "{url:?}: plain http:// can be read and changed on the way; use https:// {LOOPBACK}"
        ));
    }
    Ok(())
}

/// A complete answer.
#[derive(Debug, Clone)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// Response headers.
    pub headers: Headers,
    /// The whole body.
    pub body: Vec<u8>,
}

pub use plugin_shared::http_client::Error;

/// Sends `request` and returns the whole answer.
pub fn send(request: Request) -> Result<Response, Error> {
    #[cfg(target_arch = "wasm32")]
    {
        use crate::bindings::gateway::plugin::http_client as wit;
        let outgoing = wit::OutgoingRequest {
            method: request.method,
            url: request.url,
            headers: request.headers.into_wire(),
            body: request.body,
            timeout_ms: request.timeout.map(plugin_shared::limits::millis_u32),
        };
        wit::send(&outgoing)
            .map(|r| Response {
                status: r.status,
                headers: Headers::from_wire(r.headers),
                body: r.body,
            })
            .map_err(from_wit)
    }
    #[cfg(not(target_arch = "wasm32"))]
    testing::answer(&request.method, &request.url).map(|(status, body)| Response {
        status,
        headers: Headers::new(),
        body,
    })
}

/// A `GET` of `url` shared by every instance of this plugin: answered from the
/// host's copy when it is at most `max_age` old, otherwise fetched once however
/// many instances ask at once. Only 2xx answers are kept; a non-2xx answer is
/// an [`Error::Protocol`]. Returns the body and the copy's age.
///
/// Natively, every call is answered from [`testing`] with age zero.
pub fn fetch_shared(url: &str, max_age: Duration) -> Result<(Vec<u8>, Duration), Error> {
    #[cfg(target_arch = "wasm32")]
    {
        let max_age_ms = plugin_shared::limits::millis(max_age);
        crate::bindings::gateway::plugin::http_client::fetch_shared(url, max_age_ms)
            .map(|(body, age)| (body, Duration::from_millis(age)))
            .map_err(from_wit)
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        let _ = max_age;
        match testing::answer("GET", url)? {
            (200..=299, body) => Ok((body, Duration::ZERO)),
            (status, _) => Err(Error::Protocol(format!("status {status}"))),
        }
    }
}

#[cfg(target_arch = "wasm32")]
fn from_wit(error: crate::bindings::gateway::plugin::http_client::Error) -> Error {
    use crate::bindings::gateway::plugin::http_client::Error as E;
    match error {
        E::NotAllowed(host) => Error::NotAllowed(host),
        E::InvalidRequest(why) => Error::InvalidRequest(why),
        E::Connect(why) => Error::Connect(why),
        E::Timeout => Error::Timeout,
        E::TooLarge => Error::TooLarge,
        E::Protocol(why) => Error::Protocol(why),
    }
}

/// Canned answers for native tests (this thread only), and a record of the
/// calls made.
#[cfg(not(target_arch = "wasm32"))]
pub mod testing {
    use super::Error;
    use std::cell::RefCell;
    use std::collections::HashMap;

    type Answer = Result<(u16, Vec<u8>), Error>;

    thread_local! {
        static ANSWERS: RefCell<HashMap<String, Answer>> = RefCell::new(HashMap::new());
        static CALLS: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
    }

    /// Answers requests for `url` with `status` and `body` from now on.
    pub fn respond(url: &str, status: u16, body: impl Into<Vec<u8>>) {
        ANSWERS.with_borrow_mut(|a| a.insert(url.to_string(), Ok((status, body.into()))));
    }

    /// Fails requests for `url` with `error` from now on.
    pub fn fail(url: &str, error: Error) {
        ANSWERS.with_borrow_mut(|a| a.insert(url.to_string(), Err(error)));
    }

    /// `METHOD url` of every call so far, in order.
    pub fn calls() -> Vec<String> {
        CALLS.with_borrow(Clone::clone)
    }

    /// Forgets answers and calls.
    pub fn reset() {
        ANSWERS.with_borrow_mut(HashMap::clear);
        CALLS.with_borrow_mut(Vec::clear);
    }

    pub(super) fn answer(method: &str, url: &str) -> Answer {
        CALLS.with_borrow_mut(|c| c.push(format!("{method} {url}")));
        ANSWERS
            .with_borrow(|a| a.get(url).cloned())
            .unwrap_or_else(|| {
                Err(Error::Connect(format!(
                    "no answer declared for {url} (http_client::testing::respond)"
                )))
            })
    }
}
