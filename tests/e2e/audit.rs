//! The audit trail through real mounts: each kind of operation by an
//! unprivileged user leaves exactly one record naming who, which process,
//! which path and how it ended; the trail survives a SIGKILL (the spool);
//! `audit verify` finds every kind of tampering in the store; queries
//! filter and print text, JSON lines and CSV; prune keeps what remains
//! verifiable.

use std::ffi::CString;
use std::fs;
use std::os::unix::fs::PermissionsExt;

use serde_json::Value;

use crate::harness::*;

/// Every record of the volume's trail, as `audit --format json` prints
/// them, after `filters`.
fn records(v: &Volume, filters: &[&str]) -> Vec<Value> {
    let mut args = vec!["audit", v.url.as_str(), "--format", "json"];
    args.extend_from_slice(filters);
    let out = v.run(&args, &[]);
    assert!(out.status.success(), "audit: {}", stderr(&out));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

fn verify(v: &Volume) -> std::process::Output {
    v.run(&["audit", "verify", &v.url], &[])
}

/// A volume any user may enter (`-o allow_other`, directories 0755/0777).
fn shared(backend: Backend) -> Volume {
    let mut v = Volume::new(backend);
    fs::set_permissions(v.dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    v.mount_with(&["-o", "allow_other"]);
    fs::set_permissions(&v.mnt, fs::Permissions::from_mode(0o777)).unwrap();
    v
}

fn c(p: &std::path::Path) -> CString {
    cpath(p)
}

/// One operation the test user did: its pid, the record it must leave.
struct Done {
    pid: u32,
    op: &'static str,
    path: String,
    path2: Option<String>,
    errno: i32,
}

fn each_operation_leaves_one_record(backend: Backend) {
    let mut v = shared(backend);
    let (uid, gid) = user();
    // A forked child runs under its parent thread's name.
    let comm = fs::read_to_string("/proc/thread-self/comm").unwrap();
    let comm = comm.trim_end();
    let m = v.mnt.clone();
    let mut done = Vec::new();
    let mut run = |op: &'static str, path: &str, path2: Option<&str>, f: &dyn Fn() -> i32| {
        let (pid, errno) = as_user_pid(uid, gid, f);
        done.push(Done {
            pid,
            op,
            path: path.into(),
            path2: path2.map(Into::into),
            errno,
        });
        errno
    };
    let (d, f, h, h2, s, fifo) = (
        c(&m.join("d")),
        c(&m.join("d/f")),
        c(&m.join("d/h")),
        c(&m.join("d/h2")),
        c(&m.join("d/s")),
        c(&m.join("d/fifo")),
    );
    let cs = |s: &str| CString::new(s).unwrap();
    assert_eq!(
        run("mkdir", "/d", None, &|| code(
            unsafe { libc::mkdir(d.as_ptr(), 0o755) } as _
        )),
        0
    );
    assert_eq!(
        run("mknod", "/d/fifo", None, &|| code(
            unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) } as _
        )),
        0
    );
    let write_five = || {
        let fd = unsafe { libc::open(f.as_ptr(), libc::O_CREAT | libc::O_WRONLY, 0o644) };
        if fd < 0 {
            return errno();
        }
        let n = unsafe { libc::write(fd, b"hello".as_ptr().cast(), 5) };
        unsafe { libc::close(fd) };
        if n == 5 { 0 } else { 99 }
    };
    assert_eq!(run("create", "/d/f", None, &write_five), 0);
    let read_back = || {
        let fd = unsafe { libc::open(f.as_ptr(), libc::O_RDONLY | libc::O_DIRECT) };
        if fd < 0 {
            return errno();
        }
        let mut buf = [0u8; 4096];
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        unsafe { libc::close(fd) };
        if n == 5 { 0 } else { 98 }
    };
    assert_eq!(run("open", "/d/f", None, &read_back), 0);
    let target = cs("f");
    let symlink = || code(unsafe { libc::symlink(target.as_ptr(), s.as_ptr()) } as _);
    assert_eq!(run("symlink", "/d/s", None, &symlink), 0);
    let link = || code(unsafe { libc::link(f.as_ptr(), h.as_ptr()) } as _);
    assert_eq!(run("link", "/d/f", Some("/d/h"), &link), 0);
    let rename = || code(unsafe { libc::rename(h.as_ptr(), h2.as_ptr()) } as _);
    assert_eq!(run("rename", "/d/h", Some("/d/h2"), &rename), 0);
    let chmod = || code(unsafe { libc::chmod(f.as_ptr(), 0o600) } as _);
    assert_eq!(run("chmod", "/d/f", None, &chmod), 0);
    let chown = || code(unsafe { libc::chown(f.as_ptr(), u32::MAX, gid) } as _);
    assert_eq!(run("chown", "/d/f", None, &chown), 0);
    let truncate = || code(unsafe { libc::truncate(f.as_ptr(), 2) } as _);
    assert_eq!(run("truncate", "/d/f", None, &truncate), 0);
    let utimes = || code(unsafe { libc::utimes(f.as_ptr(), std::ptr::null()) } as _);
    assert_eq!(run("utimes", "/d/f", None, &utimes), 0);
    let (xname, missing) = (cs("user.tag"), cs("user.missing"));
    let setx = || {
        let r = unsafe { libc::setxattr(f.as_ptr(), xname.as_ptr(), b"v".as_ptr().cast(), 1, 0) };
        code(r as _)
    };
    assert_eq!(run("setxattr", "/d/f", None, &setx), 0);
    let removex = || code(unsafe { libc::removexattr(f.as_ptr(), xname.as_ptr()) } as _);
    assert_eq!(run("removexattr", "/d/f", None, &removex), 0);
    // Failures decided by sealedfs are recorded with their errno.
    let remove_missing = || code(unsafe { libc::removexattr(f.as_ptr(), missing.as_ptr()) } as _);
    assert_eq!(
        run("removexattr", "/d/f", None, &remove_missing),
        libc::ENODATA
    );
    let rmdir = || code(unsafe { libc::rmdir(d.as_ptr()) } as _);
    assert_eq!(run("rmdir", "/d", None, &rmdir), libc::ENOTEMPTY);
    let list = || {
        let dir = unsafe { libc::opendir(d.as_ptr()) };
        if dir.is_null() {
            return errno();
        }
        unsafe { libc::closedir(dir) };
        0
    };
    assert_eq!(run("opendir", "/d", None, &list), 0);
    let unlink = || code(unsafe { libc::unlink(h2.as_ptr()) } as _);
    assert_eq!(run("unlink", "/d/h2", None, &unlink), 0);
    v.unmount();

    let all = records(&v, &["--uid", &uid.to_string()]);
    for want in &done {
        let found: Vec<&Value> = all
            .iter()
            .filter(|r| r["pid"] == want.pid && r["op"] == want.op)
            .collect();
        assert_eq!(found.len(), 1, "{} by pid {}: {all:#?}", want.op, want.pid);
        let r = found[0];
        assert_eq!(r["uid"], uid, "{r}");
        assert_eq!(r["gid"], gid, "{r}");
        assert_eq!(r["process"], comm, "{r}");
        assert_eq!(r["path"], want.path.as_str(), "{r}");
        assert_eq!(r["path2"].as_str(), want.path2.as_deref(), "{r}");
        assert_eq!(r["errno"], want.errno, "{r}");
        assert_eq!(r["host"], host_name(), "{r}");
    }
    // A handle's release carries the bytes that went through it.
    let release_of = |pid: u32| {
        all.iter()
            .find(|r| r["pid"] == pid && r["op"] == "release")
            .unwrap_or_else(|| panic!("no release by {pid}: {all:#?}"))["detail"]
            .clone()
    };
    assert_eq!(release_of(done[2].pid), "read=0 written=5");
    assert_eq!(release_of(done[3].pid), "read=5 written=0");
    // The mount and unmount are there too, as the daemon's.
    let admin = records(&v, &["--op", "admin"]);
    let what: Vec<&str> = admin
        .iter()
        .map(|r| r["detail"].as_str().unwrap())
        .collect();
    assert_eq!(what, ["mount read-write", "unmount"], "{admin:#?}");
    assert!(verify(&v).status.success(), "{}", stderr(&verify(&v)));
}
per_backend!(each_operation_leaves_one_record: local, s3);

fn a_killed_daemon_loses_no_record(backend: Backend) {
    let mut v = Volume::new(backend);
    v.mount();
    let n = 200;
    sh(&format!(
        "cd '{}' && for i in $(seq 1 {n}); do echo $i > f$i; done && mkdir gone && rmdir gone",
        v.mnt.display()
    ));
    // Every call above returned to the shell; the daemon dies before its
    // next flush (every second) could upload them.
    v.kill();
    v.mount();
    v.unmount();
    assert!(
        v.log_text().contains("adopted"),
        "the records came from the spool: {}",
        v.log_text()
    );
    let created = records(&v, &["--op", "create"]);
    let mut paths: Vec<String> = created
        .iter()
        .map(|r| r["path"].as_str().unwrap().to_owned())
        .collect();
    paths.sort_by_key(|p| p[2..].parse::<u32>().unwrap_or(0));
    let want: Vec<String> = (1..=n).map(|i| format!("/f{i}")).collect();
    assert_eq!(paths, want);
    assert_eq!(records(&v, &["--op", "rmdir", "--path", "/gone"]).len(), 1);
    let ok = verify(&v);
    assert!(ok.status.success(), "{}", stderr(&ok));
}
per_backend!(a_killed_daemon_loses_no_record: local, s3);

/// A volume whose writer chain has several segments (each fsync commits,
/// and each commit uploads the records so far as a segment first).
fn volume_with_trail(backend: Backend) -> (Volume, Vec<String>) {
    let mut v = Volume::new(backend);
    v.mount();
    for i in 0..4 {
        sh(&format!(
            "cd '{}' && echo {i} > f{i} && sync f{i}",
            v.mnt.display()
        ));
    }
    v.unmount();
    let mut keys: Vec<String> = v
        .store()
        .list("audit/w/")
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect();
    keys.sort();
    assert!(keys.len() >= 5, "{keys:?}");
    (v, keys)
}

fn verify_finds_every_kind_of_tampering(backend: Backend) {
    let (v, keys) = volume_with_trail(backend);
    let ok = verify(&v);
    assert!(ok.status.success(), "untouched: {}", stderr(&ok));
    let store = v.store();
    let body: Vec<Vec<u8>> = keys.iter().map(|k| store.get(k).unwrap()).collect();
    let restore = || {
        for (k, b) in keys.iter().zip(&body) {
            store.put(k, b).unwrap();
        }
        let extra = store.list("audit/w/").unwrap();
        for o in extra.iter().filter(|o| !keys.contains(&o.key)) {
            store.delete(&o.key).unwrap();
        }
        assert!(verify(&v).status.success(), "restored");
    };
    let broken = |what: &str, names: &str| {
        let out = verify(&v);
        let msg = assert_cli_error(&out, 5);
        assert!(msg.contains(names), "{what}: {msg}");
        restore();
    };
    let last = keys.len() - 1;

    let mut flipped = body[1].clone();
    flipped[40] ^= 1;
    store.put(&keys[1], &flipped).unwrap();
    broken("a flipped byte", &keys[1]);

    store.delete(&keys[1]).unwrap();
    broken("a middle segment deleted", &keys[1]);

    store.put(&keys[1], &body[2]).unwrap();
    store.put(&keys[2], &body[1]).unwrap();
    broken("two segments swapped", &keys[1]);

    store.delete(&keys[last]).unwrap();
    broken("the newest deleted", &keys[last]);

    store.delete(&keys[last]).unwrap();
    store.delete(&keys[last - 1]).unwrap();
    broken("the tail cut off", &keys[last - 1]);

    let next = format!("audit/w/{:016x}", keys.len() + 1);
    store.put(&next, &body[0]).unwrap();
    broken("an old segment replayed", &next);

    let out = verify(&v);
    assert!(out.status.success(), "{}", stderr(&out));
}
per_backend!(verify_finds_every_kind_of_tampering: local, s3);

#[test]
fn queries_filter_and_print_text_json_and_csv() {
    let mut v = Volume::local();
    v.mount();
    sh(&format!(
        "cd '{}' && mkdir -p patients/a other && echo x > patients/a/chart && \
         echo y > other/note && cat patients/a/chart >/dev/null && rm other/note",
        v.mnt.display()
    ));
    v.unmount();
    let under = records(&v, &["--path", "/patients/"]);
    assert!(!under.is_empty());
    assert!(
        under
            .iter()
            .all(|r| r["path"].as_str().unwrap().starts_with("/patients/")),
        "{under:#?}"
    );
    assert_eq!(records(&v, &["--op", "unlink"]).len(), 1);
    assert!(records(&v, &["--failed"]).is_empty());
    assert!(records(&v, &["--since", "1h"]).len() >= under.len());
    assert!(records(&v, &["--until", "2000-01-01"]).is_empty());

    let csv = v.run(&["audit", &v.url, "--format", "csv", "--op", "create"], &[]);
    let text = String::from_utf8_lossy(&csv.stdout).into_owned();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        "time,host,chain,uid,gid,pid,process,op,path,path2,detail,result"
    );
    assert_eq!(lines.len(), 3, "{text}");
    assert!(lines[1].contains(",create,/patients/a/chart,,"), "{text}");

    let plain = v.run(&["audit", &v.url, "--op", "unlink"], &[]);
    let text = String::from_utf8_lossy(&plain.stdout).into_owned();
    assert!(
        text.trim_end().ends_with("(rm) unlink /other/note ok"),
        "{text}"
    );
    let bad = v.run(&["audit", &v.url, "--since", "last tuesday"], &[]);
    assert!(assert_cli_error(&bad, 1).contains("invalid time"));
}

#[test]
fn prune_removes_old_segments_and_stays_verifiable() {
    let (v, keys) = volume_with_trail(Backend::Local);
    // Everything so far is older than the cut, but each chain keeps its
    // newest segment.
    std::thread::sleep(std::time::Duration::from_millis(20));
    let cut = v.run(&["audit", "prune", &v.url, "--before", "0s"], &[]);
    assert!(cut.status.success(), "{}", stderr(&cut));
    let left = v.store().list("audit/w/").unwrap();
    assert!(left.len() < keys.len(), "{left:?}");
    assert!(left.iter().any(|o| o.key.ends_with("/base")), "{left:?}");
    let ok = verify(&v);
    assert!(ok.status.success(), "{}", stderr(&ok));
    let admin = records(&v, &["--op", "admin"]);
    assert!(
        admin.iter().any(|r| r["detail"]
            .as_str()
            .unwrap()
            .starts_with("audit prune before")),
        "{admin:#?}"
    );
    // Deleting the base shows: the chain starts past segment 1.
    v.store().delete("audit/w/base").unwrap();
    assert_cli_error(&verify(&v), 5);
}
