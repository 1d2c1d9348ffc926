//! An example third-party plugin: answers `{"message": "Hello, NAME!"}`.
//!
//! The name comes from the route's `{name}` path parameter, else the `name`
//! query parameter, else the config's `default_name`.

use plugin_sdk::{Action, Config, Context, Needs, Plugin, Request, Response};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    #[serde(default = "default_greeting")]
    greeting: String,
    #[serde(default = "default_name")]
    default_name: String,
}

fn default_greeting() -> String {
    "Hello".to_string()
}

fn default_name() -> String {
    "world".to_string()
}

/// The plugin's state, built once per instance from its config.
pub struct Hello {
    settings: Settings,
}

impl Plugin for Hello {
    const NAME: &'static str = "hello";
    // Only the request phase: the gateway never calls this plugin for responses.
    fn needs(&self) -> Needs {
        Needs::REQUEST
    }

    fn init(config: Config) -> Result<Self, String> {
        Ok(Hello {
            settings: config.parse()?,
        })
    }

    fn on_request(&self, req: &mut Request, ctx: &mut Context) -> Action {
        let name = req
            .param("name")
            .map(str::to_string)
            .or_else(|| req.query_param("name"))
            .unwrap_or_else(|| self.settings.default_name.clone());
        // Later plugins (and this plugin's tests) can see who was greeted.
        ctx.set("greeted", name.as_str());
        plugin_sdk::log::debug(&format!("greeting {name}"));
        let message = format!("{}, {name}!", self.settings.greeting);
        Action::Respond(Response::json(
            200,
            &serde_json::json!({ "message": message }),
        ))
    }
}

plugin_sdk::export!(Hello);

#[cfg(test)]
mod tests {
    use super::*;

    fn hello(config: &str) -> Hello {
        Hello::init(Config::from_json(config)).expect("valid config")
    }

    fn answer(plugin: &Hello, req: &mut Request) -> (Response, Context) {
        let mut ctx = Context::new();
        match plugin.on_request(req, &mut ctx) {
            Action::Respond(resp) => (resp, ctx),
            Action::Continue => panic!("hello always answers"),
        }
    }

    #[test]
    fn greets_the_path_parameter() {
        let (resp, ctx) = answer(
            &hello(r#"{"greeting": "Hi"}"#),
            &mut Request::new("GET", "/hello/ada").with_param("name", "ada"),
        );
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.body(), Some(&br#"{"message":"Hi, ada!"}"#[..]));
        assert_eq!(ctx.get("greeted").as_deref(), Some("ada"));
    }

    #[test]
    fn falls_back_to_query_then_default() {
        let plugin = hello("{}");
        let (resp, _) = answer(&plugin, &mut Request::new("GET", "/hello?name=bob"));
        assert_eq!(resp.body(), Some(&br#"{"message":"Hello, bob!"}"#[..]));
        let (resp, _) = answer(&plugin, &mut Request::new("GET", "/hello"));
        assert_eq!(resp.body(), Some(&br#"{"message":"Hello, world!"}"#[..]));
    }

    #[test]
    fn unknown_config_keys_are_refused() {
        assert!(Hello::init(Config::from_json(r#"{"greting": "x"}"#)).is_err());
    }
}
