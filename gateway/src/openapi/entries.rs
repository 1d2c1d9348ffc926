//! `x-gateway-plugins`: pipeline entries an operation adds for itself, run
//! after the inherited ones (and before its mock answer), with the keys of a
//! `[[routes.plugins]]` entry that say what it does: `plugin`, `name`,
//! `config`, `on_error`.
//!
//! Only built-in plugins, and only additions: a document says what an
//! operation needs, while what runs in the gateway's process (a component's
//! path, the capabilities it is granted, the hosts it may reach, its
//! resources, where its state lives) and the entries the config runs on
//! every route stay the config's to say (an entry named like one of those is
//! refused by the API, which knows them).

use super::Reader;
use super::tree::escape;
use crate::config::OnError;
use serde_json::Value;

/// The keys an entry of `x-gateway-plugins` may have.
const KEYS: [&str; 4] = ["plugin", "name", "config", "on_error"];

/// One entry of an operation's `x-gateway-plugins`.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// The built-in plugin.
    pub plugin: String,
    /// Its name (the plugin's when absent).
    pub name: Option<String>,
    /// The plugin's config.
    pub config: Option<toml::Table>,
    /// What a failing call does.
    pub on_error: OnError,
}

impl Entry {
    /// Its name in the pipeline: `name`, else the plugin's.
    pub fn name(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.plugin)
    }
}

impl Reader<'_> {
    /// The operation's `x-gateway-plugins`, or `None` with the faults
    /// recorded.
    pub(super) fn plugins(&mut self, op: &Value, at: &str) -> Option<Vec<super::Located<Entry>>> {
        let pointer = format!("{at}/x-gateway-plugins");
        let Some(listed) = op.get("x-gateway-plugins") else {
            return Some(Vec::new());
        };
        let Some(listed) = listed.as_array() else {
            self.fault(&pointer, "x-gateway-plugins must be a list of entries");
            return None;
        };
        let mut entries = Vec::with_capacity(listed.len());
        let mut readable = true;
        for (index, item) in listed.iter().enumerate() {
            let item_at = format!("{pointer}/{index}");
            match entry(item) {
                Ok(value) => entries.push(super::Located {
                    value,
                    at: self.tree.place(&item_at),
                }),
                Err((key, why)) => {
                    let place =
                        key.map_or(item_at.clone(), |k| format!("{item_at}/{}", escape(&k)));
                    self.fault(&place, format!("x-gateway-plugins: {why}"));
                    readable = false;
                }
            }
        }
        readable.then_some(entries)
    }
}

/// A fault in an entry: the key it is at (the entry itself when none), why.
type Fault = (Option<String>, String);

/// One entry, read.
fn entry(item: &Value) -> Result<Entry, Fault> {
    let Some(object) = item.as_object() else {
        return Err((
            None,
            "an entry is a mapping with `plugin` and its `config`".to_string(),
        ));
    };
    if let Some(key) = object.keys().find(|k| !KEYS.contains(&k.as_str())) {
        let why = format!(
            "`{key}` cannot be set from the document (an entry may set {}): what runs in the gateway's process is the config's to say",
            KEYS.join(", ")
        );
        return Err((Some(key.clone()), why));
    }
    let text = |key: &str| -> Result<Option<String>, Fault> {
        match object.get(key) {
            None => Ok(None),
            Some(Value::String(text)) if !text.is_empty() => Ok(Some(text.clone())),
            Some(_) => Err((
                Some(key.to_string()),
                format!("`{key}` must be a non-empty string"),
            )),
        }
    };
    let plugin = text("plugin")?.ok_or((None, "an entry needs `plugin`".to_string()))?;
    if crate::builtin::find(&plugin).is_none() {
        let known = crate::builtin::names();
        let why = format!(
            "plugin `{plugin}` is not a built-in{}: a document adds built-in plugins only",
            crate::config::problems::suggestion(&plugin, "built-in plugins", &known)
        );
        return Err((Some("plugin".to_string()), why));
    }
    let name = text("name")?;
    if name.as_deref().is_some_and(|n| n.starts_with("openapi-")) {
        let why =
            "names starting with `openapi-` are the gateway's own; choose another".to_string();
        return Err((Some("name".to_string()), why));
    }
    Ok(Entry {
        plugin,
        name,
        config: object
            .get("config")
            .map(|c| table(c).map_err(|why| (Some("config".to_string()), why)))
            .transpose()?,
        on_error: typed(object, "on_error", "\"fail\" or \"continue\"")?.unwrap_or_default(),
    })
}

/// `key` of `object` read as the config reads it.
fn typed<T: serde::de::DeserializeOwned>(
    object: &serde_json::Map<String, Value>,
    key: &str,
    expected: &str,
) -> Result<Option<T>, Fault> {
    object
        .get(key)
        .map(|value| {
            serde_json::from_value(value.clone())
                .map_err(|_| (Some(key.to_string()), format!("`{key}` must be {expected}")))
        })
        .transpose()
}

/// A JSON object as the TOML table a config entry's `config` is.
fn table(value: &Value) -> Result<toml::Table, String> {
    match toml_value(value)? {
        toml::Value::Table(table) => Ok(table),
        _ => Err("`config` must be a mapping".to_string()),
    }
}

fn toml_value(value: &Value) -> Result<toml::Value, String> {
    Ok(match value {
        Value::Null => {
            return Err("`config` holds a null, which a plugin's config cannot have (TOML has no null): leave the key out".to_string());
        }
        Value::Bool(b) => toml::Value::Boolean(*b),
        Value::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => toml::Value::Integer(i),
            (None, Some(f)) if n.is_f64() => toml::Value::Float(f),
            _ => {
                return Err(format!(
                    "`config` holds the number {n}, larger than a config can hold"
                ));
            }
        },
        Value::String(s) => toml::Value::String(s.clone()),
        Value::Array(items) => {
            toml::Value::Array(items.iter().map(toml_value).collect::<Result<_, _>>()?)
        }
        Value::Object(map) => {
            let mut table = toml::Table::new();
            for (key, inner) in map {
                table.insert(key.clone(), toml_value(inner)?);
            }
            toml::Value::Table(table)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_entry_reads_the_request_keys_of_a_route_entry() {
        let read = entry(&json!({
            "plugin": "rate-limit", "name": "per-op", "on_error": "continue",
            "config": {"limits": [{"rate": "5/s", "by": "ip"}]}
        }))
        .expect("a valid entry");
        assert_eq!(read.plugin, "rate-limit");
        assert_eq!(read.name(), "per-op");
        assert_eq!(read.on_error, OnError::Continue);
        let limits = read.config.as_ref().and_then(|c| c.get("limits"));
        assert!(matches!(limits, Some(toml::Value::Array(a)) if a.len() == 1));
    }

    #[test]
    fn what_the_config_alone_says_is_refused() {
        let fault = |item: Value| entry(&item).err().map(|(key, _)| key);
        assert_eq!(
            fault(json!({"plugin": "jwt", "grants": ["http-client"]})),
            Some(Some("grants".into()))
        );
        assert_eq!(
            fault(json!({"plugin": "evil.wasm"})),
            Some(Some("plugin".into()))
        );
        assert_eq!(
            fault(json!({"plugin": "headers", "config": {"a": null}})),
            Some(Some("config".into()))
        );
        assert_eq!(
            fault(json!({"plugin": "headers", "deadline": "soon"})),
            Some(Some("deadline".into()))
        );
        assert_eq!(fault(json!({"config": {}})), Some(None));
    }
}
