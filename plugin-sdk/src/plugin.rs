//! The trait a plugin implements, and what its hooks return.

use crate::{Context, Request, Response};
use serde::de::DeserializeOwned;

/// What a configured plugin takes part in and reads: its one declaration,
/// returned by [`Plugin::needs`]. The host calls only the hooks named here
/// and buffers only the bodies named here.
///
/// ```
/// use plugin_sdk::Needs;
///
/// let needs = Needs::REQUEST | Needs::REQUEST_BODY;
/// assert!(needs.contains(Needs::REQUEST));
/// assert!(!needs.contains(Needs::RESPONSE));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Needs(u8);

impl Needs {
    /// Nothing: the plugin is never called.
    pub const NONE: Needs = Needs(0);
    /// The request hook ([`Plugin::on_request`]), in pipeline order.
    pub const REQUEST: Needs = Needs(1);
    /// The response hook ([`Plugin::on_response`]), in reverse order.
    pub const RESPONSE: Needs = Needs(2);
    /// The request body, buffered up to the entry's `max_body`, in
    /// [`Request::body`](crate::Request::body). Without it the route's
    /// request bodies stream to the upstream unbuffered.
    pub const REQUEST_BODY: Needs = Needs(4);
    /// The upstream's response body, buffered, in
    /// [`Response::body`](crate::Response::body).
    pub const RESPONSE_BODY: Needs = Needs(8);
    /// With `RESPONSE_BODY`: a response body over the entry's `max_body`
    /// passes by (the hook sees `body()` as `None` and the body streams to
    /// the client) instead of failing the request with 502. For plugins that
    /// only sometimes need the body, such as a cache.
    pub const LARGE_BODIES_PASS: Needs = Needs(16);

    /// Whether everything in `other` is in `self`.
    pub const fn contains(self, other: Needs) -> bool {
        self.0 & other.0 == other.0
    }

    /// Both together.
    pub const fn union(self, other: Needs) -> Needs {
        Needs(self.0 | other.0)
    }

    /// `self` without `other`.
    pub const fn without(self, other: Needs) -> Needs {
        Needs(self.0 & !other.0)
    }

    /// Whether nothing is set.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The bits, in the order of the contract's `needs` flags.
    pub(crate) const fn bits(self) -> u8 {
        self.0
    }
}

impl std::ops::BitOr for Needs {
    type Output = Needs;
    fn bitor(self, rhs: Needs) -> Needs {
        self.union(rhs)
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
/// Every hook has a default that does nothing; [`Plugin::needs`] says which
/// ones the host calls, so a plugin declares exactly the hooks it implements
/// (and what the configured instance reads). Hooks take `&self`: the value
/// built by [`init`](Plugin::init) lives as long as its instance and serves
/// many requests, one at a time.
pub trait Plugin: Sized + 'static {
    /// The plugin's name, shown in logs.
    const NAME: &'static str;

    /// Builds the plugin from its pipeline entry's config. An error refuses the
    /// gateway config, with this message.
    fn init(config: Config) -> Result<Self, String>;

    /// What this configured instance takes part in and reads: the hooks it
    /// implements ([`Needs::REQUEST`], [`Needs::RESPONSE`]) and the bodies
    /// it reads. Depend on the config where that helps: a header
    /// transformer with no response rules leaves out `RESPONSE`, and its
    /// route pays for no response call.
    fn needs(&self) -> Needs;

    /// The request phase: edit the request, or answer it.
    fn on_request(&self, req: &mut Request, ctx: &mut Context) -> Action {
        let _ = (req, ctx);
        Action::Continue
    }

    /// The response phase: edit the response. `req` is the head of the
    /// request it answers, as the request phase left it, with
    /// [`Request::consumer`] set; it has no body.
    fn on_response(&self, req: &Request, resp: &mut Response, ctx: &mut Context) {
        let _ = (req, resp, ctx);
    }
}
