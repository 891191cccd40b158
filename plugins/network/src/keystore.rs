//! The node's keys on disk, encrypted at rest.
//!
//! A keystore file holds the node's public identity in the clear (so tools can show the node id without the
//! passphrase) and its two secret seeds encrypted with ChaCha20-Poly1305 under a key derived from a passphrase
//! with Argon2id; the public part is the associated data, so swapping it is detected on open. The file is
//! created with mode 0600 and refused on open when group or others may read it. Seeds and derived keys are
//! zeroized after use.

use crate::error::{NetworkError, Result};
use crate::identity::{KEM_SEED_LEN, NodeIdentity, PublicIdentity, SIGNING_SEED_LEN, os_random};
use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::{ChaCha20Poly1305, KeyInit, Nonce};
use serde::{Deserialize, Serialize};
use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

const MAGIC: [u8; 8] = *b"RVDAGKS1";
const FORMAT_VERSION: u16 = 1;

/// Argon2id cost parameters stored with the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct KdfCost {
    /// Memory in KiB.
    pub memory_kib: u32,
    /// Passes.
    pub iterations: u32,
    /// Lanes.
    pub parallelism: u32,
}

impl Default for KdfCost {
    /// OWASP's Argon2id baseline: 19 MiB, 2 passes, 1 lane.
    fn default() -> Self {
        Self { memory_kib: 19 * 1024, iterations: 2, parallelism: 1 }
    }
}

#[derive(Serialize, Deserialize)]
struct File {
    magic: [u8; 8],
    version: u16,
    cost: KdfCost,
    salt: [u8; 16],
    public: PublicIdentity,
    ciphertext: Vec<u8>,
}

/// Reads and writes a node's identity file.
#[derive(Debug)]
pub struct Keystore;

impl Keystore {
    /// Writes `identity` to a new file at `path` (mode 0600), encrypted under `passphrase`. Refuses to overwrite.
    pub fn create(path: &Path, passphrase: &[u8], identity: &NodeIdentity, cost: KdfCost) -> Result<()> {
        if passphrase.is_empty() {
            return Err(NetworkError::keystore(path, "an empty passphrase would leave the keys unprotected"));
        }
        let mut salt = [0u8; 16];
        os_random(&mut salt);
        let key = derive(path, passphrase, &salt, cost)?;
        let public = identity.public().clone();
        let aad = postcard::to_stdvec(&public).map_err(|e| NetworkError::Encoding(e.to_string()))?;
        let (signing, kem) = identity.seeds();
        let mut plain = Zeroizing::new([0u8; SIGNING_SEED_LEN + KEM_SEED_LEN]);
        plain[..SIGNING_SEED_LEN].copy_from_slice(signing);
        plain[SIGNING_SEED_LEN..].copy_from_slice(kem);
        let ciphertext = ChaCha20Poly1305::new((&*key).into())
            .encrypt(&Nonce::default(), Payload { msg: &plain[..], aad: &aad })
            .map_err(|_| NetworkError::keystore(path, "encryption failed"))?;
        let file = File { magic: MAGIC, version: FORMAT_VERSION, cost, salt, public, ciphertext };
        let bytes = postcard::to_stdvec(&file).map_err(|e| NetworkError::Encoding(e.to_string()))?;
        write_private(path, &bytes)
    }

    /// Reads the identity at `path`, decrypting it with `passphrase`.
    pub fn open(path: &Path, passphrase: &[u8]) -> Result<NodeIdentity> {
        let file = read(path)?;
        let key = derive(path, passphrase, &file.salt, file.cost)?;
        let aad = postcard::to_stdvec(&file.public).map_err(|e| NetworkError::Encoding(e.to_string()))?;
        let plain = Zeroizing::new(
            ChaCha20Poly1305::new((&*key).into())
                .decrypt(&Nonce::default(), Payload { msg: &file.ciphertext, aad: &aad })
                .map_err(|_| NetworkError::keystore(path, "wrong passphrase, or the file was altered"))?,
        );
        if plain.len() != SIGNING_SEED_LEN + KEM_SEED_LEN {
            return Err(NetworkError::keystore(path, "secret part has the wrong length"));
        }
        let mut signing = Zeroizing::new([0u8; SIGNING_SEED_LEN]);
        let mut kem = Zeroizing::new([0u8; KEM_SEED_LEN]);
        signing.copy_from_slice(&plain[..SIGNING_SEED_LEN]);
        kem.copy_from_slice(&plain[SIGNING_SEED_LEN..]);
        let identity = NodeIdentity::from_seeds(&signing, &kem);
        if identity.public() != &file.public {
            return Err(NetworkError::keystore(path, "the secret keys do not match the stored public identity"));
        }
        Ok(identity)
    }

    /// The public identity stored at `path`, without the passphrase.
    pub fn public(path: &Path) -> Result<PublicIdentity> {
        Ok(read(path)?.public)
    }

    /// Opens the identity at `path`, or creates one there if no file exists.
    pub fn open_or_create(path: &Path, passphrase: &[u8], cost: KdfCost) -> Result<NodeIdentity> {
        if path.exists() {
            return Self::open(path, passphrase);
        }
        let identity = NodeIdentity::generate();
        match Self::create(path, passphrase, &identity, cost) {
            Ok(()) => Ok(identity),
            // Another process created it meanwhile: theirs is the node's identity.
            Err(_) if path.exists() => Self::open(path, passphrase),
            Err(e) => Err(e),
        }
    }
}

fn derive(path: &Path, passphrase: &[u8], salt: &[u8; 16], cost: KdfCost) -> Result<Zeroizing<[u8; 32]>> {
    let params = argon2::Params::new(cost.memory_kib, cost.iterations, cost.parallelism, Some(32))
        .map_err(|e| NetworkError::keystore(path, format!("Argon2 parameters: {e}")))?;
    let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let mut key = Zeroizing::new([0u8; 32]);
    argon
        .hash_password_into(passphrase, salt, &mut key[..])
        .map_err(|e| NetworkError::keystore(path, format!("Argon2: {e}")))?;
    Ok(key)
}

fn read(path: &Path) -> Result<File> {
    let meta = fs::metadata(path).map_err(|e| NetworkError::io(path, e))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(NetworkError::keystore(
            path,
            format!("mode {mode:04o} lets group or others read the keys; run chmod 600 on it"),
        ));
    }
    let bytes = fs::read(path).map_err(|e| NetworkError::io(path, e))?;
    let file: File = postcard::from_bytes(&bytes)
        .map_err(|e| NetworkError::keystore(path, format!("not a ruvector-dag keystore ({e})")))?;
    if file.magic != MAGIC {
        return Err(NetworkError::keystore(path, "not a ruvector-dag keystore (bad magic)"));
    }
    if file.version != FORMAT_VERSION {
        return Err(NetworkError::keystore(path, format!("unknown keystore version {}", file.version)));
    }
    Ok(file)
}

/// Writes `bytes` to `path` through a 0600 temporary file in the same directory, then renames it into place,
/// refusing to replace an existing file.
fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    if path.exists() {
        return Err(NetworkError::keystore(path, "already exists; refusing to overwrite a node identity"));
    }
    // A name of its own per writer: concurrent creators (PostgreSQL backends and the worker on first use) and a
    // file left by a crash never collide with this one.
    let mut nonce = [0u8; 8];
    os_random(&mut nonce);
    let tmp: PathBuf =
        path.with_extension(format!("tmp-keystore-{}-{:016x}", std::process::id(), u64::from_le_bytes(nonce)));
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| NetworkError::io(&tmp, e))?;
    f.write_all(bytes).and_then(|()| f.sync_all()).map_err(|e| NetworkError::io(&tmp, e))?;
    drop(f);
    // hard_link + remove refuses to replace a file created meanwhile (rename would overwrite it).
    let linked = fs::hard_link(&tmp, path).map_err(|e| NetworkError::io(path, e));
    let _ = fs::remove_file(&tmp);
    linked
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Cheap parameters so tests stay fast; the format stores them.
    const CHEAP: KdfCost = KdfCost { memory_kib: 64, iterations: 1, parallelism: 1 };

    #[test]
    fn concurrent_creators_agree_on_one_identity() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.key");
        let ids: Vec<_> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|_| s.spawn(|| Keystore::open_or_create(&path, b"pass", CHEAP).unwrap().peer_id()))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");
        // Nothing left behind but the keystore.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn round_trip_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.key");
        let id = NodeIdentity::generate();
        Keystore::create(&path, b"correct horse", &id, CHEAP).unwrap();
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let back = Keystore::open(&path, b"correct horse").unwrap();
        assert_eq!(back.public(), id.public());
        assert_eq!(Keystore::public(&path).unwrap().peer_id(), id.peer_id());
        // The seeds are not in the file in the clear.
        let bytes = fs::read(&path).unwrap();
        let (signing, _) = id.seeds();
        assert!(!bytes.windows(32).any(|w| w == signing));
    }

    #[test]
    fn refuses_wrong_passphrase_loose_mode_overwrite_and_tampering() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.key");
        let id = NodeIdentity::generate();
        Keystore::create(&path, b"pw", &id, CHEAP).unwrap();
        let err = Keystore::open(&path, b"pW").unwrap_err();
        assert!(err.to_string().contains("wrong passphrase"), "{err}");
        let err = Keystore::create(&path, b"pw", &id, CHEAP).unwrap_err();
        assert!(err.to_string().contains("refusing to overwrite"), "{err}");

        // Another node's public identity spliced in: the associated data no longer matches.
        let mut file: File = postcard::from_bytes(&fs::read(&path).unwrap()).unwrap();
        file.public = NodeIdentity::generate().public().clone();
        let spliced = dir.path().join("spliced.key");
        write_private(&spliced, &postcard::to_stdvec(&file).unwrap()).unwrap();
        assert!(Keystore::open(&spliced, b"pw").unwrap_err().to_string().contains("altered"));

        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let err = Keystore::open(&path, b"pw").unwrap_err();
        assert!(err.to_string().contains("chmod 600"), "{err}");

        let junk = dir.path().join("junk.key");
        write_private(&junk, b"hello").unwrap();
        assert!(Keystore::open(&junk, b"pw").unwrap_err().to_string().contains("not a ruvector-dag keystore"));
        assert!(Keystore::create(&dir.path().join("e.key"), b"", &id, CHEAP).is_err());
    }

    #[test]
    fn open_or_create_keeps_the_identity() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.key");
        let first = Keystore::open_or_create(&path, b"pw", CHEAP).unwrap();
        let again = Keystore::open_or_create(&path, b"pw", CHEAP).unwrap();
        assert_eq!(first.peer_id(), again.peer_id());
    }
}
