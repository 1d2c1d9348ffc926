//! A test plugin that uses the `http-client` and `kv` capabilities, for the
//! gateway's integration tests.

use plugin_sdk::{Action, Config, Context, Needs, Plugin, Request, Response, http_client, kv};
use serde::Deserialize;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum Mode {
    /// `http_client::send` a GET of `url` and answer with what came back.
    Fetch,
    /// `http_client::fetch_shared(url, max_age_ms)` and answer with the body.
    FetchShared,
    /// Count requests in kv and answer with the count.
    KvCounter,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    mode: Mode,
    #[serde(default)]
    url: String,
    #[serde(default)]
    max_age_ms: u64,
    /// Fetch once in `init` too (to test outbound calls at load).
    #[serde(default)]
    fetch_at_init: bool,
}

/// The plugin.
pub struct Outbound {
    settings: Settings,
}

fn failure(error: &http_client::Error) -> Action {
    Action::Respond(Response::text(502, format!("outbound: {error}")))
}

impl Plugin for Outbound {
    const NAME: &'static str = "outbound";

    fn init(config: Config) -> Result<Self, String> {
        let settings: Settings = config.parse()?;
        if settings.fetch_at_init {
            http_client::send(http_client::Request::get(&settings.url))
                .map_err(|e| format!("outbound: fetch at init failed: {e}"))?;
        }
        Ok(Outbound { settings })
    }

    fn needs(&self) -> Needs {
        Needs::REQUEST
    }

    fn on_request(&self, _req: &mut Request, _ctx: &mut Context) -> Action {
        match self.settings.mode {
            Mode::Fetch => match http_client::send(http_client::Request::get(&self.settings.url)) {
                Ok(answer) => Action::Respond(
                    Response::new(answer.status)
                        .with_header("x-fetched", "yes")
                        .with_body(answer.body),
                ),
                Err(error) => failure(&error),
            },
            Mode::FetchShared => {
                let max_age = Duration::from_millis(self.settings.max_age_ms);
                match http_client::fetch_shared(&self.settings.url, max_age) {
                    Ok((body, age)) => Action::Respond(
                        Response::new(200)
                            .with_header("x-age-ms", age.as_millis().to_string())
                            .with_body(body),
                    ),
                    Err(error) => failure(&error),
                }
            }
            Mode::KvCounter => {
                let count = kv::get("count")
                    .and_then(|bytes| <[u8; 8]>::try_from(bytes.as_slice()).ok())
                    .map_or(0, u64::from_le_bytes)
                    + 1;
                match kv::set("count", &count.to_le_bytes(), Duration::from_secs(60)) {
                    Ok(()) => Action::Respond(Response::text(200, count.to_string())),
                    Err(refused) => Action::Respond(Response::text(500, refused.to_string())),
                }
            }
        }
    }
}

plugin_sdk::export!(Outbound);
