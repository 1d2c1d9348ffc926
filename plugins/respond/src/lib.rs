//! The built-in `respond` plugin: answers requests from the gateway itself, like
//! a mock integration or a function behind the gateway.
//!
//! `{{name}}` in the body is replaced by the route's path parameter `name`
//! (empty when absent).

use plugin_sdk::{Action, Config, Context, Needs, Plugin, Request, Response};
use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    #[serde(default = "default_status")]
    status: u16,
    #[serde(default)]
    body: String,
    #[serde(default = "default_content_type")]
    content_type: String,
    #[serde(default)]
    headers: BTreeMap<String, String>,
}

fn default_status() -> u16 {
    200
}

fn default_content_type() -> String {
    "text/plain; charset=utf-8".to_string()
}

/// The plugin: a fixed answer with placeholders.
#[derive(Debug)]
pub struct Respond {
    settings: Settings,
    has_placeholders: bool,
}

impl Plugin for Respond {
    const NAME: &'static str = "respond";

    fn needs(&self) -> Needs {
        Needs::REQUEST
    }

    fn init(config: Config) -> Result<Self, String> {
        let settings: Settings = config.parse()?;
        if !(100..=999).contains(&settings.status) {
            return Err(format!(
                "invalid status {}: expected 100 to 999",
                settings.status
            ));
        }
        for (name, value) in &settings.headers {
            if name.is_empty()
                || name
                    .bytes()
                    .any(|b| !(b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)))
            {
                return Err(format!("invalid header name `{name}`"));
            }
            if value.bytes().any(|b| b < 0x20 && b != b'\t') {
                return Err(format!("invalid value for header `{name}`"));
            }
        }
        let has_placeholders = settings.body.contains("{{");
        Ok(Respond {
            settings,
            has_placeholders,
        })
    }

    fn on_request(&self, req: &mut Request, _ctx: &mut Context) -> Action {
        let body = if self.has_placeholders {
            fill(&self.settings.body, req)
        } else {
            self.settings.body.clone()
        };
        let mut response = Response::new(self.settings.status)
            .with_header("content-type", self.settings.content_type.as_str())
            .with_body(body);
        for (name, value) in &self.settings.headers {
            response = response.with_header(name, value.as_str());
        }
        Action::Respond(response)
    }
}

/// Replaces `{{param}}` with the request's path parameter.
fn fill(template: &str, req: &Request) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        match rest[start + 2..].find("}}") {
            Some(len) => {
                let name = rest[start + 2..start + 2 + len].trim();
                out.push_str(req.param(name).unwrap_or_default());
                rest = &rest[start + 2 + len + 2..];
            }
            None => {
                out.push_str(&rest[start..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

plugin_sdk::export!(Respond);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_with_placeholders_filled() {
        let p = Respond::init(Config::from_json(
            r#"{"status": 201, "body": "hi {{name}}, {{missing}}!", "headers": {"x-a": "1"}}"#,
        ))
        .expect("valid");
        let mut req = Request::new("GET", "/x").with_param("name", "ada");
        let Action::Respond(resp) = p.on_request(&mut req, &mut Context::new()) else {
            panic!("expected an answer");
        };
        assert_eq!(resp.status(), 201);
        assert_eq!(resp.body(), Some(&b"hi ada, !"[..]));
        assert_eq!(resp.headers().get("x-a"), Some("1"));
        assert_eq!(
            resp.headers().get("content-type"),
            Some("text/plain; charset=utf-8")
        );
    }

    #[test]
    fn refuses_bad_config() {
        let typo = Respond::init(Config::from_json(r#"{"bodyy": "x"}"#))
            .err()
            .unwrap_or_default();
        assert!(typo.contains("unknown field `bodyy`"), "{typo}");
        let status = Respond::init(Config::from_json(r#"{"status": 42}"#))
            .err()
            .unwrap_or_default();
        assert_eq!(status, "invalid status 42: expected 100 to 999");
    }
}
