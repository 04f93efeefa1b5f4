//! rename(2) of files and directories (over files, into subtrees, onto
//! itself, type mismatches) and renameat2's NOREPLACE and EXCHANGE.

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::{FileExt, MetadataExt};

use super::*;
use crate::harness::*;

fn renameat2(from: &Path, to: &Path, flags: libc::c_uint) -> Result<(), i32> {
    let (a, b) = (cpath(from), cpath(to));
    let r = unsafe {
        libc::syscall(
            libc::SYS_renameat2,
            libc::AT_FDCWD,
            a.as_ptr(),
            libc::AT_FDCWD,
            b.as_ptr(),
            flags,
        )
    };
    if r < 0 { Err(errno()) } else { Ok(()) }
}

#[test]
fn rename_files() {
    let mut v = Volume::local();
    v.mount();
    let (a, b) = (v.path("a"), v.path("b"));
    fs::write(&a, b"new contents").unwrap();
    fs::write(&b, b"old contents").unwrap();
    let a_ino = fs::metadata(&a).unwrap().ino();
    let old_target = File::open(&b).unwrap();

    fs::rename(&a, &b).unwrap();
    assert_eq!(err(fs::metadata(&a)), libc::ENOENT);
    assert_eq!(fs::read(&b).unwrap(), b"new contents");
    assert_eq!(fs::metadata(&b).unwrap().ino(), a_ino, "the inode moved");
    let mut s = String::new();
    (&old_target).read_to_string(&mut s).unwrap();
    assert_eq!(s, "old contents", "the replaced file lives on while open");
    drop(old_target);

    // A file renamed while open keeps its handle; writes land under the
    // new name.
    let open = OpenOptions::new().write(true).open(&b).unwrap();
    fs::rename(&b, v.path("b-renamed")).unwrap();
    open.write_all_at(b"NEW", 0).unwrap();
    drop(open);
    assert_eq!(fs::read(v.path("b-renamed")).unwrap(), b"NEW contents");
    fs::rename(v.path("b-renamed"), &b).unwrap();
    // Renaming onto itself, or onto a hard link of itself, is a no-op.
    fs::rename(&b, &b).unwrap();
    fs::hard_link(&b, v.path("b2")).unwrap();
    fs::rename(&b, v.path("b2")).unwrap();
    assert!(b.exists() && v.path("b2").exists());

    // Into a directory, and type mismatches.
    fs::create_dir(v.path("dir")).unwrap();
    fs::rename(&b, v.path("dir/moved")).unwrap();
    assert_eq!(fs::read(v.path("dir/moved")).unwrap(), b"NEW contents");
    fs::create_dir(v.path("dir2")).unwrap();
    assert_eq!(
        err(fs::rename(v.path("dir/moved"), v.path("dir2"))),
        libc::EISDIR
    );
    assert_eq!(
        err(fs::rename(v.path("dir2"), v.path("dir/moved"))),
        libc::ENOTDIR
    );
    assert_eq!(
        err(fs::rename(v.path("missing"), v.path("x"))),
        libc::ENOENT
    );
    assert_eq!(
        err(fs::rename(v.path("b2"), v.path("nodir/x"))),
        libc::ENOENT
    );

    v.remount();
    assert_eq!(
        names(&v.mnt),
        BTreeSet::from(["b2", "dir", "dir2"].map(String::from))
    );
    assert_eq!(fs::read(v.path("dir/moved")).unwrap(), b"NEW contents");
    assert_eq!(fs::metadata(v.path("dir/moved")).unwrap().nlink(), 2);
}

#[test]
fn rename_directories() {
    let mut v = Volume::local();
    v.mount();
    fs::create_dir_all(v.path("src/inner")).unwrap();
    fs::write(v.path("src/inner/f"), b"payload").unwrap();
    fs::create_dir(v.path("empty")).unwrap();
    fs::create_dir(v.path("full")).unwrap();
    fs::write(v.path("full/x"), b"").unwrap();

    // Over an empty directory: replaced.
    fs::rename(v.path("src"), v.path("empty")).unwrap();
    assert_eq!(fs::read(v.path("empty/inner/f")).unwrap(), b"payload");
    assert!(!v.path("src").exists());
    // Over a non-empty directory: ENOTEMPTY (or EEXIST, which POSIX also allows).
    let e = err(fs::rename(v.path("empty"), v.path("full")));
    assert!(
        e == libc::ENOTEMPTY || e == libc::EEXIST,
        "dir over non-empty dir: {e}"
    );
    assert!(v.path("full/x").exists() && v.path("empty/inner/f").exists());
    // Into its own subtree: EINVAL.
    assert_eq!(
        err(fs::rename(v.path("empty"), v.path("empty/inner/loop"))),
        libc::EINVAL
    );
    assert_eq!(
        err(fs::rename(v.path("empty"), v.path("empty/loop"))),
        libc::EINVAL
    );

    // Moving a directory to another parent re-points its "..".
    fs::rename(v.path("empty/inner"), v.path("full/inner")).unwrap();
    let full_ino = fs::metadata(v.path("full")).unwrap().ino();
    assert_eq!(
        fs::metadata(v.path("full/inner/..")).unwrap().ino(),
        full_ino
    );

    v.remount();
    assert_eq!(fs::read(v.path("full/inner/f")).unwrap(), b"payload");
    assert_eq!(
        fs::metadata(v.path("full/inner/..")).unwrap().ino(),
        full_ino
    );
    assert_eq!(names(&v.path("empty")), BTreeSet::new());
    // The moved directory can be removed cleanly afterwards.
    fs::remove_file(v.path("full/inner/f")).unwrap();
    fs::remove_dir(v.path("full/inner")).unwrap();
    assert_eq!(names(&v.path("full")), BTreeSet::from(["x".to_string()]));
}

#[test]
fn renameat2_noreplace_and_exchange() {
    let mut v = Volume::local();
    v.mount();
    fs::write(v.path("a"), b"AAA").unwrap();
    fs::write(v.path("b"), b"BBBBBB").unwrap();
    fs::create_dir(v.path("d")).unwrap();
    fs::write(v.path("d/inside"), b"in d").unwrap();

    assert_eq!(
        renameat2(&v.path("a"), &v.path("b"), libc::RENAME_NOREPLACE),
        Err(libc::EEXIST)
    );
    assert_eq!(fs::read(v.path("a")).unwrap(), b"AAA");
    assert_eq!(fs::read(v.path("b")).unwrap(), b"BBBBBB");
    renameat2(&v.path("a"), &v.path("c"), libc::RENAME_NOREPLACE).unwrap();
    assert!(!v.path("a").exists());

    let (ib, ic) = (
        fs::metadata(v.path("b")).unwrap().ino(),
        fs::metadata(v.path("c")).unwrap().ino(),
    );
    renameat2(&v.path("b"), &v.path("c"), libc::RENAME_EXCHANGE).unwrap();
    assert_eq!(fs::read(v.path("b")).unwrap(), b"AAA");
    assert_eq!(fs::read(v.path("c")).unwrap(), b"BBBBBB");
    assert_eq!(fs::metadata(v.path("b")).unwrap().ino(), ic);
    assert_eq!(fs::metadata(v.path("c")).unwrap().ino(), ib);

    // A file and a directory in different parents swap places.
    renameat2(&v.path("b"), &v.path("d"), libc::RENAME_EXCHANGE).unwrap();
    assert_eq!(fs::read(v.path("d")).unwrap(), b"AAA");
    assert_eq!(fs::read(v.path("b/inside")).unwrap(), b"in d");
    renameat2(&v.path("c"), &v.path("b/inside"), libc::RENAME_EXCHANGE).unwrap();
    assert_eq!(fs::read(v.path("c")).unwrap(), b"in d");
    assert_eq!(fs::read(v.path("b/inside")).unwrap(), b"BBBBBB");
    // Two directories in different parents: each ".." follows.
    fs::create_dir_all(v.path("p/sub")).unwrap();
    renameat2(&v.path("b"), &v.path("p/sub"), libc::RENAME_EXCHANGE).unwrap();
    let ino = |rel: &str| fs::metadata(v.path(rel)).unwrap().ino();
    assert_eq!(ino("p/sub/.."), ino("p"));
    assert_eq!(ino("b/.."), ino("."));
    assert_eq!(fs::read(v.path("p/sub/inside")).unwrap(), b"BBBBBB");

    assert_eq!(
        renameat2(&v.path("c"), &v.path("w"), libc::RENAME_WHITEOUT),
        Err(libc::EINVAL),
        "RENAME_WHITEOUT is not supported"
    );
    assert!(v.path("c").exists() && !v.path("w").exists());
    assert_eq!(
        renameat2(&v.path("c"), &v.path("nothing"), libc::RENAME_EXCHANGE),
        Err(libc::ENOENT)
    );
    assert_eq!(
        renameat2(
            &v.path("c"),
            &v.path("d"),
            libc::RENAME_EXCHANGE | libc::RENAME_NOREPLACE
        ),
        Err(libc::EINVAL)
    );

    v.remount();
    assert_eq!(fs::read(v.path("c")).unwrap(), b"in d");
    assert_eq!(fs::read(v.path("d")).unwrap(), b"AAA");
    assert_eq!(fs::read(v.path("p/sub/inside")).unwrap(), b"BBBBBB");
    assert_eq!(
        fs::metadata(v.path("p/sub/..")).unwrap().ino(),
        fs::metadata(v.path("p")).unwrap().ino()
    );
    assert!(v.path("b").is_dir());
    assert_eq!(names(&v.path("b")), BTreeSet::new());
}
