//! `sealedfs mount STORE MOUNTPOINT`: check, unlock, fork, serve.
//!
//! In the foreground, before any thread exists: options (flags, `-o`,
//! environment and config file folded by `settings`' precedence),
//! mountpoint (a dead mount left by a killed daemon is cleared; one that
//! holds files is refused unless `--nonempty`), store, header,
//! passphrase, unlock (a wrong passphrase fails here, exit 2, with nothing
//! written), then, unless read-only, the writer's lease and the local lock
//! ([`lease`]: a refusal is exit 4 naming the holder). Core dumps are
//! disabled before the key is derived. Then [`daemon::fork`], unless
//! `--foreground`, and the child serves:
//!
//! 1. block the shutdown signals (every later thread inherits the mask);
//! 2. reopen the store, renew the lease as this process and start its
//!    renewal thread, then `Fs::mount` through the lease's gate (starts the
//!    core's threads; after a takeover it first claims the next journal
//!    seq), then drop the master key;
//! 3. `Session::new` mounts and answers FUSE INIT (fuser's handshake runs
//!    inside it); the session then runs on its own thread, and a signal
//!    thread waits for SIGTERM/SIGINT/SIGHUP to unmount;
//! 4. `stat` the mountpoint through the mount: once it answers, requests
//!    are served; record the pid file and report "ok" to the parent and
//!    `READY=1` to systemd ([`notify`](super::notify));
//! 5. after the unmount the session ends (`STOPPING=1`), fuser calls `destroy`
//!    (→ `Fs::shutdown`, which commits everything), and the process exits
//!    0 only if that succeeded. Then the lease is released (deleted if
//!    still ours), and the lock last.
//!
//! An unmount from outside (`fusermount3 -u`, `umount`) ends the session
//! the same way.

mod lease;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread;

use fuser::{Session, SessionUnmounter};
use log::{error, info, warn};

use super::args::{DEFAULT_CACHE_SIZE, MountArgs};
use super::config::Config;
use super::daemon::{self, Forked, Readiness};
use super::error::{CliError, CliResult, EXIT_BUSY};
use super::location::{LockGuard, StoreSpec};
use super::mount_options::MountRequest;
use super::passphrase::{self, Passphrase, Prompt};
use super::process::{self, ShutdownSignals};
use super::settings::Settings;
use super::{fstab, header, mounts, notify, pidfile};
use crate::crypto::MasterKey;
use crate::fs::{Fs, FsOptions};
use crate::fuse::{FuseFs, ShutdownOutcome, session_config};
use crate::store::{ObjectStore, RetryPolicy, RetryingStore};
use crate::volume::VolumeHeader;

/// Everything the serving process needs, prepared before the fork.
struct Plan {
    spec: StoreSpec,
    header: VolumeHeader,
    master: MasterKey,
    mount_point: PathBuf,
    config: fuser::Config,
    fs_opts: FsOptions,
    /// The store's lock, held until the daemon exits.
    lock: Option<LockGuard>,
    /// The writer's lease, taken before the fork (read-write mounts).
    lease: Option<lease::Taken>,
}

pub fn run(args: MountArgs, env_pass: Option<Passphrase>, config: Option<&Path>) -> CliResult<()> {
    let req = MountRequest::from_args(&args, config)?;
    let file = Config::load(req.config.as_deref())?.for_store(&args.store);
    let secret = req.settings.secret(env_pass.is_some(), &file)?;
    let settings = req.settings.clone().or(Settings::from_env()).or(file);
    // allow_root on the command line beats an allow_other from the file;
    // both on the command line are refused.
    let allow_other = if req.allow_root {
        req.settings.allow_other
    } else {
        settings.allow_other
    };
    let kernel = req.kernel(allow_other.unwrap_or(false))?;
    let read_only = req.read_only;
    let mut spec = StoreSpec::parse(&args.store)?.with_s3(&settings.s3_args());
    let mount_point = prepare_mount_point(&args.mountpoint, req.nonempty)?;

    let store = if read_only {
        spec.open()?
    } else {
        spec.open_for_writing()?
    };
    let spec = spec.resolved()?;
    let header = header::read(&*store)?;

    process::forbid_core_dumps()?;
    let pass = passphrase::obtain(secret.as_ref(), env_pass, Prompt::Once)?;
    let master = header.unlock(&pass)?;
    drop(pass);
    let (lease, lock) = if read_only {
        (None, None)
    } else {
        let (taken, lock) = lease::take(&store, &spec, &header, &master, req.force_takeover)?;
        (Some(taken), lock)
    };
    // The daemon opens its own store after the fork: a store may start
    // threads or a runtime, which would not survive it.
    drop(store);

    let plan = Plan {
        spec,
        header,
        master,
        mount_point,
        config: session_config(&kernel),
        fs_opts: FsOptions {
            read_only,
            cache_bytes: settings.cache_size.unwrap_or(DEFAULT_CACHE_SIZE),
            claim_journal: lease.as_ref().is_some_and(|l| l.acquired.took_over),
            ..FsOptions::default()
        },
        lock,
        lease,
    };
    if req.foreground {
        return serve(plan, &mut Readiness::foreground());
    }
    match daemon::fork()? {
        Forked::Parent(report) => report,
        Forked::Child(mut ready) => {
            let result = serve(plan, &mut ready);
            std::process::exit(ready.exit_code(result))
        }
    }
}

/// Checks the mountpoint and returns its canonical path.
fn prepare_mount_point(path: &Path, nonempty: bool) -> CliResult<PathBuf> {
    let shown = path.display();
    fstab::check_mountpoint(path)?;
    if mounts::is_dead(path) {
        warn!("mountpoint is a dead FUSE mount; detaching it");
        mounts::lazy_unmount(path)?;
    }
    let meta = std::fs::metadata(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => {
            CliError::usage(format!("mountpoint {shown} does not exist"))
        }
        _ => CliError::usage(format!("mountpoint {shown}: {e}")),
    })?;
    if !meta.is_dir() {
        return Err(CliError::usage(format!(
            "mountpoint {shown} is not a directory"
        )));
    }
    let canonical = mounts::canonical(path)?;
    let mounted = mounts::find(&canonical).ok().flatten();
    if mounted.is_some_and(|m| m.is_sealedfs()) {
        return Err(CliError::usage(format!(
            "{shown} is already a sealedfs mount"
        )));
    }
    // The files would vanish from view while mounted, and a mount on the
    // wrong directory (a typo, a mountpoint whose mount failed at boot and
    // was written into) should be noticed rather than shadow data.
    let has_entries = std::fs::read_dir(&canonical)
        .map_err(|e| CliError::usage(format!("mountpoint {shown}: {e}")))?
        .next()
        .is_some();
    if has_entries && !nonempty {
        return Err(CliError::usage(format!(
            "mountpoint {shown} is not empty (its files would be hidden); \
             use an empty directory or mount with --nonempty (-o nonempty)"
        )));
    }
    Ok(canonical)
}

fn serve(plan: Plan, ready: &mut Readiness) -> CliResult<()> {
    let Plan {
        spec,
        header,
        master,
        mount_point,
        config,
        fs_opts,
        lock: _lock,
        lease,
    } = plan;
    process::set_process_name();
    let signals = ShutdownSignals::block()?;

    // The lease holder renews on its own schedule with single attempts;
    // the filesystem's calls pass the lease's gate on every attempt and
    // are retried above it under the daemon's one deadline.
    let store = spec.open_bare()?;
    let (store, holder) = match lease {
        Some(taken) => {
            let (gated, holder) = lease::hold(store, taken)?;
            (gated, Some(holder))
        }
        None => (store, None),
    };
    let store: Arc<dyn ObjectStore> = Arc::new(RetryingStore::new(store, store_policy()));
    let fs = match Fs::mount(store, &header, &master, fs_opts) {
        Ok(fs) => fs,
        Err(e) => {
            if let Some(h) = &holder {
                lease::release(h);
            }
            return Err(CliError::from(e));
        }
    };
    drop(master);
    if let Some(h) = &holder {
        lease::fence_on_loss(h, &fs);
    }
    let result = serve_mounted(&fs, &config, mount_point.clone(), signals, ready);
    let result = match (&holder, result) {
        (Some(h), Err(_)) if h.is_fenced() => Err(CliError::new(
            EXIT_BUSY,
            "lost the writer's lease to another mount; changes not committed before were dropped",
        )),
        (Some(h), Ok(())) if h.is_fenced() => {
            warn!("lost the writer's lease to another mount; everything was committed before");
            Ok(())
        }
        (_, result) => result,
    };
    if let Some(h) = &holder {
        lease::release(h);
    }
    let (code, msg) = match &result {
        Ok(()) => (0, String::new()),
        Err(e) => (e.code, e.msg.clone()),
    };
    if let Err(e) = pidfile::record_exit(&mount_point, code, &msg) {
        warn!("cannot record the daemon's exit ({e}); `unmount` will not see it");
    }
    result
}

fn serve_mounted(
    fs: &Arc<Fs>,
    config: &fuser::Config,
    mount_point: PathBuf,
    signals: ShutdownSignals,
    ready: &mut Readiness,
) -> CliResult<()> {
    let fs = Arc::clone(fs);
    let fuse = FuseFs::new(Arc::clone(&fs));
    let outcome = fuse.shutdown_outcome();
    let mut session = match Session::new(fuse, &mount_point, config) {
        Ok(s) => s,
        Err(e) => {
            let err = CliError::usage(format!("cannot mount on {}: {e}", mount_point.display()));
            if let Err(shut) = finish(&fs, &outcome) {
                error!("{shut}");
            }
            return Err(err);
        }
    };
    let unmounter = session.unmount_callable();
    let worker = match thread::Builder::new()
        .name("fuse-session".into())
        .spawn(move || session.run())
    {
        Ok(w) => w,
        Err(e) => {
            // The closure, and with it the session, was dropped: fuser
            // unmounted and ran `destroy`.
            let _ = finish(&fs, &outcome);
            return Err(CliError::usage(format!(
                "cannot start the FUSE session: {e}"
            )));
        }
    };
    let mp = mount_point.clone();
    let started = thread::Builder::new()
        .name("signals".into())
        .spawn(move || on_signals(signals, unmounter, &mp))
        .map_err(|e| format!("cannot start the signal thread: {e}"))
        .and_then(|_| {
            std::fs::metadata(&mount_point)
                .map_err(|e| format!("mount on {} does not answer: {e}", mount_point.display()))
        });
    if let Err(msg) = started {
        if let Err(e) = mounts::lazy_unmount(&mount_point) {
            error!("{e}");
        }
        let _ = worker.join();
        let _ = finish(&fs, &outcome);
        return Err(CliError::usage(msg));
    }
    let _pid_file = pidfile::write(&mount_point)
        .map_err(|e| warn!("cannot record the daemon pid ({e}); `unmount` will not wait"))
        .ok();
    ready.ready();
    notify::ready();
    info!("mounted; serving");

    match worker.join() {
        Ok(Ok(())) => {}
        Ok(Err(e)) => warn!("FUSE session ended with an error: {e}"),
        Err(_) => error!("FUSE session thread panicked"),
    }
    notify::stopping();
    let result = finish(&fs, &outcome);
    info!("unmounted; exiting");
    result
}

/// Test knob: a shorter store deadline, in milliseconds.
pub const DEADLINE_VAR: &str = "SEALEDFS_STORE_DEADLINE_MS";

/// How long the daemon retries one store call before the operation that
/// needs it fails (`EIO`); long enough to ride out an outage of minutes.
fn store_policy() -> RetryPolicy {
    match std::env::var(DEADLINE_VAR)
        .ok()
        .and_then(|v| v.parse().ok())
    {
        Some(ms) => RetryPolicy::with_deadline(std::time::Duration::from_millis(ms)),
        None => RetryPolicy::default(),
    }
}

fn on_signals(signals: ShutdownSignals, unmounter: SessionUnmounter, mount_point: &Path) {
    let sig = signals.wait();
    info!("signal {sig}: unmounting");
    stop(unmounter, mount_point);
    loop {
        let sig = signals.wait();
        info!("signal {sig}: already unmounting");
    }
}

/// Unmounts through fuser; if that fails (busy as root), detaches lazily:
/// the session then ends when the last open file is closed.
fn stop(mut unmounter: SessionUnmounter, mount_point: &Path) {
    if let Err(e) = unmounter.unmount() {
        warn!("unmount failed ({e}); detaching lazily");
        if let Err(e) = mounts::lazy_unmount(mount_point) {
            error!("{e}");
        }
    }
}

/// The result of `Fs::shutdown`: as `destroy` left it, or run now if the
/// session never got that far.
fn finish(fs: &Fs, outcome: &ShutdownOutcome) -> CliResult<()> {
    let taken = outcome.lock().unwrap_or_else(|p| p.into_inner()).take();
    let result = match taken {
        Some(r) => r,
        None => fs.shutdown(),
    };
    result.map_err(|e| CliError::from(e).context("shutdown failed"))
}
