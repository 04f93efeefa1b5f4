//! Telling systemd the mount is ready (`Type=notify`), without libsystemd.
//!
//! systemd names a unix datagram socket in `NOTIFY_SOCKET` (a path, or an
//! abstract name spelt with a leading `@`); a service sends it lines of
//! `KEY=VALUE`. sealedfs sends two messages from the serving process:
//!
//! - `READY=1` once, after the mountpoint answered a `stat` through the
//!   mount (the same moment the parent of a forking `mount` is told "ok"),
//!   with `MAINPID=` so that a forking `sealedfs mount` under
//!   `NotifyAccess=all` hands the service over to its daemon;
//! - `STOPPING=1` when the FUSE session has ended (an unmount, `umount`,
//!   or SIGTERM from `systemctl stop`), before the final commit, which may
//!   take a while against a slow store.
//!
//! The variable is taken out of the environment at start, while the
//! process has one thread (as `SEALEDFS_PASSPHRASE` is), so no helper the
//! daemon runs (fusermount3) inherits it and sends messages of its own. A
//! failure to send is logged and otherwise ignored: readiness is also on
//! the exit status of a forking `mount`.
//!
//! The unit files under `docs/systemd/` use this; `docs/SERVICE.md` says
//! how.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

pub const SOCKET_VAR: &str = "NOTIFY_SOCKET";

static SOCKET: OnceLock<Option<OsString>> = OnceLock::new();
static READY_SENT: AtomicBool = AtomicBool::new(false);

/// Takes `NOTIFY_SOCKET` out of the environment and keeps it for
/// [`ready`] and [`stopping`]. Call first thing, while single-threaded.
pub fn take_env() {
    let value = std::env::var_os(SOCKET_VAR).filter(|v| !v.is_empty());
    // SAFETY: called before any thread is started (see `cli::main`).
    unsafe { std::env::remove_var(SOCKET_VAR) };
    let _ = SOCKET.set(value);
}

/// `READY=1`, at most once per process.
pub fn ready() {
    if READY_SENT.swap(true, Ordering::SeqCst) {
        return;
    }
    let pid = std::process::id();
    send(&format!("READY=1\nSTATUS=mounted\nMAINPID={pid}\n"));
}

/// `STOPPING=1`: the session ended; the final commit is under way.
pub fn stopping() {
    send("STOPPING=1\nSTATUS=unmounted; committing\n");
}

fn send(message: &str) {
    let Some(Some(socket)) = SOCKET.get() else {
        return;
    };
    if let Err(e) = send_to(socket, message) {
        log::warn!("cannot notify systemd through {SOCKET_VAR}: {e}");
    }
}

/// Sends one datagram to the socket `NOTIFY_SOCKET` names.
pub fn send_to(socket: &OsStr, message: &str) -> io::Result<()> {
    let bytes = socket.as_bytes();
    let addr = match bytes.first() {
        Some(b'@') => SocketAddr::from_abstract_name(&bytes[1..])?,
        Some(b'/') => SocketAddr::from_pathname(socket)?,
        _ => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("unsupported address {:?}", socket.to_string_lossy()),
            ));
        }
    };
    let sock = UnixDatagram::unbound()?;
    let sent = sock.send_to_addr(message.as_bytes(), &addr)?;
    if sent != message.len() {
        return Err(io::Error::other("message truncated"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datagrams_reach_path_and_abstract_sockets() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let listener = UnixDatagram::bind(&path).unwrap();
        send_to(path.as_os_str(), "READY=1\n").unwrap();
        let mut buf = [0u8; 64];
        let n = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1\n");

        let name = format!("sealedfs-test-{}", std::process::id());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let listener = UnixDatagram::bind_addr(&addr).unwrap();
        send_to(OsStr::new(&format!("@{name}")), "STOPPING=1\n").unwrap();
        let n = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"STOPPING=1\n");
    }

    #[test]
    fn bad_addresses_are_errors() {
        assert!(send_to(OsStr::new("relative/sock"), "READY=1\n").is_err());
        assert!(send_to(OsStr::new("vsock:2:1234"), "READY=1\n").is_err());
        let dir = tempfile::tempdir().unwrap();
        let nobody = dir.path().join("nobody");
        assert!(send_to(nobody.as_os_str(), "READY=1\n").is_err());
    }
}
