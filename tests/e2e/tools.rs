//! Everyday tools over a mount, compared against the same tree on the
//! host's own file system: `ls -lR`, `cp -a`, `tar`, `rsync`, `grep -r`,
//! `find`/`du`/`df`, and editor-style saves (temp file + rename).
//!
//! Needs coreutils, findutils, tar, rsync, attr (getfattr), diffutils.

use std::fs;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::harness::tree::{TREE_SMALL_FILES, listing, same, shell_paths, volume_with_tree};
use crate::harness::*;

fn sparse_blocks(p: &Path) -> u64 {
    fs::metadata(p).unwrap().blocks()
}

#[test]
fn ls_lr_matches_the_source() {
    let (mut v, src) = volume_with_tree(Backend::Local);
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
    let (mut v, src) = volume_with_tree(Backend::Local);
    let want = listing(&src);
    let (s, m, d) = shell_paths(&v, &src);
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
    let (mut v, src) = volume_with_tree(Backend::Local);
    let want = listing(&src);
    let (s, m, d) = shell_paths(&v, &src);
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
    let (mut v, src) = volume_with_tree(Backend::Local);
    let want = listing(&src);
    let (s, m, d) = shell_paths(&v, &src);
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
    let mut v = Volume::local();
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
    let (mut v, src) = volume_with_tree(Backend::Local);
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
    // The small files, `empty`, the unicode one, and `a/small` (2001)
    // with its hard link.
    assert_eq!(newer(&s).lines().count(), TREE_SMALL_FILES + 4);
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
    let mut v = Volume::local();
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
