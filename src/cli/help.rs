//! What `--help`, `--version`, the man pages and the shell completions
//! say. All of it comes from the clap definitions in `args`, so a new
//! subcommand or flag shows up everywhere without anyone copying text.
//!
//! - `--version` names the on-disk formats this build reads: the volume
//!   header's [`FORMAT_VERSION`] and the metadata's [`META_VERSION`] (an
//!   operator comparing two hosts needs those more than the crate version).
//! - `--help` of each command ends with examples; the top level's long
//!   help (`--help`, and the man page) lists exit codes, files and
//!   environment variables. The exit codes are printed from the constants
//!   in `error`, so the text cannot drift from what the code returns.
//! - `sealedfs completions SHELL` prints a completion script
//!   (clap_complete); `sealedfs manpages DIR` (hidden: for packagers)
//!   writes `sealedfs.1` and one `sealedfs-CMD.1` per subcommand
//!   (clap_mangen). A unit test checks that every visible subcommand,
//!   nested ones included, appears in both.

use std::io::Write;
use std::path::Path;
use std::sync::LazyLock;

use clap::CommandFactory;
use clap_complete::Shell;

use super::args::Cli;
use super::config;
use super::error::{
    CliError, CliResult, EXIT_BUSY, EXIT_INTEGRITY, EXIT_STORE, EXIT_USAGE, EXIT_WRONG_KEY,
};
use crate::meta::META_VERSION;
use crate::volume::FORMAT_VERSION;

static VERSION: LazyLock<String> = LazyLock::new(|| {
    format!(
        "{} (volume format {FORMAT_VERSION}, metadata format {META_VERSION})",
        env!("CARGO_PKG_VERSION")
    )
});

/// `sealedfs --version` prints `sealedfs ` and this.
pub fn version() -> &'static str {
    VERSION.as_str()
}

static ROOT_LONG_HELP: LazyLock<String> = LazyLock::new(|| {
    format!(
        "Exit status:
  0  ok
  {EXIT_USAGE}  usage or bad input: a missing or busy mountpoint, a store that is not a volume, an unknown format version, a bad option
  {EXIT_WRONG_KEY}  wrong passphrase or key
  {EXIT_STORE}  store unreachable or access denied
  {EXIT_BUSY}  volume busy: mounted read-write elsewhere
  {EXIT_INTEGRITY}  integrity failure: the store holds damaged or tampered objects
Errors are one line on stderr: what happened and what to do.

Files:
  {}  settings per volume (--config FILE or SEALEDFS_CONFIG=FILE name another)

Environment:
  SEALEDFS_PASSPHRASE   the passphrase (removed from the environment at start)
  SEALEDFS_CONFIG       the config file
  SEALEDFS_LOG_FILE     where the daemon appends its log (no names, paths or contents)
  RUST_LOG              log level, e.g. info or debug
  AWS_REGION, AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, ...  the usual AWS settings
  NOTIFY_SOCKET         systemd's readiness socket (Type=notify)",
        config::DEFAULT_PATH
    )
});

/// The top level's `--help` epilogue and the man page's extra section.
pub fn root_long_help() -> &'static str {
    ROOT_LONG_HELP.as_str()
}

pub const INIT_EXAMPLES: &str = "Examples:
  sealedfs init ./vault                          # asks for the passphrase twice
  sealedfs init s3://ehr-prod/volume1            # the bucket must exist, the prefix be empty
  sealedfs init s3://test/vol --endpoint http://127.0.0.1:9000 --path-style
  sealedfs init ./vault --key-file /etc/sealedfs/vault.key   # unlocked by a key file";

pub const MOUNT_EXAMPLES: &str = "Examples:
  sealedfs mount ./vault ./mnt                   # returns once mounted; serves in the background
  sealedfs mount ./vault ./mnt -o allow_other    # other users too (permissions still checked)
  sealedfs mount s3://ehr-prod/volume1 /srv/ehr -o passphrase_file=/etc/sealedfs/ehr.pass
  sealedfs mount ./vault ./mnt --read-only --cache-size 1G --foreground
  mount -t fuse.sealedfs -o passphrase_file=/etc/sealedfs/ehr.pass s3://ehr-prod/volume1 /srv/ehr

fstab (sealedfs installed in /usr/local/bin, /usr/bin or /sbin):
  s3://ehr-prod/volume1  /srv/ehr  fuse.sealedfs  _netdev,nofail,allow_other,passphrase_file=/etc/sealedfs/ehr.pass  0 0";

pub const UNMOUNT_EXAMPLES: &str = "Examples:
  sealedfs unmount ./mnt       # commits everything; returns after the daemon exited
  umount /srv/ehr              # also commits, but returns before the daemon is done";

pub const AUDIT_EXAMPLES: &str = "Examples:
  sealedfs audit s3://ehr-prod/volume1 --since 2026-11-01 --uid 1001 --path /patients/ --format csv > access.csv
  sealedfs audit ./vault --since 2h --failed              # refusals and errors of the last two hours
  sealedfs audit ./vault --op unlink --format json | jq .path
  sealedfs audit verify s3://ehr-prod/volume1             # exit 0 intact, 5 naming the first bad segment
  sealedfs audit prune s3://ehr-prod/volume1 --before 2020-01-01";

pub const COMPLETIONS_EXAMPLES: &str = "Examples:
  sealedfs completions bash > /etc/bash_completion.d/sealedfs
  sealedfs completions zsh > /usr/local/share/zsh/site-functions/_sealedfs
  sealedfs completions fish > ~/.config/fish/completions/sealedfs.fish";

/// Writes the completion script for `shell` to `out`.
pub fn completions(shell: Shell, out: &mut dyn Write) {
    clap_complete::generate(shell, &mut Cli::command(), "sealedfs", out);
}

/// Writes `sealedfs.1` and a page per subcommand into `dir`.
pub fn manpages(dir: &Path) -> CliResult<()> {
    std::fs::create_dir_all(dir)
        .and_then(|()| clap_mangen::generate_to(Cli::command(), dir))
        .map_err(|e| CliError::usage(format!("cannot write man pages to {}: {e}", dir.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every visible subcommand at any depth, as `["snapshot", "create"]`.
    fn visible_paths(cmd: &clap::Command, above: &[String], out: &mut Vec<Vec<String>>) {
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
            let mut path = above.to_vec();
            path.push(sub.get_name().to_owned());
            visible_paths(sub, &path, out);
            out.push(path);
        }
    }

    #[test]
    fn every_subcommand_is_in_the_man_pages_and_completions() {
        let mut paths = Vec::new();
        visible_paths(&Cli::command(), &[], &mut paths);
        assert!(paths.len() >= 4, "{paths:?}");
        let dir = tempfile::tempdir().unwrap();
        manpages(dir.path()).unwrap();
        let root = std::fs::read_to_string(dir.path().join("sealedfs.1")).unwrap();
        let scripts: Vec<(Shell, String)> = [Shell::Bash, Shell::Zsh, Shell::Fish]
            .into_iter()
            .map(|shell| {
                let mut out = Vec::new();
                completions(shell, &mut out);
                (shell, String::from_utf8(out).unwrap())
            })
            .collect();
        for path in &paths {
            let page = dir.path().join(format!("sealedfs-{}.1", path.join("-")));
            let text = std::fs::read_to_string(&page)
                .unwrap_or_else(|e| panic!("no man page {}: {e}", page.display()));
            assert!(text.contains(path.last().unwrap()), "{}", page.display());
            if path.len() == 1 {
                assert!(root.contains(&path[0]), "sealedfs.1 lacks {}", path[0]);
            }
            for (shell, script) in &scripts {
                assert!(
                    script.contains(path.last().unwrap().as_str()),
                    "{shell} lacks {path:?}"
                );
            }
        }
    }

    #[test]
    fn version_names_the_formats() {
        let v = version();
        assert!(v.starts_with(env!("CARGO_PKG_VERSION")), "{v}");
        assert!(
            v.contains(&format!("volume format {FORMAT_VERSION}")),
            "{v}"
        );
        assert!(
            v.contains(&format!("metadata format {META_VERSION}")),
            "{v}"
        );
        let rendered = Cli::command().render_version();
        assert_eq!(rendered.trim_end(), format!("sealedfs {v}"));
    }

    #[test]
    fn help_has_examples_and_exit_codes() {
        let mut cmd = Cli::command();
        cmd.build();
        for name in ["init", "mount", "unmount", "completions"] {
            let sub = cmd.find_subcommand_mut(name).unwrap();
            let help = sub.render_long_help().to_string();
            assert!(help.contains("Examples:"), "{name}");
            assert!(help.contains(&format!("sealedfs {name}")), "{name}");
        }
        let root = cmd.render_long_help().to_string();
        for code in [
            EXIT_USAGE,
            EXIT_WRONG_KEY,
            EXIT_STORE,
            EXIT_BUSY,
            EXIT_INTEGRITY,
        ] {
            assert!(root.contains(&format!("\n  {code}  ")), "exit code {code}");
        }
        // The -o section is generated from the option table.
        let mount = cmd
            .find_subcommand_mut("mount")
            .unwrap()
            .render_long_help()
            .to_string();
        assert!(mount.contains("passphrase_file=FILE"), "{mount}");
        assert!(mount.contains("nofail"), "{mount}");
    }
}
