//! Reading a config file's text into [`Config`], section by section, so that
//! a mistake in one route or upstream does not hide the mistakes after it.
//!
//! The TOML is parsed once with its spans (every syntax error reported), then
//! each top-level table, each upstream, route, consumer and usage plan is
//! deserialized on its own; what serde says goes through
//! [`in_config_terms`](super::problems::in_config_terms).

use super::problems::{Problems, in_config_terms, suggestion};
use super::shape::Config;
use super::source::{ConfigError, Source};
use serde::Deserialize;
use serde::de::IntoDeserializer;
use std::collections::BTreeMap;
use toml::Spanned;
use toml::de::{DeArray, DeTable, DeValue};

/// The top-level keys a config may have.
const SECTIONS: [&str; 13] = [
    "server",
    "listeners",
    "plugin_defaults",
    "upstreams",
    "routes",
    "plugins",
    "apis",
    "identity",
    "consumers",
    "usage_plans",
    "redis",
    "cache",
    "admin",
];

impl Source {
    /// Parses the text into the raw config shape, or reports every error in
    /// it.
    pub fn parse(&self) -> Result<Config, ConfigError> {
        parse(self, self.text())
    }
}

/// `text` as a [`Config`], or every error in it.
fn parse(source: &Source, text: &str) -> Result<Config, ConfigError> {
    let mut problems = Problems::new(source);
    let (root, syntax) = DeTable::parse_recoverable(text);
    for error in syntax {
        problems.at(error.span().unwrap_or(0..0), error.message().trim_end());
    }
    if !problems.is_empty() {
        return problems.finish(Config::default());
    }
    let mut config = Config::default();
    for (key, value) in root.into_inner() {
        section(&mut problems, &mut config, key, value);
    }
    problems.finish(config)
}

/// Deserializes one top-level key into its place in `config`.
fn section<'i>(
    problems: &mut Problems<'_>,
    config: &mut Config,
    key: Spanned<toml::de::DeString<'i>>,
    value: Spanned<DeValue<'i>>,
) {
    match key.get_ref().as_ref() {
        "server" => set(problems, &mut config.server, value),
        "plugin_defaults" => set(problems, &mut config.plugin_defaults, value),
        "identity" => set(problems, &mut config.identity, value),
        "cache" => set(problems, &mut config.cache, value),
        "redis" => config.redis = one(problems, value),
        "admin" => config.admin = one(problems, value),
        "upstreams" => config.upstreams = named(problems, "upstreams", value),
        "usage_plans" => config.usage_plans = named(problems, "usage_plans", value),
        "routes" => config.routes = listed(problems, "routes", value),
        "listeners" => config.listeners = listed(problems, "listeners", value),
        "plugins" => config.plugins = listed(problems, "plugins", value),
        "apis" => config.apis = named(problems, "apis", value),
        "consumers" => config.consumers = listed(problems, "consumers", value),
        other => problems.at(
            key.span(),
            format!(
                "unknown section `{other}`{}",
                suggestion(other, "the sections are", &SECTIONS)
            ),
        ),
    }
}

/// `value` as a `T`, or `None` with serde's error recorded.
fn one<'i, T: Deserialize<'i>>(
    problems: &mut Problems<'_>,
    value: Spanned<DeValue<'i>>,
) -> Option<T> {
    let span = value.span();
    T::deserialize(value.into_deserializer())
        .map_err(|error| {
            let at = error.span().unwrap_or(span);
            problems.at(at, in_config_terms(error.message()));
        })
        .ok()
}

/// Puts `value` in `slot` when it deserializes.
fn set<'i, T: Deserialize<'i>>(
    problems: &mut Problems<'_>,
    slot: &mut T,
    value: Spanned<DeValue<'i>>,
) {
    if let Some(parsed) = one(problems, value) {
        *slot = parsed;
    }
}

/// `[NAME.KEY]` tables, each deserialized on its own.
fn named<'i, T: Deserialize<'i>>(
    problems: &mut Problems<'_>,
    name: &str,
    value: Spanned<DeValue<'i>>,
) -> BTreeMap<String, Spanned<T>> {
    let span = value.span();
    let DeValue::Table(table) = value.into_inner() else {
        problems.at(span, format!("`{name}` must be a table of named entries"));
        return BTreeMap::new();
    };
    table
        .into_iter()
        .filter_map(|(key, entry)| Some((key.into_inner().into_owned(), one(problems, entry)?)))
        .collect()
}

/// `[[NAME]]` entries, each deserialized on its own.
fn listed<'i, T: Deserialize<'i>>(
    problems: &mut Problems<'_>,
    name: &str,
    value: Spanned<DeValue<'i>>,
) -> Vec<Spanned<T>> {
    let span = value.span();
    let items: DeArray<'i> = match value.into_inner() {
        DeValue::Array(items) => items,
        _ => {
            problems.at(
                span,
                format!("`{name}` must be an array: write each as [[{name}]]"),
            );
            return Vec::new();
        }
    };
    items
        .into_iter()
        .filter_map(|item| one(problems, item))
        .collect()
}
