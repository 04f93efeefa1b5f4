//! Micro-benchmarks of the sealedfs core, without FUSE or a kernel.
//!
//! `cargo bench --bench core [FILTER...]`: runs every benchmark whose name
//! contains one of the FILTERs (all without one). Each benchmark is run
//! `CORE_BENCH_REPS` times (default 5) and the median is reported, with the
//! spread (min–max) so a noisy machine shows. No assertions on time: this
//! prints numbers, it does not pass or fail.
//!
//! std only plus the sealedfs library; no benchmark framework.

use std::ffi::OsString;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sealedfs::audit::query::{self, Filter};
use sealedfs::audit::{Auditor, Op, Record};
use sealedfs::crypto::{KdfParams, KeyRing, Keys, MasterKey};
use sealedfs::data::{ChunkMap, Extent, Freed, PackId, open_segment, seal_pack};
use sealedfs::fs::{Caller, Fs, FsOptions, ROOT};
use sealedfs::store::{LocalStore, MemoryStore, ObjectStore};
use sealedfs::volume::VolumeHeader;

const KIB: usize = 1024;
const MIB: usize = 1024 * 1024;
const SEGMENT: usize = 64 * KIB;
const ME: Caller = Caller::ROOT;

/// xorshift64*: reproducible pseudo-random numbers without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn fill(&mut self, buf: &mut [u8]) {
        for c in buf.chunks_mut(8) {
            let v = self.next().to_le_bytes();
            c.copy_from_slice(&v[..c.len()]);
        }
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut v = vec![0; len];
        self.fill(&mut v);
        v
    }
}

/// What one benchmark reports: how much work one run does.
#[derive(Clone, Copy)]
enum Work {
    Bytes(u64),
    Ops(u64),
}

struct Bench {
    filters: Vec<String>,
    reps: usize,
}

impl Bench {
    fn wanted(&self, name: &str) -> bool {
        self.filters.is_empty() || self.filters.iter().any(|f| name.contains(f.as_str()))
    }

    /// Runs `run` `reps` times; `run` returns the time of the part it
    /// measures (so set-up such as building a volume stays outside).
    fn run(&self, name: &str, work: Work, mut run: impl FnMut() -> Duration) {
        if !self.wanted(name) {
            return;
        }
        let mut times: Vec<Duration> = (0..self.reps).map(|_| run()).collect();
        times.sort();
        let median = times[times.len() / 2];
        let rate = |d: Duration| {
            let s = d.as_secs_f64().max(1e-9);
            match work {
                Work::Bytes(b) => b as f64 / MIB as f64 / s,
                Work::Ops(n) => n as f64 / s,
            }
        };
        let unit = match work {
            Work::Bytes(_) => "MiB/s",
            Work::Ops(_) => "ops/s",
        };
        println!(
            "{name:<44} {:>12.1} {unit}  median {:>9.3} ms  (range {:.1}–{:.1} {unit}, {} runs)",
            rate(median),
            median.as_secs_f64() * 1e3,
            rate(*times.last().unwrap()),
            rate(times[0]),
            times.len(),
        );
    }
}

fn timed(f: impl FnOnce()) -> Duration {
    let t = Instant::now();
    f();
    t.elapsed()
}

// --- sealing ------------------------------------------------------------------

fn bench_seal(b: &Bench) {
    let volume_id = [7u8; 16];
    let keys = Keys::derive(&MasterKey::generate(), &volume_id);
    let mut rng = Rng(0x5eed);
    // A pack of 64 segments of 64 KiB (4 MiB), as a sequential flush makes.
    let chunks: Vec<Vec<u8>> = (0..64).map(|_| rng.bytes(SEGMENT)).collect();
    let refs: Vec<&[u8]> = chunks.iter().map(|c| c.as_slice()).collect();
    let total = (chunks.len() * SEGMENT) as u64;
    let id = PackId::random();

    b.run("seal_pack 64 × 64 KiB", Work::Bytes(total), || {
        timed(|| {
            black_box(seal_pack(&keys.data, &volume_id, id, black_box(&refs)));
        })
    });

    let (body, placed) = seal_pack(&keys.data, &volume_id, id, &refs);
    b.run("open_segment 64 × 64 KiB", Work::Bytes(total), || {
        timed(|| {
            for p in &placed {
                let sealed = &body[p.cipher_off as usize..][..p.cipher_len as usize];
                let last = p.unit as usize + 1 == placed.len();
                let plain = open_segment(
                    &keys.data,
                    &volume_id,
                    id,
                    p.unit,
                    last,
                    sealed,
                    p.plain_len,
                )
                .expect("open_segment");
                black_box(plain);
            }
        })
    });

    // One small file's worth: a 1 KiB chunk padded to the 4 KiB class.
    let small = rng.bytes(KIB);
    b.run("seal_pack 1 × 1 KiB (x1000)", Work::Ops(1000), || {
        timed(|| {
            for _ in 0..1000 {
                black_box(seal_pack(&keys.data, &volume_id, id, &[black_box(&small)]));
            }
        })
    });
}

// --- chunk maps -----------------------------------------------------------------

const MAP_CHUNKS: u64 = 1_000_000;

/// An extent of one chunk that cannot merge with its neighbours (each in
/// its own pack): the worst case, a file rewritten at random.
fn lone_extent(i: u64) -> Extent {
    let mut pack = [0u8; 16];
    pack[..8].copy_from_slice(&i.to_le_bytes());
    Extent {
        count: 1,
        pack: PackId(pack),
        first_unit: 0,
        cipher_off: 0,
        cipher_len: 65576,
        plain_len: 65536,
    }
}

fn shuffled(n: u64, seed: u64) -> Vec<u64> {
    let mut v: Vec<u64> = (0..n).collect();
    let mut rng = Rng(seed);
    for i in (1..v.len()).rev() {
        let j = (rng.next() % (i as u64 + 1)) as usize;
        v.swap(i, j);
    }
    v
}

fn bench_chunkmap(b: &Bench) {
    let order = shuffled(MAP_CHUNKS, 42);
    let probes = shuffled(MAP_CHUNKS, 43);

    b.run(
        "chunkmap insert 1M, sequential, merging",
        Work::Ops(MAP_CHUNKS),
        || {
            let pack = PackId([1; 16]);
            let mut map = ChunkMap::default();
            let mut freed = Freed::new();
            let t = timed(|| {
                for i in 0..MAP_CHUNKS {
                    let e = Extent {
                        count: 1,
                        pack,
                        first_unit: i as u32,
                        cipher_off: i * 65576,
                        cipher_len: 65576,
                        plain_len: 65536,
                    };
                    map.insert(i, e, &mut freed);
                }
            });
            assert_eq!(map.extents().count(), 1, "sequential extents should merge");
            t
        },
    );

    b.run(
        "chunkmap insert 1M, sequential, lone",
        Work::Ops(MAP_CHUNKS),
        || {
            let mut map = ChunkMap::default();
            let mut freed = Freed::new();
            timed(|| {
                for i in 0..MAP_CHUNKS {
                    map.insert(i, lone_extent(i), &mut freed);
                }
                black_box(&map);
            })
        },
    );

    b.run(
        "chunkmap insert 1M, random order, lone",
        Work::Ops(MAP_CHUNKS),
        || {
            let mut map = ChunkMap::default();
            let mut freed = Freed::new();
            timed(|| {
                for &i in &order {
                    map.insert(i, lone_extent(i), &mut freed);
                }
                black_box(&map);
            })
        },
    );

    let mut map = ChunkMap::default();
    let mut freed = Freed::new();
    for i in 0..MAP_CHUNKS {
        map.insert(i, lone_extent(i), &mut freed);
    }
    b.run(
        "chunkmap get 1M random, 1M extents",
        Work::Ops(MAP_CHUNKS),
        || {
            timed(|| {
                for &i in &probes {
                    black_box(map.get(black_box(i)).expect("mapped"));
                }
            })
        },
    );

    b.run(
        "chunkmap overwrite 1M random, 1M extents",
        Work::Ops(MAP_CHUNKS),
        || {
            let mut m = map.clone();
            let mut freed = Freed::new();
            let t = timed(|| {
                for &i in &probes {
                    m.insert(i, lone_extent(i + MAP_CHUNKS), &mut freed);
                }
            });
            assert_eq!(freed.len() as u64, MAP_CHUNKS);
            t
        },
    );
}

// --- the filesystem core over a memory store -------------------------------------

const PASS: &[u8] = b"bench passphrase";

struct Vol {
    store: Arc<dyn ObjectStore>,
    header: VolumeHeader,
    ring: KeyRing,
}

impl Vol {
    fn new() -> Vol {
        let store: Arc<dyn ObjectStore> = Arc::new(MemoryStore::new());
        let master = MasterKey::generate();
        let header = VolumeHeader::new(&master, PASS, KdfParams::insecure_fast(), SEGMENT as u32)
            .expect("volume header");
        store
            .put_if_absent("volume", &header.encode())
            .expect("put volume header");
        let ring = KeyRing::single(0, master);
        Fs::format(store.clone(), &header, &ring).expect("format");
        Vol {
            store,
            header,
            ring,
        }
    }

    fn mount(&self) -> Arc<Fs> {
        Fs::mount(
            self.store.clone(),
            &self.header,
            &self.ring,
            FsOptions::default(),
        )
        .expect("mount")
    }
}

const SEQ_BYTES: usize = 256 * MIB;
const IO_SIZE: usize = 128 * KIB;

/// Writes SEQ_BYTES in IO_SIZE writes to a new file, then fsync.
fn write_file(fs: &Fs, name: &str, data: &[u8]) -> u64 {
    let (attr, o) = fs
        .create(
            &ME,
            ROOT,
            &OsString::from(name),
            0o644,
            0o022,
            libc_o_wronly(),
        )
        .expect("create");
    let mut off = 0usize;
    while off < SEQ_BYTES {
        let piece = &data[off % data.len()..][..IO_SIZE];
        let n = fs
            .write(&ME, attr.ino, o.fh, off as u64, piece)
            .expect("write");
        assert_eq!(n as usize, IO_SIZE);
        off += IO_SIZE;
    }
    fs.fsync(attr.ino, o.fh, false).expect("fsync");
    fs.release(attr.ino, o.fh).expect("release");
    attr.ino
}

fn libc_o_wronly() -> i32 {
    1 // O_WRONLY on Linux; spelled out to keep the bench free of the libc crate
}

fn bench_fs(b: &Bench) {
    let mut rng = Rng(0xf11e);
    // 16 MiB of random data repeated: incompressible, and no dedup exists.
    let data = rng.bytes(16 * MIB);

    b.run(
        "fs write 256 MiB (128 KiB writes) + fsync",
        Work::Bytes(SEQ_BYTES as u64),
        || {
            let vol = Vol::new();
            let fs = vol.mount();
            let t = timed(|| {
                write_file(&fs, "big", &data);
            });
            fs.shutdown().expect("shutdown");
            t
        },
    );

    const READ: &str = "fs read 256 MiB cold (128 KiB reads)";
    if b.wanted(READ) {
        let vol = Vol::new();
        {
            let fs = vol.mount();
            write_file(&fs, "big", &data);
            fs.shutdown().expect("shutdown");
        }
        b.run(READ, Work::Bytes(SEQ_BYTES as u64), || {
            // A fresh mount: empty cache, chunk maps from the checkpoint.
            let fs = vol.mount();
            let t = timed(|| {
                let attr = fs
                    .lookup(&ME, ROOT, &OsString::from("big"))
                    .expect("lookup");
                let o = fs.open(&ME, attr.ino, 0).expect("open");
                let mut off = 0u64;
                while off < SEQ_BYTES as u64 {
                    let got = fs.read(attr.ino, o.fh, off, IO_SIZE as u32).expect("read");
                    assert_eq!(got.len(), IO_SIZE);
                    let want = off as usize % data.len();
                    debug_assert_eq!(&got[..], &data[want..want + IO_SIZE]);
                    black_box(&got);
                    off += IO_SIZE as u64;
                }
                fs.release(attr.ino, o.fh).expect("release");
            });
            fs.shutdown().expect("shutdown");
            t
        });
    }

    const FILES: u64 = 10_000;
    let small = rng.bytes(KIB);
    let names: Vec<OsString> = (0..FILES)
        .map(|i| OsString::from(format!("f{i:05}")))
        .collect();
    b.run(
        "fs create 10k × 1 KiB files + sync",
        Work::Ops(FILES),
        || {
            let vol = Vol::new();
            let fs = vol.mount();
            let t = timed(|| {
                for name in &names {
                    let (attr, o) = fs
                        .create(&ME, ROOT, name, 0o644, 0o022, libc_o_wronly())
                        .expect("create");
                    fs.write(&ME, attr.ino, o.fh, 0, &small).expect("write");
                    fs.release(attr.ino, o.fh).expect("release");
                }
                fs.sync_all().expect("sync_all");
            });
            fs.shutdown().expect("shutdown");
            t
        },
    );

    const STAT: &str = "fs stat 10k files (lookup + getattr)";
    if b.wanted(STAT) {
        let vol = Vol::new();
        {
            let fs = vol.mount();
            small_files(&fs, &names, &small);
            fs.shutdown().expect("shutdown");
        }
        let fs = vol.mount();
        b.run(STAT, Work::Ops(FILES), || {
            timed(|| {
                for name in &names {
                    let attr = fs.lookup(&ME, ROOT, name).expect("lookup");
                    black_box(fs.getattr(attr.ino).expect("getattr"));
                }
            })
        });
        fs.shutdown().expect("shutdown");
    }
}

/// Creates `names` in the root, each holding `data`, then commits.
fn small_files(fs: &Fs, names: &[OsString], data: &[u8]) {
    for name in names {
        let (attr, o) = fs
            .create(&ME, ROOT, name, 0o644, 0o022, libc_o_wronly())
            .expect("create");
        fs.write(&ME, attr.ino, o.fh, 0, data).expect("write");
        fs.release(attr.ino, o.fh).expect("release");
    }
    fs.sync_all().expect("sync_all");
}

/// Unlinking files whose data sits in the plaintext cache (as after
/// `grep -r`, then `rm -rf`), against unlinking with a cold cache.
fn bench_unlink(b: &Bench) {
    const FILES: u64 = 10_000;
    let small = Rng(0xdead).bytes(KIB);
    let names: Vec<OsString> = (0..FILES)
        .map(|i| OsString::from(format!("u{i:05}")))
        .collect();
    for warm in [false, true] {
        let name = if warm {
            "fs unlink 10k files, data cached"
        } else {
            "fs unlink 10k files, cache cold"
        };
        b.run(name, Work::Ops(FILES), || {
            let vol = Vol::new();
            {
                let fs = vol.mount();
                small_files(&fs, &names, &small);
                fs.shutdown().expect("shutdown");
            }
            let fs = vol.mount();
            let inos: Vec<u64> = names
                .iter()
                .map(|n| fs.lookup(&ME, ROOT, n).expect("lookup").ino)
                .collect();
            if warm {
                for &ino in &inos {
                    let o = fs.open(&ME, ino, 0).expect("open");
                    black_box(fs.read(ino, o.fh, 0, KIB as u32).expect("read"));
                    fs.release(ino, o.fh).expect("release");
                }
            }
            let t = timed(|| {
                for n in &names {
                    fs.unlink(&ME, ROOT, n).expect("unlink");
                }
                fs.sync_all().expect("sync_all");
            });
            fs.shutdown().expect("shutdown");
            t
        });
    }
}

// --- audit trail ----------------------------------------------------------------

/// A record as an EHR program's open of a chart would leave.
fn chart_record(i: u64) -> Record {
    Record {
        time_ms: 1_790_000_000_000 + i,
        uid: 1000 + (i % 50) as u32,
        gid: 1000,
        pid: 4000 + (i % 977) as u32,
        process: "ehr-server".into(),
        op: Op::Open { flags: 0 },
        path: format!("/patients/{:05}/chart-{}.pdf", i % 50_000, i % 7),
        path2: None,
        errno: 0,
    }
}

/// An auditor of a fresh local store (a real disk: its spool and
/// segments are files); records go up 4096 to a segment.
fn audited_store(dir: &std::path::Path) -> (Arc<dyn ObjectStore>, Keys, Arc<Auditor>) {
    let store: Arc<dyn ObjectStore> =
        Arc::new(LocalStore::create(&dir.join("vault")).expect("local store"));
    let master = MasterKey::generate();
    let keys = Keys::derive(&master, &AUDIT_VID);
    let key = Keys::derive(&master, &AUDIT_VID).audit;
    let auditor =
        Auditor::open(store.clone(), key, AUDIT_VID, "w", &dir.join("spool")).expect("auditor");
    (store, keys, auditor)
}

const AUDIT_VID: [u8; 16] = [7; 16];

fn record_all(auditor: &Auditor, n: u64) {
    for i in 0..n {
        auditor.record(chart_record(i));
        if i % 4096 == 4095 {
            auditor.flush().expect("flush");
        }
    }
    auditor.flush().expect("flush");
}

fn bench_audit(b: &Bench) {
    const N: u64 = 200_000;
    b.run("audit record + upload (local store)", Work::Ops(N), || {
        let dir = tempfile::tempdir().expect("tempdir");
        let (_, _, auditor) = audited_store(dir.path());
        timed(|| record_all(&auditor, N))
    });

    const MILLION: u64 = 1_000_000;
    let wanted = [
        "audit verify 1M records",
        "audit query 1M records, path prefix",
    ];
    if !wanted.iter().any(|n| b.wanted(n)) {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, keys, auditor) = audited_store(dir.path());
    record_all(&auditor, MILLION);
    b.run(wanted[0], Work::Ops(MILLION), || {
        timed(|| {
            let v = query::verify(&*store, &keys.audit, &AUDIT_VID, None).expect("verify");
            assert!(v.intact());
        })
    });
    b.run(wanted[1], Work::Ops(MILLION), || {
        let filter = Filter {
            path_prefix: Some("/patients/00042/".into()),
            ..Filter::default()
        };
        let mut found = 0u64;
        let t = timed(|| {
            query::query(&*store, &keys.audit, &AUDIT_VID, &filter, &mut |_, _, _| {
                found += 1;
                true
            })
            .expect("query")
        });
        assert_eq!(found, 20);
        t
    });
}

fn main() {
    // `cargo bench` passes `--bench`; anything else not starting with `-`
    // is a filter.
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let reps = std::env::var("CORE_BENCH_REPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n: &usize| n > 0)
        .unwrap_or(5);
    let b = Bench { filters, reps };
    println!("sealedfs core benchmarks: median of {reps} runs each");
    bench_seal(&b);
    bench_chunkmap(&b);
    bench_fs(&b);
    bench_unlink(&b);
    bench_audit(&b);
}
