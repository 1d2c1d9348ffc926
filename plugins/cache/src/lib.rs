//! The built-in `cache` plugin: stores upstream responses to GET requests in
//! the gateway's response cache and answers repeats from it, like Kong's
//! proxy-cache, Varnish or AWS API Gateway's stage cache.
//!
//! ```text
//!  on_request                                   on_response (upstream's answer)
//!  ----------                                   -----------
//!  unsafe method -> remember URI, BYPASS        2xx/3xx to it -> invalidate URI,
//!  not GET/HEAD, Authorization, ... -> BYPASS        Location, Content-Location
//!  strip poisoning headers, unkeyed query       BYPASS -> X-Cache: BYPASS
//!  lookup(key) --fresh--> answer, X-Cache: HIT  304 to a revalidation -> refresh
//!      |                  (no response phase)          the entry, answer from it,
//!      +--stale, validator--> conditional request      X-Cache: REVALIDATED
//!      +--miss--> remember the key, go upstream MISS -> stored if cacheable
//!                                                      (else the fill is
//!                                                      released), X-Cache: MISS
//! ```
//!
//! What is stored, and for how long, follows RFC 9111 for a shared cache
//! (`storable.rs`), with `CDN-Cache-Control` (RFC 9213, `sf.rs`) first when
//! configured; stale entries with a validator are revalidated
//! (`revalidation.rs`); successful unsafe requests invalidate their URI
//! through a per-URI generation in the store (`invalidation.rs`). What makes
//! two requests share an entry is the key (`key.rs`): `GET {host}{path}?{sorted
//! query}`, the `key_headers` and the consumer. A response with `Vary` is
//! stored as a variant, with a marker under the primary key naming the
//! headers that select it. Concurrent misses of one key collapse into one
//! upstream request (`collapse_wait`). A revalidation's `304` that cannot
//! refresh its entry (gone meanwhile, or about another representation)
//! reaches only a client whose own conditions it meets; others get a `503`
//! (`Retry-After: 0`) or a `502`. The targeted fields are stripped, when
//! configured, from every answer that passes the plugin.
//!
//! The pipeline runs a plugin's response phase only for answers it did not
//! give itself (the entries before the answering one see it), so a hit never
//! reaches `on_response`; the context still says `HIT`, so were it ever
//! called, the answer would not be stored again.

mod config;
mod entry;
mod invalidation;
mod key;
mod revalidation;
mod sf;
mod storable;

pub use config::POISONING_HEADERS;
pub use key::MAX_KEY;

use config::Options;
use invalidation::Origin;
use key::Vary;
use plugin_sdk::consumers::CONTEXT_CONSUMER;
use plugin_sdk::{Action, Config, Context, Headers, Needs, Plugin, Request, Response};
use plugin_sdk::{cache, clock, log};
use revalidation::Conditions;
use std::time::Duration;
use storable::NotStored;

/// Context key with this request's outcome: `HIT`, `MISS` or `BYPASS`.
pub const CONTEXT_STATUS: &str = "cache.status";
/// Context key with the primary key a missed GET's response is stored under.
pub const CONTEXT_KEY: &str = "cache.key";
/// Context key with the key this request missed and may be filling; it is
/// released when the response is not stored under it.
pub const CONTEXT_FILL: &str = "cache.fill";
/// Context key with the request's headers (JSON pairs), for a response that
/// turns out to vary on some of them.
pub const CONTEXT_REQUEST_HEADERS: &str = "cache.request_headers";
/// Context key with an unsafe request's host, path and query (one per line):
/// a successful response invalidates the entries of that URI and of its
/// same-origin `Location` and `Content-Location`.
pub const CONTEXT_INVALIDATE: &str = "cache.invalidate";
/// Context key with the key of the stale entry this request revalidates.
pub const CONTEXT_REVALIDATE: &str = "cache.revalidate";
/// Context key with the client's own conditional headers (JSON) while the
/// cache revalidates with its validators instead.
pub const CONTEXT_CONDITIONS: &str = "cache.conditions";
/// Context key with the validators the revalidation sent (JSON), which a
/// `304` without validators of its own stands for.
pub const CONTEXT_VALIDATORS: &str = "cache.validators";
/// Context key with the request's `X-Request-Id`, for an error the response
/// phase answers with.
pub const CONTEXT_REQUEST_ID: &str = "cache.request_id";

const HIT: &str = "HIT";
const MISS: &str = "MISS";
const BYPASS: &str = "BYPASS";
const REVALIDATED: &str = "REVALIDATED";

/// The host drops context values over 16 KiB; headers that large are not
/// kept, and a varying response to them is then not stored.
const CONTEXT_VALUE_CAP: usize = 16 * 1024;

/// The plugin with its checked settings.
#[derive(Debug)]
pub struct Cache {
    options: Options,
}

/// What became of a revalidation's `304`.
enum Revalidation {
    /// The entry was refreshed (or at least validated) and is the answer.
    Refreshed,
    /// The entry was gone when the `304` came (evicted, purged, expired).
    Gone,
    /// The `304` names another representation than the entry's (RFC 9111
    /// 4.3.4): the entry cannot be served as validated.
    Unvalidated,
}

/// What a lookup found.
enum Found {
    /// An entry, fresh or stale, and the key it is under.
    Hit(cache::Entry, String),
    /// Not there; the key this request may now be filling, if any.
    Miss(Option<String>),
    /// The variant's key is over [`MAX_KEY`].
    Unkeyable,
}

impl Cache {
    fn lookup(&self, key: &str, headers: &Headers) -> Found {
        let wait = self.options.collapse_wait;
        let Some(found) = cache::lookup(key, wait) else {
            return Found::Miss(Some(key.to_string()));
        };
        if !entry::is_marker(&found) {
            return Found::Hit(found, key.to_string());
        }
        let variant = key::variant(key, &found.vary, headers);
        if variant.len() > MAX_KEY {
            return Found::Unkeyable;
        }
        match cache::lookup(&variant, wait) {
            Some(entry) if !entry::is_marker(&entry) => Found::Hit(entry, variant),
            // Markers live under primary keys only, which hold no newline;
            // whatever this is, it is not a response.
            Some(_) => Found::Miss(None),
            None => Found::Miss(Some(variant)),
        }
    }

    /// Stores `resp` for a request whose primary key is `key`; returns the
    /// keys written.
    fn store(&self, resp: &Response, key: &str, ctx: &Context) -> Result<Vec<String>, NotStored> {
        let now = clock::now_millis();
        let vary = key::vary(resp.headers());
        if vary == Vary::Anything {
            return Err(NotStored::VaryAnything);
        }
        let ttl = storable::check(resp, &self.options, now)?.ttl;
        let mut stored = entry::stored(resp, now);
        let Vary::On(names) = vary else {
            put(key, stored, ttl)?;
            return Ok(vec![key.to_string()]);
        };
        let request_headers = ctx
            .get(CONTEXT_REQUEST_HEADERS)
            .and_then(|json| decode_headers(&json))
            .ok_or(NotStored::VaryUnknown)?;
        let variant = key::variant(key, &names, &request_headers);
        if variant.len() > MAX_KEY {
            return Err(NotStored::KeyTooLong);
        }
        stored.vary = names.clone();
        // The variant first: the marker wakes the requests waiting on the
        // primary key, and they look the variant up next.
        put(&variant, stored, ttl)?;
        put(key, entry::marker(names, now), ttl)?;
        Ok(vec![variant, key.to_string()])
    }

    /// Looks `primary` up for `req`: `Err` with the answer when a fresh entry
    /// (or a bypass) settles it; else the key this request fills, if any. A
    /// stale entry with a validator turns `req` into its revalidation.
    fn serve_or_fill(
        &self,
        primary: &str,
        head: bool,
        req: &mut Request,
        ctx: &mut Context,
    ) -> Result<Option<String>, Action> {
        match self.lookup(primary, req.headers()) {
            Found::Hit(entry, found_at) => {
                let now = clock::now_millis();
                if storable::is_fresh(&entry.headers, &self.options, entry.stored_at_ms, now) {
                    return Err(self.hit(entry, head, req, ctx));
                }
                // Stale: asked about with its validators, or fetched anew
                // (HEAD always is).
                if !head && storable::has_validator(&entry.headers) {
                    self.revalidate(req, ctx, &entry, found_at);
                }
                Ok(None)
            }
            Found::Miss(fill) => Ok(fill),
            Found::Unkeyable => Err(bypass(ctx)),
        }
    }

    /// Stores a missed request's response under `key` (or releases the
    /// fill), and answers the client's held-back conditions from it.
    fn store_miss(&self, resp: &mut Response, key: &str, ctx: &Context) {
        let written = match self.store(resp, key, ctx) {
            Ok(written) => written,
            Err(reason) => {
                log::debug(&format!("cache: not stored ({reason:?}): {key}"));
                Vec::new()
            }
        };
        if let Some(fill) = ctx.get(CONTEXT_FILL)
            && !written.contains(&fill)
        {
            cache::release(&fill);
        }
        // The client's own conditions, held back while revalidating, apply
        // to the new response.
        if resp.status() == 200
            && held_conditions(ctx).is_some_and(|c| c.not_modified(resp.headers()))
        {
            revalidation::into_not_modified(resp);
        }
    }

    /// Answers a request from a fresh `entry`.
    fn hit(&self, entry: cache::Entry, head: bool, req: &Request, ctx: &mut Context) -> Action {
        ctx.set(CONTEXT_STATUS, HIT);
        let mut answer = entry::answer(entry, head, clock::now_millis());
        self.finish(&mut answer, Conditions::of(req.headers()).as_ref());
        Action::Respond(answer)
    }

    /// What every answer of the cache gets last: a `304` when the client's
    /// conditions say it has this response, and no targeted fields when
    /// they are stripped.
    fn finish(&self, answer: &mut Response, conditions: Option<&Conditions>) {
        if answer.status() == 200 && conditions.is_some_and(|c| c.not_modified(answer.headers())) {
            revalidation::into_not_modified(answer);
        }
        self.strip_targeted(answer);
    }

    fn strip_targeted(&self, response: &mut Response) {
        if !self.options.strip_targeted {
            return;
        }
        for name in &self.options.targeted {
            if response.headers().contains(name) {
                response.headers_mut().remove(name);
            }
        }
    }

    /// Sends `req` upstream as the conditional request that revalidates the
    /// stale `entry` found under `found_at`.
    fn revalidate(
        &self,
        req: &mut Request,
        ctx: &mut Context,
        entry: &cache::Entry,
        found_at: String,
    ) {
        if let Some(json) =
            Conditions::of(req.headers()).and_then(|c| serde_json::to_string(&c).ok())
        {
            ctx.set(CONTEXT_CONDITIONS, json);
        }
        revalidation::make_conditional(req, &entry.headers);
        if let Some(json) =
            Conditions::of(req.headers()).and_then(|c| serde_json::to_string(&c).ok())
        {
            ctx.set(CONTEXT_VALIDATORS, json);
        }
        if let Some(id) = req.headers().get("x-request-id") {
            ctx.set(CONTEXT_REQUEST_ID, id);
        }
        ctx.set(CONTEXT_REVALIDATE, found_at);
    }

    /// Answers a revalidation's `304`: the entry under `found_at`, its
    /// headers refreshed from the `304` (and stored so), becomes the answer.
    /// When the entry is gone meanwhile, or the `304` does not validate it,
    /// `resp` is left as it is and the caller decides.
    fn refresh(&self, resp: &mut Response, found_at: &str, ctx: &Context) -> Revalidation {
        let Some(stored) =
            cache::lookup(found_at, std::time::Duration::ZERO).filter(|e| !entry::is_marker(e))
        else {
            log::warn(&format!("cache: revalidated entry gone: {found_at}"));
            return Revalidation::Gone;
        };
        let now = clock::now_millis();
        let updates = entry::stored_headers(resp.headers());
        if !revalidation::validates(&stored.headers, &updates) {
            log::warn(&format!(
                "cache: a 304 with another ETag validates nothing: {found_at}"
            ));
            return Revalidation::Unvalidated;
        }
        let refreshed = revalidation::refreshed(stored, &updates, now);
        self.restore(&refreshed, found_at, ctx.get(CONTEXT_KEY).as_deref(), now);
        let mut answer = entry::answer(refreshed, false, now);
        self.finish(&mut answer, held_conditions(ctx).as_ref());
        *resp = answer;
        Revalidation::Refreshed
    }

    /// Answers a revalidation's `304` that refreshed nothing. The client
    /// whose own conditions the `304` meets gets it; any other client asked
    /// for a body the cache no longer has (or cannot vouch for), so it gets
    /// an error, never a bodiless `304` nor an unvalidated stale body: `503`
    /// with `Retry-After: 0` when the entry was gone (a retry is a plain
    /// miss), `502` when the upstream's `304` names another representation
    /// (the entry is dropped, so a retry fetches it in full).
    fn unrevalidated(
        &self,
        resp: &mut Response,
        outcome: &Revalidation,
        found_at: &str,
        ctx: &Context,
    ) {
        if matches!(outcome, Revalidation::Unvalidated) {
            cache::purge(found_at);
        }
        let mut validators = resp.headers().clone();
        if let Some(sent) = ctx
            .get(CONTEXT_VALIDATORS)
            .and_then(|json| serde_json::from_str::<Conditions>(&json).ok())
        {
            // The validators sent stand for the representation a `304`
            // without its own is about.
            if !validators.contains("etag")
                && let Some(etag) = sent.if_none_match
            {
                validators.set("etag", etag);
            }
            if !validators.contains("last-modified")
                && let Some(last_modified) = sent.if_modified_since
            {
                validators.set("last-modified", last_modified);
            }
        }
        if held_conditions(ctx).is_some_and(|c| c.not_modified(&validators)) {
            return;
        }
        let mut request = Request::new("GET", "/");
        if let Some(id) = ctx.get(CONTEXT_REQUEST_ID) {
            request.headers_mut().set("x-request-id", id);
        }
        let mut answer = match outcome {
            Revalidation::Unvalidated => Response::error(
                502,
                "cache: the upstream's 304 does not match the stored response",
                &request,
            ),
            _ => Response::error(
                503,
                "cache: the stored response being revalidated is gone; retry",
                &request,
            )
            .with_header("retry-after", "0"),
        };
        // Set through the setter: a body only built in is not sent back.
        let body = answer.body().map(<[u8]>::to_vec);
        answer.set_body(body);
        *resp = answer;
    }

    /// Stores a refreshed entry again under `found_at` (and the Vary marker
    /// under `primary`, so it outlives the variant).
    fn restore(&self, refreshed: &cache::Entry, found_at: &str, primary: Option<&str>, now: u64) {
        let ttl = match storable::storage(&refreshed.headers, &self.options, now) {
            Ok(storage) => storage.ttl,
            Err(reason) => {
                log::debug(&format!(
                    "cache: refreshed entry not stored ({reason:?}): {found_at}"
                ));
                return;
            }
        };
        let _ = cache::put(found_at, refreshed.clone(), ttl);
        if let Some(primary) = primary.filter(|p| *p != found_at && !refreshed.vary.is_empty()) {
            let _ = cache::put(primary, entry::marker(refreshed.vary.clone(), now), ttl);
        }
    }

    /// Invalidates the URI an unsafe request targeted and the same-origin
    /// URIs its response's `Location` and `Content-Location` name.
    fn invalidate(&self, origin: &Origin, headers: &Headers) {
        let mut targets = vec![key::target(
            &origin.authority,
            &origin.path,
            &origin.query,
            &self.options,
        )];
        for name in ["location", "content-location"] {
            if let Some(target) = headers
                .get(name)
                .and_then(|reference| origin.target_of(reference, &self.options))
                && !targets.contains(&target)
            {
                targets.push(target);
            }
        }
        for target in &targets {
            invalidation::invalidate(target);
        }
    }
}

fn put(key: &str, entry: cache::Entry, ttl: Duration) -> Result<(), NotStored> {
    cache::put(key, entry, ttl).map_err(NotStored::Refused)
}

/// The client's conditions, held back while the cache revalidates.
fn held_conditions(ctx: &Context) -> Option<Conditions> {
    ctx.get(CONTEXT_CONDITIONS)
        .and_then(|json| serde_json::from_str(&json).ok())
}

/// Keeps an unsafe request's URI for its response phase.
fn remember_origin(req: &Request, ctx: &mut Context) {
    let origin = Origin {
        authority: req.authority().to_string(),
        path: req.path().to_string(),
        query: req.query().to_string(),
    };
    ctx.set(CONTEXT_INVALIDATE, origin.encode());
}

fn bypass(ctx: &mut Context) -> Action {
    ctx.set(CONTEXT_STATUS, BYPASS);
    Action::Continue
}

/// Whether the client asks for a fresh copy (`no-cache` or `max-age=0`).
fn wants_refresh(headers: &Headers) -> bool {
    headers
        .get_all("cache-control")
        .flat_map(|value| value.split(','))
        .map(|directive| directive.trim().to_ascii_lowercase())
        .any(|directive| directive == "no-cache" || directive == "max-age=0")
}

/// Whether some header is not UTF-8: the SDK cannot read it, so it could not
/// be keyed or varied on, yet the upstream would see it.
fn has_unreadable_headers(headers: &Headers) -> bool {
    headers.iter().count() != headers.len()
}

fn encode_headers(headers: &Headers) -> Option<String> {
    let pairs: Vec<(&str, &str)> = headers.iter().collect();
    serde_json::to_string(&pairs)
        .ok()
        .filter(|json| json.len() <= CONTEXT_VALUE_CAP)
}

fn decode_headers(json: &str) -> Option<Headers> {
    let pairs: Vec<(String, String)> = serde_json::from_str(json).ok()?;
    let mut headers = Headers::new();
    for (name, value) in pairs {
        headers.append(&name, value);
    }
    Some(headers)
}

impl Plugin for Cache {
    const NAME: &'static str = "cache";

    // A body over the entry's `max_body` cannot be stored, but it is no reason
    // to fail the request: it streams by and `on_response` sees no body.
    fn needs(&self) -> Needs {
        Needs::REQUEST | Needs::RESPONSE | Needs::RESPONSE_BODY | Needs::LARGE_BODIES_PASS
    }

    fn init(config: Config) -> Result<Self, String> {
        Ok(Cache {
            options: Options::from_config(&config)?,
        })
    }

    fn on_request(&self, req: &mut Request, ctx: &mut Context) -> Action {
        let head = match req.method() {
            "GET" => false,
            "HEAD" if self.options.head => true,
            method => {
                if invalidation::is_unsafe(method) {
                    remember_origin(req, ctx);
                }
                return bypass(ctx);
            }
        };
        if !self.options.cache_authorized && req.headers().contains("authorization") {
            return bypass(ctx);
        }
        if has_unreadable_headers(req.headers()) {
            return bypass(ctx);
        }
        key::sanitise(req, &self.options);
        let consumer = ctx.get(CONTEXT_CONSUMER);
        let target = key::target(req.authority(), req.path(), req.query(), &self.options);
        let primary = invalidation::storage_key(
            &key::primary(req, &self.options, consumer.as_deref()),
            invalidation::generation(&target),
        );
        if primary.len() > MAX_KEY {
            return bypass(ctx);
        }
        let refresh =
            wants_refresh(req.headers()) && self.options.refresh.allows(consumer.as_deref());
        let fill = if refresh {
            // Straight to the upstream; the new response replaces the entry.
            None
        } else {
            match self.serve_or_fill(&primary, head, req, ctx) {
                Ok(fill) => fill,
                Err(answer) => return answer,
            }
        };
        ctx.set(CONTEXT_STATUS, MISS);
        if head {
            // A HEAD response has no body to store: let waiting GETs fetch.
            if let Some(fill) = fill {
                cache::release(&fill);
            }
            return Action::Continue;
        }
        ctx.set(CONTEXT_KEY, primary);
        if let Some(fill) = fill {
            ctx.set(CONTEXT_FILL, fill);
        }
        if let Some(json) = encode_headers(req.headers()) {
            ctx.set(CONTEXT_REQUEST_HEADERS, json);
        }
        Action::Continue
    }

    fn on_response(&self, _req: &Request, resp: &mut Response, ctx: &mut Context) {
        // No status: the request phase did not run (it failed and the entry
        // says `on_error = "continue"`).
        let Some(status) = ctx.get(CONTEXT_STATUS) else {
            return;
        };
        if invalidation::invalidates(resp.status())
            && let Some(origin) = ctx.get(CONTEXT_INVALIDATE).and_then(|o| Origin::decode(&o))
        {
            self.invalidate(&origin, resp.headers());
        }
        let mut status = status;
        if status == MISS
            && resp.status() == 304
            && let Some(found_at) = ctx.get(CONTEXT_REVALIDATE)
        {
            match self.refresh(resp, &found_at, ctx) {
                Revalidation::Refreshed => {
                    status = REVALIDATED.to_string();
                    ctx.set(CONTEXT_STATUS, REVALIDATED);
                }
                outcome => self.unrevalidated(resp, &outcome, &found_at, ctx),
            }
        } else if status == MISS
            && let Some(key) = ctx.get(CONTEXT_KEY)
        {
            self.store_miss(resp, &key, ctx);
        }
        // Every answer that passes, stored or not (BYPASS, HEAD misses).
        self.strip_targeted(resp);
        resp.headers_mut().set("x-cache", status);
    }
}

plugin_sdk::export!(Cache);
