//! A mutation fuzzer for every decoder of bytes that come from the store
//! (or from this host's files and sockets): none may panic, loop or
//! allocate without bound, whatever it is given; each must answer `Ok` or
//! a clear `Err`.
//!
//! Each target starts from valid encodings (seeds) and feeds its decoder
//! random mutations of them: bit flips, overwritten bytes, truncations,
//! insertions, duplicated and spliced runs, and plain random bytes. The
//! stable toolchain has no coverage-guided fuzzer, so this runs as a test:
//! for `SEALEDFS_FUZZ_SECS` seconds (default 6) spread over the targets,
//! from a random seed that a failure prints (`SEALEDFS_FUZZ_SEED` replays
//! it). CI runs it briefly; by hand:
//!
//! ```text
//! SEALEDFS_FUZZ_SECS=3600 cargo test --lib fuzz -- --nocapture
//! ```

use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};

use crate::crypto::{self, Keys, MasterKey, UnitAd};
use crate::data::{Extent, PackId};
use crate::meta::checkpoint::{Index, ShardRef};
use crate::meta::snapshot::SnapshotRecord;
use crate::meta::{Inode, InodeAttr, Kind, Namespace, Record, Segment, decode, encode};
use crate::volume::VolumeHeader;

/// Feeds one input to a decoder.
type Run = Box<dyn Fn(&[u8])>;

/// One decoder and the valid inputs it starts from.
struct Target {
    name: &'static str,
    seeds: Vec<Vec<u8>>,
    run: Run,
}

fn mutate(rng: &mut StdRng, seeds: &[Vec<u8>]) -> Vec<u8> {
    let mut b = seeds[rng.gen_range(0..seeds.len())].clone();
    for _ in 0..rng.gen_range(1..=4) {
        let len = b.len();
        match rng.gen_range(0..8) {
            0 if len > 0 => {
                let i = rng.gen_range(0..len);
                b[i] ^= 1 << rng.gen_range(0..8);
            }
            1 if len > 0 => {
                let i = rng.gen_range(0..len);
                b[i] = [0, 0x7f, 0x80, 0xff, rng.r#gen()][rng.gen_range(0..5)];
            }
            2 if len > 0 => b.truncate(rng.gen_range(0..len)),
            3 => {
                let i = rng.gen_range(0..=len);
                let n = rng.gen_range(1..16);
                let extra: Vec<u8> = (0..n).map(|_| rng.r#gen()).collect();
                b.splice(i..i, extra);
            }
            4 if len > 1 => {
                let a = rng.gen_range(0..len);
                let z = rng.gen_range(a..len);
                let run = b[a..=z].to_vec();
                let at = rng.gen_range(0..=len);
                b.splice(at..at, run);
            }
            5 => {
                let other = &seeds[rng.gen_range(0..seeds.len())];
                if !other.is_empty() {
                    let from = rng.gen_range(0..other.len());
                    let at = rng.gen_range(0..=len);
                    b.truncate(at);
                    b.extend_from_slice(&other[from..]);
                }
            }
            6 => {
                // A huge varint where a length or count is expected.
                let at = rng.gen_range(0..=len);
                b.splice(at..at, [0xff, 0xff, 0xff, 0xff, 0x0f]);
            }
            _ => {
                let n = rng.gen_range(0..64);
                b = (0..n).map(|_| rng.r#gen()).collect();
            }
        }
    }
    b
}

fn sample_inode(kind: Kind) -> Inode {
    let mut i = Inode::new(InodeAttr::new(kind, 0o644, 1000, 1000));
    i.xattrs.insert(b"user.k".to_vec(), b"v".to_vec());
    i
}

fn sample_records() -> Vec<Record> {
    let pack = PackId([7; 16]);
    vec![
        Record::Pack {
            id: pack,
            size: 8192,
            units: 2,
        },
        Record::Inode {
            ino: 2,
            attr: InodeAttr::new(Kind::File, 0o600, 0, 0),
        },
        Record::Dirent {
            dir: 1,
            name: b"a.txt".to_vec(),
            ino: Some(2),
        },
        Record::Chunks {
            ino: 2,
            first: 0,
            extent: Extent {
                count: 2,
                pack,
                first_unit: 0,
                cipher_off: 0,
                cipher_len: 4136,
                plain_len: 4096,
            },
        },
        Record::Xattr {
            ino: 2,
            name: b"user.x".to_vec(),
            value: Some(b"y".to_vec()),
        },
        Record::Truncate { ino: 2, size: 100 },
        Record::Punch {
            ino: 2,
            first: 0,
            count: 1,
        },
        Record::Symlink {
            ino: 3,
            target: b"t".to_vec(),
        },
        Record::Orphan { ino: 2 },
        Record::Drop { ino: 2 },
        Record::PackGone { id: pack },
    ]
}

fn targets() -> Vec<Target> {
    let master = MasterKey::generate();
    let header = VolumeHeader::new(
        &master,
        b"fuzz",
        crate::crypto::KdfParams::insecure_fast(),
        65536,
    )
    .unwrap();
    let keys = Keys::derive(&master, &header.volume_id);
    let segment = Segment {
        seq: 3,
        writer: [1; 16],
        prev_hash: [2; 32],
        records: sample_records(),
        audit: Some((1, [4; 32])),
    };
    let index = Index {
        seq: 4,
        journal_hash: [5; 32],
        next_ino: 9,
        chunk_size: 65536,
        packs: vec![(PackId([7; 16]), Default::default())],
        orphans: vec![2],
        shards: vec![ShardRef {
            n: 0,
            seq: 4,
            hash: [6; 32],
        }],
    };
    let shard: Vec<(u64, Inode)> =
        vec![(1, sample_inode(Kind::Dir)), (2, sample_inode(Kind::File))];
    let snapshot = SnapshotRecord {
        name: "nightly".into(),
        created_ms: 1,
        checkpoint: 4,
        journal_hash: [5; 32],
        inodes: 2,
        data_bytes: 8192,
    };
    let lease = crate::lease::record::encode(&crate::lease::LeaseRecord {
        host: "h".into(),
        boot_id: "b".into(),
        pid: 1,
        pid_start: 2,
        writer: [3; 16],
        ttl_ms: 30_000,
        valid_until_ms: 4,
        committed_seq: 5,
        committed_hash: [6; 32],
    });
    let ad = |object: &'static str| UnitAd {
        volume_id: &header.volume_id,
        object,
        unit: 0,
        last: true,
    };
    let sealed = crypto::seal(
        &keys.meta,
        &ad("meta/journal/0000000000000003"),
        &encode(&segment),
    );
    let volume_id = header.volume_id;
    let frame = {
        let body = postcard::to_allocvec(&crate::cli::control::Request::SnapshotCreate {
            name: "n".into(),
        })
        .unwrap();
        let mut f = ((body.len() + 1) as u32).to_be_bytes().to_vec();
        f.push(crate::cli::control::PROTOCOL);
        f.extend(body);
        f
    };
    vec![
        Target {
            name: "volume header",
            seeds: vec![header.encode()],
            run: Box::new(|b| {
                let _ = VolumeHeader::decode(b);
            }),
        },
        Target {
            name: "journal segment",
            seeds: vec![encode(&segment)],
            run: Box::new(|b| {
                // Decoded records meet a tree: applying them must refuse
                // what contradicts it, never panic.
                if let Ok(seg) = decode::<Segment>("fuzz", b) {
                    let mut ns = Namespace::new(65536, InodeAttr::new(Kind::Dir, 0o755, 0, 0));
                    for r in &seg.records {
                        let _ = ns.apply(r);
                    }
                    let _ = ns.check();
                }
            }),
        },
        Target {
            name: "sealed journal segment",
            seeds: vec![sealed],
            run: Box::new(move |b| {
                let keys = &keys;
                let ad = UnitAd {
                    volume_id: &volume_id,
                    object: "meta/journal/0000000000000003",
                    unit: 0,
                    last: true,
                };
                let _ = crypto::open(&keys.meta, &ad, b);
            }),
        },
        Target {
            name: "checkpoint index",
            seeds: vec![encode(&index)],
            run: Box::new(|b| {
                let _ = decode::<Index>("fuzz", b);
            }),
        },
        Target {
            name: "checkpoint shard",
            seeds: vec![encode(&shard)],
            run: Box::new(|b| {
                let _ = decode::<Vec<(u64, Inode)>>("fuzz", b);
            }),
        },
        Target {
            name: "snapshot record",
            seeds: vec![encode(&snapshot)],
            run: Box::new(|b| {
                let _ = decode::<SnapshotRecord>("fuzz", b);
            }),
        },
        Target {
            name: "lease record",
            seeds: vec![lease],
            run: Box::new(|b| {
                let _ = crate::lease::record::decode(b);
            }),
        },
        Target {
            name: "anchor file",
            seeds: vec![
                b"sealedfs anchor 1\nvolume 00112233445566778899aabbccddeeff\nseq 7\nhash "
                    .to_vec(),
            ],
            run: Box::new(|b| {
                let _ = crate::cli::anchor::parse(&String::from_utf8_lossy(b));
            }),
        },
        Target {
            name: "control frame",
            seeds: vec![frame],
            run: Box::new(|b| {
                let _ = crate::cli::control::read_frame::<crate::cli::control::Request>(
                    &mut std::io::Cursor::new(b),
                );
            }),
        },
    ]
}

#[test]
fn decoders_never_panic() {
    let secs: u64 = std::env::var("SEALEDFS_FUZZ_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(6);
    let seed: u64 = std::env::var("SEALEDFS_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| rand::thread_rng().next_u64());
    let targets = targets();
    let per_target = Duration::from_secs(secs) / targets.len() as u32;
    let mut total = 0u64;
    for t in &targets {
        let mut rng = StdRng::seed_from_u64(seed ^ t.name.len() as u64);
        let start = Instant::now();
        let mut n = 0u64;
        for s in &t.seeds {
            (t.run)(s);
        }
        while start.elapsed() < per_target {
            let input = mutate(&mut rng, &t.seeds);
            let outcome =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (t.run)(&input)));
            assert!(
                outcome.is_ok(),
                "{} panicked on {} bytes (replay with SEALEDFS_FUZZ_SEED={seed}): {:02x?}",
                t.name,
                input.len(),
                &input[..input.len().min(64)]
            );
            n += 1;
        }
        eprintln!("fuzz {}: {n} executions", t.name);
        total += n;
    }
    eprintln!(
        "fuzz: {total} executions over {} decoders in {secs} s (seed {seed})",
        targets.len()
    );
}
