//! The verification keys, built at `init` from `keys` and `jwks` (and from
//! each fetch of `jwks_url`), and the rules for picking the ones a token may
//! be checked against.
//!
//! Every key is a [`VerifyingKey`] bound to exactly one algorithm, so the
//! token's `alg` can only ever select keys made for that algorithm: an RSA
//! key is never an HMAC secret however the header is forged. Keys are found
//! by `kid` and `alg` only; nothing in the token (`jwk`, `jku`, `x5u`, `x5c`)
//! can add one, and a `kid` is only ever a map key.
//!
//! Keys are gathered per source into a [`KeyList`] and indexed into a
//! [`KeyStore`] built from one or more lists, so a refreshed `jwks_url` set
//! replaces its own keys and leaves the configured ones alone.

use crate::Reason;
use base64::Engine as _;
use base64::alphabet::{STANDARD, URL_SAFE};
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use plugin_sdk::crypto::{Algorithm, VerifyingKey};
use plugin_sdk::log;
use serde::Deserialize;
use serde_json::{Map, Value};
use std::collections::{HashMap, HashSet};

/// Appended to errors about algorithm names.
pub const ALG_HINT: &str = "expected one of HS256, HS384, HS512, RS256, RS384, RS512, PS256, \
                            PS384, PS512, ES256, ES384, ES512, EdDSA (case-sensitive)";

/// How many keys a token without a usable `kid` is tried against. Bounds the
/// work an unauthenticated request can cause.
pub const MAX_ATTEMPTS: usize = 8;

/// The error when no source gives a key.
pub const NO_KEY: &str =
    "no key configured: give at least one in `keys`, `jwks`, `hmac_secret` or `jwks_url`";

/// One entry of the `keys` setting.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyConfig {
    /// Matched against the token header's `kid`.
    #[serde(default)]
    pub kid: Option<String>,
    /// The one algorithm this key verifies.
    pub alg: String,
    /// A JSON Web Key (public members; private ones are ignored).
    #[serde(default)]
    pub jwk: Option<Value>,
    /// A PEM `PUBLIC KEY` (or `RSA PUBLIC KEY`) block.
    #[serde(default)]
    pub pem: Option<String>,
    /// An HMAC secret, as UTF-8 text.
    #[serde(default)]
    pub secret: Option<String>,
    /// An HMAC secret, base64 (standard or URL-safe, padding optional).
    #[serde(default)]
    pub secret_base64: Option<String>,
}

/// A usable key and where it came from.
#[derive(Debug, Clone)]
struct Entry {
    kid: Option<String>,
    key: VerifyingKey,
}

/// Where a JWK set came from: what its errors and log lines call it, and
/// whether it may hold shared secrets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SetSource {
    /// The `jwks` setting, written by the operator.
    Config,
    /// A document fetched from `jwks_url`.
    Url,
}

impl SetSource {
    /// The subject of an error about the whole set.
    fn name(self) -> &'static str {
        match self {
            SetSource::Config => "jwks",
            SetSource::Url => "the document at jwks_url",
        }
    }

    /// The prefix of a log line about one member.
    fn label(self) -> &'static str {
        match self {
            SetSource::Config => "jwks",
            SetSource::Url => "jwks_url",
        }
    }
}

/// The keys of one source, not yet indexed.
#[derive(Debug, Default, Clone)]
pub struct KeyList {
    entries: Vec<Entry>,
    /// Kids a JWK set publishes more than once for one key type, with the
    /// algorithms that makes them ambiguous for.
    duplicated: HashMap<String, HashSet<Algorithm>>,
}

impl KeyList {
    /// The keys of the `keys` and `jwks` settings; `allowed` is the
    /// `algorithms` allow-list. No key at all is not an error here: the
    /// caller knows whether `jwks_url` supplies them.
    pub fn configured(
        allowed: &[Algorithm],
        keys: &[KeyConfig],
        jwks: Option<&str>,
    ) -> Result<KeyList, String> {
        let mut list = KeyList::default();
        for (index, config) in keys.iter().enumerate() {
            let (kid, key) = configured_key(allowed, index, config)?;
            if let Some(kid) = &kid
                && let Some(other) = list.entries.iter().position(|entry| {
                    entry.kid.as_ref() == Some(kid)
                        && (entry.key.algorithm() == key.algorithm()
                            || is_hmac(entry.key.algorithm()) != is_hmac(key.algorithm()))
                })
            {
                return Err(format!(
                    "keys[{index}]: kid {kid:?} is already used by keys[{other}] ({}); \
                     a kid must name one key per algorithm, and never both a secret and a public key",
                    list.entries[other].key.algorithm().name()
                ));
            }
            list.entries.push(Entry { kid, key });
        }
        if let Some(jwks) = jwks {
            list.add_jwks(allowed, SetSource::Config, jwks.as_bytes())?;
        }
        Ok(list)
    }

    /// The keys of a JWK set fetched from `jwks_url`. Shared secrets (`kty`
    /// `oct`) are skipped: a secret served over the network lets whoever
    /// reaches the URL sign tokens. An error when the document is not a JWK
    /// set or yields no usable key.
    pub fn fetched(allowed: &[Algorithm], document: &[u8]) -> Result<KeyList, String> {
        let mut list = KeyList::default();
        list.add_jwks(allowed, SetSource::Url, document)?;
        Ok(list)
    }

    /// The number of usable keys (one per key and algorithm).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Members sharing a kid and a key type make the kid ambiguous for every
    /// algorithm that type serves, even when one of them is unusable: the set
    /// as published does not say which key the kid means.
    fn note_duplicated_kids<'j>(
        &mut self,
        allowed: &[Algorithm],
        jwks: impl Iterator<Item = &'j Value>,
    ) {
        let mut shapes: HashMap<(&str, &str, Option<&str>), usize> = HashMap::new();
        for jwk in jwks {
            let text = |name: &str| jwk.get(name).and_then(Value::as_str);
            if let (Some(kid), Some(kty)) = (text("kid"), text("kty")) {
                *shapes.entry((kid, kty, text("crv"))).or_default() += 1;
            }
        }
        for ((kid, kty, crv), count) in shapes {
            if count > 1 {
                let algs = allowed.iter().copied().filter(|&alg| fits(alg, kty, crv));
                self.duplicated
                    .entry(kid.to_string())
                    .or_default()
                    .extend(algs);
            }
        }
    }

    fn add_jwks(
        &mut self,
        allowed: &[Algorithm],
        source: SetSource,
        jwks: &[u8],
    ) -> Result<(), String> {
        let name = source.name();
        let document: Value =
            serde_json::from_slice(jwks).map_err(|e| format!("{name} is not valid JSON: {e}"))?;
        let Some(Value::Array(jwks)) = document.get("keys") else {
            return Err(format!(
                "{name} must be a JWK set: a JSON object with a \"keys\" array"
            ));
        };
        if jwks.is_empty() {
            return Err(format!("{name} has no keys"));
        }
        let is_secret = |jwk: &Value| {
            jwk.get("kty")
                .and_then(Value::as_str)
                .map(|kty| kty == "oct")
        };
        let secrets = jwks.iter().any(|jwk| is_secret(jwk) == Some(true));
        let public = jwks.iter().any(|jwk| is_secret(jwk) == Some(false));
        if source == SetSource::Config && secrets && public {
            return Err(
                "jwks mixes shared secrets (kty \"oct\") with public keys; a key set that \
                 does both invites key confusion: keep HMAC secrets in `keys`"
                    .into(),
            );
        }
        let taken = |jwk: &Value| source == SetSource::Config || is_secret(jwk) != Some(true);
        self.note_duplicated_kids(allowed, jwks.iter().filter(|jwk| taken(jwk)));
        let before = self.entries.len();
        for (index, jwk) in jwks.iter().enumerate() {
            let label = match jwk.get("kid").and_then(Value::as_str) {
                Some(kid) => format!("{} key {index} (kid {kid:?})", source.label()),
                None => format!("{} key {index}", source.label()),
            };
            if !taken(jwk) {
                log::warn(&format!(
                    "jwt: {label} skipped: a shared secret (kty \"oct\") is never taken from a URL"
                ));
                continue;
            }
            match jwks_entry(allowed, jwk) {
                Ok((kid, keys, refused)) => {
                    if keys.is_empty() {
                        log::warn(&format!("jwt: {label} skipped: {}", refused.join("; ")));
                    }
                    for note in refused.iter().filter(|_| !keys.is_empty()) {
                        log::debug(&format!("jwt: {label}: {note}"));
                    }
                    for key in keys {
                        self.entries.push(Entry {
                            kid: kid.clone(),
                            key,
                        });
                    }
                }
                Err(why) => log::warn(&format!("jwt: {label} skipped: {why}")),
            }
        }
        if self.entries.len() == before {
            let names: Vec<&str> = allowed.iter().map(|alg| alg.name()).collect();
            return Err(format!(
                "none of the {} keys in {name} can verify any of the allowed algorithms [{}] \
                 (each is logged above with the reason)",
                jwks.len(),
                names.join(", ")
            ));
        }
        Ok(())
    }
}

/// Keys indexed for lookup.
#[derive(Debug, Default)]
pub struct KeyStore {
    entries: Vec<Entry>,
    by_alg: HashMap<Algorithm, Vec<usize>>,
    by_kid: HashMap<String, Vec<usize>>,
    /// Keys without a `kid`, per algorithm: candidates for a token whose `kid`
    /// names no configured key (as in Envoy, a key without a `kid` matches any).
    unnamed: HashMap<Algorithm, Vec<usize>>,
    /// `kid`s that name more than one key for some algorithms: tokens with
    /// such a `kid` and `alg` are refused, whichever key they were made with.
    ambiguous: HashMap<String, HashSet<Algorithm>>,
}

impl KeyStore {
    /// The store of the `keys` and `jwks` settings, which must give at least
    /// one key; `allowed` is the `algorithms` allow-list.
    pub fn build(
        allowed: &[Algorithm],
        keys: &[KeyConfig],
        jwks: Option<&str>,
    ) -> Result<KeyStore, String> {
        let list = KeyList::configured(allowed, keys, jwks)?;
        if list.is_empty() {
            return Err(NO_KEY.into());
        }
        Ok(KeyStore::from_lists(allowed, &[&list]))
    }

    /// One store of the keys of every list. A kid on keys of two lists is
    /// judged as if they were one list: the same kid for one algorithm, or
    /// for both a secret and a public key, is ambiguous.
    pub fn from_lists(allowed: &[Algorithm], lists: &[&KeyList]) -> KeyStore {
        let mut store = KeyStore::default();
        for list in lists {
            store.entries.extend(list.entries.iter().cloned());
            for (kid, algs) in &list.duplicated {
                store
                    .ambiguous
                    .entry(kid.clone())
                    .or_default()
                    .extend(algs.iter().copied());
            }
        }
        store.index(allowed);
        store
    }

    /// The number of usable keys (one per key and algorithm).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether some key carries this `kid`.
    pub fn knows_kid(&self, kid: &str) -> bool {
        self.by_kid.contains_key(kid)
    }

    /// The keys a token with this `alg` and `kid` may be verified with: the
    /// one key with that `kid` and `alg`; without a `kid` (or with one no key
    /// has), up to [`MAX_ATTEMPTS`] keys of that `alg`.
    pub fn candidates(
        &self,
        alg: Algorithm,
        kid: Option<&str>,
    ) -> Result<Vec<&VerifyingKey>, Reason> {
        if let Some(kid) = kid
            && self
                .ambiguous
                .get(kid)
                .is_some_and(|algs| algs.contains(&alg))
        {
            return Err(Reason::AmbiguousKey);
        }
        if let Some(kid) = kid
            && let Some(ids) = self.by_kid.get(kid)
        {
            let mut matching = ids
                .iter()
                .map(|&id| &self.entries[id].key)
                .filter(|key| key.algorithm() == alg);
            return match (matching.next(), matching.next()) {
                (Some(key), None) => Ok(vec![key]),
                (Some(_), Some(_)) => Err(Reason::AmbiguousKey),
                (None, _) => Err(Reason::UnknownKey),
            };
        }
        // No kid, or one that names no key: keys without a kid are candidates.
        let pool = if kid.is_some() {
            self.unnamed.get(&alg)
        } else {
            self.by_alg.get(&alg)
        };
        let keys: Vec<&VerifyingKey> = pool
            .into_iter()
            .flatten()
            .take(MAX_ATTEMPTS)
            .map(|&id| &self.entries[id].key)
            .collect();
        if keys.is_empty() {
            Err(Reason::UnknownKey)
        } else {
            Ok(keys)
        }
    }

    fn index(&mut self, allowed: &[Algorithm]) {
        let mut kinds: HashMap<&str, (bool, bool)> = HashMap::new();
        for (id, entry) in self.entries.iter().enumerate() {
            let alg = entry.key.algorithm();
            self.by_alg.entry(alg).or_default().push(id);
            match &entry.kid {
                Some(kid) => {
                    self.by_kid.entry(kid.clone()).or_default().push(id);
                    let kind = kinds.entry(kid).or_default();
                    if is_hmac(alg) {
                        kind.0 = true;
                    } else {
                        kind.1 = true;
                    }
                }
                None => self.unnamed.entry(alg).or_default().push(id),
            }
        }
        // A kid on both a secret and a public key is ambiguous for every
        // algorithm: which kind of key it means is the whole question.
        for (kid, (secret, public)) in kinds {
            if secret && public {
                self.ambiguous
                    .entry(kid.to_string())
                    .or_default()
                    .extend(allowed.iter().copied());
            }
        }
        for (kid, ids) in &self.by_kid {
            let mut seen = HashSet::new();
            for &id in ids {
                let alg = self.entries[id].key.algorithm();
                if !seen.insert(alg) {
                    self.ambiguous.entry(kid.clone()).or_default().insert(alg);
                }
            }
        }
        let mut ambiguous: Vec<(&String, Vec<&str>)> = self
            .ambiguous
            .iter()
            .map(|(kid, algs)| {
                let mut names: Vec<&str> = algs.iter().map(|alg| alg.name()).collect();
                names.sort_unstable();
                (kid, names)
            })
            .collect();
        ambiguous.sort();
        for (kid, algs) in ambiguous {
            log::warn(&format!(
                "jwt: kid {kid:?} names more than one key for {}; tokens with this kid and \
                 one of these algorithms are refused as ambiguous",
                algs.join(", ")
            ));
        }
        for (alg, ids) in &self.by_alg {
            if ids.len() > MAX_ATTEMPTS {
                log::warn(&format!(
                    "jwt: {} {} keys; a token without a kid is tried against the first {MAX_ATTEMPTS} only",
                    ids.len(),
                    alg.name()
                ));
            }
        }
    }
}

/// Whether `alg` is an HMAC (shared-secret) algorithm.
pub fn is_hmac(alg: Algorithm) -> bool {
    matches!(alg, Algorithm::Hs256 | Algorithm::Hs384 | Algorithm::Hs512)
}

/// Whether a JWK of this `kty` (and `crv`) can be a key for `alg`.
fn fits(alg: Algorithm, kty: &str, crv: Option<&str>) -> bool {
    match alg {
        Algorithm::Hs256 | Algorithm::Hs384 | Algorithm::Hs512 => kty == "oct",
        Algorithm::Rs256
        | Algorithm::Rs384
        | Algorithm::Rs512
        | Algorithm::Ps256
        | Algorithm::Ps384
        | Algorithm::Ps512 => kty == "RSA",
        Algorithm::Es256 => kty == "EC" && crv == Some("P-256"),
        Algorithm::Es384 => kty == "EC" && crv == Some("P-384"),
        Algorithm::Es512 => kty == "EC" && crv == Some("P-521"),
        Algorithm::EdDsa => kty == "OKP" && crv == Some("Ed25519"),
    }
}

/// What a JWK's own `alg` member says.
enum JwkAlg {
    Absent,
    Known(Algorithm),
    /// Not a JWS signature algorithm (an encryption algorithm, a typo...).
    Other(String),
}

fn jwk_alg(jwk: &Map<String, Value>) -> Result<JwkAlg, String> {
    match jwk.get("alg") {
        None => Ok(JwkAlg::Absent),
        // RFC 7520's example keys say "ES521" for ES512; the curve still has
        // to be P-521, which the SDK checks.
        Some(Value::String(name)) if name == "ES521" => Ok(JwkAlg::Known(Algorithm::Es512)),
        Some(Value::String(name)) => Ok(match Algorithm::from_name(name) {
            Some(alg) => JwkAlg::Known(alg),
            None => JwkAlg::Other(name.clone()),
        }),
        Some(_) => Err("its \"alg\" is not a string".into()),
    }
}

/// One `keys` entry, checked; any problem is a config error.
fn configured_key(
    allowed: &[Algorithm],
    index: usize,
    config: &KeyConfig,
) -> Result<(Option<String>, VerifyingKey), String> {
    let label = match &config.kid {
        Some(kid) => format!("keys[{index}] (kid {kid:?})"),
        None => format!("keys[{index}]"),
    };
    let alg = Algorithm::from_name(&config.alg)
        .ok_or_else(|| format!("{label}: unknown alg {:?}; {}", config.alg, ALG_HINT))?;
    if !allowed.contains(&alg) {
        return Err(format!(
            "{label}: alg {} is not in `algorithms`",
            alg.name()
        ));
    }
    one_source(&label, config)?;
    let mut kid = config.kid.clone();
    let made = if let Some(jwk) = &config.jwk {
        kid = jwk_kid(&label, alg, jwk, kid)?;
        VerifyingKey::from_jwk(alg, &jwk.to_string())
    } else if let Some(pem) = &config.pem {
        VerifyingKey::from_pem(alg, pem)
    } else if let Some(secret) = &config.secret {
        if secret.trim_start().starts_with("-----BEGIN") {
            return Err(format!(
                "{label}: `secret` holds a PEM block; a public key goes in `pem` with an \
                 RS*, PS*, ES* or EdDSA alg, never in an HMAC secret"
            ));
        }
        VerifyingKey::from_secret(alg, secret.as_bytes())
    } else {
        let encoded = config.secret_base64.as_deref().unwrap_or_default();
        let secret = decode_secret(encoded)
            .ok_or_else(|| format!("{label}: `secret_base64` is not base64"))?;
        VerifyingKey::from_secret(alg, &secret)
    };
    let key = made.map_err(|e| format!("{label}: {e}"))?;
    Ok((kid, key))
}

/// Checks that a configured key names exactly one source of key material.
fn one_source(label: &str, config: &KeyConfig) -> Result<(), String> {
    let given: Vec<&str> = [
        ("jwk", config.jwk.is_some()),
        ("pem", config.pem.is_some()),
        ("secret", config.secret.is_some()),
        ("secret_base64", config.secret_base64.is_some()),
    ]
    .into_iter()
    .filter_map(|(name, present)| present.then_some(name))
    .collect();
    if given.len() == 1 {
        return Ok(());
    }
    let found = if given.is_empty() {
        "none".to_string()
    } else {
        given.join(", ")
    };
    Err(format!(
        "{label}: give exactly one of `jwk`, `pem`, `secret`, `secret_base64` (found {found})"
    ))
}

/// Checks a configured JWK against the entry (an object, its `alg` the
/// entry's, its `kid` the entry's) and returns the key's kid.
fn jwk_kid(
    label: &str,
    alg: Algorithm,
    jwk: &Value,
    kid: Option<String>,
) -> Result<Option<String>, String> {
    let Value::Object(members) = jwk else {
        return Err(format!("{label}: `jwk` must be a JSON object"));
    };
    match jwk_alg(members).map_err(|e| format!("{label}: the JWK: {e}"))? {
        JwkAlg::Known(named) if named != alg => {
            return Err(format!(
                "{label}: the JWK's alg is {}, the entry's is {}; a key serves one algorithm",
                named.name(),
                alg.name()
            ));
        }
        JwkAlg::Other(name) => {
            return Err(format!(
                "{label}: the JWK's alg {name:?} is not a JWS signature algorithm"
            ));
        }
        JwkAlg::Known(_) | JwkAlg::Absent => {}
    }
    match (members.get("kid"), kid) {
        (None, kid) => Ok(kid),
        (Some(Value::String(inner)), None) => Ok(Some(inner.clone())),
        (Some(Value::String(inner)), Some(outer)) if *inner == outer => Ok(Some(outer)),
        (Some(_), _) => Err(format!(
            "{label}: the JWK's kid differs from the entry's kid"
        )),
    }
}

/// A base64 secret in either alphabet, with or without padding.
fn decode_secret(encoded: &str) -> Option<Vec<u8>> {
    let config =
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
    let encoded = encoded.trim();
    GeneralPurpose::new(&STANDARD, config)
        .decode(encoded)
        .or_else(|_| GeneralPurpose::new(&URL_SAFE, config).decode(encoded))
        .ok()
}

/// The keys one JWKS member yields: its `kid`, one key per algorithm it is
/// bound to, and why each other candidate algorithm refused it.
type JwksKeys = (Option<String>, Vec<VerifyingKey>, Vec<String>);

fn jwks_entry(allowed: &[Algorithm], jwk: &Value) -> Result<JwksKeys, String> {
    let Value::Object(members) = jwk else {
        return Err("not a JSON object".into());
    };
    let kid = match members.get("kid") {
        None => None,
        Some(Value::String(kid)) => Some(kid.clone()),
        Some(_) => return Err("its \"kid\" is not a string".into()),
    };
    let kty = members
        .get("kty")
        .and_then(Value::as_str)
        .ok_or("it has no string \"kty\"")?;
    let crv = members.get("crv").and_then(Value::as_str);
    let algorithms: Vec<Algorithm> = match jwk_alg(members)? {
        JwkAlg::Known(alg) if allowed.contains(&alg) => vec![alg],
        JwkAlg::Known(alg) => {
            return Err(format!("its alg {} is not in `algorithms`", alg.name()));
        }
        JwkAlg::Other(name) => {
            return Err(format!("its alg {name:?} is not a JWS signature algorithm"));
        }
        JwkAlg::Absent => allowed
            .iter()
            .copied()
            .filter(|&alg| fits(alg, kty, crv))
            .collect(),
    };
    if algorithms.is_empty() {
        return Err(format!(
            "no allowed algorithm takes a kty {kty:?}{} key",
            crv.map(|crv| format!(" {crv:?}")).unwrap_or_default()
        ));
    }
    let text = jwk.to_string();
    let mut keys = Vec::new();
    let mut refused = Vec::new();
    for alg in algorithms {
        match VerifyingKey::from_jwk(alg, &text) {
            Ok(key) => keys.push(key),
            Err(e) => refused.push(format!("not usable for {}: {e}", alg.name())),
        }
    }
    Ok((kid, keys, refused))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SECRET_A: &str = "-ebuDNsVZ2iJtoZ-akfXTSCt4UO2cruLCsbWlBinggE";
    const SECRET_B: &str = "-xbuDNsVZ2iJtoZ-akfXTSCt4UO2cruLCsbWlBinggE";

    fn oct(kid: &str, k: &str) -> Value {
        json!({"kty": "oct", "kid": kid, "k": k})
    }

    fn build(allowed: &[Algorithm], jwks: Value) -> Result<KeyStore, String> {
        KeyStore::build(allowed, &[], Some(&jwks.to_string()))
    }

    #[test]
    fn a_jwk_without_alg_serves_every_allowed_alg_its_type_fits() {
        let store = build(
            &[Algorithm::Hs256, Algorithm::Hs384, Algorithm::Es256],
            json!({"keys": [json!({"kty": "oct", "kid": "a", "k": crate::token::encode(&[7; 48])})]}),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        // HS256 and HS384; ES256 does not take an oct key.
        assert_eq!(store.len(), 2);
        assert!(store.candidates(Algorithm::Hs384, Some("a")).is_ok());
        assert_eq!(
            store.candidates(Algorithm::Es256, Some("a")).err(),
            Some(Reason::UnknownKey)
        );
    }

    #[test]
    fn kid_lookup_is_exact_and_duplicates_are_ambiguous() {
        let store = build(
            &[Algorithm::Hs256],
            json!({"keys": [oct("a", SECRET_A), oct("a", SECRET_B), oct("b", SECRET_B)]}),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            store.candidates(Algorithm::Hs256, Some("a")).err(),
            Some(Reason::AmbiguousKey)
        );
        assert_eq!(
            store
                .candidates(Algorithm::Hs256, Some("b"))
                .map(|k| k.len()),
            Ok(1)
        );
        for kid in ["A", "b ", "../b", ""] {
            assert_eq!(
                store.candidates(Algorithm::Hs256, Some(kid)).err(),
                Some(Reason::UnknownKey),
                "{kid:?}"
            );
        }
        assert_eq!(
            store.candidates(Algorithm::Hs256, None).map(|k| k.len()),
            Ok(3)
        );
    }

    #[test]
    fn a_duplicate_kid_is_ambiguous_even_when_one_copy_is_unusable() {
        let store = build(
            &[Algorithm::Hs256],
            json!({"keys": [oct("a", SECRET_A), oct("a", "AAAA"), oct("b", SECRET_B)]}),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(store.len(), 2);
        assert_eq!(
            store.candidates(Algorithm::Hs256, Some("a")).err(),
            Some(Reason::AmbiguousKey)
        );
        assert!(store.candidates(Algorithm::Hs256, Some("b")).is_ok());
    }

    #[test]
    fn attempts_without_kid_are_capped() {
        let keys: Vec<Value> = (0..12u8)
            .map(|i| json!({"kty": "oct", "k": crate::token::encode(&[i; 32])}))
            .collect();
        let store =
            build(&[Algorithm::Hs256], json!({ "keys": keys })).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(store.len(), 12);
        assert_eq!(
            store.candidates(Algorithm::Hs256, None).map(|k| k.len()),
            Ok(MAX_ATTEMPTS)
        );
        // Unnamed keys also serve a token whose kid names no key.
        assert_eq!(
            store
                .candidates(Algorithm::Hs256, Some("x"))
                .map(|k| k.len()),
            Ok(MAX_ATTEMPTS)
        );
    }

    #[test]
    fn jwks_members_are_checked_and_skipped_or_refused() {
        let allowed = [Algorithm::Hs256];
        assert!(build(&allowed, json!({"keys": []})).is_err());
        assert!(build(&allowed, json!([oct("a", SECRET_A)])).is_err());
        assert!(KeyStore::build(&allowed, &[], Some("{")).is_err());
        // One unusable member is skipped; all unusable is an error.
        let short = oct("short", "AAAA");
        assert!(
            build(
                &allowed,
                json!({"keys": [short.clone(), oct("a", SECRET_A)]})
            )
            .is_ok()
        );
        let error = build(&allowed, json!({"keys": [short]}))
            .err()
            .unwrap_or_default();
        assert!(error.contains("none of the 1 keys"), "{error}");
        // A JWK bound to an algorithm that is not allowed is skipped.
        let hs384 = json!({"kty": "oct", "alg": "HS384", "k": SECRET_A});
        assert!(build(&allowed, json!({"keys": [hs384]})).is_err());
        // An alg that is not a JWS algorithm at all: skipped, not guessed at.
        let aes = json!({"kty": "oct", "alg": "A256GCM", "k": SECRET_A});
        assert!(build(&allowed, json!({"keys": [aes]})).is_err());
    }

    #[test]
    fn secrets_and_public_keys_never_share_a_set_or_a_kid() {
        let ec = json!({"kty": "EC", "crv": "P-256", "kid": "a",
            "x": "04N0xi21hshyvBp7I167sbE_bXqyqkAPfefdklMO7wY",
            "y": "UI8exy-C06a7DUnjIdENkxeFtHM4-l_41LqEw9nVgmw"});
        let allowed = [Algorithm::Hs256, Algorithm::Es256];
        let error = build(&allowed, json!({"keys": [oct("h", SECRET_A), ec.clone()]}))
            .err()
            .unwrap_or_default();
        assert!(error.contains("mixes shared secrets"), "{error}");

        // Across `keys` and `jwks` the same kid on both kinds loads, and is
        // refused per token.
        let keys = [KeyConfig {
            kid: Some("a".into()),
            alg: "HS256".into(),
            jwk: None,
            pem: None,
            secret: None,
            secret_base64: Some(SECRET_A.into()),
        }];
        let store = KeyStore::build(&allowed, &keys, Some(&json!({"keys": [ec]}).to_string()))
            .unwrap_or_else(|e| panic!("{e}"));
        for alg in allowed {
            assert_eq!(
                store.candidates(alg, Some("a")).err(),
                Some(Reason::AmbiguousKey)
            );
        }
    }

    #[test]
    fn secret_base64_takes_either_alphabet() {
        assert_eq!(decode_secret("-_8"), Some(vec![0xfb, 0xff]));
        assert_eq!(decode_secret("+/8="), Some(vec![0xfb, 0xff]));
        assert_eq!(decode_secret("+/8"), Some(vec![0xfb, 0xff]));
        assert_eq!(decode_secret("not base64!"), None);
    }
}
