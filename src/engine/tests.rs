//! The engine on its own, over the memory store: what snapshots, followers,
//! fsck and replicas will build on.

use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::crypto::{KdfParams, KeyRing, MasterKey};
use crate::meta::{InodeAttr, ROOT_INO, Timestamp};
use crate::store::{FaultStore, MemoryStore, Op, RetryPolicy, RetryingStore, StoreError};

const PASS: &[u8] = b"engine test";

struct Vol {
    mem: MemoryStore,
    header: VolumeHeader,
}

impl Vol {
    fn new() -> Vol {
        let mem = MemoryStore::new();
        let master = MasterKey::generate();
        let header = VolumeHeader::new(&master, PASS, KdfParams::insecure_fast(), 65536).unwrap();
        mem.put_if_absent("volume", &header.encode()).unwrap();
        Engine::format(&mem, &header, &KeyRing::single(0, master)).unwrap();
        Vol { mem, header }
    }

    fn open_on(&self, store: Arc<dyn ObjectStore>, opts: EngineOptions) -> Arc<Engine> {
        let master = self.header.unlock(PASS).unwrap();
        Engine::open(store, &self.header, &master, opts).unwrap()
    }

    fn open(&self, read_only: bool) -> Arc<Engine> {
        let opts = EngineOptions {
            read_only,
            commit_interval: Duration::from_millis(20),
            retire_grace: Duration::ZERO,
            ..EngineOptions::default()
        };
        self.open_on(Arc::new(self.mem.clone()), opts)
    }
}

/// Creates file `name` in the root, its data in one new pack; returns
/// (inode, the id to wait on).
fn add_file(e: &Engine, name: &str, data: &[u8]) -> (u64, CommitId) {
    let written = e.write_pack(&[data]).unwrap();
    let mut txn = e.lock();
    let ino = txn.alloc_ino();
    let mut attr = InodeAttr::new(Kind::File, 0o644, 0, 0);
    attr.size = data.len() as u64;
    let mut root = txn.ns().get(ROOT_INO).unwrap().attr;
    root.mtime = Timestamp::now();
    let mut records = vec![
        Record::Inode { ino, attr },
        Record::Dirent {
            dir: ROOT_INO,
            name: name.as_bytes().to_vec(),
            ino: Some(ino),
        },
        Record::Inode {
            ino: ROOT_INO,
            attr: root,
        },
    ];
    let mut map = PackRecords::new(&written);
    map.map(ino, 0, &written.placed[0]);
    records.extend(map.finish());
    let id = txn.apply(records).unwrap();
    (ino, id)
}

fn remove_file(e: &Engine, name: &str, ino: u64) -> CommitId {
    e.lock()
        .apply(vec![
            Record::Dirent {
                dir: ROOT_INO,
                name: name.as_bytes().to_vec(),
                ino: None,
            },
            Record::Drop { ino },
        ])
        .unwrap()
}

/// The extent of `ino`'s first chunk, and its pack's unit count.
fn first_extent(e: &Engine, ino: u64) -> (crate::data::Extent, u32) {
    let txn = e.lock();
    let (_, extent) = txn
        .ns()
        .get(ino)
        .unwrap()
        .chunks()
        .unwrap()
        .extent_at(0)
        .unwrap();
    (extent, txn.ns().pack(&extent.pack).unwrap().units)
}

fn read(e: &Engine, ino: u64) -> Vec<u8> {
    let (extent, units) = first_extent(e, ino);
    e.read_run(&extent, 0, 1, units).unwrap().remove(0)
}

#[test]
fn applied_records_are_durable_and_replayed() {
    let vol = Vol::new();
    let e = vol.open(false);
    let (ino, id) = add_file(&e, "a", b"hello");
    e.wait_durable(id).unwrap();
    let (seq, hash) = e.committed();
    assert!(seq >= 1);
    e.shutdown().unwrap();
    drop(e);
    let e = vol.open(true);
    assert_eq!(
        e.committed(),
        (seq, hash),
        "the same chain head after replay"
    );
    assert_eq!(read(&e, ino), b"hello");
}

#[test]
fn a_follower_sees_new_commits_and_a_trimmed_journal() {
    let vol = Vol::new();
    let writer = vol.open(false);
    let follower = vol.open(true);
    let (a, id) = add_file(&writer, "a", b"first");
    writer.wait_durable(id).unwrap();
    assert!(follower.catch_up(true).unwrap().segments >= 1);
    assert_eq!(read(&follower, a), b"first");
    assert_eq!(follower.committed(), writer.committed());
    assert_eq!(follower.catch_up(true).unwrap().segments, 0, "nothing new");

    // Two checkpoints later the segments the follower would need are gone:
    // it loads the newest checkpoint instead.
    let (b, _) = add_file(&writer, "b", b"second");
    writer.checkpoint_now().unwrap();
    writer.checkpoint_now().unwrap();
    writer.checkpoint_now().unwrap();
    assert!(follower.catch_up(true).unwrap().segments >= 1);
    assert_eq!(read(&follower, b), b"second");
    assert_eq!(follower.committed(), writer.committed());
    assert!(writer.lock().apply(vec![]).is_ok());
    assert!(matches!(
        follower.lock().apply(vec![Record::Drop { ino: a }]),
        Err(EngineError::ReadOnly)
    ));
}

#[test]
fn a_pinned_checkpoint_keeps_its_packs_and_objects() {
    let vol = Vol::new();
    let e = vol.open(false);
    let (a, id) = add_file(&e, "a", b"kept by the pin");
    e.wait_durable(id).unwrap();
    let pinned = e.checkpoint_now().unwrap();
    e.pin(pinned).unwrap();
    let pack = {
        let txn = e.lock();
        let (_, ext) = txn
            .ns()
            .get(a)
            .unwrap()
            .chunks()
            .unwrap()
            .extent_at(0)
            .unwrap();
        ext.pack
    };
    e.wait_durable(remove_file(&e, "a", a)).unwrap();
    // Two newer checkpoints would otherwise retire checkpoint `pinned`.
    e.checkpoint_now().unwrap();
    e.checkpoint_now().unwrap();
    e.shutdown().unwrap();
    assert!(vol.mem.raw(&pack.key()).is_some(), "the pinned pack stays");
    let kept = crate::meta::checkpoint::list(&vol.mem).unwrap();
    assert!(kept.contains(&pinned), "{kept:?}");
    let refs = e.referenced().unwrap();
    assert!(refs.checkpoints.contains(&pinned));
    assert!(refs.packs.contains(&pack));

    e.unpin(pinned);
    assert!(!e.referenced().unwrap().packs.contains(&pack));
}

#[test]
fn a_store_outage_fails_waiters_then_commits_when_it_ends() {
    let vol = Vol::new();
    let faulty = FaultStore::new(vol.mem.clone());
    let plan = faulty.plan();
    let policy = RetryPolicy {
        deadline: Duration::from_millis(300),
        base: Duration::from_millis(1),
        cap: Duration::from_millis(20),
    };
    let store = Arc::new(RetryingStore::new(Arc::new(faulty), policy));
    let e = vol.open_on(
        store,
        EngineOptions {
            commit_interval: Duration::from_millis(20),
            ..EngineOptions::default()
        },
    );
    let (ino, id) = add_file(&e, "a", b"waits out the outage");
    plan.fail_matching(&[Op::PutIfAbsent], "meta/journal/", u32::MAX);
    let err = e.wait_durable(id).unwrap_err();
    assert!(
        matches!(err, EngineError::Failed(Failure::StoreUnavailable(_))),
        "{err}"
    );
    assert!(!e.is_read_only(), "an outage is not the end");
    plan.heal();
    e.wait_durable(id).unwrap();
    assert!(e.failure().is_none());
    e.shutdown().unwrap();
    drop(e);
    assert_eq!(read(&vol.open(true), ino), b"waits out the outage");
}

#[test]
fn a_permanent_refusal_is_not_retried_to_the_deadline() {
    let vol = Vol::new();
    let faulty = FaultStore::new(vol.mem.clone());
    let plan = faulty.plan();
    let store = Arc::new(RetryingStore::new(
        Arc::new(faulty),
        RetryPolicy::with_deadline(Duration::from_secs(600)),
    ));
    let e = vol.open_on(store, EngineOptions::default());
    plan.deny_matching(&[Op::Put], "data/", 1);
    let start = std::time::Instant::now();
    let err = e.write_pack(&[b"x"]).err().unwrap();
    assert!(start.elapsed() < Duration::from_secs(5));
    assert!(
        matches!(err, EngineError::Store(StoreError::AccessDenied { .. })),
        "{err}"
    );
    e.shutdown().unwrap();
}

#[test]
fn a_retired_pack_outlives_its_commit_by_the_grace_for_followers() {
    let vol = Vol::new();
    let opts = EngineOptions {
        commit_interval: Duration::from_millis(20),
        retire_grace: Duration::from_millis(400),
        ..EngineOptions::default()
    };
    let e = vol.open_on(Arc::new(vol.mem.clone()), opts);
    let (a, id) = add_file(&e, "a", b"read by a lagging follower");
    e.wait_durable(id).unwrap();
    let follower = vol.open(true);
    let pack = {
        let txn = e.lock();
        let (_, ext) = txn
            .ns()
            .get(a)
            .unwrap()
            .chunks()
            .unwrap()
            .extent_at(0)
            .unwrap();
        ext.pack
    };
    e.wait_durable(remove_file(&e, "a", a)).unwrap();
    // The follower still maps the file: its pack is still there to read.
    assert!(vol.mem.raw(&pack.key()).is_some());
    assert_eq!(read(&follower, a), b"read by a lagging follower");
    std::thread::sleep(Duration::from_millis(500));
    // The next commit deletes what waited out the grace.
    let (_, id) = add_file(&e, "b", b"later");
    e.wait_durable(id).unwrap();
    e.shutdown().unwrap();
    assert!(
        vol.mem.raw(&pack.key()).is_none(),
        "deleted after the grace"
    );
}

/// After a rotation's re-seal nothing the volume needs opens under the old
/// epoch's keys (not a live segment, not a snapshot's, not a journal
/// segment, checkpoint object or snapshot record), and everything reads
/// back under the new ring, before and after the old epoch is dropped.
#[test]
fn a_rotation_leaves_nothing_the_old_key_opens() {
    use crate::crypto::{Keys, UnitAd, open};
    use crate::data::pack::open_segment;

    let vol = Vol::new();
    let e = vol.open(false);
    let files: Vec<(&str, Vec<u8>)> = (0..4)
        .map(|i| (["a", "b", "c", "d"][i], vec![i as u8 + 1; 3000 + i * 5000]))
        .collect();
    let mut inos = Vec::new();
    for (name, data) in &files[..3] {
        let (ino, id) = add_file(&e, name, data);
        e.wait_durable(id).unwrap();
        inos.push(ino);
    }
    e.create_snapshot("before").unwrap();
    e.wait_durable(remove_file(&e, "b", inos[1])).unwrap();
    let (ino, id) = add_file(&e, "d", &files[3].1);
    e.wait_durable(id).unwrap();
    inos.push(ino);
    let segments: Vec<_> = {
        let txn = e.lock();
        [0, 2, 3]
            .iter()
            .map(|&i| {
                let (_, x) = txn
                    .ns()
                    .get(inos[i])
                    .unwrap()
                    .chunks()
                    .unwrap()
                    .extent_at(0)
                    .unwrap();
                (i, x.segment(0), txn.ns().pack(&x.pack).unwrap().units)
            })
            .collect()
    };

    let vid = vol.header.volume_id;
    let old = Keys::from_ring(&vol.header.unlock(PASS).unwrap(), &vid);
    let mut ring = vol.header.unlock(PASS).unwrap();
    ring.rotate_to(1, MasterKey::generate()).unwrap();
    let mut header = vol.header.clone();
    header.adopt_ring(&ring).unwrap();
    vol.mem.put("volume", &header.encode()).unwrap();
    e.rekey(&ring).unwrap();
    let progress = ResealProgress::default();
    let report = e.reseal(&progress, None).unwrap();
    assert!(report.packs >= 3, "{report:?}");

    let new = Keys::from_ring(&ring, &vid);
    for (i, s, units) in &segments {
        let body = vol.mem.get(&s.pack.key()).unwrap();
        let sealed = &body[s.cipher_off as usize..(s.cipher_off + s.cipher_len as u64) as usize];
        let last = s.unit + 1 == *units;
        assert!(open_segment(&old.data, &vid, s.pack, s.unit, last, sealed, s.plain_len).is_err());
        let plain = open_segment(
            &new.data.current_only(),
            &vid,
            s.pack,
            s.unit,
            last,
            sealed,
            s.plain_len,
        );
        assert_eq!(plain.unwrap(), files[*i].1);
    }
    let mut checked = 0;
    for o in vol.mem.list("").unwrap() {
        if o.key.starts_with("meta/") || o.key.starts_with("snapshots/") {
            let body = vol.mem.get(&o.key).unwrap();
            let ad = UnitAd::whole(&vid, &o.key);
            assert!(
                open(&old.meta, &ad, &body).is_err(),
                "{} opens under the old key",
                o.key
            );
            assert!(
                open(&new.meta.current_only(), &ad, &body).is_ok(),
                "{}",
                o.key
            );
            checked += 1;
        }
    }
    assert!(checked >= 5, "only {checked} metadata objects");

    // The old epoch dropped: the mount and its snapshot still read.
    ring.forget(0);
    header.adopt_ring(&ring).unwrap();
    vol.mem.put("volume", &header.encode()).unwrap();
    e.rekey(&ring).unwrap();
    assert_eq!(read(&e, inos[3]), files[3].1);
    e.shutdown().unwrap();
    drop(e);
    let opts = EngineOptions {
        read_only: true,
        ..EngineOptions::default()
    };
    let again = Engine::open(Arc::new(vol.mem.clone()), &header, &ring, opts.clone()).unwrap();
    for i in [0, 2, 3] {
        assert_eq!(read(&again, inos[i]), files[i].1);
    }
    let snap = EngineOptions {
        snapshot: Some("before".into()),
        ..opts
    };
    let before = Engine::open(Arc::new(vol.mem.clone()), &header, &ring, snap).unwrap();
    assert_eq!(read(&before, inos[1]), files[1].1);
}

/// Every regular file under `dir`.
fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        match e.file_type().unwrap().is_dir() {
            true => out.extend(files_under(&e.path())),
            false => out.push(e.path()),
        }
    }
    out
}

#[test]
fn a_cached_copy_that_fails_authentication_is_read_again_from_the_store() {
    use crate::store::{CountingStore, DiskCache, DiskCachedStore};
    let vol = Vol::new();
    let dir = tempfile::tempdir().unwrap();
    let cache = DiskCache::open(dir.path(), "vol", 64 << 20).unwrap();
    let counted = CountingStore::new(vol.mem.clone());
    let store = Arc::new(DiskCachedStore::new(counted.clone(), Arc::clone(&cache)));
    let opts = EngineOptions {
        commit_interval: Duration::from_millis(20),
        ..EngineOptions::default()
    };
    let e = vol.open_on(store, opts);
    let data = vec![7u8; 20_000];
    let (ino, id) = add_file(&e, "f", &data);
    e.wait_durable(id).unwrap();

    // Written through: read from disk, no GET.
    counted.reset();
    assert_eq!(read(&e, ino), data);
    assert_eq!(counted.counts().reads(), 0);

    // A flipped byte on disk: dropped, read once more from the store.
    let blocks: Vec<_> = files_under(&cache.root().join("data"));
    assert_eq!(blocks.len(), 1, "{blocks:?}");
    let mut bytes = std::fs::read(&blocks[0]).unwrap();
    bytes[100] ^= 1;
    std::fs::write(&blocks[0], &bytes).unwrap();
    assert_eq!(read(&e, ino), data);
    assert_eq!(counted.counts().get_range, 1);
    assert_eq!(cache.stats().dropped, 1);

    // The same through the neighbours' read, segment by segment.
    let (extent, units) = first_extent(&e, ino);
    let mut bytes = std::fs::read(&blocks[0]).unwrap();
    bytes[200] ^= 1;
    std::fs::write(&blocks[0], &bytes).unwrap();
    counted.reset();
    let seg = extent.segment(0);
    let got = e
        .read_segments(extent.pack, units, extent.cipher_range(0, 1), &[seg])
        .unwrap();
    assert_eq!(got.into_iter().next().unwrap().unwrap(), data);
    assert_eq!(counted.counts().get_range, 1);
    assert_eq!(cache.stats().dropped, 2);

    // Damaged in the store itself: one more read, then the failure.
    let key = vol.mem.list("data/").unwrap().remove(0).key;
    let mut body = vol.mem.get(&key).unwrap();
    body[100] ^= 1;
    vol.mem.put(&key, &body).unwrap();
    e.store().forget(&key, 0..u64::MAX);
    counted.reset();
    assert!(e.read_run(&extent, 0, 1, units).unwrap_err().is_integrity());
    assert_eq!(
        counted.counts().get_range,
        2,
        "one read, one retry from the store"
    );
    assert!(e.read_run(&extent, 0, 1, units).unwrap_err().is_integrity());
}

/// Holds the first PUT of a checkpoint shard once armed, until released:
/// the tree changes while a checkpoint is being written.
#[derive(Default)]
struct ShardGate {
    /// (armed, holding, released)
    state: std::sync::Mutex<(bool, bool, bool)>,
    changed: std::sync::Condvar,
}

impl ShardGate {
    /// `inner` behind a gate.
    fn over(inner: MemoryStore) -> (Arc<ShardGate>, Arc<FaultStore<MemoryStore>>) {
        let gate = Arc::new(ShardGate::default());
        let store = FaultStore::new(inner);
        let held = Arc::clone(&gate);
        store.plan().before_each(move |op, key| {
            let shard = key.starts_with(checkpoint::CHECKPOINT_PREFIX) && !key.ends_with("index");
            if op == Op::Put && shard && std::mem::take(&mut held.state.lock().unwrap().0) {
                held.set(|s| s.1 = true);
                held.wait_until(|s| s.2);
            }
        });
        (gate, Arc::new(store))
    }

    fn wait_until(&self, done: impl Fn(&(bool, bool, bool)) -> bool) {
        let mut s = self.state.lock().unwrap();
        while !done(&s) {
            s = self.changed.wait(s).unwrap();
        }
    }

    fn set(&self, change: impl FnOnce(&mut (bool, bool, bool))) {
        change(&mut self.state.lock().unwrap());
        self.changed.notify_all();
    }
}

/// A checkpoint is the state at the seq it names, whatever changes while it
/// is written (those land in the journal after it, then in the next
/// checkpoint), and a crash between the two replays them.
#[test]
fn a_checkpoint_is_a_consistent_cut_and_later_writes_replay_after_a_crash() {
    let vol = Vol::new();
    let (gate, store) = ShardGate::over(vol.mem.clone());
    let opts = EngineOptions {
        commit_interval: Duration::from_millis(20),
        retire_grace: Duration::ZERO,
        ..EngineOptions::default()
    };
    let e = vol.open_on(store, opts.clone());
    let (a, id) = add_file(&e, "a", b"before the checkpoint");
    e.wait_durable(id).unwrap();

    gate.set(|s| s.0 = true);
    let writer = {
        let e = Arc::clone(&e);
        std::thread::spawn(move || e.checkpoint_now())
    };
    gate.wait_until(|s| s.1);
    // The checkpoint is taken and its shard is on its way: change that
    // shard, in place and by a new inode.
    let (b, _) = add_file(&e, "b", b"during the checkpoint");
    let during = {
        let mut txn = e.lock();
        let mut attr = txn.ns().get(a).unwrap().attr;
        attr.perm = 0o600;
        txn.apply(vec![Record::Inode { ino: a, attr }]).unwrap()
    };
    assert_eq!(e.lock().ns().get(b).unwrap().attr.size, 21, "stat goes on");
    gate.set(|s| s.2 = true);
    let seq = writer.join().unwrap().unwrap();
    e.wait_durable(during).unwrap();

    let keys = vol.header.keys(&vol.header.unlock(PASS).unwrap());
    let cut = checkpoint::read(&vol.mem, &keys, &vol.header.volume_id, seq).unwrap();
    assert_eq!(
        cut.ns.get(a).unwrap().attr.perm,
        0o644,
        "a as it was at {seq}"
    );
    assert!(cut.ns.get(b).is_none(), "b came after {seq}");
    let root = cut.ns.get(ROOT_INO).unwrap().entries().unwrap();
    assert_eq!(root.len(), 1, "the root as it was at {seq}");
    assert!(e.committed().0 > seq, "the changes are journaled after it");

    // A crash before the next checkpoint: replay brings them back.
    e.abandon();
    drop(e);
    let e = vol.open_on(Arc::new(vol.mem.clone()), opts);
    assert_eq!(e.lock().ns().get(a).unwrap().attr.perm, 0o600);
    assert_eq!(read(&e, b), b"during the checkpoint");
    assert_eq!(read(&e, a), b"before the checkpoint");
    let next = e.checkpoint_now().unwrap();
    let cut = checkpoint::read(&vol.mem, &keys, &vol.header.volume_id, next).unwrap();
    assert_eq!(cut.ns.get(a).unwrap().attr.perm, 0o600, "in the next one");
    assert!(cut.ns.get(b).is_some(), "in the next one");
    e.shutdown().unwrap();
}

#[test]
fn a_rotation_probes_the_store_not_a_cached_copy() {
    use crate::store::{DiskCache, DiskCachedStore};
    let vol = Vol::new();
    let dir = tempfile::tempdir().unwrap();
    let cache = DiskCache::open(dir.path(), "vol", 64 << 20).unwrap();
    let store = Arc::new(DiskCachedStore::new(vol.mem.clone(), Arc::clone(&cache)));
    let opts = EngineOptions {
        commit_interval: Duration::from_millis(20),
        ..EngineOptions::default()
    };
    let e = vol.open_on(store, opts);
    let (_, id) = add_file(&e, "f", &[5u8; 20_000]);
    e.wait_durable(id).unwrap();
    let key = vol.mem.list("data/").unwrap().remove(0).key;
    let before = vol.mem.get(&key).unwrap();

    let mut ring = vol.header.unlock(PASS).unwrap();
    ring.rotate_to(1, MasterKey::generate()).unwrap();
    e.rekey(&ring).unwrap();
    let progress = ResealProgress::default();
    assert!(e.reseal(&progress, None).unwrap().packs >= 1);
    // The store holds the old epoch's pack again (another mount's store,
    // a replica, sharing this host's cache): the cache holds the new one.
    vol.mem.put(&key, &before).unwrap();
    let report = e.reseal(&ResealProgress::default(), None).unwrap();
    assert_eq!(report.packs, 1, "{report:?}");
    assert_ne!(vol.mem.get(&key).unwrap(), before);
}

/// A commit that was to carry a forced checkpoint fails once: the next
/// batch carries it, and `checkpoint_now` returns instead of waiting for
/// a checkpoint no batch will carry (a stalled batch, retried, never does).
#[test]
fn a_checkpoint_whose_commit_failed_is_carried_by_the_next_batch() {
    let vol = Vol::new();
    let faulty = FaultStore::new(vol.mem.clone());
    let plan = faulty.plan();
    let e = vol.open_on(
        Arc::new(faulty),
        EngineOptions {
            commit_interval: Duration::from_millis(20),
            ..EngineOptions::default()
        },
    );
    let (ino, id) = add_file(&e, "a", b"before the checkpoint");
    e.wait_durable(id).unwrap();
    plan.fail_matching(&[Op::PutIfAbsent], "meta/journal/", 1);
    let (tx, rx) = std::sync::mpsc::channel();
    let waiter = Arc::clone(&e);
    std::thread::spawn(move || tx.send(waiter.checkpoint_now()).unwrap());
    // Hang detection only: the checkpoint takes milliseconds.
    let seq = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("checkpoint_now still waiting")
        .unwrap();
    let cut = checkpoint::read(&vol.mem, &e.keys.get().unwrap(), &vol.header.volume_id, seq);
    assert!(cut.unwrap().ns.get(ino).is_some());
    e.shutdown().unwrap();
}

#[test]
fn full_pack_bodies_are_sealed_into_again_and_freed_when_idle() {
    let vol = Vol::new();
    let e = vol.open(false);
    let (one, two, short) = (vec![1u8; 65536], vec![2u8; 65536], vec![3u8; 10]);
    let first = e.write_pack(&[one.as_slice(); 128]).unwrap();
    let kept = e.bodies().iter().map(|b| b.as_ptr()).collect::<Vec<_>>();
    assert_eq!(kept.len(), 1, "the uploaded body is kept");
    let second = e.write_pack(&[two.as_slice(); 128]).unwrap();
    assert_eq!(
        e.bodies().iter().map(|b| b.as_ptr()).collect::<Vec<_>>(),
        kept,
        "the second pack is sealed into the first one's memory"
    );
    // Each pack in the store holds its own chunks, not the other's.
    let keys = e.keys.get().unwrap();
    for (w, want) in [(&first, &one), (&second, &two)] {
        let body = vol.mem.get(&w.id.key()).unwrap();
        assert_eq!(body.len() as u64, w.size);
        for p in [w.placed[0], w.placed[127]] {
            let s = &body[p.cipher_off as usize..][..p.cipher_len as usize];
            let last = p.unit == 127;
            let got = crate::data::open_segment(
                &keys.data,
                &e.volume_id,
                w.id,
                p.unit,
                last,
                s,
                p.plain_len,
            );
            assert_eq!(&got.unwrap(), want);
        }
    }
    drop(keys);
    let small = e.write_pack(&[&short]).unwrap();
    assert_eq!(
        vol.mem.get(&small.id.key()).unwrap().len() as u64,
        small.size
    );
    assert_eq!(e.bodies().len(), 1, "never more than a flusher's worth");
    e.release_pack_bodies();
    assert!(e.bodies().is_empty());
}
