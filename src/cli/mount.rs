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

mod commands;
pub(super) mod disk_cache;
pub(super) mod lease;
pub(super) mod trail;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use fuser::{Session, SessionUnmounter};
use log::{error, info, warn};

use super::anchor::{AnchorWriter, Anchors};
use super::args::{MountArgs, default_cache_size};
use super::config::Config;
use super::daemon::{self, Forked, Readiness};
use super::error::{CliError, CliResult, EXIT_BUSY};
use super::location::{LockGuard, StoreSpec};
use super::memory;
use super::mount_options::MountRequest;
use super::passphrase::Passphrase;
use super::process::{self, ShutdownSignals};
use super::rotation::Rotation;
use super::settings::Settings;
use super::unlock::{self, KeyChoice};
use super::{fstab, header, logging, mounts, notify, pidfile};
use crate::crypto::KeyRing;
use crate::engine::{Anchor, Engine, EngineOptions, Expected, Head};
use crate::fs::{Fs, FsOptions};
use crate::fuse::{FuseFs, ShutdownOutcome, kernel_invalidator, session_config};
use crate::lease::Holder;
use crate::store::{DiskCachedStore, ObjectStore, RetryPolicy, RetryingStore};
use crate::volume::VolumeHeader;

/// Everything the serving process needs, prepared before the fork.
struct Plan {
    /// This host's memory of the volume at this location.
    anchors: Anchors,
    spec: StoreSpec,
    header: VolumeHeader,
    ring: KeyRing,
    mount_point: PathBuf,
    config: fuser::Config,
    fs_opts: FsOptions,
    /// The store's lock, held until the daemon exits.
    lock: Option<LockGuard>,
    /// The writer's lease, taken before the fork (read-write mounts).
    lease: Option<lease::Taken>,
    /// Keep an audit trail (everything but `--no-audit`).
    audit: bool,
    /// Lock after this long without a request.
    lock_after: Option<Duration>,
    /// `--cache-dir`: the disk cache of pack ciphertext.
    disk_cache: Option<disk_cache::Choice>,
}

pub fn run(args: MountArgs, env_pass: Option<Passphrase>, config: Option<&Path>) -> CliResult<()> {
    let mut req = MountRequest::from_args(&args, config)?;
    // A snapshot is an old state, exactly: never written, never compared
    // with this host's memory of the volume.
    let snapshot = req.snapshot.clone();
    req.read_only |= snapshot.is_some() || req.follow;
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
    let disk_cache = disk_cache::choose(&settings, &spec, &mount_point)?;

    let store = if read_only {
        spec.open()?
    } else {
        spec.open_for_writing()?
    };
    let spec = spec.resolved()?;
    let header = header::read(&*store)?;

    process::forbid_core_dumps()?;
    let choice = KeyChoice {
        kms: req.kms,
        slot: req.slot,
    };
    let (_, ring) = unlock::unlock(
        &header,
        &settings.s3_args(),
        secret.as_ref(),
        env_pass,
        choice,
    )?;
    let anchors = Anchors::for_location(&spec.location());
    let anchor = match &snapshot {
        Some(_) => None,
        None => anchors.read().map_err(|e| {
            CliError::usage(format!(
                "cannot read this host's record of the volume ({e}); move it away to start afresh"
            ))
        })?,
    };
    let (lease, lock) = if read_only {
        (None, None)
    } else {
        let (taken, lock) = lease::take(&store, &spec, &header, &ring, req.force_takeover)?;
        (Some(taken), lock)
    };
    // A lease taken over names its writer's newest commit: the journal
    // must reach it.
    let lease_head = lease
        .as_ref()
        .map(|l| l.acquired.committed)
        .filter(|(seq, _)| *seq > 0)
        .map(|(seq, hash)| Head { seq, hash });
    // The daemon opens its own store after the fork: a store may start
    // threads or a runtime, which would not survive it.
    drop(store);

    let plan = Plan {
        anchors,
        spec,
        header,
        ring,
        mount_point,
        config: session_config(&kernel),
        fs_opts: FsOptions {
            cache_bytes: settings.cache_size.unwrap_or_else(default_cache_size),
            follow: req.follow.then(follow_interval),
            carry_bytes: crate::fs::CARRY_MAX,
            engine: tuned(EngineOptions {
                read_only,
                claim_journal: lease.as_ref().is_some_and(|l| l.acquired.took_over),
                expected: Expected {
                    anchor,
                    lease: lease_head,
                    accept_rollback: req.accept_rollback,
                },
                snapshot,
                ..EngineOptions::default()
            }),
        },
        lock,
        lease,
        audit: !req.no_audit,
        lock_after: req.lock_after,
        disk_cache,
    };
    if req.foreground {
        return serve(plan, &mut Readiness::foreground());
    }
    if logging::wants_syslog() && !logging::syslog_reachable() {
        warn!(
            "no syslog here (/dev/log): the daemon's alerts will reach no log; \
             set {}=PATH to keep them",
            logging::LOG_FILE_VAR
        );
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
    let mut meta = std::fs::metadata(path);
    if meta
        .as_ref()
        .is_err_and(|e| e.raw_os_error() == Some(libc::ENOTCONN))
    {
        // Its daemon died just now, after the check above.
        warn!("mountpoint is a dead FUSE mount; detaching it");
        mounts::lazy_unmount(path)?;
        meta = std::fs::metadata(path);
    }
    let meta = meta.map_err(|e| match e.kind() {
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
        anchors,
        spec,
        header,
        ring,
        mount_point,
        config,
        fs_opts,
        lock: _lock,
        lease,
        audit,
        lock_after,
        disk_cache,
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
    // Above the retries: a block on disk answers without them.
    let disk_cache =
        disk_cache.and_then(|c| disk_cache::open(&c, &header.volume_id, &spec.location()));
    let store: Arc<dyn ObjectStore> = match &disk_cache {
        Some(c) => Arc::new(DiskCachedStore::new(store, Arc::clone(c))),
        None => store,
    };
    let budget = fs_opts.cache_bytes;
    let fs = match Fs::mount(Arc::clone(&store), &header, &ring, fs_opts) {
        Ok(fs) => fs,
        Err(e) => {
            if let Some(h) = &holder {
                lease::release(h);
            }
            return Err(CliError::from(e));
        }
    };
    let governed = Arc::downgrade(&fs);
    memory::govern(budget, move |in_use| {
        governed
            .upgrade()
            .map(|fs| fs.note_heap_in_use(in_use))
            .is_some()
    });
    let writer = holder.is_some();
    let audit_key = header.keys(&ring).audit;
    if let Some(h) = &holder {
        lease::fence_on_loss(h, &fs);
    }
    let auditor = match audit {
        true => Some(trail::start(
            &fs,
            Arc::clone(&store),
            audit_key,
            header.volume_id,
            writer,
        )?),
        false => None,
    };
    if let Some(after) = lock_after {
        fs.lock_when_idle(after);
    }
    let anchor_writer = fs_is_live(&fs)
        .then(|| remember_commits(fs.engine(), anchors.clone(), holder.clone(), &header));
    // Every mount answers `status` on its control socket; the writer also
    // answers commands given the store (snapshots, audit prune), which
    // find it by the location file.
    // A rotation under way (the ring still holds older epochs) is finished
    // by the writer; otherwise the master keys are not kept.
    let rotation = Arc::new(Rotation::default());
    if holder.is_some() && ring.epochs().len() > 1 && fs_is_live(&fs) {
        let resumed = rotation.spawn(
            Arc::clone(&fs),
            holder.clone(),
            Arc::clone(&store),
            ring,
            None,
        );
        if let Err(e) = resumed {
            warn!("cannot resume the key rotation under way: {}", e.msg);
        }
    } else {
        drop(ring);
    }
    let _control = commands::serve(commands::Daemon {
        rotation,
        fs: Arc::clone(&fs),
        holder: holder.clone(),
        location: spec.location(),
        mountpoint: mount_point.clone(),
        volume_id: header.volume_id,
        started_ms: crate::audit::now_ms(),
        store: Arc::clone(&store),
        s3: spec.s3_args(),
        disk_cache,
    });
    let result = serve_mounted(&fs, &config, mount_point.clone(), signals, ready);
    if let Some(a) = &auditor {
        trail::stop(a);
    }
    if let Some(w) = anchor_writer {
        let (seq, hash) = fs.engine().committed();
        w.note(Head { seq, hash });
        w.finish();
    }
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
    fs.set_invalidator(kernel_invalidator(session.notifier()));
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

/// Records the volume's committed head in this host's anchor now (reset
/// after an accepted rollback) and after later commits (on the anchor's
/// own thread), and names it in the writer's lease at each renewal.
fn remember_commits(
    engine: &Arc<Engine>,
    anchors: Anchors,
    holder: Option<Arc<Holder>>,
    header: &VolumeHeader,
) -> Arc<AnchorWriter> {
    let (seq, hash) = engine.committed();
    let now = Anchor {
        volume_id: header.volume_id,
        head: Head { seq, hash },
    };
    let recorded = if engine.accepted_rollback() {
        anchors.reset(now)
    } else {
        anchors.advance(now)
    };
    if let Err(e) = recorded {
        warn!("cannot record the volume's state for rollback checks: {e}");
    }
    if let Some(h) = &holder {
        h.set_committed(seq, hash);
    }
    let writer = AnchorWriter::start(anchors, header.volume_id);
    let hook_writer = Arc::clone(&writer);
    engine.on_commit(Box::new(move |head| {
        if let Some(h) = &holder {
            h.set_committed(head.seq, head.hash);
        }
        hook_writer.note(head);
    }));
    writer
}

/// A mount of the volume's newest state (not of a snapshot).
fn fs_is_live(fs: &Fs) -> bool {
    fs.options().engine.snapshot.is_none()
}

/// Test knob: a follower polls the journal this often, in milliseconds.
pub const FOLLOW_VAR: &str = "SEALEDFS_FOLLOW_MS";

/// How often a follower looks for new commits: every two seconds, one GET
/// each (it slows down by itself when nothing happens).
fn follow_interval() -> Duration {
    let ms = std::env::var(FOLLOW_VAR).ok().and_then(|v| v.parse().ok());
    ms.map_or(Duration::from_secs(2), Duration::from_millis)
}

/// Test knobs: checkpoint after this many journal bytes; sweep packs no
/// commit references once this many milliseconds old.
pub const CHECKPOINT_BYTES_VAR: &str = "SEALEDFS_CHECKPOINT_BYTES";
pub const GC_GRACE_VAR: &str = "SEALEDFS_GC_GRACE_MS";
/// Test knob: keep retired packs this many milliseconds.
pub const RETIRE_GRACE_VAR: &str = "SEALEDFS_RETIRE_GRACE_MS";

pub(super) fn tuned(mut opts: EngineOptions) -> EngineOptions {
    let knob = |var| std::env::var(var).ok().and_then(|v| v.parse::<u64>().ok());
    if let Some(bytes) = knob(CHECKPOINT_BYTES_VAR) {
        opts.checkpoint_bytes = bytes;
    }
    if let Some(ms) = knob(GC_GRACE_VAR) {
        opts.gc_grace = Duration::from_millis(ms);
    }
    if let Some(ms) = knob(RETIRE_GRACE_VAR) {
        opts.retire_grace = Duration::from_millis(ms);
    }
    opts
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
