//! A varied source tree, and the listing that a faithful copy of it must
//! reproduce: what the round-trip and tool tests compare.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::backend::Backend;
use super::util::sh;
use super::volume::Volume;

/// A mounted volume on `backend` and a [`make_tree`] source tree beside it
/// (outside the mount).
pub fn volume_with_tree(backend: Backend) -> (Volume, PathBuf) {
    let mut v = Volume::new(backend);
    v.mount();
    let src = v.dir.path().join("src");
    std::fs::create_dir(&src).unwrap();
    make_tree(&src);
    (v, src)
}

/// The source tree, the mountpoint and the scratch directory beside them,
/// as strings for shell commands.
pub fn shell_paths(v: &Volume, src: &Path) -> (String, String, String) {
    (
        src.display().to_string(),
        v.mnt.display().to_string(),
        v.dir.path().display().to_string(),
    )
}

/// Regular files in `a/b/c` (`f1` … `fN`).
pub const TREE_SMALL_FILES: usize = 200;

/// A varied tree: empty, small, 1 MiB and sparse files, names with spaces
/// and non-ASCII, relative/absolute/dangling symlinks, hard links within
/// and across directories, a FIFO, odd modes, user xattrs, and
/// nanosecond mtimes on files, links and directories (set last).
/// `a/small` (and its hard link `a/b/c/hard-small`) hold "small file".
pub fn make_tree(root: &Path) {
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
         for i in $(seq 1 {TREE_SMALL_FILES}); do echo \"line $i\" > a/b/c/f$i; done
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
pub fn listing(root: &Path) -> String {
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
pub fn same(got: &str, want: &str, what: &str) {
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
