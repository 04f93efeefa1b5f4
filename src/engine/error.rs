//! The engine's failures: what a caller was told, and what the volume is.
//!
//! [`Failure`] is the engine's state when it cannot commit: sticky for a
//! fenced, corrupt or abandoned engine (nothing will ever commit again),
//! passing for a store that did not take a commit before its deadline (the
//! next successful commit clears it). [`EngineError`] is one call's error.

use super::rollback::Regressions;
use crate::crypto::CryptoError;
use crate::meta::{Corrupt, MetaError};
use crate::store::StoreError;

#[derive(Clone, Debug, thiserror::Error)]
pub enum Failure {
    /// Another writer owns the volume now: it committed at a sequence
    /// number we needed, or our lease was lost.
    #[error("fenced by another writer: {0}")]
    Fenced(String),
    /// The store did not take a commit before its deadline, or refused it.
    /// Everything not yet committed stays in memory and is retried.
    #[error("store unavailable: {0}")]
    StoreUnavailable(StoreError),
    /// The volume's own state contradicts itself (names the object).
    #[error("corrupt volume: {0}")]
    Corrupt(String),
    /// Shut down without committing (a simulated crash in tests).
    #[error("abandoned without committing")]
    Abandoned,
}

impl Failure {
    /// Sticky failures never clear: nothing will commit again.
    pub fn is_sticky(&self) -> bool {
        match self {
            Failure::Fenced(_) | Failure::Corrupt(_) | Failure::Abandoned => true,
            Failure::StoreUnavailable(_) => false,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The engine cannot commit (see [`Failure`]).
    #[error(transparent)]
    Failed(#[from] Failure),
    /// A store call failed after its retries.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A sealed object failed authentication; never use its bytes.
    #[error("integrity failure: {0}")]
    Integrity(#[from] CryptoError),
    /// Persisted state contradicts itself.
    #[error(transparent)]
    Corrupt(#[from] Corrupt),
    /// A change to a read-only engine.
    #[error("the volume is open read-only")]
    ReadOnly,
    /// The state found is older than one seen (see `rollback`).
    #[error("{0}")]
    Rollback(Regressions),
    /// A request the engine refuses as given (a snapshot name taken, or
    /// not there); the message says why.
    #[error("{0}")]
    Invalid(String),
    /// The mount is locked (`sealedfs lock`): its keys are wiped.
    #[error("the mount is locked")]
    Locked,
}

impl EngineError {
    /// Stored bytes failed authentication or contradict each other (as
    /// opposed to a store that did not answer).
    pub fn is_integrity(&self) -> bool {
        matches!(self, EngineError::Integrity(_) | EngineError::Corrupt(_))
            || matches!(self, EngineError::Failed(Failure::Corrupt(_)))
    }
}

impl From<MetaError> for EngineError {
    fn from(e: MetaError) -> EngineError {
        match e {
            MetaError::Store(s) => EngineError::Store(s),
            MetaError::Crypto(c) => EngineError::Integrity(c),
            MetaError::Corrupt(c) => EngineError::Corrupt(c),
        }
    }
}

pub type EngineResult<T> = Result<T, EngineError>;
