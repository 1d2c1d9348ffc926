//! `gateway:plugin/crypto`: signatures, MACs and digests, computed natively.
//!
//! The work is done by `plugin_shared::crypto::native` (aws-lc-rs), the same
//! code a plugin's native unit tests run through the SDK, so a plugin behaves
//! the same in its tests and in the gateway, input caps included. Keys are
//! resources in the instance's table, capped in number so a plugin cannot
//! grow host memory without bound.
//!
//! The host functions run on a [`CryptoView`] of the instance's state: its
//! resource table and its count of keys.

use crate::plugin::bindings::VerifyingKey;
use crate::plugin::bindings::gateway::plugin::crypto::{
    self, Algorithm as WitAlgorithm, DigestAlgorithm as WitDigest,
};
use plugin_shared::crypto::native::{self, NativeKey};
use plugin_shared::crypto::{Algorithm, DigestAlgorithm};
use plugin_shared::limits::CRYPTO_MAX_KEYS as MAX_KEYS;
use wasmtime::component::{HasData, Resource, ResourceTable};

/// What the `crypto` host functions serve from, borrowed from an instance's
/// state for one call.
pub struct CryptoView<'a> {
    /// The instance's resources, where its keys live.
    pub table: &'a mut ResourceTable,
    /// Verifying keys the instance holds.
    pub keys: &'a mut usize,
}

/// The `crypto` interface's data in the linker: a [`CryptoView`].
pub struct HasCrypto;

impl HasData for HasCrypto {
    type Data<'a> = CryptoView<'a>;
}

fn algorithm(alg: WitAlgorithm) -> Algorithm {
    match alg {
        WitAlgorithm::Hs256 => Algorithm::Hs256,
        WitAlgorithm::Hs384 => Algorithm::Hs384,
        WitAlgorithm::Hs512 => Algorithm::Hs512,
        WitAlgorithm::Rs256 => Algorithm::Rs256,
        WitAlgorithm::Rs384 => Algorithm::Rs384,
        WitAlgorithm::Rs512 => Algorithm::Rs512,
        WitAlgorithm::Ps256 => Algorithm::Ps256,
        WitAlgorithm::Ps384 => Algorithm::Ps384,
        WitAlgorithm::Ps512 => Algorithm::Ps512,
        WitAlgorithm::Es256 => Algorithm::Es256,
        WitAlgorithm::Es384 => Algorithm::Es384,
        WitAlgorithm::Es512 => Algorithm::Es512,
        WitAlgorithm::EdDsa => Algorithm::EdDsa,
    }
}

fn wit_algorithm(alg: Algorithm) -> WitAlgorithm {
    match alg {
        Algorithm::Hs256 => WitAlgorithm::Hs256,
        Algorithm::Hs384 => WitAlgorithm::Hs384,
        Algorithm::Hs512 => WitAlgorithm::Hs512,
        Algorithm::Rs256 => WitAlgorithm::Rs256,
        Algorithm::Rs384 => WitAlgorithm::Rs384,
        Algorithm::Rs512 => WitAlgorithm::Rs512,
        Algorithm::Ps256 => WitAlgorithm::Ps256,
        Algorithm::Ps384 => WitAlgorithm::Ps384,
        Algorithm::Ps512 => WitAlgorithm::Ps512,
        Algorithm::Es256 => WitAlgorithm::Es256,
        Algorithm::Es384 => WitAlgorithm::Es384,
        Algorithm::Es512 => WitAlgorithm::Es512,
        Algorithm::EdDsa => WitAlgorithm::EdDsa,
    }
}

fn digest_algorithm(alg: WitDigest) -> DigestAlgorithm {
    match alg {
        WitDigest::Sha256 => DigestAlgorithm::Sha256,
        WitDigest::Sha384 => DigestAlgorithm::Sha384,
        WitDigest::Sha512 => DigestAlgorithm::Sha512,
    }
}

/// A new key's handle, or why there is none.
type NewKey = Result<Resource<VerifyingKey>, String>;

impl CryptoView<'_> {
    /// Holds `key` in the instance's table, unless it holds too many.
    fn push_key(&mut self, key: Result<NativeKey, String>) -> NewKey {
        let key = key?;
        if *self.keys >= MAX_KEYS {
            return Err(format!("too many keys: an instance may hold {MAX_KEYS}"));
        }
        let handle = self
            .table
            .push(VerifyingKey(key))
            .map_err(|e| format!("cannot store the key: {e}"))?;
        *self.keys += 1;
        Ok(handle)
    }
}

impl crypto::Host for CryptoView<'_> {
    fn digest(&mut self, alg: WitDigest, data: Vec<u8>) -> Vec<u8> {
        native::digest(digest_algorithm(alg), &data)
    }

    fn hmac(&mut self, alg: WitDigest, key: Vec<u8>, data: Vec<u8>) -> Vec<u8> {
        native::hmac(digest_algorithm(alg), &key, &data)
    }

    fn constant_time_eq(&mut self, a: Vec<u8>, b: Vec<u8>) -> bool {
        native::constant_time_eq(&a, &b)
    }
}

impl crypto::HostVerifyingKey for CryptoView<'_> {
    fn from_jwk(&mut self, alg: WitAlgorithm, jwk: String) -> NewKey {
        self.push_key(NativeKey::from_jwk(algorithm(alg), &jwk))
    }

    fn from_pem(&mut self, alg: WitAlgorithm, pem: String) -> NewKey {
        self.push_key(NativeKey::from_pem(algorithm(alg), &pem))
    }

    fn from_secret(&mut self, alg: WitAlgorithm, secret: Vec<u8>) -> NewKey {
        self.push_key(NativeKey::from_secret(algorithm(alg), &secret))
    }

    fn algorithm(&mut self, key: Resource<VerifyingKey>) -> WitAlgorithm {
        // A handle the guest holds always resolves; the fallback is unreachable
        // in practice and harmless (no key verifies under a wrong algorithm).
        self.table
            .get(&key)
            .map_or(WitAlgorithm::Hs256, |k| wit_algorithm(k.0.algorithm()))
    }

    fn verify(
        &mut self,
        key: Resource<VerifyingKey>,
        message: Vec<u8>,
        signature: Vec<u8>,
    ) -> bool {
        self.table
            .get(&key)
            .is_ok_and(|k| k.0.verify(&message, &signature))
    }

    fn drop(&mut self, key: Resource<VerifyingKey>) -> wasmtime::Result<()> {
        self.table.delete(key)?;
        *self.keys = self.keys.saturating_sub(1);
        Ok(())
    }
}
