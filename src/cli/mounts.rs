//! The kernel's mount table (`/proc/self/mountinfo`) and lazy unmounts.
//!
//! A mountpoint whose daemon was killed answers every access with
//! `ENOTCONN` until it is unmounted; `mount` and `unmount` clear such dead
//! mounts with a lazy unmount (`MNT_DETACH` as root, `fusermount3 -u -z`
//! otherwise), the only kind that works when nobody serves the mount.

use std::ffi::OsString;
use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::error::{CliError, CliResult};

/// One line of `mountinfo`, the fields we use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    pub mount_point: PathBuf,
    pub fstype: String,
    pub source: String,
}

impl MountEntry {
    /// sealedfs mounts carry `subtype=sealedfs` (type `fuse.sealedfs`) and
    /// `fsname=sealedfs` (the source).
    pub fn is_sealedfs(&self) -> bool {
        self.fstype == "fuse.sealedfs"
            || (self.fstype.starts_with("fuse") && self.source == "sealedfs")
    }
}

/// The topmost mount at `mount_point` (an absolute, canonical path).
pub fn find(mount_point: &Path) -> io::Result<Option<MountEntry>> {
    let text = std::fs::read("/proc/self/mountinfo")?;
    Ok(parse_mountinfo(&text)
        .into_iter()
        .rfind(|m| m.mount_point == mount_point))
}

/// Parses mountinfo(5): `id parent maj:min root mount_point opts
/// [optional…] - fstype source super_opts`, with `\040`-style escapes.
pub fn parse_mountinfo(text: &[u8]) -> Vec<MountEntry> {
    text.split(|&b| b == b'\n')
        .filter_map(|line| {
            let fields: Vec<&[u8]> = line
                .split(|&b| b == b' ')
                .filter(|f| !f.is_empty())
                .collect();
            let dash = fields.iter().position(|f| *f == b"-")?;
            let mount_point = fields.get(4).filter(|_| dash >= 6)?;
            Some(MountEntry {
                mount_point: PathBuf::from(OsString::from_vec(unescape(mount_point))),
                fstype: String::from_utf8_lossy(&unescape(fields.get(dash + 1)?)).into_owned(),
                source: String::from_utf8_lossy(&unescape(fields.get(dash + 2)?)).into_owned(),
            })
        })
        .collect()
}

/// Undoes the kernel's octal escapes (`\040` space, `\011` tab, `\012`
/// newline, `\134` backslash).
fn unescape(field: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        let octal = field
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)))
            .and_then(|d| {
                let value = d.iter().fold(0u32, |acc, c| acc * 8 + u32::from(c - b'0'));
                u8::try_from(value).ok()
            });
        match (field[i], octal) {
            (b'\\', Some(byte)) => {
                out.push(byte);
                i += 4;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

/// True when `path` is a FUSE mount whose daemon is gone. `statfs` is
/// never answered from the kernel's caches (a `stat` may be, for the
/// attribute TTL), so it reaches the dead connection and fails `ENOTCONN`.
pub fn is_dead(path: &Path) -> bool {
    let Ok(c_path) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    let mut buf = std::mem::MaybeUninit::<libc::statfs>::uninit();
    // SAFETY: `c_path` is NUL-terminated and `buf` has room for a statfs.
    let rc = unsafe { libc::statfs(c_path.as_ptr(), buf.as_mut_ptr()) };
    rc != 0 && io::Error::last_os_error().raw_os_error() == Some(libc::ENOTCONN)
}

/// Detaches the mount at `path` even if its daemon is gone.
pub fn lazy_unmount(path: &Path) -> CliResult<()> {
    // SAFETY: geteuid has no arguments and cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        let c_path = std::ffi::CString::new(path.as_os_str().as_bytes())
            .map_err(|_| CliError::usage("mountpoint path contains a NUL byte"))?;
        // SAFETY: `c_path` is a valid NUL-terminated string.
        if unsafe { libc::umount2(c_path.as_ptr(), libc::MNT_DETACH) } == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        return Err(CliError::usage(format!(
            "cannot unmount {}: {e}",
            path.display()
        )));
    }
    let output = Command::new("fusermount3")
        .args(["-u", "-z", "--"])
        .arg(path)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| CliError::usage(format!("cannot run fusermount3: {e}")))?;
    if output.status.success() {
        return Ok(());
    }
    Err(CliError::usage(format!(
        "cannot unmount {}: {}",
        path.display(),
        String::from_utf8_lossy(&output.stderr).trim()
    )))
}

/// The canonical form of a mountpoint, also when the mountpoint itself
/// cannot be resolved (a dead mount answers `ENOTCONN`): then its parent
/// is resolved and the last component kept.
pub fn canonical(path: &Path) -> CliResult<PathBuf> {
    let bad = |e: io::Error| CliError::usage(format!("mountpoint {}: {e}", path.display()));
    match std::fs::canonicalize(path) {
        Ok(p) => Ok(p),
        Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => {
            let name = path.file_name().ok_or_else(|| bad(e))?;
            let parent = match path.parent() {
                Some(p) if !p.as_os_str().is_empty() => p,
                _ => Path::new("."),
            };
            Ok(std::fs::canonicalize(parent).map_err(bad)?.join(name))
        }
        Err(e) => Err(bad(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &[u8] = b"\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
45 22 0:40 / /mnt/my\\040vol rw,nosuid,nodev,noatime shared:30 - fuse.sealedfs sealedfs rw,user_id=1000,group_id=1000,default_permissions
46 22 0:41 / /mnt/other rw,nosuid,nodev - fuse sealedfs rw,user_id=0
47 22 0:42 / /mnt/sshfs rw - fuse.sshfs host:/x rw
48 22 0:43 / /mnt/sshfs rw - fuse.sealedfs sealedfs rw
garbage line
";

    #[test]
    fn mountinfo_parsing() {
        let m = parse_mountinfo(SAMPLE);
        assert_eq!(m.len(), 5);
        assert_eq!(m[0].mount_point, Path::new("/"));
        assert_eq!(m[0].fstype, "ext4");
        assert!(!m[0].is_sealedfs());
        assert_eq!(m[1].mount_point, Path::new("/mnt/my vol"));
        assert!(m[1].is_sealedfs());
        assert_eq!(m[2].source, "sealedfs");
        assert!(m[2].is_sealedfs());
        assert!(!m[3].is_sealedfs());
        // The later (topmost) mount at one path wins.
        let top = parse_mountinfo(SAMPLE)
            .into_iter()
            .rfind(|e| e.mount_point == Path::new("/mnt/sshfs"))
            .unwrap();
        assert!(top.is_sealedfs());
    }

    #[test]
    fn escapes() {
        assert_eq!(unescape(b"a\\040b\\011c\\134d"), b"a b\tc\\d");
        assert_eq!(unescape(b"trailing\\04"), b"trailing\\04");
        assert_eq!(unescape(b"\\ ab"), b"\\ ab");
        assert_eq!(unescape(b"\\999"), b"\\999");
        assert_eq!(unescape(b"\\777"), b"\\777");
    }

    #[test]
    fn root_is_mounted_and_alive() {
        assert!(find(Path::new("/")).unwrap().is_some());
        assert!(!is_dead(Path::new("/")));
        assert!(!is_dead(Path::new("/nonexistent")));
    }

    #[test]
    fn canonical_paths() {
        let dir = tempfile::tempdir().unwrap();
        let real = std::fs::canonicalize(dir.path()).unwrap();
        assert_eq!(canonical(dir.path()).unwrap(), real);
        assert_eq!(canonical(&dir.path().join("missing")).unwrap_err().code, 1);
    }
}
