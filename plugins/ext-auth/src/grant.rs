//! What an allowing authorizer may say, checked: the consumer, its groups,
//! context values, headers for the upstream, and how long to remember the
//! decision. An answer that says more than this allows is a failure, not
//! an allow with parts dropped.

use plugin_sdk::consumers::{self, CONTEXT_AUTH, CONTEXT_CONSUMER, CONTEXT_GROUPS, CONTEXT_PLAN};
use plugin_sdk::{Context, Headers, Request};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The most context values and headers one answer may set.
const MAX_ENTRIES: usize = 32;
/// The longest context value or header value.
const MAX_VALUE: usize = 4096;
/// Prefix of the context keys an answer sets.
pub const CONTEXT_PREFIX: &str = "ext-auth.";

/// An allow, as the authorizer's body says.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Grant {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    consumer: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    groups: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    context: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    headers: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ttl: Option<u64>,
}

impl Grant {
    /// The grant in `body` (empty: a bare allow), checked.
    pub fn parse(body: &[u8]) -> Result<Grant, String> {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(Grant::default());
        }
        let grant: Grant = serde_json::from_slice(body)
            .map_err(|err| format!("the allow's body is not a grant: {err}"))?;
        grant.check()?;
        Ok(grant)
    }

    fn check(&self) -> Result<(), String> {
        if self.context.len() > MAX_ENTRIES || self.headers.len() > MAX_ENTRIES {
            return Err(format!("more than {MAX_ENTRIES} context values or headers"));
        }
        let text = |value: &str| {
            value.len() <= MAX_VALUE && !value.chars().any(|c| c.is_control() && c != '\t')
        };
        for (key, value) in &self.context {
            let key_ok = !key.is_empty()
                && key.len() <= 64
                && key
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
            if !key_ok || !text(value) {
                return Err(format!(
                    "context value `{key}` is not a usable key and value"
                ));
            }
        }
        for (name, value) in &self.headers {
            if !Headers::settable_upstream(name) || !text(value) {
                return Err(format!("header `{name}` cannot be set upstream"));
            }
        }
        let names = self.consumer.iter().chain(&self.groups);
        if names
            .into_iter()
            .any(|n| n.is_empty() || n.contains(',') || !text(n))
        {
            return Err("the consumer and groups must be names (no commas)".into());
        }
        Ok(())
    }

    /// How long to remember it: its `ttl`, at most `cache_ttl`.
    pub fn ttl(&self, cache_ttl: u64) -> u64 {
        self.ttl.map_or(cache_ttl, |ttl| ttl.min(cache_ttl))
    }

    /// The grant as remembered.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Applies it: the consumer (with its configured groups and plan, or
    /// the answer's groups), context values under `ext-auth.`, and headers.
    pub fn apply(&self, req: &mut Request, ctx: &mut Context) {
        ctx.set(CONTEXT_AUTH, "ext-auth");
        if let Some(name) = &self.consumer {
            match consumers::get(name) {
                Some(consumer) => consumer.identify(ctx, "ext-auth"),
                None => {
                    ctx.set(CONTEXT_CONSUMER, name.as_str());
                    ctx.remove(CONTEXT_PLAN);
                    ctx.set(CONTEXT_GROUPS, self.groups.join(","));
                }
            }
        }
        for (key, value) in &self.context {
            ctx.set(&format!("{CONTEXT_PREFIX}{key}"), value.as_str());
        }
        for (name, value) in &self.headers {
            req.headers_mut().set(name, value.as_str());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_are_checked() {
        assert!(Grant::parse(b"").is_ok());
        let grant = Grant::parse(br#"{"consumer": "alice", "groups": ["gold"], "context": {"tenant": "acme"}, "headers": {"x-user": "alice"}, "ttl": 30}"#)
            .expect("valid");
        assert_eq!((grant.ttl(300), grant.ttl(10)), (30, 10));
        let error = |body: &str| Grant::parse(body.as_bytes()).err().unwrap_or_default();
        assert!(error("OK").contains("not a grant"));
        assert!(error(r#"{"headers": {"host": "evil"}}"#).contains("cannot be set"));
        assert!(error(r#"{"headers": {"x-a": "b\r\nx-evil: 1"}}"#).contains("cannot be set"));
        assert!(error(r#"{"context": {"a b": "c"}}"#).contains("context value"));
        assert!(error(r#"{"consumer": "a,b"}"#).contains("names"));
        assert!(error(r#"{"allow": true}"#).contains("unknown field"));
    }
}
