//! Size privacy (`meta::pad`): an observer of the store sees class sizes
//! of metadata, never a record count, and an fsynced file's size does not
//! show in any object.

use super::*;
use crate::crypto::SEAL_OVERHEAD;
use crate::meta::pad::class;

/// (key, size) of every object but the volume header.
fn sizes(vol: &Vol) -> BTreeMap<String, u64> {
    vol.mem
        .list("")
        .unwrap()
        .into_iter()
        .filter(|o| o.key != "volume")
        .map(|o| (o.key, o.size))
        .collect()
}

fn is_class(size: usize) -> bool {
    class(size) == size
}

/// A sealed metadata object: a class of plaintext, sealed.
fn is_sealed_class(size: u64) -> bool {
    (size as usize)
        .checked_sub(SEAL_OVERHEAD)
        .is_some_and(is_class)
}

/// A mount's worth of metadata: files, a directory, an xattr, a symlink,
/// an fsync, a checkpoint and a clean unmount.
#[test]
fn every_metadata_object_and_short_pack_is_a_class_size() {
    let vol = Vol::new();
    let fs = vol.mount();
    let dir = fs.mkdir(&ME, ROOT, os("d"), 0o755, 0o022).unwrap().ino;
    for i in 0..40u8 {
        let ino = put_file(&fs, &format!("f{i}"), &pattern(1 + 997 * i as usize, i));
        let name = format!("{i}");
        fs.rename(&ME, ROOT, os(&format!("f{i}")), dir, os(&name), 0)
            .unwrap();
        if i % 7 == 0 {
            fs.setxattr(&ME, ino, os("user.k"), b"v", 0).unwrap();
        }
    }
    fs.symlink(&ME, ROOT, os("l"), os("d/3")).unwrap();
    let (attr, o) = fs
        .create(&ME, ROOT, os("db"), 0o644, 0, libc::O_RDWR)
        .unwrap();
    fs.write(&ME, attr.ino, o.fh, 0, &pattern(3000, 7)).unwrap();
    fs.fsync(attr.ino, o.fh, false).unwrap();
    fs.release(attr.ino, o.fh).unwrap();
    fs.engine().checkpoint_now().unwrap();
    fs.shutdown().unwrap();

    let all = sizes(&vol);
    let meta: Vec<_> = all.iter().filter(|(k, _)| k.starts_with("meta/")).collect();
    assert!(meta.len() >= 4, "{meta:?}");
    for (key, size) in meta {
        assert!(
            is_sealed_class(*size),
            "{key}: {size} B is not a sealed class"
        );
    }
    for (key, &size) in all.iter().filter(|(k, _)| k.starts_with("data/")) {
        assert!(is_class(size as usize), "{key}: {size} B is not a class");
    }
}

/// The objects an fsync of a fresh file of `len` bytes leaves, checkpoint
/// included (which lands the carried pack as an object of its own).
fn fsync_leaves(len: usize) -> Vec<u64> {
    let vol = Vol::new();
    let fs = vol.mount();
    let before = sizes(&vol);
    let (attr, o) = fs
        .create(&ME, ROOT, os("secret"), 0o644, 0, libc::O_RDWR)
        .unwrap();
    fs.write(&ME, attr.ino, o.fh, 0, &pattern(len, 5)).unwrap();
    fs.fsync(attr.ino, o.fh, false).unwrap();
    fs.engine().checkpoint_now().unwrap();
    fs.abandon();
    let mut left: Vec<u64> = sizes(&vol)
        .into_iter()
        .filter(|(k, _)| !before.contains_key(k) && !k.starts_with("audit/") && k != "lease")
        .map(|(_, size)| size)
        .collect();
    left.sort();
    left
}

#[test]
fn an_fsynced_5000_byte_file_shows_in_no_object_size() {
    let left = fsync_leaves(5000);
    eprintln!("objects an fsync of 5,000 B leaves: {left:?}");
    assert!(
        left.iter().any(|&s| s > 5000),
        "the data is somewhere: {left:?}"
    );
    // Exact, sealed, padded to 4 KiB and sealed, as a one-segment pack:
    // what an unpadded object of that file would measure.
    let revealing = [5000, 5040, 8192, 8232];
    for size in &left {
        assert!(
            !revealing.contains(size),
            "{size} B reveals the file: {left:?}"
        );
    }
    // The same objects as for another size in its class: the size shows
    // to within the class, never exactly.
    assert_eq!(left, fsync_leaves(7000), "5,000 and 7,000 B look alike");
}
