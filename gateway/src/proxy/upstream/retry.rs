//! Retries of a route's requests (`[routes.retry]`): which answers and
//! failures are retried, for which methods, how long each try may take, the
//! backoff between tries, and the retry budget that keeps retries from
//! multiplying the load on an upstream that is already failing.
//!
//! A [`RetryPolicy`] is plain, checked values (the config builds it); the
//! [`Budget`] is the per-upstream count of requests and retries in flight
//! it is measured against. A request whose body is still to come is made
//! replayable ([`Replay`]) only when it is small and its length known:
//! anything larger is sent once.

use crate::body::{self, Body};
use crate::error::RequestError;
use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body::Body as _;
use http_body_util::BodyExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// The largest request body kept to be sent again on a retry.
pub const MAX_REPLAY_BODY: u64 = 64 * 1024;
/// The most retries a policy may ask for.
pub const MAX_POLICY_RETRIES: u32 = 10;

/// `[routes.retry]`, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Tries after the first.
    pub retries: u32,
    /// Statuses retried (502, 503, 504 by default).
    pub statuses: Vec<StatusCode>,
    /// Whether a try that saw no response head in time is retried.
    pub on_timeout: bool,
    /// Time allowed each try, to its response head (the upstream's
    /// `timeout` when not given).
    pub per_try_timeout: Option<Duration>,
    /// The first backoff's ceiling; each retry doubles it, up to `max_backoff`.
    pub backoff: Duration,
    /// The largest backoff.
    pub max_backoff: Duration,
    /// Retry any method, not only the idempotent ones.
    pub any_method: bool,
    /// Retries in flight to an upstream may be at most this share of its
    /// requests in flight...
    pub budget: f64,
    /// ...or this many, whichever is more.
    pub min_retries_in_flight: usize,
}

impl RetryPolicy {
    /// Whether a request with `method` may be retried once it may have
    /// reached the upstream.
    pub fn covers(&self, method: &Method) -> bool {
        self.any_method || method.is_idempotent()
    }

    /// Whether an answer with `status` is retried.
    pub fn retries_status(&self, status: StatusCode) -> bool {
        self.statuses.contains(&status)
    }

    /// The wait before retry number `retry` (from 1): a random share of
    /// `backoff * 2^(retry-1)`, at most `max_backoff` ("full jitter"), so
    /// clients that failed together do not come back together.
    pub fn backoff_before(&self, retry: u32) -> Duration {
        let doubled = self
            .backoff
            .saturating_mul(1u32 << retry.saturating_sub(1).min(16));
        let ceiling = doubled.min(self.max_backoff);
        ceiling.mul_f64(fastrand::f64())
    }
}

/// An upstream's requests and retries in flight, which a retry budget is
/// measured against.
#[derive(Default)]
pub struct Budget {
    requests: Arc<AtomicUsize>,
    retries: Arc<AtomicUsize>,
}

/// One request or retry in flight, counted until dropped.
pub struct InFlight(Arc<AtomicUsize>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Budget {
    /// Counts a request in flight until the returned guard is dropped.
    pub fn request(&self) -> InFlight {
        self.requests.fetch_add(1, Ordering::AcqRel);
        InFlight(self.requests.clone())
    }

    /// A place for one more retry in flight, if `policy`'s budget has one:
    /// retries may be `budget` of the requests in flight, or
    /// `min_retries_in_flight`, whichever is more.
    pub fn retry(&self, policy: &RetryPolicy) -> Option<InFlight> {
        let requests = self.requests.load(Ordering::Acquire);
        let allowed = ((requests as f64) * policy.budget).ceil() as usize;
        let allowed = allowed.max(policy.min_retries_in_flight);
        self.retries
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < allowed).then_some(n + 1)
            })
            .ok()
            .map(|_| InFlight(self.retries.clone()))
    }
}

/// What a retry sends again: the request's method, headers and body.
pub struct Replay {
    method: Method,
    headers: HeaderMap,
    body: Bytes,
}

impl Replay {
    /// The request again, to send once more.
    pub fn request(&self) -> Request<Body> {
        let body = if self.body.is_empty() {
            body::empty()
        } else {
            body::full(self.body.clone())
        };
        let mut request = Request::new(body);
        *request.method_mut() = self.method.clone();
        *request.headers_mut() = self.headers.clone();
        request
    }
}

/// `request` and what a retry would send again, when one may happen
/// (`failover`: a failed connection moves on to another target, or a
/// `policy`): a request without a body always has one; with `policy`
/// covering its method, a body of a known length up to [`MAX_REPLAY_BODY`]
/// is read first to keep it. Anything else is sent once (`None`).
pub async fn replayable(
    request: Request<Body>,
    policy: Option<&RetryPolicy>,
    failover: bool,
) -> Result<(Request<Body>, Option<Replay>), RequestError> {
    if !failover && policy.is_none() {
        return Ok((request, None));
    }
    let keep = |request: &Request<Body>, body: Bytes| Replay {
        method: request.method().clone(),
        headers: request.headers().clone(),
        body,
    };
    if request.body().is_end_stream() {
        let replay = keep(&request, Bytes::new());
        return Ok((request, Some(replay)));
    }
    let small = request
        .body()
        .size_hint()
        .exact()
        .is_some_and(|length| length <= MAX_REPLAY_BODY);
    if !small || !policy.is_some_and(|p| p.covers(request.method())) {
        return Ok((request, None));
    }
    let (parts, body) = request.into_parts();
    let bytes = body
        .collect()
        .await
        .map_err(|err| body_error(&*err))?
        .to_bytes();
    let request = Request::from_parts(parts, body::full(bytes.clone()));
    let replay = keep(&request, bytes);
    Ok((request, Some(replay)))
}

/// The client's body failed while it was read to be kept for retries.
fn body_error(err: &(dyn std::error::Error + 'static)) -> RequestError {
    super::send::client_body_error(err).unwrap_or_else(|| {
        RequestError::BadRequest(format!("the request body could not be read: {err}"))
    })
}

/// What one try came to.
pub enum Attempt {
    /// The target answered (any status).
    Answered(Response<Body>),
    /// The connection failed before the request went out (`sent` false) or
    /// after, or no response head came in time (`timed_out`).
    Failed {
        error: RequestError,
        sent: bool,
        timed_out: bool,
    },
    /// Anything no other target would change (the client's body failed).
    Final(RequestError),
}

impl Attempt {
    /// What the client gets when this try is the last.
    pub fn into_result(self) -> Result<Response<Body>, RequestError> {
        match self {
            Attempt::Answered(response) => Ok(response),
            Attempt::Failed { error, .. } | Attempt::Final(error) => Err(error),
        }
    }
}

/// How much of an answer being retried is read, so its connection can be
/// used again; a longer one is dropped with its connection.
const MAX_DRAINED: usize = 64 * 1024;

/// Waits `backoff` before a retry, reading the body of the answer being
/// retried meanwhile (never longer than the backoff: a body that does not
/// end in time is dropped, and its connection with it).
pub async fn back_off(attempt: Attempt, backoff: Duration) {
    let drain = async {
        if let Attempt::Answered(answer) = attempt {
            body::drain(answer.into_body(), MAX_DRAINED).await;
        }
    };
    let _ = tokio::join!(
        tokio::time::sleep(backoff),
        tokio::time::timeout(backoff, drain)
    );
}

/// The kind of retry a failed try earns.
pub enum Retry<'p> {
    /// A connection that could not be opened: another target at once (the
    /// upstream's `retries`; nothing reached the first one).
    Failover,
    /// Retry `number` of the route's policy: within its budget, after a backoff.
    Policy {
        number: u32,
        policy: &'p RetryPolicy,
    },
}

/// The retries left to one request.
pub struct Tries<'p> {
    /// Failovers left after connections that could not be opened.
    pub failover_left: usize,
    policy: Option<&'p RetryPolicy>,
    /// Whether the policy covers the request's method.
    covered: bool,
    used: u32,
}

impl<'p> Tries<'p> {
    /// `failover` failovers, and the route's `policy` for a request with `method`.
    pub fn new(failover: usize, policy: Option<&'p RetryPolicy>, method: &Method) -> Self {
        Tries {
            failover_left: failover,
            covered: policy.is_some_and(|p| p.covers(method)),
            policy,
            used: 0,
        }
    }

    /// Whether the policy retries this request's timeouts.
    pub fn retries_timeouts(&self) -> bool {
        self.covered && self.policy.is_some_and(|p| p.on_timeout && p.retries > 0)
    }

    /// Whether `attempt` is retried, and how. A connection that could not
    /// be opened fails over (any method: nothing was sent), then counts as
    /// a policy retry; a reset, a timeout or a listed status is retried by
    /// the policy for the methods it covers.
    pub fn next(&mut self, attempt: &Attempt) -> Option<Retry<'p>> {
        let policy = self.policy;
        let wanted = match attempt {
            Attempt::Final(_) => false,
            Attempt::Failed { sent: false, .. } => {
                if self.failover_left > 0 {
                    self.failover_left -= 1;
                    return Some(Retry::Failover);
                }
                policy.is_some()
            }
            Attempt::Failed {
                timed_out: true, ..
            } => self.covered && policy.is_some_and(|p| p.on_timeout),
            Attempt::Failed { .. } => self.covered,
            Attempt::Answered(response) => {
                self.covered && policy.is_some_and(|p| p.retries_status(response.status()))
            }
        };
        let policy = policy.filter(|p| wanted && self.used < p.retries)?;
        self.used += 1;
        Some(Retry::Policy {
            number: self.used,
            policy,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            retries: 2,
            statuses: vec![StatusCode::SERVICE_UNAVAILABLE],
            on_timeout: true,
            per_try_timeout: None,
            backoff: Duration::from_millis(25),
            max_backoff: Duration::from_millis(250),
            any_method: false,
            budget: 0.2,
            min_retries_in_flight: 3,
        }
    }

    #[test]
    fn only_idempotent_methods_unless_any_method() {
        let mut p = policy();
        assert!(p.covers(&Method::GET) && p.covers(&Method::PUT) && p.covers(&Method::DELETE));
        assert!(!p.covers(&Method::POST) && !p.covers(&Method::PATCH));
        p.any_method = true;
        assert!(p.covers(&Method::POST));
    }

    #[test]
    fn backoff_grows_and_stays_under_its_ceiling() {
        let p = policy();
        for _ in 0..200 {
            assert!(p.backoff_before(1) <= Duration::from_millis(25));
            assert!(p.backoff_before(2) <= Duration::from_millis(50));
            assert!(p.backoff_before(30) <= Duration::from_millis(250));
        }
        let most = (0..200).map(|_| p.backoff_before(5)).max();
        assert!(most > Some(Duration::from_millis(100)), "{most:?}");
    }

    #[test]
    fn the_budget_is_a_share_of_requests_in_flight_or_a_floor() {
        let p = policy();
        let budget = Budget::default();
        let requests: Vec<_> = (0..20).map(|_| budget.request()).collect();
        // 20% of 20 is 4, above the floor of 3.
        let retries: Vec<_> = (0..10).filter_map(|_| budget.retry(&p)).collect();
        assert_eq!(retries.len(), 4);
        drop(retries);
        drop(requests);
        // Nothing in flight: the floor.
        let retries: Vec<_> = (0..10).filter_map(|_| budget.retry(&p)).collect();
        assert_eq!(retries.len(), 3);
    }
}
