//! The built-in `acl` plugin: lets a route be used only by consumers in some
//! groups, or by all but some, as Kong's acl plugin does. It runs after an
//! authentication plugin (`key-auth`, `mtls-auth`, `jwt` with
//! `consumer_claim`), which puts the consumer and its groups in the request
//! context.
//!
//! No consumer in the context: 401 (the route's pipeline authenticates no
//! one before this plugin, or let an anonymous request through). A consumer
//! in a `deny` group, or in none of the `allow` groups: 403.

use plugin_sdk::consumers::{CONTEXT_CONSUMER, CONTEXT_GROUPS};
use plugin_sdk::{Action, Config, Context, Needs, Plugin, Request, Response, log};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    /// Groups whose consumers may pass (any group, when empty).
    #[serde(default)]
    allow: Vec<String>,
    /// Groups whose consumers are refused, whatever `allow` says.
    #[serde(default)]
    deny: Vec<String>,
}

/// The plugin with its checked settings.
#[derive(Debug)]
pub struct Acl {
    allow: Vec<String>,
    deny: Vec<String>,
}

impl Acl {
    /// Whether a consumer in `groups` may pass.
    fn admits(&self, groups: &[&str]) -> bool {
        if groups
            .iter()
            .any(|group| self.deny.iter().any(|d| d == group))
        {
            return false;
        }
        self.allow.is_empty()
            || groups
                .iter()
                .any(|group| self.allow.iter().any(|a| a == group))
    }

    fn refuse(req: &Request, status: u16, reason: &str) -> Action {
        Action::Respond(Response::denied(status, reason, req))
    }
}

impl Plugin for Acl {
    const NAME: &'static str = "acl";

    fn needs(&self) -> Needs {
        Needs::REQUEST
    }

    fn init(config: Config) -> Result<Self, String> {
        let settings: Settings = config.parse()?;
        if settings.allow.is_empty() && settings.deny.is_empty() {
            return Err("acl: give `allow`, `deny` or both (lists of consumer groups)".into());
        }
        for group in settings.allow.iter().chain(&settings.deny) {
            if group.trim().is_empty() || group.contains(',') || group.trim() != group {
                return Err(format!(
                    "acl: `{group}` is not a group name (no commas, no surrounding spaces)"
                ));
            }
        }
        Ok(Acl {
            allow: settings.allow,
            deny: settings.deny,
        })
    }

    fn on_request(&self, req: &mut Request, ctx: &mut Context) -> Action {
        let Some(consumer) = ctx.get(CONTEXT_CONSUMER).filter(|c| !c.is_empty()) else {
            return Self::refuse(req, 401, "no authenticated consumer");
        };
        let groups = ctx.get(CONTEXT_GROUPS).unwrap_or_default();
        let groups: Vec<&str> = groups.split(',').filter(|g| !g.is_empty()).collect();
        if self.admits(&groups) {
            return Action::Continue;
        }
        log::info(&format!(
            "acl: consumer `{consumer}` (groups: {}) refused on route `{}`",
            if groups.is_empty() {
                "none".to_string()
            } else {
                groups.join(", ")
            },
            req.route()
        ));
        Self::refuse(req, 403, "this consumer may not use this route")
    }
}

plugin_sdk::export!(Acl);

#[cfg(test)]
mod tests {
    use super::*;

    fn plugin(config: &str) -> Result<Acl, String> {
        Acl::init(Config::from_json(config))
    }

    /// The status `plugin` answers a consumer in `groups` (`None`: passed).
    fn status(plugin: &Acl, consumer: Option<&str>, groups: &str) -> Option<u16> {
        let mut ctx = Context::new();
        if let Some(consumer) = consumer {
            ctx.set(CONTEXT_CONSUMER, consumer);
            ctx.set(CONTEXT_GROUPS, groups);
        }
        let mut req = Request::new("GET", "/x").with_header("x-request-id", "req-1");
        match plugin.on_request(&mut req, &mut ctx) {
            Action::Continue => None,
            Action::Respond(response) => Some(response.status()),
        }
    }

    #[test]
    fn allow_admits_only_its_groups() {
        let p = plugin(r#"{"allow": ["gold", "staff"]}"#).expect("valid");
        assert_eq!(status(&p, Some("ann"), "gold"), None);
        assert_eq!(status(&p, Some("bob"), "beta,staff"), None);
        assert_eq!(status(&p, Some("cat"), "beta"), Some(403));
        assert_eq!(status(&p, Some("dan"), ""), Some(403), "no groups");
        assert_eq!(
            status(&p, Some("eve"), "golden"),
            Some(403),
            "whole names only"
        );
        assert_eq!(status(&p, None, ""), Some(401), "no consumer");
    }

    #[test]
    fn deny_wins_over_allow() {
        let p = plugin(r#"{"allow": ["gold"], "deny": ["suspended"]}"#).expect("valid");
        assert_eq!(status(&p, Some("ann"), "gold"), None);
        assert_eq!(status(&p, Some("ann"), "gold,suspended"), Some(403));
        let deny_only = plugin(r#"{"deny": ["suspended"]}"#).expect("valid");
        assert_eq!(status(&deny_only, Some("bob"), ""), None);
        assert_eq!(status(&deny_only, Some("bob"), "beta"), None);
        assert_eq!(status(&deny_only, Some("bob"), "suspended"), Some(403));
        assert_eq!(status(&deny_only, None, ""), Some(401));
    }

    #[test]
    fn the_answer_is_json_with_the_request_id() {
        let p = plugin(r#"{"allow": ["gold"]}"#).expect("valid");
        let mut ctx = Context::new();
        ctx.set(CONTEXT_CONSUMER, "cat");
        let mut req = Request::new("GET", "/x").with_header("x-request-id", "req-7");
        let Action::Respond(response) = p.on_request(&mut req, &mut ctx) else {
            panic!("refused");
        };
        let body: serde_json::Value =
            serde_json::from_slice(response.body().unwrap_or_default()).expect("json");
        assert_eq!(
            body["error"],
            "forbidden: this consumer may not use this route"
        );
        assert_eq!(body["status"], 403);
        assert_eq!(body["request_id"], "req-7");
    }

    #[test]
    fn bad_config_is_refused() {
        let error = |config: &str| plugin(config).err().unwrap_or_default();
        assert!(error("{}").contains("give `allow`, `deny` or both"));
        assert!(error(r#"{"allow": ["a,b"]}"#).contains("`a,b` is not a group name"));
        assert!(error(r#"{"deny": [" x"]}"#).contains("is not a group name"));
        assert!(error(r#"{"allow": [""]}"#).contains("is not a group name"));
        assert!(error(r#"{"groups": ["x"]}"#).contains("unknown field `groups`"));
    }
}
