//! The filesystem's error type and the one place where errno is chosen.
//!
//! `FsError::errno` is an exhaustive match without a `_` arm: a new variant
//! does not compile until someone decides what the kernel sees.

use crate::crypto::CryptoError;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
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
    /// Data could not be fetched or committed; the message names the object.
    #[error("store error: {0}")]
    Store(#[from] StoreError),
    /// Ciphertext failed authentication: never return its bytes.
    #[error("integrity failure: {0}")]
    Integrity(#[from] CryptoError),
    /// Internal invariant broken or an earlier commit failed.
    #[error("I/O error: {0}")]
    Io(String),
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
            FsError::Io(_) => libc::EIO,
        }
    }
}

pub type FsResult<T> = Result<T, FsError>;
