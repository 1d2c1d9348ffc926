//! Why a mapping failed, who is to blame, and the one function that turns a
//! failure into the answer the client gets.

use crate::phase::Phase;
use plugin_sdk::{Response, log};

/// Who supplied what a mapping failed on. It decides the status: a client's
/// bad input is its own problem (400), an upstream's is a bad gateway (502),
/// and everything else is the operator's template or pipeline (500).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The request: its body, query, headers, or the identity it presented.
    Client,
    /// The upstream's response: its body, headers or status.
    Upstream,
    /// The entry's templates, or what the rest of the pipeline provides.
    Config,
}

/// Where a body came from, for messages.
fn whose(origin: Origin) -> &'static str {
    match origin {
        Origin::Upstream => "upstream response",
        _ => "request",
    }
}

/// A mapping that could not be applied to this request or response.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// A template reads `body`, and the body is not JSON.
    #[error("the {} body is not valid JSON: {reason}", whose(*.origin))]
    BodyNotJson {
        /// The client or the upstream.
        origin: Origin,
        /// serde_json's account.
        reason: String,
    },
    /// A template reads `raw_body`, and the body is not UTF-8.
    #[error("the {} body is not UTF-8 text", whose(*.origin))]
    BodyNotText {
        /// The client or the upstream.
        origin: Origin,
    },
    /// The upstream compressed a body that a template reads.
    #[error(
        "the upstream response body is {encoding}-encoded; the mapping reads only unencoded bodies"
    )]
    BodyEncoded {
        /// The `Content-Encoding`.
        encoding: String,
    },
    /// A template printed (or passed to `tojson`) a value that is not there.
    #[error("{template} line {line}: {detail}; {hint}")]
    Missing {
        /// Whose value was missing.
        origin: Origin,
        /// The template's name (`request.body`, `response.headers.x-id`).
        template: String,
        /// The line in the template.
        line: usize,
        /// minijinja's account: "`body.user.name` is undefined".
        detail: String,
        /// What the operator might do about it.
        hint: &'static str,
    },
    /// The template did more work than the fuel allows.
    #[error("{template}: ran out of fuel (the template did more work than `fuel` allows)")]
    OutOfFuel {
        /// The template's name.
        template: String,
    },
    /// Any other template error: a type error, an unknown filter, ...
    #[error("{template} line {line}: {detail}")]
    Render {
        /// The template's name.
        template: String,
        /// The line in the template.
        line: usize,
        /// minijinja's account.
        detail: String,
    },
    /// The output is over `max_output`.
    #[error("{template}: output over the {limit}-byte limit")]
    TooLarge {
        /// The template's name.
        template: String,
        /// `max_output`, or the header value cap.
        limit: usize,
    },
    /// A JSON body template rendered something that does not parse.
    #[error(
        "{template}: output is not valid JSON: {reason} (values print as JSON: write `{{{{ x }}}}`, not `\"{{{{ x }}}}\"`, and punctuation outside `{{{{ }}}}`)"
    )]
    NotJson {
        /// The template's name.
        template: String,
        /// serde_json's account, with line and column in the output.
        reason: String,
    },
    /// A header template rendered a control character (a line break would
    /// split the message).
    #[error("{template}: the header value contains a control character")]
    BadHeaderValue {
        /// Whose data it most likely was: the phase's input.
        origin: Origin,
        /// The template's name.
        template: String,
    },
    /// The status template rendered something that is not a status code.
    #[error("response.status: `{value}` is not a status code from 100 to 599")]
    BadStatus {
        /// What it rendered (cut to 40 characters).
        value: String,
    },
}

impl Failure {
    /// Who is to blame.
    pub fn origin(&self) -> Origin {
        match self {
            Failure::BodyNotJson { origin, .. }
            | Failure::BodyNotText { origin }
            | Failure::Missing { origin, .. }
            | Failure::BadHeaderValue { origin, .. } => *origin,
            Failure::BodyEncoded { .. } => Origin::Upstream,
            Failure::OutOfFuel { .. }
            | Failure::Render { .. }
            | Failure::TooLarge { .. }
            | Failure::NotJson { .. }
            | Failure::BadStatus { .. } => Origin::Config,
        }
    }

    /// The status the client gets.
    pub fn status(&self) -> u16 {
        match self.origin() {
            Origin::Client => 400,
            Origin::Upstream => 502,
            Origin::Config => 500,
        }
    }

    /// What the client is told. A client learns what was wrong with its own
    /// request; about the upstream or the templates it learns nothing.
    fn public_message(&self) -> String {
        match self.origin() {
            Origin::Client => match self {
                Failure::Missing { detail, .. } => format!("missing value: {detail}"),
                other => other.to_string(),
            },
            Origin::Upstream => "the upstream response could not be mapped".to_string(),
            Origin::Config => "the gateway could not apply its mapping template".to_string(),
        }
    }
}

/// The answer for a failed mapping, logged once here: a client's mistake at
/// debug level, an upstream's as a warning, the operator's as an error.
pub fn answer(failure: &Failure, phase: Phase, request_id: &str) -> Response {
    let line = format!("transform: {} phase: {failure}", phase.name());
    match failure.origin() {
        Origin::Client => log::debug(&line),
        Origin::Upstream => log::warn(&line),
        Origin::Config => log::error(&line),
    }
    let status = failure.status();
    Response::json(
        status,
        &serde_json::json!({
            "error": failure.public_message(),
            "status": status,
            "request_id": request_id,
        }),
    )
}
