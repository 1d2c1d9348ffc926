//! Why an `http-client` request got no answer: one error type for the host
//! that fails the request and the plugin that reads the failure.

/// Why a request got no answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The host is not in the entry's `allowed_hosts`.
    NotAllowed(String),
    /// The URL or a header is unusable.
    InvalidRequest(String),
    /// No connection (refused, DNS, TLS).
    Connect(String),
    /// No complete answer in time.
    Timeout,
    /// The body is over the cap.
    TooLarge,
    /// The peer broke the protocol.
    Protocol(String),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::NotAllowed(host) => write!(f, "host {host} is not allowed"),
            Error::InvalidRequest(why) => write!(f, "invalid request: {why}"),
            Error::Connect(why) => write!(f, "cannot connect: {why}"),
            Error::Timeout => f.write_str("timed out"),
            Error::TooLarge => f.write_str("response too large"),
            Error::Protocol(why) => write!(f, "protocol error: {why}"),
        }
    }
}

impl std::error::Error for Error {}
