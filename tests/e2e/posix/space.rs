//! Space and holes: fallocate's modes, SEEK_DATA/SEEK_HOLE,
//! copy_file_range, and statfs with the name length limit.

use std::fs::{self, File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;

use super::*;
use crate::harness::*;

fn fallocate(f: &File, mode: libc::c_int, off: u64, len: u64) -> Result<(), i32> {
    let r = unsafe { libc::fallocate(f.as_raw_fd(), mode, off as i64, len as i64) };
    if r < 0 { Err(errno()) } else { Ok(()) }
}

#[test]
fn fallocate_modes() {
    let mut v = Volume::local();
    v.mount();
    let f = create_rw(v.path("alloc"));
    // Plain: extends the size, reads zeros.
    fallocate(&f, 0, 0, 1 << 20).unwrap();
    assert_eq!(f.metadata().unwrap().len(), 1 << 20);
    // KEEP_SIZE beyond the end: size unchanged.
    fallocate(&f, libc::FALLOC_FL_KEEP_SIZE, 1 << 20, 1 << 20).unwrap();
    assert_eq!(f.metadata().unwrap().len(), 1 << 20);
    // Inside the file, plain mode does not change data.
    f.write_all_at(b"keep me", 5000).unwrap();
    fallocate(&f, 0, 0, 8192).unwrap();
    let mut buf = [0u8; 7];
    f.read_exact_at(&mut buf, 5000).unwrap();
    assert_eq!(&buf, b"keep me");

    let g = create_rw(v.path("punch"));
    let data = pattern(4, 8 * CHUNK as usize);
    g.write_all_at(&data, 0).unwrap();
    let mut want = data.clone();
    // Punch two whole chunks [128K, 256K) and an unaligned range.
    let punch = libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE;
    fallocate(&g, punch, 2 * CHUNK, 2 * CHUNK).unwrap();
    want[2 * CHUNK as usize..4 * CHUNK as usize].fill(0);
    fallocate(&g, punch, 300_000, 10_000).unwrap();
    want[300_000..310_000].fill(0);
    // Zero an unaligned range, and beyond the end (extends without KEEP_SIZE).
    fallocate(&g, libc::FALLOC_FL_ZERO_RANGE, 400_000, 50_000).unwrap();
    want[400_000..450_000].fill(0);
    fallocate(
        &g,
        libc::FALLOC_FL_ZERO_RANGE | libc::FALLOC_FL_KEEP_SIZE,
        500_000,
        100_000,
    )
    .unwrap();
    want[500_000..].fill(0);
    assert_eq!(g.metadata().unwrap().len(), 8 * CHUNK, "KEEP_SIZE");
    fallocate(&g, libc::FALLOC_FL_ZERO_RANGE, 8 * CHUNK, 1000).unwrap();
    want.resize(8 * CHUNK as usize + 1000, 0);
    assert_eq!(g.metadata().unwrap().len(), 8 * CHUNK + 1000);
    // PUNCH_HOLE requires KEEP_SIZE; unsupported modes are EOPNOTSUPP.
    assert_eq!(
        fallocate(&g, libc::FALLOC_FL_PUNCH_HOLE, 0, 100),
        Err(libc::EOPNOTSUPP)
    );
    assert_eq!(
        fallocate(&g, libc::FALLOC_FL_COLLAPSE_RANGE, 0, CHUNK),
        Err(libc::EOPNOTSUPP)
    );
    assert_eq!(
        fallocate(&g, libc::FALLOC_FL_INSERT_RANGE, 0, CHUNK),
        Err(libc::EOPNOTSUPP)
    );
    // No ENOSYS along the way: the kernel would have turned fallocate off.
    fallocate(&g, 0, 0, 4096).unwrap();
    fallocate(&g, punch, 7 * CHUNK, CHUNK).unwrap();
    want[7 * CHUNK as usize..8 * CHUNK as usize].fill(0);
    drop((f, g));

    for round in ["before remount", "after remount"] {
        let got = fs::read(v.path("alloc")).unwrap();
        assert_eq!(got.len(), 1 << 20, "{round}");
        assert_eq!(&got[5000..5007], b"keep me");
        assert_eq!(got.iter().filter(|&&b| b != 0).count(), 7, "{round}");
        assert_bytes(&fs::read(v.path("punch")).unwrap(), &want, round);
        let g = File::open(v.path("punch")).unwrap();
        assert_eq!(
            lseek(&g, 0, libc::SEEK_HOLE),
            Ok(2 * CHUNK as i64),
            "{round}"
        );
        assert_eq!(
            lseek(&g, 2 * CHUNK as i64, libc::SEEK_DATA),
            Ok(4 * CHUNK as i64),
            "{round}"
        );
        drop(g);
        v.remount();
    }
}

#[test]
fn lseek_data_and_hole() {
    let mut v = Volume::local();
    v.mount();
    let f = create_rw(v.path("holes"));
    // Data in chunks 0 and 3, holes in 1..3 and after 4 (file ends in a hole).
    f.write_all_at(b"first", 0).unwrap();
    f.write_all_at(b"second", 3 * CHUNK + 10).unwrap();
    f.set_len(6 * CHUNK + 5).unwrap();
    let size = (6 * CHUNK + 5) as i64;
    let c = CHUNK as i64;
    let check = |f: &File, when: &str| {
        assert_eq!(lseek(f, 0, libc::SEEK_DATA), Ok(0), "{when}");
        assert_eq!(lseek(f, 100, libc::SEEK_DATA), Ok(100), "{when}");
        assert_eq!(lseek(f, 0, libc::SEEK_HOLE), Ok(c), "{when}");
        assert_eq!(lseek(f, c, libc::SEEK_DATA), Ok(3 * c), "{when}");
        assert_eq!(lseek(f, c + 7, libc::SEEK_HOLE), Ok(c + 7), "{when}");
        assert_eq!(lseek(f, 3 * c, libc::SEEK_HOLE), Ok(4 * c), "{when}");
        assert_eq!(lseek(f, 4 * c, libc::SEEK_DATA), Err(libc::ENXIO), "{when}");
        assert_eq!(lseek(f, size - 1, libc::SEEK_HOLE), Ok(size - 1), "{when}");
        assert_eq!(lseek(f, size, libc::SEEK_DATA), Err(libc::ENXIO), "{when}");
        assert_eq!(lseek(f, size, libc::SEEK_HOLE), Err(libc::ENXIO), "{when}");
        assert_eq!(lseek(f, -1, libc::SEEK_DATA), Err(libc::ENXIO), "{when}");
    };
    // Before anything is flushed, then from the store after a remount.
    check(&f, "unflushed");
    drop(f);
    v.remount();
    let f = File::open(v.path("holes")).unwrap();
    check(&f, "after remount");
    // A file that is all data has its only hole at the end.
    fs::write(v.path("dense"), pattern(2, 3 * CHUNK as usize + 1)).unwrap();
    let d = File::open(v.path("dense")).unwrap();
    assert_eq!(lseek(&d, 0, libc::SEEK_HOLE), Ok(3 * c + 1));
    assert_eq!(lseek(&d, 2 * c + 3, libc::SEEK_DATA), Ok(2 * c + 3));
    // An empty file has neither.
    let e = File::create(v.path("empty")).unwrap();
    assert_eq!(lseek(&e, 0, libc::SEEK_DATA), Err(libc::ENXIO));
    assert_eq!(lseek(&e, 0, libc::SEEK_HOLE), Err(libc::ENXIO));
}

#[test]
fn copy_file_range_between_files() {
    let mut v = Volume::local();
    v.mount();
    let src_data = pattern(5, 300_000);
    fs::write(v.path("src"), &src_data).unwrap();
    fs::write(v.path("dst"), b"0123456789").unwrap();
    let src = File::open(v.path("src")).unwrap();
    let dst = OpenOptions::new().write(true).open(v.path("dst")).unwrap();
    let copy = |off_in: i64, off_out: i64, len: usize| {
        let (mut i, mut o, mut left) = (off_in, off_out, len);
        while left > 0 {
            let n = unsafe {
                libc::copy_file_range(src.as_raw_fd(), &mut i, dst.as_raw_fd(), &mut o, left, 0)
            };
            assert!(n >= 0, "copy_file_range: {}", errno());
            assert!(n > 0, "copy_file_range: short at {i}");
            left -= n as usize;
        }
    };
    copy(1000, 5, 200_000);
    // Past the end of the destination: the gap is zeros.
    copy(250_000, 400_000, 50_000);
    // Past the end of the source: 0 bytes.
    let (mut i, mut o) = (300_000i64, 0i64);
    let n =
        unsafe { libc::copy_file_range(src.as_raw_fd(), &mut i, dst.as_raw_fd(), &mut o, 100, 0) };
    assert_eq!(n, 0, "copy from EOF");
    drop((src, dst));
    let mut want = b"01234".to_vec();
    want.extend_from_slice(&src_data[1000..201_000]);
    want.resize(400_000, 0);
    want.extend_from_slice(&src_data[250_000..]);
    for round in ["before remount", "after remount"] {
        assert_bytes(&fs::read(v.path("dst")).unwrap(), &want, round);
        assert!(fs::read(v.path("src")).unwrap() == src_data);
        v.remount();
    }
}

#[test]
fn statfs_and_name_length() {
    let mut v = Volume::local();
    v.mount();
    let c = cpath(&v.mnt);
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    ok(unsafe { libc::statfs(c.as_ptr(), &mut st) }, "statfs");
    assert!(
        st.f_bsize > 0 && (st.f_bsize & (st.f_bsize - 1)) == 0,
        "f_bsize {}",
        st.f_bsize
    );
    assert_eq!(st.f_bsize, 4096, "docs/SEMANTICS.md: block size 4096");
    assert_eq!(st.f_namelen, 255);
    assert!(st.f_blocks > 0 && st.f_bfree <= st.f_blocks && st.f_bavail <= st.f_bfree);
    let mut vst: libc::statvfs = unsafe { std::mem::zeroed() };
    ok(unsafe { libc::statvfs(c.as_ptr(), &mut vst) }, "statvfs");
    assert_eq!(vst.f_namemax, 255);

    let name255 = "n".repeat(255);
    fs::write(v.path(&name255), b"long name").unwrap();
    assert_eq!(
        err(fs::write(v.path(&"n".repeat(256)), b"")),
        libc::ENAMETOOLONG
    );
    assert_eq!(
        err(fs::create_dir(v.path(&"m".repeat(256)))),
        libc::ENAMETOOLONG
    );
    v.remount();
    assert_eq!(fs::read(v.path(&name255)).unwrap(), b"long name");
}
