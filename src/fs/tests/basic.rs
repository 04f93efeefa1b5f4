use super::*;
use crate::fs::{FsError, Kind, SetAttr};

#[test]
fn files_survive_remount() {
    let vol = Vol::new();
    let fs = vol.mount();
    let small = pattern(1000, 1);
    let big = pattern(3 * 65536 + 17, 2);
    let a = put_file(&fs, "a", &small);
    let b = put_file(&fs, "b", &big);
    fs.mkdir(&ME, ROOT, os("d"), 0o755, 0).unwrap();
    fs.shutdown().unwrap();
    drop(fs);

    let fs = vol.mount();
    assert_eq!(
        fs.lookup(&ME, ROOT, os("a")).unwrap().ino,
        a,
        "inode numbers are stable"
    );
    assert_eq!(read_all(&fs, a), small);
    assert_eq!(read_all(&fs, b), big);
    assert_eq!(fs.lookup(&ME, ROOT, os("d")).unwrap().kind, Kind::Dir);
    assert_eq!(fs.getattr(ROOT).unwrap().nlink, 3);
}

#[test]
fn sparse_writes_and_truncate() {
    let vol = Vol::new();
    let fs = vol.mount();
    let ino = put_file(&fs, "s", b"");
    let o = fs.open(&ME, ino, libc::O_RDWR).unwrap();
    fs.write(&ME, ino, o.fh, 200_000, b"tail").unwrap();
    fs.write(&ME, ino, o.fh, 10, b"head").unwrap();
    let mut want = vec![0u8; 200_004];
    want[10..14].copy_from_slice(b"head");
    want[200_000..].copy_from_slice(b"tail");
    assert_eq!(fs.read(ino, o.fh, 0, 300_000).unwrap(), want);
    fs.fsync(ino, o.fh, false).unwrap();
    // Shrink into the middle of a chunk, grow again: the cut bytes must
    // read as zeros, from the cache and from the store.
    fs.setattr(
        &ME,
        ino,
        None,
        SetAttr {
            size: Some(12),
            ..SetAttr::default()
        },
    )
    .unwrap();
    fs.setattr(
        &ME,
        ino,
        None,
        SetAttr {
            size: Some(100),
            ..SetAttr::default()
        },
    )
    .unwrap();
    let mut want = vec![0u8; 100];
    want[10..12].copy_from_slice(b"he");
    assert_eq!(fs.read(ino, o.fh, 0, 1000).unwrap(), want);
    fs.release(ino, o.fh).unwrap();
    fs.shutdown().unwrap();
    let fs = vol.mount();
    assert_eq!(read_all(&fs, ino), want);
}

#[test]
fn open_unlinked_file_stays_readable_until_release() {
    let vol = Vol::new();
    let fs = vol.mount();
    let ino = put_file(&fs, "f", b"hello");
    let o = fs.open(&ME, ino, libc::O_RDWR).unwrap();
    fs.unlink(&ME, ROOT, os("f")).unwrap();
    assert!(matches!(
        fs.lookup(&ME, ROOT, os("f")),
        Err(FsError::NotFound)
    ));
    fs.write(&ME, ino, o.fh, 5, b" world").unwrap();
    assert_eq!(fs.read(ino, o.fh, 0, 100).unwrap(), b"hello world");
    assert_eq!(fs.getattr(ino).unwrap().nlink, 0);
    fs.release(ino, o.fh).unwrap();
    assert!(fs.getattr(ino).is_err());
}

#[test]
fn rename_rules() {
    let vol = Vol::new();
    let fs = vol.mount();
    put_file(&fs, "x", b"x");
    put_file(&fs, "y", b"y");
    let d = fs.mkdir(&ME, ROOT, os("d"), 0o755, 0).unwrap().ino;
    let e = fs.mkdir(&ME, d, os("e"), 0o755, 0).unwrap().ino;
    // Over an existing file, atomically.
    fs.rename(&ME, ROOT, os("x"), ROOT, os("y"), 0).unwrap();
    assert_eq!(
        read_all(&fs, fs.lookup(&ME, ROOT, os("y")).unwrap().ino),
        b"x"
    );
    // Into its own subtree: EINVAL.
    assert!(matches!(
        fs.rename(&ME, ROOT, os("d"), e, os("d2"), 0),
        Err(FsError::Invalid)
    ));
    // NOREPLACE and EXCHANGE.
    put_file(&fs, "z", b"z");
    assert!(matches!(
        fs.rename(&ME, ROOT, os("z"), ROOT, os("y"), libc::RENAME_NOREPLACE),
        Err(FsError::Exists)
    ));
    fs.rename(&ME, ROOT, os("z"), ROOT, os("y"), libc::RENAME_EXCHANGE)
        .unwrap();
    assert_eq!(
        read_all(&fs, fs.lookup(&ME, ROOT, os("y")).unwrap().ino),
        b"z"
    );
    assert_eq!(
        read_all(&fs, fs.lookup(&ME, ROOT, os("z")).unwrap().ino),
        b"x"
    );
    // A directory moves between parents with link counts kept.
    fs.rename(&ME, d, os("e"), ROOT, os("e"), 0).unwrap();
    assert_eq!(fs.getattr(d).unwrap().nlink, 2);
    assert_eq!(fs.getattr(ROOT).unwrap().nlink, 4);
    assert_eq!(fs.lookup(&ME, e, os("..")).unwrap().ino, ROOT);
    fs.shutdown().unwrap();
    let fs = vol.mount();
    assert_eq!(fs.getattr(ROOT).unwrap().nlink, 4);
}

#[test]
fn crash_keeps_exactly_what_fsync_acknowledged() {
    let vol = Vol::new();
    let fs = vol.mount_with(quiet());
    let (attr, o) = fs
        .create(&ME, ROOT, os("log"), 0o644, 0, libc::O_WRONLY)
        .unwrap();
    fs.write(&ME, attr.ino, o.fh, 0, b"one\n").unwrap();
    fs.fsync(attr.ino, o.fh, false).unwrap();
    fs.write(&ME, attr.ino, o.fh, 4, b"two\n").unwrap();
    fs.abandon();
    drop(fs);
    let fs = vol.mount();
    let ino = fs.lookup(&ME, ROOT, os("log")).unwrap().ino;
    assert_eq!(read_all(&fs, ino), b"one\n");
}

#[test]
fn deleting_files_frees_their_packs() {
    let vol = Vol::new();
    let fs = vol.mount();
    for round in 0..3 {
        let ino = put_file(&fs, "big", &pattern(20 << 20, round));
        fs.fsync(ino, 0, false).unwrap();
        fs.unlink(&ME, ROOT, os("big")).unwrap();
        fs.sync_all().unwrap();
    }
    fs.shutdown().unwrap();
    let data: u64 = vol
        .store
        .list("data/")
        .unwrap()
        .iter()
        .map(|o| o.size)
        .sum();
    assert_eq!(data, 0, "no pack outlives the files it held");
}

#[test]
fn compaction_reclaims_mostly_dead_packs() {
    let vol = Vol::new();
    let fs = vol.mount();
    let files: Vec<(String, Vec<u8>)> = (0..100)
        .map(|i| (format!("f{i}"), pattern(40_000, i as u8)))
        .collect();
    for (name, data) in &files {
        put_file(&fs, name, data);
    }
    fs.sync_all().unwrap();
    let stored = |v: &Vol| -> u64 { v.store.list("data/").unwrap().iter().map(|o| o.size).sum() };
    let before = stored(&vol);
    for (name, _) in files.iter().skip(20) {
        fs.unlink(&ME, ROOT, os(name)).unwrap();
    }
    fs.sync_all().unwrap();
    while fs.engine().compact_once().unwrap() {}
    // Shutdown waits for the committer, and with it for the deletion of
    // the packs its last commits retired (a commit is acknowledged first).
    fs.shutdown().unwrap();
    let after = stored(&vol);
    assert!(
        after * 4 < before,
        "compaction shrank {before} to {after} bytes"
    );
    let fs = vol.mount();
    for (name, data) in files.iter().take(20) {
        let ino = fs.lookup(&ME, ROOT, os(name)).unwrap().ino;
        assert_eq!(&read_all(&fs, ino), data, "{name}");
    }
}

#[test]
fn checkpoints_rewrite_only_changed_shards() {
    use crate::meta::checkpoint;
    let vol = Vol::new();
    let opts = FsOptions::with_engine(|e| {
        e.checkpoint_bytes = 1;
        e.commit_interval = Duration::from_millis(50);
    });
    let fs = vol.mount_with(opts.clone());
    // Inodes 2..=20001 span shards 0 and 1 (16,384 inodes each).
    for i in 0..20_000 {
        fs.mknod(&ME, ROOT, os(&format!("n{i}")), libc::S_IFREG | 0o644, 0, 0)
            .unwrap();
    }
    fs.sync_all().unwrap();
    let one = fs.lookup(&ME, ROOT, os("n17")).unwrap().ino;
    fs.setattr(
        &ME,
        one,
        None,
        SetAttr {
            mode: Some(0o600),
            ..SetAttr::default()
        },
    )
    .unwrap();
    fs.shutdown().unwrap();
    drop(fs);

    let master = vol.header.unlock(PASS).unwrap();
    let keys = crate::crypto::Keys::from_ring(&master, &vol.header.volume_id);
    let newest = checkpoint::list(&*vol.store).unwrap()[0];
    let index = checkpoint::read_index(&*vol.store, &keys, &vol.header.volume_id, newest).unwrap();
    let (s0, s1) = (index.shards[0], index.shards[1]);
    assert_eq!((s0.n, s1.n), (0, 1));
    assert!(
        s1.seq < s0.seq,
        "the unchanged shard is referred to, not rewritten: {s0:?} {s1:?}"
    );
    let objects = vol.store.list("meta/checkpoint/").unwrap();
    assert!(objects.len() <= 6, "old checkpoints swept: {objects:?}");

    let fs = vol.mount_with(opts);
    assert_eq!(fs.getattr(one).unwrap().perm, 0o600);
    assert!(fs.lookup(&ME, ROOT, os("n19999")).is_ok());
}

/// A tree deeper than PATH_MAX (built with `openat`, one level at a time)
/// is named in audit records from the inode where the path passes 4 KiB,
/// so one record stays small.
#[test]
fn audit_paths_past_path_max_are_named_from_an_inode() {
    let vol = Vol::new();
    let fs = vol.mount();
    let name = "d".repeat(200);
    let mut dir = ROOT;
    let mut inos = Vec::new();
    for _ in 0..40 {
        dir = fs.mkdir(&ME, dir, os(&name), 0o755, 0).unwrap().ino;
        inos.push(dir);
    }
    let l = fs.lock();
    let short = fs.inode_path(&l, inos[9]);
    assert_eq!(short, format!("/{}", [name.as_str(); 10].join("/")));
    let deep = fs.inode_path(&l, dir);
    assert!(deep.len() <= 4096, "{} bytes", deep.len());
    // 4096 bytes hold 20 levels of 201: those are named in full, the
    // directory above them by its inode.
    let expected = format!("<inode {}>/{}", inos[19], [name.as_str(); 20].join("/"));
    assert_eq!(deep, expected);
    drop(l);
    fs.shutdown().unwrap();
}
