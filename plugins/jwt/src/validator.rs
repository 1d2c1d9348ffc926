//! A token in, verified claims or a [`Reason`] out: the plugin's logic with no
//! request and no clock, so tests drive it with any token at any time.

use crate::cache::TokenCache;
use crate::claims::{ClaimRules, Window};
use crate::keys::KeyStore;
use crate::{Reason, token};
use plugin_sdk::crypto::Algorithm;
use serde_json::{Map, Value};
use std::cell::{Cell, RefCell};
use std::sync::Arc;

/// A JWS whose signature checked out; the payload is not interpreted yet.
#[derive(Debug, Clone)]
pub struct Jws {
    /// The algorithm that verified it.
    pub alg: Algorithm,
    /// The header's `kid`, if any.
    pub kid: Option<String>,
    /// The decoded payload.
    pub payload: Vec<u8>,
}

/// A token that passed every check. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Verified {
    alg: Algorithm,
    kid: Option<String>,
    claims: Arc<Map<String, Value>>,
    window: Window,
}

impl Verified {
    /// The algorithm that verified the token.
    pub fn alg(&self) -> Algorithm {
        self.alg
    }

    /// The header's `kid`, if any.
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// Every claim of the payload.
    pub fn claims(&self) -> &Map<String, Value> {
        &self.claims
    }

    /// One claim.
    pub fn claim(&self, name: &str) -> Option<&Value> {
        self.claims.get(name)
    }
}

/// Checks tokens against the configured algorithms, keys and claim rules.
#[derive(Debug)]
pub struct Validator {
    algorithms: Vec<Algorithm>,
    /// Swapped whole when `jwks_url` gives a new set, never edited.
    keys: RefCell<KeyStore>,
    rules: ClaimRules,
    max_token_bytes: usize,
    cache: TokenCache,
    signature_checks: Cell<u64>,
}

impl Validator {
    /// A validator; `algorithms` is the allow-list.
    pub fn new(
        algorithms: Vec<Algorithm>,
        keys: KeyStore,
        rules: ClaimRules,
        max_token_bytes: usize,
    ) -> Validator {
        Validator {
            algorithms,
            keys: RefCell::new(keys),
            rules,
            max_token_bytes,
            cache: TokenCache::default(),
            signature_checks: Cell::new(0),
        }
    }

    /// Checks a JWT at time `now` (seconds since the epoch): the signature
    /// (skipped when the token is in the cache), then the claims.
    pub fn validate(&self, token: &str, now: i64) -> Result<Verified, Reason> {
        if token.len() > self.max_token_bytes {
            return Err(Reason::TooLarge);
        }
        if let Some(hit) = self.cache.get(token) {
            return match hit.window.check(now, self.rules.leeway) {
                Ok(()) => Ok(hit),
                Err(reason) => {
                    if reason == Reason::Expired {
                        self.cache.remove(token);
                    }
                    Err(reason)
                }
            };
        }
        let jws = self.verify_jws(token)?;
        let claims = token::parse_object(&jws.payload)?;
        let window = self.rules.check(&claims, now)?;
        let verified = Verified {
            alg: jws.alg,
            kid: jws.kid,
            claims: Arc::new(claims),
            window,
        };
        self.cache.insert(token, verified.clone());
        Ok(verified)
    }

    /// Checks the JWS layer only: size, form, header, algorithm, key and
    /// signature. The payload may be anything (JWS, unlike JWT, does not make
    /// it JSON), which is what the Wycheproof JWS vectors exercise.
    pub fn verify_jws(&self, token: &str) -> Result<Jws, Reason> {
        if token.len() > self.max_token_bytes {
            return Err(Reason::TooLarge);
        }
        let segments = token::split(token)?;
        let header = token::Header::parse(segments.header)?;
        let alg = Algorithm::from_name(&header.alg)
            .filter(|alg| self.algorithms.contains(alg))
            .ok_or(Reason::AlgorithmNotAllowed)?;
        // RFC 7515 4.1.11: an extension we do not implement must not be
        // ignored, and an empty `crit` is invalid; RFC 7797 `b64: false`
        // changes what is signed.
        if header.crit || header.unencoded_payload {
            return Err(Reason::UnsupportedCritical);
        }
        let payload = token::decode(segments.payload)?;
        let signature = token::decode(segments.signature)?;
        let keys = self.keys.borrow();
        let candidates = keys.candidates(alg, header.kid.as_deref())?;
        let signing_input = segments.signing_input.as_bytes();
        let verified = candidates.into_iter().any(|key| {
            self.signature_checks.set(self.signature_checks.get() + 1);
            key.verify(signing_input, &signature)
        });
        if !verified {
            return Err(Reason::InvalidSignature);
        }
        Ok(Jws {
            alg,
            kid: header.kid,
            payload,
        })
    }

    /// How many signature verifications this validator has run; a cache hit
    /// runs none.
    pub fn signature_checks(&self) -> u64 {
        self.signature_checks.get()
    }

    /// How many verified tokens are cached.
    pub fn cached_tokens(&self) -> usize {
        self.cache.len()
    }

    /// The largest token accepted, in bytes.
    pub fn max_token_bytes(&self) -> usize {
        self.max_token_bytes
    }

    /// The usable keys (one per key and algorithm).
    pub fn key_count(&self) -> usize {
        self.keys.borrow().len()
    }

    /// Whether some key carries this `kid`.
    pub fn knows_kid(&self, kid: &str) -> bool {
        self.keys.borrow().knows_kid(kid)
    }

    /// Swaps in new keys and empties the verified-token cache, so a token
    /// verified with a key that is gone stops passing.
    pub fn replace_keys(&self, keys: KeyStore) {
        *self.keys.borrow_mut() = keys;
        self.cache.clear();
    }
}
