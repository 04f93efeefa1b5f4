//! Extended attributes in the user, trusted and security namespaces:
//! create/replace flags, binary and empty values, ERANGE, unsupported
//! namespaces, removal, and persistence across remounts.

use std::collections::BTreeSet;
use std::fs;

use super::attrs::times;
use super::*;
use crate::harness::*;

fn getxattr(p: &Path, name: &str) -> Result<Vec<u8>, i32> {
    let (c, n) = (cpath(p), cstr(name));
    let size = unsafe { libc::getxattr(c.as_ptr(), n.as_ptr(), std::ptr::null_mut(), 0) };
    if size < 0 {
        return Err(errno());
    }
    let mut buf = vec![0u8; size as usize];
    let got = unsafe { libc::getxattr(c.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if got < 0 {
        return Err(errno());
    }
    buf.truncate(got as usize);
    Ok(buf)
}

pub(super) fn setxattr(p: &Path, name: &str, value: &[u8], flags: i32) -> Result<(), i32> {
    let (c, n) = (cpath(p), cstr(name));
    let r = unsafe {
        libc::setxattr(
            c.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            flags,
        )
    };
    if r < 0 { Err(errno()) } else { Ok(()) }
}

pub(super) fn removexattr(p: &Path, name: &str) -> Result<(), i32> {
    let (c, n) = (cpath(p), cstr(name));
    let r = unsafe { libc::removexattr(c.as_ptr(), n.as_ptr()) };
    if r < 0 { Err(errno()) } else { Ok(()) }
}

fn listxattr(p: &Path) -> BTreeSet<String> {
    let c = cpath(p);
    let size = unsafe { libc::listxattr(c.as_ptr(), std::ptr::null_mut(), 0) };
    assert!(size >= 0, "listxattr size: {}", errno());
    let mut buf = vec![0u8; size as usize];
    let got = unsafe { libc::listxattr(c.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    assert!(got >= 0, "listxattr: {}", errno());
    buf.truncate(got as usize);
    buf.split(|&b| b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| String::from_utf8(s.to_vec()).unwrap())
        .collect()
}

per_backend!(xattrs_user_trusted_security: local, s3);
fn xattrs_user_trusted_security(backend: Backend) {
    let mut v = Volume::new(backend);
    v.mount();
    let f = v.path("f");
    fs::write(&f, b"data").unwrap();
    fs::create_dir(v.path("d")).unwrap();
    let d = v.path("d");

    assert_eq!(getxattr(&f, "user.missing"), Err(libc::ENODATA));
    assert_eq!(removexattr(&f, "user.missing"), Err(libc::ENODATA));
    assert_eq!(
        setxattr(&f, "user.a", b"x", libc::XATTR_REPLACE),
        Err(libc::ENODATA)
    );
    setxattr(&f, "user.a", b"first", libc::XATTR_CREATE).unwrap();
    assert_eq!(
        setxattr(&f, "user.a", b"again", libc::XATTR_CREATE),
        Err(libc::EEXIST)
    );
    setxattr(&f, "user.a", b"second", libc::XATTR_REPLACE).unwrap();
    assert_eq!(getxattr(&f, "user.a").unwrap(), b"second");
    let binary: Vec<u8> = (0..=255u8).cycle().take(3000).collect();
    setxattr(&f, "user.binary", &binary, 0).unwrap();
    setxattr(&f, "user.empty", b"", 0).unwrap();
    setxattr(&f, "trusted.t", b"root only", 0).unwrap();
    setxattr(&f, "security.s", b"label", 0).unwrap();
    setxattr(&d, "user.on-dir", b"dir value", 0).unwrap();
    // Namespaces sealedfs does not keep.
    assert_eq!(setxattr(&f, "system.foo", b"x", 0), Err(libc::EOPNOTSUPP));
    assert_eq!(setxattr(&f, "other.foo", b"x", 0), Err(libc::EOPNOTSUPP));
    assert_eq!(getxattr(&f, "other.foo"), Err(libc::EOPNOTSUPP));

    // A short buffer: ERANGE.
    let (c, n) = (cpath(&f), cstr("user.a"));
    let mut small = [0u8; 3];
    let r = unsafe {
        libc::getxattr(
            c.as_ptr(),
            n.as_ptr(),
            small.as_mut_ptr().cast(),
            small.len(),
        )
    };
    assert_eq!(r, -1);
    assert_eq!(errno(), libc::ERANGE);
    let r = unsafe { libc::listxattr(c.as_ptr(), small.as_mut_ptr().cast(), small.len()) };
    assert_eq!(r, -1);
    assert_eq!(errno(), libc::ERANGE);

    let want: BTreeSet<String> = [
        "user.a",
        "user.binary",
        "user.empty",
        "trusted.t",
        "security.s",
    ]
    .map(String::from)
    .into();
    for round in ["before remount", "after remount"] {
        assert_eq!(listxattr(&f), want, "{round}");
        assert_eq!(getxattr(&f, "user.a").unwrap(), b"second", "{round}");
        assert!(getxattr(&f, "user.binary").unwrap() == binary, "{round}");
        assert_eq!(getxattr(&f, "user.empty").unwrap(), b"", "{round}");
        assert_eq!(getxattr(&f, "trusted.t").unwrap(), b"root only");
        assert_eq!(getxattr(&f, "security.s").unwrap(), b"label");
        assert_eq!(getxattr(&d, "user.on-dir").unwrap(), b"dir value");
        v.remount();
    }

    let c0 = times(&f)[2];
    removexattr(&f, "user.a").unwrap();
    assert!(times(&f)[2] >= c0, "removexattr sets ctime");
    assert_eq!(getxattr(&f, "user.a"), Err(libc::ENODATA));
    removexattr(&f, "trusted.t").unwrap();
    removexattr(&f, "security.s").unwrap();
    assert_eq!(
        listxattr(&f),
        BTreeSet::from(["user.binary", "user.empty"].map(String::from))
    );
    v.remount();
    assert_eq!(
        listxattr(&f),
        BTreeSet::from(["user.binary", "user.empty"].map(String::from))
    );
    assert_eq!(getxattr(&f, "security.s"), Err(libc::ENODATA));
    // Unlinking the file takes its xattrs with it; a new file has none.
    fs::remove_file(&f).unwrap();
    fs::write(&f, b"").unwrap();
    assert_eq!(listxattr(&f), BTreeSet::new());
}
