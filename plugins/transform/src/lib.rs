//! The built-in `transform` plugin: mapping templates for request and
//! response bodies, headers and status, in the spirit of AWS API Gateway's
//! mapping templates but written in Jinja (minijinja) instead of VTL.
//!
//! ```toml
//! [[routes.plugins]]
//! plugin = "transform"
//! config.request.body = '{"user": {{ params.id }}, "name": {{ body.name | default("anonymous") }}}'
//! config.request.headers = { "x-consumer" = "{{ consumer | default('') }}" }
//! config.response.body = '<user id="{{ body.id }}">{{ body.name }}</user>'
//! config.response.content_type = "application/xml"
//! ```
//!
//! ```text
//!  init                      on_request                    on_response
//!  ----                      ----------                    -----------
//!  compile every template    carry the request values      status not in `statuses` -> untouched
//!  (syntax error, unknown      the response phase reads    build the variables it reads
//!  variable -> refused)      build the variables it reads  render status, body, headers
//!  note which variables      render body, then headers     apply all, or answer 502/500
//!  each phase reads          apply all, or answer 400/500
//! ```
//!
//! Values are escaped for the body's format (a JSON body prints every value
//! as JSON, an XML body escapes it), so data cannot change the document's
//! structure; a JSON body must parse before it is sent. Every render is
//! bounded by fuel, a recursion limit and an output cap. A failure is
//! answered by the plugin itself: 400 when the client's input lacks what the
//! template needs or is not JSON, 502 for the upstream's, 500 (and an error
//! log line) for the operator's template. The language, variables, filters
//! and limits are in `docs/templates.md`.

mod config;
mod engine;
mod error;
mod phase;
mod vars;

pub use config::{DEFAULT_FUEL, DEFAULT_MAX_OUTPUT};
pub use engine::{MAX_HEADER_VALUE, RECURSION_LIMIT, xml_escape};

use config::{Mapping, Spec, StatusSpec};
use engine::Engine;
use error::{Failure, Origin, answer};
use plugin_sdk::{Action, Config, Context, Headers, Needs, Plugin, Request, Response};
use vars::{Phase, Var, VarSet};

/// Headers that describe the bytes of a body, not the resource: stale once
/// the body is replaced (the host also drops `Content-Length`).
const REPRESENTATION_HEADERS: &[&str] = &[
    "content-length",
    "content-encoding",
    "content-md5",
    "content-digest",
    "repr-digest",
    "digest",
];

/// The plugin with its compiled templates.
#[derive(Debug)]
pub struct Transform {
    spec: Spec,
    engine: Engine,
    /// The variables the request templates read.
    request_vars: VarSet,
    /// The variables the response templates read.
    response_vars: VarSet,
    /// Context key for the request values the response phase reads; unique
    /// per config, so two entries on one route do not mix theirs up.
    carry_key: String,
    /// Whether response templates read the upstream's body, so the upstream
    /// is asked for it whole and unencoded.
    reads_upstream_body: bool,
}

/// FNV-1a: a stable name for a config, not a secret.
fn fingerprint(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The header value a template rendered: trimmed (a template's trailing
/// newline is not part of the value), within the cap, no control characters.
fn header_value(template: &str, rendered: String, origin: Origin) -> Result<String, Failure> {
    let value = rendered.trim();
    if value.len() > engine::MAX_HEADER_VALUE {
        return Err(Failure::TooLarge {
            template: template.to_string(),
            limit: engine::MAX_HEADER_VALUE,
        });
    }
    if value.chars().any(|c| c.is_control() && c != '\t') {
        return Err(Failure::BadHeaderValue {
            origin,
            template: template.to_string(),
        });
    }
    Ok(value.to_string())
}

/// Sets each rendered header; an empty value removes the header.
fn apply_headers(headers: &mut Headers, rendered: Vec<(&str, String)>) {
    for (name, value) in rendered {
        if value.is_empty() {
            headers.remove(name);
        } else {
            headers.set(name, value);
        }
    }
}

/// A strong `ETag` names the upstream's bytes; after a new body only the
/// weak form (same resource state) is still true.
fn weaken_etag(headers: &mut Headers) {
    if let Some(etag) = headers.get("etag")
        && etag.starts_with('"')
    {
        let weak = format!("W/{etag}");
        headers.set("etag", weak);
    }
}

/// The request id the request phase carried, for error answers.
fn carried_request_id(carried: Option<&str>) -> String {
    carried
        .and_then(|json| serde_json::from_str::<serde_json::Value>(json).ok())
        .and_then(|v| v.get(Var::RequestId.name())?.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// Replaces everything in `resp` with `answer`.
fn replace(resp: &mut Response, answer: Response) {
    let names: Vec<String> = resp.headers().iter().map(|(n, _)| n.to_string()).collect();
    let headers = resp.headers_mut();
    for name in names {
        headers.remove(&name);
    }
    for (name, value) in answer.headers().iter() {
        headers.append(name, value);
    }
    resp.set_status(answer.status());
    resp.set_body(answer.body().map(<[u8]>::to_vec));
}

impl Transform {
    fn render_headers<'a>(
        &self,
        mapping: &'a Mapping,
        scope: &vars::Scope,
        phase: Phase,
        origin: Origin,
    ) -> Result<Vec<(&'a str, String)>, Failure> {
        mapping
            .headers
            .iter()
            .map(|(name, template)| {
                let rendered = self.engine.render(template, scope, phase)?;
                Ok((name.as_str(), header_value(template, rendered, origin)?))
            })
            .collect()
    }

    /// Renders every request template, then applies them all.
    fn map_request(
        &self,
        mapping: &Mapping,
        req: &mut Request,
        ctx: &Context,
    ) -> Result<(), Failure> {
        let scope = vars::request_scope(req, ctx, self.request_vars)?;
        let body = match &mapping.body {
            Some(spec) => Some((
                self.engine.render(&spec.template, &scope, Phase::Request)?,
                spec,
            )),
            None => None,
        };
        let headers = self.render_headers(mapping, &scope, Phase::Request, Origin::Client)?;
        if let Some((body, spec)) = body {
            req.set_body(body);
            let headers = req.headers_mut();
            for name in REPRESENTATION_HEADERS {
                headers.remove(name);
            }
            headers.set("content-type", spec.content_type.as_str());
        }
        if !headers.is_empty() {
            apply_headers(req.headers_mut(), headers);
        }
        Ok(())
    }

    /// Renders every response template, then applies them all.
    fn map_response(
        &self,
        mapping: &Mapping,
        resp: &mut Response,
        ctx: &Context,
        carried: Option<&str>,
    ) -> Result<(), Failure> {
        let scope = vars::response_scope(resp, ctx, carried, self.response_vars)?;
        let status = match &mapping.status {
            None => None,
            Some(StatusSpec::Fixed(code)) => Some(*code),
            Some(StatusSpec::Template(template)) => {
                let rendered = self.engine.render(template, &scope, Phase::Response)?;
                let text = rendered.trim();
                match text.parse::<u16>() {
                    Ok(code) if (100..=599).contains(&code) => Some(code),
                    _ => {
                        return Err(Failure::BadStatus {
                            value: text.chars().take(40).collect(),
                        });
                    }
                }
            }
        };
        let final_status = status.unwrap_or(resp.status());
        // These statuses have no body (RFC 9110 sections 15.2, 15.3.5, 15.4.5).
        let bodiless = final_status < 200 || final_status == 204 || final_status == 304;
        let body = match &mapping.body {
            Some(spec) if !bodiless => Some((
                self.engine
                    .render(&spec.template, &scope, Phase::Response)?,
                spec,
            )),
            _ => None,
        };
        let headers = self.render_headers(mapping, &scope, Phase::Response, Origin::Upstream)?;
        if let Some(code) = status {
            resp.set_status(code);
        }
        if let Some((body, spec)) = body {
            resp.set_body(Some(body.into_bytes()));
            let headers = resp.headers_mut();
            for name in REPRESENTATION_HEADERS {
                headers.remove(name);
            }
            weaken_etag(headers);
            headers.set("content-type", spec.content_type.as_str());
        }
        if !headers.is_empty() {
            apply_headers(resp.headers_mut(), headers);
        }
        Ok(())
    }
}

impl Plugin for Transform {
    const NAME: &'static str = "transform";

    fn init(config: Config) -> Result<Self, String> {
        let spec = Spec::from_config(&config)?;
        let (engine, used) = Engine::build(spec.sources.clone(), spec.fuel, spec.max_output)?;
        let vars_of = |mapping: &Option<Mapping>, phase: Phase| -> Result<VarSet, String> {
            let mut set = VarSet::default();
            let Some(mapping) = mapping else {
                return Ok(set);
            };
            for template in mapping.templates() {
                let index = spec
                    .sources
                    .iter()
                    .position(|s| s.name == template)
                    .ok_or_else(|| format!("transform: {template}: not compiled"))?;
                set = set.union(used[index]);
            }
            if phase == Phase::Request
                && let Some(var) = set.iter().find(|v| v.response_only())
            {
                return Err(format!(
                    "transform: `{}` is only known in the response phase, and the request templates use it",
                    var.name()
                ));
            }
            Ok(set)
        };
        let request_vars = vars_of(&spec.request, Phase::Request)?;
        let response_vars = vars_of(&spec.response, Phase::Response)?;
        let reads_upstream_body =
            response_vars.contains(Var::Body) || response_vars.contains(Var::RawBody);
        Ok(Transform {
            carry_key: format!("transform.{:016x}.request", fingerprint(config.raw())),
            spec,
            engine,
            request_vars,
            response_vars,
            reads_upstream_body,
        })
    }

    /// Each configured instance reads bodies only when its templates name
    /// `body` or `raw_body`, so an entry that maps headers only lets bodies
    /// stream by unbuffered.
    fn needs(&self) -> Needs {
        let mut needs = Needs::NONE;
        if self.spec.request.is_some()
            || !self.response_vars.carried().is_empty()
            || self.reads_upstream_body
        {
            needs = needs | Needs::REQUEST;
        }
        if self.request_vars.contains(Var::Body) || self.request_vars.contains(Var::RawBody) {
            needs = needs | Needs::REQUEST_BODY;
        }
        if self.spec.response.is_some() {
            needs = needs | Needs::RESPONSE;
        }
        if self.reads_upstream_body {
            needs = needs | Needs::RESPONSE_BODY;
        }
        needs
    }

    fn on_request(&self, req: &mut Request, ctx: &mut Context) -> Action {
        if self.spec.response.is_some() {
            // The request as the templates see it, before any edit below.
            let mut carried = self.response_vars.carried();
            carried.insert(Var::RequestId);
            if let Some(json) = vars::carry(req, carried) {
                ctx.set(&self.carry_key, json);
            }
        }
        if let Some(mapping) = &self.spec.request
            && let Err(failure) = self.map_request(mapping, req, ctx)
        {
            let request_id = req.headers().get("x-request-id").unwrap_or_default();
            return Action::Respond(answer(&failure, Phase::Request, request_id));
        }
        if self.reads_upstream_body {
            // Ask for the whole body, unencoded: templates cannot read a
            // compressed or partial one.
            for name in ["accept-encoding", "range", "if-range"] {
                if req.headers().contains(name) {
                    req.headers_mut().remove(name);
                }
            }
        }
        Action::Continue
    }

    fn on_response(&self, _req: &Request, resp: &mut Response, ctx: &mut Context) {
        let Some(mapping) = &self.spec.response else {
            return;
        };
        if !self.spec.statuses.iter().any(|m| m.matches(resp.status())) {
            return;
        }
        let carried = ctx.get(&self.carry_key);
        if let Err(failure) = self.map_response(mapping, resp, ctx, carried.as_deref()) {
            let request_id = carried_request_id(carried.as_deref());
            replace(resp, answer(&failure, Phase::Response, &request_id));
        }
    }
}

plugin_sdk::export!(Transform);
