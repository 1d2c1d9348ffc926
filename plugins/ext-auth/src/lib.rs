//! The built-in `ext-auth` plugin: an external authorizer, what Amazon API
//! Gateway calls a Lambda authorizer, Envoy `ext_authz` and Kong forward
//! auth. Each request's identity sources go to an HTTP endpoint that
//! decides.
//!
//! Two kinds, as in Amazon API Gateway: a **token** authorizer reads one
//! header (`token_header`); a **request** authorizer reads the
//! `identity_sources` it lists (headers, query parameters, the path, the
//! method, the client's address). A request missing a source gets `401`
//! without a call.
//!
//! The endpoint gets a JSON `POST` (see `ExtAuth::ask`) within `timeout_ms`. A 2xx
//! answer allows, and its JSON body may name a consumer, groups, context
//! values, headers to set upstream and a shorter `ttl`; `401` and `403`
//! deny with that status; anything else, or no answer in time, is a
//! failure: `503`, or the request passes when `on_failure = "allow"`.
//!
//! Decisions are remembered in the plugin's `cache` (in the process, or on
//! Redis with the entry's `store = "redis"`), keyed by the SHA-256 of the
//! endpoint, the route and the identity sources' values: an allow for `cache_ttl` (or the answer's
//! shorter `ttl`), a denial for `deny_ttl`, a failure never. Concurrent
//! requests with the same new sources wait for the first one's call (the
//! cache's request collapsing): one call, whatever the concurrency.

mod grant;
mod settings;

use grant::Grant;
use plugin_sdk::crypto::{DigestAlgorithm, digest};
use plugin_sdk::{
    Action, Config, Context, Needs, Plugin, Request, Response, cache, http_client, log,
};
use serde_json::{Map, Value, json};
use settings::{Settings, Source};
use std::time::Duration;

/// The plugin with its checked settings.
#[derive(Debug)]
pub struct ExtAuth {
    settings: Settings,
}

/// What the authorizer decided.
#[derive(Debug)]
enum Decision {
    Allow(Grant),
    Deny(u16),
    /// No usable answer: why.
    Failed(String),
}

impl Plugin for ExtAuth {
    const NAME: &'static str = "ext-auth";

    fn needs(&self) -> Needs {
        Needs::REQUEST
    }

    fn init(config: Config) -> Result<Self, String> {
        Ok(ExtAuth {
            settings: settings::load(&config)?,
        })
    }

    fn on_request(&self, req: &mut Request, ctx: &mut Context) -> Action {
        let values = match self.identity(req) {
            Ok(values) => values,
            Err(response) => return Action::Respond(response),
        };
        match self.decide(req, &values) {
            Decision::Allow(grant) => {
                grant.apply(req, ctx);
                Action::Continue
            }
            Decision::Deny(status) => {
                let reason = if status == 401 {
                    "not authenticated"
                } else {
                    "not authorized"
                };
                Action::Respond(Response::denied(status, reason, req))
            }
            Decision::Failed(why) => {
                log::warn(&format!(
                    "ext-auth: route `{}`: the authorizer did not answer usably: {why}",
                    req.route()
                ));
                if self.settings.allow_on_failure {
                    return Action::Continue;
                }
                Action::Respond(Response::error(503, "authorizer unavailable", req))
            }
        }
    }
}

impl ExtAuth {
    /// The identity sources' values, in order; `401` when one is missing
    /// (or given twice), `400` when together they are over the cap.
    fn identity(&self, req: &Request) -> Result<Vec<(String, String)>, Response> {
        let mut values = Vec::with_capacity(self.settings.sources.len());
        let mut bytes = 0;
        for source in &self.settings.sources {
            let Some(value) = read(source, req).filter(|v| !v.is_empty()) else {
                return Err(Response::denied(401, "missing credentials", req));
            };
            bytes += value.len();
            values.push((source.label(), value));
        }
        if bytes > self.settings.max_source_bytes {
            return Err(Response::error(400, "credentials too large", req));
        }
        Ok(values)
    }

    /// The decision for `values`: remembered (or being asked by a
    /// concurrent request, then waited for), else asked and remembered.
    fn decide(&self, req: &Request, values: &[(String, String)]) -> Decision {
        // Every ext-auth entry shares one cache: the key holds the
        // authorizer and the route, so no decision crosses to another.
        let scope = [self.settings.endpoint.as_str(), req.route()];
        let key = cache_key(&scope, values);
        let wait = self.settings.timeout + Duration::from_millis(200);
        if let Some(decision) = cache::lookup(&key, wait).and_then(remembered) {
            return decision;
        }
        let decision = self.ask(req, values);
        let (status, body, ttl) = match &decision {
            Decision::Allow(grant) => (200, grant.to_json(), grant.ttl(self.settings.cache_ttl)),
            Decision::Deny(status) => (*status, Vec::new(), self.settings.deny_ttl),
            Decision::Failed(_) => (0, Vec::new(), 0),
        };
        let entry = cache::Entry {
            status,
            headers: plugin_sdk::Headers::new(),
            body,
            stored_at_ms: plugin_sdk::clock::now_millis(),
            vary: Vec::new(),
        };
        // Nothing to keep, or a store that refuses: the waiters ask for
        // themselves.
        if ttl == 0 || cache::put(&key, entry, Duration::from_secs(ttl)).is_err() {
            cache::release(&key);
        }
        decision
    }

    /// One call to the authorizer.
    fn ask(&self, req: &Request, values: &[(String, String)]) -> Decision {
        let identity: Map<String, Value> = values
            .iter()
            .map(|(label, value)| (label.clone(), Value::from(value.as_str())))
            .collect();
        let mut question = json!({
            "type": if self.settings.token { "token" } else { "request" },
            "identity": identity,
            "method": req.method(),
            "path": req.path(),
            "route": req.route(),
            "request_id": req.id(),
        });
        if self.settings.token {
            question["token"] = Value::from(values[0].1.as_str());
        }
        let mut request = http_client::Request {
            method: "POST".into(),
            url: self.settings.endpoint.clone(),
            headers: plugin_sdk::Headers::new(),
            body: Some(question.to_string().into_bytes()),
            timeout: Some(self.settings.timeout),
        };
        request.headers.set("content-type", "application/json");
        let answer = match http_client::send(request) {
            Ok(answer) => answer,
            Err(err) => return Decision::Failed(err.to_string()),
        };
        match answer.status {
            200..=299 => match Grant::parse(&answer.body) {
                Ok(grant) => Decision::Allow(grant),
                Err(why) => Decision::Failed(why),
            },
            401 | 403 => Decision::Deny(answer.status),
            other => Decision::Failed(format!("status {other}")),
        }
    }
}

/// One identity source's value in `req`; `None` when absent or repeated
/// (two copies could be read differently by the authorizer and upstream).
fn read(source: &Source, req: &Request) -> Option<String> {
    match source {
        Source::Header(name) => req.headers().single(name).ok()?.map(str::to_string),
        Source::Query(name) => req.single_query_param(name).ok()?,
        Source::Path => Some(req.path().to_string()),
        Source::Method => Some(req.method().to_string()),
        Source::ClientIp => {
            let addr = req.client_addr();
            let ip = addr.rsplit_once(':').map_or(addr, |(ip, _)| ip);
            Some(ip.trim_start_matches('[').trim_end_matches(']').to_string())
        }
    }
}

/// A remembered decision (an entry's status says which).
fn remembered(entry: cache::Entry) -> Option<Decision> {
    match entry.status {
        200 => Grant::parse(&entry.body).ok().map(Decision::Allow),
        401 | 403 => Some(Decision::Deny(entry.status)),
        _ => None,
    }
}

/// The cache key of identity sources for a `scope` (the authorizer and the
/// route): the SHA-256 of all their parts, each length-prefixed (so no two
/// lists share a key), in hex.
fn cache_key(scope: &[&str], values: &[(String, String)]) -> String {
    let mut bytes = Vec::new();
    let pairs = values
        .iter()
        .flat_map(|(label, value)| [label.as_str(), value.as_str()]);
    for part in scope.iter().copied().chain(pairs) {
        bytes.extend_from_slice(&(part.len() as u64).to_be_bytes());
        bytes.extend_from_slice(part.as_bytes());
    }
    let hash = digest(DigestAlgorithm::Sha256, &bytes);
    let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
    format!("decision:{hex}")
}

plugin_sdk::export!(ExtAuth);
