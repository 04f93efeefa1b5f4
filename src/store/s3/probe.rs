//! What the bucket does that sealedfs must know about: whether it honours
//! create-only PUTs, and whether it keeps old versions or locks objects.
//!
//! The conditional-write probe writes `probe/<random hex>` under the
//! volume's prefix twice with `If-None-Match: *`; the second write must be
//! refused. Some S3-compatible stores (Garage) ignore the header and
//! overwrite: then `put_if_absent` falls back to HEAD-then-PUT and the
//! lease alone keeps two writers apart.

use std::sync::atomic::Ordering;

use rand::RngCore;

use super::S3Store;
use super::classify::{Failure, classify};
use crate::store::{ObjectStore, RetryPolicy, StoreError, StoreResult};

/// Versioning and Object Lock, as far as our credentials may read them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BucketFeatures {
    /// `Enabled` or `Suspended`; `None` if never enabled or unreadable.
    pub versioning: Option<String>,
    /// `None` when the configuration could not be read.
    pub object_lock: Option<bool>,
}

impl BucketFeatures {
    /// One line per consequence the user should know about.
    pub fn consequences(&self) -> Vec<String> {
        let mut lines = Vec::new();
        match self.versioning.as_deref() {
            Some("Enabled") => lines.push(
                "bucket versioning is on: deleted and replaced objects stay as noncurrent \
                 (still encrypted) versions until a lifecycle rule expires them; add one \
                 (NoncurrentVersionExpiration) or the bucket keeps growing"
                    .to_owned(),
            ),
            Some("Suspended") => lines.push(
                "bucket versioning is suspended: versions made while it was on stay until removed"
                    .to_owned(),
            ),
            _ => {}
        }
        if self.object_lock == Some(true) {
            lines.push(
                "Object Lock is on: deletes may be refused until retention ends; sealedfs \
                 tolerates refused deletes and logs them, and the space is freed later"
                    .to_owned(),
            );
        }
        lines
    }
}

impl S3Store {
    /// Finds out whether the store honours `If-None-Match: *` and records
    /// it ([`S3Store::conditional_writes`]). Warns once when it does not.
    /// Credentials that may not write (a read-only mount) cannot probe:
    /// the store is then assumed to honour it, which changes nothing for
    /// a mount that never writes.
    pub fn probe(&self) -> StoreResult<bool> {
        let mut id = [0u8; 16];
        rand::thread_rng().fill_bytes(&mut id);
        let key = format!(
            "probe/{}",
            id.iter().map(|b| format!("{b:02x}")).collect::<String>()
        );
        // Opening retries under its own short deadline (see `S3Store::open`).
        let policy = RetryPolicy::with_deadline(self.config().timeouts.open_deadline);
        let create = |body: &[u8]| {
            policy
                .run("put", &key, || self.put_if_absent_conditional(&key, body))
                .result
        };
        match create(b"sealedfs probe 1") {
            Ok(()) => {}
            Err(StoreError::AccessDenied { .. }) => {
                log::warn!(
                    "cannot check whether the store honours conditional writes (no write access)"
                );
                return Ok(self.conditional_writes());
            }
            Err(e) => return Err(e),
        }
        let second = create(b"sealedfs probe 2");
        if let Err(e) = self.delete(&key) {
            log::debug!("delete of probe object {key} failed: {e}");
            log::warn!("could not delete the probe object {key}; delete it by hand");
        }
        let honoured = match second {
            Err(StoreError::AlreadyExists { .. }) => true,
            Ok(()) => false,
            Err(e) => return Err(e),
        };
        if !honoured {
            log::warn!(
                "this store ignores If-None-Match (create-only PUTs overwrite): \
                 falling back to HEAD-then-PUT; only the writer's lease keeps two \
                 writers apart (see docs/SEMANTICS.md)"
            );
        }
        self.conditional_writes.store(honoured, Ordering::Relaxed);
        Ok(honoured)
    }

    /// Versioning and Object Lock of the bucket; parts our credentials
    /// may not read are left unknown.
    pub fn bucket_features(&self) -> StoreResult<BucketFeatures> {
        // One attempt each: these only inform `init`'s report.
        let bucket = &self.cfg.bucket;
        let versioning = self.call(0, |c| {
            let req = c.get_bucket_versioning().bucket(bucket);
            async move { req.send().await.map_err(classify) }
        });
        let versioning = match versioning {
            Ok(out) => out.status().map(|s| s.as_str().to_owned()),
            Err(f) => {
                log::debug!("GetBucketVersioning failed: {}", f.detail);
                log::warn!(
                    "cannot read the bucket's versioning setting ({}); if versioning is on, \
                     add a lifecycle rule that expires noncurrent versions (docs/SEMANTICS.md)",
                    brief(&f)
                );
                None
            }
        };
        let lock = self.call(0, |c| {
            let req = c.get_object_lock_configuration().bucket(bucket);
            async move { req.send().await.map_err(classify) }
        });
        let object_lock = match lock {
            Ok(out) => Some(
                out.object_lock_configuration()
                    .and_then(|c| c.object_lock_enabled())
                    .is_some_and(|e| e.as_str() == "Enabled"),
            ),
            Err(f) if f.is(404) || f.code_is("ObjectLockConfigurationNotFoundError") => Some(false),
            Err(f) => {
                log::debug!("GetObjectLockConfiguration failed: {}", f.detail);
                log::warn!(
                    "cannot read the bucket's Object Lock setting ({}); if it is on, deletes \
                     may be refused and space is freed only after retention ends",
                    brief(&f)
                );
                None
            }
        };
        Ok(BucketFeatures {
            versioning,
            object_lock,
        })
    }
}

/// What a user-facing warning says of a failed call; the SDK's whole
/// answer goes to the debug log.
fn brief(f: &Failure) -> String {
    match (f.status, f.code.as_deref()) {
        (Some(status), Some(code)) => format!("{status} {code}"),
        (Some(status), None) if status < 300 => "the server's answer did not parse".to_owned(),
        (Some(status), None) => format!("HTTP {status}"),
        (None, _) => "no answer".to_owned(),
    }
}
