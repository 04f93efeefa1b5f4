//! Reading and writing file contents: random writes against a model,
//! offsets past 4 GiB, O_DIRECT, sparse and dense files, reads at and past
//! EOF, a 200 MiB round trip, and concurrent writers.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};

use sha2::{Digest, Sha256};

use super::*;
use crate::harness::*;

/// Random writes (some spanning chunks) each followed by a random read,
/// checked against an in-memory model of the file.
fn random_ops(
    f: &File,
    model: &mut Vec<u8>,
    rng: &mut impl FnMut(u64) -> u64,
    ops: std::ops::Range<u64>,
) {
    for i in ops {
        // Offsets up to 5 chunks, lengths from 1 byte to past a chunk.
        let off = rng(5 * CHUNK) as usize;
        let len = 1 + rng(if i % 10 == 0 { 3 * CHUNK } else { 5000 }) as usize;
        let data = pattern(i, len);
        f.write_all_at(&data, off as u64).unwrap();
        if model.len() < off + len {
            model.resize(off + len, 0);
        }
        model[off..off + len].copy_from_slice(&data);
        let roff = rng(model.len() as u64) as usize;
        let rlen = (1 + rng(2 * CHUNK) as usize).min(model.len() - roff);
        let mut buf = vec![0u8; rlen];
        f.read_exact_at(&mut buf, roff as u64).unwrap();
        assert!(
            buf == model[roff..roff + rlen],
            "op {i}: read {roff}+{rlen}"
        );
        // Now and then, cut the file somewhere inside a chunk.
        if i % 37 == 0 {
            let to = rng(model.len() as u64);
            f.set_len(to).unwrap();
            model.truncate(to as usize);
        }
    }
    assert_eq!(f.metadata().unwrap().len(), model.len() as u64);
}

per_backend!(random_offset_writes_match_a_model: local, s3);
fn random_offset_writes_match_a_model(backend: Backend) {
    let mut v = Volume::new(backend);
    v.mount();
    let p = v.path("random");
    let rw = || OpenOptions::new().read(true).write(true).open(&p).unwrap();
    File::create(&p).unwrap();
    let mut model: Vec<u8> = Vec::new();
    let mut rng = lcg(7);
    random_ops(&rw(), &mut model, &mut rng, 0..300);
    assert!(fs::read(&p).unwrap() == model, "whole file before remount");
    v.remount();
    assert!(fs::read(&p).unwrap() == model, "whole file after remount");
    // Again on a cold file: every partial write is a read-modify-write of
    // a chunk that lives only in the store.
    random_ops(&rw(), &mut model, &mut rng, 300..500);
    assert!(fs::read(&p).unwrap() == model, "second round");
    v.remount();
    assert!(fs::read(&p).unwrap() == model, "second round after remount");
}

#[test]
fn offsets_beyond_4_gib() {
    let mut v = Volume::local();
    v.mount();
    let p = v.path("far");
    let f = File::create(&p).unwrap();
    let (g5, t1) = (5u64 << 30, 1u64 << 40);
    f.write_all_at(b"five GiB", g5 + 3).unwrap();
    f.write_all_at(b"one TiB", t1 - 3).unwrap();
    drop(f);
    for round in ["before remount", "after remount"] {
        let f = File::open(&p).unwrap();
        assert_eq!(f.metadata().unwrap().len(), t1 + 4, "{round}");
        let mut buf = [0u8; 8];
        f.read_exact_at(&mut buf, g5 + 3).unwrap();
        assert_eq!(&buf, b"five GiB", "{round}");
        let mut buf = [0u8; 7];
        f.read_exact_at(&mut buf, t1 - 3).unwrap();
        assert_eq!(&buf, b"one TiB", "{round}");
        let mut buf = [1u8; 100];
        f.read_exact_at(&mut buf, 4 << 30).unwrap();
        assert_eq!(buf, [0u8; 100], "{round}: hole at 4 GiB");
        let c = CHUNK as i64;
        assert_eq!(lseek(&f, 0, libc::SEEK_DATA), Ok(g5 as i64), "{round}");
        assert_eq!(
            lseek(&f, g5 as i64, libc::SEEK_HOLE),
            Ok(g5 as i64 + c),
            "{round}"
        );
        assert_eq!(
            lseek(&f, g5 as i64 + c, libc::SEEK_DATA),
            Ok((t1 - CHUNK) as i64),
            "{round}"
        );
        assert!(f.metadata().unwrap().blocks() * 512 < 1 << 20, "{round}");
        drop(f);
        v.remount();
    }
    // Shrinking back below 4 GiB keeps the first bytes only.
    let f = OpenOptions::new().write(true).open(&p).unwrap();
    f.set_len(g5 + 7).unwrap();
    drop(f);
    v.remount();
    let f = File::open(&p).unwrap();
    assert_eq!(f.metadata().unwrap().len(), g5 + 7);
    let mut buf = [0u8; 8];
    assert_eq!(f.read_at(&mut buf, g5 + 3).unwrap(), 4);
    assert_eq!(&buf[..4], b"five");
}

#[test]
fn o_direct_reads_and_writes() {
    let mut v = Volume::local();
    v.mount();
    let p = v.path("direct");
    // O_DIRECT wants aligned buffers: carve one out of a larger Vec.
    let mut raw = vec![0u8; 3 * 4096 + 4096];
    let start = raw.as_ptr().align_offset(4096);
    let data = pattern(11, 3 * 4096);
    raw[start..start + 3 * 4096].copy_from_slice(&data);
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .custom_flags(libc::O_DIRECT)
        .open(&p)
        .unwrap();
    f.write_all_at(&raw[start..start + 3 * 4096], 4096).unwrap();
    let mut back = vec![0u8; 3 * 4096 + 4096];
    let bstart = back.as_ptr().align_offset(4096);
    f.read_exact_at(&mut back[bstart..bstart + 3 * 4096], 4096)
        .unwrap();
    assert!(back[bstart..bstart + 3 * 4096] == data[..]);
    drop(f);
    let mut want = vec![0u8; 4096];
    want.extend_from_slice(&data);
    assert!(
        fs::read(&p).unwrap() == want,
        "buffered read after O_DIRECT write"
    );
    v.remount();
    assert!(fs::read(&p).unwrap() == want, "after remount");
}

#[test]
fn sparse_files_read_zeros_in_holes() {
    let mut v = Volume::local();
    v.mount();
    let p = v.path("sparse");
    let f = File::create(&p).unwrap();
    f.write_all_at(b"head", 0).unwrap();
    f.write_all_at(b"tail", 10 << 20).unwrap();
    drop(f);
    for round in 0..2 {
        let data = fs::read(&p).unwrap();
        assert_eq!(data.len(), (10 << 20) + 4, "round {round}");
        assert_eq!(&data[..4], b"head");
        assert_eq!(&data[10 << 20..], b"tail");
        assert!(
            data[4..10 << 20].iter().all(|&b| b == 0),
            "round {round}: the hole reads as zeros"
        );
        let blocks = fs::metadata(&p).unwrap().blocks();
        assert!(
            blocks * 512 < 1 << 20,
            "round {round}: a 10 MiB sparse file with 8 bytes of data allocates {blocks} blocks"
        );
        v.remount();
    }
}

#[test]
fn dense_files_count_their_blocks() {
    let mut v = Volume::local();
    v.mount();
    fs::write(v.path("dense"), pattern(12, 1 << 20)).unwrap();
    for round in ["before remount", "after remount"] {
        let blocks = fs::metadata(v.path("dense")).unwrap().blocks();
        assert!(
            blocks * 512 >= 1 << 20,
            "{round}: a 1 MiB file reports {blocks} blocks"
        );
        v.remount();
    }
}

#[test]
fn reads_at_and_past_eof_return_zero() {
    let mut v = Volume::local();
    v.mount();
    fs::write(v.path("f"), pattern(8, 100)).unwrap();
    fs::write(v.path("chunk"), pattern(8, CHUNK as usize)).unwrap();
    File::create(v.path("empty")).unwrap();
    for round in ["before remount", "after remount"] {
        let f = File::open(v.path("f")).unwrap();
        let mut buf = vec![0u8; 4096];
        assert_eq!(f.read_at(&mut buf, 100).unwrap(), 0, "{round}");
        assert_eq!(f.read_at(&mut buf, 1 << 30).unwrap(), 0, "{round}");
        assert_eq!(f.read_at(&mut buf, 50).unwrap(), 50, "{round}");
        assert!(buf[..50] == pattern(8, 100)[50..]);
        let mut f = f;
        let mut all = Vec::new();
        f.read_to_end(&mut all).unwrap();
        assert_eq!(all.len(), 100);
        assert_eq!(f.read(&mut buf).unwrap(), 0, "{round}: read at EOF");
        let c = File::open(v.path("chunk")).unwrap();
        assert_eq!(c.read_at(&mut buf, CHUNK).unwrap(), 0, "{round}");
        assert_eq!(c.read_at(&mut buf, CHUNK - 10).unwrap(), 10, "{round}");
        let e = File::open(v.path("empty")).unwrap();
        assert_eq!(e.read_at(&mut buf, 0).unwrap(), 0, "{round}");
        drop((f, c, e));
        v.remount();
    }
}

#[test]
fn large_file_round_trip() {
    let mut v = Volume::local();
    v.mount();
    const MIB: usize = 1 << 20;
    const N: u64 = 200;
    let p = v.path("large");
    let mut f = File::create(&p).unwrap();
    let mut hash = Sha256::new();
    for i in 0..N {
        let block = pattern(1000 + i, MIB);
        hash.update(&block);
        f.write_all(&block).unwrap();
    }
    f.sync_all().unwrap();
    drop(f);
    let want = format!("{:x}", hash.finalize());
    assert_eq!(fs::metadata(&p).unwrap().len(), N * MIB as u64);
    // Read back in-process, block by block.
    let mut f = File::open(&p).unwrap();
    let mut buf = vec![0u8; MIB];
    for i in 0..N {
        f.read_exact(&mut buf).unwrap();
        assert!(buf == pattern(1000 + i, MIB), "block {i}");
    }
    assert_eq!(f.read(&mut buf).unwrap(), 0);
    drop(f);
    v.remount();
    let out = sh(&format!("sha256sum '{}'", p.display()));
    assert_eq!(
        out.split_whitespace().next().unwrap(),
        want,
        "after remount"
    );
}

#[test]
fn concurrent_writers_and_creators() {
    let mut v = Volume::local();
    v.mount();
    const THREADS: u64 = 4;
    const BLOCKS: u64 = 96; // 4 KiB blocks: 6 chunks, each shared by all threads
    let p = v.path("shared");
    File::create(&p).unwrap();
    fs::create_dir(v.path("many")).unwrap();
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            let (p, dir) = (p.clone(), v.path("many"));
            std::thread::spawn(move || {
                let f = OpenOptions::new().write(true).open(&p).unwrap();
                for round in 0..3 {
                    for b in (t..BLOCKS).step_by(THREADS as usize) {
                        f.write_all_at(&pattern(b * 10 + round, 4096), b * 4096)
                            .unwrap();
                    }
                }
                for i in 0..300 {
                    File::create(dir.join(format!("t{t}-{i}"))).unwrap();
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    let mut want = Vec::new();
    for b in 0..BLOCKS {
        want.extend_from_slice(&pattern(b * 10 + 2, 4096));
    }
    for round in ["before remount", "after remount"] {
        assert_bytes(&fs::read(&p).unwrap(), &want, round);
        assert_eq!(names(&v.path("many")).len(), 1200, "{round}");
        v.remount();
    }
}
