//! The variables a template sees, and building them from a request or a
//! response.
//!
//! Which variables a phase's templates use is known at init, so a request
//! pays only for those: a template that never mentions `body` never has the
//! body parsed, and the response phase gets only the request values its
//! templates name, carried through the context.

use crate::error::{Failure, Origin};
pub use crate::phase::Phase;
use minijinja::Value;
use plugin_sdk::{Context, Headers, Request, Response};
use std::collections::BTreeMap;

/// A variable templates can read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Var {
    /// The phase's body parsed as JSON (`none` when empty).
    Body,
    /// The phase's body as text.
    RawBody,
    /// The request method.
    Method,
    /// The request path, percent-encoded as received.
    Path,
    /// The host (and port) the client asked for.
    Host,
    /// The matched route's name.
    Route,
    /// Path parameters captured by the route template.
    Params,
    /// Query parameters, first value of each.
    Query,
    /// Query parameters, every value of each as a list.
    QueryAll,
    /// Request headers, lower-case names, repeated fields joined with `, `.
    Headers,
    /// The client's IP address, without the port.
    ClientIp,
    /// The gateway's request id (`X-Request-Id`).
    RequestId,
    /// Every entry of the per-request context.
    Context,
    /// The authenticated consumer's name (context `consumer`).
    Consumer,
    /// JWT claims the jwt plugin exposed (context `jwt.claim.NAME`).
    Claims,
    /// The upstream's status code.
    Status,
    /// The upstream's response headers.
    ResponseHeaders,
}

/// Context key prefix under which the jwt plugin puts claims.
const CLAIM_PREFIX: &str = "jwt.claim.";
/// Context key under which key-auth and jwt put the consumer's name.
const CONSUMER_KEY: &str = "consumer";
/// The host drops context values over 16 KiB.
pub const CONTEXT_VALUE_CAP: usize = 16 * 1024;

impl Var {
    /// Every variable, in the order the docs list them.
    pub const ALL: [Var; 17] = [
        Var::Body,
        Var::RawBody,
        Var::Method,
        Var::Path,
        Var::Host,
        Var::Route,
        Var::Params,
        Var::Query,
        Var::QueryAll,
        Var::Headers,
        Var::ClientIp,
        Var::RequestId,
        Var::Context,
        Var::Consumer,
        Var::Claims,
        Var::Status,
        Var::ResponseHeaders,
    ];

    /// The name templates use.
    pub fn name(self) -> &'static str {
        match self {
            Var::Body => "body",
            Var::RawBody => "raw_body",
            Var::Method => "method",
            Var::Path => "path",
            Var::Host => "host",
            Var::Route => "route",
            Var::Params => "params",
            Var::Query => "query",
            Var::QueryAll => "query_all",
            Var::Headers => "headers",
            Var::ClientIp => "client_ip",
            Var::RequestId => "request_id",
            Var::Context => "context",
            Var::Consumer => "consumer",
            Var::Claims => "claims",
            Var::Status => "status",
            Var::ResponseHeaders => "response_headers",
        }
    }

    /// The variable called `name`.
    pub fn from_name(name: &str) -> Option<Var> {
        Var::ALL.into_iter().find(|var| var.name() == name)
    }

    /// Whether only the response phase has it.
    pub fn response_only(self) -> bool {
        matches!(self, Var::Status | Var::ResponseHeaders)
    }

    /// Whether the response phase gets it from the request phase, through the
    /// context (the body is not carried: it may be far over the context cap).
    pub fn carried(self) -> bool {
        matches!(
            self,
            Var::Method
                | Var::Path
                | Var::Host
                | Var::Route
                | Var::Params
                | Var::Query
                | Var::QueryAll
                | Var::Headers
                | Var::ClientIp
                | Var::RequestId
        )
    }

    /// Who supplies the value, for blaming a missing one: `body.name` missing
    /// from a request is the client's doing, `params.id` missing is the
    /// route's, `context.x` another plugin's.
    pub fn origin(self, phase: Phase) -> Origin {
        match self {
            Var::Body | Var::RawBody if phase == Phase::Response => Origin::Upstream,
            Var::Status | Var::ResponseHeaders => Origin::Upstream,
            Var::Body
            | Var::RawBody
            | Var::Query
            | Var::QueryAll
            | Var::Headers
            | Var::Consumer
            | Var::Claims => Origin::Client,
            _ => Origin::Config,
        }
    }

    fn bit(self) -> u32 {
        1 << (self as u32)
    }
}

/// A set of variables.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VarSet(u32);

impl VarSet {
    /// Adds `var`.
    pub fn insert(&mut self, var: Var) {
        self.0 |= var.bit();
    }

    /// Whether `var` is in.
    pub fn contains(self, var: Var) -> bool {
        self.0 & var.bit() != 0
    }

    /// The variables in either.
    pub fn union(self, other: VarSet) -> VarSet {
        VarSet(self.0 | other.0)
    }

    /// Whether no variable is in.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The variables in, in [`Var::ALL`] order.
    pub fn iter(self) -> impl Iterator<Item = Var> {
        Var::ALL.into_iter().filter(move |var| self.contains(*var))
    }

    /// Only the variables the response phase gets from the request phase.
    pub fn carried(self) -> VarSet {
        let mut set = VarSet::default();
        for var in self.iter().filter(|var| var.carried()) {
            set.insert(var);
        }
        set
    }
}

/// The variables of one render, by name.
pub type Scope = BTreeMap<&'static str, Value>;

/// The body parsed as JSON; `none` when empty.
fn json_body(bytes: &[u8], origin: Origin) -> Result<Value, Failure> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::from(()));
    }
    serde_json::from_slice(bytes).map_err(|err| Failure::BodyNotJson {
        origin,
        reason: err.to_string(),
    })
}

fn text_body(bytes: &[u8], origin: Origin) -> Result<Value, Failure> {
    std::str::from_utf8(bytes)
        .map(Value::from)
        .map_err(|_| Failure::BodyNotText { origin })
}

/// Headers as a map: lower-case names, repeated fields joined with `, ` (as
/// RFC 9110 combines them).
fn header_map(headers: &Headers) -> Value {
    let mut map: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in headers.iter() {
        map.entry(name.to_string())
            .and_modify(|joined| {
                joined.push_str(", ");
                joined.push_str(value);
            })
            .or_insert_with(|| value.to_string());
    }
    Value::from(map)
}

/// The client's IP without the port (`[::1]:5000` -> `::1`).
fn client_ip(addr: &str) -> &str {
    match addr.rsplit_once(':') {
        Some((ip, port)) if port.bytes().all(|b| b.is_ascii_digit()) => {
            ip.trim_start_matches('[').trim_end_matches(']')
        }
        _ => addr,
    }
}

/// The request's own variables among `want`: the live ones in the request
/// phase, and what is carried to the response phase.
fn request_values(req: &Request, want: VarSet, scope: &mut Scope) -> Result<(), Failure> {
    let body = || req.body().unwrap_or_default();
    let query = || req.query_params();
    for var in want.iter() {
        let value = match var {
            Var::Body => json_body(body(), Origin::Client)?,
            Var::RawBody => text_body(body(), Origin::Client)?,
            Var::Method => Value::from(req.method()),
            Var::Path => Value::from(req.path()),
            Var::Host => Value::from(req.authority()),
            Var::Route => Value::from(req.route()),
            Var::Params => Value::from(
                req.params()
                    .map(|(name, value)| (name.to_string(), value.to_string()))
                    .collect::<BTreeMap<String, String>>(),
            ),
            Var::Query => {
                let mut first: BTreeMap<String, String> = BTreeMap::new();
                for (name, value) in query() {
                    first.entry(name).or_insert(value);
                }
                Value::from(first)
            }
            Var::QueryAll => {
                let mut all: BTreeMap<String, Vec<String>> = BTreeMap::new();
                for (name, value) in query() {
                    all.entry(name).or_default().push(value);
                }
                Value::from(all)
            }
            Var::Headers => header_map(req.headers()),
            Var::ClientIp => Value::from(client_ip(req.client_addr())),
            Var::RequestId => match req.headers().get("x-request-id") {
                Some(id) => Value::from(id),
                None => continue,
            },
            Var::Context | Var::Consumer | Var::Claims | Var::Status | Var::ResponseHeaders => {
                continue;
            }
        };
        scope.insert(var.name(), value);
    }
    Ok(())
}

/// The context's variables among `want`, in either phase.
fn context_values(ctx: &Context, want: VarSet, scope: &mut Scope) {
    if want.contains(Var::Consumer)
        && let Some(consumer) = ctx.get(CONSUMER_KEY)
    {
        scope.insert(Var::Consumer.name(), Value::from(consumer));
    }
    if !want.contains(Var::Context) && !want.contains(Var::Claims) {
        return;
    }
    let mut all = BTreeMap::new();
    let mut claims = BTreeMap::new();
    for key in ctx.keys() {
        let Some(value) = ctx.get(&key) else {
            continue;
        };
        if let Some(claim) = key.strip_prefix(CLAIM_PREFIX) {
            claims.insert(claim.to_string(), value.clone());
        }
        all.insert(key, value);
    }
    if want.contains(Var::Context) {
        scope.insert(Var::Context.name(), Value::from(all));
    }
    if want.contains(Var::Claims) {
        scope.insert(Var::Claims.name(), Value::from(claims));
    }
}

/// The request phase's variables among `want`.
pub fn request_scope(req: &Request, ctx: &Context, want: VarSet) -> Result<Scope, Failure> {
    let mut scope = Scope::new();
    request_values(req, want, &mut scope)?;
    context_values(ctx, want, &mut scope);
    Ok(scope)
}

/// The request values the response phase will need, as one JSON object to
/// keep in the context. Over the host's cap, the largest values are left out
/// (templates that use them then fail as on a missing value), with a warning.
pub fn carry(req: &Request, want: VarSet) -> Option<String> {
    let mut scope = Scope::new();
    // Nothing in `want.carried()` can fail: only the body can.
    request_values(req, want.carried(), &mut scope).ok()?;
    for dropped in [
        None,
        Some(Var::Headers),
        Some(Var::QueryAll),
        Some(Var::Query),
    ] {
        if let Some(var) = dropped
            && scope.remove(var.name()).is_some()
        {
            plugin_sdk::log::warn(&format!(
                "transform: request `{}` left out of the response phase: over the {CONTEXT_VALUE_CAP}-byte context cap",
                var.name()
            ));
        }
        let json = serde_json::to_string(&scope).ok()?;
        if json.len() <= CONTEXT_VALUE_CAP {
            return Some(json);
        }
    }
    None
}

/// The response phase's variables among `want`; `carried` is what
/// [`carry`] stored, if the request phase ran.
pub fn response_scope(
    resp: &Response,
    ctx: &Context,
    carried: Option<&str>,
    want: VarSet,
) -> Result<Scope, Failure> {
    let mut scope = Scope::new();
    if let Some(carried) = carried
        && let Ok(values) = serde_json::from_str::<BTreeMap<String, Value>>(carried)
    {
        for (name, value) in values {
            if let Some(var) = Var::from_name(&name).filter(|var| want.contains(*var)) {
                scope.insert(var.name(), value);
            }
        }
    }
    if want.contains(Var::Body) || want.contains(Var::RawBody) {
        if let Some(encoding) = resp
            .headers()
            .get("content-encoding")
            .filter(|e| !e.trim().eq_ignore_ascii_case("identity"))
        {
            return Err(Failure::BodyEncoded {
                encoding: encoding.to_string(),
            });
        }
        let body = resp.body().unwrap_or_default();
        if want.contains(Var::Body) {
            scope.insert(Var::Body.name(), json_body(body, Origin::Upstream)?);
        }
        if want.contains(Var::RawBody) {
            scope.insert(Var::RawBody.name(), text_body(body, Origin::Upstream)?);
        }
    }
    if want.contains(Var::Status) {
        scope.insert(Var::Status.name(), Value::from(resp.status()));
    }
    if want.contains(Var::ResponseHeaders) {
        scope.insert(Var::ResponseHeaders.name(), header_map(resp.headers()));
    }
    context_values(ctx, want, &mut scope);
    Ok(scope)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_variable_has_a_distinct_name_and_bit() {
        let mut seen = VarSet::default();
        for var in Var::ALL {
            assert_eq!(Var::from_name(var.name()), Some(var));
            assert!(!seen.contains(var));
            seen.insert(var);
        }
        assert_eq!(seen.iter().count(), Var::ALL.len());
    }

    #[test]
    fn client_ip_drops_only_a_port() {
        assert_eq!(client_ip("10.0.0.1:5000"), "10.0.0.1");
        assert_eq!(client_ip("[::1]:5000"), "::1");
        assert_eq!(client_ip("10.0.0.1"), "10.0.0.1");
    }

    #[test]
    fn carry_leaves_out_headers_over_the_context_cap() {
        let req = Request::new("GET", "/a?q=1")
            .with_header("x-big", &"x".repeat(CONTEXT_VALUE_CAP))
            .with_header("x-request-id", "r1");
        let mut want = VarSet::default();
        for var in [Var::Headers, Var::Query, Var::Path, Var::Body] {
            want.insert(var);
        }
        let json = carry(&req, want).expect("fits without headers");
        let values: serde_json::Value = serde_json::from_str(&json).expect("json");
        assert_eq!(
            values,
            serde_json::json!({"path": "/a", "query": {"q": "1"}})
        );
    }
}
