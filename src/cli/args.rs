//! Command-line grammar (clap derive) and the pure parser of sizes
//! (`64K`, `1M`, `256M`). The `-o` mount options are `mount_options`';
//! help texts and examples are `help`'s.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use super::{help, mount_options};

#[derive(Debug, Parser)]
#[command(
    name = "sealedfs",
    version = help::version(),
    about = "An encrypted, crash-safe POSIX filesystem whose volume lives in an object store",
    after_long_help = help::root_long_help()
)]
pub struct Cli {
    /// Settings file (default: SEALEDFS_CONFIG, else /etc/sealedfs/config.toml).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

/// The volume commands first in `--help`, in the order written here; the
/// helpers about the command line itself last (`display_order`).
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print a shell completion script.
    #[command(after_help = help::COMPLETIONS_EXAMPLES, display_order = 1000)]
    Completions(CompletionsArgs),
    /// Write man pages for sealedfs and every command into DIR.
    #[command(hide = true)]
    Manpages(ManpagesArgs),
    /// Create a volume; asks for a passphrase twice.
    #[command(after_help = help::INIT_EXAMPLES)]
    Init(InitArgs),
    /// Mount a volume; returns once the mount is ready.
    #[command(after_help = help::MOUNT_EXAMPLES)]
    Mount(MountArgs),
    /// Flush, commit, release the lock and unmount.
    #[command(after_help = help::UNMOUNT_EXAMPLES)]
    Unmount(UnmountArgs),
    /// Make, list or delete snapshots: exact, read-only states of the
    /// volume kept in the store until deleted.
    Snapshot(SnapshotArgs),
    /// Copy the volume's ciphertext to another store, incrementally,
    /// without its keys: a disaster-recovery replica, mountable as is.
    Replicate(ReplicateArgs),
    /// Check a volume: its metadata, that every object it needs is there,
    /// and with --deep that every byte authenticates.
    Fsck(FsckArgs),
    /// Read the audit trail (who touched which file, when, from where),
    /// check that it is intact, or prune its oldest records.
    #[command(after_help = help::AUDIT_EXAMPLES)]
    Audit(Box<AuditArgs>),
    /// Show what a mount is doing: lease, lock, cache, uploads, last
    /// commit, audit trail, recent errors.
    Status(StatusArgs),
    /// Lock a mount at once: commit, wipe its keys, drop every cached
    /// plaintext; all access fails with EACCES until `unlock`.
    Lock(LockArgs),
    /// Unlock a locked mount: asks for a passphrase (or key file, or KMS)
    /// again.
    Unlock(UnlockArgs),
    /// List, add, remove or change keyslots: passphrases, key files, AWS
    /// KMS keys. Only the volume header changes.
    Key(super::key::KeyArgs),
}

/// How a command that opens the volume unlocks it (the passphrase may
/// also come from `SEALEDFS_PASSPHRASE` or a prompt; with no source at
/// all, KMS keyslots are tried first).
#[derive(Debug, Clone, Default, Args)]
pub struct KeySource {
    /// Read the passphrase from this file (one trailing newline is dropped).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["key_file", "kms"])]
    pub passphrase_file: Option<PathBuf>,
    /// Unlock with this file's bytes, exactly as they are.
    #[arg(long, value_name = "FILE", conflicts_with = "kms")]
    pub key_file: Option<PathBuf>,
    /// Unlock through the volume's AWS KMS keyslots only.
    #[arg(long)]
    pub kms: bool,
    /// Try this keyslot only.
    #[arg(long, value_name = "N")]
    pub slot: Option<u32>,
}

#[derive(Debug, Args)]
pub struct LockArgs {
    /// A mountpoint served by sealedfs.
    pub mountpoint: PathBuf,
}

#[derive(Debug, Args)]
pub struct UnlockArgs {
    /// A mountpoint served by sealedfs.
    pub mountpoint: PathBuf,
    #[command(flatten)]
    pub key: KeySource,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// A mountpoint served by sealedfs.
    pub mountpoint: PathBuf,
    #[command(flatten)]
    pub json: super::json::JsonFlag,
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct AuditArgs {
    #[command(subcommand)]
    pub action: Option<AuditAction>,
    #[command(flatten)]
    pub query: AuditQueryArgs,
}

#[derive(Debug, Subcommand)]
pub enum AuditAction {
    /// Check every chain of the trail, link by link, against the journal:
    /// exit 0 if intact, 5 naming the first bad segment.
    Verify(VolumeArgs),
    /// Remove the records older than a date (whole segments; the newest of
    /// each chain stays). Recorded in the trail itself.
    Prune(AuditPruneArgs),
}

/// Which records `audit` prints; every filter given must match.
#[derive(Debug, Args)]
pub struct AuditQueryArgs {
    /// The volume: a local directory or s3://BUCKET[/PREFIX].
    #[arg(required = true)]
    pub store: Option<String>,
    /// Records at or after TIME: 2026-11-01, 2026-11-01T08:00:00Z, or an
    /// age such as 90m, 12h, 7d.
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Records before TIME (as --since).
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,
    #[arg(long)]
    pub uid: Option<u32>,
    #[arg(long)]
    pub pid: Option<u32>,
    /// The process name (as /proc/PID/comm shows it).
    #[arg(long, value_name = "NAME")]
    pub process: Option<String>,
    /// Records naming a path under PREFIX (either path of a rename).
    #[arg(long, value_name = "PREFIX")]
    pub path: Option<String>,
    /// One operation: open, create, unlink, rename, chmod, release, admin, …
    #[arg(long, value_name = "OP")]
    pub op: Option<String>,
    /// Only operations that failed.
    #[arg(long, conflicts_with = "succeeded")]
    pub failed: bool,
    /// Only operations that succeeded.
    #[arg(long)]
    pub succeeded: bool,
    /// Output: text, json (JSON Lines) or csv.
    #[arg(long, value_enum, default_value_t = AuditFormat::Text)]
    pub format: AuditFormat,
    #[command(flatten)]
    pub json: super::json::JsonFlag,
    #[command(flatten)]
    pub key: KeySource,
    #[command(flatten)]
    pub s3: S3Args,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AuditFormat {
    Text,
    Json,
    Csv,
}

/// A command that reads a volume (`audit verify`, `snapshot list`).
#[derive(Debug, Args)]
pub struct VolumeArgs {
    /// The volume: a local directory or s3://BUCKET[/PREFIX].
    pub store: String,
    #[command(flatten)]
    pub json: super::json::JsonFlag,
    #[command(flatten)]
    pub key: KeySource,
    #[command(flatten)]
    pub s3: S3Args,
}

#[derive(Debug, Args)]
pub struct AuditPruneArgs {
    /// The volume: a local directory or s3://BUCKET[/PREFIX].
    pub store: String,
    /// Remove records older than TIME (as `audit --since`).
    #[arg(long, value_name = "TIME")]
    pub before: String,
    #[command(flatten)]
    pub key: KeySource,
    #[command(flatten)]
    pub s3: S3Args,
}

#[derive(Debug, Args)]
pub struct FsckArgs {
    /// The volume: a local directory or s3://BUCKET[/PREFIX].
    pub store: String,
    /// Also read and authenticate every segment of every file.
    #[arg(long)]
    pub deep: bool,
    /// Remove the garbage found that is older than the grace period (the
    /// volume must not be mounted read-write).
    #[arg(long)]
    pub repair: bool,
    #[command(flatten)]
    pub json: super::json::JsonFlag,
    #[command(flatten)]
    pub key: KeySource,
    #[command(flatten)]
    pub s3: S3Args,
}

#[derive(Debug, Args)]
pub struct ReplicateArgs {
    /// The volume: a local directory or s3://BUCKET[/PREFIX].
    pub source: String,
    /// Where the copy goes: empty, or an earlier copy of this volume.
    pub target: String,
    /// Check each copy by its size only, not by reading it back.
    #[arg(long)]
    pub no_verify: bool,
    #[command(flatten)]
    pub s3: S3Args,
}

#[derive(Debug, Args)]
pub struct SnapshotArgs {
    #[command(subcommand)]
    pub action: SnapshotAction,
}

#[derive(Debug, Subcommand)]
pub enum SnapshotAction {
    /// Snapshot the volume as it is now (through its read-write daemon
    /// on this host if it is mounted). Costs a checkpoint and one object.
    Create(SnapshotNameArgs),
    /// List the volume's snapshots, oldest first.
    List(VolumeArgs),
    /// Delete a snapshot and the data only it still held.
    Delete(SnapshotNameArgs),
}

#[derive(Debug, Args)]
pub struct SnapshotNameArgs {
    /// The volume: a local directory or s3://BUCKET[/PREFIX].
    pub store: String,
    /// The snapshot's name: letters, digits and -_.:@+.
    pub name: String,
    #[command(flatten)]
    pub key: KeySource,
    #[command(flatten)]
    pub s3: S3Args,
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// A local directory (PATH or file://PATH; empty or missing) or
    /// s3://BUCKET[/PREFIX] (the bucket must exist; the prefix must be empty).
    pub store: String,
    /// File size unit of the volume: a power of two from 4K to 1M.
    #[arg(long, value_name = "SIZE", default_value = "64K", value_parser = parse_size)]
    pub chunk_size: u64,
    /// Read the passphrase from this file (one trailing newline is dropped).
    #[arg(long, value_name = "FILE", conflicts_with = "key_file")]
    pub passphrase_file: Option<PathBuf>,
    /// Unlock with this file's bytes, exactly as they are (up to 64 KiB).
    #[arg(long, value_name = "FILE")]
    pub key_file: Option<PathBuf>,
    /// Tests only: a key derivation that costs nothing and protects
    /// nothing (implies --weak-passphrase).
    #[arg(long, hide = true)]
    pub insecure_fast_kdf: bool,
    /// The cipher every unit is sealed with: xchacha20-poly1305 (default)
    /// or aes-256-gcm (FIPS-approved; its keyslots default to pbkdf2-sha256).
    #[arg(long, value_name = "NAME", default_value = "xchacha20-poly1305")]
    pub cipher: String,
    #[command(flatten)]
    pub kdf: KdfArgs,
    #[command(flatten)]
    pub s3: S3Args,
}

/// The cost of a new passphrase keyslot.
#[derive(Debug, Clone, Default, Args)]
pub struct KdfArgs {
    /// argon2id or pbkdf2-sha256 [default: argon2id; pbkdf2-sha256 on an
    /// aes-256-gcm volume].
    #[arg(long, value_name = "NAME")]
    pub kdf: Option<String>,
    /// Argon2id memory, e.g. 256M [default: 256M].
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub kdf_memory: Option<u64>,
    /// Argon2id passes [default: 6], or PBKDF2 iterations [default: 9000000].
    #[arg(long, value_name = "N")]
    pub kdf_time: Option<u32>,
    /// Accept a short or easily guessed new passphrase.
    #[arg(long)]
    pub weak_passphrase: bool,
}

/// How to reach an `s3://` store (ignored for local directories), and
/// whether to accept a local one other users may read.
#[derive(Debug, Clone, Default, PartialEq, Eq, Args)]
pub struct S3Args {
    /// S3 endpoint URL (default: AWS_ENDPOINT_URL, else AWS for the region).
    #[arg(long, value_name = "URL")]
    pub endpoint: Option<String>,
    /// The bucket's region (default: AWS_REGION, else the AWS profile).
    #[arg(long, value_name = "REGION")]
    pub region: Option<String>,
    /// Address buckets as ENDPOINT/BUCKET (most S3-compatible servers).
    #[arg(long)]
    pub path_style: bool,
    /// Also ask the store to encrypt at rest: AES256 or aws:kms.
    #[arg(long, value_name = "MODE")]
    pub sse: Option<String>,
    /// The KMS key for --sse aws:kms (default: the bucket's AWS managed key).
    #[arg(long, value_name = "ID", requires = "sse")]
    pub sse_kms_key_id: Option<String>,
    /// Allow a plain http:// endpoint that is not on this host.
    #[arg(long)]
    pub allow_http: bool,
    /// Open a local volume even if other users may read its header.
    #[arg(long)]
    pub insecure_permissions: bool,
    /// Whether the store honours create-only PUTs, once a probe found out:
    /// the mount probes before the fork and the daemon reuses the answer.
    #[arg(skip)]
    pub conditional_writes: Option<bool>,
}

/// The plaintext cache of a mount unless a flag or the config file says:
/// a sixteenth of the machine's RAM, from 32 MiB to 256 MiB, so a small
/// VM is not crowded out by a cache the size of a large host's.
pub fn default_cache_size() -> u64 {
    // SAFETY: sysconf has no preconditions; -1 (unknown) is handled.
    let (pages, page) = unsafe {
        (
            libc::sysconf(libc::_SC_PHYS_PAGES),
            libc::sysconf(libc::_SC_PAGESIZE),
        )
    };
    let ram = match (u64::try_from(pages), u64::try_from(page)) {
        (Ok(n), Ok(p)) => n.saturating_mul(p),
        _ => u64::MAX,
    };
    cache_size_for_ram(ram)
}

fn cache_size_for_ram(ram: u64) -> u64 {
    (ram / 16).clamp(32 << 20, 256 << 20)
}

#[derive(Debug, Args)]
pub struct MountArgs {
    /// A local directory (PATH or file://PATH) or s3://BUCKET[/PREFIX]
    /// holding a volume.
    pub store: String,
    /// An existing directory to mount on.
    pub mountpoint: PathBuf,
    /// Serve in this process instead of a background daemon (systemd's
    /// Type=notify services use this).
    #[arg(long, short = 'f')]
    pub foreground: bool,
    /// Mount read-only (no lock is taken, nothing is written).
    #[arg(long)]
    pub read_only: bool,
    /// Mount options, comma separated (every flag has a spelling here).
    #[arg(short = 'o', value_name = "OPTS", long_help = mount_options::long_help())]
    pub options: Vec<String>,
    /// Memory budget: cached data (clean, dirty, read-ahead) and what
    /// the daemon's heap holds besides, such as the namespace (about
    /// 250 B per inode), which takes from the cache down to a quarter of
    /// the budget [default: 1/16 of RAM, from 32M to 256M].
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub cache_size: Option<u64>,
    /// Keep the ciphertext of data read from S3 (and written to it) in
    /// this directory, so a remount or a working set larger than
    /// --cache-size does not go back to the store (S3 volumes only).
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Bound of --cache-dir [default: 5G, or half the free space of its
    /// filesystem if that is less].
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub cache_dir_size: Option<u64>,
    /// Read the passphrase from this file (one trailing newline is dropped).
    #[arg(long, value_name = "FILE", conflicts_with = "key_file")]
    pub passphrase_file: Option<PathBuf>,
    /// Unlock with this file's bytes, exactly as they are (up to 64 KiB).
    #[arg(long, value_name = "FILE")]
    pub key_file: Option<PathBuf>,
    /// Unlock with the volume's KMS keyslots and this host's AWS
    /// credentials; never ask for a passphrase.
    #[arg(long, conflicts_with_all = ["passphrase_file", "key_file"])]
    pub kms: bool,
    /// Try only this keyslot (see sealedfs key list).
    #[arg(long, value_name = "N")]
    pub slot: Option<u32>,
    /// Mount even on a directory that holds files (they are hidden while
    /// mounted).
    #[arg(long)]
    pub nonempty: bool,
    /// Take the writer's lease even though another mount holds it (that
    /// mount can no longer commit). Logged.
    #[arg(long)]
    pub force_takeover: bool,
    /// Mount even though the volume is older than a state this host (or
    /// its last writer) saw: rolled back, truncated or replaced. Logged.
    #[arg(long)]
    pub accept_rollback: bool,
    /// Mount this snapshot of the volume: read-only, exactly as it was.
    #[arg(long, value_name = "NAME")]
    pub snapshot: Option<String>,
    /// Mount read-only without the writer's lease and follow the writer
    /// (on any host): its commits show here within seconds.
    #[arg(long, conflicts_with = "snapshot")]
    pub follow: bool,
    /// Keep no audit trail for this mount (by default every access is
    /// recorded, sealed, in the volume: see `sealedfs audit`).
    #[arg(long)]
    pub no_audit: bool,
    /// Lock the mount after this long without a request (as `sealedfs
    /// lock`): 15m, 1h, 900s.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub lock_after: Option<std::time::Duration>,
    #[command(flatten)]
    pub s3: S3Args,
}

#[derive(Debug, Args)]
pub struct UnmountArgs {
    pub mountpoint: PathBuf,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
pub struct ManpagesArgs {
    /// Where to write sealedfs.1 and sealedfs-COMMAND.1 (created if missing).
    pub dir: PathBuf,
}

/// Parses `900`, `90s`, `15m`, `2h`: a duration in seconds, minutes or
/// hours; zero is refused.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let t = s.trim();
    let (digits, unit) = t.split_at(t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len()));
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("invalid duration {s:?}: expected a number like 900s, 15m or 2h"))?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n.saturating_mul(60),
        "h" => n.saturating_mul(3600),
        _ => return Err(format!("invalid duration {s:?}: the unit is s, m or h")),
    };
    match secs {
        0 => Err(format!("invalid duration {s:?}: must be more than zero")),
        s => Ok(std::time::Duration::from_secs(s)),
    }
}

/// Parses `4096`, `64K`, `64k`, `64KiB`, `1M`, `256M`, `2G`, `1T`: binary
/// multiples; zero and overflow are refused.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let digits_end = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, suffix) = t.split_at(digits_end);
    if digits.is_empty() {
        return Err(format!(
            "invalid size {s:?}: expected a number like 64K or 256M"
        ));
    }
    let shift = match suffix.to_ascii_uppercase().as_str() {
        "" | "B" => 0,
        "K" | "KB" | "KIB" => 10,
        "M" | "MB" | "MIB" => 20,
        "G" | "GB" | "GIB" => 30,
        "T" | "TB" | "TIB" => 40,
        _ => return Err(format!("invalid size {s:?}: unknown unit {suffix:?}")),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("invalid size {s:?}: too large"))?;
    let bytes = n
        .checked_mul(1u64 << shift)
        .ok_or_else(|| format!("invalid size {s:?}: too large"))?;
    if bytes == 0 {
        return Err(format!("invalid size {s:?}: must be more than zero"));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn default_cache_is_a_sixteenth_of_ram_within_32m_and_256m() {
        for (ram, want) in [
            (0u64, 32u64 << 20),
            (256 << 20, 32 << 20),
            (1 << 30, 64 << 20),
            (2 << 30, 128 << 20),
            (4 << 30, 256 << 20),
            (24 << 30, 256 << 20),
            (u64::MAX, 256 << 20),
        ] {
            assert_eq!(cache_size_for_ram(ram), want, "RAM {ram}");
        }
        assert!((32 << 20..=256 << 20).contains(&default_cache_size()));
    }

    #[test]
    fn sizes() {
        let table: &[(&str, u64)] = &[
            ("4096", 4096),
            ("4K", 4 << 10),
            ("64K", 64 << 10),
            ("64k", 64 << 10),
            ("64KiB", 64 << 10),
            ("1M", 1 << 20),
            ("256M", 256 << 20),
            ("2G", 2 << 30),
            ("1T", 1 << 40),
            (" 8M ", 8 << 20),
        ];
        for (s, want) in table {
            assert_eq!(parse_size(s), Ok(*want), "{s}");
        }
        for bad in [
            "",
            "K",
            "0",
            "0K",
            "12Q",
            "-1M",
            "1.5M",
            "99999999999999999999",
            "20000000T",
        ] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn grammar() {
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from([
            "sealedfs",
            "mount",
            "/s",
            "/m",
            "-o",
            "ro",
            "--cache-size",
            "1G",
            "-f",
        ])
        .unwrap();
        let Command::Mount(m) = cli.command else {
            panic!("not mount")
        };
        assert_eq!((m.cache_size, m.foreground), (Some(1 << 30), true));
        assert_eq!(m.options, vec!["ro".to_string()]);
        let cli = Cli::try_parse_from(["sealedfs", "init", "/s"]).unwrap();
        let Command::Init(i) = cli.command else {
            panic!("not init")
        };
        assert_eq!((i.chunk_size, i.insecure_fast_kdf), (64 << 10, false));
        assert!(Cli::try_parse_from(["sealedfs", "init", "/s", "--chunk-size", "64X"]).is_err());
        let both = ["--passphrase-file", "/p", "--key-file", "/k"];
        assert!(
            Cli::try_parse_from([&["sealedfs", "mount", "/s", "/m"][..], &both].concat()).is_err()
        );
        assert!(Cli::try_parse_from([&["sealedfs", "init", "/s"][..], &both].concat()).is_err());
        let cli =
            Cli::try_parse_from(["sealedfs", "unmount", "/m", "--config", "/c.toml"]).unwrap();
        assert_eq!(cli.config, Some("/c.toml".into()));
    }
}
