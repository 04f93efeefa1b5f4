//! systemd's readiness protocol (`Type=notify`) against a socket the test
//! binds itself: exactly one `READY=1`, sent once the mount answers, from
//! the serving process; `STOPPING=1` when it unmounts.

use std::os::unix::net::UnixDatagram;
use std::process::Stdio;
use std::sync::mpsc;
use std::time::Duration;

use crate::harness::*;

/// One datagram and what the mountpoint looked like when it arrived.
struct Received {
    message: String,
    /// Mounted (per mountinfo) and answering `stat` at that moment.
    mount_answered: bool,
}

/// Binds a notify socket in `v`'s directory; every datagram goes to the
/// channel with the mount's state at arrival.
fn listen(v: &Volume) -> (std::path::PathBuf, mpsc::Receiver<Received>) {
    let path = v.dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&path).unwrap();
    let mnt = v.mnt.clone();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = sock.recv(&mut buf) {
            let mount_answered =
                mount_options_of(&mnt).is_some() && std::fs::metadata(&mnt).is_ok();
            let message = String::from_utf8_lossy(&buf[..n]).into_owned();
            if tx
                .send(Received {
                    message,
                    mount_answered,
                })
                .is_err()
            {
                break;
            }
        }
    });
    (path, rx)
}

fn next(rx: &mpsc::Receiver<Received>, what: &str) -> Received {
    rx.recv_timeout(Duration::from_secs(30))
        .unwrap_or_else(|_| panic!("no {what} within 30 s"))
}

fn field<'a>(message: &'a str, key: &str) -> Option<&'a str> {
    message
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
}

#[test]
fn forking_mount_sends_ready_once_after_the_mount_answers() {
    let mut v = Volume::local();
    let (socket, rx) = listen(&v);
    let out = v.run(
        &["mount", &v.url.clone(), v.mnt.to_str().unwrap()],
        &[("NOTIFY_SOCKET", socket.to_str().unwrap())],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    v.adopt_mount();
    let ready = next(&rx, "READY=1");
    assert_eq!(
        field(&ready.message, "READY"),
        Some("1"),
        "{}",
        ready.message
    );
    assert!(ready.mount_answered, "READY=1 before the mount answered");
    // The daemon, not the parent that exited: systemd follows MAINPID.
    let daemon = v.daemon_pid().unwrap();
    assert_eq!(
        field(&ready.message, "MAINPID"),
        Some(daemon.to_string().as_str())
    );

    v.unmount();
    let stopping = next(&rx, "STOPPING=1");
    assert_eq!(
        field(&stopping.message, "STOPPING"),
        Some("1"),
        "{}",
        stopping.message
    );
    std::thread::sleep(Duration::from_millis(200));
    let rest: Vec<String> = rx.try_iter().map(|r| r.message).collect();
    assert!(rest.iter().all(|m| field(m, "READY").is_none()), "{rest:?}");
}

#[test]
fn foreground_mount_is_a_notify_service() {
    let mut v = Volume::local();
    let (socket, rx) = listen(&v);
    // As the unit in docs/systemd runs it: --foreground, the secret in a
    // file, no terminal.
    let pass = v.dir.path().join("pass");
    write_secret(&pass, PASS.as_bytes());
    let mut child = sealedfs_cmd(&[
        "mount",
        &v.url,
        v.mnt.to_str().unwrap(),
        "--foreground",
        "--passphrase-file",
        pass.to_str().unwrap(),
    ])
    .env("NOTIFY_SOCKET", &socket)
    .env("SEALEDFS_LOG_FILE", &v.log)
    .stdin(Stdio::null())
    .spawn()
    .unwrap();
    let ready = next(&rx, "READY=1");
    v.adopt_mount();
    assert!(ready.mount_answered, "READY=1 before the mount answered");
    assert_eq!(
        field(&ready.message, "MAINPID"),
        Some(child.id().to_string().as_str())
    );

    // systemctl stop: SIGTERM to the main process, which unmounts,
    // commits and exits 0.
    std::fs::write(v.path("f"), b"committed at stop").unwrap();
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = wait_child(&mut child, Duration::from_secs(60)).expect("exits after SIGTERM");
    assert!(status.success(), "{status:?}\n{}", v.log_text());
    assert!(!v.is_mounted());
    let stopping = next(&rx, "STOPPING=1");
    assert_eq!(field(&stopping.message, "STOPPING"), Some("1"));
    let rest: Vec<String> = rx.try_iter().map(|r| r.message).collect();
    assert!(rest.iter().all(|m| field(m, "READY").is_none()), "{rest:?}");

    v.mount();
    assert_eq!(std::fs::read(v.path("f")).unwrap(), b"committed at stop");
}

#[test]
fn a_notify_socket_nobody_reads_does_not_fail_the_mount() {
    // A socket nobody listens on: the mount still succeeds (readiness is
    // also the exit status) and logs why it could not notify.
    let mut v = Volume::local();
    let gone = v.dir.path().join("nobody.sock");
    let out = v.run(
        &["mount", &v.url.clone(), v.mnt.to_str().unwrap()],
        &[
            ("NOTIFY_SOCKET", gone.to_str().unwrap()),
            ("SEALEDFS_LOG_FILE", v.log.to_str().unwrap()),
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    v.adopt_mount();
    assert!(
        v.log_text().contains("cannot notify systemd"),
        "{}",
        v.log_text()
    );
}
