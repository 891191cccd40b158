//! Sealing a payload to one node's ML-KEM-768 key: encapsulate, derive a one-time key with BLAKE3, encrypt with
//! ChaCha20-Poly1305.
//!
//! The key is derived from the shared secret, the KEM ciphertext and the recipient's encapsulation key (so a
//! box re-addressed to another recipient or with another ciphertext derives another key), and it is used once:
//! every seal encapsulates afresh, so the all-zero nonce never repeats under one key.

use crate::error::{NetworkError, Result};
use crate::identity::{KEM_CIPHERTEXT_LEN, KemSecretKey, NodeIdentity, PublicIdentity, os_rng, parse_kem_key};
use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::{ChaCha20Poly1305, KeyInit, Nonce};
use ml_kem::{Encapsulate, EncapsulationKey, KeyExport, MlKem768};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

const SEAL_KEY_CONTEXT: &str = "ruvector-dag 2026-12 pattern sealing ML-KEM-768 ChaCha20-Poly1305";

/// A payload sealed to one recipient.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedBox {
    /// The ML-KEM-768 ciphertext (1088 bytes).
    pub kem_ciphertext: Vec<u8>,
    /// ChaCha20-Poly1305 ciphertext and tag.
    pub ciphertext: Vec<u8>,
}

/// Bytes a sealed box adds to its plaintext: the KEM ciphertext and the 16-byte tag.
pub const SEAL_OVERHEAD: usize = KEM_CIPHERTEXT_LEN + 16;

fn derive_key(shared: &[u8; 32], kem_ciphertext: &[u8], recipient_kem_key: &[u8]) -> Zeroizing<[u8; 32]> {
    let mut hasher = blake3::Hasher::new_derive_key(SEAL_KEY_CONTEXT);
    hasher.update(shared);
    hasher.update(blake3::hash(kem_ciphertext).as_bytes());
    hasher.update(blake3::hash(recipient_kem_key).as_bytes());
    Zeroizing::new(*hasher.finalize().as_bytes())
}

/// Seals `plaintext` to `recipient`; `aad` is authenticated, not encrypted, and must be given again to open.
pub fn seal(recipient: &PublicIdentity, aad: &[u8], plaintext: &[u8]) -> Result<SealedBox> {
    seal_with(recipient.kem_key(), aad, plaintext)
}

/// Seals `plaintext` to the encoded ML-KEM-768 encapsulation key `recipient_kem_key` (1184 bytes, checked).
pub fn seal_to_kem_key(recipient_kem_key: &[u8], aad: &[u8], plaintext: &[u8]) -> Result<SealedBox> {
    seal_with(&parse_kem_key(recipient_kem_key)?, aad, plaintext)
}

fn seal_with(recipient: &EncapsulationKey<MlKem768>, aad: &[u8], plaintext: &[u8]) -> Result<SealedBox> {
    let (ct, shared) = recipient.encapsulate_with_rng(&mut os_rng());
    let shared: Zeroizing<[u8; 32]> = Zeroizing::new(shared.into());
    let key = derive_key(&shared, &ct, &recipient.to_bytes());
    let cipher = ChaCha20Poly1305::new((&*key).into());
    let ciphertext = cipher
        .encrypt(&Nonce::default(), Payload { msg: plaintext, aad })
        .map_err(|_| NetworkError::Encoding("ChaCha20-Poly1305 refused the plaintext".into()))?;
    Ok(SealedBox { kem_ciphertext: ct.to_vec(), ciphertext })
}

/// Opens a box sealed to `identity` with the same `aad`.
pub fn open(identity: &NodeIdentity, aad: &[u8], sealed: &SealedBox) -> Result<Vec<u8>> {
    let shared = identity.decapsulate(&sealed.kem_ciphertext)?;
    open_with(&shared, &identity.public().kem_key_bytes(), aad, sealed)
}

/// Opens a box sealed to the public half of `key` with the same `aad`.
pub fn open_with_kem_key(key: &KemSecretKey, aad: &[u8], sealed: &SealedBox) -> Result<Vec<u8>> {
    let shared = key.decapsulate(&sealed.kem_ciphertext)?;
    open_with(&shared, &key.public_key_bytes(), aad, sealed)
}

fn open_with(shared: &[u8; 32], recipient_kem_key: &[u8], aad: &[u8], sealed: &SealedBox) -> Result<Vec<u8>> {
    let key = derive_key(shared, &sealed.kem_ciphertext, recipient_kem_key);
    let cipher = ChaCha20Poly1305::new((&*key).into());
    cipher
        .decrypt(&Nonce::default(), Payload { msg: &sealed.ciphertext, aad })
        .map_err(|_| NetworkError::Decrypt("authentication failed: wrong recipient, associated data or bytes"))
}

/// Encrypts `plaintext` for storage by this node: ChaCha20-Poly1305 under a key derived from `identity` for
/// `context`, with a random 96-bit nonce prefixed to the output. `aad` binds the record to where it is stored.
pub fn encrypt_at_rest(identity: &NodeIdentity, context: &str, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>> {
    let key = identity.derive_key(context);
    let mut nonce = [0u8; 12];
    crate::identity::os_random(&mut nonce);
    let cipher = ChaCha20Poly1305::new((&*key).into());
    let ciphertext = cipher
        .encrypt(&Nonce::from(nonce), Payload { msg: plaintext, aad })
        .map_err(|_| NetworkError::Encoding("ChaCha20-Poly1305 refused the plaintext".into()))?;
    Ok([&nonce[..], &ciphertext].concat())
}

/// Decrypts what [`encrypt_at_rest`] wrote with the same identity, context and `aad`.
pub fn decrypt_at_rest(
    identity: &NodeIdentity,
    context: &str,
    aad: &[u8],
    stored: &[u8],
) -> Result<Zeroizing<Vec<u8>>> {
    if stored.len() < 12 + 16 {
        return Err(NetworkError::Decrypt("stored record is too short"));
    }
    let (nonce, ciphertext) = stored.split_at(12);
    let key = identity.derive_key(context);
    let cipher = ChaCha20Poly1305::new((&*key).into());
    let nonce: [u8; 12] = nonce.try_into().expect("12 bytes");
    cipher.decrypt(&Nonce::from(nonce), Payload { msg: ciphertext, aad }).map(Zeroizing::new).map_err(|_| {
        NetworkError::Decrypt("stored record does not open: another node identity, another record, or altered bytes")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_overhead() {
        let bob = NodeIdentity::generate();
        let sealed = seal(bob.public(), b"pattern 7", b"centroid bytes").unwrap();
        assert_eq!(sealed.kem_ciphertext.len() + sealed.ciphertext.len(), b"centroid bytes".len() + SEAL_OVERHEAD);
        assert_eq!(open(&bob, b"pattern 7", &sealed).unwrap(), b"centroid bytes");
        // Two seals of one plaintext differ (fresh encapsulation each time).
        assert_ne!(seal(bob.public(), b"", b"x").unwrap(), seal(bob.public(), b"", b"x").unwrap());
    }

    #[test]
    fn at_rest_records_open_only_with_their_identity_context_and_aad() {
        let node = NodeIdentity::generate();
        let stored = encrypt_at_rest(&node, "ctx", b"row 1", b"seed bytes").unwrap();
        assert_eq!(&decrypt_at_rest(&node, "ctx", b"row 1", &stored).unwrap()[..], b"seed bytes");
        assert_ne!(stored, encrypt_at_rest(&node, "ctx", b"row 1", b"seed bytes").unwrap(), "fresh nonce each time");
        assert!(decrypt_at_rest(&node, "ctx", b"row 2", &stored).is_err());
        assert!(decrypt_at_rest(&node, "other", b"row 1", &stored).is_err());
        assert!(decrypt_at_rest(&NodeIdentity::generate(), "ctx", b"row 1", &stored).is_err());
        let mut flipped = stored.clone();
        flipped[20] ^= 1;
        assert!(decrypt_at_rest(&node, "ctx", b"row 1", &flipped).is_err());
        assert!(decrypt_at_rest(&node, "ctx", b"row 1", &stored[..20]).is_err());
    }

    #[test]
    fn stand_alone_kem_keys_round_trip_and_refuse_others() {
        let key = KemSecretKey::generate();
        let sealed = seal_to_kem_key(&key.public_key_bytes(), b"", b"row 42").unwrap();
        assert_eq!(open_with_kem_key(&key, b"", &sealed).unwrap(), b"row 42");
        // The seed determines the key.
        let again = KemSecretKey::from_seed(key.seed());
        assert_eq!(open_with_kem_key(&again, b"", &sealed).unwrap(), b"row 42");
        assert!(matches!(open_with_kem_key(&KemSecretKey::generate(), b"", &sealed), Err(NetworkError::Decrypt(_))));
        assert!(matches!(seal_to_kem_key(&[0u8; 5], b"", b"x"), Err(NetworkError::InvalidKey { .. })));
        // A box to a node identity and one to a stand-alone key are the same construction.
        let node = NodeIdentity::generate();
        let sealed = seal_to_kem_key(&node.public().kem_key_bytes(), b"a", b"b").unwrap();
        assert_eq!(open(&node, b"a", &sealed).unwrap(), b"b");
    }

    #[test]
    fn refuses_wrong_recipient_aad_and_flipped_bits() {
        let bob = NodeIdentity::generate();
        let eve = NodeIdentity::generate();
        let sealed = seal(bob.public(), b"aad", b"secret pattern").unwrap();
        assert!(matches!(open(&eve, b"aad", &sealed), Err(NetworkError::Decrypt(_))));
        assert!(matches!(open(&bob, b"aaD", &sealed), Err(NetworkError::Decrypt(_))));
        for (field, index) in [(0, 0), (0, KEM_CIPHERTEXT_LEN - 1), (1, 0), (1, 20)] {
            let mut bad = sealed.clone();
            let bytes = if field == 0 { &mut bad.kem_ciphertext } else { &mut bad.ciphertext };
            bytes[index] ^= 0x01;
            let err = open(&bob, b"aad", &bad).unwrap_err();
            assert!(err.to_string().starts_with("RV008"), "{err}");
        }
        let mut short = sealed.clone();
        short.kem_ciphertext.pop();
        assert!(matches!(open(&bob, b"aad", &short), Err(NetworkError::Decrypt(_))));
    }
}
