//! The crate's error type: each variant carries the spec's RV code where one applies.

use std::path::PathBuf;

/// Everything this crate can fail with.
///
/// Messages start with the spec's code (§2.1 error codes) where one applies, so the SQL layer can pass them on
/// as they are: RV005 the network is unreachable, RV006 a peer or message failed authentication, RV007 an
/// operation is not covered (stake, privacy budget), RV008 a key, ciphertext or signature is malformed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NetworkError {
    /// A public or secret key could not be decoded.
    #[error("RV008 CRYPTO_ERROR: invalid {what}: {reason}")]
    InvalidKey {
        /// Which key, e.g. `ML-KEM-768 encapsulation key`.
        what: &'static str,
        /// Why it was refused.
        reason: String,
    },
    /// A sealed payload did not open: wrong recipient, altered bytes or a truncated box.
    #[error("RV008 CRYPTO_ERROR: sealed payload does not open ({0})")]
    Decrypt(&'static str),
    /// A signature did not verify, or could not be produced.
    #[error("RV006 QUDAG_AUTH_FAILED: {0}")]
    Signature(String),
    /// An envelope was refused by the receiver's checks.
    #[error("RV006 QUDAG_AUTH_FAILED: envelope rejected: {0}")]
    Rejected(crate::envelope::Rejection),
    /// The keystore file could not be used.
    #[error("keystore {path}: {reason}", path = path.display())]
    Keystore {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// Sharing would spend more privacy budget than the node has left.
    #[error(
        "RV007 INSUFFICIENT_BUDGET: releasing with epsilon {requested} would exceed the privacy budget \
         ({spent} of {total} spent)"
    )]
    BudgetExhausted {
        /// ε this release needs.
        requested: f64,
        /// ε spent so far.
        spent: f64,
        /// The node's total ε.
        total: f64,
    },
    /// A privacy parameter is out of range.
    #[error("invalid privacy parameter: {0}")]
    Privacy(String),
    /// Validators rejected an operation (stake, transfer, claim).
    #[error("RV007 INSUFFICIENT_STAKE: rejected by validators: {0}")]
    Refused(String),
    /// No connection to the network, or the node stopped.
    #[error("RV005 QUDAG_DISCONNECTED: {0}")]
    Disconnected(String),
    /// This node's previous item is still undecided.
    #[error("this node's previous item {0} is not decided yet; wait for it before submitting another")]
    Busy(String),
    /// An encoding failed (postcard/serde).
    #[error("encoding: {0}")]
    Encoding(String),
    /// File input/output.
    #[error("{path}: {source}", path = path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
}

impl NetworkError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io { path: path.into(), source }
    }

    pub(crate) fn keystore(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Self::Keystore { path: path.into(), reason: reason.into() }
    }
}

/// `Result` with [`NetworkError`].
pub type Result<T, E = NetworkError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_error<E: std::error::Error + Send + Sync + 'static>() {}

    #[test]
    fn is_a_standard_error_with_codes() {
        assert_error::<NetworkError>();
        let e = NetworkError::Decrypt("tag mismatch");
        assert!(e.to_string().starts_with("RV008"));
        let e = NetworkError::BudgetExhausted { requested: 1.0, spent: 9.5, total: 10.0 };
        assert!(e.to_string().starts_with("RV007"), "{e}");
    }
}
