//! `[apis.NAME]`: an API defined by an OpenAPI document, expanded into one
//! route per operation (named by its `operationId`, its path the API's
//! `base_path` and the operation's template, its method the operation's),
//! with the API's `plugins` as the level between `[[plugins]]` and the
//! route, and a `key-auth` entry where the operation's security asks for an
//! API key.
//!
//! The routes are then checked and built like hand-written ones (`runtime`);
//! what only the document can say wrong is reported at its line in the
//! document.

use crate::config::problems::{Problems, suggestion};
use crate::config::{ApiConfig, Config, OnError, PluginEntryConfig, RouteConfig, StoreKind};
use crate::openapi::{self, Credential, Mock, Operation};
use std::collections::BTreeMap;
use toml::Spanned;

/// The name of the entry an operation's API key check runs under.
pub const SECURITY_ENTRY: &str = "openapi-security";
/// The names of the entries that validate an API's requests against its
/// document, shared by its routes: one for the operations whose bodies are
/// read (a content type with a schema), one for the others (whose bodies
/// stream by unread). A route runs the one its operation is in.
pub const VALIDATION_ENTRIES: [&str; 2] = ["openapi-validation", "openapi-validation-body"];
/// The name of the entry a mocked operation answers with.
pub const MOCK_ENTRY: &str = "openapi-mock";
/// The name of the entry that removes, on a public operation, the consumer
/// headers a client sent itself (no key check runs there to remove them).
pub const PUBLIC_ENTRY: &str = "openapi-public";

/// Whether the entry named `name` runs before every inherited entry: the
/// key check (entries before it could answer without it, a cache hit, or
/// need its consumer, a rate limit by consumer) and the removal of forged
/// consumer headers (an inherited key check sets the real ones after it).
pub fn runs_first(name: &str) -> bool {
    name == SECURITY_ENTRY || name == PUBLIC_ENTRY
}

/// One API, expanded.
pub struct Api<'c> {
    /// Its name in the config.
    pub name: &'c str,
    /// Its own entries, for every one of its routes.
    pub plugins: &'c [Spanned<PluginEntryConfig>],
    /// One route per operation.
    pub routes: Vec<Spanned<RouteConfig>>,
    /// Its validation entries (`VALIDATION_ENTRIES`), run after its own
    /// entries, each shared by the routes of its operations.
    pub validation: Vec<Spanned<PluginEntryConfig>>,
}

/// Records an error for every entry of the config itself named like the
/// ones the gateway adds to an API's operations (`openapi-...`): one would
/// run before the inherited entries, or take the place of a key check.
pub fn check_reserved_names(problems: &mut Problems<'_>, config: &Config) {
    let of_apis = config
        .apis
        .values()
        .flat_map(|a| a.get_ref().plugins.iter());
    let of_routes = config
        .routes
        .iter()
        .flat_map(|r| r.get_ref().plugins.iter());
    for spanned in config.plugins.iter().chain(of_apis).chain(of_routes) {
        let entry = spanned.get_ref();
        if let Some(name) = entry
            .name
            .as_ref()
            .filter(|n| n.get_ref().starts_with("openapi-"))
        {
            problems.at(
                name.span(),
                format!("entry name `{}`: names starting with `openapi-` are the gateway's own (the entries it adds to an API's operations); choose another", name.get_ref()),
            );
        }
    }
}

/// Every API of `config`, each error recorded (an API with one is left out).
pub fn expand<'c>(problems: &mut Problems<'_>, config: &'c Config) -> Vec<Api<'c>> {
    let mut apis = Vec::with_capacity(config.apis.len());
    for (name, api) in &config.apis {
        if let Some((routes, validation)) = api_routes(problems, config, name, api) {
            apis.push(Api {
                name,
                plugins: &api.get_ref().plugins,
                routes,
                validation,
            });
        }
    }
    apis
}

/// Routes, as the config has them.
type Routes = Vec<Spanned<RouteConfig>>;
/// Pipeline entries, as the config has them.
type Entries = Vec<Spanned<PluginEntryConfig>>;

/// The routes of API `name` and its validation entries, or `None` with
/// its errors recorded.
fn api_routes(
    problems: &mut Problems<'_>,
    config: &Config,
    name: &str,
    spanned: &Spanned<ApiConfig>,
) -> Option<(Routes, Entries)> {
    let source = problems.source();
    let api = spanned.get_ref();
    let before = problems.len();
    let checks = openapi::Checks {
        requests: api.validate.as_ref().is_none_or(|v| *v.get_ref()),
        responses: api
            .validate_responses
            .as_ref()
            .is_some_and(|v| *v.get_ref()),
    };
    let base_path = base_path(problems, name, api);
    let (document, faults) = problems.keep(openapi::load(
        &source.base_dir(),
        api.openapi.get_ref(),
        checks,
    ))?;
    let read_well = faults.is_empty();
    for fault in faults {
        problems.push(fault);
    }
    if document.operations.is_empty() && read_well {
        problems.at(
            api.openapi.span(),
            format!("api `{name}`: the document has no operations"),
        );
        return None;
    }
    let (validation, classes) = validation_entries(&spanned.span(), &document);
    let mut routes = Vec::with_capacity(document.operations.len());
    for operation in &document.operations {
        if !bearer_is_configured(problems, name, api, operation, &document)
            || !adds_only(problems, config, api, operation, &document)
        {
            continue;
        }
        let upstream = operation_upstream(problems, config, name, api, operation, &document);
        if upstream.is_some() || operation.mock.is_some() {
            let mut route = route(spanned, base_path.as_deref()?, operation, upstream);
            let runs = classes.get(operation.name.as_str()).copied();
            for other in validation.iter().map(|e| e.get_ref().name()) {
                if Some(other) != runs {
                    let off = switched_off(&spanned.span(), "request-validator", other);
                    route.get_mut().plugins.push(at(&spanned.span(), off));
                }
            }
            routes.push(route);
        }
    }
    (problems.len() == before).then_some((routes, validation))
}

/// Whether an operation requiring a bearer token has the API's `bearer`
/// entry to check it with (an error at its requirement otherwise).
fn bearer_is_configured(
    problems: &mut Problems<'_>,
    name: &str,
    api: &ApiConfig,
    operation: &Operation,
    document: &openapi::Document,
) -> bool {
    let Some(Credential::Bearer { at, scopes }) = &operation.credential else {
        return true;
    };
    if let Some(bearer) = &api.bearer {
        let plugin = bearer.get_ref().plugin.get_ref();
        if !scopes.is_empty() && !SCOPED_BEARERS.contains(&plugin.as_str()) {
            let message = format!(
                "api `{name}`: operation `{}` requires scopes, and its bearer entry's plugin `{plugin}` cannot check them: use {}",
                operation.name,
                SCOPED_BEARERS.join(" or ")
            );
            problems.push(document.error(*at, message));
            return false;
        }
        if bearer.get_ref().is_enabled() {
            return true;
        }
        problems.at(bearer.span(), format!("api `{name}`: the bearer entry cannot be switched off: operations of the document require it"));
        return false;
    }
    let message = format!(
        "api `{name}`: operation `{}` requires a bearer token: say how tokens are checked with [apis.{name}.bearer] (a jwt entry with its settings)",
        operation.name
    );
    problems.push(document.error(*at, message));
    false
}

/// The bearer entries' plugins that take an operation's scopes (`scopes`
/// in their config).
const SCOPED_BEARERS: &[&str] = &["jwt"];

/// The API's `base_path`: empty, or `/segments` without a trailing `/`.
fn base_path(problems: &mut Problems<'_>, name: &str, api: &ApiConfig) -> Option<String> {
    let Some(base) = &api.base_path else {
        return Some(String::new());
    };
    let text = base.get_ref().trim_end_matches('/');
    if !text.is_empty() && !text.starts_with('/') || text.contains(['{', '}', '?', '*']) {
        problems.at(base.span(), format!("api `{name}`: base_path `{}` must be a literal path starting with `/`, such as \"/v1\"", base.get_ref()));
        return None;
    }
    Some(text.to_string())
}

/// Whether the operation's own entries only add to its pipeline: none is
/// named like a `[[plugins]]` or API entry (which it would replace or, as
/// the same plugin, stand in for): those are the config's (an error at the
/// entry's line otherwise).
fn adds_only(
    problems: &mut Problems<'_>,
    config: &Config,
    api: &ApiConfig,
    operation: &Operation,
    document: &openapi::Document,
) -> bool {
    let configured: Vec<&str> = config
        .plugins
        .iter()
        .chain(&api.plugins)
        .map(|e| e.get_ref().name())
        .collect();
    let mut adds = true;
    for own in &operation.plugins {
        let name = own.value.name();
        if configured.contains(&name) {
            let message = format!(
                "x-gateway-plugins: entry `{name}` is named like an entry the config runs on this API's routes: a document adds entries, it cannot replace or switch off the config's; give it a `name` of its own"
            );
            problems.push(document.error(own.at, message));
            adds = false;
        }
    }
    adds
}

/// Where an operation goes: its `x-gateway-upstream`, else the API's.
fn operation_upstream(
    problems: &mut Problems<'_>,
    config: &Config,
    name: &str,
    api: &ApiConfig,
    operation: &Operation,
    document: &openapi::Document,
) -> Option<Spanned<String>> {
    let Some(chosen) = &operation.upstream else {
        if api.upstream.is_none() && operation.mock.is_none() {
            let message = format!(
                "api `{name}`: operation `{}` has no upstream: set `upstream` in [apis.{name}] or `x-gateway-upstream` on the operation",
                operation.name
            );
            problems.push(document.error(operation.at, message));
        }
        return api.upstream.clone();
    };
    if !config.upstreams.contains_key(&chosen.value) {
        let known: Vec<&str> = config.upstreams.keys().map(String::as_str).collect();
        let message = format!(
            "operation `{}`: unknown upstream `{}`{}",
            operation.name,
            chosen.value,
            suggestion(&chosen.value, "defined upstreams", &known)
        );
        problems.push(document.error(chosen.at, message));
        return None;
    }
    Some(Spanned::new(api.openapi.span(), chosen.value.clone()))
}

/// The route of one operation, every key located at the API's table.
fn route(
    api: &Spanned<ApiConfig>,
    base_path: &str,
    operation: &Operation,
    upstream: Option<Spanned<String>>,
) -> Spanned<RouteConfig> {
    let span = api.span();
    let security = match (&operation.credential, &api.get_ref().bearer) {
        (Some(Credential::Bearer { scopes, .. }), Some(bearer)) => bearer_entry(bearer, scopes),
        (Some(key), _) => security_entry(&span, key),
        (None, _) => public_entry(&span),
    };
    let own = operation
        .plugins
        .iter()
        .map(|e| document_entry(&span, &e.value));
    let mock = operation.mock.as_ref().map(|mock| mock_entry(&span, mock));
    let plugins = std::iter::once(security)
        .chain(own)
        .chain(mock)
        .map(|e| at(&span, e))
        .collect();
    at(
        &span,
        RouteConfig {
            name: at(&span, operation.name.clone()),
            path: at(&span, format!("{base_path}{}", operation.path)),
            methods: Some(at(&span, vec![operation.method.to_string()])),
            hosts: api.get_ref().hosts.clone(),
            listeners: None,
            upstream,
            upstreams: None,
            weights: None,
            strip_prefix: None,
            preserve_host: None,
            websocket: None,
            websocket_idle_timeout: None,
            conditions: None,
            retry: None,
            mirror: None,
            compression: None,
            plugins,
        },
    )
}

/// `value` located at `span` of the config.
fn at<T>(span: &std::ops::Range<usize>, value: T) -> Spanned<T> {
    Spanned::new(span.clone(), value)
}

/// A `headers` entry removing the consumer headers a key check would set
/// (`x-consumer-name`, `-groups`, `-plan`), so a client cannot claim an
/// identity on a public operation of an API whose upstream trusts them.
fn public_entry(span: &std::ops::Range<usize>) -> PluginEntryConfig {
    let names = ["x-consumer-name", "x-consumer-groups", "x-consumer-plan"];
    let remove = names.iter().map(|n| toml::Value::from(*n)).collect();
    let mut request = toml::Table::new();
    request.insert("remove".into(), toml::Value::Array(remove));
    let mut config = toml::Table::new();
    config.insert("request".into(), toml::Value::Table(request));
    entry(span, "headers", PUBLIC_ENTRY, config)
}

/// A `respond` entry giving the documented answer (`x-gateway-mock`).
fn mock_entry(span: &std::ops::Range<usize>, mock: &Mock) -> PluginEntryConfig {
    let mut config = toml::Table::new();
    config.insert(
        "status".into(),
        toml::Value::Integer(i64::from(mock.status)),
    );
    config.insert("body".into(), toml::Value::String(mock.body.clone()));
    if let Some(content_type) = &mock.content_type {
        config.insert(
            "content_type".into(),
            toml::Value::String(content_type.clone()),
        );
    }
    entry(span, "respond", MOCK_ENTRY, config)
}

/// An entry of the operation's `x-gateway-plugins`.
fn document_entry(
    span: &std::ops::Range<usize>,
    own: &openapi::entries::Entry,
) -> PluginEntryConfig {
    let mut entry = entry(
        span,
        &own.plugin,
        own.name(),
        own.config.clone().unwrap_or_default(),
    );
    entry.on_error = own.on_error;
    entry
}

/// The API's validation entries (`request-validator`, configured with
/// each operation's checks by route name, as JSON text: a schema may hold
/// `null`s, which TOML cannot), and which one each operation is in.
fn validation_entries<'d>(
    span: &std::ops::Range<usize>,
    document: &'d openapi::Document,
) -> (
    Vec<Spanned<PluginEntryConfig>>,
    BTreeMap<&'d str, &'static str>,
) {
    let mut classes: [serde_json::Map<String, serde_json::Value>; 2] = Default::default();
    let mut runs = BTreeMap::new();
    for operation in &document.operations {
        let Some(spec) = &operation.validation else {
            continue;
        };
        let class = usize::from(reads_body(spec));
        classes[class].insert(operation.name.clone(), spec.clone());
        runs.insert(operation.name.as_str(), VALIDATION_ENTRIES[class]);
    }
    let (dialect, referenced) = &document.schemas;
    let entries = classes
        .into_iter()
        .zip(VALIDATION_ENTRIES)
        .filter(|(operations, _)| !operations.is_empty())
        .map(|(operations, name)| {
            let spec = serde_json::json!({
                "dialect": dialect,
                "document": referenced,
                "operations": operations,
            });
            let mut config = toml::Table::new();
            config.insert("openapi".into(), toml::Value::String(spec.to_string()));
            at(span, entry(span, "request-validator", name, config))
        })
        .collect();
    (entries, runs)
}

/// Whether an operation's checks read its request body: some content type
/// of its body has a schema.
fn reads_body(spec: &serde_json::Value) -> bool {
    spec.pointer("/body/content")
        .and_then(serde_json::Value::as_object)
        .is_some_and(|content| {
            content
                .values()
                .any(|schema| !request_validator_schema::is_unconstrained(schema))
        })
}

/// An entry switching off the inherited entry `name` of `plugin`.
fn switched_off(span: &std::ops::Range<usize>, plugin: &str, name: &str) -> PluginEntryConfig {
    let mut off = entry(span, plugin, name, toml::Table::new());
    off.enabled = Some(at(span, false));
    off
}

/// The API's `bearer` entry, as an operation's security check: with the
/// operation's `scopes` added to the entry's `scopes.all_of`.
fn bearer_entry(bearer: &Spanned<PluginEntryConfig>, scopes: &[String]) -> PluginEntryConfig {
    let mut entry = bearer.get_ref().clone();
    entry.name = Some(Spanned::new(bearer.span(), SECURITY_ENTRY.to_string()));
    if !scopes.is_empty() {
        let span = bearer.span();
        let config = entry
            .config
            .get_or_insert_with(|| Spanned::new(span, toml::Table::new()))
            .get_mut();
        let required = config
            .entry("scopes")
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if let toml::Value::Table(required) = required {
            let all_of = required
                .entry("all_of")
                .or_insert_with(|| toml::Value::Array(Vec::new()));
            if let toml::Value::Array(all_of) = all_of {
                all_of.extend(scopes.iter().map(|s| toml::Value::from(s.as_str())));
            }
        }
    }
    entry
}

/// A `key-auth` entry reading the key where the scheme says.
fn security_entry(span: &std::ops::Range<usize>, key: &Credential) -> PluginEntryConfig {
    let (headers, query) = match key {
        Credential::Header(name) => (vec![toml::Value::from(name.as_str())], vec![]),
        Credential::Query(name) => (vec![], vec![toml::Value::from(name.as_str())]),
        // Handled by the API's bearer entry; never reached.
        Credential::Bearer { .. } => (vec![], vec![]),
    };
    let mut config = toml::Table::new();
    config.insert("headers".into(), toml::Value::Array(headers));
    config.insert("query".into(), toml::Value::Array(query));
    entry(span, "key-auth", SECURITY_ENTRY, config)
}

/// A pipeline entry of built-in `plugin` named `name`, with `config`.
fn entry(
    span: &std::ops::Range<usize>,
    plugin: &str,
    name: &str,
    config: toml::Table,
) -> PluginEntryConfig {
    PluginEntryConfig {
        plugin: at(span, plugin.to_string()),
        name: Some(at(span, name.to_string())),
        enabled: None,
        on_error: OnError::Fail,
        deadline: None,
        memory_limit: None,
        max_body: None,
        pool_size: None,
        max_idle_memory: None,
        grants: Vec::new(),
        store: Spanned::new(span.clone(), StoreKind::Local),
        store_failure: None,
        allowed_hosts: Vec::new(),
        config: Some(at(span, config)),
        config_files: BTreeMap::new(),
        config_env: BTreeMap::new(),
    }
}
