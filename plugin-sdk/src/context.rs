//! The per-request context shared by the plugins of one pipeline.

#[cfg(target_arch = "wasm32")]
use crate::bindings::gateway::plugin::context as host;

/// Per-request key/value strings shared by the plugins of one pipeline, in
/// both phases. Empty at the start of every request.
///
/// Inside the gateway the values live in the host; in native tests they live in
/// this struct, so `Context::new()` gives an empty context to test with.
#[derive(Debug, Default)]
pub struct Context {
    #[cfg(not(target_arch = "wasm32"))]
    entries: std::collections::HashMap<String, String>,
    #[cfg(not(target_arch = "wasm32"))]
    response_headers: Vec<(String, String)>,
}

impl Context {
    /// An empty context (inside the gateway: a handle to the request's context).
    pub fn new() -> Self {
        Self::default()
    }

    /// The value under `key`.
    pub fn get(&self, key: &str) -> Option<String> {
        #[cfg(target_arch = "wasm32")]
        return host::get(key);
        #[cfg(not(target_arch = "wasm32"))]
        return self.entries.get(key).cloned();
    }

    /// Stores `value` under `key`. The host caps entries at 64, keys at 256
    /// bytes and values at 16 KiB; a value over a cap is dropped with a
    /// warning, natively too (the caps are `plugin_shared::limits`').
    pub fn set(&mut self, key: &str, value: impl Into<String>) {
        let value = value.into();
        #[cfg(target_arch = "wasm32")]
        host::set(key, &value);
        #[cfg(not(target_arch = "wasm32"))]
        {
            let replacing = self.entries.contains_key(key);
            let fits = plugin_shared::limits::context_entry_fits(
                key.len(),
                value.len(),
                self.entries.len(),
                replacing,
            );
            if !fits {
                let shown = key.chars().take(64).collect::<String>();
                crate::log::warn(&format!(
                    "context entry refused: over the size or count limit (key {shown})"
                ));
                return;
            }
            self.entries.insert(key.to_string(), value);
        }
    }

    /// Removes `key`.
    pub fn remove(&mut self, key: &str) {
        #[cfg(target_arch = "wasm32")]
        host::remove(key);
        #[cfg(not(target_arch = "wasm32"))]
        self.entries.remove(key);
    }

    /// Every key, in no particular order.
    pub fn keys(&self) -> Vec<String> {
        #[cfg(target_arch = "wasm32")]
        return host::keys();
        #[cfg(not(target_arch = "wasm32"))]
        return self.entries.keys().cloned().collect();
    }

    /// Sets a header on the response the client will get, replacing one of the
    /// same name, from any hook. The gateway adds it at the very end, after every
    /// response hook (none of them sees it, and a cache does not store it), to
    /// whatever answer the client gets: upstream, plugin or error.
    ///
    /// This is how a request-phase plugin reports on the request (rate-limit
    /// counters, a computed id) without a response hook, which would cost a
    /// second call into the plugin on every request.
    ///
    /// Refused with the reason for an invalid name or value, a hop-by-hop
    /// header, `content-length` or `content-type`, or beyond 32 headers or 8 KiB
    /// in all; a refused header leaves an earlier one of the same name in
    /// place. Natively the same checks apply, and the headers are kept
    /// (names lower-cased) for [`Context::response_headers`].
    pub fn set_response_header(&mut self, name: &str, value: &str) -> Result<(), String> {
        #[cfg(target_arch = "wasm32")]
        return host::set_response_header(name, value);
        #[cfg(not(target_arch = "wasm32"))]
        native::set_response_header(&mut self.response_headers, name, value)
    }

    /// The headers set with [`Context::set_response_header`], in order (native
    /// tests only; inside the gateway they live in the host).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn response_headers(&self) -> &[(String, String)] {
        &self.response_headers
    }
}

/// The host's checks on response headers, natively: the gateway parses the
/// name and value with the `http` crate, whose rules these are.
#[cfg(not(target_arch = "wasm32"))]
mod native {
    use plugin_shared::limits::{response_header_settable, response_headers_within};

    /// An RFC 9110 token character (what a header name is made of).
    fn is_token(b: u8) -> bool {
        b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
    }

    /// What `http::HeaderValue::from_str` accepts: no control characters
    /// but tab, no DEL.
    fn is_value_byte(b: u8) -> bool {
        (b >= 32 && b != 127) || b == b'\t'
    }

    pub(super) fn set_response_header(
        headers: &mut Vec<(String, String)>,
        name: &str,
        value: &str,
    ) -> Result<(), String> {
        if name.is_empty() || !name.bytes().all(is_token) {
            return Err(format!("invalid header name `{}`", name.escape_default()));
        }
        let name = name.to_ascii_lowercase();
        if !response_header_settable(&name) {
            return Err(format!("`{name}` cannot be set this way"));
        }
        if !value.bytes().all(is_value_byte) {
            return Err(format!("invalid value for header `{name}`"));
        }
        let bytes_of = |(n, v): &(String, String)| n.len() + v.len();
        let total: usize = headers.iter().map(bytes_of).sum();
        let replaced = headers.iter().position(|(existing, _)| *existing == name);
        let (count, freed) = match replaced {
            Some(at) => (headers.len(), bytes_of(&headers[at])),
            None => (headers.len() + 1, 0),
        };
        response_headers_within(count, total - freed + name.len() + value.len())?;
        match replaced {
            Some(at) => headers[at] = (name, value.to_string()),
            None => headers.push((name, value.to_string())),
        }
        Ok(())
    }
}
