//! Everyday tools over a mount, compared against the same tree on the
//! host's own file system: `ls -lR`, `cp -a`, `tar`, `rsync`, `grep -r`,
//! `find`/`du`/`df`, and editor-style saves (temp file + rename).
//!
//! Needs coreutils, findutils, tar, rsync, attr (getfattr), diffutils.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::harness::*;

/// A varied tree: empty, small, 1 MiB and sparse files, names with spaces
/// and non-ASCII, relative/absolute/dangling symlinks, hard links within
/// and across directories, a FIFO, odd modes, user xattrs, and
/// nanosecond mtimes on files, links and directories (set last).
fn make_tree(root: &Path) {
    let r = root.display();
    sh(&format!(
        "set -e; mkdir -p '{r}/a/b/c' '{r}/sp ace/ü' '{r}/empty-dir' && cd '{r}'
         : > empty
         printf 'small file\\n' > a/small
         head -c 1048576 /dev/urandom > a/b/mib
         truncate -s 3000000 a/sparse
         printf 'tail' | dd of=a/sparse bs=1 seek=2500000 conv=notrunc status=none
         printf 'unicode' > 'sp ace/ü/fïlé näme'
         ln -s ../small a/b/rel-link
         ln -s /etc/hostname abs-link
         ln -s does/not/exist a/dangling
         ln a/small a/b/c/hard-small
         ln a/b/mib 'sp ace/hard-mib'
         ln a/b/mib a/b/mib2
         mkfifo a/fifo
         for i in $(seq 1 50); do echo \"line $i\" > a/b/c/f$i; done
         chmod 0600 a/b/mib; chmod 0751 a/b; chmod 4755 a/small; chmod 0444 empty
         chmod 1777 'sp ace'; chmod 2750 a/b/c; chmod 0700 empty-dir
         setfattr -n user.color -v blue a/small
         setfattr -n user.bin -v 0x00ff10 a/b/mib
         setfattr -n user.dir -v yes a/b
         touch -h -d '2001-01-01 01:01:01.123456789' a/small a/b/rel-link abs-link
         touch -d '1999-12-31 23:59:59.999999999' a/b/mib a/sparse
         touch -h -d '2010-05-05 05:05:05.5' a/dangling
         # (rsync keeps a special file's mtime only to the second)
         touch -d '2003-03-03 03:03:03' a/fifo
         find . -type d -print0 | xargs -0 touch -d '2005-06-07 08:09:10.111111111'"
    ));
}

/// Everything `stat -c` says that a copy must keep (no atime; no size for
/// directories, whose size is file-system specific), content hashes,
/// hard-link groups and user xattrs; sorted by path.
fn listing(root: &Path) -> String {
    let r = root.display();
    let mut out = sh(&format!(
        "cd '{r}' && find . -mindepth 1 ! -type d -print0 | sort -z \
           | xargs -0 stat -c '%n|%F|%a|%h|%u|%g|%s|%y|%N' \
         && find . -mindepth 1 -type d -print0 | sort -z | xargs -0 stat -c '%n|%F|%a|%h|%u|%g|%y' \
         && find . -type f -print0 | sort -z | xargs -0 sha256sum \
         && find . -mindepth 1 -print0 | sort -z | xargs -0 getfattr -h -d -m '^user\\.' 2>&1"
    ));
    // Hard-link groups: the sets of paths that share an inode.
    let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in sh(&format!(
        "cd '{r}' && find . -type f -links +1 -printf '%i %p\\n'"
    ))
    .lines()
    {
        let (ino, path) = line.split_once(' ').unwrap();
        groups.entry(ino.into()).or_default().push(path.into());
    }
    let mut groups: Vec<Vec<String>> = groups.into_values().collect();
    for g in &mut groups {
        g.sort();
    }
    groups.sort();
    out += &format!("hard-link groups: {groups:?}\n");
    out
}

/// Asserts two listings are equal, showing the first differing lines.
fn same(got: &str, want: &str, what: &str) {
    if got != want {
        let g: Vec<&str> = got.lines().collect();
        let w: Vec<&str> = want.lines().collect();
        let diff: Vec<_> = (0..g.len().max(w.len()))
            .filter(|&i| g.get(i) != w.get(i))
            .take(6)
            .map(|i| (g.get(i).copied(), w.get(i).copied()))
            .collect();
        panic!("{what}: listings differ (got, want): {diff:#?}");
    }
}

/// A mounted volume and a source tree beside it (outside the mount).
fn setup() -> (Volume, PathBuf) {
    let mut v = Volume::new();
    v.mount();
    let src = v.dir.path().join("src");
    fs::create_dir(&src).unwrap();
    make_tree(&src);
    (v, src)
}

fn sparse_blocks(p: &Path) -> u64 {
    fs::metadata(p).unwrap().blocks()
}

#[test]
fn ls_lr_matches_the_source() {
    let (mut v, src) = setup();
    let dst = v.path("copy");
    sh(&format!("cp -a '{}' '{}'", src.display(), dst.display()));
    // Directory sizes and "total" lines are file-system specific.
    let ls = |root: &Path| {
        sh(&format!(
            "cd '{}' && ls -lR --time-style=full-iso . | grep -v '^total ' \
             | awk '/^d/ {{ $5 = \"-\" }} {{ $1 = $1; print }}'",
            root.display()
        ))
    };
    let want = ls(&src);
    assert!(want.lines().count() > 70, "{want}");
    same(&ls(&dst), &want, "ls -lR");
    v.remount();
    same(&ls(&dst), &want, "ls -lR after remount");
    // And the whole mount, recursively, without errors.
    let all = sh(&format!("ls -lRa '{}' | wc -l", v.mnt.display()));
    assert!(all.trim().parse::<u32>().unwrap() > 80);
}

#[test]
fn cp_a_in_and_out() {
    let (mut v, src) = setup();
    let want = listing(&src);
    let (s, m, d) = (
        src.display().to_string(),
        v.mnt.display().to_string(),
        v.dir.path().display().to_string(),
    );
    sh(&format!("cp -a '{s}' '{m}/cp'"));
    same(&listing(&v.path("cp")), &want, "cp -a into the mount");
    sh(&format!("diff -r --no-dereference -x fifo '{s}' '{m}/cp'"));
    v.remount();
    same(
        &listing(&v.path("cp")),
        &want,
        "cp -a into the mount, after remount",
    );
    sh(&format!("diff -r --no-dereference -x fifo '{s}' '{m}/cp'"));

    sh(&format!("cp -a '{m}/cp' '{d}/out'"));
    let out = v.dir.path().join("out");
    same(&listing(&out), &want, "cp -a out of the mount");
    sh(&format!("diff -r --no-dereference -x fifo '{s}' '{d}/out'"));
    // cp finds the holes through the mount: the copy out stays sparse.
    let blocks = sparse_blocks(&out.join("a/sparse"));
    assert!(
        blocks * 512 < 1 << 20,
        "3 MB sparse file with 4 bytes of data copied out as {blocks} blocks"
    );
}

#[test]
fn tar_round_trip() {
    let (mut v, src) = setup();
    let want = listing(&src);
    let (s, m, d) = (
        src.display().to_string(),
        v.mnt.display().to_string(),
        v.dir.path().display().to_string(),
    );
    // pax format keeps nanosecond times and xattrs.
    let tar = "tar --format=posix --xattrs --xattrs-include='user.*' --sparse";
    sh(&format!(
        "mkdir '{m}/tar' && {tar} -C '{s}' -cf - . | {tar} -C '{m}/tar' -xpf -"
    ));
    same(&listing(&v.path("tar")), &want, "tar into the mount");
    v.remount();
    // An archive file written on the mount, read back from it.
    sh(&format!("{tar} -C '{m}/tar' -cf '{m}/archive.tar' ."));
    sh(&format!(
        "mkdir '{d}/tar-out' && {tar} -C '{d}/tar-out' -xpf '{m}/archive.tar'"
    ));
    let out = v.dir.path().join("tar-out");
    same(&listing(&out), &want, "tar out of the mount");
    sh(&format!(
        "diff -r --no-dereference -x fifo '{s}' '{d}/tar-out'"
    ));
    let listed = sh(&format!("tar -tf '{m}/archive.tar' | wc -l"));
    assert_eq!(
        listed.trim(),
        sh(&format!("cd '{s}' && find . | wc -l")).trim(),
        "archive entries"
    );
    let blocks = sparse_blocks(&out.join("a/sparse"));
    assert!(
        blocks * 512 < 1 << 20,
        "tar --sparse saw the holes: {blocks} blocks"
    );
}

#[test]
fn rsync_round_trip() {
    let (mut v, src) = setup();
    let want = listing(&src);
    let (s, m, d) = (
        src.display().to_string(),
        v.mnt.display().to_string(),
        v.dir.path().display().to_string(),
    );
    let nothing_to_do = |what: &str| {
        let changes = sh(&format!(
            "rsync -aHX --checksum --dry-run --itemize-changes '{s}/' '{m}/r/'"
        ));
        assert_eq!(changes.trim(), "", "{what}: rsync has work left");
    };
    sh(&format!("rsync -aHX '{s}/' '{m}/r/'"));
    same(&listing(&v.path("r")), &want, "rsync into the mount");
    nothing_to_do("right after the copy");
    v.remount();
    nothing_to_do("after remount");

    // A change in the source: rsync sends exactly that file (through a
    // temp file renamed over the old one) and is then done again.
    sh(&format!("printf 'changed\\n' >> '{s}/a/b/c/f7'"));
    let changes = sh(&format!("rsync -aHX --itemize-changes '{s}/' '{m}/r/'"));
    let names: Vec<&str> = changes.lines().map(|l| &l[12..]).collect();
    assert_eq!(names, ["a/b/c/f7"], "{changes}");
    nothing_to_do("after the update");
    assert_eq!(
        fs::read_to_string(v.path("r/a/b/c/f7")).unwrap(),
        "line 7\nchanged\n"
    );
    v.remount();
    nothing_to_do("after the update and a remount");

    // And back out.
    sh(&format!("rsync -aHX '{m}/r/' '{d}/rsync-out/'"));
    same(
        &listing(&v.dir.path().join("rsync-out")),
        &listing(&src),
        "rsync out of the mount",
    );
}

#[test]
fn grep_r_finds_markers() {
    let mut v = Volume::new();
    v.mount();
    let m = v.mnt.display().to_string();
    const MARK: &str = "MARKER-7f3a9c";
    sh(&format!(
        "set -e; mkdir -p '{m}/x/y' '{m}/z'
         printf 'one {MARK} here\\n' > '{m}/x/small'
         head -c 3000000 /dev/zero | tr '\\0' 'a' > '{m}/x/y/big'
         printf '{MARK}' | dd of='{m}/x/y/big' bs=1 seek=65531 conv=notrunc status=none
         truncate -s 10000000 '{m}/z/sparse'
         printf '\\n{MARK}\\n' | dd of='{m}/z/sparse' bs=1 seek=9000000 conv=notrunc status=none
         for i in $(seq 1 100); do echo \"nothing $i\" > '{m}/z/f'$i; done
         ln -s ../x/small '{m}/z/link-to-small'"
    ));
    let want = [
        format!("{m}/x/small"),
        format!("{m}/x/y/big"),
        format!("{m}/z/sparse"),
    ];
    for round in ["before remount", "after remount"] {
        let hits = sh(&format!("grep -rl -- '{MARK}' '{m}' | sort"));
        let hits: Vec<&str> = hits.lines().collect();
        assert_eq!(hits, want, "{round}");
        // -R follows the symlink too.
        let hits = sh(&format!("grep -Rl -- '{MARK}' '{m}' | wc -l"));
        assert_eq!(hits.trim(), "4", "{round}");
        let count = sh(&format!("grep -rc -- 'nothing' '{m}/z' | grep -c ':1$'"));
        assert_eq!(count.trim(), "100", "{round}");
        v.remount();
    }
}

#[test]
fn find_du_df_stat() {
    let (mut v, src) = setup();
    let (s, m) = (src.display().to_string(), v.mnt.display().to_string());
    sh(&format!("cp -a '{s}' '{m}/t'"));
    v.remount();
    let count = |root: &str| sh(&format!("cd '{root}' && find . | sort"));
    assert_eq!(count(&format!("{m}/t")), count(&s));
    let newer = |root: &str| {
        sh(&format!(
            "cd '{root}' && find . -type f -newermt '1999-12-31 23:59:59.9999999991' | sort"
        ))
    };
    assert_eq!(newer(&format!("{m}/t")), newer(&s), "find -newermt");
    assert_eq!(newer(&s).lines().count(), 54);
    let links = sh(&format!("find '{m}/t' -type l | wc -l"));
    assert_eq!(links.trim(), "3");
    // du: the apparent size counts the sparse file's length, the real one not.
    let apparent: u64 = sh(&format!("du -sb '{m}/t/a/sparse' | cut -f1"))
        .trim()
        .parse()
        .unwrap();
    assert_eq!(apparent, 3_000_000);
    let real_k: u64 = sh(&format!("du -sk '{m}/t/a/sparse' | cut -f1"))
        .trim()
        .parse()
        .unwrap();
    assert!(real_k < 1024, "du of the sparse file: {real_k} KiB");
    let df = sh(&format!("df -P '{m}' | tail -1"));
    assert!(df.trim_end().ends_with(&m), "{df}");
    let st = sh(&format!("stat -f -c '%l %S' '{m}'"));
    assert_eq!(st.split_whitespace().next(), Some("255"), "{st}");
}

#[test]
fn editor_style_saves() {
    let mut v = Volume::new();
    v.mount();
    let notes = v.path("notes.txt");
    fs::write(&notes, b"version 1\n").unwrap();
    let old_ino = fs::metadata(&notes).unwrap().ino();
    let mut reader = fs::File::open(&notes).unwrap();

    // An editor writes a temp file beside the original, fsyncs it and
    // renames it over the original.
    let tmp = v.path(".notes.txt.swp");
    {
        let f = fs::File::create(&tmp).unwrap();
        use std::io::Write;
        (&f).write_all(b"version 2\n").unwrap();
        f.sync_all().unwrap();
    }
    fs::rename(&tmp, &notes).unwrap();
    assert_eq!(fs::read(&notes).unwrap(), b"version 2\n");
    assert_ne!(fs::metadata(&notes).unwrap().ino(), old_ino);
    assert!(!tmp.exists());
    let mut s = String::new();
    reader.read_to_string(&mut s).unwrap();
    assert_eq!(s, "version 1\n", "an open reader keeps the old version");
    drop(reader);

    // Tools that save the same way.
    let n = notes.display();
    sh(&format!("sed -i 's/version 2/version 3/' '{n}'"));
    assert_eq!(fs::read(&notes).unwrap(), b"version 3\n");
    sh(&format!("perl -pi -e 's/3/4/' '{n}'"));
    assert_eq!(fs::read(&notes).unwrap(), b"version 4\n");
    let listed: Vec<String> = fs::read_dir(&v.mnt)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(listed, ["notes.txt"], "no temp files left behind");
    v.remount();
    assert_eq!(fs::read(&notes).unwrap(), b"version 4\n");

    // Without fsync, then a crash at once: the file is the old or the
    // new version, never empty or partial (rename waits for the data).
    let big_old = vec![b'o'; 300_000];
    let big_new = vec![b'n'; 300_000];
    fs::write(&notes, &big_old).unwrap();
    fs::File::open(&v.mnt).unwrap().sync_all().unwrap();
    fs::File::open(&notes).unwrap().sync_all().unwrap();
    fs::write(&tmp, &big_new).unwrap();
    fs::rename(&tmp, &notes).unwrap();
    v.kill();
    v.mount();
    let got = fs::read(&notes).unwrap();
    assert!(
        got == big_old || got == big_new,
        "after a crash: {} bytes, first {:?}",
        got.len(),
        got.first()
    );
}
