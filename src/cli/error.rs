//! The CLI's error: an exit code and a one-line reason.
//!
//! Scripts rely on the exit codes (DESIGN.md, "Command line"), so the code
//! of every lower-layer error is chosen here, in exhaustive matches without
//! a `_` arm: a new variant in `fs`, `store`, `crypto` or `volume` does not
//! compile until someone decides what a script sees.
//!
//! | code | meaning |
//! |---|---|
//! | 0 | ok |
//! | 1 | usage or bad input: missing/busy mountpoint, not a volume, unknown format version |
//! | 2 | wrong passphrase or key |
//! | 3 | store unreachable or access denied |
//! | 4 | volume busy (lock or lease held elsewhere) |
//! | 5 | integrity failure |

use std::fmt;

use crate::crypto::CryptoError;
use crate::engine::{EngineError, Failure};
use crate::fs::FsError;
use crate::store::StoreError;
use crate::volume::HeaderError;

pub const EXIT_USAGE: i32 = 1;
pub const EXIT_WRONG_KEY: i32 = 2;
pub const EXIT_STORE: i32 = 3;
pub const EXIT_BUSY: i32 = 4;
pub const EXIT_INTEGRITY: i32 = 5;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CliError {
    pub code: i32,
    /// One line, without the `sealedfs: ` prefix.
    pub msg: String,
}

pub type CliResult<T> = Result<T, CliError>;

impl CliError {
    /// Builds an error; a multi-line message (a helper's stderr) is folded
    /// into one line, since every failure prints exactly one.
    pub fn new(code: i32, msg: impl Into<String>) -> CliError {
        let msg: String = msg.into();
        let msg = msg.split_whitespace().collect::<Vec<_>>().join(" ");
        CliError { code, msg }
    }

    pub fn usage(msg: impl Into<String>) -> CliError {
        CliError::new(EXIT_USAGE, msg)
    }

    /// Prefixes the reason with what was being done.
    pub fn context(self, what: &str) -> CliError {
        CliError::new(self.code, format!("{what}: {}", self.msg))
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.msg)
    }
}

impl From<StoreError> for CliError {
    fn from(e: StoreError) -> CliError {
        let code = match &e {
            // The local advisory lock: another read-write mount of this
            // directory on this host.
            StoreError::Locked => {
                return CliError::new(
                    EXIT_BUSY,
                    "volume is already mounted read-write (lock held)",
                );
            }
            // A missing object that the volume's own metadata references
            // means a damaged volume. (A missing header is turned into
            // "not a sealedfs volume" where the header is read.)
            StoreError::NotFound { .. } => EXIT_INTEGRITY,
            // Create-only writes lose only to another writer: fenced.
            StoreError::AlreadyExists { .. } => EXIT_BUSY,
            // Only the lease and header are replaced conditionally: losing
            // that race means another writer got there first.
            StoreError::PreconditionFailed { .. } => EXIT_BUSY,
            StoreError::AccessDenied { .. } => EXIT_STORE,
            StoreError::Unavailable { .. } => EXIT_STORE,
            StoreError::Io { .. } => EXIT_STORE,
            StoreError::Injected { .. } => EXIT_STORE,
        };
        CliError::new(code, e.to_string())
    }
}

impl From<CryptoError> for CliError {
    fn from(e: CryptoError) -> CliError {
        let code = match &e {
            CryptoError::WrongKey => EXIT_WRONG_KEY,
            CryptoError::Authentication { .. } => EXIT_INTEGRITY,
            // Bytes that cannot be a sealed unit or keyslot: damage.
            CryptoError::Malformed(_) => EXIT_INTEGRITY,
        };
        let msg = match &e {
            CryptoError::WrongKey => "wrong passphrase".to_string(),
            CryptoError::Authentication { .. } | CryptoError::Malformed(_) => {
                format!("integrity failure: {e}")
            }
        };
        CliError::new(code, msg)
    }
}

impl From<HeaderError> for CliError {
    fn from(e: HeaderError) -> CliError {
        let code = match &e {
            HeaderError::Crypto(inner) => return inner.clone().into(),
            HeaderError::NotAVolume => EXIT_USAGE,
            HeaderError::UnsupportedVersion(_) => EXIT_USAGE,
            // The magic matched but the rest does not parse: a damaged
            // header, not a foreign directory.
            HeaderError::Malformed(_) => EXIT_INTEGRITY,
            // Bad arguments to `init` and keyslot management.
            HeaderError::InvalidChunkSize(_)
            | HeaderError::InvalidKdf(_)
            | HeaderError::KeyslotsFull
            | HeaderError::LastKeyslot
            | HeaderError::SlotRefused(_)
            | HeaderError::NoSuchKeyslot(_)
            | HeaderError::OldKeyslot(_) => EXIT_USAGE,
        };
        CliError::new(code, e.to_string())
    }
}

impl From<Failure> for CliError {
    fn from(f: Failure) -> CliError {
        let code = match &f {
            // Another writer owns the volume now.
            Failure::Fenced(_) => EXIT_BUSY,
            Failure::StoreUnavailable(inner) => CliError::from(inner.clone()).code,
            Failure::Corrupt(_) => EXIT_INTEGRITY,
            // Only a simulated crash abandons an engine.
            Failure::Abandoned => EXIT_USAGE,
        };
        CliError::new(code, f.to_string())
    }
}

impl From<crate::meta::MetaError> for CliError {
    fn from(e: crate::meta::MetaError) -> CliError {
        EngineError::from(e).into()
    }
}

impl From<EngineError> for CliError {
    fn from(e: EngineError) -> CliError {
        match e {
            EngineError::Invalid(why) => CliError::usage(why),
            other => FsError::from(other).into(),
        }
    }
}

impl From<FsError> for CliError {
    fn from(e: FsError) -> CliError {
        let code = match e {
            FsError::Store(inner) => return inner.into(),
            FsError::Integrity(inner) => return inner.into(),
            FsError::Failed(inner) => return inner.into(),
            // Replay found state that cannot be: the volume is damaged.
            FsError::Corrupt(_) => EXIT_INTEGRITY,
            FsError::Rollback(r) => {
                return CliError::new(
                    EXIT_INTEGRITY,
                    format!(
                        "refusing to mount: {r}; if that is expected, mount with --accept-rollback"
                    ),
                );
            }
            // POSIX-level errors do not come out of format/open/shutdown in
            // normal operation; if one does, it is bad input for this volume.
            FsError::NotFound
            | FsError::Exists
            | FsError::NotDir
            | FsError::IsDir
            | FsError::NotEmpty
            | FsError::NotPermitted
            | FsError::AccessDenied
            | FsError::Invalid
            | FsError::NameTooLong
            | FsError::TooBig
            | FsError::NoSuchAddress
            | FsError::NoAttr
            | FsError::Range
            | FsError::TooManyLinks
            | FsError::FileTooBig
            | FsError::BadHandle
            | FsError::NotSupported
            | FsError::ReadOnly
            | FsError::NoSpace => EXIT_USAGE,
        };
        CliError::new(code, e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;

    #[test]
    fn messages_are_one_line() {
        let e = CliError::usage("fusermount3: bad\n  things\n");
        assert_eq!(e.msg, "fusermount3: bad things");
        assert_eq!(e.context("mount").msg, "mount: fusermount3: bad things");
    }

    #[test]
    fn store_codes() {
        let e = CliError::from(StoreError::Locked);
        assert_eq!(e.code, EXIT_BUSY);
        assert_eq!(e.msg, "volume is already mounted read-write (lock held)");
        let io = StoreError::Io {
            key: "volume".into(),
            kind: io::ErrorKind::StorageFull,
            reason: "no space".into(),
        };
        assert_eq!(CliError::from(io).code, EXIT_STORE);
        let down = StoreError::Unavailable {
            key: "volume".into(),
            reason: "no answer within 30s".into(),
        };
        assert_eq!(CliError::from(down).code, EXIT_STORE);
        let denied = StoreError::AccessDenied {
            key: "volume".into(),
            reason: "403".into(),
        };
        assert_eq!(CliError::from(denied).code, EXIT_STORE);
        let missing = StoreError::NotFound {
            key: "data/ab/cd".into(),
        };
        assert_eq!(CliError::from(missing).code, EXIT_INTEGRITY);
        let taken = StoreError::AlreadyExists {
            key: "meta/journal/1".into(),
        };
        assert_eq!(CliError::from(taken).code, EXIT_BUSY);
    }

    #[test]
    fn crypto_and_header_codes() {
        let e = CliError::from(CryptoError::WrongKey);
        assert_eq!(
            (e.code, e.msg.as_str()),
            (EXIT_WRONG_KEY, "wrong passphrase")
        );
        let auth = CryptoError::Authentication {
            object: "meta/journal/7".into(),
            unit: 3,
        };
        assert_eq!(CliError::from(auth).code, EXIT_INTEGRITY);
        assert_eq!(
            CliError::from(CryptoError::Malformed("x".into())).code,
            EXIT_INTEGRITY
        );
        assert_eq!(CliError::from(HeaderError::NotAVolume).code, EXIT_USAGE);
        assert_eq!(
            CliError::from(HeaderError::UnsupportedVersion(99)).code,
            EXIT_USAGE
        );
        assert_eq!(
            CliError::from(HeaderError::Malformed("x".into())).code,
            EXIT_INTEGRITY
        );
        assert_eq!(
            CliError::from(HeaderError::InvalidChunkSize(3)).code,
            EXIT_USAGE
        );
        assert_eq!(
            CliError::from(HeaderError::Crypto(CryptoError::WrongKey)).code,
            EXIT_WRONG_KEY
        );
    }

    #[test]
    fn fs_codes_follow_the_inner_error() {
        assert_eq!(
            CliError::from(FsError::Integrity(CryptoError::WrongKey)).code,
            EXIT_WRONG_KEY
        );
        let store = StoreError::AccessDenied {
            key: "k".into(),
            reason: "r".into(),
        };
        assert_eq!(CliError::from(FsError::Store(store)).code, EXIT_STORE);
        assert_eq!(
            CliError::from(FsError::Corrupt("bad".into())).code,
            EXIT_INTEGRITY
        );
        let down = StoreError::Unavailable {
            key: "meta/journal/0000000000000007".into(),
            reason: "no answer within 30s".into(),
        };
        assert_eq!(
            CliError::from(FsError::Failed(Failure::StoreUnavailable(down))).code,
            EXIT_STORE
        );
        assert_eq!(
            CliError::from(FsError::Failed(Failure::Fenced("lease lost".into()))).code,
            EXIT_BUSY
        );
        assert_eq!(
            CliError::from(FsError::Failed(Failure::Corrupt("x".into()))).code,
            EXIT_INTEGRITY
        );
        assert_eq!(CliError::from(FsError::ReadOnly).code, EXIT_USAGE);
    }
}
