//! Operation counts: how many store calls common work costs, pinned with
//! a `CountingStore` so performance regressions fail without any timing.
//! Each test prints its figures (`--nocapture` shows them).

use std::ops::Range;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::*;
use crate::store::{CountingStore, MemoryStore, ObjectInfo, Op, OpCounts, StoreResult};

/// Logs (op, key) of every call, so a test can wait for the mount's
/// background work to finish and explain a figure when it is off.
#[derive(Clone, Debug, Default)]
struct Recorder {
    inner: MemoryStore,
    log: Arc<Mutex<Vec<(Op, String)>>>,
    /// Latency of each ranged GET, in microseconds, like a real store's.
    get_delay_us: Arc<std::sync::atomic::AtomicU64>,
    /// Latency of each PUT, likewise (a flush holds its reservation).
    put_delay_us: Arc<std::sync::atomic::AtomicU64>,
    /// Ranged GETs under way now, and the most seen at once.
    gets_now: Arc<AtomicUsize>,
    gets_most: Arc<AtomicUsize>,
}

impl Recorder {
    fn note(&self, op: Op, key: &str) {
        self.log.lock().unwrap().push((op, key.to_owned()));
    }

    fn len(&self) -> usize {
        self.log.lock().unwrap().len()
    }

    fn since(&self, from: usize) -> Vec<(Op, String)> {
        self.log.lock().unwrap()[from..].to_vec()
    }
}

impl ObjectStore for Recorder {
    fn get(&self, key: &str) -> StoreResult<Vec<u8>> {
        self.note(Op::Get, key);
        self.inner.get(key)
    }
    fn get_range(&self, key: &str, range: Range<u64>) -> StoreResult<Vec<u8>> {
        self.note(Op::GetRange, key);
        let now = self.gets_now.fetch_add(1, SeqCst) + 1;
        self.gets_most.fetch_max(now, SeqCst);
        let delay = self.get_delay_us.load(std::sync::atomic::Ordering::Relaxed);
        std::thread::sleep(Duration::from_micros(delay));
        let got = self.inner.get_range(key, range);
        self.gets_now.fetch_sub(1, SeqCst);
        got
    }
    fn put(&self, key: &str, body: &[u8]) -> StoreResult<()> {
        self.note(Op::Put, key);
        std::thread::sleep(Duration::from_micros(self.put_delay_us.load(SeqCst)));
        self.inner.put(key, body)
    }
    fn put_if_absent(&self, key: &str, body: &[u8]) -> StoreResult<()> {
        self.note(Op::PutIfAbsent, key);
        self.inner.put_if_absent(key, body)
    }
    fn put_if_match(&self, key: &str, body: &[u8], etag: &str) -> StoreResult<()> {
        self.note(Op::PutIfMatch, key);
        self.inner.put_if_match(key, body, etag)
    }
    fn delete(&self, key: &str) -> StoreResult<()> {
        self.note(Op::Delete, key);
        self.inner.delete(key)
    }
    fn list(&self, prefix: &str) -> StoreResult<Vec<ObjectInfo>> {
        self.note(Op::List, prefix);
        self.inner.list(prefix)
    }
    fn head(&self, key: &str) -> StoreResult<Option<ObjectInfo>> {
        self.note(Op::Head, key);
        self.inner.head(key)
    }
}

/// A volume whose every store call is counted (and logged).
struct Counted {
    vol: Vol,
    counts: CountingStore<Recorder>,
    rec: Recorder,
}

impl Counted {
    fn new(chunk: u32) -> Counted {
        let mem = MemoryStore::new();
        let rec = Recorder {
            inner: mem.clone(),
            ..Recorder::default()
        };
        let counts = CountingStore::new(rec.clone());
        let vol = Vol::create(mem, Arc::new(counts.clone()), chunk);
        Counted { vol, counts, rec }
    }

    /// Mounts with production options and waits until the mount's one-off
    /// background work (the garbage collector's scan, which ends with a
    /// listing of `data/`) is done, so later counts are the test's own.
    fn mount(&self) -> Arc<Fs> {
        self.mount_with(FsOptions::default())
    }

    fn mount_with(&self, opts: FsOptions) -> Arc<Fs> {
        let from = self.rec.len();
        let fs = self.vol.mount_with(opts);
        let start = Instant::now();
        while !self
            .rec
            .since(from)
            .iter()
            .any(|(op, key)| *op == Op::List && key == "data/")
        {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "the mount's garbage-collection scan never ran"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
        fs
    }

    fn reset(&self) -> usize {
        self.counts.reset();
        self.rec.len()
    }

    fn counts(&self) -> OpCounts {
        self.counts.counts()
    }

    /// The calls logged since `from`, summarized by op and key prefix.
    fn explain(&self, from: usize) -> String {
        let mut by: std::collections::BTreeMap<String, u32> = Default::default();
        for (op, key) in self.rec.since(from) {
            let prefix = key.rsplit_once('/').map_or(key.as_str(), |(p, _)| p);
            let prefix = if prefix.starts_with("data/") {
                "data/*"
            } else {
                prefix
            };
            *by.entry(format!("{op:?} {prefix}")).or_default() += 1;
        }
        format!("{by:?}")
    }
}

#[test]
fn mount_of_an_empty_volume_costs_a_few_reads() {
    let c = Counted::new(65536);
    let from = c.reset();
    let fs = c.mount();
    let n = c.counts();
    eprintln!(
        "mount of an empty volume: {n:?}\n  calls: {}",
        c.explain(from)
    );
    assert_eq!(n.puts() + n.delete, 0, "mounting writes nothing");
    assert!(
        n.reads() + n.list + n.head <= 10,
        "mount made {} read calls",
        n.reads() + n.list + n.head
    );
    fs.shutdown().unwrap();
}

#[test]
fn stat_and_lookup_of_1000_files_read_nothing() {
    let c = Counted::new(65536);
    let fs = c.mount();
    for i in 0..1000 {
        put_file(&fs, &format!("f{i}"), &pattern(100 + i, i as u8));
    }
    fs.shutdown().unwrap();
    drop(fs);
    let fs = c.mount();
    let from = c.reset();
    let mut total = 0;
    for i in 0..1000 {
        let a = fs.lookup(&ME, ROOT, os(&format!("f{i}"))).unwrap();
        total += fs.getattr(a.ino).unwrap().size;
    }
    assert_eq!(list_dir(&fs, ROOT).unwrap().len(), 1002);
    let n = c.counts();
    eprintln!("lookup + getattr of 1000 files and a readdir: {n:?}");
    assert_eq!(total, (100..1100).sum::<usize>() as u64);
    assert_eq!(n.calls(), 0, "store calls: {}", c.explain(from));
    fs.shutdown().unwrap();
}

#[test]
fn cold_4k_read_is_one_ranged_get() {
    let c = Counted::new(65536);
    let fs = c.mount();
    let data = pattern(1 << 20, 3);
    let ino = put_file(&fs, "f", &data);
    put_file(&fs, "g", &pattern(300_000, 4));
    fs.shutdown().unwrap();
    drop(fs);
    let fs = c.mount();
    for (off, label) in [(300_000u64, "middle"), (0, "start")] {
        let from = c.reset();
        let o = fs.open(&ME, ino, libc::O_RDONLY).unwrap();
        let got = fs.read(ino, o.fh, off, 4096).unwrap();
        fs.release(ino, o.fh).unwrap();
        let n = c.counts();
        eprintln!("cold 4 KiB read at the {label}: {n:?}");
        assert_eq!(got, &data[off as usize..off as usize + 4096]);
        assert_eq!((n.get_range, n.get), (1, 0), "calls: {}", c.explain(from));
        assert_eq!(n.calls(), 1, "calls: {}", c.explain(from));
        // One 64 KiB segment (nonce and tag around it), not the pack.
        assert!(n.bytes_read <= 65536 + 64, "read {} bytes", n.bytes_read);
    }
    fs.shutdown().unwrap();
}

#[test]
fn creating_5000_small_files_costs_a_few_dozen_puts() {
    let c = Counted::new(65536);
    let fs = c.mount();
    let from = c.reset();
    for i in 0..5000usize {
        put_file(&fs, &format!("small{i}"), &pattern(50 + i % 3000, i as u8));
    }
    fs.sync_all().unwrap();
    let n = c.counts();
    eprintln!(
        "5000 small files + sync_all: {} PUTs ({} put, {} create-only), {} bytes written\n  calls: {}",
        n.puts(),
        n.put,
        n.put_if_absent,
        n.bytes_written,
        c.explain(from)
    );
    assert!(n.puts() <= 50, "{} PUTs: {}", n.puts(), c.explain(from));
    fs.shutdown().unwrap();
    drop(fs);
    let fs = c.mount();
    let ino = fs.lookup(&ME, ROOT, os("small4999")).unwrap().ino;
    assert_eq!(
        read_all(&fs, ino),
        pattern(50 + 4999 % 3000, 4999usize as u8)
    );
    fs.shutdown().unwrap();
}

const BIG: usize = 64 << 20;

/// A database's commit: a 4 KiB write and fsync cost one PUT, the journal
/// segment that carries the data (`meta::carried`), not a pack and then a
/// segment.
#[test]
fn fsync_of_a_4k_write_is_one_put() {
    let c = Counted::new(65536);
    let fs = c.mount();
    let (attr, o) = fs
        .create(&ME, ROOT, os("db"), 0o644, 0o022, libc::O_RDWR)
        .unwrap();
    fs.write(&ME, attr.ino, o.fh, 0, &pattern(64 << 10, 1))
        .unwrap();
    fs.fsync(attr.ino, o.fh, false).unwrap();
    for round in 0..5u8 {
        let from = c.reset();
        let off = 4096 * round as u64;
        fs.write(&ME, attr.ino, o.fh, off, &pattern(4096, round))
            .unwrap();
        fs.fsync(attr.ino, o.fh, false).unwrap();
        let n = c.counts();
        let calls = c.explain(from);
        eprintln!(
            "4 KiB write + fsync: {} PUTs, {} bytes: {calls}",
            n.puts(),
            n.bytes_written
        );
        assert_eq!(n.puts(), 1, "{calls}");
        assert_eq!(n.put_if_absent, 1, "the journal segment: {calls}");
        assert_eq!(n.reads(), 0, "{calls}");
    }
    fs.release(attr.ino, o.fh).unwrap();
    fs.shutdown().unwrap();
}

#[test]
fn writing_64_mib_and_fsync_costs_about_8_pack_puts() {
    let c = Counted::new(65536);
    let fs = c.mount();
    let from = c.reset();
    let data = pattern(BIG, 9);
    let (attr, o) = fs
        .create(&ME, ROOT, os("big"), 0o644, 0o022, libc::O_WRONLY)
        .unwrap();
    for (i, piece) in data.chunks(1 << 20).enumerate() {
        fs.write(&ME, attr.ino, o.fh, (i << 20) as u64, piece)
            .unwrap();
    }
    fs.fsync(attr.ino, o.fh, false).unwrap();
    fs.release(attr.ino, o.fh).unwrap();
    let n = c.counts();
    eprintln!(
        "write 64 MiB + fsync: {} PUTs ({} put, {} create-only), {} bytes written\n  calls: {}",
        n.puts(),
        n.put,
        n.put_if_absent,
        n.bytes_written,
        c.explain(from)
    );
    assert!(n.puts() <= 20, "{} PUTs: {}", n.puts(), c.explain(from));
    fs.shutdown().unwrap();
}

/// Every dirty chunk should be uploaded once: 8 packs of 8 MiB, about
/// 64 MiB sent. `take_for_flush` does not mark chunks in flight, so
/// fsync's inline flush and the flusher thread (woken by backpressure)
/// snapshot and upload the same lowest dirty chunks; the loser's chunks
/// fail `settle`, its pack is retired and deleted.
#[test]
fn writing_64_mib_uploads_each_chunk_once() {
    let c = Counted::new(65536);
    let fs = c.mount();
    let from = c.reset();
    let data = pattern(BIG, 9);
    let (attr, o) = fs
        .create(&ME, ROOT, os("big"), 0o644, 0o022, libc::O_WRONLY)
        .unwrap();
    for (i, piece) in data.chunks(1 << 20).enumerate() {
        fs.write(&ME, attr.ino, o.fh, (i << 20) as u64, piece)
            .unwrap();
    }
    fs.fsync(attr.ino, o.fh, false).unwrap();
    fs.release(attr.ino, o.fh).unwrap();
    let n = c.counts();
    eprintln!(
        "write 64 MiB + fsync: {} pack PUTs, {} deletes, {} bytes written\n  calls: {}",
        n.put,
        n.delete,
        n.bytes_written,
        c.explain(from)
    );
    // Eight packs' worth: the flushers take full packs while the stream
    // runs (the timer cuts none short under it), the fsync takes the tail.
    assert!(n.put <= 9, "{} pack PUTs", n.put);
    assert!(
        n.bytes_written < BIG as u64 * 11 / 10,
        "{} bytes written for {BIG}",
        n.bytes_written
    );
    fs.shutdown().unwrap();
}

/// A cold 1 MiB read spans 16 consecutive segments of one extent: one
/// ranged GET could fetch them all. The read-ahead window starts at one
/// chunk and `read` fetches chunk by chunk, so it costs 16 GETs.
#[test]
fn cold_1_mib_read_is_one_ranged_get() {
    let c = Counted::new(65536);
    let fs = c.mount();
    let data = pattern(4 << 20, 5);
    let ino = put_file(&fs, "f", &data);
    fs.shutdown().unwrap();
    drop(fs);
    let fs = c.mount();
    let from = c.reset();
    let o = fs.open(&ME, ino, libc::O_RDONLY).unwrap();
    let got = fs.read(ino, o.fh, 1 << 20, 1 << 20).unwrap();
    fs.release(ino, o.fh).unwrap();
    assert!(got == data[1 << 20..2 << 20]);
    let n = c.counts();
    eprintln!("cold 1 MiB read: {n:?}");
    assert_eq!(n.get_range, 1, "calls: {}", c.explain(from));
    fs.shutdown().unwrap();
}

/// Packs are cut at `PACK_TARGET` bytes of *unpadded* chunk data, but
/// every segment is padded to 4 KiB: 20,000 one-byte files make a single
/// pack of ~80 MiB (and a million would make one of ~4 GiB, sealed in
/// memory in one piece). Packs should stay "up to a few MiB".
#[test]
fn tiny_files_make_packs_of_a_few_mib() {
    let c = Counted::new(65536);
    let fs = c.mount();
    c.reset();
    for i in 0..20_000usize {
        put_file(&fs, &format!("t{i}"), &[i as u8]);
    }
    fs.sync_all().unwrap();
    let sizes: Vec<u64> = c
        .rec
        .inner
        .list("data/")
        .unwrap()
        .iter()
        .map(|o| o.size)
        .collect();
    let n = c.counts();
    eprintln!(
        "20,000 one-byte files: {} PUTs, packs of {sizes:?} bytes",
        n.puts()
    );
    assert!(
        sizes.iter().all(|s| *s <= 16 << 20),
        "a pack of {} MiB",
        sizes.iter().max().unwrap() >> 20
    );
    fs.shutdown().unwrap();
}

#[test]
fn sequential_cold_read_of_64_mib_uses_growing_read_ahead() {
    let c = Counted::new(65536);
    let fs = c.mount();
    let data = pattern(BIG, 11);
    let (attr, o) = fs
        .create(&ME, ROOT, os("big"), 0o644, 0o022, libc::O_WRONLY)
        .unwrap();
    for (i, piece) in data.chunks(1 << 20).enumerate() {
        fs.write(&ME, attr.ino, o.fh, (i << 20) as u64, piece)
            .unwrap();
    }
    fs.release(attr.ino, o.fh).unwrap();
    fs.shutdown().unwrap();
    drop(fs);
    let fs = c.mount();
    let from = c.reset();
    let o = fs.open(&ME, attr.ino, libc::O_RDONLY).unwrap();
    let mut per_read = Vec::new();
    for i in 0..BIG >> 20 {
        let before = c.counts().get_range;
        let got = fs.read(attr.ino, o.fh, (i << 20) as u64, 1 << 20).unwrap();
        assert!(got == data[i << 20..(i + 1) << 20], "MiB {i} differs");
        per_read.push(c.counts().get_range - before);
    }
    fs.release(attr.ino, o.fh).unwrap();
    let n = c.counts();
    eprintln!(
        "sequential cold read of 64 MiB in 1 MiB reads: {} ranged GETs, {} GETs, {} bytes read\n  ranged GETs per read: {per_read:?}",
        n.get_range, n.get, n.bytes_read
    );
    assert_eq!(n.get, 0, "calls: {}", c.explain(from));
    assert!(n.get_range <= 40, "{} ranged GETs", n.get_range);
    assert!(
        n.bytes_read < BIG as u64 * 11 / 10,
        "read {} bytes for {BIG}",
        n.bytes_read
    );
    fs.shutdown().unwrap();
}

/// The kernel sends several reads of one file at once (async read-ahead):
/// each must not fetch its own overlapping run. Four threads take the
/// next 128 KiB of one handle in turn, against a store with 3 ms GETs.
#[test]
fn concurrent_reads_of_one_file_fetch_each_byte_once() {
    const SIZE: usize = 16 << 20;
    const STEP: usize = 128 << 10;
    let c = Counted::new(65536);
    let fs = c.mount();
    let data = pattern(SIZE, 13);
    let ino = put_file(&fs, "f", &data);
    fs.shutdown().unwrap();
    drop(fs);
    let fs = c.mount();
    c.reset();
    c.rec
        .get_delay_us
        .store(3000, std::sync::atomic::Ordering::Relaxed);
    let o = fs.open(&ME, ino, libc::O_RDONLY).unwrap();
    let next = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                loop {
                    let at = next.fetch_add(STEP, std::sync::atomic::Ordering::Relaxed);
                    if at >= SIZE {
                        break;
                    }
                    let got = fs.read(ino, o.fh, at as u64, STEP as u32).unwrap();
                    assert!(got == data[at..at + STEP], "bytes at {at} differ");
                }
            });
        }
    });
    fs.release(ino, o.fh).unwrap();
    let n = c.counts();
    eprintln!(
        "4 concurrent readers of 16 MiB: {} ranged GETs, {} bytes read",
        n.get_range, n.bytes_read
    );
    let sealed = SIZE as u64 * 65_600 / 65_536;
    assert!(
        n.bytes_read <= sealed * 21 / 20,
        "read {} bytes of ciphertext for {sealed}",
        n.bytes_read
    );
    fs.shutdown().unwrap();
}

/// Part 2 of issue 10: a sequential cold read keeps several ranged GETs of
/// whole packs in flight (background read-ahead), and costs about one GET
/// per pack. Reads of 128 KiB, as the kernel sends them, against a store
/// whose GETs take 2 ms.
#[test]
fn sequential_cold_read_of_256_mib_keeps_gets_of_whole_packs_in_flight() {
    const SIZE: usize = 256 << 20;
    const STEP: usize = 128 << 10;
    let c = Counted::new(65536);
    let fs = c.mount();
    let data = pattern(16 << 20, 17);
    let (attr, o) = fs
        .create(&ME, ROOT, os("big"), 0o644, 0o022, libc::O_WRONLY)
        .unwrap();
    for at in (0..SIZE).step_by(data.len()) {
        fs.write(&ME, attr.ino, o.fh, at as u64, &data).unwrap();
    }
    fs.release(attr.ino, o.fh).unwrap();
    fs.shutdown().unwrap();
    drop(fs);
    let fs = c.mount();
    let from = c.reset();
    c.rec.get_delay_us.store(2000, SeqCst);
    c.rec.gets_most.store(0, SeqCst);
    let o = fs.open(&ME, attr.ino, libc::O_RDONLY).unwrap();
    for at in (0..SIZE).step_by(STEP) {
        let got = fs.read(attr.ino, o.fh, at as u64, STEP as u32).unwrap();
        let i = at % data.len();
        assert!(got == data[i..i + STEP], "bytes at {at} differ");
    }
    fs.release(attr.ino, o.fh).unwrap();
    let n = c.counts();
    let packs = (SIZE as u64).div_ceil(crate::fs::PACK_TARGET);
    let most = c.rec.gets_most.load(SeqCst);
    eprintln!(
        "sequential cold read of 256 MiB in 128 KiB reads: {} ranged GETs for {packs} packs, {} bytes read, at most {most} GETs at once",
        n.get_range, n.bytes_read
    );
    assert_eq!(n.get, 0, "calls: {}", c.explain(from));
    assert!(
        n.get_range <= packs + 8,
        "{} ranged GETs for {packs} packs: {}",
        n.get_range,
        c.explain(from)
    );
    assert!(
        n.bytes_read < SIZE as u64 * 21 / 20,
        "read {} bytes for {SIZE}",
        n.bytes_read
    );
    assert!(most >= 2, "never more than {most} GET in flight");
    fs.shutdown().unwrap();
}

/// A random reader gets no read-ahead: 4 KiB reads far apart cost one
/// single-segment GET each, nothing in the background.
#[test]
fn random_reads_fetch_single_segments() {
    let c = Counted::new(65536);
    let fs = c.mount();
    let data = pattern(32 << 20, 19);
    let ino = put_file(&fs, "f", &data);
    fs.shutdown().unwrap();
    drop(fs);
    let fs = c.mount();
    let from = c.reset();
    let o = fs.open(&ME, ino, libc::O_RDONLY).unwrap();
    let offsets = [20u64 << 20, 3 << 20, 27 << 20, 11 << 20, 30 << 20, 7 << 20];
    for off in offsets {
        let got = fs.read(ino, o.fh, off, 4096).unwrap();
        assert!(got == data[off as usize..off as usize + 4096]);
    }
    fs.release(ino, o.fh).unwrap();
    std::thread::sleep(Duration::from_millis(50)); // any stray read-ahead lands
    let n = c.counts();
    eprintln!("6 random 4 KiB reads: {n:?}");
    assert_eq!(n.get_range, 6, "calls: {}", c.explain(from));
    assert!(
        n.bytes_read <= 6 * (65536 + 64),
        "read {} bytes",
        n.bytes_read
    );
    fs.shutdown().unwrap();
}

/// Part 3 of issue 10: 300 files of 4 KiB created together in one
/// directory, then read cold one after another (as `cat d/*` does), cost
/// a few ranged GETs, not one per file.
#[test]
fn reading_300_small_files_of_one_directory_cold_costs_at_most_10_gets() {
    let c = Counted::new(65536);
    let fs = c.mount();
    let dir = fs.mkdir(&ME, ROOT, os("d"), 0o755, 0o022).unwrap().ino;
    let files: Vec<(String, Vec<u8>)> = (0..300)
        .map(|i| (format!("f{i:04}"), pattern(4096, i as u8)))
        .collect();
    for (name, data) in &files {
        let (attr, o) = fs
            .create(&ME, dir, os(name), 0o644, 0o022, libc::O_WRONLY)
            .unwrap();
        fs.write(&ME, attr.ino, o.fh, 0, data).unwrap();
        fs.release(attr.ino, o.fh).unwrap();
    }
    // Another directory's files in the same packs are not fetched for it.
    let other = fs.mkdir(&ME, ROOT, os("e"), 0o755, 0o022).unwrap().ino;
    for i in 0..50 {
        let (attr, o) = fs
            .create(
                &ME,
                other,
                os(&format!("g{i}")),
                0o644,
                0o022,
                libc::O_WRONLY,
            )
            .unwrap();
        fs.write(&ME, attr.ino, o.fh, 0, &pattern(4096, 7)).unwrap();
        fs.release(attr.ino, o.fh).unwrap();
    }
    fs.shutdown().unwrap();
    drop(fs);
    let fs = c.mount();
    let from = c.reset();
    for (name, data) in &files {
        let ino = fs.lookup(&ME, dir, os(name)).unwrap().ino;
        let o = fs.open(&ME, ino, libc::O_RDONLY).unwrap();
        let got = fs.read(ino, o.fh, 0, 128 << 10).unwrap();
        fs.release(ino, o.fh).unwrap();
        assert!(&got == data, "{name} differs");
    }
    let n = c.counts();
    eprintln!("300 small files read cold: {n:?}");
    assert!(n.get_range <= 10, "calls: {}", c.explain(from));
    assert_eq!(n.calls(), n.get_range, "calls: {}", c.explain(from));
    fs.shutdown().unwrap();
}

/// What a small file's cold read brings along is authenticated segment by
/// segment: a neighbour whose segment was tampered with is not cached and
/// fails its own read with EIO; the file read and its other neighbours
/// are intact.
#[test]
fn a_tampered_neighbour_fails_only_its_own_read() {
    let c = Counted::new(65536);
    let fs = c.mount();
    let inos: Vec<u64> = (0..8)
        .map(|i| put_file(&fs, &format!("s{i}"), &pattern(3000, i)))
        .collect();
    fs.shutdown().unwrap();
    drop(fs);
    let fs = c.mount();
    let seg = {
        let l = fs.lock();
        let map = l.ns().get(inos[5]).unwrap().chunks().unwrap();
        map.extent_at(0).unwrap().1.segment(0)
    };
    let key = seg.pack.key();
    let mut body = c.rec.inner.get(&key).unwrap();
    body[seg.cipher_off as usize + 30] ^= 1;
    c.rec.inner.put(&key, &body).unwrap();
    let from = c.reset();
    assert_eq!(read_all(&fs, inos[0]), pattern(3000, 0));
    assert_eq!(c.counts().get_range, 1, "calls: {}", c.explain(from));
    for _ in 0..2 {
        assert_eq!(try_read_all(&fs, inos[5]).unwrap_err().errno(), libc::EIO);
    }
    for i in [1, 2, 3, 4, 6, 7] {
        assert_eq!(read_all(&fs, inos[i]), pattern(3000, i as u8));
    }
    assert_eq!(
        c.counts().get_range,
        3,
        "only the tampered file went back to the store: {}",
        c.explain(from)
    );
    fs.shutdown().unwrap();
}

/// A small cache (32 MiB) keeps room for clean data while a writer fills
/// it: a sequential reader's read-ahead is not evicted before it is read,
/// so each byte is fetched once. Flushes hold their packs' reservations
/// while PUTs take 20 ms, GETs 2 ms.
#[test]
fn a_small_cache_does_not_refetch_a_sequential_read_while_a_writer_runs() {
    const SIZE: usize = 32 << 20;
    const STEP: usize = 128 << 10;
    let c = Counted::new(65536);
    let small = || FsOptions {
        cache_bytes: 32 << 20,
        ..FsOptions::default()
    };
    let fs = c.mount_with(small());
    let data = pattern(SIZE, 23);
    let ino = put_file(&fs, "r", &data);
    fs.shutdown().unwrap();
    drop(fs);
    let fs = c.mount_with(small());
    c.rec.get_delay_us.store(2000, SeqCst);
    c.rec.put_delay_us.store(20_000, SeqCst);
    let stop = std::sync::atomic::AtomicBool::new(false);
    let read = std::thread::scope(|s| {
        s.spawn(|| {
            let (attr, o) = fs
                .create(&ME, ROOT, os("w"), 0o644, 0o022, libc::O_WRONLY)
                .unwrap();
            let piece = pattern(1 << 20, 29);
            let mut at = 0u64;
            while !stop.load(SeqCst) && at < 256 << 20 {
                fs.write(&ME, attr.ino, o.fh, at, &piece).unwrap();
                at += 1 << 20;
            }
            fs.release(attr.ino, o.fh).unwrap();
        });
        // Let the writer fill the dirty share first.
        std::thread::sleep(Duration::from_millis(300));
        let before = c.counts().bytes_read;
        let o = fs.open(&ME, ino, libc::O_RDONLY).unwrap();
        for at in (0..SIZE).step_by(STEP) {
            let got = fs.read(ino, o.fh, at as u64, STEP as u32).unwrap();
            assert!(got == data[at..at + STEP], "bytes at {at} differ");
        }
        fs.release(ino, o.fh).unwrap();
        let read = c.counts().bytes_read - before;
        stop.store(true, SeqCst);
        read
    });
    let sealed = SIZE as u64 * 65_600 / 65_536;
    eprintln!("sequential read of 32 MiB with a 32 MiB cache and a writer: {read} bytes fetched");
    assert!(
        read <= sealed * 11 / 10,
        "fetched {read} bytes for {sealed}: read-ahead was evicted before it was read"
    );
    fs.shutdown().unwrap();
}
