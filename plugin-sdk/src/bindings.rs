//! The one `generate!` call over the WIT contract. Nothing here is public API.

wit_bindgen::generate!({
    path: "../wit",
    world: "plugin",
    pub_export_macro: true,
    export_macro_name: "__export_plugin_world",
    default_bindings_module: "plugin_sdk::__private::bindings",
});
