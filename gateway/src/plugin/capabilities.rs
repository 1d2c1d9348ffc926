//! The host side of `gateway:plugin/http-client` and `gateway:plugin/kv`.
//!
//! Time a call spends waiting on the network is credited back to the call's
//! CPU deadline (see `pool::new_store`), so a plugin is not killed for waiting
//! on a slow server; the request timeout bounds that wait instead.

use super::bindings::gateway::plugin::{http_client, kv, rate_limit};
use super::engine::EPOCH_TICK;
use super::host::HostState;
use super::outbound::{OutboundError, check_url};
use super::ratelimit::Policy;
use super::wire::{decode_headers, encode_headers};
use bytes::Bytes;
use http_body_util::Full;
use std::time::{Duration, Instant};

fn to_wit(error: OutboundError) -> http_client::Error {
    match error {
        OutboundError::NotAllowed(host) => http_client::Error::NotAllowed(host),
        OutboundError::InvalidRequest(why) => http_client::Error::InvalidRequest(why),
        OutboundError::Connect(why) => http_client::Error::Connect(why),
        OutboundError::Timeout => http_client::Error::Timeout,
        OutboundError::TooLarge => http_client::Error::TooLarge,
        OutboundError::Protocol(why) => http_client::Error::Protocol(why),
    }
}

impl HostState {
    /// Gives the time since `started` back to the running call's deadline.
    fn credit_io(&mut self, started: Instant) {
        let ticks = started.elapsed().as_micros() / EPOCH_TICK.as_micros().max(1);
        self.io_credit_ticks = self
            .io_credit_ticks
            .saturating_add(u64::try_from(ticks).unwrap_or(u64::MAX) + 1);
    }

    fn log_outbound(&self, url: &str, result: &Result<u16, OutboundError>, started: Instant) {
        let plugin = &*self.plugin;
        let elapsed_ms = started.elapsed().as_millis();
        match result {
            Ok(status) => tracing::debug!(plugin, url, status, elapsed_ms, "outbound request"),
            Err(error) => {
                tracing::info!(plugin, url, ?error, elapsed_ms, "outbound request failed")
            }
        }
    }
}

impl http_client::Host for HostState {
    async fn send(
        &mut self,
        request: http_client::OutgoingRequest,
    ) -> Result<http_client::IncomingResponse, http_client::Error> {
        let started = Instant::now();
        let uri = check_url(&request.url, &self.env.allowed_hosts).map_err(to_wit)?;
        let headers = decode_headers(&request.headers)
            .map_err(|e| http_client::Error::InvalidRequest(format!("bad headers: {e}")))?;
        let method = http::Method::from_bytes(request.method.as_bytes())
            .map_err(|_| http_client::Error::InvalidRequest("bad method".into()))?;
        let mut outgoing = http::Request::builder()
            .method(method)
            .uri(uri)
            .body(Full::new(Bytes::from(request.body.unwrap_or_default())))
            .map_err(|e| http_client::Error::InvalidRequest(e.to_string()))?;
        *outgoing.headers_mut() = headers;
        outgoing.headers_mut().remove(http::header::HOST);
        let timeout = request
            .timeout_ms
            .map_or(super::outbound::MAX_TIMEOUT, |ms| {
                Duration::from_millis(u64::from(ms))
            });
        let services = self.env.services.clone();
        let result = services.send(outgoing, timeout, self.env.max_body).await;
        self.credit_io(started);
        self.log_outbound(
            &request.url,
            &result.as_ref().map(|a| a.status).map_err(Clone::clone),
            started,
        );
        let answer = result.map_err(to_wit)?;
        Ok(http_client::IncomingResponse {
            status: answer.status,
            headers: encode_headers(&answer.headers),
            body: answer.body.to_vec(),
        })
    }

    async fn fetch_shared(
        &mut self,
        url: String,
        max_age_ms: u64,
    ) -> Result<(Vec<u8>, u64), http_client::Error> {
        let started = Instant::now();
        let uri = check_url(&url, &self.env.allowed_hosts).map_err(to_wit)?;
        let services = self.env.services.clone();
        let namespace = self.env.namespace.clone();
        let result = services
            .fetch_shared(
                &namespace,
                uri,
                Duration::from_millis(max_age_ms),
                self.env.max_body,
            )
            .await;
        self.credit_io(started);
        self.log_outbound(
            &url,
            &result.as_ref().map(|_| 200).map_err(Clone::clone),
            started,
        );
        let (body, age) = result.map_err(to_wit)?;
        Ok((
            body.to_vec(),
            u64::try_from(age.as_millis()).unwrap_or(u64::MAX),
        ))
    }
}

impl kv::Host for HostState {
    fn get(&mut self, key: String) -> Option<Vec<u8>> {
        self.env.services.kv_get(&self.env.namespace, key)
    }

    fn set(&mut self, key: String, value: Vec<u8>, ttl_ms: u64) -> bool {
        self.env.services.kv_set(
            &self.env.namespace,
            key,
            value,
            Duration::from_millis(ttl_ms),
        )
    }

    fn delete(&mut self, key: String) {
        self.env.services.kv_delete(&self.env.namespace, key);
    }
}

impl rate_limit::Host for HostState {
    fn check(
        &mut self,
        key: String,
        policy: rate_limit::Policy,
    ) -> Result<rate_limit::Decision, String> {
        let policy = Policy {
            limit: policy.limit,
            period: Duration::from_millis(policy.period_ms),
            burst: policy.burst,
        };
        let decision = self
            .env
            .services
            .limits
            .check(&self.env.namespace, &key, policy)?;
        let millis = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        Ok(rate_limit::Decision {
            allowed: decision.allowed,
            limit: decision.limit,
            remaining: decision.remaining,
            retry_after_ms: millis(decision.retry_after),
            reset_ms: millis(decision.reset),
        })
    }
}
