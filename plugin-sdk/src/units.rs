//! The gateway's units, for plugin configs: durations (`"250ms"`, `"30s"`,
//! `"1.5s"`, `"5m"`, `"1h"`) and byte sizes (`1000`, `"512KiB"`, `"1MiB"`),
//! parsed exactly as the gateway parses its own config, with the same
//! messages. Plugins prefix the messages with their name and key.

pub use plugin_shared::units::{parse_duration, parse_size};

/// A byte size given in a JSON config as a number or as a string.
pub fn size_from_json(value: &serde_json::Value) -> Result<u64, String> {
    match value {
        serde_json::Value::String(text) => parse_size(text),
        serde_json::Value::Number(n) => n.as_u64().ok_or_else(|| {
            format!("invalid size `{n}`: a size in bytes is a whole number of at least 0")
        }),
        other => Err(format!(
            "invalid size `{other}`: expected bytes as an integer or a string such as \"1MiB\""
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_from_json() {
        assert_eq!(size_from_json(&serde_json::json!(64)), Ok(64));
        assert!(size_from_json(&serde_json::json!(-1)).is_err());
        assert!(size_from_json(&serde_json::json!(1.5)).is_err());
        assert!(size_from_json(&serde_json::json!(true)).is_err());
    }
}
