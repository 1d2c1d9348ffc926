//! Keys from `jwks_url`: fetched at `init`, fetched again once the copy is
//! older than `jwks_refresh`, and early for a token whose `kid` no key has,
//! but never more than once per `jwks_min_refetch` per instance.
//!
//! Fetches go through the SDK's `fetch_shared`: the host keeps one copy per
//! plugin for every instance and turns simultaneous misses into one request,
//! so the age it returns, not this instance's last call, says how fresh the
//! keys are. A failed fetch, or a document that yields no usable key, keeps
//! the last good keys: while the JWKS server is down, tokens signed with
//! known keys keep passing. A new set replaces the keys of the previous one
//! whole (a key removed upstream stops working) and leaves the configured
//! `keys`, `jwks` and `hmac_secret` in place.

use crate::Validator;
use crate::keys::{KeyList, KeyStore};
use plugin_sdk::crypto::Algorithm;
use plugin_sdk::{http_client, log};
use std::cell::RefCell;
use std::fmt;
use std::time::Duration;

/// The set at `jwks_url` and this instance's view of it.
#[derive(Debug)]
pub struct JwksUrl {
    url: String,
    refresh_ms: u64,
    min_refetch_ms: u64,
    allowed: Vec<Algorithm>,
    /// The keys of `keys`, `jwks` and `hmac_secret`, kept through every refresh.
    configured: KeyList,
    state: RefCell<State>,
}

#[derive(Debug, Default)]
struct State {
    /// When the host fetched the copy the keys in use come from (now minus
    /// its age); `None` until a fetch gave usable keys.
    fetched_at: Option<u64>,
    /// When this instance last asked the host, whatever the outcome.
    asked_at: Option<u64>,
    /// The document the keys in use come from: a fetch that returns it again
    /// changes nothing, and keeps the verified-token cache.
    document: Option<Vec<u8>>,
}

/// Why a fetch gave no keys.
#[derive(Debug)]
enum FetchError {
    /// No answer, or not a 2xx one.
    Http(http_client::Error),
    /// An answer that is not a usable JWK set.
    Document(String),
}

impl FetchError {
    /// A problem no retry can fix: the configuration must change.
    fn is_permanent(&self) -> bool {
        matches!(
            self,
            FetchError::Http(
                http_client::Error::NotAllowed(_) | http_client::Error::InvalidRequest(_)
            )
        )
    }
}

impl fmt::Display for FetchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FetchError::Http(http_client::Error::NotAllowed(host)) => write!(
                f,
                "host {host} is not allowed: list it in the entry's `allowed_hosts`"
            ),
            FetchError::Http(error) => write!(f, "cannot fetch it: {error}"),
            FetchError::Document(why) => f.write_str(why),
        }
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

impl JwksUrl {
    /// The set at `url`, not fetched yet; `configured` are the other keys.
    pub fn new(
        url: String,
        refresh: Duration,
        min_refetch: Duration,
        allowed: Vec<Algorithm>,
        configured: KeyList,
    ) -> JwksUrl {
        JwksUrl {
            url,
            refresh_ms: millis(refresh),
            min_refetch_ms: millis(min_refetch),
            allowed,
            configured,
            state: RefCell::new(State::default()),
        }
    }

    /// The first fetch, at `init` (`now_ms` is milliseconds since the epoch);
    /// installs the keys in `validator`.
    ///
    /// Without a usable set, `init` fails when no other key is configured (a
    /// gateway refusing every token is worse than a config that does not
    /// load) or when no retry can help (host not in `allowed_hosts`, unusable
    /// URL). Otherwise the configured keys serve alone, with a warning, and
    /// requests retry the fetch at most once per `jwks_min_refetch`.
    pub fn start(&self, validator: &Validator, now_ms: u64) -> Result<(), String> {
        let fetched = match self.fetch(self.refresh_ms, now_ms) {
            Ok(fetched) => fetched,
            Err(why) if why.is_permanent() => {
                return Err(format!("jwt: jwks_url {:?}: {why}", self.url));
            }
            Err(why) if self.configured.is_empty() => {
                return Err(format!(
                    "jwt: jwks_url {:?}: {why}; no `keys`, `jwks` or `hmac_secret` is \
                     configured either, so every token would be refused",
                    self.url
                ));
            }
            Err(why) => {
                log::warn(&format!(
                    "jwt: jwks_url {:?}: {why}; starting with the other configured keys only, \
                     fetching again at most every {} s",
                    self.url,
                    self.min_refetch_ms / 1000
                ));
                None
            }
        };
        validator.replace_keys(self.store(fetched.as_ref()));
        Ok(())
    }

    /// Before a token is checked: fetches the set again if the keys are older
    /// than `jwks_refresh`, and installs it if it changed.
    pub fn refresh_if_due(&self, validator: &Validator, now_ms: u64) {
        let due = self
            .state
            .borrow()
            .fetched_at
            .is_none_or(|at| now_ms.saturating_sub(at) > self.refresh_ms);
        if due && self.may_ask(now_ms) {
            self.update(validator, self.refresh_ms, now_ms);
        }
    }

    /// After a token was refused for a `kid` no key has (the issuer may have
    /// rotated): fetches a copy at most `jwks_min_refetch` old, unless the keys
    /// are that fresh already. Returns whether the keys changed, that is
    /// whether the token is worth checking again. Made-up kids cost the JWKS
    /// server at most one request per `jwks_min_refetch` and instance (fewer,
    /// as the host shares copies).
    pub fn refetch_for_unknown_kid(&self, validator: &Validator, now_ms: u64) -> bool {
        let stale = self
            .state
            .borrow()
            .fetched_at
            .is_none_or(|at| now_ms.saturating_sub(at) >= self.min_refetch_ms);
        stale && self.may_ask(now_ms) && self.update(validator, self.min_refetch_ms, now_ms)
    }

    /// Whether this instance may ask the host now: at most once per
    /// `jwks_min_refetch`, so a JWKS server that is down is not asked on every
    /// request (nor every request made to wait for it) and its failure is
    /// logged at most once per interval.
    fn may_ask(&self, now_ms: u64) -> bool {
        self.state
            .borrow()
            .asked_at
            .is_none_or(|at| now_ms.saturating_sub(at) >= self.min_refetch_ms)
    }

    /// Fetches a copy at most `max_age_ms` old and installs it if it changed;
    /// a failure is logged and keeps the keys. Returns whether they changed.
    fn update(&self, validator: &Validator, max_age_ms: u64, now_ms: u64) -> bool {
        match self.fetch(max_age_ms, now_ms) {
            Ok(Some(fetched)) => {
                log::info(&format!(
                    "jwt: jwks_url {:?}: new key set, {} usable keys",
                    self.url,
                    fetched.len()
                ));
                validator.replace_keys(self.store(Some(&fetched)));
                true
            }
            Ok(None) => false,
            Err(why) => {
                log::warn(&format!(
                    "jwt: jwks_url {:?}: {why}; keeping the last good keys",
                    self.url
                ));
                false
            }
        }
    }

    /// One `fetch_shared`; `None` when it returned the document in use.
    fn fetch(&self, max_age_ms: u64, now_ms: u64) -> Result<Option<KeyList>, FetchError> {
        self.state.borrow_mut().asked_at = Some(now_ms);
        let (document, age) =
            http_client::fetch_shared(&self.url, Duration::from_millis(max_age_ms))
                .map_err(FetchError::Http)?;
        let fetched_at = Some(now_ms.saturating_sub(millis(age)));
        let mut state = self.state.borrow_mut();
        if state.document.as_ref() == Some(&document) {
            state.fetched_at = fetched_at;
            return Ok(None);
        }
        let fetched = KeyList::fetched(&self.allowed, &document).map_err(FetchError::Document)?;
        state.fetched_at = fetched_at;
        state.document = Some(document);
        Ok(Some(fetched))
    }

    /// The configured keys plus `fetched`.
    fn store(&self, fetched: Option<&KeyList>) -> KeyStore {
        let mut lists = vec![&self.configured];
        lists.extend(fetched);
        KeyStore::from_lists(&self.allowed, &lists)
    }
}
