//! `--cache-dir DIR [--cache-dir-size SIZE]`: the mount's disk cache of
//! pack ciphertext ([`crate::store::DiskCache`]).
//!
//! Checked in the foreground, before the fork, so a mistake is a one-line
//! error and exit 1: the flag is refused for a local volume (its packs are
//! on local disk already), and for a directory inside the mountpoint
//! (the mount would hide it, and the cache would recurse into itself).
//! The directory is created (0700) if missing, and never changed if it
//! exists: one other users can write that is not sticky (like `/tmp`),
//! one owned by another user, or a symlink, refuses the mount. Opened in
//! the daemon: a cache that another mount of the same volume holds, or
//! whose per-volume directory is not a private directory of this user (a
//! planted one), is a one-line warning and the mount runs without it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use log::warn;

use super::super::error::{CliError, CliResult};
use super::super::location::StoreSpec;
use super::super::settings::Settings;
use crate::store::DiskCache;

/// The default bound when `--cache-dir-size` is not given.
pub const DEFAULT_SIZE: u64 = 5 << 30;

/// Where the disk cache goes and how large it may grow.
#[derive(Clone, Debug)]
pub struct Choice {
    pub dir: PathBuf,
    pub limit: u64,
}

/// The disk cache the settings ask for, checked against the store and
/// the (canonical) mountpoint.
pub fn choose(
    settings: &Settings,
    spec: &StoreSpec,
    mount_point: &Path,
) -> CliResult<Option<Choice>> {
    let Some(dir) = &settings.cache_dir else {
        if settings.cache_dir_size.is_some() {
            return Err(CliError::usage("--cache-dir-size needs --cache-dir"));
        }
        return Ok(None);
    };
    if matches!(spec, StoreSpec::Local(..)) {
        return Err(CliError::usage(
            "--cache-dir is for S3 volumes: a local volume's data is on local disk already",
        ));
    }
    let shown = dir.display();
    let bad = |e: std::io::Error| CliError::usage(format!("--cache-dir {shown}: {e}"));
    // Checked before anything is created: a directory made inside the
    // mountpoint would make it non-empty.
    if resolve(dir).map_err(bad)?.starts_with(mount_point) {
        return Err(CliError::usage(format!(
            "--cache-dir {shown} is inside the mountpoint {}",
            mount_point.display()
        )));
    }
    std::os::unix::fs::DirBuilderExt::mode(std::fs::DirBuilder::new().recursive(true), 0o700)
        .create(dir)
        .map_err(bad)?;
    // A link planted where the user's directory should be would send the
    // cache (and a root daemon's writes) wherever it points.
    if std::fs::symlink_metadata(dir).map_err(bad)?.is_symlink() {
        return Err(CliError::usage(format!(
            "--cache-dir {shown} is a symlink: name the directory itself"
        )));
    }
    let dir = dir.canonicalize().map_err(bad)?;
    crate::store::check_disk_cache_dir(&dir).map_err(bad)?;
    let limit = settings
        .cache_dir_size
        .unwrap_or_else(|| default_size(&dir));
    Ok(Some(Choice { dir, limit }))
}

/// `dir` made absolute through its nearest existing ancestor's canonical
/// path (symlinks resolved there), the missing rest appended.
fn resolve(dir: &Path) -> std::io::Result<PathBuf> {
    let abs = std::path::absolute(dir)?;
    let mut missing = Vec::new();
    let mut at = abs.as_path();
    loop {
        if let Ok(c) = at.canonicalize() {
            return Ok(missing.iter().rev().fold(c, |p, part| p.join(part)));
        }
        match (at.parent(), at.file_name()) {
            (Some(parent), Some(name)) => {
                missing.push(name.to_owned());
                at = parent;
            }
            _ => return Ok(abs),
        }
    }
}

/// 5 GiB, or half the space free for `dir` if that is less.
fn default_size(dir: &Path) -> u64 {
    let free = free_bytes(dir).unwrap_or(u64::MAX);
    DEFAULT_SIZE.min(free / 2)
}

fn free_bytes(dir: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: a valid C string and a zeroed out-struct statvfs fills.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(path.as_ptr(), &mut st) } != 0 {
        return None;
    }
    Some((st.f_bavail as u64).saturating_mul(st.f_frsize as u64))
}

/// The cache directory's name for volume `volume_id` at store `location`:
/// keyed by both, so a replica of the volume (same id, another bucket)
/// mounted on this host never shares, and never vouches for, the blocks
/// of the primary's packs.
pub fn dir_name(volume_id: &[u8; 16], location: &str) -> String {
    use sha2::Digest;
    let at = sha2::Sha256::digest(location.as_bytes());
    format!("{}-{}", hex::encode(volume_id), hex::encode(&at[..8]))
}

/// Opens the chosen cache for volume `volume_id` at store `location`, or
/// says in one line why this mount runs without one.
pub fn open(choice: &Choice, volume_id: &[u8; 16], location: &str) -> Option<Arc<DiskCache>> {
    match DiskCache::open(&choice.dir, &dir_name(volume_id, location), choice.limit) {
        Ok(c) => Some(c),
        Err(e) => {
            warn!("{e}: this mount runs without a disk cache");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::dir_name;

    #[test]
    fn a_replica_of_a_volume_has_a_directory_of_its_own() {
        let id = [0xab; 16];
        let primary = dir_name(&id, "s3://vol/ at https://s3.example");
        assert_eq!(primary, dir_name(&id, "s3://vol/ at https://s3.example"));
        assert_ne!(
            primary,
            dir_name(&id, "s3://vol-replica/ at https://s3.example")
        );
        assert_ne!(
            primary,
            dir_name(&[0xac; 16], "s3://vol/ at https://s3.example")
        );
        assert!(primary.starts_with(&"ab".repeat(16)));
        assert_eq!(primary.len(), 32 + 1 + 16);
    }
}
