//! The built-in `cache` plugin: stores upstream responses to GET requests in
//! the gateway's response cache and answers repeats from it, like Kong's
//! proxy-cache, Varnish or AWS API Gateway's stage cache.
//!
//! ```text
//!  on_request                                   on_response (upstream's answer)
//!  ----------                                   -----------
//!  not GET/HEAD, Authorization, ... -> BYPASS   BYPASS -> X-Cache: BYPASS
//!  strip poisoning headers, unkeyed query       MISS   -> stored if cacheable
//!  lookup(key) --hit--> answer, X-Cache: HIT              (else the fill is
//!      |                  (no response phase)              released), X-Cache: MISS
//!      +--miss--> remember the key, go upstream
//! ```
//!
//! What is stored, and for how long, follows RFC 9111 for a shared cache
//! (`storable.rs`); what makes two requests share an entry is the key
//! (`key.rs`): `GET {host}{path}?{sorted query}`, the `key_headers` and the
//! consumer. A response with `Vary` is stored as a variant, with a marker
//! under the primary key naming the headers that select it. Concurrent misses
//! of one key collapse into one upstream request (`collapse_wait`).
//!
//! The pipeline runs a plugin's response phase only for answers it did not
//! give itself (the entries before the answering one see it), so a hit never
//! reaches `on_response`; the context still says `HIT`, so were it ever
//! called, the answer would not be stored again.

mod config;
mod entry;
mod invalidation;
mod key;
mod storable;

pub use config::POISONING_HEADERS;
pub use key::MAX_KEY;

use config::Options;
use invalidation::Origin;
use key::Vary;
use plugin_sdk::consumers::CONTEXT_CONSUMER;
use plugin_sdk::{Action, Config, Context, Headers, Phases, Plugin, Request, Response};
use plugin_sdk::{cache, clock, log};
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

const HIT: &str = "HIT";
const MISS: &str = "MISS";
const BYPASS: &str = "BYPASS";

/// The host drops context values over 16 KiB; headers that large are not
/// kept, and a varying response to them is then not stored.
const CONTEXT_VALUE_CAP: usize = 16 * 1024;

/// The plugin with its checked settings.
#[derive(Debug)]
pub struct Cache {
    options: Options,
}

/// What a lookup found.
enum Found {
    Hit(cache::Entry),
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
            return Found::Hit(found);
        }
        let variant = key::variant(key, &found.vary, headers);
        if variant.len() > MAX_KEY {
            return Found::Unkeyable;
        }
        match cache::lookup(&variant, wait) {
            Some(entry) if !entry::is_marker(&entry) => Found::Hit(entry),
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
        let ttl = storable::check(resp, &self.options, now)?;
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
    if cache::put(key, entry, ttl) {
        Ok(())
    } else {
        Err(NotStored::Refused)
    }
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
    const PHASES: Phases = Phases::ALL;
    const READS_RESPONSE_BODY: bool = true;
    // A body over the entry's `max_body` cannot be stored, but it is no reason
    // to fail the request: it streams by and `on_response` sees no body.
    const PASSES_LARGE_BODIES: bool = true;

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
            match self.lookup(&primary, req.headers()) {
                Found::Hit(entry) => {
                    ctx.set(CONTEXT_STATUS, HIT);
                    return Action::Respond(entry::answer(entry, head, clock::now_millis()));
                }
                Found::Miss(fill) => fill,
                Found::Unkeyable => return bypass(ctx),
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

    fn on_response(&self, resp: &mut Response, ctx: &mut Context) {
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
        if status == MISS
            && let Some(key) = ctx.get(CONTEXT_KEY)
        {
            let written = match self.store(resp, &key, ctx) {
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
        }
        resp.headers_mut().set("x-cache", status);
    }
}

plugin_sdk::export!(Cache);
