//! The `sealedfs` command: `init`, `mount`, `unmount`, and the daemon
//! lifecycle behind `mount`.
//!
//! The contract scripts rely on (DESIGN.md, "Command line"):
//! - every failure prints exactly one line, `sealedfs: <reason>`, on
//!   stderr, and exits with the code [`error`] chooses (1 usage or bad
//!   input, 2 wrong passphrase, 3 store unreachable, 4 busy, 5 integrity);
//!   clap's own usage errors are folded into that line and exit 1;
//! - `mount` returns once the mount serves requests (exit 0) or has failed
//!   (the daemon's one-line reason and code); see [`daemon`] and [`mount`];
//! - `unmount` returns once the daemon committed everything and exited.
//!
//! - mount.fuse3 (fstab, `mount -t fuse.sealedfs`) calls `sealedfs STORE
//!   MOUNTPOINT -o OPTS`, without the `mount` word; [`fstab`] puts it back.
//!
//! Ordering rules: `SEALEDFS_PASSPHRASE` and `NOTIFY_SOCKET` are taken out
//! of the environment first, while the process has one thread (removing a
//! variable is unsafe once threads exist), and before anything can fork or
//! exec.
//!
//! Module map: [`args`] grammar and pure parsers; [`help`] help texts,
//! version, man pages, completions; [`error`] exit codes; [`passphrase`]
//! sources; [`settings`] which source of a setting wins; [`config`] the
//! config file; [`mount_options`] `-o`; [`fstab`] mount.fuse3's calls;
//! [`location`] STORE arguments; [`header`] the volume header; [`init`],
//! [`mount`], [`unmount`], [`snapshot`] the commands; [`daemon`] fork and
//! readiness; [`notify`] systemd readiness; [`process`] core dumps,
//! signals, /proc; [`pidfile`] finding a daemon; [`mounts`] the mount
//! table; [`logging`]; [`anchor`] what this host remembers of each volume
//! (rollback checks). For commands that report: [`json`] (`--json`) and
//! [`progress`] (bars).

pub mod anchor;
pub mod args;
pub mod audit;
pub mod config;
pub mod control;
pub mod daemon;
pub mod error;
pub mod fsck;
pub mod fstab;
pub mod header;
pub mod help;
pub mod init;
pub mod json;
pub mod key;
pub mod kms;
pub mod location;
pub mod lock;
pub mod logging;
pub mod memory;
pub mod mount;
pub mod mount_options;
pub mod mounts;
pub mod notify;
pub mod passphrase;
pub mod pidfile;
pub mod process;
pub mod progress;
pub mod replicate;
pub mod rotation;
pub mod settings;
pub mod snapshot;
pub mod status;
pub mod unlock;
pub mod unmount;
pub mod writer;

use clap::error::ErrorKind;
use clap::{CommandFactory, Parser};

use args::{Cli, Command};
use error::EXIT_USAGE;

/// Runs the command line; returns the process exit code.
pub fn main() -> i32 {
    let env_pass = passphrase::take_env();
    let new_env_pass = passphrase::take_new_env();
    notify::take_env();
    logging::init();
    let argv = fstab::helper_form(std::env::args_os().collect(), &Cli::command());
    let cli = match Cli::try_parse_from(argv) {
        Ok(cli) => cli,
        Err(e) => return clap_exit(e),
    };
    let config = cli.config.as_deref();
    let result = match cli.command {
        Command::Completions(a) => {
            help::completions(a.shell, &mut std::io::stdout());
            Ok(())
        }
        Command::Manpages(a) => help::manpages(&a.dir),
        Command::Init(a) => init::run(a, env_pass, config),
        Command::Mount(a) => {
            memory::limit_malloc_arenas();
            mount::run(a, env_pass, config)
        }
        Command::Unmount(a) => unmount::run(a),
        Command::Snapshot(a) => snapshot::run(a, env_pass),
        Command::Replicate(a) => replicate::run(a),
        Command::Fsck(a) => fsck::run(a, env_pass),
        Command::Audit(a) => audit::run(*a, env_pass),
        Command::Status(a) => status::run(a),
        Command::Lock(a) => lock::lock(a),
        Command::Unlock(a) => lock::unlock(a, env_pass),
        Command::Key(a) => key::run(a, env_pass, new_env_pass),
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("sealedfs: {}", e.msg);
            e.code
        }
    }
}

/// Help and version print as usual (exit 0); usage errors become one line
/// and exit 1 (clap's own code 2 would read as "wrong passphrase").
fn clap_exit(e: clap::Error) -> i32 {
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            let _ = e.print();
            0
        }
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand | ErrorKind::MissingSubcommand => {
            eprintln!(
                "sealedfs: missing command: one of {} (see sealedfs --help)",
                command_names().join(", ")
            );
            EXIT_USAGE
        }
        _ => {
            eprintln!("sealedfs: {}", clap_reason(&e.render().to_string()));
            EXIT_USAGE
        }
    }
}

/// The visible commands in `--help` order.
fn command_names() -> Vec<String> {
    let mut cmd = Cli::command();
    cmd.build();
    let mut subs: Vec<&clap::Command> = cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
        .collect();
    subs.sort_by_key(|s| s.get_display_order());
    subs.iter().map(|s| s.get_name().to_owned()).collect()
}

/// The first paragraph of clap's message on one line, without its
/// `error: ` prefix (the usage text and tips after it are dropped).
fn clap_reason(rendered: &str) -> String {
    let paragraph: Vec<&str> = rendered
        .lines()
        .map(str::trim)
        .take_while(|l| !l.is_empty())
        .collect();
    let joined = paragraph.join(" ");
    let reason = joined.strip_prefix("error: ").unwrap_or(&joined);
    match reason {
        "" => "invalid arguments".to_string(),
        r => r.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clap_errors_become_one_line() {
        let e = Cli::try_parse_from(["sealedfs", "mount", "/s"]).unwrap_err();
        let reason = clap_reason(&e.render().to_string());
        assert!(!reason.contains('\n'));
        assert_eq!(
            reason,
            "the following required arguments were not provided: <MOUNTPOINT>"
        );
        let e = Cli::try_parse_from(["sealedfs", "init", "/s", "--chunk-size", "1X"]).unwrap_err();
        let reason = clap_reason(&e.render().to_string());
        assert!(reason.starts_with("invalid value '1X'"), "{reason}");
        assert_eq!(clap_exit(e), EXIT_USAGE);
    }

    #[test]
    fn commands_are_named_in_help_order() {
        let names = command_names();
        assert_eq!(&names[..3], ["init", "mount", "unmount"]);
        assert_eq!(names.last().map(String::as_str), Some("completions"));
        assert!(!names.iter().any(|n| n == "manpages" || n == "help"));
    }
}
