//! Mounting from fstab, `mount -t fuse.sealedfs` and systemd `.mount`
//! units: what mount(8) and mount.fuse3 hand us.
//!
//! For a line `STORE MOUNTPOINT fuse.sealedfs OPTIONS 0 0` (or the older
//! `sealedfs#STORE MOUNTPOINT fuse OPTIONS 0 0`), mount(8) runs
//! `/sbin/mount.fuse3 STORE MOUNTPOINT -o OPTIONS -t fuse.sealedfs`, which
//! runs, through `/bin/sh -c`,
//!
//! ```text
//! sealedfs STORE MOUNTPOINT -o OPTIONS
//! ```
//!
//! with no `mount` word, no terminal when started by systemd, and no
//! `PATH` (mount(8) removes it, so `sh` searches its default, which holds
//! `/usr/local/bin`, `/usr/bin` and `/sbin`: install the binary there).
//! mount.fuse3 always passes `-o` (it adds `dev,suid` unless told
//! `nodev,nosuid`) and has removed `nofail`, `_netdev`, `user`, `auto` and
//! their kind; mount(8) has removed `x-*` and `defaults` and added `rw`
//! unless `ro`. What is left is checked by `mount_options`.
//!
//! [`helper_form`] turns that call into `sealedfs mount STORE MOUNTPOINT
//! -o OPTIONS` when the first argument is no subcommand and an `-o`
//! follows, so a typo of a subcommand (`sealedfs mout …`, no `-o`) is
//! still reported as one. The subcommands come from the clap definition,
//! so commands added later are never taken for a store.
//!
//! The daemon then behaves as under `sealedfs mount`: it returns once the
//! mount answers (mount(8) exits 0) or fails with the one-line reason and
//! exit code, which mount(8) passes on. `umount MOUNTPOINT` ends the FUSE
//! session; the daemon then commits everything and exits. `umount`
//! itself returns before that commit; `sealedfs unmount` waits for it.
//!
//! mount.fuse3's `drop_privileges` mounts by itself and hands over
//! `/dev/fd/N` as the mountpoint; sealedfs mounts through fuser and cannot
//! take a ready descriptor, so that is refused by name ([`check_mountpoint`]).

use std::ffi::OsString;
use std::path::Path;

use super::error::{CliError, CliResult};

/// `argv` with `mount` inserted when it is mount.fuse3's helper call
/// (see the module comment); otherwise `argv` unchanged.
pub fn helper_form(mut argv: Vec<OsString>, cmd: &clap::Command) -> Vec<OsString> {
    let Some(first) = argv.get(1).and_then(|a| a.to_str()) else {
        return argv;
    };
    let is_subcommand = first == "help"
        || cmd
            .get_subcommands()
            .any(|s| s.get_name() == first || s.get_all_aliases().any(|a| a == first));
    let has_o = argv
        .iter()
        .skip(2)
        .any(|a| a.to_str().is_some_and(|a| a.starts_with("-o")));
    if first.starts_with('-') || is_subcommand || argv.len() < 3 || !has_o {
        return argv;
    }
    argv.insert(1, OsString::from("mount"));
    argv
}

/// Refuses the `/dev/fd/N` mountpoint of mount.fuse3's `drop_privileges`.
pub fn check_mountpoint(path: &Path) -> CliResult<()> {
    if path.starts_with("/dev/fd") {
        return Err(CliError::usage(format!(
            "mountpoint {} is a file descriptor (mount.fuse3's drop_privileges option): \
             sealedfs mounts by itself; remove drop_privileges",
            path.display()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::args::Cli;
    use clap::CommandFactory;

    fn run(args: &[&str]) -> Vec<String> {
        let argv = args.iter().map(OsString::from).collect();
        helper_form(argv, &Cli::command())
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect()
    }

    #[test]
    fn mount_fuse3_calls_become_mounts() {
        assert_eq!(
            run(&["sealedfs", "/srv/vault", "/mnt/x", "-o", "rw,dev,suid"]),
            [
                "sealedfs",
                "mount",
                "/srv/vault",
                "/mnt/x",
                "-o",
                "rw,dev,suid"
            ]
        );
        assert_eq!(
            run(&["sealedfs", "s3://b/p", "/mnt/x", "-orw"]),
            ["sealedfs", "mount", "s3://b/p", "/mnt/x", "-orw"]
        );
    }

    #[test]
    fn everything_else_is_left_alone() {
        for args in [
            &["sealedfs", "mount", "/v", "/m", "-o", "ro"][..],
            &["sealedfs", "unmount", "/m"],
            &["sealedfs", "init", "/v"],
            &["sealedfs", "help", "mount", "-o"],
            &["sealedfs", "--version"],
            &["sealedfs", "mout", "/v", "/m"],
            &["sealedfs", "/v", "/m"],
            &["sealedfs", "/v"],
            &["sealedfs"],
        ] {
            assert_eq!(run(args), args, "{args:?}");
        }
    }

    #[test]
    fn file_descriptor_mountpoints_are_refused() {
        let e = check_mountpoint(Path::new("/dev/fd/3")).unwrap_err();
        assert_eq!(e.code, 1);
        assert!(e.msg.contains("drop_privileges"), "{}", e.msg);
        assert!(check_mountpoint(Path::new("/mnt/dev/fd")).is_ok());
    }
}
