//! The trait a plugin implements, and what its hooks return.

use crate::{Context, Request, Response};
use serde::de::DeserializeOwned;

/// The phases a plugin takes part in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Phases(u8);

impl Phases {
    /// Neither phase.
    pub const NONE: Phases = Phases(0);
    /// The request phase (`on_request`).
    pub const REQUEST: Phases = Phases(1);
    /// The response phase (`on_response`).
    pub const RESPONSE: Phases = Phases(2);
    /// Both phases.
    pub const ALL: Phases = Phases(3);

    /// Whether every phase in `other` is in `self`.
    pub const fn contains(self, other: Phases) -> bool {
        self.0 & other.0 == other.0
    }

    /// The phases in both.
    pub const fn intersect(self, other: Phases) -> Phases {
        Phases(self.0 & other.0)
    }

    /// The phases in either.
    pub const fn union(self, other: Phases) -> Phases {
        Phases(self.0 | other.0)
    }

    /// Whether no phase is set.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl std::ops::BitOr for Phases {
    type Output = Phases;
    fn bitor(self, rhs: Phases) -> Phases {
        self.union(rhs)
    }
}

impl std::ops::BitAnd for Phases {
    type Output = Phases;
    fn bitand(self, rhs: Phases) -> Phases {
        self.intersect(rhs)
    }
}

/// What the request phase decided.
#[derive(Debug)]
pub enum Action {
    /// Go on: to the next plugin, then the upstream. Edits made to the request
    /// are kept.
    Continue,
    /// Answer the client with this response; the upstream is not called.
    Respond(Response),
}

/// A pipeline entry's `config` table, as JSON.
#[derive(Debug, Clone)]
pub struct Config {
    json: String,
}

impl Config {
    /// Config from JSON text; an empty string means `{}`.
    pub fn from_json(json: &str) -> Self {
        let json = if json.trim().is_empty() { "{}" } else { json };
        Self {
            json: json.to_string(),
        }
    }

    /// Config from a JSON value (handy in tests: `Config::from_value(json!({...}))`).
    pub fn from_value(value: serde_json::Value) -> Self {
        Self {
            json: value.to_string(),
        }
    }

    /// The raw JSON text.
    pub fn raw(&self) -> &str {
        &self.json
    }

    /// Deserialises the config into `T`. The error names the offending key and
    /// is shown to the operator as is, so it should read well.
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, String> {
        serde_json::from_str(&self.json).map_err(|e| {
            let text = e.to_string();
            // serde_json appends " at line 1 column N", meaningless to someone
            // who wrote TOML; the gateway adds the real location.
            match text.rfind(" at line ") {
                Some(cut) => format!("invalid config: {}", &text[..cut]),
                None => format!("invalid config: {text}"),
            }
        })
    }
}

/// A gateway plugin. Implement this, then call [`export!`](crate::export) once.
///
/// Every hook has a default that does nothing, so a plugin implements only what
/// it needs. Hooks take `&self`: the value built by [`init`](Plugin::init) lives
/// as long as its instance and serves many requests, one at a time.
pub trait Plugin: Sized + 'static {
    /// The plugin's name, shown in logs.
    const NAME: &'static str;
    /// The phases the plugin implements. The host never calls a hook for a phase
    /// not listed here.
    const PHASES: Phases = Phases::ALL;
    /// Whether `on_request` needs the request body (buffered, up to the entry's
    /// `max_body`). Without it, [`Request::body`] is `None`.
    const READS_REQUEST_BODY: bool = false;
    /// Whether `on_response` needs the response body.
    const READS_RESPONSE_BODY: bool = false;
    /// Whether a response body over the entry's `max_body` should pass by
    /// (`on_response` sees [`Response::body`] as `None` and the body streams
    /// to the client) rather than fail the request with 502.
    const PASSES_LARGE_BODIES: bool = false;

    /// Builds the plugin from its pipeline entry's config. An error refuses the
    /// gateway config, with this message.
    fn init(config: Config) -> Result<Self, String>;

    /// The phases this configured instance needs; a subset of `PHASES`.
    fn phases(&self) -> Phases {
        Self::PHASES
    }

    /// Whether this configured instance reads request bodies (default:
    /// [`Plugin::READS_REQUEST_BODY`]). Return `false` when the config needs no
    /// body, so the route's request bodies stream to the upstream unbuffered.
    fn reads_request_body(&self) -> bool {
        Self::READS_REQUEST_BODY
    }

    /// Whether this configured instance reads response bodies (default:
    /// [`Plugin::READS_RESPONSE_BODY`]).
    fn reads_response_body(&self) -> bool {
        Self::READS_RESPONSE_BODY
    }

    /// The request phase: edit the request, or answer it.
    fn on_request(&self, req: &mut Request, ctx: &mut Context) -> Action {
        let _ = (req, ctx);
        Action::Continue
    }

    /// The response phase: edit the response.
    fn on_response(&self, resp: &mut Response, ctx: &mut Context) {
        let _ = (resp, ctx);
    }
}
