//! Key rotation (`sealedfs key rotate`): a new master key and key epoch,
//! then every object the volume still needs sealed again under it, then
//! the old epochs erased from every keyslot.
//!
//! Order, each step only after the one before (a crash anywhere leaves a
//! volume that opens, and the next `key rotate` or read-write mount picks
//! the rotation up where the header says it is):
//! 1. begin: the header adopts a ring with the new epoch added; every slot
//!    holds both epochs, so whatever either sealed opens;
//! 2. re-key: the engine, the audit trail and the lease seal under the new
//!    epoch from now on;
//! 3. settle: what was sealed before the re-key is made durable;
//! 4. re-seal (`Engine::reseal`): what is still under an older epoch;
//! 5. finish: the header adopts the ring without the older epochs, and the
//!    running parts drop them too: from then on the old keys open nothing.
//!
//! A mounted volume is rotated by its daemon (the command hands it the
//! new ring over the control socket, which only root and the mount's
//! owner reach); an unmounted one by the command itself, as a short-lived
//! writer holding the lease.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::control::{self, Reply, Request};
use super::error::{CliError, CliResult, EXIT_STORE};
use super::key::{self, KeyRotateArgs, update};
use super::passphrase::Passphrase;
use super::pidfile;
use super::progress::Progress;
use super::snapshot::human_bytes;
use super::writer::Writer;
use crate::audit::{Auditor, Record};
use crate::crypto::{KeyRing, Keys, MasterKey};
use crate::engine::{Engine, ResealProgress, ResealReport};
use crate::fs::Fs;
use crate::lease::Holder;
use crate::store::ObjectStore;

/// Step 1: adds a new epoch to `ring` and makes the header adopt it,
/// unless a rotation is under way already (the ring holds older epochs),
/// which is then resumed. Returns the current epoch.
pub fn begin(store: &dyn ObjectStore, ring: &mut KeyRing) -> CliResult<u32> {
    if ring.epochs().len() == 1 {
        let epoch = ring.current_epoch() + 1;
        ring.rotate_to(epoch, MasterKey::generate_for(ring.cipher()))
            .map_err(|e| CliError::usage(e.to_string()))?;
    }
    update(store, |h| Ok(h.adopt_ring(ring)?))?;
    Ok(ring.current_epoch())
}

/// Everything in a running volume that seals: re-keyed together.
pub struct Sealers<'a> {
    pub engine: &'a Engine,
    pub auditor: Option<&'a Auditor>,
    pub holder: Option<&'a Holder>,
}

impl Sealers<'_> {
    fn rekey(&self, ring: &KeyRing) -> CliResult<()> {
        self.engine.rekey(ring)?;
        if let Some(a) = self.auditor {
            a.rekey(ring);
        }
        if let Some(h) = self.holder {
            h.rekey(Keys::from_ring(ring, self.engine.volume_id()).lease);
        }
        Ok(())
    }
}

/// Steps 2 to 5 on a ring whose newest epoch the header has adopted.
pub fn finish(
    store: &dyn ObjectStore,
    sealers: &Sealers,
    mut ring: KeyRing,
    settle: &dyn Fn() -> CliResult<()>,
    progress: &ResealProgress,
    rate: Option<u64>,
) -> CliResult<ResealReport> {
    sealers.rekey(&ring)?;
    settle()?;
    let report = sealers.engine.reseal(progress, rate)?;
    // Records spooled under the old epoch go up sealed under the new one.
    if let Some(a) = sealers.auditor {
        a.flush()
            .map_err(|e| CliError::from(e).context("audit trail"))?;
    }
    for epoch in ring.epochs() {
        ring.forget(epoch);
    }
    update(store, |h| Ok(h.adopt_ring(&ring)?))?;
    sealers.rekey(&ring)?;
    Ok(report)
}

/// A daemon's rotation, for `status`.
#[derive(Default)]
pub struct Rotation {
    epoch: AtomicU32,
    progress: ResealProgress,
    phase: Mutex<Phase>,
}

#[derive(Default)]
enum Phase {
    #[default]
    Idle,
    Running(Instant),
    Finished(RotationDone),
    Failed(String),
}

/// What a finished rotation did.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub struct RotationDone {
    pub packs: u64,
    pub metadata: u64,
    pub bytes: u64,
    pub seconds: f64,
}

/// A rotation as `status` shows it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RotationReport {
    pub epoch: u32,
    /// `re-encrypting`, `finished` or `failed`.
    pub state: String,
    pub done: u64,
    pub total: u64,
    pub bytes: u64,
    pub finished: Option<RotationDone>,
    pub error: Option<String>,
}

impl Rotation {
    fn phase(&self) -> std::sync::MutexGuard<'_, Phase> {
        self.phase.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs steps 2 to 5 on a thread of the daemon serving `fs`; refused
    /// while one runs.
    pub fn spawn(
        self: &Arc<Self>,
        fs: Arc<Fs>,
        holder: Option<Arc<Holder>>,
        store: Arc<dyn ObjectStore>,
        ring: KeyRing,
        rate: Option<u64>,
    ) -> CliResult<()> {
        {
            let mut phase = self.phase();
            if matches!(*phase, Phase::Running(_)) {
                return Err(CliError::usage("a key rotation is under way on this mount"));
            }
            *phase = Phase::Running(Instant::now());
        }
        self.epoch.store(ring.current_epoch(), Ordering::Relaxed);
        self.progress.reset();
        let me = Arc::clone(self);
        std::thread::Builder::new()
            .name("rotation".into())
            .spawn(move || me.run(&fs, holder.as_deref(), &*store, ring, rate))
            .map_err(|e| CliError::usage(format!("cannot start the rotation: {e}")))?;
        Ok(())
    }

    fn run(
        &self,
        fs: &Fs,
        holder: Option<&Holder>,
        store: &dyn ObjectStore,
        ring: KeyRing,
        rate: Option<u64>,
    ) {
        let epoch = ring.current_epoch();
        let auditor = fs.auditor().map(|a| &**a);
        let sealers = Sealers {
            engine: fs.engine(),
            auditor,
            holder,
        };
        let started = match *self.phase() {
            Phase::Running(at) => at,
            _ => Instant::now(),
        };
        log::info!("key rotation to epoch {epoch}: re-encrypting");
        let settle = || fs.sync_all().map_err(CliError::from);
        let outcome = finish(store, &sealers, ring, &settle, &self.progress, rate);
        *self.phase() = match outcome {
            Ok(r) => {
                let done = RotationDone {
                    packs: r.packs,
                    metadata: r.metadata,
                    bytes: r.bytes,
                    seconds: started.elapsed().as_secs_f64(),
                };
                log::info!(
                    "key rotation to epoch {epoch} finished: {} packs and {} metadata objects \
                     re-sealed ({} B) in {:.1} s; older keys erased from every keyslot",
                    r.packs,
                    r.metadata,
                    r.bytes,
                    done.seconds
                );
                if let Some(a) = auditor {
                    a.record(Record::admin(&format!(
                        "key rotate: epoch {epoch} finished"
                    )));
                }
                Phase::Finished(done)
            }
            Err(e) => {
                log::error!(
                    "key rotation to epoch {epoch} stopped: {}; it resumes at the next \
                     read-write mount or `sealedfs key rotate`",
                    e.msg
                );
                Phase::Failed(e.msg)
            }
        };
    }

    /// The rotation as `status` shows it; `None` if none ran.
    pub fn report(&self) -> Option<RotationReport> {
        let (state, finished, error) = match &*self.phase() {
            Phase::Idle => return None,
            Phase::Running(_) => ("re-encrypting", None, None),
            Phase::Finished(d) => ("finished", Some(*d), None),
            Phase::Failed(e) => ("failed", None, Some(e.clone())),
        };
        let p = &self.progress;
        Some(RotationReport {
            epoch: self.epoch.load(Ordering::Relaxed),
            state: state.into(),
            done: p.done.load(Ordering::Relaxed),
            total: p.total.load(Ordering::Relaxed),
            bytes: p.bytes.load(Ordering::Relaxed),
            finished,
            error,
        })
    }
}

/// `sealedfs key rotate STORE`: through the daemon serving the store on
/// this host, or as a short-lived writer.
pub fn run(a: KeyRotateArgs, env_pass: Option<Passphrase>) -> CliResult<()> {
    let (store, mut spec, _, mut ring) = key::open(&a.store, &a.s3, &a.current, env_pass)?;
    let rate = a.rate.map(|mib| mib << 20);
    if let Some(pid) = pidfile::find_daemon_for_location(&spec.location()) {
        let epoch = begin(&*store, &mut ring)?;
        key::note(store, &ring, &format!("key rotate: epoch {epoch} begun"));
        let request = Request::Rotate {
            ring: ring.encode().to_vec(),
            epoch,
            rate,
        };
        drop(ring);
        return match control::call(pid, &request)? {
            Reply::Done => follow(pid, epoch),
            Reply::Failed { code, msg } => Err(CliError::new(code, msg)),
            other => Err(CliError::usage(format!("the daemon answered {other:?}"))),
        };
    }
    // The lease first: a volume mounted on another host is refused before
    // anything changes.
    let writer = Writer::with_ring(&mut spec, &ring, "key rotate")?;
    let rotated = (|| {
        let epoch = begin(&*writer.store, &mut ring)?;
        writer
            .auditor
            .record(Record::admin(&format!("key rotate: epoch {epoch} begun")));
        let sealers = Sealers {
            engine: &writer.engine,
            auditor: Some(&writer.auditor),
            holder: Some(&writer.holder),
        };
        let progress = ResealProgress::default();
        let started = Instant::now();
        let report = with_bar(&progress, || {
            finish(&*writer.store, &sealers, ring, &|| Ok(()), &progress, rate)
        })?;
        writer.auditor.record(Record::admin(&format!(
            "key rotate: epoch {epoch} finished"
        )));
        Ok::<_, CliError>((epoch, report, started.elapsed().as_secs_f64()))
    })();
    let closed = writer.close();
    let (epoch, r, seconds) = rotated?;
    closed?;
    print_done(
        epoch,
        &RotationDone {
            packs: r.packs,
            metadata: r.metadata,
            bytes: r.bytes,
            seconds,
        },
    );
    Ok(())
}

/// Draws a bar from `progress` while `work` runs.
fn with_bar<T>(progress: &ResealProgress, work: impl FnOnce() -> T) -> T {
    let bar = Progress::items("objects re-encrypted", None);
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                tick(
                    &bar,
                    progress.done.load(Ordering::Relaxed),
                    progress.total.load(Ordering::Relaxed),
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        let out = work();
        stop.store(true, Ordering::Relaxed);
        out
    })
}

fn tick(bar: &Progress, done: u64, total: u64) {
    bar.set_total(total);
    bar.inc(done.saturating_sub(bar.position()));
}

/// Follows the daemon's rotation in `status` until it ends.
fn follow(pid: i32, epoch: u32) -> CliResult<()> {
    let bar = Progress::items("objects re-encrypted", None);
    loop {
        let report = match control::call(pid, &Request::Status)? {
            Reply::Status(s) => s.rotation,
            other => return Err(CliError::usage(format!("the daemon answered {other:?}"))),
        };
        let Some(r) = report.filter(|r| r.epoch == epoch) else {
            return Err(CliError::usage("the daemon did not start the rotation"));
        };
        tick(&bar, r.done, r.total);
        match (r.state.as_str(), r.finished, r.error) {
            (_, Some(done), _) => {
                drop(bar);
                print_done(epoch, &done);
                return Ok(());
            }
            ("failed", _, error) => {
                return Err(CliError::new(
                    EXIT_STORE,
                    format!(
                        "the rotation stopped: {}; run key rotate again to resume it",
                        error.unwrap_or_default()
                    ),
                ));
            }
            _ => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

fn print_done(epoch: u32, d: &RotationDone) {
    println!(
        "key epoch {epoch}: {} packs and {} metadata objects re-encrypted ({}, {:.1} s); \
         the old key is erased from every keyslot",
        d.packs,
        d.metadata,
        human_bytes(d.bytes),
        d.seconds
    );
}
