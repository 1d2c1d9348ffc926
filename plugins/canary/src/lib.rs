//! The built-in `canary` plugin: sends some requests of a route to its
//! canary upstream (one of the route's `upstreams`), as Kong's canary and
//! Envoy's header and runtime-fraction routing do, for the common cases:
//!
//! - a header with one of some values (`x-canary: always`);
//! - a cookie with one of some values (a tester's `canary=1`);
//! - some consumers, or consumers in some groups (after an authentication
//!   entry put them in the context);
//! - a percentage of the rest, sticky on a key (`header:NAME`,
//!   `cookie:NAME`, `consumer` or `ip`) so one user stays on one side as the
//!   percentage grows, or drawn per request without one.
//!
//! A request that none of these send to the canary is left where it was
//! going: the route's first upstream, or its weighted draw.

use plugin_sdk::consumers::{CONTEXT_CONSUMER, CONTEXT_GROUPS};
use plugin_sdk::{Action, Config, Context, Needs, Plugin, Request};
use serde::Deserialize;

/// The percentage's resolution: buckets of a hundredth of a percent.
const BUCKETS: u64 = 10_000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    /// The canary upstream.
    upstream: String,
    #[serde(default)]
    header: Option<Matcher>,
    #[serde(default)]
    cookie: Option<Matcher>,
    #[serde(default)]
    consumers: Vec<String>,
    #[serde(default)]
    groups: Vec<String>,
    /// The share of the other requests sent to the canary, 0 to 100.
    #[serde(default)]
    percentage: Option<f64>,
    /// What keeps a client on one side: `header:NAME`, `cookie:NAME`,
    /// `consumer` or `ip`.
    #[serde(default)]
    sticky_on: Option<String>,
}

/// A header or cookie, and the values that send a request to the canary.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Matcher {
    name: String,
    values: Vec<String>,
}

/// What a sticky percentage hashes.
#[derive(Debug, PartialEq)]
enum Sticky {
    Header(String),
    Cookie(String),
    Consumer,
    Ip,
}

/// The plugin with its checked settings.
#[derive(Debug)]
pub struct Canary {
    upstream: String,
    header: Option<Matcher>,
    cookie: Option<Matcher>,
    consumers: Vec<String>,
    groups: Vec<String>,
    /// Buckets (of [`BUCKETS`]) that go to the canary.
    buckets: u64,
    sticky: Option<Sticky>,
}

impl Plugin for Canary {
    const NAME: &'static str = "canary";

    fn needs(&self) -> Needs {
        Needs::REQUEST
    }

    fn init(config: Config) -> Result<Self, String> {
        let settings: Settings = config.parse()?;
        checked(settings)
    }

    fn on_request(&self, req: &mut Request, ctx: &mut Context) -> Action {
        if self.chosen(req, ctx) {
            req.set_upstream(self.upstream.clone());
        }
        Action::Continue
    }
}

/// `settings` checked into the plugin.
fn checked(settings: Settings) -> Result<Canary, String> {
    if settings.upstream.is_empty() {
        return Err("canary: `upstream` names the canary, one of the route's upstreams".into());
    }
    for matcher in [&settings.header, &settings.cookie].into_iter().flatten() {
        if matcher.name.is_empty() || matcher.values.is_empty() {
            return Err(format!(
                "canary: `{}` needs a name and at least one value",
                matcher.name
            ));
        }
    }
    let percentage = settings.percentage.unwrap_or(0.0);
    if !(0.0..=100.0).contains(&percentage) {
        return Err(format!(
            "canary: percentage {percentage} is not between 0 and 100"
        ));
    }
    let sticky = settings.sticky_on.as_deref().map(sticky).transpose()?;
    if sticky.is_some() && settings.percentage.is_none() {
        return Err("canary: `sticky_on` keeps a `percentage` sticky: give one".into());
    }
    let nothing = settings.header.is_none()
        && settings.cookie.is_none()
        && settings.consumers.is_empty()
        && settings.groups.is_empty()
        && settings.percentage.is_none();
    if nothing {
        return Err(
            "canary: give at least one of `header`, `cookie`, `consumers`, `groups`, `percentage`"
                .into(),
        );
    }
    Ok(Canary {
        upstream: settings.upstream,
        header: settings.header,
        cookie: settings.cookie,
        consumers: settings.consumers,
        groups: settings.groups,
        buckets: (percentage * (BUCKETS as f64 / 100.0)).round() as u64,
        sticky,
    })
}

/// `sticky_on`, parsed.
fn sticky(text: &str) -> Result<Sticky, String> {
    match text.split_once(':') {
        None if text == "consumer" => Ok(Sticky::Consumer),
        None if text == "ip" => Ok(Sticky::Ip),
        Some(("header", name)) if !name.is_empty() => Ok(Sticky::Header(name.to_ascii_lowercase())),
        Some(("cookie", name)) if !name.is_empty() => Ok(Sticky::Cookie(name.to_string())),
        _ => Err(format!(
            "canary: sticky_on `{text}` must be `header:NAME`, `cookie:NAME`, `consumer` or `ip`"
        )),
    }
}

impl Canary {
    /// Whether the request goes to the canary.
    fn chosen(&self, req: &Request, ctx: &Context) -> bool {
        let header = self.header.as_ref().is_some_and(|m| {
            req.headers()
                .get_all(&m.name)
                .any(|value| m.values.iter().any(|v| v == value.trim()))
        });
        let cookie = self
            .cookie
            .as_ref()
            .is_some_and(|m| cookie(req, &m.name).is_some_and(|v| m.values.iter().any(|w| w == v)));
        header || cookie || self.chosen_consumer(ctx) || self.in_percentage(req, ctx)
    }

    /// Whether the context's consumer is listed, or in a listed group.
    fn chosen_consumer(&self, ctx: &Context) -> bool {
        if self.consumers.is_empty() && self.groups.is_empty() {
            return false;
        }
        let consumer = ctx.get(CONTEXT_CONSUMER).unwrap_or_default();
        let groups = ctx.get(CONTEXT_GROUPS).unwrap_or_default();
        (!consumer.is_empty() && self.consumers.contains(&consumer))
            || groups
                .split(',')
                .any(|group| !group.is_empty() && self.groups.iter().any(|g| g == group))
    }

    /// Whether the request falls in the percentage: its sticky key's
    /// bucket, or a draw when it has none.
    fn in_percentage(&self, req: &Request, ctx: &Context) -> bool {
        if self.buckets == 0 {
            return false;
        }
        let key = self.sticky.as_ref().and_then(|on| sticky_key(on, req, ctx));
        let bucket = match key {
            Some(key) => xxhash_rust::xxh3::xxh3_64(key.as_bytes()) % BUCKETS,
            None => fastrand::u64(0..BUCKETS),
        };
        bucket < self.buckets
    }
}

/// The request's sticky key, when it has one.
fn sticky_key(on: &Sticky, req: &Request, ctx: &Context) -> Option<String> {
    let key = match on {
        Sticky::Header(name) => req.headers().get(name).map(str::to_string),
        Sticky::Cookie(name) => cookie(req, name).map(str::to_string),
        Sticky::Consumer => ctx.get(CONTEXT_CONSUMER),
        Sticky::Ip => {
            let addr = req.client_addr();
            // `ip:port` or `[ip]:port`: the port changes per connection.
            let ip = addr.rsplit_once(':').map_or(addr, |(ip, _)| ip);
            Some(ip.to_string())
        }
    };
    key.filter(|key| !key.is_empty())
}

/// The value of cookie `name` in the request's `Cookie` headers.
fn cookie<'r>(req: &'r Request, name: &str) -> Option<&'r str> {
    req.headers()
        .get_all("cookie")
        .flat_map(|line| line.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v)
}

plugin_sdk::export!(Canary);

#[cfg(test)]
mod tests {
    use super::*;

    fn plugin(config: serde_json::Value) -> Result<Canary, String> {
        Canary::init(Config::from_json(&config.to_string()))
    }

    /// The upstream `plugin` sends `req` to (`None`: left as it was).
    fn routed(plugin: &Canary, mut req: Request, ctx: &mut Context) -> Option<String> {
        assert!(matches!(plugin.on_request(&mut req, ctx), Action::Continue));
        req.upstream().map(str::to_string)
    }

    #[test]
    fn a_header_or_cookie_value_sends_a_request_to_the_canary() {
        let p = plugin(serde_json::json!({
            "upstream": "v2",
            "header": { "name": "x-canary", "values": ["always"] },
            "cookie": { "name": "canary", "values": ["1"] },
        }))
        .expect("valid");
        let mut ctx = Context::new();
        let get = || Request::new("GET", "/split");
        assert_eq!(routed(&p, get(), &mut ctx), None);
        let header = get().with_header("x-canary", "always");
        assert_eq!(routed(&p, header, &mut ctx).as_deref(), Some("v2"));
        let other = get().with_header("x-canary", "sometimes");
        assert_eq!(routed(&p, other, &mut ctx), None);
        let cookie = get().with_header("cookie", "session=abc; canary=1");
        assert_eq!(routed(&p, cookie, &mut ctx).as_deref(), Some("v2"));
        let cookie = get().with_header("cookie", "canary=0");
        assert_eq!(routed(&p, cookie, &mut ctx), None);
    }

    #[test]
    fn listed_consumers_and_groups_go_to_the_canary() {
        let p = plugin(serde_json::json!({
            "upstream": "v2", "consumers": ["alice"], "groups": ["beta"],
        }))
        .expect("valid");
        let with = |consumer: &str, groups: &str| {
            let mut ctx = Context::new();
            ctx.set(CONTEXT_CONSUMER, consumer);
            ctx.set(CONTEXT_GROUPS, groups);
            routed(&p, Request::new("GET", "/"), &mut ctx)
        };
        assert_eq!(with("alice", "").as_deref(), Some("v2"));
        assert_eq!(with("bob", "gold,beta").as_deref(), Some("v2"));
        assert_eq!(with("bob", "gold,betamax"), None);
        assert_eq!(
            routed(&p, Request::new("GET", "/"), &mut Context::new()),
            None
        );
    }

    #[test]
    fn a_sticky_percentage_keeps_each_key_on_one_side() {
        let p = plugin(serde_json::json!({
            "upstream": "v2", "percentage": 20, "sticky_on": "header:x-user",
        }))
        .expect("valid");
        let side = |user: usize| {
            let req = Request::new("GET", "/").with_header("x-user", &format!("user-{user}"));
            routed(&p, req, &mut Context::new()).is_some()
        };
        let first: Vec<bool> = (0..5000).map(side).collect();
        let again: Vec<bool> = (0..5000).map(side).collect();
        assert_eq!(first, again, "a user changed sides");
        let canaries = first.iter().filter(|c| **c).count();
        // 1000 expected; the spread of 5000 draws at 20% is 28.
        assert!((900..1100).contains(&canaries), "{canaries}");
        // Raising the percentage only adds users to the canary.
        let wider = plugin(serde_json::json!({
            "upstream": "v2", "percentage": 50, "sticky_on": "header:x-user",
        }))
        .expect("valid");
        for (user, was) in first.iter().enumerate() {
            let req = Request::new("GET", "/").with_header("x-user", &format!("user-{user}"));
            let now = routed(&wider, req, &mut Context::new()).is_some();
            assert!(now || !was, "user {user} left the canary");
        }
    }

    #[test]
    fn a_percentage_without_a_key_is_drawn_per_request() {
        let p = plugin(serde_json::json!({ "upstream": "v2", "percentage": 30 })).expect("valid");
        let canaries = (0..5000)
            .filter(|_| routed(&p, Request::new("GET", "/"), &mut Context::new()).is_some())
            .count();
        // 1500 expected; the spread is 32.
        assert!((1350..1650).contains(&canaries), "{canaries}");
        let none = plugin(serde_json::json!({ "upstream": "v2", "percentage": 0 })).expect("valid");
        assert!(
            (0..100)
                .all(|_| routed(&none, Request::new("GET", "/"), &mut Context::new()).is_none())
        );
    }

    #[test]
    fn bad_config_is_refused() {
        let error = |config: serde_json::Value| plugin(config).err().unwrap_or_default();
        assert!(error(serde_json::json!({ "upstream": "v2" })).contains("give at least one"));
        assert!(error(serde_json::json!({ "percentage": 5 })).contains("missing field `upstream`"));
        let over = serde_json::json!({ "upstream": "v2", "percentage": 101 });
        assert!(error(over).contains("not between 0 and 100"));
        let sticky =
            serde_json::json!({ "upstream": "v2", "percentage": 5, "sticky_on": "query:x" });
        assert!(error(sticky).contains("sticky_on `query:x`"));
        let lonely =
            serde_json::json!({ "upstream": "v2", "header": { "name": "x", "values": [] } });
        assert!(error(lonely).contains("at least one value"));
    }
}
