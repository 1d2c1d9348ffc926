//! The errors a request can end in, and the one place they become HTTP responses.

use crate::body::{self, Body};
use http::{HeaderValue, Response, StatusCode, header};

/// Where a failure came from, for logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The client sent something we refuse.
    Client,
    /// A plugin trapped, overran its deadline or its memory.
    Plugin,
    /// The upstream could not be reached or answered badly.
    Upstream,
    /// A bug or resource problem in the gateway.
    Internal,
}

/// Why a request did not get a normal answer.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// No route matches host and path.
    #[error("no route matches this request")]
    NoRoute,
    /// A route matches the path but not the method.
    #[error("method not allowed")]
    MethodNotAllowed {
        /// Value for the `Allow` header.
        allow: String,
    },
    /// The request body is over `server.max_request_body`.
    #[error("request body exceeds {limit} bytes")]
    BodyTooLarge {
        /// The limit in bytes.
        limit: u64,
    },
    /// The client stopped sending its request body for longer than
    /// `server.body_read_timeout`.
    #[error("the request body stopped coming (no bytes for {timeout:?})")]
    BodyTimeout {
        /// The timeout.
        timeout: std::time::Duration,
    },
    /// The request body has a content coding the gateway cannot decode for
    /// the plugins that read it.
    #[error("unsupported Content-Encoding `{0}`: the gateway decodes gzip, deflate, br and zstd")]
    UnsupportedEncoding(String),
    /// The request is malformed in a way hyper let through.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// `CONNECT`: the gateway opens no tunnels. The connection is closed
    /// after the answer, as the client may already be sending the tunnel's
    /// bytes.
    #[error("CONNECT is not supported: the gateway opens no tunnels")]
    Connect {
        /// Value for the `Allow` header.
        allow: &'static str,
    },
    /// The request's framing or `Host` is invalid: the connection cannot be
    /// trusted to carry another request, and is closed after the answer.
    #[error("bad request: {0}")]
    Malformed(String),
    /// The request uses something the gateway does not implement (a
    /// transfer coding other than chunked); the connection is closed after
    /// the answer, as its body cannot be delimited.
    #[error("not implemented: {0}")]
    NotImplemented(String),
    /// A plugin failed and its entry's policy is to fail the request.
    #[error("plugin `{plugin}` failed: {reason}")]
    Plugin {
        /// The plugin's name.
        plugin: String,
        /// Trap, deadline or memory limit.
        reason: String,
    },
    /// The route has no upstream and no plugin answered.
    #[error("route `{route}` has no upstream and no plugin answered")]
    NoAnswer {
        /// The route's name.
        route: String,
    },
    /// Connecting to or talking with the upstream failed.
    #[error("upstream `{upstream}` unavailable: {reason}")]
    UpstreamUnavailable {
        /// The upstream's name.
        upstream: String,
        /// The underlying error.
        reason: String,
    },
    /// The upstream did not answer within its timeout.
    #[error("upstream `{upstream}` timed out")]
    UpstreamTimeout {
        /// The upstream's name.
        upstream: String,
    },
    /// The upstream's body could not be read for a plugin that reads bodies.
    #[error("upstream `{upstream}` response body unusable: {reason}")]
    UpstreamBody {
        /// The upstream's name.
        upstream: String,
        /// Too large, or a read error.
        reason: String,
    },
    /// The upstream has its `max_requests` in flight already.
    #[error("upstream `{upstream}` has its max_requests in flight")]
    UpstreamBusy {
        /// The upstream's name.
        upstream: String,
    },
    /// A process-wide limit is reached (open WebSocket connections).
    #[error("too many {what} open")]
    Overloaded {
        /// What there are too many of.
        what: &'static str,
    },
}

impl RequestError {
    /// The HTTP status this error is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::NoRoute => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed { .. } | Self::Connect { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Self::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::BadRequest(_) | Self::Malformed(_) => StatusCode::BAD_REQUEST,
            Self::NotImplemented(_) => StatusCode::NOT_IMPLEMENTED,
            Self::UnsupportedEncoding(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::BodyTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            Self::Plugin { .. } | Self::NoAnswer { .. } => StatusCode::INTERNAL_SERVER_ERROR,
            Self::UpstreamUnavailable { .. } | Self::UpstreamBody { .. } => StatusCode::BAD_GATEWAY,
            Self::UpstreamTimeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            Self::Overloaded { .. } | Self::UpstreamBusy { .. } => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// Who is to blame.
    pub fn origin(&self) -> Origin {
        match self {
            Self::NoRoute
            | Self::MethodNotAllowed { .. }
            | Self::Connect { .. }
            | Self::BodyTooLarge { .. }
            | Self::BodyTimeout { .. }
            | Self::BadRequest(_)
            | Self::Malformed(_)
            | Self::UnsupportedEncoding(_)
            | Self::NotImplemented(_) => Origin::Client,
            Self::Plugin { .. } => Origin::Plugin,
            Self::NoAnswer { .. } | Self::Overloaded { .. } => Origin::Internal,
            Self::UpstreamUnavailable { .. }
            | Self::UpstreamTimeout { .. }
            | Self::UpstreamBusy { .. }
            | Self::UpstreamBody { .. } => Origin::Upstream,
        }
    }

    /// What the client is told. Internal detail (addresses, trap messages) stays
    /// in the log; the client gets the category and the request id to quote.
    fn public_message(&self) -> String {
        match self {
            // The client's own errors (see `origin`) and an overload say
            // what they are: their messages hold no internal detail.
            _ if self.origin() == Origin::Client => self.to_string(),
            Self::Overloaded { .. } => self.to_string(),
            Self::UpstreamUnavailable { .. } | Self::UpstreamBody { .. } => {
                "bad gateway".to_string()
            }
            Self::UpstreamTimeout { .. } => "upstream timed out".to_string(),
            Self::UpstreamBusy { .. } => "upstream busy".to_string(),
            // A plugin's failure, no answer, and whatever else is ours.
            _ => "internal error".to_string(),
        }
    }

    /// The response for this error: the only place errors become HTTP.
    pub fn into_response(self, request_id: &str) -> Response<Body> {
        let payload = json_body(self.status(), &self.public_message(), request_id);
        let mut response = Response::new(body::full(payload));
        *response.status_mut() = self.status();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if matches!(
            self,
            Self::Malformed(_) | Self::NotImplemented(_) | Self::Connect { .. }
        ) {
            headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        let allow = match &self {
            Self::MethodNotAllowed { allow } => HeaderValue::from_str(allow).ok(),
            Self::Connect { allow } => Some(HeaderValue::from_static(allow)),
            _ => None,
        };
        if let Some(allow) = allow {
            headers.insert(header::ALLOW, allow);
        }
        response
    }
}

/// The JSON body of every answer the gateway gives of its own accord: what
/// went wrong, the status, and the request id to quote.
pub fn json_body(status: StatusCode, message: &str, request_id: &str) -> String {
    serde_json::json!({
        "error": message,
        "status": status.as_u16(),
        "request_id": request_id,
    })
    .to_string()
}
