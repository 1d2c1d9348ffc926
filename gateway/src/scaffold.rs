//! `gateway new plugin NAME`: a plugin crate of its own, anywhere on disk,
//! that builds, tests and loads as it is: a `Cargo.toml` depending on this
//! gateway's SDK, a request hook with a native test, a `gateway.toml` that
//! passes `gateway check` once the plugin is built, and a README with the
//! lines to build, test and run it.

use std::path::{Path, PathBuf};

/// What to scaffold, and where.
#[derive(Debug)]
pub struct NewPlugin<'a> {
    /// The crate's name: lowercase letters, digits and `-`, a letter first.
    pub name: &'a str,
    /// The directory to create (must not exist, or be empty).
    pub dir: &'a Path,
    /// The `plugin-sdk` crate the plugin depends on.
    pub sdk: &'a Path,
}

/// Writes the crate; returns the files written.
pub fn new_plugin(spec: &NewPlugin<'_>) -> Result<Vec<PathBuf>, String> {
    check_name(spec.name)?;
    let sdk = spec.sdk.canonicalize().map_err(|e| {
        format!(
            "the plugin SDK at {} cannot be used ({e}); pass --sdk PATH/TO/plugin-sdk",
            spec.sdk.display()
        )
    })?;
    if !sdk.join("Cargo.toml").is_file() {
        return Err(format!(
            "{} is no crate (no Cargo.toml); pass --sdk PATH/TO/plugin-sdk",
            sdk.display()
        ));
    }
    ensure_empty(spec.dir)?;
    let files = [
        ("Cargo.toml", cargo_toml(spec.name, &sdk)),
        ("src/lib.rs", lib_rs(spec.name)),
        ("gateway.toml", gateway_toml(spec.name)),
        ("README.md", readme(spec.name)),
        (".gitignore", "/target\n".to_string()),
    ];
    let mut written = Vec::with_capacity(files.len());
    for (file, text) in files {
        let path = spec.dir.join(file);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
        }
        std::fs::write(&path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}

fn check_name(name: &str) -> Result<(), String> {
    let valid = name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.ends_with('-');
    if valid {
        Ok(())
    } else {
        Err(format!(
            "invalid plugin name `{name}`: use lowercase letters, digits and `-`, a letter first (like `require-tenant`)"
        ))
    }
}

fn ensure_empty(dir: &Path) -> Result<(), String> {
    let occupied = std::fs::read_dir(dir).is_ok_and(|mut entries| entries.next().is_some());
    if occupied {
        return Err(format!(
            "{} exists and is not empty; choose another --dir",
            dir.display()
        ));
    }
    Ok(())
}

/// `my-plugin` as a Rust type name: `MyPlugin`.
fn type_name(name: &str) -> String {
    name.split('-')
        .map(|word| {
            let mut chars = word.chars();
            chars.next().map_or_else(String::new, |first| {
                first.to_ascii_uppercase().to_string() + chars.as_str()
            })
        })
        .collect()
}

/// The component's file name once built.
fn artifact(name: &str) -> String {
    format!(
        "target/wasm32-wasip2/release/{}.wasm",
        name.replace('-', "_")
    )
}

fn cargo_toml(name: &str, sdk: &Path) -> String {
    // TOML basic strings escape `\` and `"`.
    let sdk = sdk
        .display()
        .to_string()
        .replace('\\', "\\\\")
        .replace('"', "\\\"");
    format!(
        r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"
publish = false

[lib]
# cdylib: the WebAssembly component; rlib: native tests link the crate.
crate-type = ["cdylib", "rlib"]

[dependencies]
plugin-sdk = {{ path = "{sdk}" }}
serde = {{ version = "1", features = ["derive"] }}

# A workspace of its own, so the crate builds wherever it is put.
[workspace]
"#
    )
}

fn lib_rs(name: &str) -> String {
    let ty = type_name(name);
    format!(
        r#"//! The `{name}` plugin: refuses requests without the configured header,
//! and hands its value to later plugins as `tenant` in the context.

use plugin_sdk::{{Action, Config, Context, Phases, Plugin, Request, Response}};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {{
    #[serde(default = "default_header")]
    header: String,
}}

fn default_header() -> String {{
    "x-tenant".to_string()
}}

/// Built once per warm instance from the route's `config` table.
pub struct {ty} {{
    settings: Settings,
}}

impl Plugin for {ty} {{
    const NAME: &'static str = "{name}";
    // Only the hooks this plugin implements: no call for responses.
    const PHASES: Phases = Phases::REQUEST;

    fn init(config: Config) -> Result<Self, String> {{
        Ok({ty} {{
            settings: config.parse()?,
        }})
    }}

    fn on_request(&self, req: &mut Request, ctx: &mut Context) -> Action {{
        // `single`, not `get`: a header given twice is refused, never half-read.
        match req.headers().single(&self.settings.header) {{
            Ok(Some(value)) if !value.is_empty() => {{
                ctx.set("tenant", value);
                Action::Continue
            }}
            _ => {{
                let reason = format!("{{}} header required, once", self.settings.header);
                Action::Respond(Response::error(400, &reason, req))
            }}
        }}
    }}
}}

plugin_sdk::export!({ty});

#[cfg(test)]
mod tests {{
    use super::*;

    fn plugin() -> {ty} {{
        {ty}::init(Config::from_json("{{}}")).expect("valid config")
    }}

    #[test]
    fn a_request_with_the_header_goes_on_with_its_value() {{
        let mut req = Request::new("GET", "/").with_header("x-tenant", "acme");
        let mut ctx = Context::new();
        assert!(matches!(plugin().on_request(&mut req, &mut ctx), Action::Continue));
        assert_eq!(ctx.get("tenant").as_deref(), Some("acme"));
    }}

    #[test]
    fn a_request_without_it_is_refused() {{
        let mut req = Request::new("GET", "/");
        let mut ctx = Context::new();
        let Action::Respond(answer) = plugin().on_request(&mut req, &mut ctx) else {{
            panic!("admitted");
        }};
        assert_eq!(answer.status(), 400);
    }}
}}
"#
    )
}

fn gateway_toml(name: &str) -> String {
    let artifact = artifact(name);
    format!(
        r#"# Serves the plugin in front of an answer from the gateway itself:
#   cargo build --release --target wasm32-wasip2
#   gateway run --config gateway.toml
#   curl -i -H 'x-tenant: acme' http://127.0.0.1:8080/

[server]
listen = "127.0.0.1:8080"

[[routes]]
name = "{name}"
path = "/{{*rest}}"

[[routes.plugins]]
plugin = "{artifact}"
config = {{ header = "x-tenant" }}

# Stands in for an upstream: answers every request the plugin lets through.
# Replace it with `upstream = "NAME"` on the route and an [upstreams.NAME].
[[routes.plugins]]
plugin = "respond"
config = {{ status = 200, body = "let through by {name}\n" }}
"#
    )
}

fn readme(name: &str) -> String {
    let artifact = artifact(name);
    format!(
        r#"# {name}

A plugin for the gateway, built as a WebAssembly component.

```sh
rustup target add wasm32-wasip2               # once
cargo test                                    # native tests (need a C compiler)
cargo build --release --target wasm32-wasip2  # the component: {artifact}
gateway check --config gateway.toml
gateway run --config gateway.toml
curl -i -H 'x-tenant: acme' http://127.0.0.1:8080/
```

`src/lib.rs` is the plugin; `gateway.toml` puts it on a route. The gateway's
docs/plugins.md describes the SDK.
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_become_rust_types_and_artifacts() {
        assert_eq!(type_name("require-tenant"), "RequireTenant");
        assert_eq!(type_name("x"), "X");
        assert_eq!(
            artifact("require-tenant"),
            "target/wasm32-wasip2/release/require_tenant.wasm"
        );
    }

    #[test]
    fn bad_names_are_refused() {
        for bad in ["", "My-Plugin", "1plugin", "a_b", "a-", "a/b", "a b"] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        assert!(check_name("require-tenant2").is_ok());
    }

    #[test]
    fn a_directory_with_files_is_not_overwritten() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("keep.txt"), "mine").expect("write");
        let sdk = Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugin-sdk");
        let spec = NewPlugin {
            name: "p",
            dir: dir.path(),
            sdk: &sdk,
        };
        assert!(new_plugin(&spec).is_err());
        assert_eq!(
            std::fs::read_to_string(dir.path().join("keep.txt"))
                .ok()
                .as_deref(),
            Some("mine")
        );
    }
}
