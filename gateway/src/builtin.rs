//! The built-in plugins, compiled by `build.rs` and embedded in the binary.

/// `(name in config, component bytes)`.
const BUILTINS: &[(&str, &[u8])] = &[
    (
        "headers",
        include_bytes!(concat!(env!("GATEWAY_PLUGIN_DIR"), "/plugin_headers.wasm")),
    ),
    (
        "respond",
        include_bytes!(concat!(env!("GATEWAY_PLUGIN_DIR"), "/plugin_respond.wasm")),
    ),
];

/// The component bytes of the built-in called `name`.
pub fn find(name: &str) -> Option<&'static [u8]> {
    BUILTINS
        .iter()
        .find(|(builtin, _)| *builtin == name)
        .map(|(_, bytes)| *bytes)
}

/// The names of all built-ins, for error messages.
pub fn names() -> Vec<&'static str> {
    BUILTINS.iter().map(|(name, _)| *name).collect()
}
