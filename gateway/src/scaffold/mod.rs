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

/// A template with `__NAME__` (the crate), `__TYPE__` (its plugin type)
/// and `__ARTIFACT__` (the built component's path) filled in.
fn fill(template: &str, name: &str) -> String {
    template
        .replace("__NAME__", name)
        .replace("__TYPE__", &type_name(name))
        .replace("__ARTIFACT__", &artifact(name))
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
    fill(include_str!("lib.rs.template"), name)
}

fn gateway_toml(name: &str) -> String {
    fill(include_str!("gateway.toml.template"), name)
}

fn readme(name: &str) -> String {
    fill(include_str!("README.md.template"), name)
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
