//! The two phases a transform maps in, as its config and errors name them.

/// The two phases.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// `on_request`.
    Request,
    /// `on_response`.
    Response,
}

impl Phase {
    /// `request` or `response`, as in the config.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Request => "request",
            Phase::Response => "response",
        }
    }
}
