//! Pattern sharing between ruvector-dag servers.
//!
//! - Crypto: node identities (ML-DSA-65 signing, ML-KEM-768 key encapsulation, RustCrypto implementations
//!   checked against NIST's ACVP vectors in `tests/acvp.rs`), an encrypted keystore, payload sealing.
//! - Messages: signed envelopes with the receiver's checks (forgery, replay, clock window, size, version,
//!   context); differentially private patterns (an exact discrete Laplace mechanism on a clipped, quantised
//!   lattice, with a persisted per-node ε budget).
//! - Agreement ([`protocol`], [`state`], [`node`]): items endorsed by more than 2/3 of the validator stake are
//!   final, more than 1/3 rejecting rejects them; per-account sequence numbers rule out double spending; the rUv
//!   ledger and governance are derived from the decided set, so every honest node converges.
//! - Transports: [`loopback`] in process, [`tls`] over TCP with TLS 1.3 and X25519MLKEM768; [`service`] runs a
//!   node on a tokio runtime; [`LocalTestnet`] and [`QuDagClient`] for users.

pub mod client;
pub mod envelope;
mod error;
pub mod identity;
pub mod journal;
pub mod keystore;
pub mod loopback;
pub mod node;
pub mod plugins;
pub mod privacy;
pub mod protocol;
pub mod seal;
pub mod service;
pub mod state;
pub mod testnet;
pub mod tls;

pub use client::{ClientOptions, ConsensusStatus, Endpoint, PatternProposal, ProposalId, QuDagClient};
pub use envelope::{EnvelopeSigner, EnvelopeVerifier, MessageKind, Rejection, RejectionCounts, VerifierPolicy};
pub use error::{NetworkError, Result};
pub use identity::{KemSecretKey, NodeIdentity, PublicIdentity, peer_id_of, verify_signature};
pub use keystore::Keystore;
pub use privacy::{NoiseSpec, PrivacyBudget, PrivatePattern, SampleBucket, laplace_noise};
pub use seal::{SealedBox, decrypt_at_rest, encrypt_at_rest, open, open_with_kem_key, seal, seal_to_kem_key};
pub use service::{ConsensusPattern, NodeService, NodeStatus, ServiceOptions};
pub use testnet::{LocalTestnet, TestnetOptions};
