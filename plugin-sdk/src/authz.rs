//! Authorization rules on a verified identity's claims (a JWT's payload, an
//! introspection answer): the scopes a route requires (any of, all of), as
//! Amazon API Gateway's JWT authorizer `authorizationScopes` does, and
//! conditions on claim values (equals, one of, contains, pattern).
//!
//! Enabled by the SDK's `authz` feature. A plugin reads a [`RulesConfig`]
//! from its config (it deserializes the `scopes` and `claim_rules` keys),
//! builds [`Rules`] once at `init` (patterns compiled then, with their size
//! capped), and calls [`Rules::check`] on each request's claims. An unmet
//! rule is answered `403` with an RFC 6750 `insufficient_scope` challenge
//! ([`Unmet::response`]).
//!
//! Scopes are read from `scope` (space-separated, RFC 8693 and RFC 7662) or
//! `scp` (a list or a space-separated string, as Okta and Azure AD write
//! them). A claim is named by its member (`tenant`, or a namespaced
//! `https://example.com/roles`) or, when no member has that name, by a
//! dotted path into nested objects (`realm_access.roles`).

use crate::{Request, Response};
use serde::Deserialize;
use serde_json::{Map, Value};

/// The longest `pattern` accepted, in bytes.
pub const MAX_PATTERN: usize = 1024;
/// The most memory a compiled `pattern` may take.
const MAX_COMPILED: usize = 1 << 20;

/// The `scopes` and `claim_rules` keys of a plugin's config.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RulesConfig {
    /// Scopes the identity must hold.
    #[serde(default)]
    pub scopes: Option<ScopesConfig>,
    /// Conditions on claims, all to hold.
    #[serde(default)]
    pub claim_rules: Vec<ClaimRuleConfig>,
}

/// `scopes`: `any_of`, `all_of`, or both (both must then hold).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScopesConfig {
    /// At least one of these.
    #[serde(default)]
    pub any_of: Vec<String>,
    /// Every one of these.
    #[serde(default)]
    pub all_of: Vec<String>,
}

/// One `claim_rules` entry: a claim and exactly one test.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClaimRuleConfig {
    /// The claim's name, or a dotted path into nested objects.
    pub claim: String,
    /// The claim equals this value (any JSON).
    #[serde(default)]
    pub equals: Option<Value>,
    /// The claim equals one of these values.
    #[serde(default)]
    pub one_of: Option<Vec<Value>>,
    /// The claim, a list, holds this value; or, a string, has it as one of
    /// its space-separated words.
    #[serde(default)]
    pub contains: Option<Value>,
    /// The claim, a string, matches this regular expression (anywhere
    /// unless anchored).
    #[serde(default)]
    pub pattern: Option<String>,
}

/// Checked rules, ready for every request.
#[derive(Debug, Default)]
pub struct Rules {
    any_of: Vec<String>,
    all_of: Vec<String>,
    claims: Vec<ClaimRule>,
}

#[derive(Debug)]
struct ClaimRule {
    claim: String,
    test: Test,
}

#[derive(Debug)]
enum Test {
    Equals(Value),
    OneOf(Vec<Value>),
    Contains(Value),
    Pattern(regex::Regex),
}

/// Why an identity does not pass: what the client is told (never a claim's
/// value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unmet {
    /// The scopes it lacks, as the challenge's `scope` lists them: the
    /// `all_of` ones missing, then the `any_of` ones when none is held.
    Scopes(Vec<String>),
    /// The claim rule on this claim does not hold.
    Claim(String),
}

impl std::fmt::Display for Unmet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unmet::Scopes(_) => f.write_str("insufficient scope"),
            Unmet::Claim(claim) => write!(f, "claim {claim} does not satisfy this route's rules"),
        }
    }
}

impl Unmet {
    /// The `403` for it: a JSON body, and an RFC 6750 (section 3.1)
    /// `insufficient_scope` challenge naming the scopes needed.
    pub fn response(&self, realm: &str, req: &Request) -> Response {
        let mut challenge = format!(
            "Bearer realm=\"{}\", error=\"insufficient_scope\", error_description=\"{self}\"",
            quoted(realm)
        );
        if let Unmet::Scopes(scopes) = self {
            challenge.push_str(&format!(", scope=\"{}\"", quoted(&scopes.join(" "))));
        }
        Response::denied(403, &self.to_string(), req).with_header("www-authenticate", challenge)
    }
}

/// `text` fit for a quoted-string: quotes and backslashes dropped.
fn quoted(text: &str) -> String {
    text.chars().filter(|c| *c != '"' && *c != '\\').collect()
}

impl Rules {
    /// Checks `config`: scope names are RFC 6749 scope tokens, each claim
    /// rule has a name and exactly one test, patterns compile within their
    /// caps.
    pub fn new(config: RulesConfig) -> Result<Rules, String> {
        let scopes = config.scopes.unwrap_or_default();
        for scope in scopes.any_of.iter().chain(&scopes.all_of) {
            if !is_scope_token(scope) {
                return Err(format!(
                    "scope `{scope}` is not a scope name (printable ASCII, no space, quote or backslash)"
                ));
            }
        }
        let claims = config
            .claim_rules
            .into_iter()
            .map(claim_rule)
            .collect::<Result<_, _>>()?;
        Ok(Rules {
            any_of: scopes.any_of,
            all_of: scopes.all_of,
            claims,
        })
    }

    /// Whether there is nothing to check.
    pub fn is_empty(&self) -> bool {
        self.any_of.is_empty() && self.all_of.is_empty() && self.claims.is_empty()
    }

    /// Whether `claims` pass every rule.
    pub fn check(&self, claims: &Map<String, Value>) -> Result<(), Unmet> {
        self.check_scopes(claims)?;
        for rule in &self.claims {
            let value = claim(claims, &rule.claim);
            if !value.is_some_and(|value| rule.test.holds(value)) {
                return Err(Unmet::Claim(rule.claim.clone()));
            }
        }
        Ok(())
    }

    fn check_scopes(&self, claims: &Map<String, Value>) -> Result<(), Unmet> {
        if self.any_of.is_empty() && self.all_of.is_empty() {
            return Ok(());
        }
        let held = scopes(claims);
        let mut missing: Vec<String> = self
            .all_of
            .iter()
            .filter(|s| !held.contains(&s.as_str()))
            .cloned()
            .collect();
        let any = self.any_of.is_empty() || self.any_of.iter().any(|s| held.contains(&s.as_str()));
        if !any {
            missing.extend(self.any_of.iter().cloned());
        }
        match missing.is_empty() {
            true => Ok(()),
            false => Err(Unmet::Scopes(missing)),
        }
    }
}

/// One `claim_rules` entry, checked.
fn claim_rule(config: ClaimRuleConfig) -> Result<ClaimRule, String> {
    let claim = config.claim;
    if claim.is_empty() {
        return Err("a claim rule needs `claim`, the claim's name".to_string());
    }
    let tests = [
        config.equals.map(Test::Equals),
        config.one_of.map(Test::OneOf),
        config.contains.map(Test::Contains),
        config.pattern.map(|p| pattern(&claim, &p)).transpose()?,
    ];
    let mut given = tests.into_iter().flatten();
    match (given.next(), given.next()) {
        (Some(test), None) => Ok(ClaimRule { claim, test }),
        _ => Err(format!(
            "claim rule on `{claim}`: give exactly one of `equals`, `one_of`, `contains`, `pattern`"
        )),
    }
}

/// A claim rule's `pattern`, compiled within its caps.
fn pattern(claim: &str, pattern: &str) -> Result<Test, String> {
    if pattern.len() > MAX_PATTERN {
        return Err(format!(
            "claim rule on `{claim}`: pattern is over {MAX_PATTERN} bytes"
        ));
    }
    regex::RegexBuilder::new(pattern)
        .size_limit(MAX_COMPILED)
        .build()
        .map(Test::Pattern)
        .map_err(|err| format!("claim rule on `{claim}`: pattern does not compile: {err}"))
}

impl Test {
    fn holds(&self, value: &Value) -> bool {
        match self {
            Test::Equals(wanted) => value == wanted,
            Test::OneOf(wanted) => wanted.contains(value),
            Test::Contains(wanted) => match (value, wanted) {
                (Value::Array(items), wanted) => items.contains(wanted),
                (Value::String(words), Value::String(word)) => words.split(' ').any(|w| w == word),
                _ => false,
            },
            Test::Pattern(regex) => value.as_str().is_some_and(|text| regex.is_match(text)),
        }
    }
}

/// The claim `name`: the member of that name, else the dotted path.
fn claim<'c>(claims: &'c Map<String, Value>, name: &str) -> Option<&'c Value> {
    if let Some(value) = claims.get(name) {
        return Some(value);
    }
    let mut parts = name.split('.');
    let first = claims.get(parts.next()?)?;
    parts.try_fold(first, |value, part| value.as_object()?.get(part))
}

/// The scopes `claims` hold: `scope` (space-separated) and `scp` (a list or
/// a space-separated string).
fn scopes(claims: &Map<String, Value>) -> Vec<&str> {
    let mut held = Vec::new();
    for name in ["scope", "scp"] {
        match claims.get(name) {
            Some(Value::String(text)) => held.extend(text.split(' ').filter(|s| !s.is_empty())),
            Some(Value::Array(items)) => held.extend(items.iter().filter_map(Value::as_str)),
            _ => {}
        }
    }
    held
}

/// An RFC 6749 (section 3.3) scope token: `%x21 / %x23-5B / %x5D-7E`.
fn is_scope_token(scope: &str) -> bool {
    !scope.is_empty()
        && scope
            .bytes()
            .all(|b| b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rules(config: Value) -> Result<Rules, String> {
        let config: RulesConfig = serde_json::from_value(config).map_err(|e| e.to_string())?;
        Rules::new(config)
    }

    fn claims(value: Value) -> Map<String, Value> {
        value.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn scopes_any_of_and_all_of_from_scope_or_scp() {
        let r =
            rules(json!({ "scopes": { "all_of": ["orders:read"], "any_of": ["admin", "staff"] } }))
                .expect("valid");
        let ok = claims(json!({ "scope": "orders:read staff" }));
        assert_eq!(r.check(&ok), Ok(()));
        let scp = claims(json!({ "scp": ["admin", "orders:read"] }));
        assert_eq!(r.check(&scp), Ok(()));
        let no_any = claims(json!({ "scope": "orders:read" }));
        assert_eq!(
            r.check(&no_any),
            Err(Unmet::Scopes(vec!["admin".into(), "staff".into()]))
        );
        let no_all = claims(json!({ "scope": "staff orders:write" }));
        assert_eq!(
            r.check(&no_all),
            Err(Unmet::Scopes(vec!["orders:read".into()]))
        );
        // A scope is a whole word, never a prefix.
        let prefix = claims(json!({ "scope": "orders:reader staff" }));
        assert!(r.check(&prefix).is_err());
        assert!(r.check(&claims(json!({}))).is_err());
    }

    #[test]
    fn claim_tests_equals_one_of_contains_pattern() {
        let r = rules(json!({ "claim_rules": [
            { "claim": "tenant", "equals": "acme" },
            { "claim": "tier", "one_of": ["gold", "silver"] },
            { "claim": "realm_access.roles", "contains": "editor" },
            { "claim": "email", "pattern": "@example\\.com$" },
        ] }))
        .expect("valid");
        let good = json!({
            "tenant": "acme", "tier": "gold", "email": "ann@example.com",
            "realm_access": { "roles": ["viewer", "editor"] },
        });
        assert_eq!(r.check(&claims(good.clone())), Ok(()));
        let with = |key: &str, value: Value| {
            let mut bad = good.clone();
            bad[key] = value;
            r.check(&claims(bad))
        };
        assert_eq!(
            with("tenant", json!("acme2")),
            Err(Unmet::Claim("tenant".into()))
        );
        assert_eq!(
            with("tier", json!("bronze")),
            Err(Unmet::Claim("tier".into()))
        );
        let roles = json!({ "roles": ["viewer"] });
        assert_eq!(
            with("realm_access", roles),
            Err(Unmet::Claim("realm_access.roles".into()))
        );
        assert_eq!(
            with("email", json!("ann@example.org")),
            Err(Unmet::Claim("email".into()))
        );
        assert_eq!(with("email", json!(7)), Err(Unmet::Claim("email".into())));
        // A missing claim never passes.
        let mut missing = good.clone();
        missing.as_object_mut().map(|o| o.remove("tenant"));
        assert_eq!(
            r.check(&claims(missing)),
            Err(Unmet::Claim("tenant".into()))
        );
    }

    #[test]
    fn contains_reads_lists_and_space_separated_words() {
        let r = rules(json!({ "claim_rules": [{ "claim": "groups", "contains": "ops" }] }))
            .expect("valid");
        assert!(
            r.check(&claims(json!({ "groups": ["dev", "ops"] })))
                .is_ok()
        );
        assert!(r.check(&claims(json!({ "groups": "dev ops" }))).is_ok());
        assert!(r.check(&claims(json!({ "groups": "devops" }))).is_err());
        // A member named with a dot wins over the dotted path.
        let r =
            rules(json!({ "claim_rules": [{ "claim": "https://x.example/role", "equals": "a" }] }))
                .expect("valid");
        assert!(
            r.check(&claims(json!({ "https://x.example/role": "a" })))
                .is_ok()
        );
    }

    #[test]
    fn bad_rules_are_refused() {
        let error = |config: Value| rules(config).err().unwrap_or_default();
        assert!(error(json!({ "scopes": { "any_of": ["a b"] } })).contains("not a scope name"));
        assert!(error(json!({ "claim_rules": [{ "claim": "x" }] })).contains("exactly one"));
        let two = json!({ "claim_rules": [{ "claim": "x", "equals": 1, "pattern": "a" }] });
        assert!(error(two).contains("exactly one"));
        let bad = json!({ "claim_rules": [{ "claim": "x", "pattern": "(" }] });
        assert!(error(bad).contains("does not compile"));
        let long = json!({ "claim_rules": [{ "claim": "x", "pattern": "a".repeat(2000) }] });
        assert!(error(long).contains("over 1024 bytes"));
        assert!(error(json!({ "scope": {} })).contains("unknown field"));
    }

    #[test]
    fn the_answer_is_403_with_an_insufficient_scope_challenge() {
        let req = Request::new("GET", "/orders").with_header("x-request-id", "r-1");
        let unmet = Unmet::Scopes(vec!["orders:read".into(), "admin".into()]);
        let response = unmet.response("api", &req);
        assert_eq!(response.status(), 403);
        assert_eq!(
            response.headers().get("www-authenticate"),
            Some(
                "Bearer realm=\"api\", error=\"insufficient_scope\", error_description=\"insufficient scope\", scope=\"orders:read admin\""
            )
        );
    }
}
