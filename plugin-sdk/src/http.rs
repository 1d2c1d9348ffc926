//! Requests, responses and headers as a plugin sees them.

/// Header fields in order, names lower-cased. A name may repeat.
///
/// Kept in the contract's wire encoding (see `headers` in `wit/plugin.wit`) and
/// read in place: a plugin that never looks at a header pays nothing to decode
/// them, lookups allocate nothing, and an edit rewrites the buffer once.
///
/// A request's headers share their buffer with its pseudo-fields (`:method`,
/// ...), which come first: `start` is where the header fields begin, and
/// edits keep what is before it.
#[derive(Clone, Default)]
pub struct Headers {
    wire: Vec<u8>,
    start: usize,
}

impl PartialEq for Headers {
    fn eq(&self, other: &Self) -> bool {
        self.fields() == other.fields()
    }
}

impl Eq for Headers {}

impl std::fmt::Debug for Headers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// Splits one field off the front of `wire`: (name, value, rest).
fn next_field(wire: &[u8]) -> Option<(&[u8], &[u8], &[u8])> {
    let name_len = u32::from_le_bytes(wire.get(0..4)?.try_into().ok()?) as usize;
    let value_len = u32::from_le_bytes(wire.get(4..8)?.try_into().ok()?) as usize;
    let body = wire.get(8..)?;
    let end = name_len.checked_add(value_len)?;
    let field = body.get(..end)?;
    let (name, value) = field.split_at(name_len);
    Some((name, value, &body[end..]))
}

/// Whether two header names are the same to an upstream that maps them to
/// CGI-style variables: equal but for case and `_` for `-`.
fn alike(a: &[u8], b: &[u8]) -> bool {
    let fold = |c: u8| {
        if c == b'_' {
            b'-'
        } else {
            c.to_ascii_lowercase()
        }
    };
    a.len() == b.len() && a.iter().zip(b).all(|(&x, &y)| fold(x) == fold(y))
}

fn push_field(wire: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    wire.extend_from_slice(&(name.len() as u32).to_le_bytes());
    wire.extend_from_slice(&(value.len() as u32).to_le_bytes());
    wire.extend_from_slice(name);
    wire.extend_from_slice(value);
}

impl Headers {
    /// Whether `name` is a valid header name: an RFC 9110 token (the grammar
    /// of methods too), for checking names in a plugin's config at `init`.
    pub fn is_valid_name(name: &str) -> bool {
        !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
    }

    /// No headers.
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes the contract's header buffer as is.
    pub(crate) fn from_wire(wire: Vec<u8>) -> Self {
        Self { wire, start: 0 }
    }

    /// A request head (pseudo-fields, then header fields) as is: the header
    /// fields are read in place after the pseudo-fields.
    pub(crate) fn from_head(wire: Vec<u8>) -> Self {
        let start = pseudo_len(&wire);
        Self { wire, start }
    }

    /// The contract's header buffer (without the pseudo-fields before it).
    pub(crate) fn into_wire(mut self) -> Vec<u8> {
        self.wire.drain(..self.start);
        self.wire
    }

    /// The encoded header fields.
    fn fields(&self) -> &[u8] {
        &self.wire[self.start..]
    }

    /// The encoded pseudo-fields before the header fields.
    pub(crate) fn pseudo(&self) -> &[u8] {
        &self.wire[..self.start]
    }

    /// Replaces the pseudo-fields before the header fields.
    pub(crate) fn set_pseudo(&mut self, pseudo: &[u8]) {
        let mut wire = Vec::with_capacity(pseudo.len() + self.fields().len());
        wire.extend_from_slice(pseudo);
        wire.extend_from_slice(self.fields());
        self.start = pseudo.len();
        self.wire = wire;
    }

    /// A new buffer holding the pseudo-fields, for a rewrite of the fields.
    fn rewrite(&self) -> Vec<u8> {
        let mut wire = Vec::with_capacity(self.wire.len() + 32);
        wire.extend_from_slice(self.pseudo());
        wire
    }

    /// Every field as raw bytes, in order. A malformed tail is ignored.
    fn raw(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        fields_of(self.fields())
    }
}

/// The fields of an encoded buffer, in order; a malformed tail ends them.
pub(crate) fn fields_of(wire: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    let mut rest = wire;
    std::iter::from_fn(move || {
        let (name, value, tail) = next_field(rest)?;
        rest = tail;
        Some((name, value))
    })
}

/// How many bytes of a head its pseudo-fields (names starting with `:`) take.
fn pseudo_len(wire: &[u8]) -> usize {
    fields_of(wire)
        .take_while(|(name, _)| name.starts_with(b":"))
        .map(|(name, value)| 8 + name.len() + value.len())
        .sum()
}

impl Headers {
    /// Whether `name` is a header name (an HTTP token) that a plugin may
    /// set on the upstream request from configuration or an outside answer
    /// (an authorizer's, a claim's): not `host`, hop-by-hop or framing
    /// headers.
    pub fn settable_upstream(name: &str) -> bool {
        let token = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
        let framing = plugin_shared::limits::FRAMING_HEADERS.iter();
        token
            && !framing
                .chain(&["host", "expect"])
                .any(|refused| refused.eq_ignore_ascii_case(name))
    }
}

impl Headers {
    /// The first value of `name`. Values that are not UTF-8 are skipped.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.raw()
            .find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
    }

    /// The one value of `name`: `Ok(None)` when absent, [`Repeated`] when the
    /// request has more than one line of it.
    ///
    /// Use it, not [`Headers::get`], for anything security-relevant (a
    /// credential, a tenant, a signature): `get` answers with the first line,
    /// while the upstream or a later plugin may read the last one or all of
    /// them joined. Every line counts, also one that is not UTF-8. A lone
    /// value that is not UTF-8 is `Ok(None)`, as with `get`; [`Headers::contains`]
    /// tells it from an absent header.
    ///
    /// A line whose name differs only by `_` for `-` (`x_api_key` beside
    /// `x-api-key`) is a repetition too, as servers that map headers to
    /// CGI-style variables (`HTTP_X_API_KEY`) read both as one; its value is
    /// never the answer (alone, the header is absent).
    ///
    /// A proxy may have joined several lines into one, separated by commas
    /// (RFC 9110 5.3): for a header whose syntax allows no list, a comma in the
    /// value is a repetition too, and only the caller knows the syntax.
    ///
    /// ```
    /// use plugin_sdk::{Repeated, Request};
    ///
    /// let once = Request::new("GET", "/").with_header("x-api-key", "k1");
    /// assert_eq!(once.headers().single("X-Api-Key"), Ok(Some("k1")));
    /// let twice = once.with_header("x-api-key", "forged");
    /// assert_eq!(twice.headers().single("x-api-key"), Err(Repeated));
    /// ```
    pub fn single(&self, name: &str) -> Result<Option<&str>, Repeated> {
        let mut lines = self.raw().filter(|(n, _)| alike(n, name.as_bytes()));
        let first = lines.next();
        if lines.next().is_some() {
            return Err(Repeated);
        }
        Ok(first
            .filter(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .and_then(|(_, v)| std::str::from_utf8(v).ok()))
    }

    /// Every value of `name`, in order.
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.raw()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .filter_map(|(_, v)| std::str::from_utf8(v).ok())
    }

    /// How many lines of `name` there are, values that are not UTF-8
    /// included (which [`Headers::get_all`] skips).
    pub fn count(&self, name: &str) -> usize {
        self.raw()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .count()
    }

    /// Whether `name` is present.
    pub fn contains(&self, name: &str) -> bool {
        self.raw()
            .any(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
    }

    /// Replaces every value of `name` with `value`.
    pub fn set(&mut self, name: &str, value: impl Into<String>) {
        self.remove(name);
        self.append(name, value);
    }

    /// Adds a value for `name`, keeping existing ones.
    pub fn append(&mut self, name: &str, value: impl Into<String>) {
        debug_assert!(
            Self::is_valid_name(name),
            "`{name}` is no header name; the gateway refuses an edit with it"
        );
        let value = value.into();
        push_field(
            &mut self.wire,
            name.to_ascii_lowercase().as_bytes(),
            value.as_bytes(),
        );
    }

    /// Removes every value of `name`; returns whether there was one.
    pub fn remove(&mut self, name: &str) -> bool {
        if !self.contains(name) {
            return false;
        }
        let mut wire = self.rewrite();
        for (n, v) in self
            .raw()
            .filter(|(n, _)| !n.eq_ignore_ascii_case(name.as_bytes()))
        {
            push_field(&mut wire, n, v);
        }
        self.wire = wire;
        true
    }

    /// Removes every value of `name` under any spelling an upstream may read
    /// as it: any case, and `_` for `-` (`x_api_key` for `x-api-key`);
    /// returns how many lines there were. What a plugin that verified a
    /// credential uses to keep every copy of it from the upstream.
    pub fn remove_alike(&mut self, name: &str) -> usize {
        self.remove_where(|n| alike(n, name.as_bytes()))
    }

    /// Removes every field whose name starts with `prefix` (any case, and
    /// `_` for `-`, as [`Headers::remove_alike`]); returns how many there
    /// were. What an authentication plugin does first with the headers it
    /// sets itself, so that a client cannot send its own.
    pub fn remove_prefixed(&mut self, prefix: &str) -> usize {
        let prefix = prefix.as_bytes();
        self.remove_where(|name| name.len() >= prefix.len() && alike(&name[..prefix.len()], prefix))
    }

    /// Removes the fields whose name `matches`; returns how many there were.
    fn remove_where(&mut self, matches: impl Fn(&[u8]) -> bool) -> usize {
        let removed = self.raw().filter(|(n, _)| matches(n)).count();
        if removed > 0 {
            let mut wire = self.rewrite();
            for (n, v) in self.raw().filter(|(n, _)| !matches(n)) {
                push_field(&mut wire, n, v);
            }
            self.wire = wire;
        }
        removed
    }

    /// Renames `from` to `to`, keeping values and positions; returns whether
    /// `from` was present.
    pub fn rename(&mut self, from: &str, to: &str) -> bool {
        if !self.contains(from) {
            return false;
        }
        let to = to.to_ascii_lowercase();
        let mut wire = self.rewrite();
        for (n, v) in self.raw() {
            let n = if n.eq_ignore_ascii_case(from.as_bytes()) {
                to.as_bytes()
            } else {
                n
            };
            push_field(&mut wire, n, v);
        }
        self.wire = wire;
        true
    }

    /// All `(name, value)` pairs in order (fields that are not UTF-8 are skipped).
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.raw()
            .filter_map(|(n, v)| Some((std::str::from_utf8(n).ok()?, std::str::from_utf8(v).ok()?)))
    }

    /// The number of fields.
    pub fn len(&self) -> usize {
        self.raw().count()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.fields().is_empty()
    }
}

/// A header or query parameter that must appear once appeared more than once;
/// the error of [`Headers::single`] and [`Request::single_query_param`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repeated;

impl std::fmt::Display for Repeated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("given more than once")
    }
}

impl std::error::Error for Repeated {}

/// The request a plugin sees: in its request phase, and (its head, without
/// body) in its response phase.
///
/// Read in place from the buffer the host sent (see `request` in
/// `wit/plugin.wit`): reading a part decodes nothing else. Every setter marks
/// what it changed; an unedited request is not sent back to the host, which
/// is the cheapest outcome, and an edited one sends back only the parts that
/// changed.
#[derive(Debug, Clone)]
pub struct Request {
    /// The pseudo-fields, then the header fields.
    pub(crate) head: Headers,
    /// The pseudo-fields, kept apart once the headers are handed out for
    /// editing: a plugin that replaces them whole (`*req.headers_mut() =
    /// Headers::new()`) must not lose its method, path or route.
    pub(crate) pseudo: Option<Vec<u8>>,
    pub(crate) body: Option<Vec<u8>>,
    pub(crate) edited: Edited,
}

/// What a plugin changed in a [`Request`].
#[derive(Debug, Clone, Default)]
pub(crate) struct Edited {
    pub(crate) method: Option<String>,
    pub(crate) path: Option<String>,
    pub(crate) query: Option<String>,
    pub(crate) upstream: Option<String>,
    pub(crate) headers: bool,
    pub(crate) body: bool,
}

impl Edited {
    fn any(&self) -> bool {
        self.method.is_some()
            || self.path.is_some()
            || self.query.is_some()
            || self.upstream.is_some()
            || self.headers
            || self.body
    }
}

impl Request {
    /// The request the host sent.
    pub(crate) fn from_wire(head: Vec<u8>, body: Option<Vec<u8>>) -> Self {
        Self {
            head: Headers::from_head(head),
            pseudo: None,
            body,
            edited: Edited::default(),
        }
    }

    /// A request for tests: `Request::new("GET", "/users/1?x=y")`, from
    /// `127.0.0.1:1` to `localhost` over `http`, on route `test`.
    pub fn new(method: &str, path_and_query: &str) -> Self {
        let (path, query) = path_and_query
            .split_once('?')
            .unwrap_or((path_and_query, ""));
        let mut head = Vec::new();
        for (name, value) in [
            (":method", method),
            (":scheme", "http"),
            (":authority", "localhost"),
            (":path", path),
            (":query", query),
            (":client-addr", "127.0.0.1:1"),
            (":route", "test"),
        ] {
            if !value.is_empty() {
                push_field(&mut head, name.as_bytes(), value.as_bytes());
            }
        }
        Self::from_wire(head, None)
    }

    /// The value of pseudo-field `name` (with its `:`).
    fn pseudo(&self, name: &str) -> Option<&str> {
        fields_of(self.pseudo_fields())
            .find(|(n, _)| *n == name.as_bytes())
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
    }

    /// The encoded pseudo-fields.
    fn pseudo_fields(&self) -> &[u8] {
        self.pseudo.as_deref().unwrap_or(self.head.pseudo())
    }

    /// With pseudo-field `name` set to `value`, replacing the first one
    /// unless `add`.
    fn with_pseudo(mut self, name: &str, value: &str, add: bool) -> Self {
        let mut pseudo = Vec::with_capacity(self.head.pseudo().len() + value.len() + 16);
        let mut placed = false;
        for (n, v) in fields_of(self.pseudo_fields()) {
            if !add && !placed && n == name.as_bytes() {
                push_field(&mut pseudo, n, value.as_bytes());
                placed = true;
            } else {
                push_field(&mut pseudo, n, v);
            }
        }
        if !placed {
            push_field(&mut pseudo, name.as_bytes(), value.as_bytes());
        }
        self.head.set_pseudo(&pseudo);
        self.pseudo = None;
        self
    }

    /// With a header added (for tests).
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.head.append(name, value);
        self
    }

    /// With a path parameter (for tests).
    pub fn with_param(self, name: &str, value: &str) -> Self {
        self.with_pseudo(":param", &format!("{name}={value}"), true)
    }

    /// With the host the client asked for (for tests; default `localhost`).
    pub fn with_authority(self, authority: &str) -> Self {
        self.with_pseudo(":authority", authority, false)
    }

    /// With the client's address (for tests; default `127.0.0.1:1`).
    pub fn with_client_addr(self, addr: &str) -> Self {
        self.with_pseudo(":client-addr", addr, false)
    }

    /// With the matched route's name (for tests; default `test`).
    pub fn with_route(self, route: &str) -> Self {
        self.with_pseudo(":route", route, false)
    }

    /// With the id the client gets back in `X-Request-Id` (for tests;
    /// default: the request's `x-request-id` header, else empty).
    pub fn with_id(self, id: &str) -> Self {
        self.with_pseudo(":request-id", id, false)
    }

    /// With the upstream the request goes to (for tests; default none).
    pub fn with_upstream(self, upstream: &str) -> Self {
        self.with_pseudo(":upstream", upstream, false)
    }

    /// With the consumer the request phase identified, as a response hook
    /// sees it (for tests; default none).
    pub fn with_consumer(self, consumer: &str) -> Self {
        self.with_pseudo(":consumer", consumer, false)
    }

    /// With a body (for tests).
    pub fn with_body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = Some(body.into());
        self
    }

    /// `GET`, `POST`, ...
    pub fn method(&self) -> &str {
        match &self.edited.method {
            Some(method) => method,
            None => self.pseudo(":method").unwrap_or_default(),
        }
    }

    /// `http` or `https`.
    pub fn scheme(&self) -> &str {
        self.pseudo(":scheme").unwrap_or_default()
    }

    /// The host (and port) the client asked for.
    pub fn authority(&self) -> &str {
        self.pseudo(":authority").unwrap_or_default()
    }

    /// The path, percent-encoded as received.
    pub fn path(&self) -> &str {
        match &self.edited.path {
            Some(path) => path,
            None => self.pseudo(":path").unwrap_or_default(),
        }
    }

    /// The raw query string, without `?`; empty when absent.
    pub fn query(&self) -> &str {
        match &self.edited.query {
            Some(query) => query,
            None => self.pseudo(":query").unwrap_or_default(),
        }
    }

    /// The headers.
    pub fn headers(&self) -> &Headers {
        &self.head
    }

    /// The body, if the plugin declared [`Needs::REQUEST_BODY`](crate::Needs)
    /// (or set one). Never in the response phase.
    pub fn body(&self) -> Option<&[u8]> {
        self.body.as_deref()
    }

    /// The client's `ip:port`: the connection's peer, or, when the peer is one
    /// of the gateway's `trusted_proxies`, the nearest untrusted address in
    /// `X-Forwarded-For` (with port `0`).
    pub fn client_addr(&self) -> &str {
        self.pseudo(":client-addr").unwrap_or_default()
    }

    /// The matched route's name.
    pub fn route(&self) -> &str {
        self.pseudo(":route").unwrap_or_default()
    }

    /// The id the client gets back in `X-Request-Id` (the gateway sets the
    /// request's `x-request-id` header to it too, which is what a test's
    /// request without [`Request::with_id`] answers with).
    pub fn id(&self) -> &str {
        self.pseudo(":request-id")
            .or_else(|| self.head.get("x-request-id"))
            .unwrap_or_default()
    }

    /// The upstream the request goes to: the route's first, or the one a
    /// request hook chose with [`Request::set_upstream`]. `None` on a route
    /// without upstreams.
    pub fn upstream(&self) -> Option<&str> {
        match &self.edited.upstream {
            Some(upstream) => Some(upstream),
            None => self.pseudo(":upstream"),
        }
    }

    /// In the response phase: the consumer the request phase identified (the
    /// context's `consumer`), if any.
    pub fn consumer(&self) -> Option<&str> {
        self.pseudo(":consumer")
    }

    /// A path parameter captured by the route template.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params().find(|(n, _)| *n == name).map(|(_, v)| v)
    }

    /// All path parameters, in template order.
    pub fn params(&self) -> impl Iterator<Item = (&str, &str)> {
        fields_of(self.pseudo_fields())
            .filter(|(n, _)| *n == b":param")
            .filter_map(|(_, v)| std::str::from_utf8(v).ok()?.split_once('='))
    }

    /// Whether any setter was called.
    pub fn is_edited(&self) -> bool {
        self.edited.any()
    }

    /// Replaces the method.
    pub fn set_method(&mut self, method: impl Into<String>) {
        self.edited.method = Some(method.into());
    }

    /// Replaces the path (must start with `/`).
    pub fn set_path(&mut self, path: impl Into<String>) {
        self.edited.path = Some(path.into());
    }

    /// Replaces the raw query string (without `?`).
    pub fn set_query(&mut self, query: impl Into<String>) {
        self.edited.query = Some(query.into());
    }

    /// Sends the request to `upstream`, one of those the route lists in
    /// `upstreams` (a canary, say). Any other name fails the call.
    pub fn set_upstream(&mut self, upstream: impl Into<String>) {
        self.edited.upstream = Some(upstream.into());
    }

    /// Replaces the body sent upstream.
    pub fn set_body(&mut self, body: impl Into<Vec<u8>>) {
        self.body = Some(body.into());
        self.edited.body = true;
    }

    /// The headers, for editing.
    pub fn headers_mut(&mut self) -> &mut Headers {
        self.edited.headers = true;
        if self.pseudo.is_none() {
            self.pseudo = Some(self.head.pseudo().to_vec());
        }
        &mut self.head
    }

    /// The query parameters, percent-decoded, in order.
    pub fn query_params(&self) -> Vec<(String, String)> {
        form_urlencoded::parse(self.query().as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()
    }

    /// The first value of query parameter `name`, decoded.
    pub fn query_param(&self, name: &str) -> Option<String> {
        form_urlencoded::parse(self.query().as_bytes())
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    }

    /// The one value of query parameter `name`, decoded: `Ok(None)` when
    /// absent, [`Repeated`] when the query has it more than once (`?a=1&a=2`,
    /// `?a=&a=2`, or `?a=1&%61=2`, which decodes to the same name).
    ///
    /// Use it, not [`Request::query_param`], for anything security-relevant:
    /// that answers with the first value, while the upstream may read the last.
    ///
    /// ```
    /// use plugin_sdk::{Repeated, Request};
    ///
    /// let req = Request::new("GET", "/?api_key=k1&page=2");
    /// assert_eq!(req.single_query_param("api_key"), Ok(Some("k1".to_string())));
    /// let req = Request::new("GET", "/?api_key=k1&api_key=forged");
    /// assert_eq!(req.single_query_param("api_key"), Err(Repeated));
    /// ```
    pub fn single_query_param(&self, name: &str) -> Result<Option<String>, Repeated> {
        let mut values = form_urlencoded::parse(self.query().as_bytes()).filter(|(k, _)| k == name);
        let first = values.next();
        if values.next().is_some() {
            return Err(Repeated);
        }
        Ok(first.map(|(_, v)| v.into_owned()))
    }

    /// Adds `name=value` to the query, keeping existing values.
    pub fn add_query_param(&mut self, name: &str, value: &str) {
        let mut params = self.query_params();
        params.push((name.to_string(), value.to_string()));
        self.write_query(&params);
    }

    /// Replaces every value of `name` with `value` (appending when absent).
    pub fn set_query_param(&mut self, name: &str, value: &str) {
        let mut params = self.query_params();
        params.retain(|(k, _)| k != name);
        params.push((name.to_string(), value.to_string()));
        self.write_query(&params);
    }

    /// Removes every value of `name`; returns whether there was one.
    pub fn remove_query_param(&mut self, name: &str) -> bool {
        let mut params = self.query_params();
        let before = params.len();
        params.retain(|(k, _)| k != name);
        if params.len() == before {
            return false;
        }
        self.write_query(&params);
        true
    }

    fn write_query(&mut self, params: &[(String, String)]) {
        let mut serializer = form_urlencoded::Serializer::new(String::new());
        for (k, v) in params {
            serializer.append_pair(k, v);
        }
        self.set_query(serializer.finish());
    }
}

/// A response: from the upstream (response phase) or built by a plugin.
#[derive(Debug, Clone)]
pub struct Response {
    pub(crate) status: u16,
    pub(crate) headers: Headers,
    pub(crate) body: Option<Vec<u8>>,
    pub(crate) edited: bool,
    /// Whether `set_body` was called: an untouched body is not sent back.
    pub(crate) body_edited: bool,
}

impl Response {
    /// An empty response with `status`.
    pub fn new(status: u16) -> Self {
        Self {
            status,
            headers: Headers::new(),
            body: None,
            edited: false,
            body_edited: false,
        }
    }

    /// A `text/plain` response.
    pub fn text(status: u16, text: impl Into<String>) -> Self {
        Self::new(status)
            .with_header("content-type", "text/plain; charset=utf-8")
            .with_body(text.into())
    }

    /// An error answered the way the gateway answers its own:
    /// `{"error": message, "status": status, "request_id": ...}` as JSON, with
    /// the id the client gets back in `X-Request-Id` (taken from `req`), so
    /// a plugin's refusals read like the gateway's.
    pub fn error(status: u16, message: &str, req: &Request) -> Self {
        let body = serde_json::json!({
            "error": message,
            "status": status,
            "request_id": req.id(),
        });
        Self::json(status, &body)
    }

    /// [`Response::error`] for an authentication or authorization refusal:
    /// `unauthorized: reason` for 401, `forbidden: reason` for any other
    /// status.
    pub fn denied(status: u16, reason: &str, req: &Request) -> Self {
        let kind = if status == 401 {
            "unauthorized"
        } else {
            "forbidden"
        };
        Self::error(status, &format!("{kind}: {reason}"), req)
    }

    /// An `application/json` response. A value that cannot be serialised
    /// becomes `null`.
    pub fn json<T: serde::Serialize + ?Sized>(status: u16, value: &T) -> Self {
        let body = serde_json::to_vec(value).unwrap_or_else(|_| b"null".to_vec());
        Self::new(status)
            .with_header("content-type", "application/json")
            .with_body(body)
    }

    /// With a header appended.
    pub fn with_header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.append(name, value);
        self
    }

    /// With a body.
    pub fn with_body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = Some(body.into());
        self
    }

    /// The status code.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The headers.
    pub fn headers(&self) -> &Headers {
        &self.headers
    }

    /// The body: set by a plugin, or the upstream's if the plugin declared
    /// [`Needs::RESPONSE_BODY`](crate::Needs::RESPONSE_BODY).
    pub fn body(&self) -> Option<&[u8]> {
        self.body.as_deref()
    }

    /// Whether any setter was called.
    pub fn is_edited(&self) -> bool {
        self.edited
    }

    /// Replaces the status.
    pub fn set_status(&mut self, status: u16) {
        self.status = status;
        self.edited = true;
    }

    /// The headers, for editing.
    pub fn headers_mut(&mut self) -> &mut Headers {
        self.edited = true;
        &mut self.headers
    }

    /// Replaces the body; `None` keeps the upstream's body streaming through.
    pub fn set_body(&mut self, body: Option<Vec<u8>>) {
        self.body = body;
        self.edited = true;
        self.body_edited = true;
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn replacing_the_headers_whole_keeps_the_request_head() {
        let mut req = Request::new("POST", "/users/7?page=2")
            .with_route("users")
            .with_param("id", "7")
            .with_header("x-a", "1");
        *req.headers_mut() = Headers::new();
        assert_eq!(
            (
                req.method(),
                req.path(),
                req.query(),
                req.route(),
                req.param("id")
            ),
            ("POST", "/users/7", "page=2", "users", Some("7"))
        );
        assert!(req.headers().is_empty());
    }
    use super::*;

    #[test]
    fn only_headers_that_describe_the_request_itself_are_settable_upstream() {
        for name in ["x-user", "X-Tenant-Id", "authorization", "x_legacy"] {
            assert!(Headers::settable_upstream(name), "{name}");
        }
        for name in [
            "Host",
            "connection",
            "Transfer-Encoding",
            "content-length",
            "te",
            "",
        ] {
            assert!(!Headers::settable_upstream(name), "{name}");
        }
        assert!(!Headers::settable_upstream("x-a b") && !Headers::settable_upstream("x:y"));
    }

    #[test]
    fn an_underscore_spelling_is_the_same_header_for_checks_and_removal() {
        let both = Request::new("GET", "/")
            .with_header("x-api-key", "valid")
            .with_header("x_api_key", "forged");
        assert_eq!(both.headers().single("x-api-key"), Err(Repeated));
        let alone = Request::new("GET", "/").with_header("X_Api_Key", "forged");
        assert_eq!(
            alone.headers().single("x-api-key"),
            Ok(None),
            "another spelling is never the answer"
        );
        let mut both = both;
        assert_eq!(both.headers_mut().remove_alike("X-API-KEY"), 2);
        assert!(both.headers().is_empty());
        let mut spoofed = Request::new("GET", "/")
            .with_header("x_consumer_name", "admin")
            .with_header("x-consumer-id", "1")
            .with_header("x-consumerx", "kept");
        assert_eq!(spoofed.headers_mut().remove_prefixed("x-consumer-"), 2);
        assert_eq!(spoofed.headers().get("x-consumerx"), Some("kept"));
    }

    #[test]
    fn errors_read_like_the_gateways() {
        let req = Request::new("GET", "/x").with_id("req-3");
        let response = Response::error(403, "forbidden: no", &req);
        assert_eq!(response.status(), 403);
        assert_eq!(
            response.headers().get("content-type"),
            Some("application/json")
        );
        let body: serde_json::Value =
            serde_json::from_slice(response.body().unwrap_or_default()).unwrap_or_default();
        assert_eq!(
            body,
            serde_json::json!({"error": "forbidden: no", "status": 403, "request_id": "req-3"})
        );
        let denied = Response::denied(401, "no key", &req);
        let body: serde_json::Value =
            serde_json::from_slice(denied.body().unwrap_or_default()).unwrap_or_default();
        assert_eq!(body["error"], "unauthorized: no key");
        let body: serde_json::Value =
            serde_json::from_slice(Response::denied(403, "no", &req).body().unwrap_or_default())
                .unwrap_or_default();
        assert_eq!(body["error"], "forbidden: no");
        // No id (a request built in a unit test): an empty one.
        let bare = Response::error(429, "slow down", &Request::new("GET", "/"));
        let body: serde_json::Value =
            serde_json::from_slice(bare.body().unwrap_or_default()).unwrap_or_default();
        assert_eq!(body["request_id"], "");
    }

    #[test]
    fn headers_are_case_insensitive_and_ordered() {
        let mut h = Headers::new();
        h.append("X-A", "1");
        h.append("x-b", "2");
        h.append("x-a", "3");
        assert_eq!(h.get("x-a"), Some("1"));
        assert_eq!(h.get_all("X-A").collect::<Vec<_>>(), ["1", "3"]);
        h.set("x-a", "4");
        assert_eq!(h.iter().collect::<Vec<_>>(), [("x-b", "2"), ("x-a", "4")]);
        assert!(h.rename("X-B", "X-C"));
        assert_eq!(h.get("x-c"), Some("2"));
        assert!(h.remove("x-c"));
        assert!(!h.remove("x-c"));
        assert_eq!(h.len(), 1);
    }

    #[test]
    fn single_gives_the_one_value_or_refuses_a_repeated_header() {
        let req = Request::new("GET", "/")
            .with_header("Authorization", "Bearer a")
            .with_header("x-key", "k1")
            .with_header("X-Key", "k2");
        assert_eq!(req.headers().single("authorization"), Ok(Some("Bearer a")));
        assert_eq!(req.headers().single("x-absent"), Ok(None));
        assert_eq!(req.headers().single("x-key"), Err(Repeated));
        assert_eq!(Repeated.to_string(), "given more than once");
    }

    #[test]
    fn single_counts_lines_that_are_not_text() {
        let mut wire = Vec::new();
        push_field(&mut wire, b"x-key", b"\xff");
        let lone = Headers::from_wire(wire.clone());
        assert_eq!(lone.single("x-key"), Ok(None));
        assert!(lone.contains("x-key"));
        push_field(&mut wire, b"x-key", b"k1");
        let headers = Headers::from_wire(wire);
        assert_eq!(headers.get_all("x-key").collect::<Vec<_>>(), ["k1"]);
        assert_eq!(headers.count("X-Key"), 2);
        assert_eq!(headers.single("x-key"), Err(Repeated));
    }

    #[test]
    fn single_query_param_refuses_a_repeated_name_however_written() {
        let req = Request::new("GET", "/s?api_key=k1&page=2&q=a+b");
        assert_eq!(req.single_query_param("api_key"), Ok(Some("k1".into())));
        assert_eq!(req.single_query_param("q"), Ok(Some("a b".into())));
        assert_eq!(req.single_query_param("absent"), Ok(None));
        for query in ["k=1&k=2", "k=&k=2", "k=1&%6B=2", "k&k=1"] {
            let req = Request::new("GET", &format!("/s?{query}"));
            assert_eq!(req.single_query_param("k"), Err(Repeated), "{query}");
        }
    }

    #[test]
    fn wire_encoding_round_trips() {
        let mut h = Headers::new();
        h.append("x-a", "1");
        h.append("x-b", "zwei");
        h.append("x-a", "");
        assert_eq!(Headers::from_wire(h.clone().into_wire()), h);
        let mut truncated = h.clone().into_wire();
        truncated.pop();
        assert_eq!(Headers::from_wire(truncated).len(), 2);
    }

    #[test]
    fn query_edits_are_encoded_and_mark_the_request() {
        let mut req = Request::new("GET", "/s?q=a+b&drop=1&q=c");
        assert!(!req.is_edited());
        assert_eq!(req.query_param("q").as_deref(), Some("a b"));
        assert!(req.remove_query_param("drop"));
        assert!(req.is_edited());
        req.add_query_param("name", "ä&=");
        assert_eq!(req.query(), "q=a+b&q=c&name=%C3%A4%26%3D");
        req.set_query_param("q", "z");
        assert_eq!(req.query(), "name=%C3%A4%26%3D&q=z");
        assert!(!req.remove_query_param("missing"));
    }

    #[test]
    fn reading_does_not_mark_edited() {
        let req = Request::new("GET", "/").with_header("a", "b");
        let _ = (req.headers().get("a"), req.path(), req.query_params());
        assert!(!req.is_edited());
        let mut resp = Response::new(200);
        assert!(!resp.is_edited());
        resp.headers_mut().set("x", "y");
        assert!(resp.is_edited());
    }
}
