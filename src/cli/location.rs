//! STORE arguments: what they name and how to open them.
//!
//! `PATH` and `file://PATH` name a local directory; `s3://BUCKET[/PREFIX]`
//! names a bucket prefix, reached as the `S3Args` flags say (attach them
//! with [`StoreSpec::with_s3`]). Every method returns a
//! `dyn ObjectStore`, so the commands never know which kind they hold.
//!
//! Stores come back wrapped in a [`RetryingStore`] with a short deadline
//! fit for a command someone waits on ([`FOREGROUND_DEADLINE`]); the
//! daemon takes a bare one ([`StoreSpec::open_bare`]) and stacks its own
//! decorators (the lease's gate, its own deadline).
//!
//! Opening an S3 store checks the bucket (a wrong endpoint, region,
//! bucket or key fails here, exit 3 within seconds). `init` and a writer's
//! open (once, before the daemon forks) probe whether it honours
//! create-only PUTs. S3 has no lock: the writer's lease is the only guard.
//!
//! Local directories are checked here, before any store call, so that a
//! missing or wrong directory is a one-line usage error (exit 1) rather
//! than an I/O error from deep inside the store.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::args::S3Args;
use super::error::{CliError, CliResult, EXIT_STORE};
use crate::store::{
    LocalStore, ObjectStore, RetryPolicy, RetryingStore, S3Config, S3Store, Sse, StoreError,
};

/// How long one store call of a foreground command keeps retrying: a blip
/// is ridden out, an outage is reported while someone is still waiting.
pub const FOREGROUND_DEADLINE: Duration = Duration::from_secs(15);

/// Refuses a local volume whose header other users may read: they could
/// copy its keyslots and guess passphrases offline, at their leisure.
/// (`init` makes the directory 0700 and every object 0600.)
fn check_private(dir: &Path) -> CliResult<()> {
    use std::os::unix::fs::PermissionsExt;
    let header = dir.join(crate::volume::VOLUME_OBJECT);
    let Ok(meta) = std::fs::symlink_metadata(&header) else {
        return Ok(()); // no header: "not a volume" is said where it is read
    };
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o044 != 0 {
        return Err(CliError::usage(format!(
            "refusing to open {}: its volume header is readable by other users (mode {mode:04o}), \
             who could copy the keyslots and guess passphrases offline; \
             run chmod 600 {} (and chmod 700 on the directory), or pass --insecure-permissions",
            dir.display(),
            header.display()
        )));
    }
    Ok(())
}

fn retrying(store: Arc<dyn ObjectStore>) -> Arc<dyn ObjectStore> {
    Arc::new(RetryingStore::new(
        store,
        RetryPolicy::with_deadline(FOREGROUND_DEADLINE),
    ))
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreSpec {
    /// A local directory; `true`: open it even if its header is readable
    /// by other users (`--insecure-permissions`).
    Local(PathBuf, bool),
    S3 {
        bucket: String,
        prefix: String,
        s3: S3Args,
    },
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
            let prefix = prefix.trim_matches('/');
            if prefix
                .split('/')
                .any(|s| s.is_empty() || s == "." || s == "..")
                && !prefix.is_empty()
            {
                return Err(CliError::usage(format!(
                    "invalid store {arg:?}: empty, . or .. segment in the prefix"
                )));
            }
            return Ok(StoreSpec::S3 {
                bucket: bucket.to_string(),
                prefix: prefix.to_string(),
                s3: S3Args::default(),
            });
        }
        let path = arg.strip_prefix("file://").unwrap_or(arg);
        if path.is_empty() {
            return Err(CliError::usage("invalid store: empty path"));
        }
        if arg.contains("://") && !arg.starts_with("file://") {
            return Err(CliError::usage(format!("unsupported store {arg:?}")));
        }
        Ok(StoreSpec::Local(PathBuf::from(path), false))
    }

    /// The S3 connection flags attached (defaults for a local directory).
    pub fn s3_args(&self) -> S3Args {
        match self {
            StoreSpec::S3 { s3, .. } => s3.clone(),
            StoreSpec::Local(_, insecure) => S3Args {
                insecure_permissions: *insecure,
                ..S3Args::default()
            },
        }
    }

    /// Attaches the S3 connection flags (ignored for a local directory).
    pub fn with_s3(self, args: &S3Args) -> StoreSpec {
        match self {
            StoreSpec::S3 { bucket, prefix, .. } => StoreSpec::S3 {
                bucket,
                prefix,
                s3: args.clone(),
            },
            StoreSpec::Local(path, _) => StoreSpec::Local(path, args.insecure_permissions),
        }
    }

    /// Opens an existing store to read it, or to write it with what an
    /// earlier [`StoreSpec::open_for_writing`] found out about it.
    pub fn open(&self) -> CliResult<Arc<dyn ObjectStore>> {
        self.open_bare().map(retrying)
    }

    /// As [`StoreSpec::open`], without retries: every call is one attempt.
    pub fn open_bare(&self) -> CliResult<Arc<dyn ObjectStore>> {
        match self {
            StoreSpec::Local(path, insecure) => {
                check_dir(path)?;
                if !insecure {
                    check_private(path)?;
                }
                Ok(Arc::new(LocalStore::open(path)?))
            }
            StoreSpec::S3 { .. } => Ok(Arc::new(self.open_s3()?)),
        }
    }

    /// Opens an existing store for a writer: on S3, probes once whether
    /// create-only PUTs are honoured (a probe is itself a write, so
    /// read-only mounts never make one) and keeps the answer in the spec,
    /// so a later `open` of it (the daemon's, after the fork) needs no probe.
    pub fn open_for_writing(&mut self) -> CliResult<Arc<dyn ObjectStore>> {
        let StoreSpec::S3 { s3, .. } = self else {
            return self.open();
        };
        s3.conditional_writes = None;
        let store = self.open_s3()?;
        let label = self.to_string();
        let honoured = store.probe().map_err(|e| s3_error(&label, e))?;
        if let StoreSpec::S3 { s3, .. } = self {
            s3.conditional_writes = Some(honoured);
        }
        Ok(retrying(Arc::new(store)))
    }

    /// The S3 settings this spec names.
    pub fn s3_config(&self) -> CliResult<Option<S3Config>> {
        let StoreSpec::S3 { bucket, prefix, s3 } = self else {
            return Ok(None);
        };
        let mut cfg = S3Config::new(bucket, prefix);
        cfg.endpoint = s3.endpoint.clone();
        cfg.region = s3.region.clone();
        cfg.path_style = s3.path_style;
        cfg.allow_http = s3.allow_http;
        cfg.sse = match &s3.sse {
            Some(mode) => {
                Some(Sse::parse(mode, s3.sse_kms_key_id.clone()).map_err(CliError::usage)?)
            }
            None if s3.sse_kms_key_id.is_some() => {
                return Err(CliError::usage("--sse-kms-key-id needs --sse aws:kms"));
            }
            None => None,
        };
        cfg.check_endpoint().map_err(CliError::usage)?;
        Ok(Some(cfg))
    }

    fn open_s3(&self) -> CliResult<S3Store> {
        let cfg = self.s3_config()?.expect("an s3 spec");
        let label = self.to_string();
        let store = S3Store::open(cfg).map_err(|e| s3_error(&label, e))?;
        if let StoreSpec::S3 { s3, .. } = self {
            if let Some(honoured) = s3.conditional_writes {
                store.assume_conditional_writes(honoured);
            }
        }
        Ok(store)
    }

    /// The same store named independently of the working directory (the
    /// daemon moves to `/` after forking).
    pub fn resolved(&self) -> CliResult<StoreSpec> {
        match self {
            StoreSpec::Local(path, insecure) => std::fs::canonicalize(path)
                .map(|p| StoreSpec::Local(p, *insecure))
                .map_err(|e| dir_error(path, e)),
            StoreSpec::S3 { .. } => Ok(self.clone()),
        }
    }

    /// Opens the store for `init`, creating a missing local directory
    /// (its parent must exist: a typo should not create a tree).
    pub fn create(&self) -> CliResult<Arc<dyn ObjectStore>> {
        match self {
            StoreSpec::Local(path, _) => {
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
                Ok(retrying(Arc::new(LocalStore::create(path)?)))
            }
            StoreSpec::S3 { .. } => {
                let store = self.open_s3()?;
                store.probe().map_err(|e| s3_error(&self.to_string(), e))?;
                if !store.conditional_writes() {
                    eprintln!(
                        "sealedfs: note: this store ignores create-only PUTs; \
                         only the writer's lease keeps two writers apart"
                    );
                }
                let features = store
                    .bucket_features()
                    .map_err(|e| s3_error(&self.to_string(), e))?;
                for line in features.consequences() {
                    eprintln!("sealedfs: note: {line}");
                }
                Ok(retrying(Arc::new(store)))
            }
        }
    }

    /// Takes the store's exclusive lock for a read-write mount or an init.
    /// `None` where the store has no such lock (the lease is then the only
    /// guard, and the filesystem core takes it).
    pub fn lock(&self) -> CliResult<Option<LockGuard>> {
        match self {
            StoreSpec::Local(path, _) => {
                let guard = LocalStore::open(path)?.lock_exclusive()?;
                Ok(Some(Box::new(guard)))
            }
            StoreSpec::S3 { .. } => Ok(None),
        }
    }
}

impl StoreSpec {
    /// A name for this store that stays the same across mounts from any
    /// working directory (this host's anchor is kept per location): the
    /// canonical directory, or the bucket, prefix and endpoint.
    pub fn location(&self) -> String {
        match self {
            StoreSpec::Local(path, _) => {
                let canonical = std::fs::canonicalize(path).unwrap_or_else(|_| path.clone());
                format!("file://{}", canonical.display())
            }
            StoreSpec::S3 { bucket, prefix, s3 } => {
                let endpoint = s3
                    .endpoint
                    .clone()
                    .or_else(|| std::env::var("AWS_ENDPOINT_URL").ok())
                    .unwrap_or_else(|| "aws".into());
                format!("s3://{bucket}/{prefix} at {endpoint}")
            }
        }
    }
}

impl std::fmt::Display for StoreSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreSpec::Local(path, _) => write!(f, "{}", path.display()),
            StoreSpec::S3 { bucket, prefix, .. } if prefix.is_empty() => write!(f, "s3://{bucket}"),
            StoreSpec::S3 { bucket, prefix, .. } => write!(f, "s3://{bucket}/{prefix}"),
        }
    }
}

/// Errors of opening an S3 store, as one line naming the store: bad
/// settings are usage errors (1), everything the server said is exit 3.
fn s3_error(label: &str, e: StoreError) -> CliError {
    match e {
        StoreError::Io {
            kind: io::ErrorKind::InvalidInput,
            reason,
            ..
        } => CliError::usage(format!("store {label}: {reason}")),
        StoreError::AccessDenied { reason, .. } => {
            CliError::new(EXIT_STORE, format!("store {label}: {reason}"))
        }
        StoreError::Unavailable { reason, .. } => {
            CliError::new(EXIT_STORE, format!("store {label} unreachable: {reason}"))
        }
        StoreError::Io { reason, .. } => {
            CliError::new(EXIT_STORE, format!("store {label}: {reason}"))
        }
        other => CliError::from(other).context(&format!("store {label}")),
    }
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
            StoreSpec::Local("/var/vol".into(), false)
        );
        assert_eq!(
            StoreSpec::parse("file:///var/vol").unwrap(),
            StoreSpec::Local("/var/vol".into(), false)
        );
        assert_eq!(
            StoreSpec::parse("rel/vol").unwrap(),
            StoreSpec::Local("rel/vol".into(), false)
        );
        assert_eq!(
            StoreSpec::parse("s3://bucket/some/prefix/").unwrap(),
            StoreSpec::S3 {
                bucket: "bucket".into(),
                prefix: "some/prefix".into(),
                s3: S3Args::default(),
            }
        );
        assert_eq!(
            StoreSpec::parse("s3://bucket").unwrap(),
            StoreSpec::S3 {
                bucket: "bucket".into(),
                prefix: String::new(),
                s3: S3Args::default(),
            }
        );
        assert!(StoreSpec::parse("s3://").is_err());
        assert!(StoreSpec::parse("").is_err());
        assert!(StoreSpec::parse("file://").is_err());
        assert!(StoreSpec::parse("gs://bucket").is_err());
    }

    #[test]
    fn s3_flags_and_plain_http() {
        assert!(StoreSpec::parse("s3://b/a//c").is_err());
        assert!(StoreSpec::parse("s3://b/a/../c").is_err());
        let spec = StoreSpec::parse("s3://b/p/").unwrap();
        assert_eq!(spec.to_string(), "s3://b/p");
        assert!(spec.lock().unwrap().is_none());
        let args = S3Args {
            endpoint: Some("http://s3.example.com".into()),
            ..S3Args::default()
        };
        let e = spec.clone().with_s3(&args).open().err().unwrap();
        assert_eq!(e.code, 1);
        assert!(
            e.msg
                .contains("refusing plain-HTTP endpoint http://s3.example.com"),
            "{}",
            e.msg
        );
        let sse = S3Args {
            endpoint: Some("https://s3.example.com".into()),
            sse: Some("nope".into()),
            ..S3Args::default()
        };
        assert_eq!(spec.clone().with_s3(&sse).open().err().unwrap().code, 1);
        let cfg = spec
            .with_s3(&S3Args {
                endpoint: Some("http://127.0.0.1:1".into()),
                path_style: true,
                sse: Some("aws:kms".into()),
                sse_kms_key_id: Some("k1".into()),
                allow_http: false,
                region: Some("eu-west-1".into()),
                conditional_writes: None,
                insecure_permissions: false,
            })
            .s3_config()
            .unwrap()
            .unwrap();
        assert!(cfg.path_style);
        assert_eq!(cfg.region.as_deref(), Some("eu-west-1"));
        assert_eq!(
            cfg.sse,
            Some(Sse::Kms {
                key_id: Some("k1".into())
            })
        );
        let local = StoreSpec::parse("/v").unwrap().with_s3(&args);
        assert_eq!(local, StoreSpec::Local("/v".into(), false));
    }

    #[test]
    fn local_directory_checks() {
        let dir = tempfile::tempdir().unwrap();
        let missing = StoreSpec::Local(dir.path().join("nope"), false);
        assert_eq!(missing.open().err().unwrap().code, 1);
        let file = dir.path().join("file");
        std::fs::write(&file, b"x").unwrap();
        let e = StoreSpec::Local(file, false).open().err().unwrap();
        assert_eq!(e.code, 1);
        assert!(e.msg.contains("not a directory"));
        let real = std::fs::canonicalize(dir.path()).unwrap();
        let here = StoreSpec::Local(dir.path().join("."), false);
        assert_eq!(here.resolved().unwrap(), StoreSpec::Local(real, false));
        let orphan = StoreSpec::Local(dir.path().join("no/parent"), false);
        assert_eq!(orphan.create().err().unwrap().code, 1);
    }
}
