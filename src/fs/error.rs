//! The filesystem's error type and the one place where errno is chosen.
//!
//! `FsError::errno` is an exhaustive match without a `_` arm: a new variant
//! does not compile until someone decides what the kernel sees.

use crate::crypto::CryptoError;
use crate::engine::{EngineError, Failure, Regressions};
use crate::store::StoreError;

#[derive(Clone, Debug, thiserror::Error)]
pub enum FsError {
    #[error("no such entry")]
    NotFound,
    #[error("entry exists")]
    Exists,
    #[error("not a directory")]
    NotDir,
    #[error("is a directory")]
    IsDir,
    #[error("directory not empty")]
    NotEmpty,
    #[error("operation not permitted")]
    NotPermitted,
    #[error("permission denied")]
    AccessDenied,
    #[error("invalid argument")]
    Invalid,
    #[error("name too long")]
    NameTooLong,
    #[error("no such attribute")]
    NoAttr,
    #[error("buffer too small")]
    Range,
    #[error("argument too large")]
    TooBig,
    #[error("no data or hole past the end")]
    NoSuchAddress,
    #[error("too many links")]
    TooManyLinks,
    #[error("file too large")]
    FileTooBig,
    #[error("bad file handle")]
    BadHandle,
    #[error("operation not supported")]
    NotSupported,
    #[error("read-only filesystem")]
    ReadOnly,
    #[error("no space in the cache for dirty data")]
    NoSpace,
    /// A store call failed after its retries; the error names the object
    /// and says whether the store was unreachable or refused.
    #[error("{0}")]
    Store(#[from] StoreError),
    /// Ciphertext failed authentication: never return its bytes.
    #[error("integrity failure: {0}")]
    Integrity(#[from] CryptoError),
    /// Persisted state contradicts itself (names the object).
    #[error("corrupt volume: {0}")]
    Corrupt(String),
    /// The volume cannot commit: fenced, store unavailable, abandoned.
    #[error("{0}")]
    Failed(#[from] Failure),
    /// Opening found an older state than one seen (refused).
    #[error("refusing an older state: {0}")]
    Rollback(Regressions),
}

impl From<EngineError> for FsError {
    fn from(e: EngineError) -> FsError {
        match e {
            EngineError::Failed(f) => FsError::Failed(f),
            EngineError::Store(s) => FsError::Store(s),
            EngineError::Integrity(c) => FsError::Integrity(c),
            EngineError::Corrupt(c) => FsError::Corrupt(c.0),
            EngineError::ReadOnly => FsError::ReadOnly,
            EngineError::Rollback(r) => FsError::Rollback(r),
            EngineError::Invalid(_) => FsError::Invalid,
            EngineError::Locked => FsError::AccessDenied,
        }
    }
}

impl FsError {
    pub fn errno(&self) -> i32 {
        match self {
            FsError::NotFound => libc::ENOENT,
            FsError::Exists => libc::EEXIST,
            FsError::NotDir => libc::ENOTDIR,
            FsError::IsDir => libc::EISDIR,
            FsError::NotEmpty => libc::ENOTEMPTY,
            FsError::NotPermitted => libc::EPERM,
            FsError::AccessDenied => libc::EACCES,
            FsError::Invalid => libc::EINVAL,
            FsError::NameTooLong => libc::ENAMETOOLONG,
            FsError::NoAttr => libc::ENODATA,
            FsError::Range => libc::ERANGE,
            FsError::TooBig => libc::E2BIG,
            FsError::NoSuchAddress => libc::ENXIO,
            FsError::TooManyLinks => libc::EMLINK,
            FsError::FileTooBig => libc::EFBIG,
            FsError::BadHandle => libc::EBADF,
            // EOPNOTSUPP, never ENOSYS: the kernel caches ENOSYS forever.
            FsError::NotSupported => libc::EOPNOTSUPP,
            FsError::ReadOnly => libc::EROFS,
            FsError::NoSpace => libc::ENOSPC,
            // A missing or unreadable object is an I/O error to the caller,
            // whatever the store said.
            FsError::Store(_) => libc::EIO,
            FsError::Integrity(_) => libc::EIO,
            FsError::Corrupt(_) => libc::EIO,
            // Writes are refused with EROFS before they get here
            // (`check_writable`); what is left is a commit or flush that
            // cannot happen: the data is not durable.
            FsError::Failed(_) => libc::EIO,
            // Only opening finds these; no request ever sees one.
            FsError::Rollback(_) => libc::EIO,
        }
    }
}

pub type FsResult<T> = Result<T, FsError>;
