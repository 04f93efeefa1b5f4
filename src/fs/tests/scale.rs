//! A namespace of several checkpoint shards: `stat` of every inode costs no
//! store call after the mount, and a commit touching 10 files writes O(10)
//! metadata (one journal segment; the checkpoint after it rewrites only
//! the shards those files live in). Figures print with `--nocapture`.

use std::time::{Duration, Instant};

use super::*;
use crate::engine::PackRecords;
use crate::fs::{Attr, DirPlusReplier, SetAttr, TimeSet};
use crate::meta::checkpoint::{CHECKPOINT_PREFIX, SHARD_INODES, shard_of};
use crate::meta::{InodeAttr, Record};
use crate::store::{CountingStore, OpCounts};

const ME: Caller = Caller::ROOT;
const DIRS: u64 = 40;
const PER_DIR: u64 = 1000;

struct Big {
    vol: Vol,
    counts: CountingStore<MemoryStore>,
}

impl Big {
    /// DIRS × PER_DIR one-chunk files, made straight through the engine
    /// (what `fs` would journal for them), then a checkpoint.
    fn new() -> Big {
        let mem = MemoryStore::new();
        let counts = CountingStore::new(mem.clone());
        let vol = Vol::create(mem, Arc::new(counts.clone()), 65536);
        let fs = vol.mount_with(quiet());
        let engine = fs.engine().clone();
        for d in 0..DIRS {
            let body = [d as u8; 10];
            let pack = engine
                .write_pack(&vec![&body[..]; PER_DIR as usize])
                .unwrap();
            let mut txn = engine.lock();
            let mut root = txn.ns().get(ROOT).unwrap().attr;
            root.nlink += 1;
            let dir = txn.alloc_ino();
            let mut records = vec![
                Record::Inode {
                    ino: dir,
                    attr: InodeAttr::new(Kind::Dir, 0o755, 0, 0),
                },
                Record::Dirent {
                    dir: ROOT,
                    name: format!("d{d}").into_bytes(),
                    ino: Some(dir),
                },
                Record::Inode {
                    ino: ROOT,
                    attr: root,
                },
            ];
            let mut map = PackRecords::new(&pack);
            let mut names = Vec::new();
            for (i, placed) in pack.placed.iter().enumerate() {
                let ino = txn.alloc_ino();
                let mut attr = InodeAttr::new(Kind::File, 0o644, 0, 0);
                attr.size = 10;
                records.push(Record::Inode { ino, attr });
                names.push(Record::Dirent {
                    dir,
                    name: format!("f{i}").into_bytes(),
                    ino: Some(ino),
                });
                map.map(ino, 0, placed);
            }
            records.extend(map.finish());
            records.extend(names);
            txn.apply(records).unwrap();
        }
        engine.checkpoint_now().unwrap();
        fs.shutdown().unwrap();
        Big { vol, counts }
    }

    /// Mounts and waits until the mount's one-off background work (the
    /// garbage scan) has stopped calling the store.
    fn mount(&self) -> Arc<Fs> {
        let fs = self.vol.mount_with(FsOptions::default());
        let start = Instant::now();
        let mut last = self.counts.counts();
        loop {
            std::thread::sleep(Duration::from_millis(300));
            let now = self.counts.counts();
            if now == last {
                return fs;
            }
            assert!(start.elapsed() < Duration::from_secs(60), "never idle");
            last = now;
        }
    }

    fn counts(&self) -> OpCounts {
        self.counts.counts()
    }

    fn checkpoint_objects(&self) -> Vec<(String, u64)> {
        self.vol
            .mem
            .list(CHECKPOINT_PREFIX)
            .unwrap()
            .into_iter()
            .map(|o| (o.key, o.size))
            .collect()
    }
}

struct Count(u64);

impl DirPlusReplier for Count {
    fn add(&mut self, _next: u64, _name: &[u8], _attr: &Attr) -> bool {
        self.0 += 1;
        false
    }
}

#[test]
fn stat_of_every_inode_of_a_big_namespace_reads_nothing() {
    let big = Big::new();
    let fs = big.mount();
    let next = fs.engine().lock().ns().next_ino();
    assert!(shard_of(next) >= 2, "the namespace spans several shards");
    big.counts.reset();
    let mut stats = 0;
    for ino in ROOT..next {
        stats += fs.getattr(ino).is_ok() as u64;
    }
    let mut entries = Count(0);
    for d in 0..DIRS {
        let dir = fs.lookup(&ME, ROOT, os(&format!("d{d}"))).unwrap().ino;
        let fh = fs.opendir(&ME, dir, 0).unwrap();
        fs.readdirplus(dir, fh, 0, &mut entries).unwrap();
        fs.releasedir(dir, fh).unwrap();
    }
    let n = big.counts();
    eprintln!(
        "stat of {stats} inodes, readdirplus of {} entries: {n:?}",
        entries.0
    );
    assert_eq!(stats, 1 + DIRS + DIRS * PER_DIR);
    assert_eq!(entries.0, DIRS * (PER_DIR + 2));
    assert_eq!(n.calls(), 0, "{n:?}");
    fs.shutdown().unwrap();
}

#[test]
fn a_commit_touching_10_files_writes_o10_metadata() {
    let big = Big::new();
    let fs = big.mount();
    let full: u64 = big.checkpoint_objects().iter().map(|o| o.1).sum();
    // Ten files, all in the first shard of three.
    let touched: Vec<u64> = (0..10).map(|i| 3 + i * 97).collect();
    assert!(touched.iter().all(|&ino| ino < SHARD_INODES));
    big.counts.reset();
    for &ino in &touched {
        let set = SetAttr {
            mtime: Some(TimeSet::Now),
            ..SetAttr::default()
        };
        fs.setattr(&ME, ino, None, set).unwrap();
    }
    fs.engine().wait_durable(fs.engine().appended()).unwrap();
    let commit = big.counts();
    let before = big.checkpoint_objects();
    big.counts.reset();
    fs.engine().checkpoint_now().unwrap();
    let cp = big.counts();
    let after = big.checkpoint_objects();
    let new: Vec<&(String, u64)> = after.iter().filter(|o| !before.contains(o)).collect();
    let cp_bytes: u64 = new.iter().map(|o| o.1).sum();
    eprintln!(
        "10-file commit: {} PUTs, {} bytes; checkpoint after it: {} objects, {cp_bytes} \
         bytes (a whole checkpoint is {full} bytes)",
        commit.puts(),
        commit.bytes_written,
        new.len()
    );
    assert_eq!(commit.puts(), 1, "one journal segment: {commit:?}");
    // Its records are far below the smallest size class it is padded to.
    let smallest = crate::meta::pad::MIN_CLASS + crate::crypto::SEAL_OVERHEAD;
    assert_eq!(commit.bytes_written, smallest as u64, "{commit:?}");
    // The shard the ten files live in and the index: never the namespace.
    assert_eq!(new.len(), 2, "{new:?}");
    // Plus the empty journal segment `checkpoint_now` seals first.
    assert!(cp.puts() <= 3, "{cp:?}");
    assert!(cp_bytes * 2 < full, "{cp_bytes} of {full}");
    fs.shutdown().unwrap();
}
