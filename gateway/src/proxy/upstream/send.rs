//! Sending a request to an upstream: a place among its requests in flight
//! (`max_requests`), one attempt per target (HTTP/1.1 through the worker's
//! pooled client, HTTP/2 through `h2pool`), the wait for the response head
//! within `timeout`, and what a failed attempt means.
//!
//! A request whose connection cannot be opened fails over to another
//! target, up to `retries` times: nothing reached the upstream, so this is
//! safe for any method. A route's retry policy (`retry`) retries more:
//! resets, timeouts and chosen statuses, within its budget.

use super::balance;
use super::retry::{self, Attempt, Retry, Tries};
use super::settings::Balance;
use super::settings::UpstreamSettings;
use super::{Sending, Upstream};
use crate::body::{self, Body};
use crate::error::RequestError;
use crate::proxy::connect::TimedConnector;
use crate::proxy::h2pool::{H2Pool, SendError};
use http::uri::{PathAndQuery, Uri};
use http::{Request, Response, Version};
use http_body::Body as _;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::oneshot;

/// The HTTP/1.1 pooled client of one worker.
pub(super) type Http1Client = Client<TimedConnector, Body>;

/// One pooled HTTP/1.1 client per worker thread, so a pooled connection is
/// always driven by the thread that uses it (none with HTTP/2: its requests
/// go through `h2pool`).
pub(super) fn http1_clients(
    settings: &UpstreamSettings,
    connector: &TimedConnector,
) -> Vec<Http1Client> {
    let pools = if settings.http2 {
        0
    } else {
        crate::worker::count()
    };
    (0..pools)
        .map(|_| {
            Client::builder(TokioExecutor::new())
                .pool_timer(TokioTimer::new())
                .pool_idle_timeout(settings.idle_timeout)
                .pool_max_idle_per_host(settings.max_idle_connections)
                .build(connector.for_worker())
        })
        .collect()
}

/// A request in flight to an upstream with `max_requests`, until dropped.
pub(super) struct InFlight(Arc<AtomicUsize>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Why one attempt failed.
enum Failure {
    /// The connection failed: before the request went out (`sent` false,
    /// safe to retry) or after.
    /// `counts`: against the target's passive health.
    Connection {
        error: RequestError,
        sent: bool,
        counts: bool,
    },
    /// No response head came within the try's timeout.
    TimedOut(RequestError),
    /// Anything else: a bad request, the client's body failing.
    Other(RequestError),
}

impl Upstream {
    /// A place among the requests in flight: `Some(None)` without
    /// `max_requests`, `None` when they are all taken.
    pub(super) fn take_place(&self) -> Option<Option<InFlight>> {
        let Some((count, max)) = &self.in_flight else {
            return Some(None);
        };
        count
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < *max).then_some(n + 1)
            })
            .ok()
            .map(|_| Some(InFlight(count.clone())))
    }

    /// Sends `request` to the targets picked in turn until one answers, or
    /// the failure or answer is not retried (see [`Tries::next`]).
    pub(super) async fn send_within(
        &self,
        request: Request<Body>,
        path_and_query: PathAndQuery,
        how: Sending<'_>,
    ) -> Result<Response<Body>, RequestError> {
        // Counted only where a budget is measured: a shared counter bumped by
        // every request would bounce between cores for nothing.
        let _counted = how.retry.map(|_| self.budget.request());
        let key = match &self.settings.balance {
            Balance::Hash(on) => balance::hash_key(on, request.headers(), how.client),
            _ => None,
        };
        let failover = (self.settings.retries as usize).min(self.targets.len() - 1);
        let mut tries = Tries::new(failover, how.retry, request.method());
        let (mut request, replay) =
            retry::replayable(request, how.retry, tries.failover_left > 0).await?;
        // A try's own timeout only where a timeout can be retried; never
        // longer than the upstream's.
        let per_try = how.retry.and_then(|p| p.per_try_timeout);
        let timeout = match per_try {
            Some(per_try) if replay.is_some() && tries.retries_timeouts() => {
                per_try.min(self.timeout)
            }
            _ => self.timeout,
        };
        let mut tried = Vec::new();
        // The place of the retry in flight, in the budget.
        let mut _retrying = None;
        loop {
            let index = self.pick(&tried, key);
            let busy = self.busy_with(index);
            let sent = self
                .send_to(
                    index,
                    request,
                    path_and_query.clone(),
                    how.set_host,
                    timeout,
                )
                .await;
            let attempt = self.settle(index, sent, busy);
            let (Some(replay), Some(retry)) = (&replay, tries.next(&attempt)) else {
                return attempt.into_result();
            };
            if let Retry::Policy { number, policy } = retry {
                // This request's previous retry is over: its place is free.
                _retrying = None;
                let Some(place) = self.budget.retry(policy) else {
                    self.retries_refused.inc();
                    return attempt.into_result();
                };
                _retrying = Some(place);
                self.retried.inc();
                // The client never sees an answer being retried: it is read
                // during the backoff (so its connection can serve again)
                // and dropped.
                retry::back_off(attempt, policy.backoff_before(number)).await;
            } else {
                tracing::debug!(
                    upstream = %self.name,
                    target = %self.targets[index].authority,
                    "connection failed: retrying on another target"
                );
            }
            request = replay.request();
            tried.push(index);
        }
    }

    /// With least-request balancing, target `index` counts one more request
    /// in flight until the returned guard is dropped.
    fn busy_with(&self, index: usize) -> Option<InFlight> {
        if self.settings.balance != Balance::LeastRequest {
            return None;
        }
        let active = &self.targets[index].active;
        active.fetch_add(1, Ordering::AcqRel);
        Some(InFlight(active.clone()))
    }

    /// What one attempt on target `index` came to, with the target's health
    /// told: an answer counts for it, a failed connection against it. The
    /// target stays `busy` until an answer's body ends.
    fn settle(
        &self,
        index: usize,
        sent: Result<Response<Body>, Failure>,
        busy: Option<InFlight>,
    ) -> Attempt {
        match sent {
            Ok(response) => {
                self.answered(index, response.status());
                Attempt::Answered(match busy {
                    Some(busy) => response.map(|body| body::guarded(body, busy)),
                    None => response,
                })
            }
            Err(Failure::Connection {
                error,
                sent,
                counts,
            }) => {
                if counts {
                    self.failed(index);
                }
                Attempt::Failed {
                    error,
                    sent,
                    timed_out: false,
                }
            }
            Err(Failure::TimedOut(error)) => {
                self.erred(index);
                Attempt::Failed {
                    error,
                    sent: true,
                    timed_out: true,
                }
            }
            Err(Failure::Other(error)) => Attempt::Final(error),
        }
    }

    /// One attempt on target `index`.
    async fn send_to(
        &self,
        index: usize,
        request: Request<Body>,
        path_and_query: PathAndQuery,
        set_host: bool,
        timeout: Duration,
    ) -> Result<Response<Body>, Failure> {
        let request = self.address(index, request, path_and_query, set_host)?;
        // The timeout runs from the request's last byte: how long an upload
        // takes is the client's to pace (within body_read_timeout).
        let (request, sent) = if request.body().is_end_stream() {
            (request, None)
        } else {
            let (parts, body) = request.into_parts();
            let (body, sent) = body::notify_end(body);
            (Request::from_parts(parts, body), Some(sent))
        };
        if let Some(pool) = &self.h2 {
            return self.send_h2(pool, index, request, (sent, timeout)).await;
        }
        self.send_h1(request, (sent, timeout)).await
    }

    /// `request` addressed to target `index`: its URI, version and `Host`.
    fn address(
        &self,
        index: usize,
        mut request: Request<Body>,
        path_and_query: PathAndQuery,
        set_host: bool,
    ) -> Result<Request<Body>, Failure> {
        let target = &self.targets[index];
        if self.http2 {
            // The target's authority goes in `:authority`, from the URI below.
            request.headers_mut().remove(http::header::HOST);
        } else if set_host {
            request
                .headers_mut()
                .insert(http::header::HOST, target.host.clone());
        }
        let mut uri = http::uri::Parts::default();
        uri.scheme = Some(target.scheme.clone());
        uri.authority = Some(target.authority.clone());
        uri.path_and_query = Some(path_and_query);
        *request.uri_mut() = Uri::from_parts(uri)
            .map_err(|e| Failure::Other(RequestError::BadRequest(e.to_string())))?;
        *request.version_mut() = if self.http2 {
            Version::HTTP_2
        } else {
            Version::HTTP_11
        };
        Ok(request)
    }

    /// One attempt over HTTP/2, on a connection of the upstream's `pool`.
    async fn send_h2(
        &self,
        pool: &H2Pool,
        index: usize,
        request: Request<Body>,
        (sent, timeout): (Option<oneshot::Receiver<()>>, Duration),
    ) -> Result<Response<Body>, Failure> {
        let origin = &self.targets[index].origin;
        // Boxed: the HTTP/2 send is a large future (6.8 KB), and inline
        // it would grow every request's state, HTTP/1.1 ones included,
        // which is copied as the futures nest (the handler's was 12 KB).
        let sending = Box::pin(pool.send(index, origin, request));
        match within(timeout, sent, sending).await {
            None => Err(self.timed_out()),
            Some(Ok(response)) => Ok(response),
            Some(Err(SendError::Connect { error, shared })) => {
                Err(match self.classify(&*error, false) {
                    // Another request counted this failure already.
                    Failure::Connection { error, sent, .. } if shared => Failure::Connection {
                        error,
                        sent,
                        counts: false,
                    },
                    other => other,
                })
            }
            Some(Err(SendError::Send(err))) => Err(self.classify(&err, !refused_stream(&err))),
            Some(Err(SendError::Unsent(err))) => Err(self.classify(&err, false)),
        }
    }

    /// One attempt over HTTP/1.1, through the calling worker's pooled client.
    async fn send_h1(
        &self,
        request: Request<Body>,
        (sent, timeout): (Option<oneshot::Receiver<()>>, Duration),
    ) -> Result<Response<Body>, Failure> {
        let client = &self.clients[crate::worker::index() % self.clients.len()];
        match within(timeout, sent, client.request(request)).await {
            None => Err(self.timed_out()),
            Some(Err(err)) => {
                let sent = !err.is_connect();
                Err(self.classify(&err, sent))
            }
            Some(Ok(response)) => Ok(response.map(body::boxed)),
        }
    }

    fn timed_out(&self) -> Failure {
        Failure::TimedOut(RequestError::UpstreamTimeout {
            upstream: self.name.clone(),
        })
    }

    /// What a failed attempt means: `err` happened after the connection was
    /// open (`sent`: the request may have reached the target) or before.
    fn classify(&self, err: &(dyn std::error::Error + 'static), sent: bool) -> Failure {
        if let Some(error) = client_body_error(err) {
            return Failure::Other(error);
        }
        let reason = if sent {
            error_chain(err)
        } else {
            format!("connect: {}", error_chain(err))
        };
        Failure::Connection {
            error: RequestError::UpstreamUnavailable {
                upstream: self.name.clone(),
                reason,
            },
            sent,
            counts: true,
        }
    }
}

/// The client's body failing (over the limit, cut short, malformed)
/// surfaces in `err`, deep in its chain. It is not the target's fault.
pub(super) fn client_body_error(err: &(dyn std::error::Error + 'static)) -> Option<RequestError> {
    // The body's own errors sit below hyper's "user body" error: look at
    // the whole chain for them first.
    let chain = || std::iter::successors(Some(err), |cause| cause.source());
    for cause in chain() {
        if let Some(over) = cause.downcast_ref::<crate::body::TooLarge>() {
            return Some(RequestError::BodyTooLarge { limit: over.0 });
        }
        if let Some(timed_out) = cause.downcast_ref::<crate::body::ReadTimedOut>() {
            return Some(RequestError::BodyTimeout {
                timeout: timed_out.0,
            });
        }
    }
    if chain().any(|cause| {
        cause
            .downcast_ref::<hyper::Error>()
            .is_some_and(hyper::Error::is_user)
    }) {
        return Some(RequestError::BadRequest(format!(
            "the request body could not be read: {}",
            error_chain(err)
        )));
    }
    None
}

/// `sending`'s output, unless `timeout` passes first; the clock starts when
/// `sent` fires (the request body's end), or at once without one. `None`:
/// timed out.
async fn within<F: Future>(
    timeout: Duration,
    sent: Option<oneshot::Receiver<()>>,
    sending: F,
) -> Option<F::Output> {
    match sent {
        None => tokio::time::timeout(timeout, sending).await.ok(),
        Some(sent) => {
            let clock = async {
                // Dropped unsent (the body failed): the request fails anyway.
                let _ = sent.await;
                tokio::time::sleep(timeout).await;
            };
            tokio::select! {
                output = sending => Some(output),
                () = clock => None,
            }
        }
    }
}

/// Whether the target refused the stream (`REFUSED_STREAM`): HTTP/2
/// guarantees it did nothing with the request (RFC 9113, section 8.7), so
/// another target may have it.
fn refused_stream(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(err);
    while let Some(cause) = source {
        if let Some(h2) = cause.downcast_ref::<h2::Error>() {
            return h2.reason() == Some(h2::Reason::REFUSED_STREAM);
        }
        source = cause.source();
    }
    false
}

/// `err` and its causes, one after the other.
pub(super) fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_refused_stream_counts_as_not_sent() {
        let refused = h2::Error::from(h2::Reason::REFUSED_STREAM);
        assert!(refused_stream(&refused));
        let reset = h2::Error::from(h2::Reason::CANCEL);
        assert!(!refused_stream(&reset));
        let wrapped: Box<dyn std::error::Error + Send + Sync> =
            format!("{}", h2::Error::from(h2::Reason::REFUSED_STREAM)).into();
        // Text that merely says so is not the error itself.
        assert!(!refused_stream(&*wrapped));
    }
}
