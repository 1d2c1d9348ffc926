//! Wycheproof's JOSE vectors through the whole plugin: each group's key (or
//! key set) becomes the plugin's config, and each token goes through the JWS
//! layer (`Validator::verify_jws`; the vectors' payloads are not JWT claim
//! sets). The SDK's own test (`plugin-sdk/tests/crypto.rs`) defers the cases
//! that only the JWS and key-set layer can refuse to this test.

mod common;

use plugin_jwt::{Jwt, token};
use plugin_sdk::crypto::Algorithm;
use plugin_sdk::{Config, Plugin};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

fn vectors(name: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../plugin-sdk/tests/fixtures/wycheproof")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).expect("vectors are JSON")
}

// Valid cases the plugin refuses on purpose (the same list as the SDK's).
const JWK_ALG_DIFFERS: &str = "the key's JWK says PS256 and the token PS384: one algorithm \
     per key (RFC 8725 3.1); Wycheproof's own notes call the opposite WrongPrimitive";
const STRAY_CHARACTER: &str = "a '?' inside a segment: strict base64url refuses it, and the \
     MAC does not cover the bytes as they would be decoded";

const VALID_REFUSED: &[(u64, &str)] = &[
    (346, JWK_ALG_DIFFERS),
    (350, JWK_ALG_DIFFERS),
    (372, STRAY_CHARACTER),
    (373, STRAY_CHARACTER),
];

// Invalid cases no verifier can refuse.
const SAME_AS_VALID: &str = "the token is byte-identical to valid tcId 357 (the padding it \
     claims to lack or carry is not there)";

const INVALID_ACCEPTED: &[(u64, &str)] = &[(367, SAME_AS_VALID), (370, SAME_AS_VALID)];

/// The refusal expected for notable invalid cases, with the group's keys
/// given as `jwks`. `config:` means the config itself is refused.
const JWS_REASONS: &[(u64, &str)] = &[
    (4, "malformed token"),
    (9, "malformed token"),
    (13, "malformed token"),
    (14, "malformed token"),
    (15, "malformed token"),
    (16, "algorithm not allowed"),
    (17, "malformed token"),
    (31, "unknown key"),
    (32, "invalid signature"),
    (331, "invalid signature"),
    (332, "unknown key"),
    (341, "algorithm not allowed"),
    (342, "algorithm not allowed"),
    (343, "algorithm not allowed"),
    (344, "algorithm not allowed"),
    (353, "config:"),
    (355, "config:"),
    (360, "malformed token"),
    (365, "malformed token"),
    (368, "malformed token"),
    (374, "malformed token"),
    (375, "malformed token"),
    (379, "invalid signature"),
];

const JWK_REASONS: &[(u64, &str)] = &[
    (1, "config: jwt: jwks mixes shared secrets"),
    (3, "invalid signature"),
    (4, "ambiguous key"),
    (6, "config:"),
    (7, "config:"),
    (8, "config:"),
    (9, "config:"),
    (10, "config:"),
    (16, "config:"),
    (19, "config:"),
    (20, "config:"),
    (25, "config:"),
    (26, "config:"),
];

/// The JWK's `alg` as an algorithm (RFC 7520's "ES521" spelling included).
fn jwk_alg(jwk: &Value) -> Option<Algorithm> {
    match jwk["alg"].as_str()? {
        "ES521" => Some(Algorithm::Es512),
        name => Algorithm::from_name(name),
    }
}

/// The `alg` a token's header names, if it can be read at all.
fn token_alg(jws: &str) -> Option<Algorithm> {
    let header = token::decode(jws.split('.').next()?).ok()?;
    let header: Value = serde_json::from_slice(&header).ok()?;
    Algorithm::from_name(header["alg"].as_str()?)
}

/// What the plugin makes of `jws` under `config`: "verified", the refusal
/// reason, or "config: <error>".
fn outcome(config: Value, jws: &str) -> String {
    match Jwt::init(Config::from_value(config)) {
        Err(e) => format!("config: {e}"),
        Ok(plugin) => match plugin.validator().verify_jws(jws) {
            Ok(_) => "verified".into(),
            Err(reason) => reason.to_string(),
        },
    }
}

/// The plugin configs a group's keys make for one token: always the keys as
/// a `jwks` document; for a single JWK also a `keys` entry.
fn configs(group: &Value, jws: &str) -> Vec<(&'static str, Value)> {
    let set = group
        .get("public")
        .or_else(|| group.get("private"))
        .expect("a group has keys");
    let jwks: Vec<Value> = match set.get("keys") {
        Some(Value::Array(keys)) => keys.clone(),
        _ => vec![set.clone()],
    };
    // Allow the token's algorithm and the ones the keys are made for: the
    // operator's real config, and the one in which key confusion would bite.
    let mut algorithms: BTreeSet<&str> = jwks
        .iter()
        .filter_map(jwk_alg)
        .map(Algorithm::name)
        .collect();
    algorithms.extend(token_alg(jws).map(Algorithm::name));
    if algorithms.is_empty() {
        algorithms.insert("HS256");
    }
    let base = json!({"algorithms": algorithms, "required_claims": []});

    let mut configs = Vec::new();
    let mut with_jwks = base.clone();
    with_jwks["jwks"] = json!({ "keys": jwks }).to_string().into();
    configs.push(("jwks", with_jwks));
    if set.get("keys").is_none()
        && let Some(alg) = token_alg(jws).or_else(|| jwk_alg(set))
    {
        let mut with_keys = base;
        with_keys["keys"] = json!([{"alg": alg.name(), "jwk": set}]);
        configs.push(("keys", with_keys));
    }
    configs
}

fn ids(list: &[(u64, &str)]) -> BTreeSet<u64> {
    list.iter().map(|&(id, _)| id).collect()
}

struct Tally {
    valid: usize,
    invalid: usize,
    acceptable: usize,
    valid_refused: BTreeSet<u64>,
    invalid_accepted: BTreeSet<u64>,
    reasons: BTreeMap<u64, String>,
    by_reason: BTreeMap<String, usize>,
}

fn run(
    name: &str,
    valid_refused: &[(u64, &str)],
    invalid_accepted: &[(u64, &str)],
    reasons: &[(u64, &str)],
) -> Tally {
    let vectors = vectors(name);
    let mut tally = Tally {
        valid: 0,
        invalid: 0,
        acceptable: 0,
        valid_refused: BTreeSet::new(),
        invalid_accepted: BTreeSet::new(),
        reasons: BTreeMap::new(),
        by_reason: BTreeMap::new(),
    };
    let mut seen = 0;
    for group in vectors["testGroups"].as_array().expect("testGroups") {
        for test in group["tests"].as_array().expect("tests") {
            seen += 1;
            let id = test["tcId"].as_u64().expect("tcId");
            let jws = test["jws"].as_str().expect("jws");
            let result = test["result"].as_str().expect("result");
            for (variant, config) in configs(group, jws) {
                let outcome = outcome(config, jws);
                let verified = outcome == "verified";
                match result {
                    "valid" if !verified => {
                        tally.valid_refused.insert(id);
                    }
                    "invalid" if verified => {
                        tally.invalid_accepted.insert(id);
                    }
                    "valid" | "invalid" | "acceptable" => {}
                    other => panic!("tcId {id}: unknown result {other:?}"),
                }
                if variant == "jwks" {
                    let kind = if outcome.starts_with("config:") {
                        "config error"
                    } else {
                        &outcome
                    };
                    *tally
                        .by_reason
                        .entry(format!("{result}: {kind}"))
                        .or_default() += 1;
                    tally.reasons.insert(id, outcome);
                }
            }
            match result {
                "valid" => tally.valid += 1,
                "invalid" => tally.invalid += 1,
                _ => tally.acceptable += 1,
            }
        }
    }
    assert_eq!(
        seen,
        vectors["numberOfTests"].as_u64().expect("numberOfTests"),
        "{name}: every test ran"
    );
    println!(
        "{name}: {} valid ({} refused by design), {} invalid ({} unrefusable), {} acceptable",
        tally.valid,
        tally.valid_refused.len(),
        tally.invalid,
        tally.invalid_accepted.len(),
        tally.acceptable
    );
    for (outcome, count) in &tally.by_reason {
        println!("  {outcome}: {count}");
    }
    assert_eq!(
        tally.valid_refused,
        ids(valid_refused),
        "{name}: valid cases refused are exactly the by-design list"
    );
    assert_eq!(
        tally.invalid_accepted,
        ids(invalid_accepted),
        "{name}: invalid cases accepted are exactly the unrefusable list"
    );
    for &(id, expected) in reasons {
        let actual = &tally.reasons[&id];
        assert!(
            actual.starts_with(expected),
            "{name} tcId {id}: expected {expected:?}, got {actual:?}"
        );
    }
    tally
}

#[test]
fn wycheproof_json_web_signature() {
    run(
        "json_web_signature_test.json",
        VALID_REFUSED,
        INVALID_ACCEPTED,
        JWS_REASONS,
    );
}

#[test]
fn wycheproof_json_web_key() {
    run("json_web_key_test.json", &[], &[], JWK_REASONS);
}

#[test]
fn the_unrefusable_cases_really_are_the_valid_token() {
    let vectors = vectors("json_web_signature_test.json");
    let jws = |id: u64| {
        vectors["testGroups"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|group| group["tests"].as_array().into_iter().flatten())
            .find(|test| test["tcId"] == id)
            .and_then(|test| test["jws"].as_str())
            .unwrap_or_else(|| panic!("tcId {id}"))
            .to_string()
    };
    for (id, _) in INVALID_ACCEPTED {
        assert_eq!(jws(*id), jws(357), "tcId {id}");
    }
}
