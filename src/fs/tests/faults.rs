//! Crash consistency and store faults: a crash at every mutating store
//! call of a fixed workload, a journal PUT failing after its pack PUT, a
//! lost answer on a create-only PUT, transient upload faults, and tampered
//! objects.
//!
//! Crashes are simulated by the `FaultStore`: after `fail_after_mutations(n)`
//! nothing more reaches the store. The dead filesystem is then abandoned on
//! a detached thread (its committer may keep retrying the dead store for up
//! to a minute) and the volume is remounted over the bare memory store; the
//! plan is never healed, so the dead mount's retries can never land.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::*;
use crate::fs::{FsError, FsResult, Kind};
use crate::meta::journal::journal_key;
use crate::store::{FaultPlan, FaultStore, MemoryStore, Op};

/// What the workload has promised so far; read after a crash.
#[derive(Clone, Debug, Default)]
struct Promises {
    /// label → (inode, content) acknowledged by fsync and not touched
    /// since: must be intact after any crash.
    acked: BTreeMap<&'static str, (u64, Vec<u8>)>,
    /// path → the versions it may show (an atomic save, an unsynced
    /// append): it must exist with one of them.
    versions: BTreeMap<&'static str, Vec<Vec<u8>>>,
}

fn new_file(fs: &Fs, parent: u64, name: &str, data: &[u8]) -> FsResult<u64> {
    let (attr, o) = fs.create(&ME, parent, os(name), 0o644, 0o022, libc::O_WRONLY)?;
    fs.write(&ME, attr.ino, o.fh, 0, data)?;
    fs.release(attr.ino, o.fh)?;
    Ok(attr.ino)
}

fn write_at(fs: &Fs, ino: u64, off: u64, data: &[u8]) -> FsResult<()> {
    let o = fs.open(&ME, ino, libc::O_WRONLY)?;
    fs.write(&ME, ino, o.fh, off, data)?;
    fs.release(ino, o.fh)
}

fn cat(a: &[u8], b: &[u8]) -> Vec<u8> {
    [a, b].concat()
}

/// The fixed workload: creates, writes, fsyncs of some files, renames
/// (an editor's atomic save among them), an unlink, mkdirs, an unsynced
/// append and an fsynced overwrite. Each promise is recorded right after
/// the call that makes it, and withdrawn right before the call that ends
/// it, so whatever the crash point the promises read afterwards hold.
fn workload(fs: &Fs, p: &Mutex<Promises>, pause: Duration) -> FsResult<()> {
    // Lets background flushes and commits run between steps.
    let pause = || std::thread::sleep(pause);
    let ack = |label, ino, data: &[u8]| {
        p.lock().unwrap().acked.insert(label, (ino, data.to_vec()));
    };
    let unack = |label| {
        p.lock().unwrap().acked.remove(label);
    };
    let versions = |path, v: Vec<Vec<u8>>| {
        p.lock().unwrap().versions.insert(path, v);
    };
    let a1 = pattern(100_000, 1);
    let b1 = pattern(3_000, 2);
    let c1 = pattern(200_000, 3);
    let e1 = pattern(10_000, 5);
    let e2 = pattern(5_000, 6);
    let f1 = pattern(300_000, 7);
    let g1 = pattern(20_000, 8);
    let g2 = pattern(30_000, 9);

    let d = fs.mkdir(&ME, ROOT, os("d"), 0o755, 0o022)?.ino;
    let a = new_file(fs, d, "a", &a1)?;
    fs.fsync(a, 0, false)?;
    ack("a", a, &a1);

    new_file(fs, ROOT, "b", &b1)?; // never fsynced
    pause();
    let c = new_file(fs, ROOT, "c", &c1)?;
    fs.fsync(c, 0, false)?;
    ack("c", c, &c1);

    fs.rename(&ME, ROOT, os("b"), d, os("b2"), 0)?;
    pause();
    let g = new_file(fs, ROOT, "g", &g1)?;
    fs.fsync(g, 0, true)?;
    ack("g", g, &g1);
    let e = new_file(fs, ROOT, "e", &e1)?;
    fs.fsync(e, 0, false)?;
    ack("e", e, &e1);

    unack("c");
    fs.unlink(&ME, ROOT, os("c"))?;
    pause();

    let sub = fs.mkdir(&ME, d, os("sub"), 0o755, 0o022)?.ino;
    let f = new_file(fs, sub, "f", &f1)?;
    fs.fsync(f, 0, false)?;
    ack("f", f, &f1);

    // An append nobody fsyncs (within one chunk): old or new, never torn.
    unack("e");
    versions("e", vec![e1.clone(), cat(&e1, &e2)]);
    write_at(fs, e, e1.len() as u64, &e2)?;
    pause();

    // An editor's atomic save: g is the old or the new version, never empty.
    unack("g");
    versions("g", vec![g1.clone(), g2.clone()]);
    new_file(fs, ROOT, "g.tmp", &g2)?;
    pause();
    fs.rename(&ME, ROOT, os("g.tmp"), ROOT, os("g"), 0)?;

    // A fsynced file moves: its content stays, wherever it is.
    fs.rename(&ME, d, os("a"), ROOT, os("a_moved"), 0)?;
    pause();

    // An overwrite inside one chunk, then fsync.
    unack("f");
    let mut f2 = f1.clone();
    f2[70_000..71_000].copy_from_slice(&pattern(1_000, 10));
    versions("d/sub/f", vec![f1.clone(), f2.clone()]);
    write_at(fs, f, 70_000, &f2[70_000..71_000])?;
    pause();
    fs.fsync(f, 0, false)?;
    ack("f", f, &f2);

    fs.mkdir(&ME, sub, os("empty"), 0o755, 0o022)?;
    fs.fsync(a, 0, false)?;
    Ok(())
}

/// The checks after a remount: a consistent tree, every acknowledged file
/// intact and reachable, every versioned path showing one of its versions.
fn check_promises(fs: &Fs, p: &Promises) -> Result<(), String> {
    let tree = check_consistent(fs)?;
    let reachable: BTreeSet<u64> = tree
        .values()
        .filter(|(n, _)| matches!(n, Node::File { .. }))
        .map(|(_, ino)| *ino)
        .collect();
    for (label, (ino, want)) in &p.acked {
        if !reachable.contains(ino) {
            return Err(format!("fsynced {label} (inode {ino}) is not in the tree"));
        }
        let got = try_read_all(fs, *ino).map_err(|e| format!("fsynced {label}: {e}"))?;
        if &got != want {
            return Err(format!(
                "fsynced {label}: {} bytes, want {}",
                got.len(),
                want.len()
            ));
        }
    }
    for (path, versions) in &p.versions {
        let Some((Node::File { .. }, ino)) = tree.get(*path) else {
            return Err(format!("{path} is missing or not a file"));
        };
        let got = try_read_all(fs, *ino).map_err(|e| format!("{path}: {e}"))?;
        if !versions.contains(&got) {
            return Err(format!(
                "{path}: {} bytes, none of the versions ({:?} bytes)",
                got.len(),
                versions.iter().map(Vec::len).collect::<Vec<_>>()
            ));
        }
    }
    Ok(())
}

/// One run of the workload with a crash after `n` mutating calls (never
/// when `None`). Returns whether the crash happened.
fn crash_run(n: Option<u64>, opts: FsOptions, pause: Duration) -> bool {
    let vol = Vol::new();
    let fault = FaultStore::new(vol.mem.clone());
    let plan = fault.plan();
    let fs = vol.try_mount_on(Arc::new(fault), opts).unwrap();
    if let Some(n) = n {
        plan.fail_after_mutations(n);
    }
    let promises = Arc::new(Mutex::new(Promises::default()));
    let (tx, rx) = mpsc::channel();
    {
        let (fs, promises) = (fs.clone(), promises.clone());
        std::thread::spawn(move || {
            let r = workload(&fs, &promises, pause);
            let _ = tx.send(r.map_err(|e| e.to_string()));
        });
    }
    let finished = loop {
        match rx.recv_timeout(Duration::from_millis(2)) {
            Ok(r) => break Some(r),
            Err(RecvTimeoutError::Timeout) if plan.crashed() => break None,
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => panic!("the workload thread panicked"),
        }
    };
    // From here on nothing reaches the store: what is there is what a
    // SIGKILL now would leave. Promises made later cannot be durable.
    let crashed = plan.crashed();
    let promised = promises.lock().unwrap().clone();
    if !crashed {
        if let Some(Err(e)) = finished {
            panic!("the workload failed without any fault: {e}");
        }
    }
    {
        let fs = fs.clone();
        std::thread::spawn(move || fs.abandon());
    }
    drop(fs);
    let fs = vol.mount_mem(quiet());
    if let Err(e) = check_promises(&fs, &promised) {
        panic!(
            "crash after {n:?} mutations: {e}\n  promised: acked {:?}, versions of {:?}",
            promised.acked.keys().collect::<Vec<_>>(),
            promised.versions.keys().collect::<Vec<_>>()
        );
    }
    fs.shutdown().unwrap();
    crashed
}

fn crash_at_every_step(opts: FsOptions, pause: Duration) -> u64 {
    for n in 0..500 {
        if !crash_run(Some(n), opts.clone(), pause) {
            return n;
        }
    }
    panic!("the workload never completed within 500 mutations");
}

#[test]
fn crash_at_every_store_mutation_keeps_fsynced_data() {
    // Nothing commits unless fsync, a rename over a file or the journal
    // size asks: the crash points are those of the commits themselves.
    let n = crash_at_every_step(quiet(), Duration::ZERO);
    eprintln!("quiet workload: crashed at each of its {n} mutating store calls");
    assert!(n >= 10, "the workload made only {n} mutating calls");
}

#[test]
fn crash_at_every_store_mutation_with_background_commits() {
    // Background flushes and commits every 10 ms interleave with the
    // workload (which pauses between steps), so crash points fall inside
    // them too.
    let n = crash_at_every_step(
        FsOptions::with_engine(|e| e.commit_interval = Duration::from_millis(10)),
        Duration::from_millis(25),
    );
    eprintln!("busy workload: crashed at each of its {n} mutating store calls");
}

#[test]
fn crash_at_every_store_mutation_with_a_checkpoint_after_each_commit() {
    // Every commit is followed by a checkpoint (shards, then the index),
    // the deletion of the checkpoints and journal segments no longer
    // needed, and of retired packs: crash points fall inside all of them.
    let n = crash_at_every_step(quiet_with(|e| e.checkpoint_bytes = 1), Duration::ZERO);
    eprintln!("checkpointing workload: crashed at each of its {n} mutating store calls");
}

#[test]
fn completed_workload_survives_a_crash_after_it() {
    assert!(!crash_run(None, quiet(), Duration::ZERO));
}

fn data_keys(mem: &MemoryStore) -> BTreeSet<String> {
    mem.keys()
        .into_iter()
        .filter(|k| k.starts_with("data/"))
        .collect()
}

#[test]
fn journal_put_failing_after_its_pack_put_fails_fsync_and_gc_removes_the_orphan() {
    let vol = Vol::new();
    let fault = FaultStore::new(vol.mem.clone());
    let plan = fault.plan();
    let fs = vol
        .try_mount_on(retrying(fault), packs_only(quiet()))
        .unwrap();
    let a_data = pattern(100_000, 1);
    let a = put_file(&fs, "a", &a_data);
    fs.fsync(a, 0, false).unwrap();
    let before = data_keys(&vol.mem);
    let b = put_file(&fs, "b", &pattern(200_000, 2));
    plan.fail_matching(&[Op::PutIfAbsent], "meta/journal/", u32::MAX);
    // The pack goes up, every journal PUT fails: fsync waits while the
    // store retries to its deadline, then reports EIO, never success.
    let err = fs.fsync(b, 0, false).unwrap_err();
    assert_eq!(err.errno(), libc::EIO, "{err}");
    let orphans: Vec<String> = data_keys(&vol.mem).difference(&before).cloned().collect();
    assert_eq!(orphans.len(), 1, "b's pack was uploaded: {orphans:?}");
    // Nothing is acknowledged while the journal cannot commit.
    assert_eq!(fs.fsync(a, 0, false).unwrap_err().errno(), libc::EIO);
    assert_eq!(fs.sync_all().unwrap_err().errno(), libc::EIO);
    fs.abandon();
    plan.heal();
    drop(fs);

    let fs = vol.mount_mem(quiet());
    check_consistent(&fs).unwrap();
    assert_eq!(read_all(&fs, a), a_data, "the acknowledged file is intact");
    assert!(matches!(
        fs.lookup(&ME, ROOT, os("b")),
        Err(FsError::NotFound)
    ));
    fs.engine().force_gc().unwrap();
    assert!(
        vol.mem.raw(&orphans[0]).is_some(),
        "an unreferenced pack younger than the grace period stays"
    );
    fs.shutdown().unwrap();
    drop(fs);

    let fs = vol.mount_mem(quiet_with(|e| e.gc_grace = Duration::ZERO));
    fs.engine().force_gc().unwrap();
    assert!(
        vol.mem.raw(&orphans[0]).is_none(),
        "the orphan pack is collected after the grace period"
    );
    assert_eq!(
        data_keys(&vol.mem),
        before,
        "referenced packs are kept, the orphan is gone"
    );
    assert_eq!(read_all(&fs, a), a_data);
    fs.shutdown().unwrap();
}

#[test]
fn lost_answer_on_a_journal_put_is_resolved_by_reading_back() {
    let vol = Vol::new();
    let fault = FaultStore::new(vol.mem.clone());
    let plan = fault.plan();
    let fs = vol.try_mount_on(retrying(fault), quiet()).unwrap();
    plan.lose_answer_on_next_matching(Op::PutIfAbsent, "meta/journal/");
    let f_data = pattern(50_000, 1);
    let f = put_file(&fs, "f", &f_data);
    fs.fsync(f, 0, false)
        .expect("our own segment, found on retry, is a success");
    assert_eq!(plan.injected(), 1, "the answer was lost once");
    // The journal goes on at the next seq.
    let g_data = pattern(70_000, 2);
    let g = put_file(&fs, "g", &g_data);
    fs.fsync(g, 0, false).unwrap();
    assert!(!fs.is_read_only());
    fs.shutdown().unwrap();
    drop(fs);
    let fs = vol.mount_mem(quiet());
    assert_eq!(read_all(&fs, f), f_data);
    assert_eq!(read_all(&fs, g), g_data);
    fs.shutdown().unwrap();
}

#[test]
fn transient_pack_put_faults_are_retried() {
    let vol = Vol::new();
    let fault = FaultStore::new(vol.mem.clone());
    let plan = fault.plan();
    let fs = vol.try_mount_on(retrying(fault), quiet()).unwrap();
    plan.fail_matching(&[Op::Put], "data/", 2);
    let data = pattern(300_000, 4);
    let ino = put_file(&fs, "f", &data);
    fs.fsync(ino, 0, false).unwrap();
    assert_eq!(
        plan.injected(),
        2,
        "both faults were hit, then the upload went through"
    );
    assert!(!fs.is_read_only());
    fs.shutdown().unwrap();
    drop(fs);
    let fs = vol.mount_mem(quiet());
    assert_eq!(read_all(&fs, ino), data);
    fs.shutdown().unwrap();
}

#[test]
fn tampered_pack_reads_as_integrity_error_and_other_files_work() {
    let vol = Vol::new();
    let fs = vol.mount_with(packs_only(quiet()));
    let a_data = pattern(150_000, 1);
    let a = put_file(&fs, "a", &a_data);
    fs.fsync(a, 0, false).unwrap();
    let a_pack: Vec<String> = data_keys(&vol.mem).into_iter().collect();
    assert_eq!(a_pack.len(), 1);
    let b_data = pattern(150_000, 2);
    let b = put_file(&fs, "b", &b_data);
    fs.fsync(b, 0, false).unwrap();
    let c_data = pattern(150_000, 3);
    let c = put_file(&fs, "c", &c_data);
    fs.shutdown().unwrap();
    drop(fs);
    let mut packs = data_keys(&vol.mem);
    packs.remove(&a_pack[0]);
    assert_eq!(packs.len(), 2, "b and c have their own packs");

    // One flipped bit inside a's first segment (past its 24-byte nonce).
    let mut raw = vol.mem.raw(&a_pack[0]).unwrap();
    raw[100] ^= 0x04;
    vol.mem.overwrite_raw(&a_pack[0], &raw);

    let fs = vol.mount_with(quiet());
    let o = fs.open(&ME, a, libc::O_RDONLY).unwrap();
    match fs.read(a, o.fh, 0, 4096) {
        Err(e @ FsError::Integrity(_)) => assert_eq!(e.errno(), libc::EIO),
        other => panic!("tampered chunk read gave {other:?}"),
    }
    // Authentication is per segment: a's other chunks still read right.
    assert_eq!(
        fs.read(a, o.fh, 70_000, 1000).unwrap(),
        &a_data[70_000..71_000]
    );
    assert!(
        fs.read(a, o.fh, 0, 10).is_err(),
        "never wrong bytes on retry"
    );
    fs.release(a, o.fh).unwrap();
    assert_eq!(read_all(&fs, b), b_data);
    assert_eq!(read_all(&fs, c), c_data);
    fs.shutdown().unwrap();
}

#[test]
fn replayed_journal_segment_fails_the_mount() {
    let vol = Vol::new();
    let fs = vol.mount_with(quiet());
    let a = put_file(&fs, "a", b"first");
    fs.fsync(a, 0, false).unwrap();
    let b = put_file(&fs, "b", b"second");
    fs.fsync(b, 0, false).unwrap();
    fs.abandon();
    drop(fs);
    let seg1 = vol.mem.raw(&journal_key(1)).expect("segment 1");
    let seg2 = vol.mem.raw(&journal_key(2)).expect("segment 2");
    let mount = |v: &Vol| v.try_mount_on(Arc::new(v.mem.clone()), quiet());
    {
        let fs = mount(&vol).expect("the untouched volume mounts");
        assert_eq!(read_all(&fs, b), b"second");
        fs.abandon();
    }

    // The older segment in place of the newer one.
    vol.mem.overwrite_raw(&journal_key(2), &seg1);
    match mount(&vol) {
        Err(e @ FsError::Integrity(_)) => assert_eq!(e.errno(), libc::EIO),
        Err(e) => panic!("replayed segment: mount failed with {e}, not an integrity error"),
        Ok(_) => panic!("replayed segment: mount succeeded"),
    }
    // The older segment appended as if it were the next one.
    vol.mem.overwrite_raw(&journal_key(2), &seg2);
    let last = (1..)
        .find(|s| vol.mem.raw(&journal_key(*s)).is_none())
        .unwrap();
    vol.mem.overwrite_raw(&journal_key(last), &seg1);
    match mount(&vol) {
        Err(FsError::Integrity(_)) => {}
        Err(e) => panic!("appended old segment: mount failed with {e}, not an integrity error"),
        Ok(_) => panic!("appended old segment: mount succeeded"),
    }
    // Put back, the volume mounts again.
    vol.mem.delete(&journal_key(last)).unwrap();
    let fs = mount(&vol).unwrap();
    assert_eq!(fs.lookup(&ME, ROOT, os("a")).unwrap().kind, Kind::File);
    assert_eq!(read_all(&fs, a), b"first");
    fs.shutdown().unwrap();
}

/// PUTs under `data/` held at a gate, so a test can change a file while its
/// pack upload is in flight.
#[derive(Clone, Default)]
struct Gate {
    plan: FaultPlan,
    state: Arc<(Mutex<GateState>, std::sync::Condvar)>,
}

#[derive(Default)]
struct GateState {
    closed: bool,
    /// Held PUTs allowed through.
    passes: u32,
    waiting: u32,
    /// Held PUTs go on, to fail by the plan (the process died).
    dead: bool,
}

impl Gate {
    /// `inner` behind the gate.
    fn over(inner: MemoryStore) -> (Gate, FaultStore<MemoryStore>) {
        let gate = Gate::default();
        let store = FaultStore::with_plan(inner, gate.plan.clone());
        let state = Arc::clone(&gate.state);
        gate.plan.before_each(move |op, key| {
            if op != Op::Put || !key.starts_with("data/") {
                return;
            }
            let (m, cv) = &*state;
            let mut s = m.lock().unwrap();
            if s.closed && !s.dead {
                s.waiting += 1;
                cv.notify_all();
                while !s.dead && s.passes == 0 {
                    s = cv.wait(s).unwrap();
                }
                s.waiting -= 1;
                if !s.dead {
                    s.passes -= 1;
                }
            }
        });
        (gate, store)
    }

    fn with<T>(&self, f: impl FnOnce(&mut GateState) -> T) -> T {
        let r = f(&mut self.state.0.lock().unwrap());
        self.state.1.notify_all();
        r
    }

    fn close(&self) {
        self.with(|s| s.closed = true);
    }

    /// The held PUTs and every later one under `data/` fail.
    fn kill(&self) {
        self.plan.fail_matching(&[Op::Put], "data/", u32::MAX);
        self.with(|s| s.dead = true);
    }

    fn pass_one(&self) {
        self.with(|s| s.passes += 1);
    }

    /// Waits until `n` PUTs are held.
    fn wait_held(&self, n: u32) {
        let (m, cv) = &*self.state;
        let mut s = m.lock().unwrap();
        while s.waiting < n {
            let (g, t) = cv.wait_timeout(s, Duration::from_secs(30)).unwrap();
            assert!(!t.timed_out(), "no upload reached the gate");
            s = g;
        }
    }
}

/// A chunk rewritten while its pack uploads is mapped (older version) but
/// stays dirty, so the size journaled with it is clamped below the data it
/// maps. After a crash the file has the clamped size and a chunk map
/// reaching past it; growing the file then shows the stale bytes where
/// zeros belong. Found by the model test (seed 106, chunk 64 KiB).
#[test]
fn crash_never_leaves_mapped_bytes_past_eof() {
    let mem = MemoryStore::new();
    let (gate, store) = Gate::over(mem.clone());
    let vol = Vol::create(mem, Arc::new(store), 65536);
    let fs = vol.mount_with(packs_only(quiet()));
    let size = 16 * 65536 + 38_926;
    let f = put_file(&fs, "f", &pattern(size, 1));
    fs.fsync(f, 0, false).unwrap();
    // Extend the file inside its last chunk (chunk 16).
    write_at(&fs, f, size as u64, &pattern(20_000, 2)).unwrap();
    gate.close();
    let syncer = {
        let fs = fs.clone();
        std::thread::spawn(move || fs.fsync(f, 0, false))
    };
    gate.wait_held(1);
    // Chunk 16 changes while its pack is in flight.
    write_at(&fs, f, size as u64 + 100, b"rewritten").unwrap();
    gate.pass_one();
    // The flush's records (chunk 16 -> the pack, size clamped to the
    // journaled 1087502) are appended; fsync re-flushes the newer version.
    gate.wait_held(1);
    fs.fsyncdir(ROOT, 0, false).unwrap();
    fs.abandon();
    gate.kill();
    drop(syncer);

    let fs = vol.mount_mem(quiet());
    check_consistent(&fs).unwrap();
    let now = fs.getattr(f).unwrap().size;
    assert_eq!(read_all(&fs, f), pattern(size, 1)[..now as usize]);
    // Grow the file: everything past the old end must read as zeros.
    let o = fs.open(&ME, f, libc::O_RDWR).unwrap();
    fs.write(&ME, f, o.fh, 40 * 65536, b"x").unwrap();
    let past = fs.read(f, o.fh, now, 30_000).unwrap();
    let stale = past.iter().position(|b| *b != 0);
    fs.release(f, o.fh).unwrap();
    assert_eq!(
        stale.map(|i| now + i as u64),
        None,
        "size after the crash {now}: nonzero byte past the old end"
    );
    fs.shutdown().unwrap();
}
