//! The kernel adapter: `fuser::Filesystem` callbacks turned into [`Fs`] calls.
//!
//! This module holds no filesystem logic. Each callback builds a
//! [`Caller`] from the request, makes one call into the core, and answers
//! with one `match`: `Ok` → the reply, `Err(e)` → `e.errno()`. The errno is
//! chosen in exactly one place, `FsError::errno`.
//!
//! Rules this adapter keeps:
//! - **Every method the Linux kernel may call is implemented.** fuser's
//!   defaults answer `ENOSYS`, and the kernel remembers `ENOSYS` for the
//!   life of the mount: after one from `flush`, `fsync` or `fsyncdir` it
//!   reports success without asking again (a durability lie); after one
//!   from `fallocate`, `rename` with flags, `lseek` or `copy_file_range`
//!   the feature is gone. Unsupported requests get a specific errno
//!   instead: `ioctl` → `ENOTTY`, `bmap` → `EINVAL`, `getlk`/`setlk` →
//!   `ENOLCK` (lock support is never negotiated, so the kernel keeps POSIX
//!   and BSD locks itself and should never send these), `poll` → always
//!   readable and writable, as a regular file on a local disk.
//!   `batch_forget` is the one default left: fuser does not export the
//!   `ForgetOne` type its signature needs, and the default only loops over
//!   our `forget`. `FUSE_INTERRUPT` and opcodes fuser cannot parse are
//!   answered by fuser itself, outside the trait.
//! - **Logs carry inode numbers only**, never names, paths, symlink
//!   targets, xattr names or values, or data. fuser's own default methods
//!   (all replaced here) and its debug logging print names, so the CLI caps
//!   the `fuser` log target at `warn`.
//! - **Timeouts:** entries and attributes are cached by the kernel for
//!   [`TTL`] (1 s); we are the only writer, so this only bounds how long a
//!   stale name or size could be seen after a change made below FUSE.
//! - **Page cache:** `open`/`create` answer `FOPEN_KEEP_CACHE` when the core
//!   says the file is unchanged since the kernel cached it; never
//!   `FOPEN_DIRECT_IO`.
//! - **Threads:** fuser runs [`N_THREADS`] worker threads on cloned
//!   `/dev/fuse` descriptors, and they never wait on the store: requests
//!   that may (`read` of uncached data, `write`, `fsync`, `fsyncdir`,
//!   `rename`, `fallocate`, `copy_file_range`, and `setattr`/`open` that
//!   truncate) go with their reply to [`IO_THREADS`] pool threads
//!   ([`offload`]), so a stalled store never stops `ls` or `stat`.
//! - **Panics** in the core become `EIO` for that one request and a log
//!   line; the mount goes on.
//! - `destroy` (end of the session, after unmount) commits everything via
//!   `Fs::shutdown`; its outcome is published for the daemon's exit code.

mod callbacks;
mod convert;
mod offload;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use fuser::{Config, MountOption, SessionACL};

use crate::fs::{Fs, FsResult, Invalidator};

/// How long the kernel may cache an entry or attributes.
pub const TTL: Duration = Duration::from_secs(1);

/// FUSE worker threads: enough that a slow `fsync` or read-ahead miss
/// leaves others free for `stat` and `readdir`.
pub const N_THREADS: usize = 4;

/// Threads for requests that may wait on the store: enough for many
/// concurrent `fsync`s and cold reads, with the kernel's background reads
/// (at most [`MAX_BACKGROUND`]) queuing behind them.
pub const IO_THREADS: usize = 16;

/// Kernel requests allowed in flight in the background (read-ahead,
/// async direct I/O); the congestion threshold is fuser's default 3/4.
const MAX_BACKGROUND: u16 = 64;

/// Where `destroy` leaves the result of `Fs::shutdown`, for the daemon's
/// exit code; `None` until `destroy` ran.
pub type ShutdownOutcome = Arc<Mutex<Option<FsResult<()>>>>;

/// The `fuser::Filesystem` over a shared [`Fs`].
pub struct FuseFs {
    fs: Arc<Fs>,
    outcome: ShutdownOutcome,
    pool: offload::Pool,
}

impl FuseFs {
    pub fn new(fs: Arc<Fs>) -> FuseFs {
        FuseFs {
            fs,
            outcome: ShutdownOutcome::default(),
            pool: offload::Pool::new(IO_THREADS),
        }
    }

    /// Runs `f` on a pool thread with the filesystem; `f` owns the reply.
    fn offload(&self, f: impl FnOnce(&Fs) + Send + 'static) {
        let fs = Arc::clone(&self.fs);
        self.pool.run(move || f(&fs));
    }

    /// [`FuseFs::offload`] when `slow`, else right here.
    fn maybe_offload(&self, slow: bool, f: impl FnOnce(&Fs) + Send + 'static) {
        if slow {
            self.offload(f);
        } else {
            f(&self.fs);
        }
    }

    /// The slot `destroy` fills; read it after the session ended.
    pub fn shutdown_outcome(&self) -> ShutdownOutcome {
        Arc::clone(&self.outcome)
    }

    fn record_shutdown(&self, result: FsResult<()>) {
        *self.outcome.lock().unwrap_or_else(|p| p.into_inner()) = Some(result);
    }
}

/// What one mount asked of the kernel (from `-o`; see
/// `cli::mount_options`). Everything else is fixed by [`session_config`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct KernelOptions {
    pub read_only: bool,
    /// Every user may enter (still subject to the permission checks).
    pub allow_other: bool,
    /// The mounting user and root may enter; excludes `allow_other`.
    pub allow_root: bool,
    /// No program on the volume may be executed.
    pub noexec: bool,
    /// `MS_SYNCHRONOUS`: the kernel follows every write with an `fsync`,
    /// so each write is durable in the store before it returns (slow).
    pub sync: bool,
    /// `MS_DIRSYNC`: the same for directory changes only.
    pub dirsync: bool,
}

/// Tells the kernel, through `notifier`, to drop its cached data and
/// attributes of inodes that changed behind its back (a follower mount).
/// After a full reload there is no list: the TTL and reopening do it.
pub fn kernel_invalidator(notifier: fuser::Notifier) -> Invalidator {
    Box::new(move |changed| {
        for &ino in changed.into_iter().flatten() {
            // An inode the kernel does not hold answers ENOENT: nothing to drop.
            let _ = notifier.inval_inode(fuser::INodeNo(ino), 0, 0);
        }
    })
}

/// The mount configuration of every sealedfs session.
///
/// `default_permissions` always: the kernel checks mode bits, the core
/// applies ownership rules. `noatime`: reads never cause commits. fuser
/// adds `nodev,nosuid` unless told otherwise, which is what we want (and
/// why the `dev` and `suid` that mount.fuse3 adds to every fstab mount
/// are not passed on). Without `allow_other` or `allow_root` only the
/// mounting user may enter.
pub fn session_config(opts: &KernelOptions) -> Config {
    let mut options = vec![
        MountOption::FSName("sealedfs".into()),
        MountOption::Subtype("sealedfs".into()),
        MountOption::DefaultPermissions,
        MountOption::NoAtime,
    ];
    let flags = [
        (opts.read_only, MountOption::RO),
        (opts.noexec, MountOption::NoExec),
        (opts.sync, MountOption::Sync),
        (opts.dirsync, MountOption::DirSync),
    ];
    options.extend(flags.into_iter().filter(|(on, _)| *on).map(|(_, o)| o));
    let mut config = Config::default();
    config.mount_options = options;
    config.acl = if opts.allow_other {
        SessionACL::All
    } else if opts.allow_root {
        SessionACL::RootAndOwner
    } else {
        SessionACL::Owner
    };
    config.n_threads = Some(N_THREADS);
    config.clone_fd = true;
    config
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_has_fixed_options() {
        let c = session_config(&KernelOptions::default());
        assert!(c.mount_options.contains(&MountOption::DefaultPermissions));
        assert!(c.mount_options.contains(&MountOption::NoAtime));
        for absent in [
            MountOption::RO,
            MountOption::NoExec,
            MountOption::Sync,
            MountOption::Dev,
            MountOption::Suid,
        ] {
            assert!(!c.mount_options.contains(&absent), "{absent:?}");
        }
        assert_eq!(c.acl, SessionACL::Owner);
        assert_eq!(c.n_threads, Some(N_THREADS));
        assert!(c.clone_fd);
    }

    #[test]
    fn config_follows_the_options() {
        let c = session_config(&KernelOptions {
            read_only: true,
            allow_other: true,
            noexec: true,
            sync: true,
            dirsync: true,
            ..KernelOptions::default()
        });
        for present in [
            MountOption::RO,
            MountOption::NoExec,
            MountOption::Sync,
            MountOption::DirSync,
            MountOption::DefaultPermissions,
        ] {
            assert!(c.mount_options.contains(&present), "{present:?}");
        }
        assert_eq!(c.acl, SessionACL::All);
        let root = session_config(&KernelOptions {
            allow_root: true,
            ..KernelOptions::default()
        });
        assert_eq!(root.acl, SessionACL::RootAndOwner);
    }
}
