//! A route's pipeline: its entries in order, and running the request phase
//! forwards and the response phase backwards over them.
//!
//! The request and response travel through the phases in their WIT shape, built
//! once per phase (the request's head as one encoded buffer, rewritten only
//! when a plugin edits it); only plugins that declared a hook are called, and
//! bodies are handed only to plugins that read them.

use crate::config::OnError;
use crate::error::RequestError;
use crate::metrics::metrics;
use crate::plugin::{
    CallFailure, Context, InstancePool, Needs, Request, RequestEdit, RequestOutcome, Response,
    ResponseOutcome, edit_head, header_fields_fault,
};
use bytes::Bytes;
use http_body_util::BodyExt;
use prometheus_client::metrics::histogram::Histogram;
use std::sync::Arc;

/// One plugin with its config and policy.
pub struct Entry {
    /// The plugin as the config references it (built-in name or path).
    pub reference: String,
    /// Warm instances.
    pub pool: InstancePool,
    /// What a failure does to the request.
    pub on_error: OnError,
    /// Largest body handed to this plugin.
    pub max_body: usize,
    /// The component's content hash.
    pub hash: String,
    /// Call latency of the request and response hooks.
    latency: [Histogram; 2],
    /// Where the config declares it.
    pub level: Level,
    /// Its name in the config (`name`, else the plugin reference).
    pub name: String,
}

/// Where a pipeline entry is declared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// `[[plugins]]`: every route runs it unless it replaces or switches it off.
    Global,
    /// The route's own `[[routes.plugins]]`.
    Route,
    /// The route's own entry in place of the inherited entry of its name.
    Replacement,
    /// An `[apis.NAME]` entry: every route of the API runs it.
    Api,
}

impl Level {
    /// How the admin API and `gateway check` name it.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Global => "global",
            Level::Route => "route",
            Level::Replacement => "replacement",
            Level::Api => "api",
        }
    }
}

impl Entry {
    /// An entry for `pool`, its calls measured under the plugin's reference.
    pub fn new(
        reference: String,
        pool: InstancePool,
        on_error: OnError,
        max_body: usize,
        hash: String,
    ) -> Self {
        let latency = |phase: &str| {
            metrics()
                .plugin_duration
                .get_or_create(&[("plugin", reference.clone()), ("phase", phase.to_string())])
                .clone()
        };
        let latency = [latency("request"), latency("response")];
        Self {
            name: reference.clone(),
            reference,
            pool,
            on_error,
            max_body,
            hash,
            latency,
            level: Level::Route,
        }
    }

    /// The same entry, declared at `level` under `name`.
    pub fn at(mut self, level: Level, name: &str) -> Self {
        self.level = level;
        self.name = name.to_string();
        self
    }

    /// What the admin API shows of the entry.
    pub fn describe(&self) -> serde_json::Value {
        let stats = &self.pool.stats;
        let count = |n: &std::sync::atomic::AtomicU64| n.load(std::sync::atomic::Ordering::Relaxed);
        serde_json::json!({
            "plugin": self.reference,
            "level": self.level.as_str(),
            "entry": self.name,
            "name": self.pool.info.name,
            "version": self.pool.info.version,
            "hash": self.hash,
            "pool_size": self.pool.pool_size(),
            "idle_instances": self.pool.idle(),
            "calls": count(&stats.calls),
            "traps": count(&stats.traps),
            "deadlines": count(&stats.deadlines),
            "memory_limits": count(&stats.memory_limits),
            "instantiations": count(&stats.instantiations),
            "oversized": count(&stats.oversized),
            "max_idle_memory": self.pool.max_idle_memory(),
        })
    }

    /// Whether the plugin declared `hook`.
    pub fn takes(&self, hook: Needs) -> bool {
        self.pool.needs.contains(hook)
    }
}

/// What the request phase ended in.
pub enum RequestPhase {
    /// Go on to the upstream; `edited` says whether any plugin changed the request.
    Proceed {
        /// Whether the request must be rebuilt from the WIT shape.
        edited: bool,
    },
    /// Plugin `by` answered; entries before it still run their response phase.
    Respond {
        /// The answer.
        response: Response,
        /// Index of the answering entry.
        by: usize,
    },
}

/// The entries of one route.
#[derive(Default)]
pub struct Pipeline {
    entries: Vec<Arc<Entry>>,
    /// The upstreams a request hook may choose among (the route's).
    upstreams: Vec<String>,
    /// What the entries need of a request and its answer, decided once.
    plan: BodyPlan,
}

/// What a pipeline's entries need of a request and its answer: which phases
/// run, and which bodies are buffered for them, up to what size. Decided
/// when the route is built, so a request asks nothing of the entries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BodyPlan {
    /// Some entry has a request hook.
    pub request_phase: bool,
    /// Some entry's request hook reads the body: it is buffered up to this
    /// many bytes (the smallest of their `max_body` and the server's
    /// `max_request_body`) when the first of them is reached.
    pub request_body: Option<usize>,
    /// The response phase when every entry takes part (no plugin answered).
    pub response: ResponsePlan,
}

/// What the response hooks of some entries need.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ResponsePlan {
    /// Some entry has a response hook.
    pub hooks: bool,
    /// Some entry's response hook reads the body: it is buffered up to
    /// `cap` bytes (the smallest of their `max_body`); with `large_passes`
    /// (every reader lets it), a larger body passes by unread instead of
    /// failing the request.
    pub body: Option<ResponseBody>,
}

/// The response body the hooks read, and what a larger one does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseBody {
    /// Bytes buffered at most.
    pub cap: usize,
    /// A larger body passes by unread (else the request fails).
    pub large_passes: bool,
}

impl BodyPlan {
    /// The plan for `entries`, with request bodies capped at `max_request_body`.
    fn new(entries: &[Arc<Entry>], max_request_body: u64) -> Self {
        let request_hooks = entries.iter().filter(|e| e.takes(Needs::REQUEST_HOOK));
        let server_cap = usize::try_from(max_request_body).unwrap_or(usize::MAX);
        BodyPlan {
            request_phase: request_hooks.clone().next().is_some(),
            request_body: request_hooks
                .filter(|e| e.pool.reads_request_body())
                .map(|e| e.max_body.min(server_cap))
                .min(),
            response: ResponsePlan::new(entries),
        }
    }

    /// Whether any phase runs at all (the plugins need the request's head).
    pub fn any_phase(&self) -> bool {
        self.request_phase || self.response.hooks
    }
}

impl ResponsePlan {
    /// The response phase of `entries`.
    fn new(entries: &[Arc<Entry>]) -> Self {
        let hooks = entries.iter().filter(|e| e.takes(Needs::RESPONSE_HOOK));
        let readers = hooks.clone().filter(|e| e.pool.reads_response_body());
        ResponsePlan {
            hooks: hooks.clone().next().is_some(),
            body: readers
                .clone()
                .map(|e| e.max_body)
                .min()
                .map(|cap| ResponseBody {
                    cap,
                    large_passes: readers.clone().all(|e| e.pool.passes_large_bodies()),
                }),
        }
    }
}

impl Pipeline {
    /// A pipeline over `entries`, in request order, whose request bodies are
    /// capped at `max_request_body` (the server's).
    pub fn new(entries: Vec<Arc<Entry>>, max_request_body: u64) -> Self {
        Self {
            plan: BodyPlan::new(&entries, max_request_body),
            entries,
            upstreams: Vec::new(),
        }
    }

    /// The same pipeline, whose request hooks may send the request to any of
    /// `upstreams` (the route's) by name.
    pub fn choosing_among(mut self, upstreams: Vec<String>) -> Self {
        self.upstreams = upstreams;
        self
    }

    /// The entries, in request order.
    pub fn entries(&self) -> &[Arc<Entry>] {
        &self.entries
    }

    /// What the entries need of a request and its answer.
    pub fn plan(&self) -> &BodyPlan {
        &self.plan
    }

    /// The response phase when entry `upto` answered the request: that of
    /// the entries before it (all of them when none answered).
    pub fn response_plan(&self, upto: usize) -> ResponsePlan {
        if upto >= self.entries.len() {
            self.plan.response
        } else {
            ResponsePlan::new(&self.entries[..upto])
        }
    }

    /// What the admin API shows of each entry, in order.
    pub fn describe(&self) -> Vec<serde_json::Value> {
        self.entries.iter().map(|entry| entry.describe()).collect()
    }

    /// Runs the request phase in order. `unread` is the client's body and the
    /// cap to buffer it with when some entry reads it: it is read when the
    /// first such entry is reached (so an entry before it may refuse the
    /// request without it being read), into `request.body`, and lent only to
    /// the entries that read it (the body left in `unread` is then empty).
    pub async fn run_request(
        &self,
        request: &mut Request,
        context: &mut Context,
        mut unread: Option<(&mut crate::body::Body, usize)>,
    ) -> Result<RequestPhase, RequestError> {
        let mut edited = false;
        for (index, entry) in self.entries.iter().enumerate() {
            if !entry.takes(Needs::REQUEST_HOOK) {
                continue;
            }
            let reads_body = entry.pool.reads_request_body();
            if reads_body && let Some((body, cap)) = unread.take() {
                let body = std::mem::replace(body, crate::body::empty());
                let bytes = collect_request_body(body, cap).await?;
                request.body = Some(bytes.to_vec());
            }
            let lent_body = if reads_body {
                None
            } else {
                request.body.take()
            };
            let (outcome, took) = entry.pool.on_request_timed(context, request).await;
            entry.latency[0].observe(took.as_secs_f64());
            if lent_body.is_some() {
                request.body = lent_body;
            }
            match outcome {
                Ok(RequestOutcome::Proceed) => {}
                Ok(RequestOutcome::ProceedWith(new)) => {
                    if let Some(why) = self.refused_edit(&new) {
                        failed(entry, "request", CallFailure::BadAnswer(why))?;
                        continue;
                    }
                    apply_request_edit(request, new);
                    edited = true;
                }
                Ok(RequestOutcome::Respond(response)) => {
                    return Ok(RequestPhase::Respond {
                        response,
                        by: index,
                    });
                }
                Err(failure) => failed(entry, "request", failure)?,
            }
        }
        Ok(RequestPhase::Proceed { edited })
    }

    /// Why the host refuses a request hook's edit, if it does: an upstream
    /// its route does not list, a method, path or query no request can have,
    /// or header fields `http` would refuse (a field named like a
    /// pseudo-field, `:upstream`, would read as part of the head). Refused
    /// here, the failure is the plugin's and its entry's `on_error` applies.
    fn refused_edit(&self, edit: &RequestEdit) -> Option<String> {
        if let Some(unlisted) = edit
            .upstream
            .as_ref()
            .filter(|name| !self.upstreams.contains(name))
        {
            return Some(format!(
                "upstream `{unlisted}`, which its route does not list in `upstreams` ({})",
                self.upstreams.join(", ")
            ));
        }
        if let Some(method) = &edit.method
            && http::Method::from_bytes(method.as_bytes()).is_err()
        {
            return Some(format!("an invalid method `{method}`"));
        }
        if let Some(path) = &edit.path
            && (!path.starts_with('/')
                || path.contains(['?', '#'])
                || http::uri::PathAndQuery::try_from(path.as_str()).is_err())
        {
            return Some(format!("an invalid path `{path}` (it must start with `/`)"));
        }
        if let Some(query) = &edit.query
            && (query.contains('#')
                || http::uri::PathAndQuery::try_from(format!("/?{query}")).is_err())
        {
            return Some(format!("an invalid query `{query}`"));
        }
        edit.headers.as_deref().and_then(header_fields_fault)
    }

    /// Runs the response phase in reverse over the first `upto` entries;
    /// `request` is the head of the request `response` answers. Returns
    /// whether any plugin replaced something.
    pub async fn run_response(
        &self,
        request: &Request,
        response: &mut Response,
        upto: usize,
        context: &mut Context,
    ) -> Result<bool, RequestError> {
        let mut edited = false;
        for entry in self.entries[..upto].iter().rev() {
            if !entry.takes(Needs::RESPONSE_HOOK) {
                continue;
            }
            let reads_body = entry.pool.reads_response_body();
            let lent_body = if reads_body {
                None
            } else {
                response.body.take()
            };
            let (outcome, took) = entry
                .pool
                .on_response_timed(context, request, response)
                .await;
            entry.latency[1].observe(took.as_secs_f64());
            match outcome {
                Ok(ResponseOutcome::Proceed) => {
                    if lent_body.is_some() {
                        response.body = lent_body;
                    }
                }
                Ok(ResponseOutcome::Replace(new)) => {
                    response.status = new.status;
                    response.headers = new.headers;
                    // No body in the replacement keeps the one we have.
                    response.body = new.body.or(lent_body).or(response.body.take());
                    edited = true;
                }
                Err(failure) => {
                    if lent_body.is_some() {
                        response.body = lent_body;
                    }
                    failed(entry, "response", failure)?;
                }
            }
        }
        Ok(edited)
    }
}

/// Applies the parts a plugin changed; later entries see the result.
fn apply_request_edit(request: &mut Request, edit: RequestEdit) {
    let mut set = Vec::with_capacity(4);
    if let Some(method) = &edit.method {
        set.push((":method", Some(method.as_str())));
    }
    if let Some(path) = &edit.path {
        set.push((":path", Some(path.as_str())));
    }
    if let Some(query) = &edit.query {
        set.push((":query", Some(query.as_str()).filter(|q| !q.is_empty())));
    }
    if let Some(upstream) = &edit.upstream {
        set.push((":upstream", Some(upstream.as_str())));
    }
    if !set.is_empty() || edit.headers.is_some() {
        request.head = edit_head(&request.head, &set, edit.headers.as_deref());
    }
    if edit.body.is_some() {
        request.body = edit.body;
    }
}

/// The request body, buffered for the plugins that read it (up to `cap`
/// bytes), or the error the client is answered with.
///
/// Reads frame by frame rather than through `http_body_util::Limited`: inside an
/// async fn rustc cannot prove `Limited`'s error-conversion bound for every
/// lifetime and would refuse to call the request future `Send`.
async fn collect_request_body(
    mut body: crate::body::Body,
    cap: usize,
) -> Result<Bytes, RequestError> {
    let too_large = || RequestError::BodyTooLarge { limit: cap as u64 };
    let mut buffer = bytes::BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|err| {
            if let Some(over) = err.downcast_ref::<crate::body::TooLarge>() {
                RequestError::BodyTooLarge { limit: over.0 }
            } else if let Some(timed_out) = err.downcast_ref::<crate::body::ReadTimedOut>() {
                RequestError::BodyTimeout {
                    timeout: timed_out.0,
                }
            } else {
                RequestError::BadRequest(format!("cannot read the request body: {err}"))
            }
        })?;
        if let Ok(data) = frame.into_data() {
            if buffer.len() + data.len() > cap {
                return Err(too_large());
            }
            buffer.extend_from_slice(&data);
        }
    }
    Ok(buffer.freeze())
}

/// Logs a failed call and applies the entry's policy.
fn failed(entry: &Entry, phase: &str, failure: CallFailure) -> Result<(), RequestError> {
    let plugin = entry.pool.name();
    let kind = match &failure {
        CallFailure::Deadline(_) => "deadline",
        CallFailure::MemoryLimit(_) => "memory_limit",
        CallFailure::Trap(_) => "trap",
        CallFailure::Instantiate(_) => "instantiate",
        CallFailure::BadAnswer(_) => "bad_answer",
    };
    metrics()
        .plugin_failures
        .get_or_create(&[
            ("plugin", entry.reference.clone()),
            ("kind", kind.to_string()),
        ])
        .inc();
    match entry.on_error {
        OnError::Fail => {
            tracing::error!(plugin, reference = %entry.reference, phase, %failure, "plugin failed; answering 500");
            Err(RequestError::Plugin {
                plugin: plugin.to_string(),
                reason: failure.to_string(),
            })
        }
        OnError::Continue => {
            tracing::warn!(plugin, reference = %entry.reference, phase, %failure, "plugin failed; continuing as configured (on_error = \"continue\")");
            Ok(())
        }
    }
}
