//! STORE arguments: what they name and how to open them.
//!
//! `PATH` and `file://PATH` name a local directory; `s3://BUCKET[/PREFIX]`
//! names a bucket prefix (not supported yet: a `StoreSpec::S3` arm in each
//! method below is where it slots in). Every method returns a
//! `dyn ObjectStore`, so the commands never know which kind they hold.
//!
//! Local directories are checked here, before any store call, so that a
//! missing or wrong directory is a one-line usage error (exit 1) rather
//! than an I/O error from deep inside the store.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::error::{CliError, CliResult, EXIT_STORE};
use crate::store::{LocalStore, ObjectStore};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreSpec {
    Local(PathBuf),
    S3 { bucket: String, prefix: String },
}

/// Keeps a store-level lock (the local directory's `flock`) for as long as
/// it lives; shared with a child made by `fork`.
pub type LockGuard = Box<dyn Send>;

impl StoreSpec {
    pub fn parse(arg: &str) -> CliResult<StoreSpec> {
        if let Some(rest) = arg.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(CliError::usage(format!("invalid store {arg:?}: no bucket")));
            }
            return Ok(StoreSpec::S3 {
                bucket: bucket.to_string(),
                prefix: prefix.trim_matches('/').to_string(),
            });
        }
        let path = arg.strip_prefix("file://").unwrap_or(arg);
        if path.is_empty() {
            return Err(CliError::usage("invalid store: empty path"));
        }
        if arg.contains("://") && !arg.starts_with("file://") {
            return Err(CliError::usage(format!("unsupported store {arg:?}")));
        }
        Ok(StoreSpec::Local(PathBuf::from(path)))
    }

    /// Opens an existing store.
    pub fn open(&self) -> CliResult<Arc<dyn ObjectStore>> {
        match self {
            StoreSpec::Local(path) => {
                check_dir(path)?;
                Ok(Arc::new(LocalStore::open(path)?))
            }
            StoreSpec::S3 { .. } => Err(s3_unsupported()),
        }
    }

    /// The same store named independently of the working directory (the
    /// daemon moves to `/` after forking).
    pub fn resolved(&self) -> CliResult<StoreSpec> {
        match self {
            StoreSpec::Local(path) => std::fs::canonicalize(path)
                .map(StoreSpec::Local)
                .map_err(|e| dir_error(path, e)),
            StoreSpec::S3 { .. } => Ok(self.clone()),
        }
    }

    /// Opens the store for `init`, creating a missing local directory
    /// (its parent must exist: a typo should not create a tree).
    pub fn create(&self) -> CliResult<Arc<dyn ObjectStore>> {
        match self {
            StoreSpec::Local(path) => {
                match std::fs::metadata(path) {
                    Ok(_) => check_dir(path)?,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {
                        let parent = match path.parent() {
                            Some(p) if !p.as_os_str().is_empty() => p,
                            _ => Path::new("."),
                        };
                        check_dir(parent).map_err(|e| {
                            e.context(&format!("cannot create store {}", path.display()))
                        })?;
                    }
                    Err(e) => return Err(dir_error(path, e)),
                }
                Ok(Arc::new(LocalStore::create(path)?))
            }
            StoreSpec::S3 { .. } => Err(s3_unsupported()),
        }
    }

    /// Takes the store's exclusive lock for a read-write mount or an init.
    /// `None` where the store has no such lock (the lease is then the only
    /// guard, and the filesystem core takes it).
    pub fn lock(&self) -> CliResult<Option<LockGuard>> {
        match self {
            StoreSpec::Local(path) => {
                let guard = LocalStore::open(path)?.lock_exclusive()?;
                Ok(Some(Box::new(guard)))
            }
            StoreSpec::S3 { .. } => Err(s3_unsupported()),
        }
    }
}

fn s3_unsupported() -> CliError {
    CliError::usage("S3 stores are not supported yet")
}

fn check_dir(path: &Path) -> CliResult<()> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(CliError::usage(format!(
            "store {} is not a directory",
            path.display()
        ))),
        Err(e) => Err(dir_error(path, e)),
    }
}

fn dir_error(path: &Path, e: io::Error) -> CliError {
    match e.kind() {
        io::ErrorKind::NotFound => {
            CliError::usage(format!("store directory {} does not exist", path.display()))
        }
        io::ErrorKind::PermissionDenied => CliError::new(
            EXIT_STORE,
            format!("access to store {} denied", path.display()),
        ),
        _ => CliError::new(EXIT_STORE, format!("store {}: {e}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_forms() {
        assert_eq!(
            StoreSpec::parse("/var/vol").unwrap(),
            StoreSpec::Local("/var/vol".into())
        );
        assert_eq!(
            StoreSpec::parse("file:///var/vol").unwrap(),
            StoreSpec::Local("/var/vol".into())
        );
        assert_eq!(
            StoreSpec::parse("rel/vol").unwrap(),
            StoreSpec::Local("rel/vol".into())
        );
        assert_eq!(
            StoreSpec::parse("s3://bucket/some/prefix/").unwrap(),
            StoreSpec::S3 {
                bucket: "bucket".into(),
                prefix: "some/prefix".into()
            }
        );
        assert_eq!(
            StoreSpec::parse("s3://bucket").unwrap(),
            StoreSpec::S3 {
                bucket: "bucket".into(),
                prefix: String::new()
            }
        );
        assert!(StoreSpec::parse("s3://").is_err());
        assert!(StoreSpec::parse("").is_err());
        assert!(StoreSpec::parse("file://").is_err());
        assert!(StoreSpec::parse("gs://bucket").is_err());
    }

    #[test]
    fn s3_is_not_supported_yet() {
        let s3 = StoreSpec::parse("s3://b/p").unwrap();
        let e = s3.open().err().unwrap();
        assert_eq!(
            (e.code, e.msg.as_str()),
            (1, "S3 stores are not supported yet")
        );
    }

    #[test]
    fn local_directory_checks() {
        let dir = tempfile::tempdir().unwrap();
        let missing = StoreSpec::Local(dir.path().join("nope"));
        assert_eq!(missing.open().err().unwrap().code, 1);
        let file = dir.path().join("file");
        std::fs::write(&file, b"x").unwrap();
        let e = StoreSpec::Local(file).open().err().unwrap();
        assert_eq!(e.code, 1);
        assert!(e.msg.contains("not a directory"));
        let real = std::fs::canonicalize(dir.path()).unwrap();
        let here = StoreSpec::Local(dir.path().join("."));
        assert_eq!(here.resolved().unwrap(), StoreSpec::Local(real));
        let orphan = StoreSpec::Local(dir.path().join("no/parent"));
        assert_eq!(orphan.create().err().unwrap().code, 1);
    }
}
