//! The built-in plugins, compiled by `build.rs` and embedded in the binary.

use crate::plugin::Capability;

/// One built-in: its name in config, its component and the host capabilities
/// it is granted without a `grants` line (the ones its code imports).
struct Builtin {
    name: &'static str,
    bytes: &'static [u8],
    grants: &'static [Capability],
}

macro_rules! component {
    ($stem:literal) => {
        include_bytes!(concat!(env!("GATEWAY_PLUGIN_DIR"), "/", $stem, ".wasm"))
    };
}

const BUILTINS: &[Builtin] = &[
    Builtin {
        name: "headers",
        bytes: component!("plugin_headers"),
        grants: &[],
    },
    Builtin {
        name: "respond",
        bytes: component!("plugin_respond"),
        grants: &[],
    },
    Builtin {
        name: "key-auth",
        bytes: component!("plugin_key_auth"),
        grants: &[Capability::Consumers],
    },
    Builtin {
        name: "mtls-auth",
        bytes: component!("plugin_mtls_auth"),
        grants: &[Capability::Consumers],
    },
    Builtin {
        name: "ip-restriction",
        bytes: component!("plugin_ip_restriction"),
        grants: &[],
    },
    Builtin {
        name: "acl",
        bytes: component!("plugin_acl"),
        grants: &[],
    },
    Builtin {
        name: "jwt",
        bytes: component!("plugin_jwt"),
        grants: &[
            Capability::Crypto,
            Capability::Consumers,
            Capability::HttpClient,
        ],
    },
    Builtin {
        name: "rate-limit",
        bytes: component!("plugin_rate_limit"),
        grants: &[Capability::RateLimit, Capability::Consumers],
    },
    Builtin {
        name: "cache",
        bytes: component!("plugin_cache"),
        grants: &[Capability::Cache],
    },
    Builtin {
        name: "transform",
        bytes: component!("plugin_transform"),
        grants: &[],
    },
    Builtin {
        name: "xml-json",
        bytes: component!("plugin_xml_json"),
        grants: &[],
    },
    Builtin {
        name: "cors",
        bytes: component!("plugin_cors"),
        grants: &[],
    },
    Builtin {
        name: "canary",
        bytes: component!("plugin_canary"),
        grants: &[],
    },
    Builtin {
        name: "oauth2-introspection",
        bytes: component!("plugin_oauth2_introspection"),
        grants: &[
            Capability::HttpClient,
            Capability::Kv,
            Capability::Crypto,
            Capability::Consumers,
        ],
    },
    Builtin {
        name: "ext-auth",
        bytes: component!("plugin_ext_auth"),
        grants: &[
            Capability::HttpClient,
            Capability::Cache,
            Capability::Crypto,
            Capability::Consumers,
        ],
    },
    Builtin {
        name: "basic-auth",
        bytes: component!("plugin_basic_auth"),
        grants: &[Capability::Consumers],
    },
    Builtin {
        name: "aws-sigv4",
        bytes: component!("plugin_aws_sigv4"),
        grants: &[Capability::Consumers, Capability::Crypto, Capability::Kv],
    },
    Builtin {
        name: "request-validator",
        bytes: component!("plugin_request_validator"),
        grants: &[],
    },
];

fn builtin(name: &str) -> Option<&'static Builtin> {
    BUILTINS.iter().find(|builtin| builtin.name == name)
}

/// The component bytes of the built-in called `name`.
pub fn find(name: &str) -> Option<&'static [u8]> {
    builtin(name).map(|builtin| builtin.bytes)
}

/// The capabilities the built-in called `name` is granted implicitly.
pub fn grants(name: &str) -> &'static [Capability] {
    builtin(name).map_or(&[], |builtin| builtin.grants)
}

/// The names of all built-ins, for error messages.
pub fn names() -> Vec<&'static str> {
    BUILTINS.iter().map(|builtin| builtin.name).collect()
}
