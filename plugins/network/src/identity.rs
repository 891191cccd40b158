//! A node's identity: an ML-DSA-65 signing key and an ML-KEM-768 decapsulation key, both kept as seeds.
//!
//! The node id ([`PeerId`]) is the BLAKE3 hash (derive-key mode, its own context) of the ML-DSA-65 public key,
//! so whoever holds a signed envelope can check that its sender id belongs to the key that signed it. Secret seeds
//! are zeroized when the identity is dropped; the expanded keys of the underlying crates zeroize themselves.

use crate::error::{NetworkError, Result};
use ml_dsa::{ExpandedSigningKey, MlDsa65, Signature, VerifyingKey};
use ml_kem::array::Array;
use ml_kem::{Decapsulate, DecapsulationKey, EncapsulationKey, KeyExport, MlKem768};
use rand_core::UnwrapErr;
use ruvector_dag::network::PeerId;
use serde::{Deserialize, Serialize};
use std::fmt;
use zeroize::Zeroizing;

/// Bytes of an ML-DSA-65 public key.
pub const SIGNING_PUBLIC_KEY_LEN: usize = 1952;
/// Bytes of an ML-DSA-65 signature.
pub const SIGNATURE_LEN: usize = 3309;
/// Bytes of an ML-KEM-768 encapsulation (public) key.
pub const KEM_PUBLIC_KEY_LEN: usize = 1184;
/// Bytes of an ML-KEM-768 ciphertext.
pub const KEM_CIPHERTEXT_LEN: usize = 1088;
/// Bytes of the ML-DSA-65 seed (ξ of FIPS 204).
pub const SIGNING_SEED_LEN: usize = 32;
/// Bytes of the ML-KEM-768 seed (d ‖ z of FIPS 203).
pub const KEM_SEED_LEN: usize = 64;

const NODE_ID_CONTEXT: &str = "ruvector-dag 2026-12 node id from ML-DSA-65 public key";

/// The node id of an ML-DSA-65 public key.
pub fn peer_id_of(verifying_key: &[u8]) -> PeerId {
    let mut hasher = blake3::Hasher::new_derive_key(NODE_ID_CONTEXT);
    hasher.update(verifying_key);
    PeerId(*hasher.finalize().as_bytes())
}

/// Whether `signature` is an ML-DSA-65 signature of `message` under `context` by the encoded verifying key
/// `verifying_key` (false for malformed keys or signatures).
pub fn verify_signature(verifying_key: &[u8], context: &[u8], message: &[u8], signature: &[u8]) -> bool {
    let (Ok(vk), Ok(sig)) = (Array::try_from(verifying_key), Signature::<MlDsa65>::try_from(signature)) else {
        return false;
    };
    VerifyingKey::<MlDsa65>::decode(&vk).verify_with_context(message, context, &sig)
}

/// Decodes an ML-KEM-768 encapsulation key (1184 bytes), with the FIPS 203 §7.2 modulus check.
pub(crate) fn parse_kem_key(bytes: &[u8]) -> Result<EncapsulationKey<MlKem768>> {
    let ek = Array::try_from(bytes).map_err(|_| NetworkError::InvalidKey {
        what: "ML-KEM-768 encapsulation key",
        reason: format!("{} bytes, expected {KEM_PUBLIC_KEY_LEN}", bytes.len()),
    })?;
    EncapsulationKey::<MlKem768>::new(&ek).map_err(|_| NetworkError::InvalidKey {
        what: "ML-KEM-768 encapsulation key",
        reason: "coefficients out of range (FIPS 203 modulus check)".into(),
    })
}

/// The 32-byte shared secret in `ciphertext` for decapsulation key `key`. A ciphertext of the right length always
/// decapsulates (FIPS 203 implicit rejection): a forged one yields an unrelated secret, which the AEAD above it then
/// refuses.
fn decapsulate_with(key: &DecapsulationKey<MlKem768>, ciphertext: &[u8]) -> Result<Zeroizing<[u8; 32]>> {
    let ct = ml_kem::Ciphertext::<MlKem768>::try_from(ciphertext)
        .map_err(|_| NetworkError::Decrypt("ML-KEM-768 ciphertext has the wrong length"))?;
    Ok(Zeroizing::new(key.decapsulate(&ct).into()))
}

/// A stand-alone ML-KEM-768 key pair, held as its 64-byte seed (d ‖ z): what `qudag_generate_kem_keypair` makes.
/// The seed is zeroized on drop and leaves this type only through [`KemSecretKey::seed`], for encrypted storage.
pub struct KemSecretKey {
    seed: Zeroizing<[u8; KEM_SEED_LEN]>,
    key: DecapsulationKey<MlKem768>,
}

impl fmt::Debug for KemSecretKey {
    /// Never shows the secret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KemSecretKey").finish_non_exhaustive()
    }
}

impl KemSecretKey {
    /// A fresh key pair from the operating system's CSPRNG.
    pub fn generate() -> Self {
        let mut seed = Zeroizing::new([0u8; KEM_SEED_LEN]);
        os_random(&mut seed[..]);
        Self::from_seed(&seed)
    }

    /// The key pair this seed determines (FIPS 203 `ML-KEM.KeyGen_internal(d, z)`).
    pub fn from_seed(seed: &[u8; KEM_SEED_LEN]) -> Self {
        Self { seed: Zeroizing::new(*seed), key: DecapsulationKey::<MlKem768>::from_seed(Array::from(*seed)) }
    }

    /// The seed, to store encrypted.
    pub fn seed(&self) -> &[u8; KEM_SEED_LEN] {
        &self.seed
    }

    /// The encapsulation (public) key, 1184 bytes.
    pub fn public_key_bytes(&self) -> Vec<u8> {
        self.key.encapsulation_key().to_bytes().to_vec()
    }

    pub(crate) fn decapsulate(&self, ciphertext: &[u8]) -> Result<Zeroizing<[u8; 32]>> {
        decapsulate_with(&self.key, ciphertext)
    }
}

/// Fills `buf` from the operating system's CSPRNG.
pub(crate) fn os_random(buf: &mut [u8]) {
    // The OS generator failing is not recoverable: no key or nonce may be made without it.
    getrandom::fill(buf).expect("the operating system's random number generator failed");
}

/// The operating system's CSPRNG as an infallible `rand_core` generator.
pub(crate) fn os_rng() -> UnwrapErr<getrandom::SysRng> {
    UnwrapErr(getrandom::SysRng)
}

/// A node's secret keys, held as seeds. Never serialized except by the encrypted [`crate::Keystore`].
pub struct NodeIdentity {
    signing_seed: Zeroizing<[u8; SIGNING_SEED_LEN]>,
    kem_seed: Zeroizing<[u8; KEM_SEED_LEN]>,
    signing: ExpandedSigningKey<MlDsa65>,
    kem: DecapsulationKey<MlKem768>,
    public: PublicIdentity,
}

impl fmt::Debug for NodeIdentity {
    /// Shows the node id only: never a secret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeIdentity").field("peer_id", &self.peer_id()).finish_non_exhaustive()
    }
}

impl NodeIdentity {
    /// A fresh identity from the operating system's CSPRNG.
    pub fn generate() -> Self {
        let mut signing_seed = Zeroizing::new([0u8; SIGNING_SEED_LEN]);
        let mut kem_seed = Zeroizing::new([0u8; KEM_SEED_LEN]);
        os_random(&mut signing_seed[..]);
        os_random(&mut kem_seed[..]);
        Self::from_seeds(&signing_seed, &kem_seed)
    }

    /// The identity these seeds determine (FIPS 204 ξ and FIPS 203 d ‖ z).
    pub fn from_seeds(signing_seed: &[u8; SIGNING_SEED_LEN], kem_seed: &[u8; KEM_SEED_LEN]) -> Self {
        let signing = ExpandedSigningKey::<MlDsa65>::from_seed(&Array::from(*signing_seed));
        let kem = DecapsulationKey::<MlKem768>::from_seed(Array::from(*kem_seed));
        let public = PublicIdentity::from_keys(signing.verifying_key(), kem.encapsulation_key().clone());
        Self { signing_seed: Zeroizing::new(*signing_seed), kem_seed: Zeroizing::new(*kem_seed), signing, kem, public }
    }

    /// The seeds, for the keystore only.
    pub(crate) fn seeds(&self) -> (&[u8; SIGNING_SEED_LEN], &[u8; KEM_SEED_LEN]) {
        (&self.signing_seed, &self.kem_seed)
    }

    /// This node's id.
    pub fn peer_id(&self) -> PeerId {
        self.public.peer_id()
    }

    /// The public half, to hand to peers.
    pub fn public(&self) -> &PublicIdentity {
        &self.public
    }

    /// Signs `message` with ML-DSA-65 under `context` (FIPS 204 hedged signing: fresh randomness mixed with the
    /// key, so a faulty or repeated nonce source does not leak the key).
    pub fn sign(&self, context: &[u8], message: &[u8]) -> Result<Vec<u8>> {
        let signature = self
            .signing
            .sign_randomized(message, context, &mut os_rng())
            .map_err(|e| NetworkError::Signature(format!("signing failed: {e}")))?;
        Ok(signature.encode().to_vec())
    }

    /// The 32-byte shared secret in an ML-KEM-768 ciphertext addressed to this node (see [`decapsulate_with`]).
    pub(crate) fn decapsulate(&self, ciphertext: &[u8]) -> Result<Zeroizing<[u8; 32]>> {
        decapsulate_with(&self.kem, ciphertext)
    }

    /// A 32-byte key for `context`, derived from this identity's secret seeds (BLAKE3 derive-key mode): for
    /// encrypting what the node stores under its own identity. Each context gets an independent key.
    pub fn derive_key(&self, context: &str) -> Zeroizing<[u8; 32]> {
        let mut hasher = blake3::Hasher::new_derive_key(context);
        hasher.update(&self.signing_seed[..]);
        hasher.update(&self.kem_seed[..]);
        Zeroizing::new(*hasher.finalize().as_bytes())
    }
}

/// What a node publishes: its ML-DSA-65 verifying key and ML-KEM-768 encapsulation key, checked on construction
/// (FIPS 203 §7.2 modulus check for the KEM key).
#[derive(Clone, Serialize, Deserialize)]
#[serde(try_from = "RawPublic", into = "RawPublic")]
pub struct PublicIdentity {
    verifying_key: VerifyingKey<MlDsa65>,
    kem_key: EncapsulationKey<MlKem768>,
    verifying_bytes: Vec<u8>,
    peer_id: PeerId,
}

#[derive(Serialize, Deserialize)]
struct RawPublic {
    verifying_key: Vec<u8>,
    kem_key: Vec<u8>,
}

impl TryFrom<RawPublic> for PublicIdentity {
    type Error = NetworkError;
    fn try_from(raw: RawPublic) -> Result<Self> {
        Self::from_bytes(&raw.verifying_key, &raw.kem_key)
    }
}

impl From<PublicIdentity> for RawPublic {
    fn from(p: PublicIdentity) -> Self {
        Self { verifying_key: p.verifying_bytes, kem_key: p.kem_key.to_bytes().to_vec() }
    }
}

impl PartialEq for PublicIdentity {
    fn eq(&self, other: &Self) -> bool {
        self.verifying_bytes == other.verifying_bytes && self.kem_key == other.kem_key
    }
}

impl Eq for PublicIdentity {}

impl fmt::Debug for PublicIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PublicIdentity").field("peer_id", &self.peer_id).finish_non_exhaustive()
    }
}

impl PublicIdentity {
    fn from_keys(verifying_key: VerifyingKey<MlDsa65>, kem_key: EncapsulationKey<MlKem768>) -> Self {
        let verifying_bytes = verifying_key.encode().to_vec();
        let peer_id = peer_id_of(&verifying_bytes);
        Self { verifying_key, kem_key, verifying_bytes, peer_id }
    }

    /// Decodes a verifying key (1952 bytes) and an encapsulation key (1184 bytes).
    pub fn from_bytes(verifying_key: &[u8], kem_key: &[u8]) -> Result<Self> {
        let vk = Array::try_from(verifying_key).map_err(|_| NetworkError::InvalidKey {
            what: "ML-DSA-65 verifying key",
            reason: format!("{} bytes, expected {SIGNING_PUBLIC_KEY_LEN}", verifying_key.len()),
        })?;
        Ok(Self::from_keys(VerifyingKey::<MlDsa65>::decode(&vk), parse_kem_key(kem_key)?))
    }

    /// The node id.
    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    /// The encoded ML-DSA-65 verifying key.
    pub fn verifying_key_bytes(&self) -> &[u8] {
        &self.verifying_bytes
    }

    /// The encoded ML-KEM-768 encapsulation key.
    pub fn kem_key_bytes(&self) -> Vec<u8> {
        self.kem_key.to_bytes().to_vec()
    }

    pub(crate) fn kem_key(&self) -> &EncapsulationKey<MlKem768> {
        &self.kem_key
    }

    /// Whether `signature` is this node's ML-DSA-65 signature of `message` under `context`.
    pub fn verify(&self, context: &[u8], message: &[u8], signature: &[u8]) -> bool {
        match Signature::<MlDsa65>::try_from(signature) {
            Ok(sig) => self.verifying_key.verify_with_context(message, context, &sig),
            Err(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ml_kem_agrees_with_aws_lc() {
        use aws_lc_rs::kem::{Ciphertext, DecapsulationKey as AwsDk, EncapsulationKey as AwsEk, ML_KEM_768};
        use ml_kem::Encapsulate;
        for _ in 0..5 {
            // AWS-LC encapsulates to our key; we decapsulate the same secret.
            let ours = KemSecretKey::generate();
            let ek = AwsEk::new(&ML_KEM_768, &ours.public_key_bytes()).unwrap();
            let (ct, theirs) = ek.encapsulate().unwrap();
            assert_eq!(&ours.decapsulate(ct.as_ref()).unwrap()[..], theirs.as_ref());
            // We encapsulate to AWS-LC's key; it decapsulates the same secret.
            let dk = AwsDk::generate(&ML_KEM_768).unwrap();
            let ek_bytes = dk.encapsulation_key().unwrap().key_bytes().unwrap();
            let (ct, shared) = parse_kem_key(ek_bytes.as_ref()).unwrap().encapsulate_with_rng(&mut os_rng());
            let theirs = dk.decapsulate(Ciphertext::from(&ct[..])).unwrap();
            assert_eq!(theirs.as_ref(), &shared[..]);
        }
    }

    #[test]
    fn keys_have_the_standard_sizes() {
        let id = NodeIdentity::generate();
        assert_eq!(id.public().verifying_key_bytes().len(), SIGNING_PUBLIC_KEY_LEN);
        assert_eq!(id.public().kem_key_bytes().len(), KEM_PUBLIC_KEY_LEN);
        assert_eq!(id.sign(b"ctx", b"m").unwrap().len(), SIGNATURE_LEN);
    }

    #[test]
    fn seeds_determine_the_identity() {
        let a = NodeIdentity::from_seeds(&[7; 32], &[9; 64]);
        let b = NodeIdentity::from_seeds(&[7; 32], &[9; 64]);
        let c = NodeIdentity::from_seeds(&[8; 32], &[9; 64]);
        assert_eq!(a.public(), b.public());
        assert_eq!(a.peer_id(), b.peer_id());
        assert_ne!(a.peer_id(), c.peer_id());
        assert_eq!(a.peer_id(), peer_id_of(a.public().verifying_key_bytes()));
    }

    #[test]
    fn signatures_bind_key_context_and_message() {
        let id = NodeIdentity::generate();
        let other = NodeIdentity::generate();
        let sig = id.sign(b"ruvector/a", b"hello").unwrap();
        assert!(id.public().verify(b"ruvector/a", b"hello", &sig));
        assert!(!id.public().verify(b"ruvector/b", b"hello", &sig), "another context");
        assert!(!id.public().verify(b"ruvector/a", b"hellp", &sig), "another message");
        assert!(!other.public().verify(b"ruvector/a", b"hello", &sig), "another key");
        assert!(!id.public().verify(b"ruvector/a", b"hello", &sig[..100]), "truncated");
        for bit in [0, 8 * 1000 + 3, 8 * (SIGNATURE_LEN - 1) + 7] {
            let mut bad = sig.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            assert!(!id.public().verify(b"ruvector/a", b"hello", &bad), "bit {bit} flipped");
        }
    }

    #[test]
    fn public_identity_round_trips_and_refuses_bad_keys() {
        let id = NodeIdentity::generate();
        let bytes = postcard::to_stdvec(id.public()).unwrap();
        let back: PublicIdentity = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(&back, id.public());
        let vk = id.public().verifying_key_bytes();
        let ek = id.public().kem_key_bytes();
        assert!(matches!(PublicIdentity::from_bytes(&vk[1..], &ek), Err(NetworkError::InvalidKey { .. })));
        assert!(matches!(PublicIdentity::from_bytes(vk, &ek[1..]), Err(NetworkError::InvalidKey { .. })));
        // All-ones coefficients are ≥ q = 3329: the modulus check refuses them.
        let mut bad = ek.clone();
        bad[..384].fill(0xff);
        let err = PublicIdentity::from_bytes(vk, &bad).unwrap_err();
        assert!(err.to_string().contains("RV008"), "{err}");
    }

    #[test]
    fn debug_shows_no_secret() {
        let id = NodeIdentity::from_seeds(&[0x5a; 32], &[0xa5; 64]);
        let shown = format!("{id:?}");
        assert!(shown.contains("peer_id") && !shown.contains("5a5a") && !shown.contains("a5a5"), "{shown}");
    }
}
