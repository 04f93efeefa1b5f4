//! The unprivileged user tests act as: `sealedfs-test`, created once with
//! useradd when it is missing. Calls whose errno matters run in a forked
//! child that drops to the user with raw setgroups/setresgid/setresuid
//! syscalls; shell commands run through `setpriv`.

use std::sync::OnceLock;

use std::process::Command;

use super::util::{errno, sh};

pub const USER: &str = "sealedfs-test";

/// The test user's (uid, gid), creating the user on first use.
pub fn user() -> (u32, u32) {
    static IDS: OnceLock<(u32, u32)> = OnceLock::new();
    *IDS.get_or_init(|| {
        sh(&format!(
            "id -u {USER} >/dev/null 2>&1 || useradd --system --no-create-home \
             --shell /usr/sbin/nologin {USER} || id -u {USER}"
        ));
        let uid = sh(&format!("id -u {USER}")).trim().parse().unwrap();
        let gid = sh(&format!("id -g {USER}")).trim().parse().unwrap();
        assert_ne!(uid, 0);
        (uid, gid)
    })
}

/// Runs `f` as (uid, gid) with no supplementary groups in a forked child
/// and returns its result: 0 for success or an errno. `f` may make only
/// plain libc calls (the parent has other threads).
pub fn as_user(uid: u32, gid: u32, f: impl FnOnce() -> i32) -> i32 {
    as_user_pid(uid, gid, f).1
}

/// [`as_user`], also returning the child's pid.
pub fn as_user_pid(uid: u32, gid: u32, f: impl FnOnce() -> i32) -> (u32, i32) {
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork");
    if pid == 0 {
        let dropped = unsafe {
            libc::syscall(libc::SYS_setgroups, 0, std::ptr::null::<libc::gid_t>()) == 0
                && libc::syscall(libc::SYS_setresgid, gid, gid, gid) == 0
                && libc::syscall(libc::SYS_setresuid, uid, uid, uid) == 0
        };
        let result = if dropped { f() } else { 200 };
        unsafe { libc::_exit(result) };
    }
    let mut status = 0;
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    assert!(libc::WIFEXITED(status), "child status {status:#x}");
    let result = libc::WEXITSTATUS(status);
    assert_ne!(result, 200, "could not drop privileges");
    (pid as u32, result)
}

/// 0 if `ret` is not negative, else errno: what a child returns.
pub fn code(ret: libc::c_long) -> i32 {
    if ret < 0 { errno() } else { 0 }
}

/// Runs a shell command as the test user; returns (success, stdout+stderr).
pub fn user_sh(cmd: &str) -> (bool, String) {
    let (uid, gid) = user();
    let out = Command::new("setpriv")
        .args([
            &format!("--reuid={uid}"),
            &format!("--regid={gid}"),
            "--clear-groups",
            "--",
            "sh",
            "-c",
            cmd,
        ])
        .current_dir("/")
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}
