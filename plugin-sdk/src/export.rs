//! The glue between the generated bindings and a [`Plugin`]: what
//! [`export!`](crate::export) expands to calls into here.

use crate::bindings::exports::gateway::plugin::handler::{
    PluginInfo, RequestOutcome, ResponseOutcome,
};
use crate::bindings::gateway::plugin::types::{
    Needs as WitNeeds, Request as WitRequest, RequestEdit, Response as WitResponse,
};
use crate::{Action, Config, Context, Headers, Needs, Plugin, Request, Response};
use std::any::Any;
use std::cell::RefCell;

thread_local! {
    // The instance's plugin value. Wasm instances are single-threaded, so a
    // thread-local is the instance's global.
    static INSTANCE: RefCell<Option<Box<dyn Any>>> = const { RefCell::new(None) };
}

/// The contract's flags for `needs`: the SDK's bits are the contract's, in
/// its order.
fn to_wit_needs(needs: Needs) -> WitNeeds {
    WitNeeds::from_bits_truncate(needs.bits())
}

/// `describe` for `P`.
pub fn describe<P: Plugin>(version: &str) -> PluginInfo {
    PluginInfo {
        name: P::NAME.to_string(),
        version: version.to_string(),
    }
}

/// `init` for `P`: builds the plugin, keeps it for the instance's lifetime,
/// and returns what it needs.
pub fn init<P: Plugin>(config: String) -> Result<WitNeeds, String> {
    install_panic_hook();
    let plugin = P::init(Config::from_json(&config))?;
    let needs = to_wit_needs(plugin.needs());
    INSTANCE.with(|cell| *cell.borrow_mut() = Some(Box::new(plugin)));
    Ok(needs)
}

fn with_plugin<P: Plugin, R>(f: impl FnOnce(&P) -> R) -> R {
    INSTANCE.with(|cell| {
        let guard = cell.borrow();
        let plugin = guard
            .as_ref()
            .and_then(|b| b.downcast_ref::<P>())
            .unwrap_or_else(|| panic!("{}: hook called before init", P::NAME));
        f(plugin)
    })
}

/// `on-request` for `P`.
pub fn on_request<P: Plugin>(request: WitRequest) -> RequestOutcome {
    let mut req = Request::from_wire(request.head, request.body);
    let mut ctx = Context::new();
    match with_plugin::<P, _>(|plugin| plugin.on_request(&mut req, &mut ctx)) {
        Action::Respond(response) => RequestOutcome::Respond(to_wit_response(response)),
        // Only what changed crosses back.
        Action::Continue if req.is_edited() => {
            let edited = req.edited;
            RequestOutcome::ProceedWith(RequestEdit {
                method: edited.method,
                path: edited.path,
                query: edited.query,
                headers: edited.headers.then(|| req.head.into_wire()),
                body: if edited.body { req.body } else { None },
                upstream: edited.upstream,
            })
        }
        Action::Continue => RequestOutcome::Proceed,
    }
}

/// `on-response` for `P`.
pub fn on_response<P: Plugin>(request: WitRequest, response: WitResponse) -> ResponseOutcome {
    let req = Request::from_wire(request.head, None);
    let mut resp = Response {
        status: response.status,
        headers: Headers::from_wire(response.headers),
        body: response.body,
        edited: false,
        body_edited: false,
    };
    let mut ctx = Context::new();
    with_plugin::<P, _>(|plugin| plugin.on_response(&req, &mut resp, &mut ctx));
    if resp.edited {
        // A body the plugin only read stays with the host: not copying it
        // back is what makes a header edit on a large response cheap.
        if !resp.body_edited {
            resp.body = None;
        }
        ResponseOutcome::Replace(to_wit_response(resp))
    } else {
        ResponseOutcome::Proceed
    }
}

fn to_wit_response(response: Response) -> WitResponse {
    WitResponse {
        status: response.status,
        headers: response.headers.into_wire(),
        body: response.body,
    }
}

fn install_panic_hook() {
    #[cfg(target_arch = "wasm32")]
    {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            std::panic::set_hook(Box::new(|info| {
                crate::log::error(&format!("panic: {info}"));
            }));
        });
    }
}

/// Exports a [`Plugin`] implementation as the component's `handler`.
///
/// Call it once, at the top level of the plugin crate:
///
/// ```ignore
/// plugin_sdk::export!(MyPlugin);
/// ```
#[macro_export]
macro_rules! export {
    ($plugin:ty) => {
        #[doc(hidden)]
        pub struct __GatewayPluginExport;

        impl $crate::__private::Guest for __GatewayPluginExport {
            fn describe() -> $crate::__private::PluginInfo {
                $crate::__private::describe::<$plugin>(env!("CARGO_PKG_VERSION"))
            }
            fn init(
                config: ::std::string::String,
            ) -> ::std::result::Result<$crate::__private::WitNeeds, ::std::string::String> {
                $crate::__private::init::<$plugin>(config)
            }
            fn on_request(
                request: $crate::__private::WitRequest,
            ) -> $crate::__private::RequestOutcome {
                $crate::__private::on_request::<$plugin>(request)
            }
            fn on_response(
                request: $crate::__private::WitRequest,
                response: $crate::__private::WitResponse,
            ) -> $crate::__private::ResponseOutcome {
                $crate::__private::on_response::<$plugin>(request, response)
            }
        }

        // Natively there is no component to export into (and the export names
        // are not valid native symbols); the impl above still type-checks.
        #[cfg(target_arch = "wasm32")]
        $crate::__private::bindings::__export_plugin_world!(__GatewayPluginExport with_types_in $crate::__private::bindings);
    };
}
