//! Permission checks as a non-root user on an `-o allow_other` mount
//! (`default_permissions` is always on: the kernel checks access, sealedfs
//! applies the ownership rules), and the privacy of a mount without it.
//!
//! The other user is the harness's test user (see `harness::users`);
//! `nobody` owns "someone else's" files. Calls whose errno
//! matters run in a forked child that drops to the user with raw
//! setgroups/setresgid/setresuid syscalls; shell commands run through
//! `setpriv --reuid --regid --clear-groups`.

use std::ffi::CString;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use crate::harness::*;

/// A uid and gid of nobody: the owner of files that belong to someone else.
const NOBODY: u32 = 65534;
/// A group the test user is not a member of.
const OTHER_GID: u32 = 4242;

/// A volume mounted with `-o allow_other`, its directories traversable by
/// everyone (tempdirs are 0700).
fn shared_volume() -> Volume {
    let mut v = Volume::local();
    fs::set_permissions(v.dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    v.mount_with(&["-o", "allow_other"]);
    v
}

/// Remounts, again with `-o allow_other`.
fn remount_shared(v: &mut Volume) {
    v.unmount();
    v.mount_with(&["-o", "allow_other"]);
}

fn open_close(p: &CString, flags: i32) -> i32 {
    let fd = unsafe { libc::open(p.as_ptr(), flags | libc::O_CLOEXEC, 0o666) };
    if fd < 0 {
        return errno();
    }
    unsafe { libc::close(fd) };
    0
}

fn stat_of(p: &CString) -> i32 {
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    code(unsafe { libc::lstat(p.as_ptr(), &mut st) } as libc::c_long)
}

fn mode(p: &Path) -> u32 {
    fs::symlink_metadata(p).unwrap().mode() & 0o7777
}

fn owner(p: &Path) -> (u32, u32) {
    let m = fs::symlink_metadata(p).unwrap();
    (m.uid(), m.gid())
}

fn chmod(p: &Path, m: u32) {
    fs::set_permissions(p, fs::Permissions::from_mode(m)).unwrap();
}

#[test]
fn root_files_obey_their_modes() {
    let (uid, gid) = user();
    let v = shared_volume();
    let secret = v.path("secret");
    let public = v.path("public");
    fs::write(&secret, b"root only").unwrap();
    chmod(&secret, 0o600);
    fs::write(&public, b"world readable").unwrap();
    chmod(&public, 0o644);
    fs::create_dir(v.path("private")).unwrap();
    fs::write(v.path("private/inside"), b"x").unwrap();
    chmod(&v.path("private"), 0o700);
    chmod(&v.mnt, 0o755);

    let (s, p, priv_dir, inside, new) = (
        cpath(&secret),
        cpath(&public),
        cpath(&v.path("private")),
        cpath(&v.path("private/inside")),
        cpath(&v.path("new")),
    );
    assert_eq!(
        as_user(uid, gid, || open_close(&s, libc::O_RDONLY)),
        libc::EACCES,
        "read a 0600 root file"
    );
    assert_eq!(as_user(uid, gid, || open_close(&p, libc::O_RDONLY)), 0);
    assert_eq!(
        as_user(uid, gid, || open_close(&p, libc::O_WRONLY)),
        libc::EACCES,
        "write a 0644 root file"
    );
    assert_eq!(
        as_user(uid, gid, || open_close(&p, libc::O_RDWR | libc::O_TRUNC)),
        libc::EACCES
    );
    assert_eq!(
        as_user(uid, gid, || code(
            unsafe { libc::truncate(p.as_ptr(), 0) } as libc::c_long
        )),
        libc::EACCES
    );
    assert_eq!(
        as_user(uid, gid, || code(
            unsafe { libc::access(p.as_ptr(), libc::W_OK) } as libc::c_long
        )),
        libc::EACCES
    );
    assert_eq!(
        as_user(uid, gid, || code(
            unsafe { libc::access(p.as_ptr(), libc::R_OK) } as libc::c_long
        )),
        0
    );
    assert_eq!(
        as_user(uid, gid, || code(
            unsafe { libc::unlink(p.as_ptr()) } as libc::c_long
        )),
        libc::EACCES,
        "unlink in a 0755 root dir"
    );
    assert_eq!(
        as_user(uid, gid, || open_close(
            &new,
            libc::O_CREAT | libc::O_WRONLY
        )),
        libc::EACCES,
        "create in a 0755 root dir"
    );
    assert_eq!(
        as_user(uid, gid, || stat_of(&inside)),
        libc::EACCES,
        "stat inside a 0700 dir"
    );
    assert_eq!(
        as_user(uid, gid, || open_close(
            &priv_dir,
            libc::O_RDONLY | libc::O_DIRECTORY
        )),
        libc::EACCES,
        "list a 0700 dir"
    );
    let (name, val) = (cpath(Path::new("user.x")), b"v");
    assert_eq!(
        as_user(uid, gid, || code(unsafe {
            libc::setxattr(p.as_ptr(), name.as_ptr(), val.as_ptr().cast(), 1, 0)
        } as libc::c_long)),
        libc::EACCES,
        "user xattr on a file the user cannot write"
    );

    // The same through tools.
    let (ok, out) = user_sh(&format!("cat '{}'", public.display()));
    assert!(ok, "{out}");
    assert_eq!(out, "world readable");
    let (ok, out) = user_sh(&format!("cat '{}'", secret.display()));
    assert!(!ok && out.contains("Permission denied"), "{out}");
    let (ok, out) = user_sh(&format!("echo x >> '{}'", public.display()));
    assert!(!ok && out.contains("Permission denied"), "{out}");
    assert_eq!(fs::read(&public).unwrap(), b"world readable");
    assert_eq!(fs::read(&secret).unwrap(), b"root only");
    assert!(!v.path("new").exists());
}

#[test]
fn user_files_get_the_users_ids() {
    let (uid, gid) = user();
    let mut v = shared_volume();
    let d = v.path("shared");
    fs::create_dir(&d).unwrap();
    chmod(&d, 0o777);
    let ds = d.display();
    let (ok, out) = user_sh(&format!(
        "umask 022 && echo mine > '{ds}/file' && mkdir '{ds}/dir' && ln -s file '{ds}/link' \
         && mkfifo '{ds}/fifo' && chmod 0600 '{ds}/file' && cat '{ds}/file' \
         && touch -d '2001-02-03 04:05:06' '{ds}/file'"
    ));
    assert!(ok, "{out}");
    assert_eq!(out, "mine\n");
    // A hard link by the user to its own file, and a rename.
    let (ok, out) = user_sh(&format!(
        "ln '{ds}/file' '{ds}/dir/hard' && mv '{ds}/fifo' '{ds}/dir/fifo'"
    ));
    assert!(ok, "{out}");
    let (f, name) = (cpath(&d.join("file")), cpath(Path::new("user.note")));
    assert_eq!(
        as_user(uid, gid, || code(unsafe {
            libc::setxattr(f.as_ptr(), name.as_ptr(), b"by user".as_ptr().cast(), 7, 0)
        } as libc::c_long)),
        0,
        "owner sets a user xattr"
    );

    for round in ["before remount", "after remount"] {
        for rel in ["file", "dir", "link", "dir/fifo", "dir/hard"] {
            assert_eq!(owner(&d.join(rel)), (uid, gid), "{round}: {rel}");
        }
        assert_eq!(mode(&d.join("file")), 0o600, "{round}");
        assert_eq!(mode(&d.join("dir")), 0o755, "{round}");
        assert_eq!(fs::metadata(d.join("file")).unwrap().nlink(), 2);
        assert_eq!(
            fs::metadata(d.join("file")).unwrap().mtime(),
            sh("date -d '2001-02-03 04:05:06' +%s")
                .trim()
                .parse::<i64>()
                .unwrap()
        );
        // root reads past the mode.
        assert_eq!(fs::read(d.join("file")).unwrap(), b"mine\n");
        remount_shared(&mut v);
    }
    let (ok, out) = user_sh(&format!(
        "cat '{ds}/dir/hard' && rm -r '{ds}/dir' '{ds}/file'"
    ));
    assert!(ok, "{out}");
    assert_eq!(out, "mine\n");
}

#[test]
fn sticky_directory_protects_other_users_files() {
    let (uid, gid) = user();
    let mut v = shared_volume();
    let d = v.path("tmp");
    fs::create_dir(&d).unwrap();
    chmod(&d, 0o1777);
    fs::write(d.join("theirs"), b"nobody's").unwrap();
    std::os::unix::fs::chown(d.join("theirs"), Some(NOBODY), Some(NOBODY)).unwrap();
    chmod(&d.join("theirs"), 0o666);
    fs::create_dir(d.join("theirdir")).unwrap();
    std::os::unix::fs::chown(d.join("theirdir"), Some(NOBODY), Some(NOBODY)).unwrap();
    let (theirs, theirdir, mine, elsewhere) = (
        cpath(&d.join("theirs")),
        cpath(&d.join("theirdir")),
        cpath(&d.join("mine")),
        cpath(&d.join("elsewhere")),
    );
    assert_eq!(
        as_user(uid, gid, || open_close(
            &mine,
            libc::O_CREAT | libc::O_WRONLY
        )),
        0
    );
    assert_eq!(
        as_user(uid, gid, || code(
            unsafe { libc::unlink(theirs.as_ptr()) } as libc::c_long
        )),
        libc::EPERM,
        "unlink another user's file in a sticky dir"
    );
    assert_eq!(
        as_user(uid, gid, || code(
            unsafe { libc::rename(theirs.as_ptr(), elsewhere.as_ptr()) } as libc::c_long
        )),
        libc::EPERM,
        "rename another user's file away"
    );
    assert_eq!(
        as_user(uid, gid, || code(
            unsafe { libc::rename(mine.as_ptr(), theirs.as_ptr()) } as libc::c_long
        )),
        libc::EPERM,
        "rename over another user's file"
    );
    assert_eq!(
        as_user(uid, gid, || code(
            unsafe { libc::rmdir(theirdir.as_ptr()) } as libc::c_long
        )),
        libc::EPERM,
        "rmdir another user's dir"
    );
    // Writing it is still allowed by its mode.
    assert_eq!(as_user(uid, gid, || open_close(&theirs, libc::O_WRONLY)), 0);
    assert_eq!(
        as_user(uid, gid, || code(
            unsafe { libc::rename(mine.as_ptr(), elsewhere.as_ptr()) } as libc::c_long
        )),
        0,
        "rename one's own file"
    );
    assert_eq!(
        as_user(uid, gid, || code(
            unsafe { libc::unlink(elsewhere.as_ptr()) } as libc::c_long
        )),
        0,
        "unlink one's own file"
    );
    assert_eq!(fs::read(d.join("theirs")).unwrap(), b"nobody's");
    remount_shared(&mut v);
    assert_eq!(mode(&d), 0o1777);
    assert_eq!(
        as_user(uid, gid, || code(
            unsafe { libc::unlink(theirs.as_ptr()) } as libc::c_long
        )),
        libc::EPERM,
        "after remount"
    );
    // Root may.
    fs::remove_file(d.join("theirs")).unwrap();
    fs::remove_dir(d.join("theirdir")).unwrap();
}

#[test]
fn setgid_directory_passes_its_group_on() {
    let (uid, gid) = user();
    let mut v = shared_volume();
    let d = v.path("project");
    fs::create_dir(&d).unwrap();
    std::os::unix::fs::chown(&d, None, Some(OTHER_GID)).unwrap();
    chmod(&d, 0o2777);
    assert_eq!(mode(&d), 0o2777);
    let ds = d.display();
    let (ok, out) = user_sh(&format!(
        "umask 022 && echo x > '{ds}/file' && mkdir '{ds}/sub' && echo y > '{ds}/sub/deeper' \
         && mkdir '{ds}/sub/subsub'"
    ));
    assert!(ok, "{out}");
    fs::write(d.join("by-root"), b"").unwrap();
    for round in ["before remount", "after remount"] {
        assert_eq!(owner(&d.join("file")), (uid, OTHER_GID), "{round}");
        assert_eq!(mode(&d.join("file")), 0o644, "{round}: no setgid on files");
        assert_eq!(owner(&d.join("sub")), (uid, OTHER_GID), "{round}");
        assert_eq!(
            mode(&d.join("sub")),
            0o2755,
            "{round}: subdirs inherit setgid"
        );
        assert_eq!(owner(&d.join("sub/deeper")), (uid, OTHER_GID), "{round}");
        assert_eq!(mode(&d.join("sub/subsub")), 0o2755, "{round}");
        assert_eq!(owner(&d.join("by-root")), (0, OTHER_GID), "{round}");
        remount_shared(&mut v);
    }
    // Outside the setgid dir the user's own group applies.
    fs::create_dir(v.path("plain")).unwrap();
    chmod(&v.path("plain"), 0o777);
    let (ok, out) = user_sh(&format!("touch '{}'", v.path("plain/f").display()));
    assert!(ok, "{out}");
    assert_eq!(owner(&v.path("plain/f")), (uid, gid));
}

#[test]
fn ownership_changes_need_ownership() {
    let (uid, gid) = user();
    let mut v = shared_volume();
    let own = v.path("own");
    let rootfile = v.path("rootfile");
    let readonly = v.path("readonly");
    fs::write(&own, b"users").unwrap();
    std::os::unix::fs::chown(&own, Some(uid), Some(gid)).unwrap();
    chmod(&own, 0o644);
    fs::write(&rootfile, b"roots").unwrap();
    chmod(&rootfile, 0o666);
    fs::write(&readonly, b"roots").unwrap();
    chmod(&readonly, 0o644);
    let (o, r, ro) = (cpath(&own), cpath(&rootfile), cpath(&readonly));
    let chown = |p: &CString, u: u32, g: u32| code(unsafe { libc::chown(p.as_ptr(), u, g) } as _);
    let chmod_as = |p: &CString, m: u32| code(unsafe { libc::chmod(p.as_ptr(), m) } as _);
    let keep = u32::MAX; // -1: leave unchanged

    assert_eq!(
        as_user(uid, gid, || chown(&o, 0, keep)),
        libc::EPERM,
        "give a file to root"
    );
    assert_eq!(
        as_user(uid, gid, || chown(&o, NOBODY, keep)),
        libc::EPERM,
        "give a file away"
    );
    assert_eq!(
        as_user(uid, gid, || chown(&o, keep, OTHER_GID)),
        libc::EPERM,
        "chgrp to a group the user is not in"
    );
    assert_eq!(
        as_user(uid, gid, || chown(&r, uid, keep)),
        libc::EPERM,
        "take root's file"
    );
    assert_eq!(as_user(uid, gid, || chown(&o, uid, gid)), 0, "no-op chown");
    assert_eq!(
        as_user(uid, gid, || chmod_as(&r, 0o777)),
        libc::EPERM,
        "chmod root's file"
    );
    assert_eq!(
        as_user(uid, gid, || chmod_as(&o, 0o600)),
        0,
        "chmod own file"
    );

    // Explicit times need ownership; "now" needs only write access.
    let times = [
        libc::timespec {
            tv_sec: 1000,
            tv_nsec: 0,
        },
        libc::timespec {
            tv_sec: 1000,
            tv_nsec: 0,
        },
    ];
    let utimens = |p: &CString, t: *const libc::timespec| {
        code(unsafe { libc::utimensat(libc::AT_FDCWD, p.as_ptr(), t, 0) } as _)
    };
    assert_eq!(
        as_user(uid, gid, || utimens(&r, times.as_ptr())),
        libc::EPERM,
        "set explicit times on root's file"
    );
    assert_eq!(
        as_user(uid, gid, || utimens(&r, std::ptr::null())),
        0,
        "touch a writable file"
    );
    assert_eq!(
        as_user(uid, gid, || utimens(&ro, std::ptr::null())),
        libc::EACCES,
        "touch a read-only file"
    );
    assert_eq!(as_user(uid, gid, || utimens(&o, times.as_ptr())), 0);

    // A group the owner is not in: chmod g+s is silently dropped.
    std::os::unix::fs::chown(&own, None, Some(OTHER_GID)).unwrap();
    assert_eq!(as_user(uid, gid, || chmod_as(&o, 0o2755)), 0);
    assert_eq!(mode(&own), 0o755, "S_ISGID dropped for a non-member");

    remount_shared(&mut v);
    assert_eq!(owner(&own), (uid, OTHER_GID));
    assert_eq!(mode(&own), 0o755);
    assert_eq!(fs::metadata(&own).unwrap().mtime(), 1000);
    assert_eq!(owner(&rootfile), (0, 0));
    assert_eq!(mode(&rootfile), 0o666);
    assert_ne!(fs::metadata(&rootfile).unwrap().mtime(), 1000);
}

#[test]
fn write_by_another_user_clears_setuid_and_setgid() {
    let (uid, gid) = user();
    let mut v = shared_volume();
    let f = v.path("suid");
    fs::write(&f, b"#!/bin/sh\n").unwrap();
    chmod(&f, 0o6777);
    let t = v.path("suid-trunc");
    fs::write(&t, b"#!/bin/sh\n").unwrap();
    chmod(&t, 0o4777);
    let (fc, tc) = (cpath(&f), cpath(&t));
    assert_eq!(
        as_user(uid, gid, || {
            let fd = unsafe { libc::open(fc.as_ptr(), libc::O_WRONLY | libc::O_APPEND) };
            if fd < 0 {
                return errno();
            }
            let r = code(unsafe { libc::write(fd, b"echo\n".as_ptr().cast(), 5) } as _);
            unsafe { libc::close(fd) };
            r
        }),
        0
    );
    assert_eq!(
        as_user(uid, gid, || code(
            unsafe { libc::truncate(tc.as_ptr(), 2) } as _
        )),
        0
    );
    assert_eq!(fs::read(&f).unwrap(), b"#!/bin/sh\necho\n");
    assert_eq!(mode(&f), 0o777, "write clears S_ISUID and S_ISGID");
    assert_eq!(mode(&t), 0o777, "truncate clears S_ISUID");
    remount_shared(&mut v);
    assert_eq!(mode(&f), 0o777);
    assert_eq!(mode(&t), 0o777);
}

#[test]
fn mount_without_allow_other_is_private() {
    let (uid, gid) = user();
    let mut v = Volume::local();
    fs::set_permissions(v.dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    v.mount();
    fs::write(v.path("f"), b"x").unwrap();
    chmod(&v.path("f"), 0o644);
    chmod(&v.mnt, 0o777);
    let (m, f) = (cpath(&v.mnt), cpath(&v.path("f")));
    assert_eq!(as_user(uid, gid, || stat_of(&m)), libc::EACCES, "stat");
    assert_eq!(as_user(uid, gid, || stat_of(&f)), libc::EACCES, "stat file");
    assert_eq!(
        as_user(uid, gid, || open_close(&f, libc::O_RDONLY)),
        libc::EACCES
    );
    let (ok, out) = user_sh(&format!("ls '{}'", v.mnt.display()));
    assert!(!ok && out.contains("Permission denied"), "{out}");
    // Root still sees it; with allow_other the user does too.
    assert_eq!(fs::read(v.path("f")).unwrap(), b"x");
    v.unmount();
    v.mount_with(&["-o", "allow_other"]);
    assert_eq!(as_user(uid, gid, || stat_of(&f)), 0);
    assert_eq!(as_user(uid, gid, || open_close(&f, libc::O_RDONLY)), 0);
}
