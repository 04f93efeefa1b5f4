//! A store that stops answering or refuses everything, seen from the
//! mount: metadata that is cached keeps answering while writers wait for a
//! stalled store, `unmount` during an outage gives up with exit 3 after
//! the store deadline instead of hanging, and a permanent error (403) fails
//! an fsync at once instead of being retried to the deadline.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::harness::*;
use crate::proxy::Fault;

const WRITERS: u64 = 8;
const WRITER_BYTES: usize = 300 << 10;

/// `dd … conv=fsync` of `src` to `dst`: exits 0 only if fsync returned 0.
fn dd_fsync(src: &std::path::Path, dst: &std::path::Path) -> Child {
    Command::new("dd")
        .arg(format!("if={}", src.display()))
        .arg(format!("of={}", dst.display()))
        .args(["bs=64k", "conv=fsync", "status=none"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("dd")
}

/// The moto process is SIGSTOPped (connections accepted, nothing
/// answered) while 8 writers fsync: stat, `ls -l` and a read of a cached
/// file must still answer within 2 s each; once the server runs again
/// every fsync succeeds and every file is exact after a remount.
#[test]
fn stalled_store_keeps_metadata_answering() {
    let moto = PrivateS3::start();
    let mut v = Volume::on_server(moto.server());
    v.mount();
    let cached = pattern(1, 5000);
    std::fs::write(v.path("cached"), &cached).unwrap();
    std::fs::File::open(v.path("cached"))
        .unwrap()
        .sync_all()
        .unwrap();
    assert!(std::fs::read(v.path("cached")).unwrap() == cached);
    let sources: Vec<_> = (0..WRITERS)
        .map(|i| {
            let p = v.dir.path().join(format!("src{i}"));
            std::fs::write(&p, pattern(100 + i, WRITER_BYTES)).unwrap();
            p
        })
        .collect();

    moto.pause();
    // Continued on every way out, so a failure cannot leave the
    // unmount (and the daemon) waiting for a stopped server.
    let resume = ContinueOnDrop(moto.pid());
    let mut writers: Vec<Child> = sources
        .iter()
        .enumerate()
        .map(|(i, src)| dd_fsync(src, &v.path(&format!("f{i}"))))
        .collect();
    std::thread::sleep(Duration::from_secs(2));
    for (i, w) in writers.iter_mut().enumerate() {
        assert!(
            w.try_wait().unwrap().is_none(),
            "writer {i} finished while the store was stopped: its fsync did not reach the store"
        );
    }

    let limit = Duration::from_secs(2);
    let p = v.path("cached");
    let (meta, stat_took) = within(limit, "stat of a file while the store stalls", move || {
        std::fs::metadata(p)
    });
    assert_eq!(meta.unwrap().len(), cached.len() as u64);
    let mnt = v.mnt.clone();
    let (ls, ls_took) = within(
        limit,
        "ls -l of the mount root while the store stalls",
        move || Command::new("ls").arg("-l").arg(mnt).output().unwrap(),
    );
    assert!(ls.status.success(), "{}", stderr(&ls));
    assert!(String::from_utf8_lossy(&ls.stdout).contains("cached"));
    let p = v.path("cached");
    let (read, read_took) = within(
        limit,
        "a read of a cached file while the store stalls",
        move || std::fs::read(p),
    );
    assert!(read.unwrap() == cached, "the cached file reads right");
    eprintln!(
        "while the store was stopped: stat {stat_took:?}, ls -l {ls_took:?}, \
         cached read {read_took:?}"
    );

    drop(resume);
    for (i, w) in writers.iter_mut().enumerate() {
        let status = wait_child(w, Duration::from_secs(120))
            .unwrap_or_else(|| panic!("writer {i} still blocked 120 s after the store came back"));
        assert!(
            status.success(),
            "writer {i}: dd (its fsync) failed: {status}"
        );
    }
    v.remount();
    for i in 0..WRITERS {
        let got = std::fs::read(v.path(&format!("f{i}"))).unwrap();
        assert!(got == pattern(100 + i, WRITER_BYTES), "f{i} after remount");
    }
    assert!(std::fs::read(v.path("cached")).unwrap() == cached);
    v.unmount();
}

/// With a store deadline of 3 s and the store stalled behind the proxy,
/// `sealedfs unmount` of a mount holding unwritten data gives up: exit 3
/// and one line, well within a minute. Once the store is back and the
/// daemon gone, what was fsynced before the outage is intact, and the file
/// written during it is absent or a committed prefix, never other bytes.
#[test]
fn unmount_during_outage_exits_3() {
    let mut v = Volume::new(Backend::S3Proxy);
    v.set_env("SEALEDFS_STORE_DEADLINE_MS", "3000");
    v.mount();
    let a = pattern(2, 200_000);
    let b = pattern(3, 150_000);
    let file = std::fs::File::create(v.path("a")).unwrap();
    std::io::Write::write_all(&mut &file, &a).unwrap();
    file.sync_all().unwrap();
    drop(file);

    v.proxy().set_standing(Fault::Stall);
    let p = v.path("b");
    let b2 = b.clone();
    let (written, _) = within(
        Duration::from_secs(10),
        "a write during the outage",
        move || std::fs::write(p, b2),
    );
    written.unwrap();
    let start = std::time::Instant::now();
    let out = v.try_unmount();
    let took = start.elapsed();
    let err = stderr(&out);
    eprintln!(
        "unmount during the outage: {:?} after {took:?}: {err}",
        out.status.code()
    );
    assert_cli_error(&out, 3);
    assert!(took < Duration::from_secs(60), "unmount took {took:?}");

    // The store answers again; the daemon, told to stop, may finish on
    // its own. One still running after 30 s is killed: B may then be lost,
    // but never half there.
    v.proxy().set_standing(Fault::Pass);
    let start = std::time::Instant::now();
    while v.daemon_pid().is_some() && start.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(50));
    }
    if v.daemon_pid().is_some() {
        eprintln!("the daemon still ran 30 s after the store came back: killed");
        v.kill();
    }
    v.mount();
    assert!(
        std::fs::read(v.path("a")).unwrap() == a,
        "a after the outage"
    );
    // B was never fsynced, and a PUT the daemon gave up on may still have
    // landed once the store came back (the stalled requests go through).
    // So B may be absent, or in any committed state: a prefix of what was
    // written (empty when only its creation landed), never other bytes.
    match std::fs::read(v.path("b")) {
        Ok(got) => assert!(
            b.starts_with(&got),
            "b holds bytes never written: {} bytes",
            got.len()
        ),
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::NotFound, "b: {e}"),
    }
    v.unmount();
}

/// Once the store answers 403 AccessDenied to everything, an fsync fails
/// with EIO within 10 s (the default store deadline is far longer: a
/// permanent error is not retried), and the daemon's log names the cause.
#[test]
fn permanent_store_error_fails_fast() {
    let mut v = Volume::new(Backend::S3Proxy);
    v.mount();
    let before = std::fs::File::create(v.path("before")).unwrap();
    std::io::Write::write_all(&mut &before, b"written while the store worked").unwrap();
    before.sync_all().unwrap();
    drop(before);

    v.proxy().set_standing(Fault::Status(403, "AccessDenied"));
    let p = v.path("after");
    let (synced, took) = within(
        Duration::from_secs(10),
        "fsync against a store that denies access",
        move || {
            let f = std::fs::File::create(p)?;
            std::io::Write::write_all(&mut &f, &pattern(4, 100_000))?;
            f.sync_all()
        },
    );
    eprintln!("fsync with the store denying access: {synced:?} after {took:?}");
    let e = synced.expect_err("fsync succeeded while the store denied every request");
    assert_eq!(e.raw_os_error(), Some(libc::EIO), "{e}");
    let log = v.log_text();
    assert!(
        log.to_lowercase().contains("denied"),
        "the log names the cause:\n{log}"
    );
    // The unmount may fail (the data cannot be committed); the volume's
    // drop detaches the mount and stops the daemon either way.
    v.proxy().set_standing(Fault::Pass);
    let _ = v.try_unmount();
}
