//! The plugin's settings: parsed, checked and turned into a [`Validator`] and
//! the request-side [`Options`] once, at `init`.

use crate::Validator;
use crate::claims::ClaimRules;
use crate::jwks_url::JwksUrl;
use crate::keys::ALG_HINT;
use crate::keys::{KeyConfig, KeyList, KeyStore, NO_KEY, is_hmac};
use plugin_sdk::Config;
use plugin_sdk::authz::{ClaimRuleConfig, Rules, RulesConfig, ScopesConfig};
use plugin_sdk::crypto::Algorithm;
use serde::Deserialize;
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

const MAX_LEEWAY: u64 = 600;
const TOKEN_BYTES: std::ops::RangeInclusive<usize> = 128..=65536;
/// Seconds `jwks_refresh` may be: often enough to be pointless below, a day
/// (the host's longest cache) above.
const JWKS_REFRESH: std::ops::RangeInclusive<u64> = 10..=86_400;
const DEFAULT_JWKS_REFRESH: u64 = 300;
const DEFAULT_JWKS_MIN_REFETCH: u64 = 30;

/// Headers a claim may never be copied into: the request's framing and routing.
const RESERVED_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
    "cookie",
];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    /// The allow-list of JOSE `alg` names.
    algorithms: Vec<String>,
    /// Keys given one by one.
    #[serde(default)]
    keys: Vec<KeyConfig>,
    /// A JWK set document, as JSON text.
    #[serde(default)]
    jwks: Option<String>,
    /// A shared secret for every allowed HS* algorithm, without a kid (usually
    /// filled from the environment by the entry's `config_env`).
    #[serde(default)]
    hmac_secret: Option<String>,
    /// A JWK set to fetch, at `init` and then as it ages.
    #[serde(default)]
    jwks_url: Option<String>,
    /// Seconds the fetched set may age before it is fetched again.
    #[serde(default)]
    jwks_refresh: Option<u64>,
    /// Seconds between early fetches for tokens with an unknown `kid`.
    #[serde(default)]
    jwks_min_refetch: Option<u64>,
    /// The header carrying `Bearer <token>`.
    #[serde(default = "default_header")]
    header: String,
    /// A query parameter that may carry the token instead of the header.
    #[serde(default)]
    query: Option<String>,
    /// A cookie that may carry the token instead of the header.
    #[serde(default)]
    cookie: Option<String>,
    /// Seconds of clock skew tolerated on `exp` and `nbf`.
    #[serde(default = "default_leeway")]
    leeway: u64,
    /// Accepted `iss` values.
    #[serde(default, deserialize_with = "one_or_many")]
    issuer: Option<Vec<String>>,
    /// Accepted `aud` values.
    #[serde(default, deserialize_with = "one_or_many")]
    audience: Option<Vec<String>>,
    /// Claims every token must carry.
    #[serde(default = "default_required")]
    required_claims: Vec<String>,
    /// Longer tokens are refused unread.
    #[serde(default = "default_max_token_bytes")]
    max_token_bytes: usize,
    /// Claims copied into the context as `jwt.claim.<name>`.
    #[serde(default)]
    claims_to_context: Vec<String>,
    /// Claims copied into upstream request headers: claim name -> header.
    #[serde(default)]
    claims_to_headers: BTreeMap<String, String>,
    /// The claim naming the consumer.
    #[serde(default)]
    consumer_claim: Option<String>,
    /// Refuse tokens whose consumer is not configured.
    #[serde(default)]
    consumer_must_exist: bool,
    /// Remove the token from the request before it is proxied (from the
    /// header, the parameter and the cookie).
    #[serde(default)]
    hide_credentials: bool,
    /// The realm in the `WWW-Authenticate` challenge.
    #[serde(default = "default_realm")]
    realm: String,
    /// Scopes a token must hold (any of, all of).
    #[serde(default)]
    scopes: Option<ScopesConfig>,
    /// Conditions on claim values, all to hold.
    #[serde(default)]
    claim_rules: Vec<ClaimRuleConfig>,
}

fn default_header() -> String {
    "authorization".into()
}

fn default_leeway() -> u64 {
    60
}

fn default_required() -> Vec<String> {
    vec!["exp".into()]
}

fn default_max_token_bytes() -> usize {
    8192
}

fn default_realm() -> String {
    "gateway".into()
}

/// A string or a list of strings, as a list.
fn one_or_many<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Vec<String>>, D::Error> {
    struct OneOrMany;

    impl<'de> Visitor<'de> for OneOrMany {
        type Value = Vec<String>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a string or a list of strings")
        }

        fn visit_str<E: de::Error>(self, value: &str) -> Result<Vec<String>, E> {
            Ok(vec![value.to_string()])
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<String>, A::Error> {
            let mut values = Vec::new();
            while let Some(value) = seq.next_element::<String>()? {
                values.push(value);
            }
            Ok(values)
        }
    }

    deserializer.deserialize_any(OneOrMany).map(Some)
}

/// Where the token is read from and what a success writes; used by the hook.
#[derive(Debug)]
pub struct Options {
    /// Lower-cased header name.
    pub header: String,
    /// Query parameter name.
    pub query: Option<String>,
    /// Cookie name.
    pub cookie: Option<String>,
    /// Claim names for `jwt.claim.<name>`.
    pub claims_to_context: Vec<String>,
    /// (claim, lower-cased header) pairs.
    pub claims_to_headers: Vec<(String, String)>,
    /// The claim naming the consumer.
    pub consumer_claim: Option<String>,
    /// Refuse tokens whose consumer is unknown.
    pub consumer_must_exist: bool,
    /// Strip the token before proxying.
    pub hide_credentials: bool,
    /// The realm, checked to need no escaping.
    pub realm: String,
    /// Scope and claim rules a verified token must also pass (`403`).
    pub authz: Rules,
}

/// What `init` builds from the settings.
#[derive(Debug)]
pub struct Loaded {
    /// What the request hook reads.
    pub options: Options,
    /// The validator; its keys are still to be installed when `jwks_url` is
    /// set (see [`JwksUrl::start`]).
    pub validator: Validator,
    /// The set to fetch, if any.
    pub jwks_url: Option<JwksUrl>,
}

/// Parses and checks the settings; every error names the setting.
pub fn load(config: &Config) -> Result<Loaded, String> {
    let settings: Settings = config.parse()?;

    let algorithms = algorithms(&settings.algorithms)?;
    check_limits_and_claims(&settings)?;
    let issuers = non_empty_list("issuer", settings.issuer)?;
    let audiences = non_empty_list("audience", settings.audience)?;
    let header = header_name("header", &settings.header)?;
    check_token_places(settings.query.as_deref(), settings.cookie.as_deref())?;
    let claims_to_headers = claims_to_headers(&settings.claims_to_headers, &header)?;
    let authz = Rules::new(RulesConfig {
        scopes: settings.scopes,
        claim_rules: settings.claim_rules,
    })
    .map_err(|e| format!("jwt: {e}"))?;
    let key_configs = key_configs(settings.keys, settings.hmac_secret, &algorithms)?;
    let url = jwks_url_timings(
        settings.jwks_url.as_deref(),
        settings.jwks_refresh,
        settings.jwks_min_refetch,
    )?;
    let configured = KeyList::configured(&algorithms, &key_configs, settings.jwks.as_deref())
        .map_err(|e| format!("jwt: {e}"))?;
    let (keys, jwks_url) = match url {
        // The keys are installed by the first fetch, in `init`.
        Some((url, refresh, min_refetch)) => (
            KeyStore::default(),
            Some(JwksUrl::new(
                url,
                refresh,
                min_refetch,
                algorithms.clone(),
                configured,
            )),
        ),
        None if configured.is_empty() => return Err(format!("jwt: {NO_KEY}")),
        None => (KeyStore::from_lists(&algorithms, &[&configured]), None),
    };
    let rules = ClaimRules {
        leeway: i64::try_from(settings.leeway).unwrap_or(0),
        issuers,
        audiences,
        required: settings.required_claims,
    };
    let validator = Validator::new(algorithms, keys, rules, settings.max_token_bytes);
    let options = Options {
        header,
        query: settings.query,
        cookie: settings.cookie,
        claims_to_context: settings.claims_to_context,
        claims_to_headers,
        consumer_claim: settings.consumer_claim,
        consumer_must_exist: settings.consumer_must_exist,
        hide_credentials: settings.hide_credentials,
        realm: settings.realm,
        authz,
    };
    Ok(Loaded {
        options,
        validator,
        jwks_url,
    })
}

/// The settings checked on their own: `leeway`, `max_token_bytes`, the
/// claim names, `consumer_claim` with `consumer_must_exist`, and `realm`.
fn check_limits_and_claims(settings: &Settings) -> Result<(), String> {
    if settings.leeway > MAX_LEEWAY {
        return Err(format!(
            "jwt: leeway is {} seconds; at most {MAX_LEEWAY} are allowed",
            settings.leeway
        ));
    }
    if !TOKEN_BYTES.contains(&settings.max_token_bytes) {
        return Err(format!(
            "jwt: max_token_bytes must be between {} and {}, got {}",
            TOKEN_BYTES.start(),
            TOKEN_BYTES.end(),
            settings.max_token_bytes
        ));
    }
    for name in &settings.required_claims {
        claim_name("required_claims", name)?;
    }
    for name in &settings.claims_to_context {
        claim_name("claims_to_context", name)?;
    }
    if let Some(claim) = &settings.consumer_claim {
        claim_name("consumer_claim", claim)?;
    } else if settings.consumer_must_exist {
        return Err(
            "jwt: consumer_must_exist needs consumer_claim, the claim naming the consumer".into(),
        );
    }
    plugin_sdk::consumers::check_realm("jwt", &settings.realm)
}

/// The `query` and `cookie` a token may come in, checked as names.
fn check_token_places(query: Option<&str>, cookie: Option<&str>) -> Result<(), String> {
    if let Some(query) = query
        && (query.is_empty() || query.chars().any(|c| c.is_control() || "&=#".contains(c)))
    {
        return Err(format!(
            "jwt: query {query:?} is not a usable parameter name"
        ));
    }
    if let Some(cookie) = cookie
        && (cookie.is_empty()
            || !cookie
                .bytes()
                .all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b)))
    {
        return Err(format!("jwt: cookie {cookie:?} is not a valid cookie name"));
    }
    Ok(())
}

/// `claims_to_headers`, checked: each claim a name, each header one this
/// plugin and the gateway do not read (`header` is the token's), no header
/// written twice.
fn claims_to_headers<'a>(
    wanted: impl IntoIterator<Item = (&'a String, &'a String)>,
    header: &str,
) -> Result<Vec<(String, String)>, String> {
    let mut claims_to_headers: Vec<(String, String)> = Vec::new();
    for (claim, target) in wanted {
        claim_name("claims_to_headers", claim)?;
        let target = header_name(&format!("claims_to_headers.{claim}"), target)?;
        if target == header || RESERVED_HEADERS.contains(&target.as_str()) {
            return Err(format!(
                "jwt: claims_to_headers.{claim}: the claim cannot be written to `{target}`, \
                 which the gateway or this plugin reads"
            ));
        }
        if let Some((other, _)) = claims_to_headers.iter().find(|(_, h)| *h == target) {
            return Err(format!(
                "jwt: claims_to_headers: `{other}` and `{claim}` both write header `{target}`"
            ));
        }
        claims_to_headers.push((claim.clone(), target));
    }
    Ok(claims_to_headers)
}

/// The configured `keys`, plus one HMAC key per HS* algorithm allowed for
/// `hmac_secret`, which needs at least one.
fn key_configs(
    mut keys: Vec<KeyConfig>,
    hmac_secret: Option<String>,
    algorithms: &[Algorithm],
) -> Result<Vec<KeyConfig>, String> {
    let Some(secret) = hmac_secret else {
        return Ok(keys);
    };
    let hmac: Vec<Algorithm> = algorithms.iter().copied().filter(|a| is_hmac(*a)).collect();
    if hmac.is_empty() {
        return Err("jwt: hmac_secret needs an HS256, HS384 or HS512 entry in algorithms".into());
    }
    for alg in hmac {
        keys.push(KeyConfig {
            kid: None,
            alg: alg.name().to_string(),
            jwk: None,
            pem: None,
            secret: Some(secret.clone()),
            secret_base64: None,
        });
    }
    Ok(keys)
}

/// `jwks_url` with its refresh and refetch intervals, checked; `None`
/// without a URL, where the intervals would mean nothing.
fn jwks_url_timings(
    url: Option<&str>,
    refresh: Option<u64>,
    min_refetch: Option<u64>,
) -> Result<Option<(String, Duration, Duration)>, String> {
    let Some(url) = url else {
        if let Some(setting) = [("jwks_refresh", refresh), ("jwks_min_refetch", min_refetch)]
            .into_iter()
            .find_map(|(name, value)| value.map(|_| name))
        {
            return Err(format!(
                "jwt: {setting} needs jwks_url, the JWK set it refreshes"
            ));
        }
        return Ok(None);
    };
    plugin_sdk::http_client::check_url(url).map_err(|why| format!("jwt: jwks_url {why}"))?;
    let refresh = refresh.unwrap_or(DEFAULT_JWKS_REFRESH);
    if !JWKS_REFRESH.contains(&refresh) {
        return Err(format!(
            "jwt: jwks_refresh must be between {} and {} seconds, got {refresh}",
            JWKS_REFRESH.start(),
            JWKS_REFRESH.end()
        ));
    }
    let min_refetch = min_refetch.unwrap_or(DEFAULT_JWKS_MIN_REFETCH.min(refresh));
    if !(1..=refresh).contains(&min_refetch) {
        return Err(format!(
            "jwt: jwks_min_refetch must be between 1 and jwks_refresh ({refresh}) seconds, \
             got {min_refetch}"
        ));
    }
    Ok(Some((
        url.to_string(),
        Duration::from_secs(refresh),
        Duration::from_secs(min_refetch),
    )))
}

/// The allow-list, checked: known names only, never `none`.
fn algorithms(names: &[String]) -> Result<Vec<Algorithm>, String> {
    if names.is_empty() {
        return Err(format!(
            "jwt: algorithms must list at least one algorithm; {ALG_HINT}"
        ));
    }
    let mut algorithms = Vec::new();
    for name in names {
        if name.eq_ignore_ascii_case("none") {
            return Err(format!(
                "jwt: {name:?} is never allowed in algorithms: it would accept unsigned tokens"
            ));
        }
        let alg = Algorithm::from_name(name)
            .ok_or_else(|| format!("jwt: unknown algorithm {name:?} in algorithms; {ALG_HINT}"))?;
        if !algorithms.contains(&alg) {
            algorithms.push(alg);
        }
    }
    Ok(algorithms)
}

fn non_empty_list(setting: &str, values: Option<Vec<String>>) -> Result<Vec<String>, String> {
    match values {
        None => Ok(Vec::new()),
        Some(values) if values.is_empty() => Err(format!(
            "jwt: {setting} is an empty list; leave it out to skip the check"
        )),
        Some(values) if values.iter().any(String::is_empty) => {
            Err(format!("jwt: {setting} holds an empty string"))
        }
        Some(values) => Ok(values),
    }
}

/// A claim name fit for a context key and an `error_description`.
fn claim_name(setting: &str, name: &str) -> Result<(), String> {
    let printable = name
        .bytes()
        .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\');
    if name.is_empty() || name.len() > 200 || !printable {
        return Err(format!(
            "jwt: {setting}: {name:?} is not a usable claim name (1 to 200 printable ASCII \
             characters, no quotes or backslashes)"
        ));
    }
    Ok(())
}

/// A header name, lower-cased.
fn header_name(setting: &str, name: &str) -> Result<String, String> {
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(format!(
            "jwt: {setting}: {name:?} is not a valid header name"
        ));
    }
    Ok(name.to_ascii_lowercase())
}
