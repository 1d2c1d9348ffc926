//! The built-in `ip-restriction` plugin: lets a route be reached only from
//! some client addresses, or from all but some, as Kong's ip-restriction and
//! the `aws:SourceIp` condition of an API Gateway resource policy do.
//!
//! `allow` and `deny` are lists of addresses and CIDR blocks. An address in
//! `deny` is refused; when `allow` is given, an address not in it is refused
//! too; everything else passes. The address is the one the gateway reports as
//! the client's: the TCP peer, or the client behind `[server]
//! trusted_proxies` as their `X-Forwarded-For` names it. An IPv4 address
//! written as IPv6 (`::ffff:192.0.2.1`) is matched as IPv4.

use ipnet::IpNet;
use plugin_sdk::{Action, Config, Context, Needs, Plugin, Request, Response, log};
use serde::Deserialize;
use std::net::{IpAddr, SocketAddr};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    /// Addresses and blocks that may pass (all, when empty).
    #[serde(default)]
    allow: Vec<String>,
    /// Addresses and blocks that are refused, whatever `allow` says.
    #[serde(default)]
    deny: Vec<String>,
    /// The status a refused request is answered with.
    #[serde(default = "default_status")]
    status: u16,
    /// What the answer's `error` says.
    #[serde(default = "default_message")]
    message: String,
}

fn default_status() -> u16 {
    403
}

fn default_message() -> String {
    "your IP address is not allowed".to_string()
}

/// The plugin with its lists parsed.
#[derive(Debug)]
pub struct IpRestriction {
    allow: Vec<IpNet>,
    deny: Vec<IpNet>,
    status: u16,
    message: String,
}

/// `text` as a block: `10.0.0.0/8`, or one address (`192.0.2.7`, a /32 or
/// /128). IPv4-mapped IPv6 blocks are turned into IPv4 ones.
fn block(text: &str) -> Result<IpNet, String> {
    let trimmed = text.trim();
    let net = match trimmed.parse::<IpNet>() {
        Ok(net) => net,
        Err(_) => trimmed.parse::<IpAddr>().map(IpNet::from).map_err(|_| {
            format!("`{text}` is not an IP address or CIDR block (e.g. \"10.0.0.0/8\")")
        })?,
    };
    if net.addr() != net.network() {
        return Err(format!(
            "`{text}` has host bits set: did you mean `{}`?",
            net.trunc()
        ));
    }
    Ok(match net {
        IpNet::V6(v6) => match (v6.addr().to_ipv4_mapped(), v6.prefix_len()) {
            (Some(v4), len) if len >= 96 => {
                IpNet::new(IpAddr::V4(v4), len - 96).unwrap_or(IpNet::V6(v6))
            }
            _ => IpNet::V6(v6),
        },
        v4 => v4,
    })
}

/// The client's address from the gateway's `ip:port` / `[ip]:port` text.
fn client_ip(addr: &str) -> Option<IpAddr> {
    addr.parse::<SocketAddr>()
        .map(|socket| socket.ip())
        .or_else(|_| addr.parse::<IpAddr>())
        .ok()
        .map(|ip| ip.to_canonical())
}

impl IpRestriction {
    /// Whether `ip` may pass.
    fn admits(&self, ip: IpAddr) -> bool {
        if self.deny.iter().any(|net| net.contains(&ip)) {
            return false;
        }
        self.allow.is_empty() || self.allow.iter().any(|net| net.contains(&ip))
    }
}

impl Plugin for IpRestriction {
    const NAME: &'static str = "ip-restriction";

    fn needs(&self) -> Needs {
        Needs::REQUEST
    }

    fn init(config: Config) -> Result<Self, String> {
        let settings: Settings = config.parse()?;
        if settings.allow.is_empty() && settings.deny.is_empty() {
            return Err("ip-restriction: give `allow`, `deny` or both".into());
        }
        if !(400..=599).contains(&settings.status) {
            return Err(format!(
                "ip-restriction: status {} is not an error status (400 to 599)",
                settings.status
            ));
        }
        let parse = |list: &[String], name: &str| {
            list.iter()
                .map(|text| block(text).map_err(|err| format!("ip-restriction: {name}: {err}")))
                .collect::<Result<Vec<_>, _>>()
        };
        Ok(IpRestriction {
            allow: parse(&settings.allow, "allow")?,
            deny: parse(&settings.deny, "deny")?,
            status: settings.status,
            message: settings.message,
        })
    }

    fn on_request(&self, req: &mut Request, _ctx: &mut Context) -> Action {
        let admitted = client_ip(req.client_addr()).is_some_and(|ip| self.admits(ip));
        if admitted {
            return Action::Continue;
        }
        log::info(&format!(
            "ip-restriction: {} refused on route `{}`",
            req.client_addr(),
            req.route()
        ));
        Action::Respond(Response::error(self.status, &self.message, req))
    }
}

plugin_sdk::export!(IpRestriction);

#[cfg(test)]
mod tests {
    use super::*;

    fn plugin(config: &str) -> Result<IpRestriction, String> {
        IpRestriction::init(Config::from_json(config))
    }

    fn status(plugin: &IpRestriction, client: &str) -> Option<u16> {
        let mut req = Request::new("GET", "/x")
            .with_client_addr(client)
            .with_header("x-request-id", "req-1");
        match plugin.on_request(&mut req, &mut Context::new()) {
            Action::Continue => None,
            Action::Respond(response) => Some(response.status()),
        }
    }

    #[test]
    fn allow_lets_only_its_blocks_through() {
        let p =
            plugin(r#"{"allow": ["10.0.0.0/8", "192.0.2.7", "2001:db8::/32"]}"#).expect("valid");
        assert_eq!(status(&p, "10.1.2.3:5555"), None);
        assert_eq!(status(&p, "192.0.2.7:80"), None);
        assert_eq!(status(&p, "[2001:db8:1::5]:443"), None);
        assert_eq!(
            status(&p, "[::ffff:10.9.9.9]:1"),
            None,
            "IPv4 written as IPv6"
        );
        assert_eq!(status(&p, "192.0.2.8:80"), Some(403));
        assert_eq!(status(&p, "11.0.0.1:80"), Some(403));
        assert_eq!(status(&p, "[2001:db9::1]:443"), Some(403));
    }

    #[test]
    fn deny_wins_over_allow() {
        let p = plugin(r#"{"allow": ["10.0.0.0/8"], "deny": ["10.0.0.13", "10.66.0.0/16"]}"#)
            .expect("valid");
        assert_eq!(status(&p, "10.0.0.12:1"), None);
        assert_eq!(status(&p, "10.0.0.13:1"), Some(403));
        assert_eq!(status(&p, "10.66.1.1:1"), Some(403));
        let deny_only = plugin(r#"{"deny": ["203.0.113.0/24"]}"#).expect("valid");
        assert_eq!(status(&deny_only, "198.51.100.1:1"), None);
        assert_eq!(status(&deny_only, "203.0.113.9:1"), Some(403));
        assert_eq!(
            status(&deny_only, "[::ffff:203.0.113.9]:1"),
            Some(403),
            "IPv4 written as IPv6 is still denied"
        );
        let mapped = plugin(r#"{"deny": ["::ffff:203.0.113.0/120"]}"#).expect("valid");
        assert_eq!(status(&mapped, "203.0.113.9:1"), Some(403), "mapped block");
    }

    #[test]
    fn the_answer_is_configurable_and_an_unreadable_address_is_refused() {
        let p = plugin(r#"{"allow": ["10.0.0.0/8"], "status": 404, "message": "not here"}"#)
            .expect("valid");
        let mut req = Request::new("GET", "/x")
            .with_client_addr("8.8.8.8:53")
            .with_header("x-request-id", "req-9");
        let Action::Respond(response) = p.on_request(&mut req, &mut Context::new()) else {
            panic!("refused");
        };
        assert_eq!(response.status(), 404);
        let body: serde_json::Value =
            serde_json::from_slice(response.body().unwrap_or_default()).expect("json");
        assert_eq!(body["error"], "not here");
        assert_eq!(body["request_id"], "req-9");
        assert_eq!(status(&p, "somewhere"), Some(404));
        assert_eq!(status(&p, ""), Some(404));
    }

    #[test]
    fn bad_config_is_refused_with_the_entry_named() {
        let error = |config: &str| plugin(config).err().unwrap_or_default();
        assert!(error("{}").contains("give `allow`, `deny` or both"));
        assert!(error(r#"{"allow": []}"#).contains("give `allow`"));
        let bad = error(r#"{"allow": ["10.0.0.0/33"]}"#);
        assert!(
            bad.contains("allow: `10.0.0.0/33` is not an IP address"),
            "{bad}"
        );
        let host_bits = error(r#"{"deny": ["10.1.2.3/8"]}"#);
        assert!(
            host_bits.contains("did you mean `10.0.0.0/8`"),
            "{host_bits}"
        );
        assert!(error(r#"{"deny": ["1.2.3.4"], "status": 200}"#).contains("not an error status"));
        assert!(error(r#"{"alow": ["1.2.3.4"]}"#).contains("unknown field `alow`"));
    }
}
