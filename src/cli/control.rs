//! The daemon's control socket: commands for a running mount.
//!
//! Only the read-write daemon may change a mounted volume (make or delete
//! a snapshot, say), so commands given the store find that daemon (see
//! `pidfile::find_daemon_for_location`) and ask it here instead of taking
//! the writer's lease themselves.
//!
//! Rules:
//! - The socket is `<runtime dir>/<pid>.sock`; the runtime directory is
//!   private to the daemon's user (mode 0700), and every connection is
//!   checked with `SO_PEERCRED`: only root and that user are served.
//! - One request per connection, each answered on its own thread (a
//!   snapshot commits and writes a checkpoint; `status` must not wait
//!   behind it).
//! - Wire: each side sends one frame, a 4-byte big-endian length, then
//!   [`PROTOCOL`] and the postcard encoding of a [`Request`] or [`Reply`].
//!   A daemon of another version answers `Failed` rather than guessing.

use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::error::{CliError, CliResult, EXIT_USAGE};
use super::pidfile;
use crate::meta::snapshot::SnapshotRecord;

/// First byte of every frame's body.
pub const PROTOCOL: u8 = 1;

/// Largest frame either side accepts.
const MAX_FRAME: u32 = 1 << 20;

/// How long a client waits for an answer (a snapshot during a store
/// outage waits for the store's deadline).
const CALL_TIMEOUT: Duration = Duration::from_secs(600);

#[derive(Debug, Serialize, Deserialize)]
pub enum Request {
    SnapshotCreate {
        name: String,
    },
    SnapshotDelete {
        name: String,
    },
    /// Remove audit records older than this (ms since the epoch).
    AuditPrune {
        before_ms: u64,
    },
    Status,
    Lock,
    /// The secret travels only over this private socket and is wiped
    /// once used; none with `kms`.
    Unlock {
        secret: Option<Vec<u8>>,
        key_file: bool,
        kms: bool,
        slot: Option<u32>,
    },
    /// A key rotation begun by the command: the encoded key ring (wiped
    /// once used), whose newest epoch the header has adopted.
    Rotate {
        ring: Vec<u8>,
        epoch: u32,
        /// Bytes per second, at most.
        rate: Option<u64>,
    },
}

impl Request {
    /// Whether only the volume's writer may do it.
    pub fn writer_only(&self) -> bool {
        matches!(
            self,
            Request::SnapshotCreate { .. }
                | Request::SnapshotDelete { .. }
                | Request::AuditPrune { .. }
                | Request::Rotate { .. }
        )
    }

    /// What a request asks for, as the audit trail records it.
    pub fn describe(&self) -> String {
        match self {
            Request::Status => "status".into(),
            Request::Lock => "lock".into(),
            Request::Unlock { .. } => "unlock".into(),
            Request::Rotate { epoch, .. } => format!("key rotate: epoch {epoch}"),
            Request::SnapshotCreate { name } => format!("snapshot create {name}"),
            Request::SnapshotDelete { name } => format!("snapshot delete {name}"),
            Request::AuditPrune { before_ms } => {
                format!(
                    "audit prune --before {}",
                    crate::audit::format_time(*before_ms)
                )
            }
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub enum Reply {
    Snapshot(SnapshotRecord),
    Pruned {
        segments: u64,
        records: u64,
    },
    Status(Box<super::status::StatusReport>),
    Locked {
        keys_zeroed: bool,
        dropped_bytes: u64,
    },
    Done,
    /// The exit code and one-line reason the command should end with.
    Failed {
        code: i32,
        msg: String,
    },
}

impl Reply {
    pub fn from_result<T>(r: CliResult<T>, ok: impl FnOnce(T) -> Reply) -> Reply {
        match r {
            Ok(v) => ok(v),
            Err(e) => Reply::Failed {
                code: e.code,
                msg: e.msg,
            },
        }
    }
}

/// The listening socket; removed when dropped.
pub struct Server {
    path: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Who is asking, as the kernel says (`SO_PEERCRED`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Peer {
    pub uid: u32,
    pub gid: u32,
    pub pid: u32,
}

/// Listens on this process's control socket, answering each request with
/// `handle` on a thread of its own.
pub fn serve(
    handle: impl Fn(Request, Peer) -> Reply + Send + Sync + 'static,
) -> io::Result<Server> {
    let path = pidfile::own_runtime_dir()?.join(format!("{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path)?;
    let handle = std::sync::Arc::new(handle);
    // SAFETY: no arguments, cannot fail.
    let me = unsafe { libc::geteuid() };
    std::thread::Builder::new()
        .name("control".into())
        .spawn(move || {
            for conn in listener.incoming().flatten() {
                let peer = match peer(&conn) {
                    Some(p) if p.uid == 0 || p.uid == me => p,
                    other => {
                        let uid = other.map(|p| p.uid);
                        log::warn!("control socket: refused a connection from uid {uid:?}");
                        continue;
                    }
                };
                let handle = std::sync::Arc::clone(&handle);
                let _ = std::thread::Builder::new()
                    .name("control-request".into())
                    .spawn(move || answer(conn, peer, &*handle));
            }
        })?;
    Ok(Server { path })
}

fn answer(mut conn: UnixStream, peer: Peer, handle: &dyn Fn(Request, Peer) -> Reply) {
    let reply = match read_frame::<Request>(&mut conn) {
        Ok(req) => handle(req, peer),
        Err(e) => Reply::Failed {
            code: EXIT_USAGE,
            msg: format!("the daemon could not read the request: {e}"),
        },
    };
    if let Err(e) = write_frame(&mut conn, &reply) {
        log::warn!("control socket: could not answer: {e}");
    }
}

/// Sends `req` to daemon `pid` and returns its answer; a `Failed` answer
/// becomes the command's error.
pub fn call(pid: i32, req: &Request) -> CliResult<Reply> {
    let name = format!("{pid}.sock");
    let path = pidfile::runtime_dirs()
        .into_iter()
        .map(|d| d.join(&name))
        .find(|p| p.exists())
        .ok_or_else(|| {
            CliError::usage(format!(
                "daemon {pid} serves this volume but has no control socket (an older sealedfs?)"
            ))
        })?;
    let talk = || -> io::Result<Reply> {
        let mut conn = UnixStream::connect(&path)?;
        conn.set_read_timeout(Some(CALL_TIMEOUT))?;
        write_frame(&mut conn, req)?;
        read_frame(&mut conn)
    };
    match talk() {
        Ok(Reply::Failed { code, msg }) => Err(CliError::new(code, msg)),
        Ok(reply) => Ok(reply),
        Err(e) => Err(CliError::usage(format!(
            "cannot talk to daemon {pid} ({}): {e}",
            path.display()
        ))),
    }
}

/// Frames are wiped once sent or decoded: an unlock request carries a
/// passphrase.
fn write_frame<T: Serialize>(conn: &mut UnixStream, value: &T) -> io::Result<()> {
    let mut body = Zeroizing::new(vec![PROTOCOL]);
    body.extend(Zeroizing::new(postcard::to_allocvec(value).map_err(io::Error::other)?).iter());
    let len = u32::try_from(body.len()).map_err(io::Error::other)?;
    conn.write_all(&len.to_be_bytes())?;
    conn.write_all(&body)
}

pub(crate) fn read_frame<T: serde::de::DeserializeOwned>(conn: &mut impl Read) -> io::Result<T> {
    let mut len = [0u8; 4];
    conn.read_exact(&mut len)?;
    let len = u32::from_be_bytes(len);
    if len == 0 || len > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("a frame of {len} bytes"),
        ));
    }
    let mut body = Zeroizing::new(vec![0u8; len as usize]);
    conn.read_exact(&mut body)?;
    match body.split_first() {
        Some((&PROTOCOL, rest)) => postcard::from_bytes(rest)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string())),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "control protocol {} (this build speaks {PROTOCOL})",
                body[0]
            ),
        )),
    }
}

/// The process at the other end of `conn`.
fn peer(conn: &UnixStream) -> Option<Peer> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: `cred` and `len` are valid for writes of the sizes given.
    let rc = unsafe {
        libc::getsockopt(
            conn.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    (rc == 0).then_some(Peer {
        uid: cred.uid,
        gid: cred.gid,
        pid: cred.pid as u32,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_reject_other_versions() {
        let (mut a, mut b) = UnixStream::pair().unwrap();
        write_frame(
            &mut a,
            &Request::SnapshotCreate {
                name: "nightly".into(),
            },
        )
        .unwrap();
        match read_frame::<Request>(&mut b).unwrap() {
            Request::SnapshotCreate { name } => assert_eq!(name, "nightly"),
            other => panic!("{other:?}"),
        }
        a.write_all(&2u32.to_be_bytes()).unwrap();
        a.write_all(&[9, 0]).unwrap();
        let e = read_frame::<Request>(&mut b).unwrap_err();
        assert!(e.to_string().contains("control protocol 9"), "{e}");
        let me = peer(&a).unwrap();
        assert_eq!(me.uid, unsafe { libc::geteuid() });
        assert_eq!(me.pid, std::process::id());
    }
}
