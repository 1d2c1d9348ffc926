//! The built-in `rate-limit` plugin: several limits per route, each counted
//! per consumer, client IP, header value or route (or a combination), on the
//! gateway's `rate-limit` counters (GCRA).
//!
//! A consumer on a usage plan (`[usage_plans]`) is also held to the plan's
//! rate and calendar quota (per day, week or month); a quota only counts the
//! requests the rate limits let through.
//!
//! A refused request gets 429 with `Retry-After`, the IETF `RateLimit-Limit`,
//! `RateLimit-Remaining` and `RateLimit-Reset` headers and a JSON body; an
//! allowed one carries the same `RateLimit-*` headers (for the tightest limit)
//! on its response. Those are set from the request phase with
//! `Context::set_response_header`, so the plugin has no response hook: one call
//! per request instead of two.

use plugin_sdk::consumers::{self, CONTEXT_CONSUMER, UsagePlan};
use plugin_sdk::rate_limit::{self, Decision, Policy, QuotaDecision};
use plugin_sdk::{Action, Config, Context, Needs, Plugin, Request, Response, log};
use serde::Deserialize;
use std::cell::RefCell;
use std::collections::HashMap;
use std::time::Duration;

/// Consumers whose plan an instance remembers before starting over.
const MAX_REMEMBERED_PLANS: usize = 10_000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitConfig {
    /// `COUNT/PERIOD`: `"10/s"`, `"100/minute"`, `"1000/hour"`, `"5/10s"`.
    rate: String,
    /// Requests allowed at once (default: the rate's count).
    burst: Option<u32>,
    /// What is counted: `consumer`, `ip`, `route`, `header:NAME`; several
    /// make one combined key. Default `["consumer"]`, which falls back to the
    /// client IP for anonymous requests.
    #[serde(default = "default_by")]
    by: Vec<String>,
}

fn default_by() -> Vec<String> {
    vec!["consumer".to_string()]
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    #[serde(default)]
    limits: Vec<LimitConfig>,
    /// Hold consumers to their usage plan's rate and quota.
    #[serde(default = "yes")]
    usage_plans: bool,
    /// Add `RateLimit-*` headers to allowed responses.
    #[serde(default = "yes")]
    headers: bool,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Consumer,
    Ip,
    Route,
    Header(String),
}

#[derive(Debug)]
struct Limit {
    policy: Policy,
    by: Vec<Part>,
}

/// The plugin with its checked limits.
#[derive(Debug)]
pub struct RateLimit {
    limits: Vec<Limit>,
    headers: bool,
    usage_plans: bool,
    /// Each consumer's plan, looked up once per instance (the consumers of a
    /// config never change; a new config makes new instances).
    plans: RefCell<HashMap<String, Option<UsagePlan>>>,
}

/// `COUNT/PERIOD` as a policy with `burst` (default: COUNT).
fn parse_rate(text: &str, burst: Option<u32>) -> Result<Policy, String> {
    let bad = || {
        format!(
            "rate-limit: invalid rate `{text}`: expected COUNT/PERIOD such as \"10/s\", \"100/minute\" or \"5/10s\""
        )
    };
    let (count, period) = text.split_once('/').ok_or_else(bad)?;
    let limit: u32 = count.trim().parse().map_err(|_| bad())?;
    let period = period.trim();
    let unit_secs = |unit: &str| match unit {
        "s" | "sec" | "second" => Some(1),
        "m" | "min" | "minute" => Some(60),
        "h" | "hour" => Some(3600),
        "d" | "day" => Some(86_400),
        _ => None,
    };
    let period = match unit_secs(period) {
        Some(secs) => Duration::from_secs(secs),
        None => {
            let digits = period.trim_end_matches(|c: char| c.is_ascii_alphabetic());
            let n: u64 = digits.parse().map_err(|_| bad())?;
            let unit = &period[digits.len()..];
            match unit {
                "ms" => Duration::from_millis(n),
                _ => Duration::from_secs(n * unit_secs(unit).ok_or_else(bad)?),
            }
        }
    };
    if limit == 0 || period.is_zero() || period > Duration::from_secs(86_400) {
        return Err(format!(
            "rate-limit: invalid rate `{text}`: the count must be at least 1 and the period between 1ms and a day"
        ));
    }
    let burst = burst.unwrap_or(limit);
    if burst == 0 {
        return Err("rate-limit: burst must be at least 1".into());
    }
    Ok(Policy {
        limit,
        period,
        burst,
    })
}

fn parse_part(text: &str) -> Result<Part, String> {
    match text {
        "consumer" => Ok(Part::Consumer),
        "ip" => Ok(Part::Ip),
        "route" => Ok(Part::Route),
        _ => match text.strip_prefix("header:") {
            Some(name)
                if !name.is_empty()
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') =>
            {
                Ok(Part::Header(name.to_ascii_lowercase()))
            }
            _ => Err(format!(
                "rate-limit: cannot limit by `{text}`: expected consumer, ip, route or header:NAME"
            )),
        },
    }
}

/// The client's IP without the port (`[::1]:5000` -> `::1`).
fn client_ip(addr: &str) -> &str {
    match addr.rsplit_once(':') {
        Some((ip, _)) => ip.trim_start_matches('[').trim_end_matches(']'),
        None => addr,
    }
}

impl RateLimit {
    fn key(&self, index: usize, limit: &Limit, req: &Request, ctx: &Context) -> String {
        let mut key = format!("{}|{index}", req.route());
        for part in &limit.by {
            key.push('|');
            match part {
                Part::Consumer => match ctx.get(CONTEXT_CONSUMER) {
                    Some(consumer) => {
                        key.push_str("c:");
                        key.push_str(&consumer);
                    }
                    None => {
                        key.push_str("ip:");
                        key.push_str(client_ip(req.client_addr()));
                    }
                },
                Part::Ip => {
                    key.push_str("ip:");
                    key.push_str(client_ip(req.client_addr()));
                }
                Part::Route => key.push_str("route"),
                Part::Header(name) => {
                    key.push_str("h:");
                    key.push_str(req.headers().get(name).unwrap_or("-"));
                }
            }
        }
        // Keys stay within the host's cap whatever a client sends.
        if key.len() > 500 {
            let mut end = 500;
            while !key.is_char_boundary(end) {
                end -= 1;
            }
            key.truncate(end);
        }
        key
    }
}

impl RateLimit {
    /// The request's consumer and their usage plan, when plans are enforced.
    fn plan(&self, ctx: &Context) -> Option<(String, UsagePlan)> {
        if !self.usage_plans {
            return None;
        }
        let consumer = ctx.get(CONTEXT_CONSUMER)?;
        let mut plans = self.plans.borrow_mut();
        if plans.len() >= MAX_REMEMBERED_PLANS {
            plans.clear();
        }
        let plan = plans
            .entry(consumer.to_string())
            .or_insert_with(|| {
                consumers::get(&consumer)
                    .and_then(|c| c.plan)
                    .and_then(|name| consumers::plan(&name))
            })
            .clone()?;
        Some((consumer.to_string(), plan))
    }
}

/// A decision, or nothing when the host refused the check (logged; the
/// request is let through, since policies were checked at init).
fn checked(result: Result<Decision, String>) -> Option<Decision> {
    result
        .map_err(|error| log::warn(&format!("rate-limit: check failed: {error}")))
        .ok()
}

fn refusal(req: &Request, error: &str, decision: &Decision) -> Response {
    let response = Response::error(429, error, req).with_header(
        "retry-after",
        secs_ceil(decision.retry_after).max(1).to_string(),
    );
    rate_limit_headers(response, decision)
}

fn quota_refusal(req: &Request, decision: &QuotaDecision) -> Response {
    let reset = secs_ceil(decision.reset).max(1).to_string();
    Response::error(429, "quota exceeded", req)
        .with_header("retry-after", reset.clone())
        .with_header("ratelimit-limit", decision.limit.to_string())
        .with_header("ratelimit-remaining", "0")
        .with_header("ratelimit-reset", reset)
}

fn secs_ceil(d: Duration) -> u64 {
    d.as_millis().div_ceil(1000).try_into().unwrap_or(u64::MAX)
}

fn rate_limit_headers(response: Response, d: &Decision) -> Response {
    response
        .with_header("ratelimit-limit", d.limit.to_string())
        .with_header("ratelimit-remaining", d.remaining.to_string())
        .with_header("ratelimit-reset", secs_ceil(d.reset).to_string())
}

impl Plugin for RateLimit {
    const NAME: &'static str = "rate-limit";

    fn needs(&self) -> Needs {
        Needs::REQUEST
    }

    fn init(config: Config) -> Result<Self, String> {
        let settings: Settings = config.parse()?;
        if settings.limits.is_empty() && !settings.usage_plans {
            return Err(
                "rate-limit: limits must list at least one limit (or usage_plans must be on)"
                    .into(),
            );
        }
        let mut limits = Vec::new();
        for limit in settings.limits {
            let by = limit
                .by
                .iter()
                .map(|p| parse_part(p))
                .collect::<Result<Vec<_>, _>>()?;
            if by.is_empty() {
                return Err(
                    "rate-limit: `by` must name at least one of consumer, ip, route, header:NAME"
                        .into(),
                );
            }
            limits.push(Limit {
                policy: parse_rate(&limit.rate, limit.burst)?,
                by,
            });
        }
        Ok(RateLimit {
            limits,
            headers: settings.headers,
            usage_plans: settings.usage_plans,
            plans: RefCell::new(HashMap::new()),
        })
    }

    fn on_request(&self, req: &mut Request, ctx: &mut Context) -> Action {
        let mut tightest: Option<Decision> = None;
        let mut refused: Option<Decision> = None;
        let mut note = |decision: Decision| {
            if !decision.allowed {
                if refused.is_none_or(|r| decision.retry_after > r.retry_after) {
                    refused = Some(decision);
                }
            } else if tightest.is_none_or(|t| decision.remaining < t.remaining) {
                tightest = Some(decision);
            }
        };
        for (index, limit) in self.limits.iter().enumerate() {
            let key = self.key(index, limit, req, ctx);
            if let Some(decision) = checked(rate_limit::check(&key, limit.policy)) {
                note(decision);
            }
        }
        let plan = self.plan(ctx);
        if let (Some((consumer, plan)), Some(policy)) =
            (&plan, plan.as_ref().and_then(|p| p.1.rate))
            && let Some(decision) = checked(rate_limit::check(
                &format!("plan:{}:{consumer}", plan.name),
                policy,
            ))
        {
            note(decision);
        }
        if let Some(decision) = refused {
            return Action::Respond(refusal(req, "too many requests", &decision));
        }
        if let Some((consumer, plan)) = &plan
            && let Some(quota) = plan.quota
        {
            match rate_limit::count(&format!("quota:{}:{consumer}", plan.name), quota) {
                Ok(decision) if !decision.allowed => {
                    return Action::Respond(quota_refusal(req, &decision));
                }
                Ok(_) => {}
                Err(error) => log::warn(&format!("rate-limit: quota count failed: {error}")),
            }
        }
        if self.headers
            && let Some(d) = tightest
        {
            let values = [
                ("ratelimit-limit", d.limit.to_string()),
                ("ratelimit-remaining", d.remaining.to_string()),
                ("ratelimit-reset", secs_ceil(d.reset).to_string()),
            ];
            for (name, value) in values {
                if let Err(error) = ctx.set_response_header(name, &value) {
                    log::warn(&format!("rate-limit: cannot set {name}: {error}"));
                }
            }
        }
        Action::Continue
    }
}

plugin_sdk::export!(RateLimit);

#[cfg(test)]
mod tests {
    use super::*;

    fn plugin(json: &str) -> RateLimit {
        RateLimit::init(Config::from_json(json)).unwrap_or_else(|e| panic!("{e}"))
    }

    fn status(action: &Action) -> u16 {
        match action {
            Action::Respond(response) => response.status(),
            _ => 200,
        }
    }

    #[test]
    fn exactly_the_limit_passes_then_429_with_headers() {
        let limiter = plugin(r#"{"limits": [{"rate": "3/minute", "by": ["ip"]}]}"#);
        let mut ctx = Context::new();
        for _ in 0..3 {
            let mut req = Request::new("GET", "/x");
            assert_eq!(status(&limiter.on_request(&mut req, &mut ctx)), 200);
        }
        let mut req = Request::new("GET", "/x");
        match limiter.on_request(&mut req, &mut ctx) {
            Action::Respond(response) => {
                assert_eq!(response.status(), 429);
                assert_eq!(response.headers().get("retry-after"), Some("20"));
                assert_eq!(response.headers().get("ratelimit-limit"), Some("3"));
                assert_eq!(response.headers().get("ratelimit-remaining"), Some("0"));
            }
            _ => panic!("the fourth request passed"),
        }
    }

    #[test]
    fn consumers_and_headers_are_counted_apart() {
        let limiter =
            plugin(r#"{"limits": [{"rate": "1/minute", "by": ["consumer", "header:x-tenant"]}]}"#);
        let mut alice = Context::new();
        alice.set("consumer", "alice");
        let mut bob = Context::new();
        bob.set("consumer", "bob");
        let req = |tenant: &str| Request::new("GET", "/y").with_header("x-tenant", tenant);
        assert_eq!(status(&limiter.on_request(&mut req("t1"), &mut alice)), 200);
        assert_eq!(status(&limiter.on_request(&mut req("t1"), &mut alice)), 429);
        assert_eq!(status(&limiter.on_request(&mut req("t2"), &mut alice)), 200);
        assert_eq!(status(&limiter.on_request(&mut req("t1"), &mut bob)), 200);
    }

    #[test]
    fn allowed_responses_carry_the_tightest_limit() {
        let limiter = plugin(
            r#"{"limits": [{"rate": "100/minute", "by": ["route"]}, {"rate": "5/s", "burst": 2, "by": ["route"]}]}"#,
        );
        let mut ctx = Context::new();
        let mut req = Request::new("GET", "/z");
        assert_eq!(status(&limiter.on_request(&mut req, &mut ctx)), 200);
        let set = ctx.response_headers();
        assert!(
            set.contains(&("ratelimit-limit".into(), "2".into())),
            "{set:?}"
        );
        assert!(
            set.contains(&("ratelimit-remaining".into(), "1".into())),
            "{set:?}"
        );
        assert!(
            set.contains(&("ratelimit-reset".into(), "1".into())),
            "{set:?}"
        );
    }

    fn register_plan_consumer(name: &str, plan: UsagePlan) {
        consumers::register(
            consumers::Consumer {
                name: name.to_string(),
                plan: Some(plan.name.clone()),
                ..Default::default()
            },
            &[],
        );
        consumers::register_plan(plan);
    }

    #[test]
    fn a_plan_quota_counts_only_requests_the_rate_lets_through() {
        use plugin_sdk::rate_limit::{Quota, QuotaPeriod};
        register_plan_consumer(
            "carol",
            UsagePlan {
                name: "bronze".into(),
                rate: Some(Policy {
                    limit: 2,
                    period: Duration::from_secs(60),
                    burst: 2,
                }),
                quota: Some(Quota {
                    limit: 3,
                    period: QuotaPeriod::Month,
                }),
            },
        );
        let limiter = plugin(r#"{}"#);
        let mut ctx = Context::new();
        ctx.set("consumer", "carol");
        let mut statuses = Vec::new();
        for _ in 0..3 {
            statuses.push(status(
                &limiter.on_request(&mut Request::new("GET", "/"), &mut ctx),
            ));
        }
        // Two pass the plan's rate; the third is over the rate, not counted
        // against the quota.
        assert_eq!(statuses, [200, 200, 429]);
        // A second consumer on the plan has a quota of their own.
        register_plan_consumer(
            "dave",
            UsagePlan {
                name: "tiny".into(),
                rate: None,
                quota: Some(Quota {
                    limit: 2,
                    period: QuotaPeriod::Day,
                }),
            },
        );
        let mut dave = Context::new();
        dave.set("consumer", "dave");
        let mut outcomes = Vec::new();
        for _ in 0..3 {
            outcomes.push(limiter.on_request(&mut Request::new("GET", "/"), &mut dave));
        }
        assert_eq!(
            outcomes.iter().map(status).collect::<Vec<_>>(),
            [200, 200, 429]
        );
        match &outcomes[2] {
            Action::Respond(response) => {
                assert_eq!(response.headers().get("ratelimit-limit"), Some("2"));
                let body = String::from_utf8_lossy(response.body().unwrap_or_default());
                assert!(body.contains("quota exceeded"), "{body}");
            }
            _ => panic!("the third request passed"),
        }
        // Anonymous requests and consumers without a plan are not held to one.
        let mut anonymous = Context::new();
        for _ in 0..5 {
            assert_eq!(
                status(&limiter.on_request(&mut Request::new("GET", "/"), &mut anonymous)),
                200
            );
        }
    }

    #[test]
    fn bad_configs_are_refused() {
        for (json, message) in [
            (
                r#"{"limits": [], "usage_plans": false}"#,
                "rate-limit: limits must list at least one limit (or usage_plans must be on)",
            ),
            (
                r#"{"limits": [{"rate": "10 per second"}]}"#,
                "rate-limit: invalid rate `10 per second`: expected COUNT/PERIOD such as \"10/s\", \"100/minute\" or \"5/10s\"",
            ),
            (
                r#"{"limits": [{"rate": "0/s"}]}"#,
                "rate-limit: invalid rate `0/s`: the count must be at least 1 and the period between 1ms and a day",
            ),
            (
                r#"{"limits": [{"rate": "1/s", "by": ["cookie"]}]}"#,
                "rate-limit: cannot limit by `cookie`: expected consumer, ip, route or header:NAME",
            ),
        ] {
            assert_eq!(
                RateLimit::init(Config::from_json(json)).err().as_deref(),
                Some(message)
            );
        }
        assert_eq!(
            parse_rate("5/10s", None).map(|p| p.period),
            Ok(Duration::from_secs(10))
        );
        assert_eq!(
            parse_rate("5/250ms", None).map(|p| p.period),
            Ok(Duration::from_millis(250))
        );
    }
}
