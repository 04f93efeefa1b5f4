//! How `unmount` finds the daemon serving a mountpoint.
//!
//! The daemon writes `<runtime dir>/<name>.pid` holding `"<pid> <start
//! time>\n"`, where `<name>` is the first 16 bytes of SHA-256 of the
//! canonical mountpoint path in hex, and removes it when it exits.
//! Runtime dir: `/run/sealedfs` for root; else `$XDG_RUNTIME_DIR/sealedfs`,
//! `/run/user/<uid>/sealedfs`, or `/tmp/sealedfs-<uid>` (mode 0700, must
//! be ours and not a symlink).
//!
//! When it exits the daemon leaves `<name>.exit` beside it, holding
//! `"<pid> <start time> <exit code> <one-line reason>\n"`, so `unmount`
//! can report what the daemon could not commit (it is not the daemon's
//! parent and cannot read its exit code); `unmount` removes it.
//!
//! A pid alone could name a recycled process after a crash, so `unmount`
//! trusts a file only when the process with that pid has the recorded
//! start time, is alive, and calls itself `sealedfs`. Root also searches
//! every user's runtime dir, and then also requires the file's owner to be
//! root or the process's own user, so a planted file cannot aim root's
//! SIGTERM at someone else.

use std::fs::{self, DirBuilder};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::process::{DAEMON_NAME, ProcStat};

/// Removes the file when dropped (the daemon's lifetime).
pub struct PidFile {
    path: PathBuf,
}

impl Drop for PidFile {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// Records this process as the daemon of `mount_point` (canonical).
pub fn write(mount_point: &Path) -> io::Result<PidFile> {
    write_named(&file_name(mount_point))
}

/// Records this process as the writer serving the store at `location`
/// (`StoreSpec::location`), so commands given the store find it.
pub fn write_for_location(location: &str) -> io::Result<PidFile> {
    write_named(&location_name(location))
}

/// The live daemon serving the store at `location`, if one recorded itself.
pub fn find_daemon_for_location(location: &str) -> Option<i32> {
    let name = location_name(location);
    candidate_dirs()
        .into_iter()
        .filter_map(|dir| verified_pid(&dir.join(&name)))
        .next()
}

/// This user's runtime directory (created private if missing).
pub fn own_runtime_dir() -> io::Result<PathBuf> {
    let dir = own_dir();
    ensure_private_dir(&dir)?;
    Ok(dir)
}

/// Every runtime directory a daemon this caller may talk to could use.
pub fn runtime_dirs() -> Vec<PathBuf> {
    candidate_dirs()
}

fn write_named(name: &str) -> io::Result<PidFile> {
    let dir = own_dir();
    ensure_private_dir(&dir)?;
    let me = ProcStat::of_self().ok_or_else(|| io::Error::other("cannot read /proc/self/stat"))?;
    let pid = std::process::id();
    let path = dir.join(name);
    let tmp = dir.join(format!(".{pid}.tmp"));
    let mut f = fs::File::create(&tmp)?;
    f.write_all(format!("{pid} {}\n", me.start_time).as_bytes())?;
    drop(f);
    fs::rename(&tmp, &path)?;
    Ok(PidFile { path })
}

/// Records how this daemon of `mount_point` ends (`code` 0: cleanly).
pub fn record_exit(mount_point: &Path, code: i32, msg: &str) -> io::Result<()> {
    let dir = own_dir();
    ensure_private_dir(&dir)?;
    let me = ProcStat::of_self().ok_or_else(|| io::Error::other("cannot read /proc/self/stat"))?;
    let pid = std::process::id();
    let tmp = dir.join(format!(".{pid}.exit.tmp"));
    let line = msg.split_whitespace().collect::<Vec<_>>().join(" ");
    fs::write(&tmp, format!("{pid} {} {code} {line}\n", me.start_time))?;
    fs::rename(&tmp, dir.join(exit_name(mount_point)))
}

/// How the daemon `pid` (started at `start_time`) of `mount_point` ended,
/// if it said: (exit code, reason). The record is removed.
pub fn take_exit(mount_point: &Path, pid: i32, start_time: u64) -> Option<(i32, String)> {
    let name = exit_name(mount_point);
    for path in candidate_dirs().into_iter().map(|d| d.join(&name)) {
        let Ok(text) = fs::read_to_string(&path) else {
            continue;
        };
        let mut it = text.trim_end().splitn(4, ' ');
        let ours = it.next().and_then(|p| p.parse::<i32>().ok()) == Some(pid)
            && it.next().and_then(|t| t.parse::<u64>().ok()) == Some(start_time);
        let trusted = euid() != 0
            || fs::metadata(&path)
                .is_ok_and(|m| m.uid() == 0 || Some(m.uid()) == own_uid_of(&path));
        if !(ours && trusted) {
            continue;
        }
        let code = it.next()?.parse().ok()?;
        let msg = it.next().unwrap_or("").to_owned();
        let _ = fs::remove_file(&path);
        return Some((code, msg));
    }
    None
}

/// The user a per-user runtime dir belongs to.
fn own_uid_of(path: &Path) -> Option<u32> {
    fs::metadata(path.parent()?).ok().map(|m| m.uid())
}

/// The live daemon serving `mount_point` (canonical), if one recorded itself.
pub fn find_daemon(mount_point: &Path) -> Option<i32> {
    let name = file_name(mount_point);
    candidate_dirs()
        .into_iter()
        .filter_map(|dir| verified_pid(&dir.join(&name)))
        .next()
}

/// Removes this user's pid file for `mount_point` if no live daemon
/// stands behind it (the daemon was killed).
pub fn remove_stale(mount_point: &Path) {
    let path = own_dir().join(file_name(mount_point));
    if path.exists() && verified_pid(&path).is_none() {
        let _ = fs::remove_file(path);
    }
}

fn verified_pid(path: &Path) -> Option<i32> {
    let (pid, start_time) = parse(&fs::read_to_string(path).ok()?)?;
    let stat = ProcStat::of(pid)?;
    let same = stat.start_time == start_time && !stat.is_gone() && stat.comm == DAEMON_NAME;
    if !same {
        return None;
    }
    if euid() == 0 {
        let owner = fs::metadata(path).ok()?.uid();
        if owner != 0 && Some(owner) != process_uid(pid) {
            return None;
        }
    }
    Some(pid)
}

/// Parses `"<pid> <start time>\n"`.
pub fn parse(text: &str) -> Option<(i32, u64)> {
    let mut it = text.split_whitespace();
    let pid = it.next()?.parse::<i32>().ok().filter(|p| *p > 0)?;
    let start_time = it.next()?.parse().ok()?;
    Some((pid, start_time))
}

fn file_name(mount_point: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    let digest = Sha256::digest(mount_point.as_os_str().as_bytes());
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("{hex}.pid")
}

fn location_name(location: &str) -> String {
    let digest = Sha256::digest(format!("location {location}").as_bytes());
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("{hex}.loc")
}

fn exit_name(mount_point: &Path) -> String {
    file_name(mount_point).replace(".pid", ".exit")
}

fn euid() -> u32 {
    // SAFETY: no arguments, cannot fail.
    unsafe { libc::geteuid() }
}

fn own_dir() -> PathBuf {
    let uid = euid();
    if uid == 0 {
        return PathBuf::from("/run/sealedfs");
    }
    let xdg = std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from);
    if let Some(xdg) = xdg.filter(|p| p.is_absolute()) {
        return xdg.join("sealedfs");
    }
    let run_user = PathBuf::from(format!("/run/user/{uid}"));
    if run_user.is_dir() {
        return run_user.join("sealedfs");
    }
    PathBuf::from(format!("/tmp/sealedfs-{uid}"))
}

fn candidate_dirs() -> Vec<PathBuf> {
    let uid = euid();
    let mut dirs = vec![
        own_dir(),
        PathBuf::from(format!("/run/user/{uid}/sealedfs")),
        PathBuf::from(format!("/tmp/sealedfs-{uid}")),
    ];
    if uid == 0 {
        let subdirs = |parent: &str, keep: &dyn Fn(&str) -> Option<PathBuf>| -> Vec<PathBuf> {
            let Ok(entries) = fs::read_dir(parent) else {
                return Vec::new();
            };
            entries
                .filter_map(|e| keep(e.ok()?.file_name().to_str()?))
                .collect()
        };
        dirs.extend(subdirs("/run/user", &|n| {
            Some(Path::new("/run/user").join(n).join("sealedfs"))
        }));
        dirs.extend(subdirs("/tmp", &|n| {
            n.starts_with("sealedfs-")
                .then(|| Path::new("/tmp").join(n))
        }));
    }
    let mut unique: Vec<PathBuf> = Vec::with_capacity(dirs.len());
    for d in dirs {
        if !unique.contains(&d) {
            unique.push(d);
        }
    }
    unique
}

/// Creates `dir` (0700) or checks that an existing one is a real directory
/// owned by us and closed to others.
fn ensure_private_dir(dir: &Path) -> io::Result<()> {
    match DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    let meta = fs::symlink_metadata(dir)?;
    if !meta.is_dir() || meta.uid() != euid() || meta.mode() & 0o022 != 0 {
        return Err(io::Error::other(format!(
            "{} is not a private directory of this user",
            dir.display()
        )));
    }
    Ok(())
}

/// The real uid of a process, from `/proc/PID/status`.
fn process_uid(pid: i32) -> Option<u32> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contents() {
        assert_eq!(parse("123 456\n"), Some((123, 456)));
        assert_eq!(parse("123"), None);
        assert_eq!(parse("-1 5"), None);
        assert_eq!(parse("0 5"), None);
        assert_eq!(parse("x 5"), None);
    }

    #[test]
    fn names_hide_the_path_and_are_stable() {
        let a = file_name(Path::new("/mnt/patients"));
        assert_eq!(a, file_name(Path::new("/mnt/patients")));
        assert_ne!(a, file_name(Path::new("/mnt/patients2")));
        assert!(!a.contains("patients"));
        assert_eq!(a.len(), 32 + 4);
    }

    #[test]
    fn own_process_uid() {
        assert_eq!(
            process_uid(std::process::id() as i32),
            Some(unsafe { libc::getuid() })
        );
    }

    #[test]
    fn private_dir_is_checked() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("run");
        ensure_private_dir(&d).unwrap();
        ensure_private_dir(&d).unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&d, &link).unwrap();
        assert!(ensure_private_dir(&link).is_err());
    }
}
