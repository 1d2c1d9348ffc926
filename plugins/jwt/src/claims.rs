//! The checks on a verified payload (RFC 7519 section 4.1): registered claim
//! types, required claims, the validity window, issuer and audience.

use crate::Reason;
use serde_json::{Map, Value};

/// The claim rules from the configuration.
#[derive(Debug, Clone, Default)]
pub struct ClaimRules {
    /// Seconds of clock skew tolerated on `exp` and `nbf`.
    pub leeway: i64,
    /// Accepted `iss` values; empty means `iss` is not checked.
    pub issuers: Vec<String>,
    /// Accepted `aud` values; empty means `aud` is not checked.
    pub audiences: Vec<String>,
    /// Claims that must be present (and not `null`).
    pub required: Vec<String>,
}

/// The time bounds of a token, kept with a cached token so a cache hit can be
/// re-checked against the clock without parsing anything.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Window {
    /// `exp`, seconds since the epoch.
    pub exp: Option<f64>,
    /// `nbf`, seconds since the epoch.
    pub nbf: Option<f64>,
}

impl Window {
    /// Reads `exp` and `nbf`, and checks that `exp`, `nbf` and `iat` are
    /// numbers when present (NumericDate may be fractional).
    pub fn of(claims: &Map<String, Value>) -> Result<Window, Reason> {
        let number = |name: &str| match claims.get(name) {
            None => Ok(None),
            Some(Value::Number(n)) => n.as_f64().map(Some).ok_or(Reason::Malformed),
            Some(_) => Err(Reason::Malformed),
        };
        number("iat")?;
        Ok(Window {
            exp: number("exp")?,
            nbf: number("nbf")?,
        })
    }

    /// Expired iff `now >= exp + leeway`; not yet valid iff `now < nbf - leeway`.
    pub fn check(&self, now: i64, leeway: i64) -> Result<(), Reason> {
        let (now, leeway) = (now as f64, leeway as f64);
        if self.exp.is_some_and(|exp| now >= exp + leeway) {
            return Err(Reason::Expired);
        }
        if self.nbf.is_some_and(|nbf| now < nbf - leeway) {
            return Err(Reason::NotYetValid);
        }
        Ok(())
    }
}

impl ClaimRules {
    /// Checks `claims` at time `now`; returns the window for the cache.
    pub fn check(&self, claims: &Map<String, Value>, now: i64) -> Result<Window, Reason> {
        let window = Window::of(claims)?;
        if let Some(missing) = self
            .required
            .iter()
            .find(|name| claims.get(name.as_str()).is_none_or(Value::is_null))
        {
            return Err(Reason::MissingClaim(missing.clone()));
        }
        window.check(now, self.leeway)?;
        if !self.issuers.is_empty() {
            match claims.get("iss") {
                Some(Value::String(iss)) if self.issuers.contains(iss) => {}
                _ => return Err(Reason::InvalidIssuer),
            }
        }
        if !self.audiences.is_empty() {
            let accepted = |aud: &Value| {
                aud.as_str()
                    .is_some_and(|aud| self.audiences.iter().any(|a| a == aud))
            };
            let ok = match claims.get("aud") {
                Some(Value::Array(auds)) => auds.iter().any(accepted),
                Some(aud) => accepted(aud),
                None => false,
            };
            if !ok {
                return Err(Reason::InvalidAudience);
            }
        }
        Ok(window)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => Map::new(),
        }
    }

    fn rules() -> ClaimRules {
        ClaimRules {
            leeway: 60,
            issuers: vec!["https://idp".into(), "other".into()],
            audiences: vec!["api".into()],
            required: vec!["exp".into(), "sub".into()],
        }
    }

    #[test]
    fn exp_boundary_is_exp_plus_leeway() {
        let c = claims(json!({"exp": 1000, "sub": "a", "iss": "other", "aud": "api"}));
        assert!(rules().check(&c, 1059).is_ok());
        assert_eq!(rules().check(&c, 1060), Err(Reason::Expired));
        assert_eq!(rules().check(&c, 1061), Err(Reason::Expired));
    }

    #[test]
    fn nbf_boundary_is_nbf_minus_leeway() {
        let c = claims(json!({"exp": 5000, "nbf": 1000, "sub": "a", "iss": "other", "aud": "api"}));
        assert_eq!(rules().check(&c, 939), Err(Reason::NotYetValid));
        assert!(rules().check(&c, 940).is_ok());
        assert!(rules().check(&c, 941).is_ok());
    }

    #[test]
    fn fractional_dates_count() {
        let window = Window::of(&claims(json!({"exp": 1000.5}))).unwrap_or_default();
        assert!(window.check(1000, 0).is_ok());
        assert_eq!(window.check(1001, 0), Err(Reason::Expired));
    }

    #[test]
    fn registered_dates_must_be_numbers() {
        for bad in [
            json!({"exp": "1000"}),
            json!({"nbf": null}),
            json!({"iat": [1]}),
            json!({"exp": true}),
        ] {
            assert_eq!(
                Window::of(&claims(bad.clone())),
                Err(Reason::Malformed),
                "{bad}"
            );
        }
    }

    #[test]
    fn required_claims_in_order_and_null_is_missing() {
        let c = claims(json!({"exp": 5000, "sub": null}));
        assert_eq!(
            rules().check(&c, 0),
            Err(Reason::MissingClaim("sub".into()))
        );
        let c = claims(json!({"sub": "a"}));
        assert_eq!(
            rules().check(&c, 0),
            Err(Reason::MissingClaim("exp".into()))
        );
    }

    #[test]
    fn issuer_is_an_exact_match() {
        for iss in [
            json!("https://idp/"),
            json!("HTTPS://IDP"),
            json!(["other"]),
            json!(null),
        ] {
            let c = claims(json!({"exp": 5000, "sub": "a", "aud": "api", "iss": iss}));
            assert_eq!(rules().check(&c, 0), Err(Reason::InvalidIssuer), "{iss}");
        }
        let c = claims(json!({"exp": 5000, "sub": "a", "aud": "api"}));
        assert_eq!(rules().check(&c, 0), Err(Reason::InvalidIssuer));
    }

    #[test]
    fn audience_may_be_a_string_or_an_array() {
        for (aud, ok) in [
            (json!("api"), true),
            (json!(["x", "api"]), true),
            (json!(["x", 1, "api"]), true),
            (json!([]), false),
            (json!("API"), false),
            (json!(["x"]), false),
            (json!({"api": true}), false),
        ] {
            let c = claims(json!({"exp": 5000, "sub": "a", "iss": "other", "aud": aud}));
            let expected = if ok {
                Ok(())
            } else {
                Err(Reason::InvalidAudience)
            };
            assert_eq!(rules().check(&c, 0).map(|_| ()), expected, "{aud}");
        }
    }

    #[test]
    fn nothing_configured_checks_nothing_but_types() {
        let open = ClaimRules::default();
        assert!(open.check(&claims(json!({})), 0).is_ok());
        assert!(open.check(&claims(json!({"iss": 1, "aud": 2})), 0).is_ok());
    }
}
