//! The consumers configured in the gateway (`[[consumers]]`): look one up by API
//! key, by name, or by an AWS Signature Version 4 signature of one of its
//! access keys. Needs the `consumers` grant.
//!
//! Natively there is no gateway, so tests register consumers with
//! [`register`] (and [`register_access_key`]) first; lookups then behave as
//! the host's would.

#[cfg(target_arch = "wasm32")]
use crate::rate_limit::{Policy, Quota};
use crate::{Context, Headers};

/// The checks of `verify_sigv4`'s inputs and of access key ids, as the
/// gateway applies them.
pub use plugin_shared::sigv4;

/// Context key of the authenticated consumer's name (rate limiting keys on it).
pub const CONTEXT_CONSUMER: &str = "consumer";
/// Context key of the consumer's groups, comma-separated.
pub const CONTEXT_GROUPS: &str = "consumer.groups";
/// Context key of the consumer's usage plan.
pub const CONTEXT_PLAN: &str = "consumer.plan";
/// Context key naming the plugin that authenticated the request.
pub const CONTEXT_AUTH: &str = "auth.method";
/// The usual prefix of the headers that tell the upstream who the caller is
/// ([`Consumer::set_headers`]).
pub const HEADER_PREFIX: &str = "x-consumer-";

/// The default of an authentication plugin's `header_prefix` setting:
/// [`HEADER_PREFIX`] (for `#[serde(default = "...")]`).
pub fn default_header_prefix() -> String {
    HEADER_PREFIX.to_string()
}

/// An authentication plugin's `header_prefix` setting, checked and
/// lower-cased: the start of a header name (its characters), not empty. The plugin removes the client's headers under it from every
/// request, so an empty prefix would remove them all. `plugin` names the
/// plugin in the error.
pub fn checked_header_prefix(plugin: &str, prefix: &str) -> Result<String, String> {
    if !Headers::is_valid_name(prefix) {
        return Err(format!(
            "{plugin}: header_prefix must be the start of a header name, not empty"
        ));
    }
    Ok(prefix.to_ascii_lowercase())
}

/// An authentication plugin's `realm` setting, checked for a
/// `WWW-Authenticate` challenge: not empty, without quotes, backslashes or
/// control characters (so it needs no escaping). `plugin` names the plugin
/// in the error.
pub fn check_realm(plugin: &str, realm: &str) -> Result<(), String> {
    if realm.is_empty() || realm.contains(['"', '\\']) || realm.chars().any(char::is_control) {
        return Err(format!(
            "{plugin}: realm must be non-empty, without quotes, backslashes or control characters"
        ));
    }
    Ok(())
}

/// A caller of the API, as configured.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Consumer {
    /// Unique name.
    pub name: String,
    /// Group names.
    pub groups: Vec<String>,
    /// The usage plan, if any.
    pub plan: Option<String>,
    /// Free-form metadata.
    pub metadata: Vec<(String, String)>,
}

impl Consumer {
    /// Records the consumer as the request's caller, for the plugins after
    /// this one: `consumer`, `consumer.groups` and `consumer.plan` (removed
    /// when it has none) in the context, and `auth.method = method`.
    pub fn identify(&self, ctx: &mut Context, method: &str) {
        ctx.set(CONTEXT_CONSUMER, self.name.as_str());
        ctx.set(CONTEXT_GROUPS, self.groups.join(","));
        match &self.plan {
            Some(plan) => ctx.set(CONTEXT_PLAN, plan.as_str()),
            None => ctx.remove(CONTEXT_PLAN),
        }
        ctx.set(CONTEXT_AUTH, method);
    }

    /// Tells the upstream who the caller is: `<prefix>name`, and
    /// `<prefix>groups` and `<prefix>plan` when it has them.
    pub fn set_headers(&self, headers: &mut Headers, prefix: &str) {
        headers.set(&format!("{prefix}name"), self.name.as_str());
        if !self.groups.is_empty() {
            headers.set(&format!("{prefix}groups"), self.groups.join(","));
        }
        if let Some(plan) = &self.plan {
            headers.set(&format!("{prefix}plan"), plan.as_str());
        }
    }
}

/// A usage plan (`[usage_plans.NAME]`): a steady rate and a calendar quota,
/// enforced by the rate-limit plugin for the consumers on it.
pub use plugin_shared::consumers::UsagePlan;

/// The usage plan called `name`.
pub fn plan(name: &str) -> Option<UsagePlan> {
    #[cfg(target_arch = "wasm32")]
    return crate::bindings::gateway::plugin::consumers::plan(name).map(plan_from_wit);
    #[cfg(not(target_arch = "wasm32"))]
    return native::PLANS.with_borrow(|plans| plans.iter().find(|p| p.name == name).cloned());
}

/// Registers `plan` for native tests (this thread only).
#[cfg(not(target_arch = "wasm32"))]
pub fn register_plan(plan: UsagePlan) {
    native::PLANS.with_borrow_mut(|plans| plans.push(plan));
}

/// The consumer an API key belongs to. The gateway compares keyed hashes of
/// keys; stored keys never reach a plugin.
pub fn find_by_key(key: &str) -> Option<Consumer> {
    #[cfg(target_arch = "wasm32")]
    return crate::bindings::gateway::plugin::consumers::find_by_key(key).map(Consumer::from);
    #[cfg(not(target_arch = "wasm32"))]
    return native::REGISTRY.with_borrow(|registry| {
        registry
            .iter()
            .find(|(_, keys)| keys.iter().any(|k| k == key))
            .map(|(consumer, _)| consumer.clone())
    });
}

/// AWS Signature Version 4: the consumer whose access key `access_key_id`
/// signed `string_to_sign` with `signature` (64 lower-case hex digits), the
/// signing key derived for `date` (`YYYYMMDD`), `region` and `service`. The
/// gateway holds the secret, derives the key and compares in constant time;
/// a plugin builds the canonical request and the string to sign, and never
/// sees a secret. Inputs out of shape
/// ([`sigv4::check_inputs`]) find no one.
pub fn verify_sigv4(
    access_key_id: &str,
    date: &str,
    region: &str,
    service: &str,
    string_to_sign: &str,
    signature: &str,
) -> Option<Consumer> {
    #[cfg(target_arch = "wasm32")]
    return crate::bindings::gateway::plugin::consumers::verify_sigv4(
        access_key_id,
        date,
        region,
        service,
        string_to_sign,
        signature,
    )
    .map(Consumer::from);
    #[cfg(not(target_arch = "wasm32"))]
    return native::ACCESS_KEYS.with_borrow(|keys| {
        let found = keys.iter().find(|(_, id, _)| id == access_key_id);
        let secret = found.map(|(_, _, secret)| secret.as_slice());
        if plugin_shared::sigv4::verify(secret, date, region, service, string_to_sign, signature) {
            found.map(|(consumer, _, _)| consumer.clone())
        } else {
            None
        }
    });
}

/// Registers an access key of `consumer` for native tests (this thread
/// only): [`verify_sigv4`] then checks signatures with `secret` as the
/// gateway does.
#[cfg(not(target_arch = "wasm32"))]
pub fn register_access_key(consumer: Consumer, id: &str, secret: &str) {
    native::ACCESS_KEYS.with_borrow_mut(|keys| {
        keys.push((consumer, id.to_string(), secret.as_bytes().to_vec()));
    });
}

/// The consumer called `name` (for example a JWT's `sub` claim).
pub fn get(name: &str) -> Option<Consumer> {
    #[cfg(target_arch = "wasm32")]
    return crate::bindings::gateway::plugin::consumers::get(name).map(Consumer::from);
    #[cfg(not(target_arch = "wasm32"))]
    return native::REGISTRY.with_borrow(|registry| {
        registry
            .iter()
            .find(|(consumer, _)| consumer.name == name)
            .map(|(consumer, _)| consumer.clone())
    });
}

/// The outcome of [`verify_password`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PasswordCheck {
    /// The credential is this consumer's.
    Valid(Consumer),
    /// An unknown user name or a wrong password (not said which).
    Invalid,
    /// Too many passwords are being checked at once; nothing was checked
    /// (answer 503, the client may try again).
    Busy,
}

/// Checks a basic-auth credential against the consumers' password hashes.
/// The gateway computes the hash outside the plugin's CPU deadline and
/// remembers a verified credential for a while (keyed by a keyed digest),
/// so a valid caller pays the hash once. Natively, against the passwords
/// given to [`register_password`].
pub fn verify_password(username: &str, password: &str) -> PasswordCheck {
    #[cfg(target_arch = "wasm32")]
    {
        use crate::bindings::gateway::plugin::consumers::{PasswordCheck as Wit, verify_password};
        match verify_password(username, password) {
            Wit::Valid(consumer) => PasswordCheck::Valid(consumer.into()),
            Wit::Invalid => PasswordCheck::Invalid,
            Wit::Busy => PasswordCheck::Busy,
        }
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        if native::PASSWORDS_BUSY.get() {
            return PasswordCheck::Busy;
        }
        if !plugin_shared::limits::password_checkable(username, password) {
            return PasswordCheck::Invalid;
        }
        native::PASSWORDS.with_borrow(|passwords| {
            passwords
                .iter()
                .find(|(_, user, clear)| user == username && clear == password)
                .map_or(PasswordCheck::Invalid, |(consumer, _, _)| {
                    PasswordCheck::Valid(consumer.clone())
                })
        })
    }
}

/// Makes [`verify_password`] answer [`PasswordCheck::Busy`] (or not), for
/// native tests of a plugin's answer to a busy gateway (this thread only).
#[cfg(not(target_arch = "wasm32"))]
pub fn set_password_checks_busy(busy: bool) {
    native::PASSWORDS_BUSY.set(busy);
}

/// Registers `username` with `password` for `consumer`, for native tests
/// (this thread only).
#[cfg(not(target_arch = "wasm32"))]
pub fn register_password(consumer: Consumer, username: &str, password: &str) {
    native::PASSWORDS.with_borrow_mut(|passwords| {
        passwords.push((consumer, username.to_string(), password.to_string()));
    });
}

/// Registers `consumer` with its API `keys` for native tests (this thread only).
#[cfg(not(target_arch = "wasm32"))]
pub fn register(consumer: Consumer, keys: &[&str]) {
    native::REGISTRY.with_borrow_mut(|registry| {
        registry.push((consumer, keys.iter().map(|k| (*k).to_string()).collect()));
    });
}

#[cfg(not(target_arch = "wasm32"))]
mod native {
    use super::Consumer;
    use std::cell::RefCell;

    thread_local! {
        pub static REGISTRY: RefCell<Vec<(Consumer, Vec<String>)>> = const { RefCell::new(Vec::new()) };
        pub static PLANS: RefCell<Vec<super::UsagePlan>> = const { RefCell::new(Vec::new()) };
        pub static PASSWORDS: RefCell<Vec<(Consumer, String, String)>> = const { RefCell::new(Vec::new()) };
        pub static PASSWORDS_BUSY: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
        pub static ACCESS_KEYS: RefCell<Vec<(Consumer, String, Vec<u8>)>> = const { RefCell::new(Vec::new()) };
    }
}

#[cfg(target_arch = "wasm32")]
impl From<crate::bindings::gateway::plugin::consumers::Consumer> for Consumer {
    fn from(c: crate::bindings::gateway::plugin::consumers::Consumer) -> Self {
        Consumer {
            name: c.name,
            groups: c.groups,
            plan: c.plan,
            metadata: c.metadata,
        }
    }
}

#[cfg(target_arch = "wasm32")]
fn plan_from_wit(p: crate::bindings::gateway::plugin::consumers::UsagePlan) -> UsagePlan {
    use crate::bindings::gateway::plugin::types::QuotaPeriod as Wit;
    UsagePlan {
        name: p.name,
        rate: p.rate.map(|rate| Policy {
            limit: rate.limit,
            period: std::time::Duration::from_millis(rate.period_ms),
            burst: rate.burst,
        }),
        quota: p.quota.map(|quota| Quota {
            limit: quota.limit,
            period: match quota.period {
                Wit::Day => crate::rate_limit::QuotaPeriod::Day,
                Wit::Week => crate::rate_limit::QuotaPeriod::Week,
                Wit::Month => crate::rate_limit::QuotaPeriod::Month,
            },
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Request;

    #[test]
    fn identify_and_set_headers_say_who_the_caller_is() {
        let consumer = Consumer {
            name: "alice".into(),
            groups: vec!["gold".into(), "beta".into()],
            plan: None,
            metadata: vec![],
        };
        let mut ctx = Context::new();
        ctx.set(CONTEXT_PLAN, "stale");
        consumer.identify(&mut ctx, "key-auth");
        assert_eq!(ctx.get(CONTEXT_CONSUMER).as_deref(), Some("alice"));
        assert_eq!(ctx.get(CONTEXT_GROUPS).as_deref(), Some("gold,beta"));
        assert_eq!(ctx.get(CONTEXT_PLAN), None);
        assert_eq!(ctx.get(CONTEXT_AUTH).as_deref(), Some("key-auth"));

        let mut req = Request::new("GET", "/")
            .with_header("X-Consumer-Name", "mallory")
            .with_header("x-consumer-plan", "platinum")
            .with_header("x-other", "kept");
        assert_eq!(req.headers_mut().remove_prefixed("x-consumer-"), 2);
        consumer.set_headers(req.headers_mut(), "x-consumer-");
        assert_eq!(req.headers().get("x-consumer-name"), Some("alice"));
        assert_eq!(req.headers().get("x-consumer-groups"), Some("gold,beta"));
        assert_eq!(req.headers().get("x-consumer-plan"), None);
        assert_eq!(req.headers().get("x-other"), Some("kept"));
    }
}
