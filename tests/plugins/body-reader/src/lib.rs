//! A test plugin that reads bodies in both phases: it upper-cases the request
//! body and wraps the response body in brackets, reporting the sizes it saw in
//! headers, so the tests can check that bodies cross only to plugins that ask.

use plugin_sdk::{Action, Config, Context, Needs, Plugin, Request, Response};

/// The plugin.
pub struct BodyReader;

impl Plugin for BodyReader {
    const NAME: &'static str = "body-reader";

    fn init(_config: Config) -> Result<Self, String> {
        Ok(BodyReader)
    }

    fn needs(&self) -> Needs {
        Needs::REQUEST | Needs::REQUEST_BODY | Needs::RESPONSE | Needs::RESPONSE_BODY
    }

    fn on_request(&self, req: &mut Request, ctx: &mut Context) -> Action {
        let body = req.body().map(<[u8]>::to_ascii_uppercase);
        ctx.set(
            "request-body-len",
            body.as_ref()
                .map_or("none".to_string(), |b| b.len().to_string()),
        );
        if let Some(body) = body {
            req.set_body(body);
        }
        Action::Continue
    }

    fn on_response(&self, _req: &Request, resp: &mut Response, ctx: &mut Context) {
        let seen = resp
            .body()
            .map_or("none".to_string(), |b| b.len().to_string());
        let mut wrapped = b"[".to_vec();
        wrapped.extend_from_slice(resp.body().unwrap_or_default());
        wrapped.push(b']');
        resp.set_body(Some(wrapped));
        resp.headers_mut().set("x-response-body-len", seen);
        if let Some(len) = ctx.get("request-body-len") {
            resp.headers_mut().set("x-request-body-len", len);
        }
    }
}

plugin_sdk::export!(BodyReader);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transforms_both_bodies() {
        let plugin = BodyReader;
        let mut ctx = Context::new();
        let mut req = Request::new("POST", "/").with_body("abc");
        assert!(matches!(
            plugin.on_request(&mut req, &mut ctx),
            Action::Continue
        ));
        assert_eq!(req.body(), Some(&b"ABC"[..]));
        let mut resp = Response::new(200).with_body("x");
        plugin.on_response(&Request::new("GET", "/"), &mut resp, &mut ctx);
        assert_eq!(resp.body(), Some(&b"[x]"[..]));
        assert_eq!(resp.headers().get("x-request-body-len"), Some("3"));
    }
}
