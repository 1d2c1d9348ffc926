//! Mirroring (`[routes.mirror]`): a copy of a sampled share of a route's
//! requests goes to another upstream, its answer read and dropped. The copy
//! never delays or fails the client's request: it is sent from a task of
//! its own once the original's body has passed (a body is copied as it
//! streams, up to [`MAX_MIRRORED_BODY`]), and at most `max_in_flight`
//! copies are in flight per route (one over it is skipped and counted).

use super::upstream::{Sending, Upstream};
use crate::body::{self, Body};
use bytes::Bytes;
use http::request::Parts;
use http::uri::PathAndQuery;
use http::{HeaderMap, Method, Request};
use http_body::Body as _;
use prometheus_client::metrics::counter::Counter;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// The largest request body a mirrored copy carries; a request with a
/// larger one is not mirrored.
pub const MAX_MIRRORED_BODY: usize = 1024 * 1024;
/// How much of a mirror's answer is read (so its connection can be reused)
/// before the rest is dropped.
const MAX_ANSWER_READ: usize = 1024 * 1024;
/// How long a mirror's answer body may take to be read.
const ANSWER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// `[routes.mirror]`, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct MirrorSettings {
    /// The upstream the copies go to.
    pub upstream: String,
    /// The share of requests copied (above 0, at most 1).
    pub share: f64,
    /// Copies in flight at once, for the route.
    pub max_in_flight: usize,
}

/// A route's mirror, ready to copy requests.
pub struct Mirror {
    upstream: Arc<Upstream>,
    share: f64,
    max_in_flight: usize,
    in_flight: Arc<AtomicUsize>,
    counts: Counts,
}

/// The copies of a route, by outcome.
#[derive(Clone)]
struct Counts {
    /// Sent to the mirror (answered or not).
    sent: Counter,
    /// Not sent: over `max_in_flight`, a body over the cap, or the
    /// original's body failed.
    skipped: Counter,
    /// Sent, and not answered.
    failed: Counter,
}

/// A copy in flight, counted until dropped.
struct Place(Arc<AtomicUsize>);

impl Drop for Place {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// What a copy is sent with: the original's head and where it went.
struct Copy {
    method: Method,
    headers: HeaderMap,
    path_and_query: PathAndQuery,
    client: IpAddr,
}

impl Mirror {
    /// Route `route`'s mirror to `upstream`, as `settings` say.
    pub fn new(settings: &MirrorSettings, upstream: Arc<Upstream>, route: &str) -> Self {
        let family = &crate::metrics::metrics().mirrored;
        let count = |outcome: &str| {
            family
                .get_or_create(&[
                    ("route", route.to_string()),
                    ("outcome", outcome.to_string()),
                ])
                .clone()
        };
        Mirror {
            upstream,
            share: settings.share,
            max_in_flight: settings.max_in_flight,
            in_flight: Arc::new(AtomicUsize::new(0)),
            counts: Counts {
                sent: count("sent"),
                skipped: count("skipped"),
                failed: count("failed"),
            },
        }
    }

    /// Sends a copy of the request (`parts`, for `path_and_query`, from
    /// `client`) when the sample takes it and a place is free; returns the
    /// original's body, unchanged but for the copy taken as it streams.
    pub fn copy(
        &self,
        parts: &Parts,
        path_and_query: &PathAndQuery,
        body: Body,
        client: IpAddr,
    ) -> Body {
        if self.share < 1.0 && fastrand::f64() >= self.share {
            return body;
        }
        let too_large = body
            .size_hint()
            .lower()
            .try_into()
            .map_or(true, |length: usize| length > MAX_MIRRORED_BODY);
        let Some(place) = self.take_place().filter(|_| !too_large) else {
            self.counts.skipped.inc();
            return body;
        };
        let copy = Copy {
            method: parts.method.clone(),
            headers: parts.headers.clone(),
            path_and_query: path_and_query.clone(),
            client,
        };
        let (body, bytes) = if body.is_end_stream() {
            (body, None)
        } else {
            let (body, bytes) = body::copied(body, MAX_MIRRORED_BODY);
            (body, Some(bytes))
        };
        let (upstream, counts) = (self.upstream.clone(), self.counts.clone());
        tokio::spawn(async move {
            let _place = place;
            let bytes = match bytes {
                None => Bytes::new(),
                Some(bytes) => match bytes.await {
                    Ok(Some(bytes)) => bytes,
                    // Over the cap, or the original's body failed or was
                    // abandoned: nothing to send.
                    _ => {
                        counts.skipped.inc();
                        return;
                    }
                },
            };
            counts.sent.inc();
            if !send_copy(&upstream, copy, bytes).await {
                counts.failed.inc();
            }
        });
        body
    }

    /// A place among the copies in flight, if one is free.
    fn take_place(&self) -> Option<Place> {
        self.in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max_in_flight).then_some(n + 1)
            })
            .ok()
            .map(|_| Place(self.in_flight.clone()))
    }
}

/// Sends `copy` with `bytes` to `upstream` and reads its answer (up to a
/// bound) so the connection can serve again: whether it was answered.
async fn send_copy(upstream: &Upstream, copy: Copy, bytes: Bytes) -> bool {
    let body = if bytes.is_empty() {
        body::empty()
    } else {
        body::full(bytes)
    };
    let mut request = Request::new(body);
    *request.method_mut() = copy.method;
    *request.headers_mut() = copy.headers;
    let how = Sending {
        set_host: true,
        retry: None,
        client: Some(copy.client),
    };
    match upstream.send(request, copy.path_and_query, how).await {
        Ok(answer) => {
            let reading = body::drain(answer.into_body(), MAX_ANSWER_READ);
            let _ = tokio::time::timeout(ANSWER_READ_TIMEOUT, reading).await;
            true
        }
        Err(err) => {
            tracing::debug!(upstream = %upstream.name, error = %err, "mirrored request failed");
            false
        }
    }
}
