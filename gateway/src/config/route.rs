//! `[[routes]]` checked into [`RouteSettings`]: the name unique, the path a
//! template (not a regular expression, not `:name`), the methods parsed,
//! the upstreams defined and speaking what the route asks of them, a
//! `strip_prefix` the path can start with, the WebSocket settings together.
//! Every error of a route is reported; its pipeline is checked where the
//! plugins are built (`runtime`).

use super::problems::{Problems, suggestion};
use super::shape::{
    DEFAULT_WEBSOCKET_IDLE_TIMEOUT, MirrorConfig, RetryConfig, RouteConfig, UpstreamConfig,
    UpstreamProtocol,
};
use super::source::{ConfigError, Source};
use crate::proxy::mirror::MirrorSettings;
use crate::proxy::upstream::retry::{MAX_POLICY_RETRIES, RetryPolicy};
use http::Method;
use std::collections::BTreeMap;
use std::time::Duration;
use toml::Spanned;

/// A route's own keys, checked: everything but its pipeline, which needs
/// the plugins.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteSettings {
    /// Its unique name.
    pub name: String,
    /// The path template.
    pub path: String,
    /// The methods it answers; all when `None`.
    pub methods: Option<Vec<Method>>,
    /// The hosts it answers; all when `None`.
    pub hosts: Option<Vec<String>>,
    /// The upstreams it may send to, by name, each defined; the first (or
    /// one by `weights`) unless a request hook chooses another.
    pub upstreams: Vec<String>,
    /// Each upstream's share of requests, in order, when split by weight.
    pub weights: Option<Vec<u32>>,
    /// The leading segments removed before proxying, without a trailing `/`.
    pub strip_prefix: Option<String>,
    /// Send the client's `Host` upstream.
    pub preserve_host: bool,
    /// With WebSocket upgrades let through: the upgraded connections' idle
    /// timeout.
    pub websocket: Option<Duration>,
    /// Its conditions on headers and query parameters.
    pub conditions: crate::route_match::Conditions,
    /// Its retry policy.
    pub retry: Option<RetryPolicy>,
    /// Where copies of its requests go.
    pub mirror: Option<MirrorSettings>,
}

/// A route's name, path, methods, upstreams, `strip_prefix` and WebSocket
/// setting, or every error in them. `upstreams` are the config's, `earlier`
/// the names of the routes before it.
pub fn route_settings(
    source: &Source,
    route: &RouteConfig,
    upstreams: &BTreeMap<String, Spanned<UpstreamConfig>>,
    earlier: &[String],
) -> Result<RouteSettings, ConfigError> {
    let mut problems = Problems::new(source);
    let name = route.name.get_ref().clone();
    if name.is_empty() {
        problems.at(route.name.span(), "a route name cannot be empty");
    }
    if earlier.contains(&name) {
        problems.at(
            route.name.span(),
            format!("duplicate route name `{name}`: route names must be unique"),
        );
    }
    problems.keep(route_path(source, &name, &route.path));
    let methods = match &route.methods {
        None => Some(None),
        Some(methods) => problems
            .keep(route_methods(source, &name, methods))
            .map(Some),
    };
    let listed = problems.keep(route_upstreams(source, route, &name, upstreams));
    let strip_prefix = match &route.strip_prefix {
        None => Some(None),
        Some(prefix) => problems
            .keep(route_strip_prefix(
                source,
                &name,
                prefix,
                route.path.get_ref(),
            ))
            .map(Some),
    };
    let conditions = match &route.conditions {
        None => Some(crate::route_match::Conditions::default()),
        Some(conditions) => problems.keep(route_conditions(source, &name, conditions)),
    };
    let traffic = problems.keep(route_traffic(source, &name, route, upstreams));
    let has_upstream = route.upstream.is_some() || route.upstreams.is_some();
    let websocket = problems.keep(websocket_setting(source, &name, route, has_upstream));
    if let Some(listed) = &listed {
        problems.keep(check_http2_upstreams(
            source, &name, route, listed, upstreams,
        ));
    }
    let parts = match (
        methods,
        listed,
        strip_prefix,
        websocket,
        conditions,
        traffic,
    ) {
        (Some(m), Some(l), Some(s), Some(w), Some(c), Some(t)) => Some((m, l, s, w, c, t)),
        _ => None,
    };
    let (methods, upstreams, strip_prefix, websocket, conditions, traffic) =
        problems.finish_some(parts)?;
    Ok(RouteSettings {
        name,
        path: route.path.get_ref().clone(),
        methods,
        hosts: route.hosts.as_ref().map(|h| h.get_ref().clone()),
        upstreams,
        strip_prefix,
        preserve_host: route.preserve_host.as_ref().is_some_and(|p| *p.get_ref()),
        websocket,
        conditions,
        weights: traffic.weights,
        retry: traffic.retry,
        mirror: traffic.mirror,
    })
}

/// What a route does with its traffic besides where it sends it.
struct Traffic {
    weights: Option<Vec<u32>>,
    retry: Option<RetryPolicy>,
    mirror: Option<MirrorSettings>,
}

/// A route's `weights`, `retry` and `mirror`, checked; `retry` and
/// `mirror` only on a route that proxies.
fn route_traffic(
    source: &Source,
    name: &str,
    route: &RouteConfig,
    upstreams: &BTreeMap<String, Spanned<UpstreamConfig>>,
) -> Result<Traffic, ConfigError> {
    let mut problems = Problems::new(source);
    let weights = problems.keep(route_weights(source, name, route));
    let retry = match &route.retry {
        None => Some(None),
        Some(retry) => problems.keep(retry_policy(source, name, retry)).map(Some),
    };
    let mirror = match &route.mirror {
        None => Some(None),
        Some(mirror) => problems
            .keep(mirror_settings(source, name, route, mirror, upstreams))
            .map(Some),
    };
    if route.upstream.is_none() && route.upstreams.is_none() {
        let given = [
            ("retry", route.retry.as_ref().map(Spanned::span)),
            ("mirror", route.mirror.as_ref().map(Spanned::span)),
        ];
        for (key, span) in given {
            if let Some(span) = span {
                let message = format!("route `{name}`: `{key}` needs `upstream` or `upstreams`");
                problems.at(span, message);
            }
        }
    }
    let traffic = match (weights, retry, mirror) {
        (Some(weights), Some(retry), Some(mirror)) => Some(Traffic {
            weights,
            retry,
            mirror,
        }),
        _ => None,
    };
    problems.finish_some(traffic)
}

/// `[routes.mirror]` checked: the upstream defined and not one `route`
/// sends to (copies would take places its requests need), the share and
/// cap in range.
fn mirror_settings(
    source: &Source,
    name: &str,
    route: &RouteConfig,
    mirror: &Spanned<MirrorConfig>,
    upstreams: &BTreeMap<String, Spanned<UpstreamConfig>>,
) -> Result<MirrorSettings, ConfigError> {
    let mut problems = Problems::new(source);
    let config = mirror.get_ref();
    let upstream = config.upstream.get_ref();
    let own = route.upstream.iter().map(|u| u.get_ref());
    let listed = route.upstreams.iter().flat_map(|u| u.get_ref());
    if own.chain(listed).any(|u| u == upstream) {
        problems.at(
            config.upstream.span(),
            format!("route `{name}`: mirror: `{upstream}` is where the route sends its requests; mirror to another upstream"),
        );
    }
    if !upstreams.contains_key(upstream) {
        let known: Vec<&str> = upstreams.keys().map(String::as_str).collect();
        problems.at(
            config.upstream.span(),
            format!(
                "route `{name}`: mirror: unknown upstream `{upstream}`{}",
                suggestion(upstream, "defined upstreams", &known)
            ),
        );
    }
    let share = *config.share.get_ref();
    if !(share > 0.0 && share <= 1.0) {
        problems.at(
            config.share.span(),
            format!("route `{name}`: mirror: share is above 0 and at most 1 (0.1 copies 10% of requests)"),
        );
    }
    if *config.max_in_flight.get_ref() == 0 {
        problems.at(
            config.max_in_flight.span(),
            format!("route `{name}`: mirror: max_in_flight must be at least 1"),
        );
    }
    problems.finish(MirrorSettings {
        upstream: upstream.clone(),
        share,
        max_in_flight: *config.max_in_flight.get_ref(),
    })
}

/// `[routes.retry]` checked into a [`RetryPolicy`], or every error in it.
fn retry_policy(
    source: &Source,
    name: &str,
    retry: &Spanned<RetryConfig>,
) -> Result<RetryPolicy, ConfigError> {
    let mut problems = Problems::new(source);
    let config = retry.get_ref();
    let mut fault = |span: std::ops::Range<usize>, message: String| {
        problems.at(span, format!("route `{name}`: retry: {message}"));
    };
    if *config.retries.get_ref() > MAX_POLICY_RETRIES {
        fault(
            config.retries.span(),
            format!("retries is at most {MAX_POLICY_RETRIES}"),
        );
    }
    let statuses = retry_statuses(&mut fault, &config.on_status);
    if let Some(timeout) = &config.per_try_timeout
        && timeout.get_ref().0.is_zero()
    {
        fault(
            timeout.span(),
            "per_try_timeout must be more than zero".to_string(),
        );
    }
    let (backoff, max_backoff) = (config.backoff.get_ref().0, config.max_backoff.get_ref().0);
    if max_backoff < backoff {
        fault(
            config.max_backoff.span(),
            "max_backoff must be at least backoff".to_string(),
        );
    }
    let budget = *config.budget.get_ref();
    if !(budget > 0.0 && budget <= 1.0) {
        fault(
            config.budget.span(),
            "budget is a share of the requests in flight: above 0, at most 1 (0.2 is 20%)"
                .to_string(),
        );
    }
    problems.finish(RetryPolicy {
        retries: *config.retries.get_ref(),
        statuses,
        on_timeout: config.on_timeout,
        per_try_timeout: config.per_try_timeout.as_ref().map(|t| t.get_ref().0),
        backoff,
        max_backoff,
        any_method: config.any_method,
        budget,
        min_retries_in_flight: *config.min_retries_in_flight.get_ref(),
    })
}

/// `on_status`: each a 5xx or 429, none twice.
fn retry_statuses(
    fault: &mut impl FnMut(std::ops::Range<usize>, String),
    given: &Spanned<Vec<u16>>,
) -> Vec<http::StatusCode> {
    let mut statuses = Vec::new();
    for code in given.get_ref() {
        match http::StatusCode::from_u16(*code) {
            Ok(status) if status.is_server_error() || *code == 429 => {
                if !statuses.contains(&status) {
                    statuses.push(status);
                }
            }
            _ => fault(
                given.span(),
                format!("on_status holds {code}: only 5xx statuses and 429 can be retried"),
            ),
        }
    }
    statuses
}

/// The most a weight may be (shares are relative: `[9, 1]` is `[90, 10]`).
const MAX_WEIGHT: u32 = 1_000_000;

/// `weights`: one per upstream of `upstreams`, at most [`MAX_WEIGHT`], not
/// all `0`.
fn route_weights(
    source: &Source,
    name: &str,
    route: &RouteConfig,
) -> Result<Option<Vec<u32>>, ConfigError> {
    let Some(weights) = &route.weights else {
        return Ok(None);
    };
    let error =
        |message: String| source.error(weights.span(), format!("route `{name}`: {message}"));
    let Some(upstreams) = &route.upstreams else {
        return Err(error(
            "`weights` split requests among `upstreams`: list them".to_string(),
        ));
    };
    let (given, listed) = (weights.get_ref(), upstreams.get_ref().len());
    if given.len() != listed {
        return Err(error(format!(
            "{} weights for {listed} upstreams: give one per upstream, in order",
            given.len()
        )));
    }
    if given.iter().any(|w| *w > MAX_WEIGHT) {
        return Err(error(format!("a weight is at most {MAX_WEIGHT}")));
    }
    if given.iter().all(|w| *w == 0) {
        return Err(error(
            "every weight is 0: no upstream would get a request".to_string(),
        ));
    }
    Ok(Some(given.clone()))
}

/// `[routes.match]` as conditions: each with a name fit for its place and
/// exactly one test, its regex within bounds.
fn route_conditions(
    source: &Source,
    name: &str,
    spanned: &Spanned<super::shape::MatchConfig>,
) -> Result<crate::route_match::Conditions, ConfigError> {
    use crate::route_match::{Condition, Conditions};
    let config = spanned.get_ref();
    let error =
        |message: String| source.error(spanned.span(), format!("route `{name}`: match: {message}"));
    let read = |place: &str, c: &super::shape::ConditionConfig| -> Result<Condition, ConfigError> {
        let header = place == "headers";
        if c.name.is_empty() || (header && http::HeaderName::from_bytes(c.name.as_bytes()).is_err())
        {
            return Err(error(format!(
                "{place}: `{}` is not a name a request can carry",
                c.name
            )));
        }
        let test =
            condition_test(c).map_err(|why| error(format!("{place} `{}`: {why}", c.name)))?;
        let name = if header {
            c.name.to_ascii_lowercase()
        } else {
            c.name.clone()
        };
        Ok(Condition { name, test })
    };
    let headers = config
        .headers
        .iter()
        .map(|c| read("headers", c))
        .collect::<Result<_, _>>()?;
    let query = config
        .query
        .iter()
        .map(|c| read("query", c))
        .collect::<Result<_, _>>()?;
    let conditions = Conditions { headers, query };
    if conditions.is_empty() {
        return Err(error(
            "give `headers` or `query` conditions, or leave `match` out".to_string(),
        ));
    }
    Ok(conditions)
}

/// The one test a condition gives.
fn condition_test(c: &super::shape::ConditionConfig) -> Result<crate::route_match::Test, String> {
    use crate::route_match::Test;
    match (&c.exact, &c.prefix, &c.regex, c.present) {
        (Some(text), None, None, None) => Ok(Test::Exact(text.clone())),
        (None, Some(text), None, None) => Ok(Test::Prefix(text.clone())),
        (None, None, Some(pattern), None) => Test::regex(pattern),
        (None, None, None, Some(wanted)) => Ok(Test::Present(wanted)),
        _ => Err("give exactly one of exact, prefix, regex or present".to_string()),
    }
}

/// A route's path template: it starts with `/`, and does not look like a
/// regular expression or another router's syntax, which would be taken
/// literally and never match what was meant.
fn route_path(source: &Source, name: &str, path: &Spanned<String>) -> Result<(), ConfigError> {
    match path_fault(path.get_ref()) {
        Some(fault) => Err(source.error(path.span(), format!("route `{name}`: {fault}"))),
        None => Ok(()),
    }
}

/// What is wrong with a path template, if anything: it must start with `/`
/// and be a template, not another router's syntax.
pub fn path_fault(text: &str) -> Option<String> {
    if looks_like_regex(text) {
        Some(format!(
            "path `{text}` looks like a regular expression, but paths are templates matched literally: write `/users/{{id}}` for a parameter and `/static/{{*rest}}` for the rest of the path"
        ))
    } else if !text.starts_with('/') {
        Some(format!("path `{text}` must start with `/`"))
    } else if text.contains('?') {
        Some(format!(
            "path `{text}` contains `?`: a route matches the path only; query parameters are not part of it"
        ))
    } else if text.split('/').any(|segment| segment.starts_with(':')) {
        Some(format!(
            "path `{text}` has a `:name` segment, which would match literally: parameters are written `{{name}}`, as in `/users/{{id}}`"
        ))
    } else {
        None
    }
}

/// Whether a path template has regular-expression or glob syntax outside
/// its `{parameters}`: characters a URL path cannot hold unencoded (`^`,
/// `[`, `]`, `|`, `\\`), `.*`, `.+`, `(?`, a trailing `$` anchor, or a
/// segment that is a glob (`*`, `**`). Characters a path may hold (`$` in
/// `/odata/$metadata`, `(` `)` in `/Products(1)`, `+`, `:`) pass.
fn looks_like_regex(path: &str) -> bool {
    let mut depth = 0usize;
    let mut outside = String::with_capacity(path.len());
    for c in path.chars() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth = depth.saturating_sub(1);
                outside.push('_');
            }
            _ if depth == 0 => outside.push(c),
            _ => {}
        }
    }
    outside.contains(['^', '[', ']', '|', '\\'])
        || [".*", ".+", "(?"].iter().any(|p| outside.contains(p))
        || outside.ends_with('$')
        || outside
            .split('/')
            .any(|segment| segment == "*" || segment == "**")
}

/// A route's `methods`, parsed: not empty, each a method, never CONNECT.
fn route_methods(
    source: &Source,
    name: &str,
    methods: &Spanned<Vec<String>>,
) -> Result<Vec<Method>, ConfigError> {
    if methods.get_ref().is_empty() {
        return Err(source.error(
            methods.span(),
            format!("route `{name}`: methods cannot be empty; leave it out to accept every method"),
        ));
    }
    let parsed = methods
        .get_ref()
        .iter()
        .map(|m| {
            let upper = m.to_ascii_uppercase();
            Method::from_bytes(upper.as_bytes()).map_err(|_| {
                source.error(
                    methods.span(),
                    format!("route `{name}`: invalid method `{m}`"),
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    if parsed.contains(&Method::CONNECT) {
        return Err(source.error(
            methods.span(),
            format!("route `{name}`: CONNECT cannot be routed: the gateway does not open tunnels, and answers CONNECT with 405"),
        ));
    }
    Ok(parsed)
}

/// A route's `strip_prefix` without its trailing `/`: it must start with
/// `/`, and the route's path must be able to start with it (a request the
/// route matches must have it as its first segments).
fn route_strip_prefix(
    source: &Source,
    name: &str,
    prefix: &Spanned<String>,
    path: &str,
) -> Result<String, ConfigError> {
    let text = prefix.get_ref().trim_end_matches('/');
    if !text.starts_with('/') {
        return Err(source.error(
            prefix.span(),
            format!(
                "route `{name}`: strip_prefix `{}` must start with `/`",
                prefix.get_ref()
            ),
        ));
    }
    if !can_start_with(path, text) {
        return Err(source.error(
            prefix.span(),
            format!(
                "route `{name}`: strip_prefix `{}` can never apply: the route's path `{path}` does not start with it (it removes whole leading segments only)",
                prefix.get_ref()
            ),
        ));
    }
    Ok(text.to_string())
}

/// Whether some path the template `path` matches starts with the segments
/// `prefix` (no trailing `/`). Only the literal text before the first
/// parameter decides; a parameter may match the rest.
fn can_start_with(path: &str, prefix: &str) -> bool {
    let literal = path.split('{').next().unwrap_or_default();
    if literal.len() >= prefix.len() {
        literal.starts_with(prefix)
            && (literal.len() == prefix.len() || literal[prefix.len()..].starts_with('/'))
    } else {
        // Shorter: only a parameter after it can supply the rest.
        path.contains('{') && prefix.starts_with(literal)
    }
}

/// What a route may not ask of an HTTP/2 upstream. HTTP/2 names the host in
/// `:authority`, which is the target's: a different `Host` beside it makes
/// the request malformed (RFC 9113, section 8.3.1). And WebSocket over
/// HTTP/2 is another handshake (RFC 8441) than the one this gateway relays.
fn check_http2_upstreams(
    source: &Source,
    name: &str,
    route: &RouteConfig,
    listed: &[String],
    upstreams: &BTreeMap<String, Spanned<UpstreamConfig>>,
) -> Result<(), ConfigError> {
    let http2 = |upstream: &&String| {
        upstreams
            .get(*upstream)
            .is_some_and(|u| *u.get_ref().protocol.get_ref() == UpstreamProtocol::Http2)
    };
    for upstream in listed.iter().filter(http2) {
        let refusals = [
            (
                route.preserve_host.as_ref(),
                "preserve_host cannot be used with upstream `{}`, which speaks HTTP/2 (its requests carry the target's authority)",
            ),
            (
                route.websocket.as_ref(),
                "websocket = true needs an HTTP/1.1 upstream; `{}` speaks HTTP/2",
            ),
        ];
        for (setting, why) in refusals {
            if let Some(on) = setting.filter(|on| *on.get_ref()) {
                let why = why.replace("{}", upstream);
                return Err(source.error(on.span(), format!("route `{name}`: {why}")));
            }
        }
    }
    Ok(())
}

/// The upstreams a route lists (`upstream = "a"` or `upstreams = ["a",
/// "b"]`), resolved by name, in order.
fn route_upstreams(
    source: &Source,
    route: &RouteConfig,
    name: &str,
    upstreams: &BTreeMap<String, Spanned<UpstreamConfig>>,
) -> Result<Vec<String>, ConfigError> {
    let names: Vec<Spanned<String>> = match (&route.upstream, &route.upstreams) {
        (Some(_), Some(list)) => {
            return Err(source.error(
                list.span(),
                format!("route `{name}`: give either `upstream` or `upstreams`, not both"),
            ));
        }
        (Some(one), None) => vec![one.clone()],
        (None, Some(list)) if list.get_ref().is_empty() => {
            return Err(source.error(
                list.span(),
                format!("route `{name}`: `upstreams` is empty; name at least one upstream or leave it out"),
            ));
        }
        (None, Some(list)) => list
            .get_ref()
            .iter()
            .map(|n| Spanned::new(list.span(), n.clone()))
            .collect(),
        (None, None) => Vec::new(),
    };
    let mut listed: Vec<String> = Vec::with_capacity(names.len());
    for wanted in &names {
        let wanted_name = wanted.get_ref();
        if !upstreams.contains_key(wanted_name) {
            let known: Vec<&str> = upstreams.keys().map(String::as_str).collect();
            return Err(source.error(
                wanted.span(),
                format!(
                    "route `{name}`: unknown upstream `{wanted_name}`{}",
                    suggestion(wanted_name, "defined upstreams", &known)
                ),
            ));
        }
        if listed.contains(wanted_name) {
            return Err(source.error(
                wanted.span(),
                format!("route `{name}`: upstream `{wanted_name}` is listed twice"),
            ));
        }
        listed.push(wanted_name.clone());
    }
    Ok(listed)
}

/// The idle timeout of the route's upgraded connections, when it lets
/// WebSocket upgrades through.
fn websocket_setting(
    source: &Source,
    name: &str,
    route: &RouteConfig,
    has_upstream: bool,
) -> Result<Option<Duration>, ConfigError> {
    let enabled = route.websocket.as_ref().filter(|on| *on.get_ref());
    match (enabled, &route.websocket_idle_timeout) {
        (None, None) => Ok(None),
        (None, Some(timeout)) => Err(source.error(
            timeout.span(),
            format!("route `{name}`: websocket_idle_timeout needs websocket = true"),
        )),
        (Some(on), _) if !has_upstream => Err(source.error(
            on.span(),
            format!("route `{name}`: websocket = true needs an upstream to pass the connection to"),
        )),
        (Some(_), Some(timeout)) if timeout.get_ref().0.is_zero() => Err(source.error(
            timeout.span(),
            format!("route `{name}`: websocket_idle_timeout must be more than zero"),
        )),
        (Some(_), timeout) => Ok(Some(
            timeout
                .as_ref()
                .map_or(DEFAULT_WEBSOCKET_IDLE_TIMEOUT, |t| t.get_ref().0),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::{can_start_with, looks_like_regex, route_path};
    use crate::config::Source;
    use toml::Spanned;

    fn path_fault(path: &str) -> Option<String> {
        let source = Source::from_text(std::path::Path::new("t.toml"), String::new());
        route_path(&source, "r", &Spanned::new(0..0, path.to_string()))
            .err()
            .map(|e| e.to_string())
    }

    #[test]
    fn paths_in_another_syntax_are_refused() {
        for path in [
            "/users/.*",
            "^/users",
            "/a/(x|y)",
            "/files/*",
            "/v[12]/x",
            "/a/\\d+",
            "/users$",
            "/a/**/b",
            "/(?i)x",
        ] {
            assert!(looks_like_regex(path), "{path}");
            assert!(
                path_fault(path).is_some_and(|f| f.contains("regular expression")),
                "{path}"
            );
        }
        assert!(path_fault("/users/:id").is_some_and(|f| f.contains("`{name}`")));
        assert!(path_fault("/search?q=1").is_some_and(|f| f.contains("`?`")));
        assert!(path_fault("users").is_some_and(|f| f.contains("must start with `/`")));
    }

    #[test]
    fn templates_are_not_mistaken_for_regexes() {
        for path in [
            "/users/{id}",
            "/static/{*rest}",
            "/a.json",
            "/v1/things:batchGet",
            "/x-y_z~",
            "/odata/$metadata",
            "/api/$batch",
            "/Products(1)",
            "/files/a+b",
            "/.well-known/x",
            "/v1/*x",
        ] {
            assert!(!looks_like_regex(path), "{path}");
            assert_eq!(path_fault(path), None, "{path}");
        }
    }

    #[test]
    fn strip_prefix_must_be_a_possible_start_of_the_path() {
        assert!(can_start_with("/api/users", "/api"));
        assert!(can_start_with("/api", "/api"));
        assert!(can_start_with("/{*rest}", "/api"));
        assert!(can_start_with("/api/{id}/x", "/api/v1"));
        assert!(!can_start_with("/apix/users", "/api"));
        assert!(!can_start_with("/v2/{id}", "/v1"));
        assert!(!can_start_with("/a", "/a/b"));
    }
}
