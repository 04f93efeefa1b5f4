use std::path::Path;
use std::sync::Arc;

use super::*;
use crate::store::{CountingStore, MemoryStore};

const KEY: &str = "data/ab/000102030405060708090a0b0c0d0e0f";
const OTHER: &str = "data/cd/f00102030405060708090a0b0c0d0e0f";
const VOL: &str = "00112233445566778899aabbccddeeff";

type Stack = DiskCachedStore<CountingStore<MemoryStore>>;

fn stack(
    dir: &Path,
    mem: &MemoryStore,
    limit: u64,
    block: u64,
) -> (Stack, CountingStore<MemoryStore>, Arc<DiskCache>) {
    let counted = CountingStore::new(mem.clone());
    let cache = DiskCache::open_with_block(dir, VOL, limit, block).unwrap();
    cache.wait_scanned();
    (
        DiskCachedStore::new(counted.clone(), Arc::clone(&cache)),
        counted,
        cache,
    )
}

fn body(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// Bytes held in the cache's block files.
fn bytes_on_disk(cache: &DiskCache) -> u64 {
    let mut total = 0;
    let mut dirs = vec![cache.root().join("data")];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(d).unwrap() {
            let e = e.unwrap();
            match e.file_type().unwrap().is_dir() {
                true => dirs.push(e.path()),
                false => total += e.metadata().unwrap().len(),
            }
        }
    }
    total
}

#[test]
fn ranged_reads_match_the_store_and_repeat_from_disk() {
    let dir = tempfile::tempdir().unwrap();
    let mem = MemoryStore::new();
    let obj = body(1000, 7);
    mem.put(KEY, &obj).unwrap();
    let (s, counted, _) = stack(dir.path(), &mem, 1 << 20, 64);
    let ranges = [
        0..10,
        5..200,
        190..260,
        64..128,
        600..1000,
        300..301,
        0..1000,
        999..1000,
    ];
    for r in ranges.iter().cloned() {
        let got = s.get_range(KEY, r.clone()).unwrap();
        assert_eq!(got, obj[r.start as usize..r.end as usize], "{r:?}");
    }
    counted.reset();
    for r in ranges.iter().cloned() {
        assert_eq!(
            s.get_range(KEY, r.clone()).unwrap(),
            obj[r.start as usize..r.end as usize]
        );
    }
    assert_eq!(counted.counts().reads(), 0, "everything was read before");
}

#[test]
fn a_read_past_a_prefix_fetches_only_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let mem = MemoryStore::new();
    let obj = body(512, 1);
    mem.put(KEY, &obj).unwrap();
    let (s, counted, _) = stack(dir.path(), &mem, 1 << 20, 100);
    s.get_range(KEY, 0..150).unwrap();
    counted.reset();
    assert_eq!(s.get_range(KEY, 120..330).unwrap(), obj[120..330]);
    let n = counted.counts();
    // Block 1 held 50 bytes: the GET starts where they end.
    assert_eq!((n.get_range, n.bytes_read), (1, 330 - 150));
}

#[test]
fn overlapping_fetches_stored_out_of_order_keep_every_byte() {
    let dir = tempfile::tempdir().unwrap();
    let mem = MemoryStore::new();
    let obj = body(100, 4);
    mem.put(KEY, &obj).unwrap();
    let (_, counted, cache) = stack(dir.path(), &mem, 1 << 20, 100);
    let s = DiskCachedStore::new(counted.clone(), Arc::clone(&cache));
    let id = (KEY.to_owned(), 0);
    // Two reads looked the block up empty-handed; one had fetched 0..30,
    // the other 20..70 after a third stored 0..20.
    cache.store_block(id.clone(), 0, &obj[0..20], Store::Fetched(0));
    cache.store_block(id.clone(), 20, &obj[20..70], Store::Fetched(0));
    cache.store_block(id.clone(), 0, &obj[0..30], Store::Fetched(0));
    assert_eq!(cache.index().peek(&id), Some(70));
    // One that looked up a prefix of 10 stores what lies past 70.
    cache.store_block(id.clone(), 10, &obj[10..90], Store::Fetched(0));
    assert_eq!(cache.index().peek(&id), Some(90));
    // One that would leave a gap is not stored.
    cache.store_block(id.clone(), 95, &obj[95..100], Store::Fetched(0));
    assert_eq!(cache.index().peek(&id), Some(90));
    counted.reset();
    assert_eq!(s.get_range(KEY, 0..90).unwrap(), obj[0..90]);
    assert_eq!(counted.counts().reads(), 0);
}

#[test]
fn writes_are_cached_and_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let mem = MemoryStore::new();
    let obj = body(300, 3);
    {
        let (s, counted, _) = stack(dir.path(), &mem, 1 << 20, 64);
        s.put(KEY, &obj).unwrap();
        counted.reset();
        assert_eq!(s.get_range(KEY, 10..290).unwrap(), obj[10..290]);
        assert_eq!(counted.counts().reads(), 0);
    }
    let (s, counted, cache) = stack(dir.path(), &mem, 1 << 20, 64);
    assert_eq!(cache.stats().bytes, 300);
    assert_eq!(s.get_range(KEY, 0..300).unwrap(), obj);
    assert_eq!(
        counted.counts().reads(),
        0,
        "the index was rebuilt from disk"
    );
    assert_eq!(cache.stats().hits, 1);
}

#[test]
fn the_directory_stays_within_its_bound() {
    let dir = tempfile::tempdir().unwrap();
    let mem = MemoryStore::new();
    let (s, _, cache) = stack(dir.path(), &mem, 1000, 128);
    for seed in 0..20u8 {
        let key = format!("data/{seed:02x}/{:032x}", seed as u128 + 1);
        let obj = body(700, seed);
        mem.put(&key, &obj).unwrap();
        assert_eq!(s.get_range(&key, 100..650).unwrap(), obj[100..650]);
        if seed % 3 == 0 {
            s.put(&key, &obj).unwrap();
        }
        let on_disk = bytes_on_disk(&cache);
        assert!(on_disk <= 1000 + 128, "{on_disk} bytes on disk");
        assert_eq!(on_disk, cache.stats().bytes);
    }
}

#[test]
fn a_forgotten_object_is_fetched_again() {
    let dir = tempfile::tempdir().unwrap();
    let mem = MemoryStore::new();
    let obj = body(200, 9);
    mem.put(KEY, &obj).unwrap();
    let (s, counted, cache) = stack(dir.path(), &mem, 1 << 20, 64);
    s.get_range(KEY, 0..200).unwrap();
    // Flip a byte of block 1: the store decorator cannot tell...
    let path = cache.path(&(KEY.to_owned(), 1));
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[3] ^= 1;
    std::fs::write(&path, &bytes).unwrap();
    let bad = s.get_range(KEY, 64..128).unwrap();
    assert_ne!(bad, obj[64..128]);
    // ...the layer that authenticates can.
    assert!(s.forget(KEY, 70..90));
    counted.reset();
    assert_eq!(s.get_range(KEY, 64..128).unwrap(), obj[64..128]);
    assert_eq!(counted.counts().get_range, 1);
    // Nothing of it was cached, but a copy might have been: re-read.
    assert!(s.forget(OTHER, 0..10));
    assert!(!s.forget("meta/journal/00000001", 0..10), "never cached");
    assert_eq!(cache.stats().dropped, 1);
}

#[test]
fn a_truncated_block_is_read_from_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let mem = MemoryStore::new();
    let obj = body(200, 5);
    mem.put(KEY, &obj).unwrap();
    let (s, _, cache) = stack(dir.path(), &mem, 1 << 20, 64);
    s.get_range(KEY, 0..200).unwrap();
    let path = cache.path(&(KEY.to_owned(), 2));
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(10)
        .unwrap();
    assert_eq!(s.get_range(KEY, 100..200).unwrap(), obj[100..200]);
    assert_eq!(cache.stats().dropped, 1);
    // After a reopen a short file is a shorter prefix: still right.
    drop((s, cache));
    let (s, _, _) = stack(dir.path(), &mem, 1 << 20, 64);
    assert_eq!(s.get_range(KEY, 0..200).unwrap(), obj);
}

#[test]
fn replacing_or_deleting_an_object_drops_its_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let mem = MemoryStore::new();
    let (s, counted, cache) = stack(dir.path(), &mem, 1 << 20, 64);
    s.put(KEY, &body(150, 1)).unwrap();
    let etag = s.head(KEY).unwrap().unwrap().etag;
    let resealed = body(150, 2);
    s.put_if_match(KEY, &resealed, &etag).unwrap();
    counted.reset();
    assert_eq!(s.get_range(KEY, 0..150).unwrap(), resealed);
    assert_eq!(
        counted.counts().reads(),
        0,
        "the new body was written through"
    );
    s.delete(KEY).unwrap();
    assert_eq!(cache.stats().bytes, 0);
    assert!(s.get_range(KEY, 0..10).unwrap_err().is_not_found());
}

#[test]
fn metadata_objects_are_never_cached() {
    let dir = tempfile::tempdir().unwrap();
    let mem = MemoryStore::new();
    let (s, counted, cache) = stack(dir.path(), &mem, 1 << 20, 64);
    for key in [
        "volume",
        "meta/journal/00000001",
        "data/ab/short",
        "data/ab/../../x",
    ] {
        let _ = s.put(key, b"0123456789");
        let _ = s.get_range(key, 0..5);
    }
    assert_eq!(cache.stats().bytes, 0);
    assert!(counted.counts().get_range >= 3);
}

#[test]
fn a_second_open_of_one_volume_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let _first = DiskCache::open(dir.path(), VOL, 1 << 20).unwrap();
    let second = DiskCache::open(dir.path(), VOL, 1 << 20);
    assert!(matches!(second, Err(DiskCacheError::Busy(_))));
    let other = DiskCache::open(dir.path(), "ffeeddccbbaa99887766554433221100", 1 << 20);
    assert!(other.is_ok(), "another volume has its own directory");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir.path().join(VOL))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700);
}

fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn mode_of(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::symlink_metadata(path)
        .unwrap()
        .permissions()
        .mode()
        & 0o7777
}

#[test]
fn a_planted_volume_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(elsewhere.path(), dir.path().join(VOL)).unwrap();
    assert!(
        DiskCache::open(dir.path(), VOL, 1 << 20).is_err(),
        "a symlink"
    );
    std::fs::remove_file(dir.path().join(VOL)).unwrap();
    std::fs::create_dir(dir.path().join(VOL)).unwrap();
    chmod(&dir.path().join(VOL), 0o777);
    assert!(
        DiskCache::open(dir.path(), VOL, 1 << 20).is_err(),
        "others write it"
    );
    assert_eq!(mode_of(&dir.path().join(VOL)), 0o777, "left as it is");
    // `tmp` planted as a link to a directory the open-time cleanup would empty.
    chmod(&dir.path().join(VOL), 0o700);
    std::fs::write(elsewhere.path().join("passwd"), b"x").unwrap();
    std::os::unix::fs::symlink(elsewhere.path(), dir.path().join(VOL).join("tmp")).unwrap();
    assert!(
        DiskCache::open(dir.path(), VOL, 1 << 20).is_err(),
        "tmp a link"
    );
    assert!(elsewhere.path().join("passwd").exists());
}

#[test]
fn links_and_fifos_among_the_blocks_are_never_followed() {
    let dir = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let mem = MemoryStore::new();
    let obj = body(200, 6);
    mem.put(KEY, &obj).unwrap();
    let (s, _, cache) = stack(dir.path(), &mem, 1 << 20, 64);
    s.get_range(KEY, 0..200).unwrap();
    // Block 0 a link to a FIFO (opening it would wait for a writer),
    // block 1 a link to another file.
    let fifo = elsewhere.path().join("fifo");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a valid C string.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let other = elsewhere.path().join("other");
    std::fs::write(&other, body(64, 99)).unwrap();
    for (n, target) in [(0, &fifo), (1, &other)] {
        let path = cache.path(&(KEY.to_owned(), n));
        std::fs::remove_file(&path).unwrap();
        std::os::unix::fs::symlink(target, &path).unwrap();
    }
    assert_eq!(s.get_range(KEY, 0..64).unwrap(), obj[0..64]);
    assert_eq!(s.get_range(KEY, 64..128).unwrap(), obj[64..128]);
    assert_eq!(cache.stats().dropped, 2);
    assert!(other.exists() && fifo.exists());
    // A reopen's scan neither follows nor indexes a link.
    drop((s, cache));
    let path = dir.path().join(VOL).join("data/ab/x.0");
    std::os::unix::fs::symlink(&other, &path).unwrap();
    let (s, counted, cache) = stack(dir.path(), &mem, 1 << 20, 64);
    assert_eq!(s.get_range(KEY, 128..200).unwrap(), obj[128..200]);
    assert_eq!(counted.counts().reads(), 0);
    assert_eq!(cache.stats().bytes, 200 - 128, "blocks 2 and 3");
    assert!(other.exists() && std::fs::symlink_metadata(&path).is_err());
}

#[test]
fn the_users_directory_is_never_changed_and_an_open_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    chmod(dir.path(), 0o755);
    let cache = DiskCache::open(dir.path(), VOL, 1 << 20).unwrap();
    cache.wait_scanned();
    assert_eq!(mode_of(dir.path()), 0o755);
    assert_eq!(mode_of(&dir.path().join(VOL)), 0o700);
    drop(cache);
    chmod(dir.path(), 0o777);
    let refused = DiskCache::open(dir.path(), VOL, 1 << 20).err().unwrap();
    assert!(refused.to_string().contains("not sticky"), "{refused}");
    // Sticky, like /tmp: the volume's own directory is what protects.
    chmod(dir.path(), 0o1777);
    assert!(DiskCache::open(dir.path(), VOL, 1 << 20).is_ok());
    assert_eq!(mode_of(dir.path()), 0o1777);
    let link = tempfile::tempdir().unwrap();
    let linked = link.path().join("cache");
    std::os::unix::fs::symlink(dir.path(), &linked).unwrap();
    assert!(DiskCache::open(&linked, VOL, 1 << 20).is_err(), "a symlink");
}

/// The engine's rule (`read_run`): bytes that fail authentication are
/// forgotten and, if a copy may have answered, read fresh once.
fn read_checked(s: &Stack, obj: &[u8], range: Range<u64>, both_read: &std::sync::Barrier) -> bool {
    let got = s.get_range(KEY, range.clone()).unwrap();
    both_read.wait();
    let want = &obj[range.start as usize..range.end as usize];
    let retry = got != want && s.forget(KEY, range.clone());
    // Both have forgotten before either reads again.
    both_read.wait();
    if got == want {
        return true;
    }
    retry && s.get_range_fresh(KEY, range).unwrap() == want
}

#[test]
fn two_readers_of_a_tampered_block_both_get_the_good_copy() {
    let dir = tempfile::tempdir().unwrap();
    let mem = MemoryStore::new();
    let obj = body(200, 8);
    mem.put(KEY, &obj).unwrap();
    let (s, counted, cache) = stack(dir.path(), &mem, 1 << 20, 64);
    s.get_range(KEY, 0..200).unwrap();
    let path = cache.path(&(KEY.to_owned(), 1));
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[0] ^= 1;
    std::fs::write(&path, &bytes).unwrap();
    // Both read the bad block before either forgets it: the second
    // forget finds nothing to drop and must still lead to a fresh read.
    let both_read = std::sync::Barrier::new(2);
    let ok = std::thread::scope(|t| {
        let a = t.spawn(|| read_checked(&s, &obj, 64..128, &both_read));
        let b = t.spawn(|| read_checked(&s, &obj, 64..128, &both_read));
        [a.join().unwrap(), b.join().unwrap()]
    });
    assert_eq!(ok, [true, true]);
    assert_eq!(cache.stats().dropped, 1);
    // The fresh bytes replaced the bad ones on disk.
    counted.reset();
    assert_eq!(s.get_range(KEY, 64..128).unwrap(), obj[64..128]);
    assert_eq!(counted.counts().reads(), 0);
}

#[test]
fn a_get_that_raced_a_reseal_or_delete_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mem = MemoryStore::new();
    let (s, counted, cache) = stack(dir.path(), &mem, 1 << 20, 64);
    let (old, new) = (body(150, 1), body(150, 2));
    s.put(KEY, &old).unwrap();
    // A reader notes the generation and fetches the old bytes; a re-seal
    // drops the object's blocks (`put_if_match`, before its PUT); the
    // reader stores what it fetched; the re-seal stores the new body.
    let seen = cache.generation();
    cache.drop_object(KEY);
    s.keep(KEY, 0, &old, seen);
    mem.put(KEY, &new).unwrap();
    cache.store_object(KEY, &new);
    counted.reset();
    assert_eq!(s.get_range(KEY, 0..150).unwrap(), new);
    assert_eq!(counted.counts().reads(), 0, "the re-seal's blocks stayed");
    // The same with a delete: nothing of the object is left on disk.
    let seen = cache.generation();
    s.delete(KEY).unwrap();
    s.keep(KEY, 0, &new, seen);
    assert_eq!((cache.stats().bytes, bytes_on_disk(&cache)), (0, 0));
    // A write replaces blocks that hold more than it does.
    s.put(KEY, &old).unwrap();
    s.put(KEY, &new[..100]).unwrap();
    assert_eq!(s.get_range(KEY, 0..100).unwrap(), new[..100]);
    assert_eq!(cache.stats().bytes, 100);
}

#[test]
fn a_block_evicted_while_read_is_not_counted_as_unreadable() {
    let dir = tempfile::tempdir().unwrap();
    let mem = MemoryStore::new();
    let obj = body(200, 3);
    mem.put(KEY, &obj).unwrap();
    let (s, _, cache) = stack(dir.path(), &mem, 1 << 20, 64);
    s.get_range(KEY, 0..200).unwrap();
    // Looked up, then evicted by another read before its file was opened.
    let id = (KEY.to_owned(), 1);
    cache.drop_blocks(KEY, &(64..65));
    let mut out = Vec::new();
    assert!(!cache.read_block(&id, 0, 64, false, &mut out));
    assert_eq!(cache.stats().dropped, 0);
    // A file gone while the index still holds it is a fault.
    std::fs::remove_file(cache.path(&(KEY.to_owned(), 2))).unwrap();
    assert!(!cache.read_block(&(KEY.to_owned(), 2), 0, 64, false, &mut out));
    assert_eq!(cache.stats().dropped, 1);
    assert!(out.is_empty());
}

#[test]
fn a_hit_sets_a_blocks_time_once_per_mount() {
    let dir = tempfile::tempdir().unwrap();
    let mem = MemoryStore::new();
    let obj = body(100, 2);
    {
        let (s, _, _) = stack(dir.path(), &mem, 1 << 20, 64);
        s.put(KEY, &obj).unwrap();
    }
    let (s, counted, cache) = stack(dir.path(), &mem, 1 << 20, 64);
    let path = cache.path(&(KEY.to_owned(), 0));
    let long_ago = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1000);
    let set = |t| std::fs::File::open(&path).unwrap().set_modified(t).unwrap();
    let mtime = || std::fs::metadata(&path).unwrap().modified().unwrap();
    set(long_ago);
    assert_eq!(s.get_range(KEY, 0..10).unwrap(), obj[0..10]);
    assert!(mtime() > long_ago, "the first hit sets it");
    set(long_ago);
    assert_eq!(s.get_range(KEY, 0..10).unwrap(), obj[0..10]);
    assert_eq!(mtime(), long_ago, "later hits leave it");
    assert_eq!(counted.counts().reads(), 0);
}

/// A streamed read hands bytes over as they come, never more than a block
/// at a time from disk, and keeps what it fetched for the next one.
#[test]
fn streamed_reads_come_block_by_block_and_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let mem = MemoryStore::new();
    let obj = body(1000, 3);
    mem.put(KEY, &obj).unwrap();
    let (s, counted, _) = stack(dir.path(), &mem, 1 << 20, 64);
    let streamed = |range: Range<u64>| {
        let (mut got, mut largest) = (Vec::new(), 0);
        s.get_range_to(KEY, range, &mut |at, b| {
            assert_eq!(at, got.len() as u64, "in order");
            got.extend_from_slice(b);
            largest = largest.max(b.len());
        })
        .unwrap();
        (got, largest)
    };
    // A prefix first, so the next read is part disk, part store; its GET
    // starts where block 1's prefix ends, before the range it serves.
    assert_eq!(streamed(0..100).0, obj[0..100]);
    counted.reset();
    assert_eq!(streamed(110..900).0, obj[110..900]);
    assert_eq!(counted.counts().bytes_read, 800);
    counted.reset();
    assert_eq!(streamed(5..990).0, obj[5..990]);
    assert_eq!(counted.counts().reads(), 1, "only the tail past 900");
    counted.reset();
    let (got, largest) = streamed(0..1000);
    assert_eq!(got, obj);
    assert_eq!(counted.counts().reads(), 1, "only the last 10 bytes");
    assert!(largest <= 64, "{largest} bytes from disk in one piece");
}
