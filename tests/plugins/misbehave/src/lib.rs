//! A plugin that misbehaves on request, for the gateway's integration tests:
//! it traps, loops forever (busy, or sleeping through WASI), eats memory,
//! refuses its config, or plays with the per-request context.

use plugin_sdk::{Action, Config, Context, Needs, Plugin, Request, Response};
use serde::Deserialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum Mode {
    Ok,
    Trap,
    Loop,
    /// Sleeps 10 ms at a time, forever: waits no timer of the gateway sees.
    Sleep,
    Oom,
    InitFail,
    SetContext,
    EchoContext,
    /// Answers with what it was given of the body: `none` unless it reads bodies,
    /// which this plugin does not.
    EchoBody,
    /// Sends the request to the upstream named in its `x-upstream` header
    /// (if any) and reports, in `x-seen-*` response headers, the request
    /// head its response hook sees.
    ChooseUpstream,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Phase {
    Request,
    Response,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    mode: Mode,
    #[serde(default = "default_phase")]
    phase: Phase,
    #[serde(default)]
    key: String,
    #[serde(default)]
    value: String,
}

fn default_phase() -> Phase {
    Phase::Request
}

/// The plugin.
pub struct Misbehave {
    settings: Settings,
}

impl Misbehave {
    /// Does the configured bad thing; returns only for the harmless modes.
    fn act(&self, ctx: &mut Context) -> Option<Response> {
        match self.settings.mode {
            Mode::Ok | Mode::InitFail | Mode::EchoBody | Mode::ChooseUpstream => None,
            Mode::Trap => panic!("misbehave: trap requested"),
            Mode::Loop => {
                let mut counter: u64 = 0;
                loop {
                    counter = std::hint::black_box(counter.wrapping_add(1));
                }
            }
            Mode::Sleep => loop {
                std::thread::sleep(std::time::Duration::from_millis(10));
            },
            Mode::Oom => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    let mut chunk = vec![0u8; 1 << 20];
                    for page in chunk.iter_mut().step_by(4096) {
                        *page = 1;
                    }
                    hoard.push(std::hint::black_box(chunk));
                }
            }
            Mode::SetContext => {
                ctx.set(&self.settings.key, self.settings.value.as_str());
                None
            }
            Mode::EchoContext => {
                let map: serde_json::Map<String, serde_json::Value> = ctx
                    .keys()
                    .into_iter()
                    .filter_map(|k| ctx.get(&k).map(|v| (k, v.into())))
                    .collect();
                Some(Response::json(200, &map))
            }
        }
    }
}

impl Plugin for Misbehave {
    const NAME: &'static str = "misbehave";

    fn init(config: Config) -> Result<Self, String> {
        let settings: Settings = config.parse()?;
        if settings.mode == Mode::InitFail {
            return Err("misbehave: init refused".to_string());
        }
        Ok(Misbehave { settings })
    }

    fn needs(&self) -> Needs {
        if self.settings.mode == Mode::ChooseUpstream {
            return match self.settings.phase {
                Phase::Request => Needs::REQUEST | Needs::RESPONSE,
                Phase::Response => Needs::RESPONSE,
            };
        }
        match self.settings.phase {
            Phase::Request => Needs::REQUEST,
            Phase::Response => Needs::RESPONSE,
        }
    }

    fn on_request(&self, req: &mut Request, ctx: &mut Context) -> Action {
        if self.settings.mode == Mode::ChooseUpstream {
            if let Some(upstream) = req.headers().get("x-upstream").map(str::to_string) {
                req.set_upstream(upstream);
            }
            if let Some(path) = req.headers().get("x-set-path").map(str::to_string) {
                req.set_path(path);
            }
            // A hostile plugin's try at choosing through the head instead.
            if let Some(upstream) = req.headers().get("x-smuggle").map(str::to_string) {
                req.headers_mut().append(":upstream", upstream);
            }
            return Action::Continue;
        }
        if self.settings.mode == Mode::EchoBody {
            let seen = req
                .body()
                .map_or("none".to_string(), |b| b.len().to_string());
            return Action::Respond(Response::text(200, seen));
        }
        match self.act(ctx) {
            Some(response) => Action::Respond(response),
            None => Action::Continue,
        }
    }

    fn on_response(&self, req: &Request, resp: &mut Response, ctx: &mut Context) {
        if self.settings.mode == Mode::ChooseUpstream {
            let seen = [
                ("x-seen-method", req.method()),
                ("x-seen-path", req.path()),
                ("x-seen-route", req.route()),
                ("x-seen-param", req.param("id").unwrap_or("-")),
                ("x-seen-upstream", req.upstream().unwrap_or("-")),
                ("x-seen-consumer", req.consumer().unwrap_or("-")),
                ("x-seen-request-id", req.id()),
            ];
            for (name, value) in seen {
                resp.headers_mut().set(name, value);
            }
            return;
        }
        if self.settings.mode == Mode::EchoContext {
            for key in ctx.keys() {
                if let Some(value) = ctx.get(&key) {
                    resp.headers_mut().set(&format!("x-context-{key}"), value);
                }
            }
            return;
        }
        if self.act(ctx).is_none() && self.settings.mode == Mode::Ok {
            resp.headers_mut().set("x-misbehave", "ok");
        }
    }
}

plugin_sdk::export!(Misbehave);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn harmless_modes() {
        let set = Misbehave::init(Config::from_json(
            r#"{"mode": "set-context", "key": "k", "value": "v"}"#,
        ))
        .expect("valid");
        let echo =
            Misbehave::init(Config::from_json(r#"{"mode": "echo-context"}"#)).expect("valid");
        let mut ctx = Context::new();
        let mut req = Request::new("GET", "/");
        assert!(matches!(
            set.on_request(&mut req, &mut ctx),
            Action::Continue
        ));
        let Action::Respond(resp) = echo.on_request(&mut req, &mut ctx) else {
            panic!("echo answers");
        };
        assert_eq!(resp.body(), Some(&br#"{"k":"v"}"#[..]));
        assert!(Misbehave::init(Config::from_json(r#"{"mode": "init-fail"}"#)).is_err());
    }
}
