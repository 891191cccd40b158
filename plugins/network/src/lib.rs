//! Pattern sharing between ruvector-dag servers.
//!
//! This crate holds the parts of the network that do not need a socket: node identities (ML-DSA-65 signing,
//! ML-KEM-768 key encapsulation, RustCrypto implementations checked against NIST's ACVP vectors in
//! `tests/acvp.rs`), an encrypted keystore, payload sealing, signed envelopes with the receiver's checks
//! (forgery, replay, clock window, size, version, context), and differentially private patterns (an exact
//! discrete Laplace mechanism on a clipped, quantised lattice, with a persisted per-node ε budget).

pub mod envelope;
mod error;
pub mod identity;
pub mod keystore;
pub mod loopback;
pub mod node;
pub mod privacy;
pub mod protocol;
pub mod seal;
pub mod state;
pub mod tls;

pub use envelope::{EnvelopeSigner, EnvelopeVerifier, MessageKind, Rejection, RejectionCounts, VerifierPolicy};
pub use error::{NetworkError, Result};
pub use identity::{NodeIdentity, PublicIdentity, peer_id_of};
pub use keystore::Keystore;
pub use privacy::{NoiseSpec, PrivacyBudget, PrivatePattern, SampleBucket, laplace_noise};
pub use seal::{SealedBox, open, seal};
