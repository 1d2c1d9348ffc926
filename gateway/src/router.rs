//! Matching a request's host, method and path to a route.
//!
//! Hosts are tried most specific first (exact, then the longest `*.suffix`, then
//! routes without hosts). Within a host, paths use `matchit`, which prefers static
//! segments over `{param}` over `{*catch_all}`; on one path, a route with more
//! conditions on headers and query parameters (`route_match`) is tried before
//! one with fewer, and among equals a route that names the method beats a
//! route that takes every method.

use crate::route_match::Conditions;
use http::{HeaderMap, Method};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// A route identifier: its index in the runtime's route list.
pub type RouteId = usize;

/// What a route declares for matching.
#[derive(Debug, Clone)]
pub struct RouteSpec {
    /// Path template.
    pub path: String,
    /// Methods, or all when `None`.
    pub methods: Option<Vec<Method>>,
    /// Host patterns, or all when `None`.
    pub hosts: Option<Vec<String>>,
    /// Conditions on headers and query parameters, all to hold.
    pub conditions: Conditions,
    /// The listeners (by name) it answers on, or all when `None`.
    pub listeners: Option<Arc<[String]>>,
}

/// Why routes could not be put together.
#[derive(Debug, thiserror::Error)]
pub enum RouterError {
    /// Two routes answer the same host, path and method.
    #[error("route duplicates route `{other}`: same host, path, method and conditions")]
    Duplicate {
        /// The route inserted earlier.
        other: String,
    },
    /// The path template is malformed or conflicts with another.
    #[error("invalid path template: {0}")]
    Template(String),
    /// A host pattern is malformed.
    #[error("invalid host `{0}`: expected a name such as \"api.example.com\" or \"*.example.com\"")]
    Host(String),
}

/// A successful match.
#[derive(Debug, PartialEq, Eq)]
pub struct Match {
    /// The matched route.
    pub route: RouteId,
    /// Captured parameters, in template order.
    pub params: Vec<(String, String)>,
}

/// Why a request matched no route.
#[derive(Debug, PartialEq, Eq)]
pub enum Miss {
    /// Nothing matches the host and path.
    NotFound,
    /// The path matches, but only for these methods.
    MethodNotAllowed(Vec<Method>),
}

/// The routes of one host and path, in the order they are tried: more
/// conditions first, then those naming methods before those taking any.
#[derive(Debug, Default, Clone)]
struct Candidates(Vec<Candidate>);

#[derive(Debug, Clone)]
struct Candidate {
    /// Its methods, or any when `None`.
    methods: Option<Vec<Method>>,
    conditions: Arc<Conditions>,
    /// The listeners it answers on, or all when `None`.
    listeners: Option<Arc<[String]>>,
    route: RouteId,
}

impl Candidates {
    /// Adds `candidate`, or the route it would duplicate: one taking a
    /// method of it under the same conditions.
    fn add(&mut self, candidate: Candidate) -> Result<(), RouteId> {
        let overlaps = |other: &Candidate| match (&other.methods, &candidate.methods) {
            (Some(a), Some(b)) => a.iter().any(|m| b.contains(m)),
            (None, None) => true,
            _ => false,
        };
        // Routes on listeners in common would shadow each other there.
        let share_a_listener = |other: &Candidate| match (&other.listeners, &candidate.listeners) {
            (Some(a), Some(b)) => a.iter().any(|l| b.contains(l)),
            (None, None) => true,
            _ => false,
        };
        if let Some(other) = self
            .0
            .iter()
            .find(|c| overlaps(c) && c.conditions == candidate.conditions && share_a_listener(c))
        {
            return Err(other.route);
        }
        self.0.push(candidate);
        self.0.sort_by_key(|c| {
            let conditions = std::cmp::Reverse(c.conditions.len());
            (conditions, c.listeners.is_none(), c.methods.is_none())
        });
        Ok(())
    }

    /// The first route on the request's listener taking its method whose
    /// conditions hold; else the methods the path has routes for there.
    fn pick(&self, request: &Request<'_>) -> Result<RouteId, Vec<Method>> {
        let (method, headers, query) = (request.method, request.headers, request.query);
        let on = |c: &&Candidate| {
            c.listeners
                .as_ref()
                .is_none_or(|names| names.iter().any(|n| n == request.listener))
        };
        let takes = |c: &&Candidate| c.methods.as_ref().is_none_or(|m| m.contains(method));
        if let Some(found) = self
            .0
            .iter()
            .filter(on)
            .filter(takes)
            .find(|c| c.conditions.is_empty() || c.conditions.hold(headers, query))
        {
            return Ok(found.route);
        }
        if self.0.iter().filter(on).any(|c| takes(&c)) {
            // A route takes the method, but its conditions do not hold.
            return Err(Vec::new());
        }
        Err(self
            .0
            .iter()
            .filter(on)
            .filter_map(|c| c.methods.clone())
            .flatten()
            .collect())
    }

    /// Some route of them, to name in an error.
    fn first(&self) -> RouteId {
        self.0.first().map_or(0, |c| c.route)
    }
}

#[derive(Default)]
struct PathTable {
    paths: matchit::Router<Candidates>,
}

impl std::fmt::Debug for PathTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PathTable")
    }
}

/// The compiled routing table.
#[derive(Debug, Default)]
pub struct Router {
    exact: HashMap<String, PathTable>,
    /// `(suffix including the dot, table)`, longest suffix first.
    wildcard: Vec<(String, PathTable)>,
    any_host: PathTable,
}

/// Routes by host key (`None`: any host), then path, with the routes each
/// (host, path) has by method; two routes taking the same method there are
/// an error.
type Grouped = BTreeMap<Option<String>, BTreeMap<String, Candidates>>;

fn group(specs: &[RouteSpec], names: &[String]) -> Result<Grouped, (RouteId, RouterError)> {
    let mut grouped: Grouped = BTreeMap::new();
    for (id, spec) in specs.iter().enumerate() {
        let hosts: Vec<Option<String>> = match &spec.hosts {
            None => vec![None],
            Some(hosts) => hosts
                .iter()
                .map(|h| {
                    normalize_host_pattern(h)
                        .map(Some)
                        .ok_or((id, RouterError::Host(h.clone())))
                })
                .collect::<Result<_, _>>()?,
        };
        let conditions = Arc::new(spec.conditions.clone());
        for host in hosts {
            let candidates = grouped
                .entry(host)
                .or_default()
                .entry(spec.path.clone())
                .or_default();
            let candidate = Candidate {
                methods: spec.methods.clone(),
                conditions: conditions.clone(),
                listeners: spec.listeners.clone(),
                route: id,
            };
            candidates.add(candidate).map_err(|other| {
                let other = names[other].clone();
                (id, RouterError::Duplicate { other })
            })?;
        }
    }
    Ok(grouped)
}

/// One host's path table. matchit's `{*rest}` needs at least one character,
/// but people expect `/static/{*rest}` to take `/static/` too (and
/// `/{*rest}` to take `/`): the bare prefix goes to the same routes unless a
/// route names it.
fn path_table(
    mut paths: BTreeMap<String, Candidates>,
) -> Result<PathTable, (RouteId, RouterError)> {
    let implicit: Vec<(String, Candidates)> = paths
        .iter()
        .filter_map(|(path, candidates)| {
            let (prefix, last) = path.rsplit_once('/')?;
            let is_catch_all = last.starts_with("{*") && last.ends_with('}');
            let prefix = format!("{prefix}/");
            is_catch_all.then(|| (prefix, candidates.clone()))
        })
        .collect();
    // Where a route names the bare prefix itself (with conditions, say),
    // the catch-all's routes join it there as its fallbacks.
    for (prefix, candidates) in implicit {
        match paths.get_mut(&prefix) {
            Some(named) => {
                for candidate in candidates.0 {
                    let _ = named.add(candidate);
                }
            }
            None => {
                paths.insert(prefix, candidates);
            }
        }
    }
    let mut table = PathTable::default();
    for (path, candidates) in paths {
        let first = candidates.first();
        table
            .paths
            .insert(path, candidates)
            .map_err(|e| (first, RouterError::Template(template_fault(e))))?;
    }
    Ok(table)
}

/// What is wrong with a path template, in the config's terms.
fn template_fault(error: matchit::InsertError) -> String {
    match error {
        matchit::InsertError::Conflict { with } => format!(
            "it overlaps `{with}` of an earlier route: in one place of the path, routes can differ by literal text, but parameters there must have the same name and a catch-all ({{*name}}) cannot sit beside another parameter"
        ),
        matchit::InsertError::InvalidParamSegment => {
            "a path segment can hold one parameter only (`/{a}-x` is fine, `/{a}-{b}` is not)".to_string()
        }
        matchit::InsertError::InvalidParam => {
            "a parameter needs a name between braces, as in `/users/{id}`; write `{{` or `}}` for a literal brace".to_string()
        }
        matchit::InsertError::InvalidCatchAll => {
            "a catch-all parameter (`{*rest}`) can only end the path".to_string()
        }
        other => other.to_string(),
    }
}

impl Router {
    /// Builds the table. `names[i]` names route `i` in errors. On error, returns
    /// the index of the offending route with the error.
    pub fn build(specs: &[RouteSpec], names: &[String]) -> Result<Self, (RouteId, RouterError)> {
        let mut router = Router::default();
        let mut wildcard = Vec::new();
        for (host, paths) in group(specs, names)? {
            let table = path_table(paths)?;
            match host {
                None => router.any_host = table,
                Some(host) => match host.strip_prefix('*') {
                    Some(suffix) => wildcard.push((suffix.to_string(), table)),
                    None => {
                        router.exact.insert(host, table);
                    }
                },
            }
        }
        wildcard.sort_by_key(|(suffix, _)| std::cmp::Reverse(suffix.len()));
        router.wildcard = wildcard;
        Ok(router)
    }

    /// Finds the route for a request without headers or query. `host` may
    /// carry a port; it is ignored.
    pub fn find(&self, host: Option<&str>, method: &Method, path: &str) -> Result<Match, Miss> {
        let request = Request {
            host,
            method,
            path,
            headers: &HeaderMap::new(),
            query: None,
            listener: crate::config::DEFAULT_LISTENER,
        };
        self.find_with(&request, |_| true)
    }

    /// [`Router::find`], capturing the path parameters only for the routes
    /// `wants_params` says read them (the others get none, and the request
    /// allocates nothing for them). The host is only looked at when some
    /// route names one.
    pub fn find_with(
        &self,
        request: &Request<'_>,
        wants_params: impl Fn(RouteId) -> bool,
    ) -> Result<Match, Miss> {
        let (host, path) = (request.host, request.path);
        let by_host = !(self.exact.is_empty() && self.wildcard.is_empty());
        let host = host.filter(|_| by_host).map(strip_port).map(lower_case);
        let mut allowed: Vec<Method> = Vec::new();
        let tables = host
            .as_deref()
            .and_then(|h| self.exact.get(h))
            .into_iter()
            .chain(self.wildcard.iter().filter_map(|(suffix, table)| {
                let h = host.as_deref()?;
                (h.len() > suffix.len() && h.ends_with(suffix.as_str())).then_some(table)
            }))
            .chain(std::iter::once(&self.any_host));
        for table in tables {
            let Ok(found) = table.paths.at(path) else {
                continue;
            };
            match found.value.pick(request) {
                Ok(route) => {
                    let params = match wants_params(route) {
                        true => found
                            .params
                            .iter()
                            .map(|(k, v)| (k.to_string(), v.to_string()))
                            .collect(),
                        false => Vec::new(),
                    };
                    return Ok(Match { route, params });
                }
                Err(methods) => allowed.extend(methods),
            }
        }
        if allowed.is_empty() {
            Err(Miss::NotFound)
        } else {
            allowed.sort_by(|a, b| a.as_str().cmp(b.as_str()));
            allowed.dedup();
            Err(Miss::MethodNotAllowed(allowed))
        }
    }
}

/// What a request is routed by.
#[derive(Debug)]
pub struct Request<'r> {
    /// Its host (`Host` or the URI's authority), a port allowed.
    pub host: Option<&'r str>,
    /// Its method.
    pub method: &'r Method,
    /// Its path.
    pub path: &'r str,
    /// Its headers, for routes' header conditions.
    pub headers: &'r HeaderMap,
    /// Its query, undecoded, for routes' query conditions.
    pub query: Option<&'r str>,
    /// The name of the listener it came on, for routes limited to some.
    pub listener: &'r str,
}

/// `host` in lower case, borrowed when it already is (as clients send it).
fn lower_case(host: &str) -> std::borrow::Cow<'_, str> {
    if host.bytes().any(|b| b.is_ascii_uppercase()) {
        std::borrow::Cow::Owned(host.to_ascii_lowercase())
    } else {
        std::borrow::Cow::Borrowed(host)
    }
}

fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        // IPv6 literal: keep through the closing bracket.
        return host.find(']').map_or(host, |end| &host[..=end]);
    }
    host.rsplit_once(':').map_or(host, |(name, _)| name)
}

/// Lower-cases a host pattern and checks it: `name.tld` or `*.name.tld`.
fn normalize_host_pattern(pattern: &str) -> Option<String> {
    let lower = pattern.trim().to_ascii_lowercase();
    let name = lower.strip_prefix("*.").unwrap_or(&lower);
    let valid = !name.is_empty()
        && name.split('.').all(|label| {
            !label.is_empty() && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    valid.then_some(lower)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(path: &str, methods: Option<&[&str]>, hosts: Option<&[&str]>) -> RouteSpec {
        RouteSpec {
            conditions: Conditions::default(),
            path: path.to_string(),
            methods: methods.map(|ms| ms.iter().filter_map(|m| m.parse().ok()).collect()),
            hosts: hosts.map(|hs| hs.iter().map(|h| h.to_string()).collect()),
            listeners: None,
        }
    }

    fn build(specs: &[RouteSpec]) -> Router {
        let names: Vec<String> = (0..specs.len()).map(|i| format!("r{i}")).collect();
        match Router::build(specs, &names) {
            Ok(router) => router,
            Err((id, err)) => panic!("route {id}: {err}"),
        }
    }

    #[test]
    fn most_specific_path_wins() {
        let router = build(&[
            spec("/users/{id}", None, None),
            spec("/users/me", None, None),
            spec("/{*rest}", None, None),
        ]);
        let get = Method::GET;
        assert_eq!(router.find(None, &get, "/users/me").map(|m| m.route), Ok(1));
        let m = router.find(None, &get, "/users/42");
        assert_eq!(
            m,
            Ok(Match {
                route: 0,
                params: vec![("id".into(), "42".into())]
            })
        );
        assert_eq!(router.find(None, &get, "/other/x").map(|m| m.route), Ok(2));
        assert_eq!(
            router.find(None, &get, "/").map(|m| m.route),
            Ok(2),
            "a catch-all takes its bare prefix"
        );
    }

    #[test]
    fn an_explicit_prefix_route_beats_the_catch_all() {
        let router = build(&[
            spec("/static/{*rest}", None, None),
            spec("/static/", None, None),
        ]);
        let get = Method::GET;
        assert_eq!(router.find(None, &get, "/static/").map(|m| m.route), Ok(1));
        assert_eq!(
            router.find(None, &get, "/static/a/b").map(|m| m.route),
            Ok(0)
        );
        assert_eq!(
            router.find(None, &get, "/static").map(|m| m.route),
            Err(Miss::NotFound)
        );
    }

    #[test]
    fn hosts_exact_then_wildcard_then_any() {
        let router = build(&[
            spec("/", None, None),
            spec("/", None, Some(&["*.example.com"])),
            spec("/", None, Some(&["api.example.com"])),
        ]);
        let get = Method::GET;
        assert_eq!(
            router
                .find(Some("api.example.com:8080"), &get, "/")
                .map(|m| m.route),
            Ok(2)
        );
        assert_eq!(
            router
                .find(Some("WWW.example.com"), &get, "/")
                .map(|m| m.route),
            Ok(1)
        );
        assert_eq!(
            router.find(Some("example.com"), &get, "/").map(|m| m.route),
            Ok(0)
        );
        assert_eq!(router.find(None, &get, "/").map(|m| m.route), Ok(0));
    }

    #[test]
    fn methods_and_405() {
        let router = build(&[
            spec("/items", Some(&["GET"]), None),
            spec("/items", Some(&["POST", "PUT"]), None),
        ]);
        assert_eq!(
            router.find(None, &Method::PUT, "/items").map(|m| m.route),
            Ok(1)
        );
        assert_eq!(
            router.find(None, &Method::DELETE, "/items"),
            Err(Miss::MethodNotAllowed(vec![
                Method::GET,
                Method::POST,
                Method::PUT
            ]))
        );
        assert_eq!(
            router.find(None, &Method::GET, "/nope"),
            Err(Miss::NotFound)
        );
    }

    fn with_header(mut spec: RouteSpec, name: &str, value: &str) -> RouteSpec {
        spec.conditions.headers.push(crate::route_match::Condition {
            name: name.into(),
            test: crate::route_match::Test::Exact(value.into()),
        });
        spec
    }

    fn find_by(router: &Router, headers: &[(&str, &str)]) -> Result<Match, Miss> {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.append(
                http::HeaderName::from_bytes(name.as_bytes()).expect("a name"),
                http::HeaderValue::from_str(value).expect("a value"),
            );
        }
        let request = Request {
            host: None,
            method: &Method::GET,
            path: "/split",
            headers: &map,
            query: None,
            listener: "default",
        };
        router.find_with(&request, |_| false)
    }

    #[test]
    fn a_route_with_conditions_is_tried_before_the_one_without() {
        let plain = spec("/split", None, None);
        let canary = with_header(spec("/split", Some(&["GET"]), None), "x-canary", "always");
        let both = with_header(canary.clone(), "x-user", "beta");
        let router = build(&[plain, canary, both]);
        let route = |headers: &[(&str, &str)]| find_by(&router, headers).map(|m| m.route);
        assert_eq!(route(&[]), Ok(0), "the fallback");
        assert_eq!(route(&[("x-canary", "always")]), Ok(1));
        assert_eq!(
            route(&[("x-canary", "always"), ("x-user", "beta")]),
            Ok(2),
            "more conditions first"
        );
        assert_eq!(route(&[("x-canary", "never")]), Ok(0));

        let alone = build(&[with_header(
            spec("/split", None, None),
            "x-canary",
            "always",
        )]);
        assert_eq!(
            find_by(&alone, &[]),
            Err(Miss::NotFound),
            "no fallback: 404, not 405"
        );
        let same = [
            with_header(spec("/split", None, None), "x-canary", "always"),
            with_header(spec("/split", None, None), "x-canary", "always"),
        ];
        assert!(
            Router::build(&same, &["a".into(), "b".into()]).is_err(),
            "same conditions"
        );
    }

    #[test]
    fn a_catch_all_is_the_fallback_of_a_conditional_route_on_its_bare_prefix() {
        let catch_all = spec("/split/{*rest}", None, None);
        let bare = with_header(spec("/split/", None, None), "x-canary", "always");
        let router = build(&[catch_all, bare]);
        let mut request_headers = HeaderMap::new();
        let at = |headers: &HeaderMap| {
            let request = Request {
                host: None,
                method: &Method::GET,
                path: "/split/",
                headers,
                query: None,
                listener: "default",
            };
            router.find_with(&request, |_| false).map(|m| m.route)
        };
        assert_eq!(at(&request_headers), Ok(0));
        request_headers.insert("x-canary", http::HeaderValue::from_static("always"));
        assert_eq!(at(&request_headers), Ok(1));
    }

    #[test]
    fn duplicates_and_conflicts_are_errors() {
        let names = vec!["a".to_string(), "b".to_string()];
        let dup = Router::build(
            &[
                spec("/x", Some(&["GET"]), None),
                spec("/x", Some(&["GET", "POST"]), None),
            ],
            &names,
        );
        assert!(matches!(dup, Err((1, RouterError::Duplicate { .. }))));
        let conflict = Router::build(
            &[spec("/u/{id}", None, None), spec("/u/{name}", None, None)],
            &names,
        );
        assert!(matches!(conflict, Err((_, RouterError::Template(_)))));
        let bad_host = Router::build(&[spec("/", None, Some(&["bad host"]))], &names);
        assert!(matches!(bad_host, Err((0, RouterError::Host(_)))));
    }

    #[test]
    fn a_route_limited_to_listeners_answers_on_those_only() {
        let mut private = spec("/admin", None, None);
        private.listeners = Some(Arc::from(vec!["private".to_string()]));
        let mut public = spec("/admin", None, None);
        public.listeners = Some(Arc::from(vec!["default".to_string()]));
        let open = spec("/{*rest}", None, None);
        let router = build(&[private, public, open]);
        let on = |listener: &str, path: &str| {
            let request = Request {
                host: None,
                method: &Method::GET,
                path,
                headers: &HeaderMap::new(),
                query: None,
                listener,
            };
            router.find_with(&request, |_| false).map(|m| m.route)
        };
        assert_eq!(on("private", "/admin"), Ok(0));
        assert_eq!(on("default", "/admin"), Ok(1));
        // No route of the path is on this listener: not found (no fallback
        // to a less specific path).
        assert_eq!(on("other", "/admin"), Err(Miss::NotFound));
        assert_eq!(on("other", "/else"), Ok(2));
    }

    #[test]
    fn routes_that_share_a_listener_are_duplicates() {
        let on = |listeners: &[&str]| {
            let mut route = spec("/admin", None, None);
            route.listeners = Some(Arc::from(
                listeners.iter().map(|l| l.to_string()).collect::<Vec<_>>(),
            ));
            route
        };
        let names = vec!["a".to_string(), "b".to_string()];
        let shared = Router::build(&[on(&["x", "y"]), on(&["y"])], &names);
        assert!(matches!(shared, Err((1, RouterError::Duplicate { .. }))));
        let reordered = Router::build(&[on(&["x", "y"]), on(&["y", "x"])], &names);
        assert!(matches!(reordered, Err((1, RouterError::Duplicate { .. }))));
        assert!(Router::build(&[on(&["x"]), on(&["y"])], &names).is_ok());
    }
}
