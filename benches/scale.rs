//! The million-file measurement (issue 10, part 8), without FUSE.
//!
//! `cargo bench --bench scale -- [FILES] [DIR]`: builds (or reuses) a local
//! volume of FILES small files (default 200,000) in DIR (default
//! /var/tmp/sealedfs-scale-FILES), 1,000 per directory, each one 100-byte
//! chunk in a shared pack, straight through the engine so a million files
//! take seconds. Then, in a fresh process, it opens the volume as a mount
//! would and prints: open time, heap and RSS per inode after a `stat` of
//! every inode and an `ls -lR`-like walk, store calls those cost, bytes a
//! 10-file commit and the checkpoint after it write, and the longest a
//! `stat` waited for the tree while a checkpoint or compaction ran. Last,
//! in a child process, the per-pack costs of a 10 TB volume: a pack table
//! entry and a large file's extent, a million of each.
//!
//! Heap bytes are counted by a wrapping global allocator (live bytes as
//! asked, not counting malloc's own rounding); RSS is from /proc and
//! includes it. No assertions: this prints numbers.

use std::alloc::{GlobalAlloc, Layout, System};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use sealedfs::crypto::{KdfParams, KeyRing, MasterKey};
use sealedfs::data::{Extent, PackId};
use sealedfs::engine::PackRecords;
use sealedfs::fs::{Attr, Caller, DirPlusReplier, Fs, FsOptions, ROOT, SetAttr, TimeSet};
use sealedfs::meta::{InodeAttr, Kind, Namespace, Record, checkpoint};
use sealedfs::store::{CountingStore, LocalStore, ObjectStore, OpCounts};
use sealedfs::volume::VolumeHeader;

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size(), Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size(), Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        LIVE.fetch_add(new, Ordering::Relaxed);
        LIVE.fetch_sub(l.size(), Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(p, l, new) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

const PASS: &[u8] = b"sealedfs bench passphrase";
const PER_DIR: u64 = 1000;
const FILE_BYTES: usize = 100;
const ME: Caller = Caller::ROOT;

fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

fn header_of(store: &dyn ObjectStore) -> VolumeHeader {
    VolumeHeader::decode(&store.get("volume").expect("volume header")).expect("header decodes")
}

/// Builds the volume: directories of PER_DIR files, one pack per directory.
fn generate(dir: &Path, files: u64) {
    std::fs::create_dir_all(dir).expect("volume dir");
    let store: Arc<dyn ObjectStore> = Arc::new(LocalStore::open(dir).expect("store"));
    let master = MasterKey::generate();
    let header =
        VolumeHeader::new(&master, PASS, KdfParams::insecure_fast(), 64 << 10).expect("header");
    store
        .put_if_absent("volume", &header.encode())
        .expect("put header");
    let ring = KeyRing::single(0, master);
    Fs::format(store.clone(), &header, &ring).expect("format");
    let fs = Fs::mount(store, &header, &ring, FsOptions::default()).expect("open");
    let engine = fs.engine().clone();
    let started = Instant::now();
    let dirs = files.div_ceil(PER_DIR);
    let body = [7u8; FILE_BYTES];
    let mut last = engine.appended();
    for d in 0..dirs {
        let n = PER_DIR.min(files - d * PER_DIR);
        let chunks: Vec<&[u8]> = (0..n).map(|_| &body[..]).collect();
        let pack = engine.write_pack(&chunks).expect("pack");
        let mut txn = engine.lock();
        let mut root = txn.ns().get(ROOT).expect("root").attr;
        root.nlink += 1;
        let dino = txn.alloc_ino();
        let mut records = vec![
            Record::Inode {
                ino: dino,
                attr: InodeAttr::new(Kind::Dir, 0o755, 0, 0),
            },
            Record::Dirent {
                dir: ROOT,
                name: format!("d{d:05}").into_bytes(),
                ino: Some(dino),
            },
            Record::Inode {
                ino: ROOT,
                attr: root,
            },
        ];
        let mut map = PackRecords::new(&pack);
        let mut tail = Vec::new();
        for (i, placed) in pack.placed.iter().enumerate() {
            let ino = txn.alloc_ino();
            let mut attr = InodeAttr::new(Kind::File, 0o644, 0, 0);
            attr.size = FILE_BYTES as u64;
            records.push(Record::Inode { ino, attr });
            tail.push(Record::Dirent {
                dir: dino,
                name: format!("file-{i:06}.dat").into_bytes(),
                ino: Some(ino),
            });
            map.map(ino, 0, placed);
        }
        records.extend(map.finish());
        records.extend(tail);
        last = txn.apply(records).expect("apply");
        drop(txn);
        if d % 100 == 99 {
            engine.wait_durable(last).expect("durable");
        }
    }
    engine.wait_durable(last).expect("durable");
    engine.checkpoint_now().expect("checkpoint");
    fs.shutdown().expect("shutdown");
    println!(
        "generated {files} files in {dirs} directories in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

struct Walk(u64);

impl DirPlusReplier for Walk {
    fn add(&mut self, _next: u64, _name: &[u8], _attr: &Attr) -> bool {
        self.0 += 1;
        false
    }
}

fn delta(a: OpCounts, b: OpCounts) -> (u64, u64, u64) {
    (
        b.calls() - a.calls(),
        b.puts() - a.puts(),
        b.bytes_written - a.bytes_written,
    )
}

/// The longest single `getattr` while `work` runs on this thread.
fn max_stall(fs: &Arc<Fs>, inodes: u64, work: impl FnOnce()) -> Duration {
    let stop = Arc::new(AtomicBool::new(false));
    let worst = Arc::new(AtomicU64::new(0));
    let prober = {
        let (fs, stop, worst) = (fs.clone(), stop.clone(), worst.clone());
        std::thread::spawn(move || {
            let mut ino = 2;
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                let _ = fs.getattr(ino);
                worst.fetch_max(t.elapsed().as_micros() as u64, Ordering::Relaxed);
                ino = 2 + (ino * 7919) % inodes;
            }
        })
    };
    std::thread::sleep(Duration::from_millis(20));
    work();
    std::thread::sleep(Duration::from_millis(20));
    stop.store(true, Ordering::Relaxed);
    prober.join().expect("prober");
    Duration::from_micros(worst.load(Ordering::Relaxed))
}

fn walk_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk_files(&p));
        } else {
            out.push(p);
        }
    }
    out
}

fn measure(dir: &Path, files: u64) {
    let counted = Arc::new(CountingStore::new(LocalStore::open(dir).expect("store")));
    let store: Arc<dyn ObjectStore> = counted.clone();
    let header = header_of(&*store);
    let master = header.unlock(PASS).expect("passphrase");
    // Checkpoint files come from the page cache, as from a warm S3 server:
    // the disk's speed is not the measure.
    for f in walk_files(&dir.join("meta")) {
        drop(std::fs::read(f));
    }
    let (heap0, rss0) = (LIVE.load(Ordering::Relaxed), rss_bytes());
    let t = Instant::now();
    let opts = FsOptions {
        cache_bytes: 16 << 20,
        ..FsOptions::default()
    };
    let fs = Fs::mount(store, &header, &master, opts).expect("mount");
    let open = t.elapsed();
    let (heap1, rss1) = (LIVE.load(Ordering::Relaxed), rss_bytes());
    let inodes = fs.engine().lock().ns().inode_count() as u64;
    std::thread::sleep(Duration::from_millis(300));

    let before = counted.counts();
    let t = Instant::now();
    let mut stats = 0u64;
    for ino in 1..=inodes + 1 {
        stats += fs.getattr(ino).is_ok() as u64;
    }
    let stat_time = t.elapsed();
    let after_stat = counted.counts();

    let t = Instant::now();
    let mut walk = Walk(0);
    let mut stack = vec![ROOT];
    while let Some(d) = stack.pop() {
        let fh = fs.opendir(&ME, d, 0).expect("opendir");
        let start = walk.0;
        fs.readdirplus(d, fh, 0, &mut walk).expect("readdirplus");
        fs.releasedir(d, fh).expect("releasedir");
        if d == ROOT {
            // The directories are ROOT's entries; look each up as `ls -R` does.
            for i in 0..(walk.0 - start) {
                let name = OsString::from(format!("d{i:05}"));
                if let Ok(a) = fs.lookup(&ME, ROOT, &name) {
                    stack.push(a.ino);
                }
            }
        }
    }
    let walk_time = t.elapsed();
    let after_walk = counted.counts();
    let (heap2, rss2) = (LIVE.load(Ordering::Relaxed), rss_bytes());

    // A commit touching 10 files, then the checkpoint after it.
    let before_commit = counted.counts();
    for ino in (3..).step_by(97).take(10) {
        let set = SetAttr {
            mtime: Some(TimeSet::Now),
            ..SetAttr::default()
        };
        fs.setattr(&ME, ino, None, set).expect("touch");
    }
    let id = fs.engine().appended();
    fs.engine().wait_durable(id).expect("durable");
    let after_commit = counted.counts();
    // The same probe with nothing else running: the machine's own noise.
    let idle_stall = max_stall(&fs, inodes, || {
        std::thread::sleep(Duration::from_millis(200))
    });
    // And with a thread burning a core without the lock, as an encoding
    // checkpoint does: the noise of scheduling on a loaded machine.
    let busy_stall = max_stall(&fs, inodes, || {
        let until = Instant::now() + Duration::from_millis(1000);
        let mut x = 0u64;
        while Instant::now() < until {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
    });
    let mut cp_stall = Duration::ZERO;
    let stall = max_stall(&fs, inodes, || {
        let t = Instant::now();
        fs.engine().checkpoint_now().expect("checkpoint");
        cp_stall = t.elapsed();
    });
    let after_cp = counted.counts();
    let compact_stall = max_stall(&fs, inodes, || {
        fs.engine().compact_once().expect("compact");
    });
    // Every shard dirty: the checkpoint encodes the whole namespace.
    for n in 0..=inodes / checkpoint::SHARD_INODES {
        let set = SetAttr {
            mtime: Some(TimeSet::Now),
            ..SetAttr::default()
        };
        let _ = fs.setattr(&ME, n * checkpoint::SHARD_INODES + 5, None, set);
    }
    fs.engine()
        .wait_durable(fs.engine().appended())
        .expect("durable");
    let full_stall = max_stall(&fs, inodes, || {
        fs.engine().checkpoint_now().expect("checkpoint");
    });
    // The same, while a writer touches every shard as the checkpoint
    // encodes them: each touched shard is copied (copy-on-write).
    let slowest_touch = AtomicU64::new(0);
    let touch_all = |fs: &Fs| {
        for n in 0..=inodes / checkpoint::SHARD_INODES {
            let set = SetAttr {
                mtime: Some(TimeSet::Now),
                ..SetAttr::default()
            };
            let t = Instant::now();
            let _ = fs.setattr(&ME, n * checkpoint::SHARD_INODES + 7, None, set);
            slowest_touch.fetch_max(t.elapsed().as_micros() as u64, Ordering::Relaxed);
        }
    };
    touch_all(&fs);
    fs.engine()
        .wait_durable(fs.engine().appended())
        .expect("durable");
    // The writer alone, for comparison: its own share of the stall.
    let writer_alone = max_stall(&fs, inodes, || {
        let until = Instant::now() + Duration::from_millis(1000);
        while Instant::now() < until {
            touch_all(&fs);
        }
    });
    slowest_touch.store(0, Ordering::Relaxed);
    let writing_stall = max_stall(&fs, inodes, || {
        let done = AtomicBool::new(false);
        std::thread::scope(|s| {
            s.spawn(|| {
                while !done.load(Ordering::Relaxed) {
                    touch_all(&fs);
                }
            });
            fs.engine().checkpoint_now().expect("checkpoint");
            done.store(true, Ordering::Relaxed);
        });
    });
    // The lock alone, without the scheduler's noise: how long taking a
    // checkpoint of every shard holds the tree, and how long a change to
    // a page a checkpoint holds does (it copies the page first). Medians
    // of 21 tries, so a preemption in one does not count.
    let median = |mut v: Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    let mut take = Vec::new();
    let mut copy = Vec::new();
    for k in 0..21u64 {
        let mut txn = fs.engine().lock();
        let t = Instant::now();
        let taken = checkpoint::prepare(txn.ns(), &txn.ns().all_shards());
        take.push(t.elapsed());
        let ino = 3 + k * 40_000 % inodes;
        let mut attr = txn.ns().get(ino).expect("inode").attr;
        attr.mtime = sealedfs::meta::Timestamp::now();
        let t = Instant::now();
        txn.apply(vec![Record::Inode { ino, attr }]).expect("apply");
        copy.push(t.elapsed());
        drop(txn);
        drop(taken);
    }
    let (take, copy) = (median(take), median(copy));
    // The next run starts from a clean checkpoint, not from these changes.
    fs.engine().checkpoint_now().expect("checkpoint");
    fs.shutdown().expect("shutdown");
    drop(fs);
    let t = Instant::now();
    let newest = checkpoint::list(&*counted).expect("list")[0];
    let keys = header.keys(&master);
    drop(checkpoint::read(&*counted, &keys, &header.volume_id, newest).expect("checkpoint"));
    let cp_load = t.elapsed();

    let per = |bytes: usize| bytes as f64 / inodes as f64;
    let perr = |bytes: u64| bytes as f64 / inodes as f64;
    println!("| measure ({files} files, {inodes} inodes) | value |");
    println!("|---|---|");
    println!(
        "| open (checkpoint load + replay) | {:.2} s |",
        open.as_secs_f64()
    );
    println!(
        "| of which checkpoint read alone | {:.2} s |",
        cp_load.as_secs_f64()
    );
    println!(
        "| heap per inode after open | {:.0} B |",
        per(heap1 - heap0)
    );
    println!(
        "| heap per inode after stat of all + walk | {:.0} B |",
        per(heap2 - heap0)
    );
    println!("| RSS per inode after open | {:.0} B |", perr(rss1 - rss0));
    println!(
        "| RSS per inode after stat of all + walk | {:.0} B |",
        perr(rss2.saturating_sub(rss0))
    );
    println!(
        "| stat of {stats} inodes | {:.2} s, {} store calls |",
        stat_time.as_secs_f64(),
        after_stat.calls() - before.calls()
    );
    println!(
        "| readdirplus walk of {} entries | {:.2} s, {} store calls |",
        walk.0,
        walk_time.as_secs_f64(),
        after_walk.calls() - after_stat.calls()
    );
    let (calls, puts, bytes) = delta(before_commit, after_commit);
    println!("| 10-file commit | {calls} calls, {puts} PUTs, {bytes} B |");
    let (calls, puts, bytes) = delta(after_commit, after_cp);
    println!(
        "| checkpoint after it | {calls} calls, {puts} PUTs, {bytes} B, {:.3} s |",
        cp_stall.as_secs_f64()
    );
    println!(
        "| longest stat during that checkpoint | {:.1} ms |",
        stall.as_secs_f64() * 1e3
    );
    println!(
        "| longest stat while idle (noise floor) | {:.1} ms |",
        idle_stall.as_secs_f64() * 1e3
    );
    println!(
        "| longest stat while a thread burns a core for 1 s, no lock (noise under load) | {:.1} ms |",
        busy_stall.as_secs_f64() * 1e3
    );
    println!(
        "| longest stat during a checkpoint with every shard dirty | {:.1} ms |",
        full_stall.as_secs_f64() * 1e3
    );
    println!(
        "| the same while a writer touches every shard | {:.1} ms |",
        writing_stall.as_secs_f64() * 1e3
    );
    println!(
        "| longest stat while that writer runs alone for 1 s | {:.1} ms |",
        writer_alone.as_secs_f64() * 1e3
    );
    println!(
        "| longest setattr meanwhile (the first change to a page copies it) | {:.1} ms |",
        slowest_touch.load(Ordering::Relaxed) as f64 / 1e3
    );
    println!(
        "| tree lock held to take a checkpoint of every shard (median of 21) | {:.2} ms |",
        take.as_secs_f64() * 1e3
    );
    println!(
        "| tree lock held by a change to a page a checkpoint holds (median of 21) | {:.2} ms |",
        copy.as_secs_f64() * 1e3
    );
    println!(
        "| longest stat during compaction | {:.1} ms |",
        compact_stall.as_secs_f64() * 1e3
    );
}

/// Per-pack costs, for the 10 TB projection (1.3 M packs of 8 MiB):
/// the pack table's entry, and one extent of a large file per pack it
/// spans. Measured on a bare namespace so nothing else is counted.
fn measure_packs(packs: u32) {
    let segment = 64u32 << 10;
    let cipher_len = segment + sealedfs::crypto::SEAL_OVERHEAD as u32;
    let units = 128u32;
    let ids: Vec<PackId> = (0..packs).map(|_| PackId::random()).collect();
    let (heap0, rss0) = (LIVE.load(Ordering::Relaxed), rss_bytes());
    let mut ns = Namespace::new(segment, InodeAttr::new(Kind::Dir, 0o755, 0, 0));
    for id in &ids {
        let size = units as u64 * cipher_len as u64;
        ns.apply(&Record::Pack {
            id: *id,
            size,
            units,
        })
        .expect("pack");
    }
    let (heap1, rss1) = (LIVE.load(Ordering::Relaxed), rss_bytes());
    let ino = ns.alloc_ino();
    let attr = InodeAttr::new(Kind::File, 0o644, 0, 0);
    ns.apply(&Record::Inode { ino, attr }).expect("file");
    for (i, id) in ids.iter().enumerate() {
        let extent = Extent {
            count: units,
            pack: *id,
            first_unit: 0,
            cipher_off: 0,
            cipher_len,
            plain_len: segment,
        };
        let first = i as u64 * units as u64;
        ns.apply(&Record::Chunks { ino, first, extent })
            .expect("extent");
    }
    let (heap2, rss2) = (LIVE.load(Ordering::Relaxed), rss_bytes());
    let per = |a: usize, b: usize| (b - a) as f64 / packs as f64;
    let perr = |a: u64, b: u64| b.saturating_sub(a) as f64 / packs as f64;
    println!(
        "| pack table, {packs} packs | {:.0} B heap, {:.0} B RSS per pack |",
        per(heap0, heap1),
        perr(rss0, rss1)
    );
    println!(
        "| one file spanning them all, one extent per pack | {:.0} B heap, {:.0} B RSS per extent |",
        per(heap1, heap2),
        perr(rss1, rss2)
    );
    drop(ns);
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let files: u64 = args.first().and_then(|a| a.parse().ok()).unwrap_or(200_000);
    let dir = args
        .get(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(format!("/var/tmp/sealedfs-scale-{files}")));
    if std::env::var_os("SCALE_PHASE").is_some_and(|p| p == "gen") {
        return generate(&dir, files);
    }
    if std::env::var_os("SCALE_PHASE").is_some_and(|p| p == "packs") {
        return measure_packs(1_000_000);
    }
    if !dir.join("volume").exists() {
        // Generated in a child so its garbage is not in this process's RSS.
        let status = std::process::Command::new(std::env::current_exe().expect("exe"))
            .args([files.to_string(), dir.display().to_string()])
            .env("SCALE_PHASE", "gen")
            .status()
            .expect("generator");
        assert!(status.success(), "generator failed");
    }
    measure(&dir, files);
    // In a child: memory the namespace above freed would hide RSS growth.
    let status = std::process::Command::new(std::env::current_exe().expect("exe"))
        .args([files.to_string(), dir.display().to_string()])
        .env("SCALE_PHASE", "packs")
        .status()
        .expect("pack measurer");
    assert!(status.success(), "pack measurer failed");
}
