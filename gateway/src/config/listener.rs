//! `[[listeners]]`: more client-facing listeners beside `[server] listen`
//! (which is the listener named `default`), each with its own address, TLS
//! settings and behaviour (`redirect_https`, `proxy_protocol`), and the
//! `listeners` a route may be limited to. Checked into [`Listener`]s, every error at its key.

use super::problems::{Problems, suggestion};
use super::server::{TlsConfig, overlaps};
use super::source::{ConfigError, Source};
use crate::proxy::forwarded::TrustedProxies;
use serde::Deserialize;
use std::net::SocketAddr;
use toml::Spanned;

/// The name of the listener `[server] listen` and `[server.tls]` describe.
pub const DEFAULT_LISTENER: &str = "default";

/// The most listeners a config may have, `default` included.
pub const MAX_LISTENERS: usize = 32;

/// One `[[listeners]]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerConfig {
    /// Its name, for routes' `listeners` and the logs.
    pub name: Spanned<String>,
    /// Address to listen on, `ip:port`.
    pub listen: Spanned<String>,
    /// TLS termination, as `[server.tls]`; without it, cleartext.
    #[serde(default)]
    pub tls: Option<Spanned<TlsConfig>>,
    /// Answer every request with a redirect to the same URL over HTTPS.
    #[serde(default)]
    pub redirect_https: Option<Spanned<bool>>,
    /// The port the redirects name (default: none, so 443).
    #[serde(default)]
    pub https_port: Option<Spanned<u16>>,
    /// Connections open with a PROXY protocol header (v1 or v2) naming the
    /// client.
    #[serde(default)]
    pub proxy_protocol: Option<Spanned<bool>>,
    /// With `proxy_protocol`: the peers (IPs, CIDRs) allowed to send it;
    /// connections from others are closed.
    #[serde(default)]
    pub proxy_protocol_from: Option<Spanned<Vec<Spanned<String>>>>,
}

/// A client-facing listener, checked.
#[derive(Debug, Clone)]
pub struct Listener {
    /// Its name (`default` for `[server]`'s).
    pub name: String,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Whether it terminates TLS.
    pub tls: bool,
    /// With `redirect_https`: every request is redirected to HTTPS.
    pub redirect_https: Option<HttpsRedirect>,
    /// With `proxy_protocol`: the peers that must send a PROXY protocol
    /// header (and no others may connect).
    pub proxy_protocol: Option<TrustedProxies>,
}

/// `redirect_https = true`, with its `https_port`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpsRedirect {
    /// The port written in the location (`None`: the default, 443).
    pub port: Option<u16>,
}

/// The `[[listeners]]` entries checked, after `default` (the `[server]`
/// listener), none overlapping another's or `admin`'s address; errors
/// recorded, `None` when any.
pub fn check_listeners(
    problems: &mut Problems<'_>,
    listeners: &[Spanned<ListenerConfig>],
    default: Listener,
    admin: Option<SocketAddr>,
) -> Option<Vec<Listener>> {
    let before = problems.len();
    let mut checked = vec![default];
    if listeners.len() >= MAX_LISTENERS {
        let span = listeners.last().map_or(0..0, Spanned::span);
        problems.at(
            span,
            format!("at most {MAX_LISTENERS} listeners, `default` included"),
        );
    }
    for entry in listeners {
        if let Some(listener) = check_one(problems, entry.get_ref(), &checked, admin) {
            checked.push(listener);
        }
    }
    (problems.len() == before).then_some(checked)
}

/// One entry against the listeners before it.
fn check_one(
    problems: &mut Problems<'_>,
    config: &ListenerConfig,
    earlier: &[Listener],
    admin: Option<SocketAddr>,
) -> Option<Listener> {
    let name = config.name.get_ref();
    let at = |problems: &mut Problems<'_>, span, message: String| {
        problems.at(span, format!("listener `{name}`: {message}"));
    };
    let valid_name = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !valid_name || name == DEFAULT_LISTENER {
        at(
            problems,
            config.name.span(),
            format!(
                "the name must be letters, digits, `-` or `_`, and not `{DEFAULT_LISTENER}` (the [server] listener's)"
            ),
        );
    } else if earlier.iter().any(|l| &l.name == name) {
        at(
            problems,
            config.name.span(),
            "a listener of this name comes earlier: names must be unique".into(),
        );
    }
    let Ok(addr) = config.listen.get_ref().parse::<SocketAddr>() else {
        let listen = config.listen.get_ref();
        at(
            problems,
            config.listen.span(),
            format!(
                "invalid listen address `{listen}`: expected ip:port, for example \"0.0.0.0:443\""
            ),
        );
        return None;
    };
    let taken = earlier
        .iter()
        .find(|l| overlaps(l.addr, addr))
        .map(|l| format!("listener `{}`", l.name));
    let taken = taken.or_else(|| {
        admin
            .filter(|a| overlaps(*a, addr))
            .map(|_| "the admin listener".to_string())
    });
    if let Some(other) = taken {
        at(
            problems,
            config.listen.span(),
            format!(
                "`{addr}` overlaps the address of {other}: give each listener a port of its own"
            ),
        );
    }
    let redirect = redirect(problems, config, name);
    let proxy_protocol = proxy_protocol(problems, config, name);
    Some(Listener {
        name: name.clone(),
        addr,
        tls: config.tls.is_some(),
        redirect_https: redirect?,
        proxy_protocol: proxy_protocol?,
    })
}

/// `proxy_protocol` and `proxy_protocol_from`: `Some(None)` without the
/// protocol, `None` when they are wrong (recorded).
fn proxy_protocol(
    problems: &mut Problems<'_>,
    config: &ListenerConfig,
    name: &str,
) -> Option<Option<TrustedProxies>> {
    let on = config.proxy_protocol.as_ref().is_some_and(|p| *p.get_ref());
    let mut fault = |span, message: &str| {
        problems.at(span, format!("listener `{name}`: {message}"));
        None
    };
    match (&config.proxy_protocol_from, on) {
        (None, false) => Some(None),
        (Some(from), false) => fault(
            from.span(),
            "proxy_protocol_from needs proxy_protocol = true",
        ),
        (None, true) => {
            let span = config.proxy_protocol.as_ref().map_or(0..0, Spanned::span);
            fault(
                span,
                "proxy_protocol needs proxy_protocol_from, the addresses of the load balancers that send it (for example [\"10.0.0.0/8\"]); connections from others are closed",
            )
        }
        (Some(from), true) if from.get_ref().is_empty() => fault(
            from.span(),
            "proxy_protocol_from is empty: list the load balancers' addresses",
        ),
        (Some(from), true) => {
            // Everyone trusted is anyone naming any client address.
            let everyone = from.get_ref().iter().find(|e| e.get_ref().ends_with("/0"));
            if let Some(entry) = everyone {
                return fault(
                    entry.span(),
                    "proxy_protocol_from cannot trust every address (`/0`): any client could then name any address as its own; list the load balancers",
                );
            }
            let entries: Vec<&str> = from
                .get_ref()
                .iter()
                .map(|e| e.get_ref().as_str())
                .collect();
            match TrustedProxies::parse(&entries) {
                Ok(trusted) => Some(Some(trusted)),
                Err(message) => {
                    let span = from
                        .get_ref()
                        .iter()
                        .find(|e| message.contains(&format!("`{}`", e.get_ref())))
                        .map_or(from.span(), Spanned::span);
                    let message = message
                        .replace("invalid trusted proxy", "invalid proxy_protocol_from entry");
                    fault(span, &message)
                }
            }
        }
    }
}

/// `redirect_https` and `https_port`: `Some(None)` without a redirect,
/// `None` when they are wrong (recorded).
fn redirect(
    problems: &mut Problems<'_>,
    config: &ListenerConfig,
    name: &str,
) -> Option<Option<HttpsRedirect>> {
    let on = config.redirect_https.as_ref().is_some_and(|r| *r.get_ref());
    if let (Some(flag), true, Some(_)) = (&config.redirect_https, on, &config.tls) {
        problems.at(
            flag.span(),
            format!(
                "listener `{name}`: redirect_https is for a cleartext listener; this one has tls"
            ),
        );
        return None;
    }
    match &config.https_port {
        Some(port) if !on => {
            problems.at(
                port.span(),
                format!("listener `{name}`: https_port needs redirect_https = true"),
            );
            None
        }
        Some(port) if *port.get_ref() == 0 => {
            problems.at(
                port.span(),
                format!("listener `{name}`: https_port must be between 1 and 65535"),
            );
            None
        }
        port => Some(on.then(|| HttpsRedirect {
            port: port.as_ref().map(|p| *p.get_ref()).filter(|p| *p != 443),
        })),
    }
}

/// A route's `listeners`, checked against the names `known`: `None` (every
/// listener) when absent.
pub fn route_listeners(
    source: &Source,
    route: &str,
    listeners: Option<&Spanned<Vec<Spanned<String>>>>,
    known: &[&str],
) -> Result<Option<Vec<String>>, ConfigError> {
    let Some(listed) = listeners else {
        return Ok(None);
    };
    let mut problems = Problems::new(source);
    if listed.get_ref().is_empty() {
        problems.at(listed.span(), format!("route `{route}`: listeners is empty: list at least one listener, or leave it out for all"));
    }
    let mut names = Vec::new();
    for name in listed.get_ref() {
        let text = name.get_ref();
        if !known.contains(&text.as_str()) {
            let hint = suggestion(text, "the listeners are", known);
            problems.at(
                name.span(),
                format!("route `{route}`: unknown listener `{text}`{hint}"),
            );
        } else if names.contains(text) {
            problems.at(
                name.span(),
                format!("route `{route}`: listener `{text}` is listed twice"),
            );
        } else {
            names.push(text.clone());
        }
    }
    problems.finish(Some(names))
}
