//! The built-in `headers` plugin: add, set, remove and rename request and
//! response headers, and add, set or remove query parameters.
//!
//! Rules apply in the order remove, rename, set, add, so one entry can, for
//! example, remove every `x-user` a client sent and then set its own. An entry
//! with only request rules never runs in the response phase, and vice versa.

use plugin_sdk::{Action, Config, Context, Headers, Needs, Plugin, Request, Response};
use serde::Deserialize;
use std::collections::BTreeMap;

/// Rules for one direction's headers.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct HeaderRules {
    #[serde(default)]
    remove: Vec<String>,
    #[serde(default)]
    rename: BTreeMap<String, String>,
    #[serde(default)]
    set: BTreeMap<String, String>,
    #[serde(default)]
    add: BTreeMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RequestRules {
    #[serde(flatten)]
    headers: HeaderRules,
    #[serde(default)]
    query_remove: Vec<String>,
    #[serde(default)]
    query_set: BTreeMap<String, String>,
    #[serde(default)]
    query_add: BTreeMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    #[serde(default)]
    request: RequestRules,
    #[serde(default)]
    response: HeaderRules,
}

/// The plugin: its rules, checked at init.
#[derive(Debug)]
pub struct HeadersPlugin {
    settings: Settings,
}

impl HeaderRules {
    fn is_empty(&self) -> bool {
        self.remove.is_empty()
            && self.rename.is_empty()
            && self.set.is_empty()
            && self.add.is_empty()
    }

    fn validate(&self, direction: &str) -> Result<(), String> {
        let names = self
            .remove
            .iter()
            .chain(self.rename.keys())
            .chain(self.rename.values())
            .chain(self.set.keys())
            .chain(self.add.keys());
        for name in names {
            if !Headers::is_valid_name(name) {
                return Err(format!("{direction}: invalid header name `{name}`"));
            }
        }
        for (name, value) in self.set.iter().chain(self.add.iter()) {
            if !valid_value(value) {
                return Err(format!(
                    "{direction}: invalid value for header `{name}` (control characters are not allowed)"
                ));
            }
        }
        Ok(())
    }

    fn apply(&self, headers: &mut Headers) {
        for name in &self.remove {
            headers.remove(name);
        }
        for (from, to) in &self.rename {
            headers.rename(from, to);
        }
        for (name, value) in &self.set {
            headers.set(name, value.as_str());
        }
        for (name, value) in &self.add {
            headers.append(name, value.as_str());
        }
    }
}

impl RequestRules {
    fn has_query_rules(&self) -> bool {
        !(self.query_remove.is_empty() && self.query_set.is_empty() && self.query_add.is_empty())
    }
}

fn valid_value(value: &str) -> bool {
    value
        .bytes()
        .all(|b| b == b'\t' || (b >= 0x20 && b != 0x7f))
}

impl Plugin for HeadersPlugin {
    const NAME: &'static str = "headers";

    fn init(config: Config) -> Result<Self, String> {
        let settings: Settings = config.parse()?;
        settings.request.headers.validate("request")?;
        settings.response.validate("response")?;
        Ok(HeadersPlugin { settings })
    }

    fn needs(&self) -> Needs {
        let mut needs = Needs::NONE;
        if !self.settings.request.headers.is_empty() || self.settings.request.has_query_rules() {
            needs = needs | Needs::REQUEST;
        }
        if !self.settings.response.is_empty() {
            needs = needs | Needs::RESPONSE;
        }
        needs
    }

    fn on_request(&self, req: &mut Request, _ctx: &mut Context) -> Action {
        let rules = &self.settings.request;
        if !rules.headers.is_empty() {
            rules.headers.apply(req.headers_mut());
        }
        if rules.has_query_rules() {
            for name in &rules.query_remove {
                req.remove_query_param(name);
            }
            for (name, value) in &rules.query_set {
                req.set_query_param(name, value);
            }
            for (name, value) in &rules.query_add {
                req.add_query_param(name, value);
            }
        }
        Action::Continue
    }

    fn on_response(&self, _req: &Request, resp: &mut Response, _ctx: &mut Context) {
        self.settings.response.apply(resp.headers_mut());
    }
}

plugin_sdk::export!(HeadersPlugin);

#[cfg(test)]
mod tests {
    use super::*;

    fn plugin(config: &str) -> Result<HeadersPlugin, String> {
        HeadersPlugin::init(Config::from_json(config))
    }

    #[test]
    fn request_rules_in_order() {
        let p = plugin(
            r#"{"request": {"remove": ["x-user"], "rename": {"x-a": "x-b"}, "set": {"x-user": "gw"}, "add": {"x-b": "2"},
                "query_remove": ["debug"], "query_set": {"page": "1"}, "query_add": {"src": "gw"}}}"#,
        )
        .expect("valid");
        assert_eq!(p.needs(), Needs::REQUEST);
        let mut req = Request::new("GET", "/?debug=1&page=9")
            .with_header("X-User", "spoofed")
            .with_header("x-a", "1");
        assert!(matches!(
            p.on_request(&mut req, &mut Context::new()),
            Action::Continue
        ));
        let h = req.headers();
        assert_eq!(h.get("x-user"), Some("gw"));
        assert_eq!(h.get_all("x-b").collect::<Vec<_>>(), ["1", "2"]);
        assert!(!h.contains("x-a"));
        assert_eq!(req.query(), "page=1&src=gw");
    }

    #[test]
    fn response_rules_and_phases() {
        let p = plugin(r#"{"response": {"set": {"x-served-by": "gw"}, "remove": ["server"]}}"#)
            .expect("valid");
        assert_eq!(p.needs(), Needs::RESPONSE);
        let mut resp = Response::new(200).with_header("server", "nginx");
        p.on_response(&Request::new("GET", "/"), &mut resp, &mut Context::new());
        assert_eq!(resp.headers().get("x-served-by"), Some("gw"));
        assert!(!resp.headers().contains("server"));
        assert_eq!(plugin("{}").expect("empty is valid").needs(), Needs::NONE);
    }

    #[test]
    fn bad_config_is_refused_with_a_reason() {
        let unknown = plugin(r#"{"request": {"sett": {}}}"#)
            .err()
            .unwrap_or_default();
        assert!(unknown.contains("unknown field `sett`"), "{unknown}");
        let bad_name = plugin(r#"{"request": {"set": {"bad name": "x"}}}"#)
            .err()
            .unwrap_or_default();
        assert_eq!(bad_name, "request: invalid header name `bad name`");
        let bad_value = plugin(r#"{"response": {"add": {"x": "a\r\nb"}}}"#)
            .err()
            .unwrap_or_default();
        assert!(
            bad_value.contains("invalid value for header `x`"),
            "{bad_value}"
        );
    }
}
