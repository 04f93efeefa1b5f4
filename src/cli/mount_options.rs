//! `-o` mount options: one table for the command line, fstab lines and
//! systemd `.mount` units (mount.fuse3 hands every option to us as `-o`),
//! and the keys of the config file.
//!
//! Rules:
//! - **Every `mount` flag has an `-o` spelling** (`--cache-size 1G` is
//!   `-o cache_size=1G`, `--read-only` is `-o ro`), because an fstab line
//!   can say nothing else. A flag and its spelling are one layer: both
//!   with different values are refused ([`set_once`]).
//! - **What mount(8) and mount.fuse3 pass on their own is accepted.**
//!   mount(8) adds `rw` (unless `ro`) and keeps `nofail`, `_netdev`, `user`
//!   and friends for the helper; mount.fuse3 drops those but adds `dev` and
//!   `suid` unless told `nodev`/`nosuid`. The generic ones that sealedfs
//!   cannot or will not honour are listed as [`Kind::Ignored`] and say why
//!   in `--help`: `dev`/`suid` (sealedfs always mounts `nodev,nosuid`, and
//!   mount.fuse3 adds them to every mount, so they carry no intent), the
//!   access-time family (always `noatime`), `x-*` and `comment=` (notes for
//!   systemd and people).
//! - **Anything else is refused** with one line naming the option (exit
//!   1): a misspelt `alow_other` must fail the mount, not mount a volume
//!   that nobody else can enter. `atime` and `strictatime` are refused
//!   with the reason: access times are never recorded.
//! - `ro` and `rw`: the last one wins within the `-o` lists; `--read-only`
//!   wins over both (mount(8) adds `rw` to every fstab mount).
//!
//! [`Kind::Setting`] options are the ones the config file may hold too
//! (see `settings` for which layer wins); the others are choices of one
//! mount.

use std::path::{Path, PathBuf};

use super::args::{MountArgs, parse_duration, parse_size};
use super::error::{CliError, CliResult};
use super::settings::{Settings, set_once};
use crate::fuse::KernelOptions;

/// A mount's command line (flags and `-o` lists) folded together.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct MountRequest {
    /// The flag layer of the settings.
    pub settings: Settings,
    pub read_only: bool,
    pub foreground: bool,
    pub nonempty: bool,
    pub force_takeover: bool,
    pub accept_rollback: bool,
    /// `--kms`: unlock with KMS keyslots only.
    pub kms: bool,
    /// `--slot N`: try this keyslot only.
    pub slot: Option<u32>,
    /// A snapshot to mount (read-only), as `--snapshot`.
    pub snapshot: Option<String>,
    pub follow: bool,
    /// Keep no audit trail, as `--no-audit`.
    pub no_audit: bool,
    /// The idle lock, as `--lock-after`.
    pub lock_after: Option<std::time::Duration>,
    /// The config file, as `--config`.
    pub config: Option<PathBuf>,
    pub allow_root: bool,
    pub noexec: bool,
    pub sync: bool,
    pub dirsync: bool,
}

/// What an option is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A setting the config file may also hold.
    Setting,
    /// A choice for this one mount.
    Mount,
    /// Always in effect; accepted so that fstab lines may spell it.
    AlwaysOn,
    /// Accepted from mount(8), mount.fuse3 or habit; no effect.
    Ignored,
}

pub struct OptionSpec {
    pub name: &'static str,
    /// `Some(METAVAR)`: spelled `name=METAVAR`.
    pub value: Option<&'static str>,
    pub kind: Kind,
    pub help: &'static str,
}

const fn opt(
    name: &'static str,
    value: Option<&'static str>,
    kind: Kind,
    help: &'static str,
) -> OptionSpec {
    OptionSpec {
        name,
        value,
        kind,
        help,
    }
}

use Kind::{AlwaysOn, Ignored, Mount, Setting};

/// Every option `mount -o` accepts, in `--help` order; what each does is
/// [`MountRequest::set`].
#[rustfmt::skip]
pub static OPTIONS: &[OptionSpec] = &[
    opt("cache_size", Some("SIZE"), Setting, "as --cache-size"),
    opt("cache_dir", Some("DIR"), Setting, "as --cache-dir"),
    opt("cache_dir_size", Some("SIZE"), Setting, "as --cache-dir-size"),
    opt("passphrase_file", Some("FILE"), Setting, "as --passphrase-file"),
    opt("key_file", Some("FILE"), Setting, "as --key-file"),
    opt("kms", None, Mount, "as --kms"),
    opt("slot", Some("N"), Mount, "as --slot"),
    opt("allow_other", None, Setting, "every user may enter (permissions are still checked)"),
    opt("endpoint", Some("URL"), Setting, "as --endpoint"),
    opt("region", Some("REGION"), Setting, "as --region"),
    opt("path_style", None, Setting, "as --path-style"),
    opt("allow_http", None, Setting, "as --allow-http"),
    opt("insecure_permissions", None, Setting, "as --insecure-permissions"),
    opt("sse", Some("MODE"), Setting, "as --sse"),
    opt("sse_kms_key_id", Some("ID"), Setting, "as --sse-kms-key-id"),
    opt("ro", None, Mount, "as --read-only"),
    opt("rw", None, Mount, "read-write (the default; undoes an earlier ro)"),
    opt("foreground", None, Mount, "as --foreground"),
    opt("nonempty", None, Mount, "as --nonempty"),
    opt("force_takeover", None, Mount, "as --force-takeover"),
    opt("accept_rollback", None, Mount, "as --accept-rollback"),
    opt("snapshot", Some("NAME"), Mount, "as --snapshot"),
    opt("follow", None, Mount, "as --follow"),
    opt("no_audit", None, Mount, "as --no-audit"),
    opt("lock_after", Some("DURATION"), Mount, "as --lock-after"),
    opt("config", Some("FILE"), Mount, "as --config"),
    opt("allow_root", None, Mount, "the mounting user and root may enter"),
    opt("noexec", None, Mount, "programs on the volume cannot be run"),
    opt("exec", None, Mount, "programs may be run (the default; undoes noexec)"),
    opt("sync", None, Mount, "every write is durable in the store before it returns (slow)"),
    opt("dirsync", None, Mount, "every directory change is durable before it returns"),
    opt("async", None, Mount, "the default; undoes sync"),
    opt("default_permissions", None, AlwaysOn, "the kernel checks permissions"),
    opt("noatime", None, AlwaysOn, "access times are never recorded"),
    opt("nodev", None, AlwaysOn, "device files cannot be opened"),
    opt("nosuid", None, AlwaysOn, "set-user-id bits are not honoured"),
    opt("dev", None, Ignored, "added by mount.fuse3; sealedfs always mounts nodev"),
    opt("suid", None, Ignored, "added by mount.fuse3; sealedfs always mounts nosuid"),
    opt("relatime", None, Ignored, "sealedfs is always noatime"),
    opt("nodiratime", None, Ignored, "sealedfs is always noatime"),
    opt("lazytime", None, Ignored, "sealedfs is always noatime"),
    opt("defaults", None, Ignored, "fstab's placeholder"),
    opt("auto", None, Ignored, "for mount -a"),
    opt("noauto", None, Ignored, "for mount -a"),
    opt("user", None, Ignored, "for mount(8): who may mount"),
    opt("nouser", None, Ignored, "for mount(8): who may mount"),
    opt("users", None, Ignored, "for mount(8): who may mount"),
    opt("owner", None, Ignored, "for mount(8): who may mount"),
    opt("group", None, Ignored, "for mount(8): who may mount"),
    opt("_netdev", None, Ignored, "for systemd: mount after the network is up"),
    opt("nofail", None, Ignored, "for systemd: the boot goes on if this mount fails"),
];

/// Prefixes of option families that are notes for other programs.
const IGNORED_PREFIXES: &[(&str, &str)] = &[
    (
        "x-",
        "x-*: notes for systemd and other tools (x-systemd.automount, …)",
    ),
    ("comment=", "comment=*: notes for people"),
];

/// Refused with a reason rather than as unknown.
const REFUSED: &[(&str, &str)] = &[
    (
        "atime",
        "sealedfs never records access times (it is always noatime)",
    ),
    (
        "strictatime",
        "sealedfs never records access times (it is always noatime)",
    ),
];

fn path(v: &str) -> Result<PathBuf, String> {
    text(v).map(PathBuf::from)
}

/// A value that may not be empty (`endpoint=` is a mistake, not a default).
fn text(v: &str) -> Result<String, String> {
    match v {
        "" => Err("an empty value".into()),
        t => Ok(t.to_owned()),
    }
}

/// The option named `name`, if there is one.
pub fn spec(name: &str) -> Option<&'static OptionSpec> {
    OPTIONS.iter().find(|o| o.name == name)
}

impl MountRequest {
    /// Folds the flags and `-o` lists of `args` together.
    /// `config` is the global `--config` flag.
    pub fn from_args(args: &MountArgs, config: Option<&Path>) -> CliResult<MountRequest> {
        let mut req = MountRequest {
            config: config.map(Path::to_path_buf),
            settings: Settings {
                cache_size: args.cache_size,
                cache_dir: args.cache_dir.clone(),
                cache_dir_size: args.cache_dir_size,
                passphrase_file: args.passphrase_file.clone(),
                key_file: args.key_file.clone(),
                ..Settings::from_s3_flags(&args.s3)
            },
            ..MountRequest::default()
        };
        for list in &args.options {
            req.apply_list(list)?;
        }
        req.read_only |= args.read_only;
        req.foreground |= args.foreground;
        req.nonempty |= args.nonempty;
        req.force_takeover |= args.force_takeover;
        req.accept_rollback |= args.accept_rollback;
        req.kms |= args.kms;
        if let Some(n) = args.slot {
            set_once(&mut req.slot, n, "slot").map_err(CliError::usage)?;
        }
        if req.kms && (req.settings.passphrase_file.is_some() || req.settings.key_file.is_some()) {
            return Err(CliError::usage(
                "kms excludes a passphrase or key file: the KMS keyslots are used alone",
            ));
        }
        req.follow |= args.follow;
        req.no_audit |= args.no_audit;
        if let Some(after) = args.lock_after {
            set_once(&mut req.lock_after, after, "lock_after").map_err(CliError::usage)?;
        }
        if let Some(name) = &args.snapshot {
            set_once(&mut req.snapshot, name.clone(), "snapshot").map_err(CliError::usage)?;
        }
        if req.snapshot.is_some() && req.follow {
            return Err(CliError::usage(
                "snapshot and follow exclude each other: a snapshot never changes",
            ));
        }
        Ok(req)
    }

    /// Applies one comma-separated `-o` list.
    pub fn apply_list(&mut self, list: &str) -> CliResult<()> {
        for item in list.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            self.apply_one(item).map_err(CliError::usage)?;
        }
        Ok(())
    }

    fn apply_one(&mut self, item: &str) -> Result<(), String> {
        let (name, value) = match item.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (item, None),
        };
        if IGNORED_PREFIXES.iter().any(|(p, _)| item.starts_with(p)) {
            return Ok(());
        }
        if let Some((_, why)) = REFUSED.iter().find(|(n, _)| *n == name) {
            return Err(format!("mount option {name:?} is not supported: {why}"));
        }
        let Some(spec) = spec(name) else {
            return Err(format!(
                "unknown mount option {name:?} (sealedfs mount --help lists them)"
            ));
        };
        match (spec.value, value) {
            (Some(meta), None) => Err(format!("mount option {name} needs a value: {name}={meta}")),
            (None, Some(_)) => Err(format!("mount option {name} takes no value")),
            (_, v) => self
                .set(name, v.unwrap_or(""))
                .map_err(|e| format!("mount option {name}: {e}")),
        }
    }

    /// What the option `name` (in [`OPTIONS`]) does, with its value `v`.
    fn set(&mut self, name: &str, v: &str) -> Result<(), String> {
        let s = &mut self.settings;
        match name {
            "cache_size" => set_once(&mut s.cache_size, parse_size(v)?, name)?,
            "cache_dir" => set_once(&mut s.cache_dir, path(v)?, name)?,
            "cache_dir_size" => set_once(&mut s.cache_dir_size, parse_size(v)?, name)?,
            "passphrase_file" => set_once(&mut s.passphrase_file, path(v)?, name)?,
            "key_file" => set_once(&mut s.key_file, path(v)?, name)?,
            "allow_other" => set_once(&mut s.allow_other, true, name)?,
            "endpoint" => set_once(&mut s.endpoint, text(v)?, name)?,
            "region" => set_once(&mut s.region, text(v)?, name)?,
            "path_style" => set_once(&mut s.path_style, true, name)?,
            "allow_http" => set_once(&mut s.allow_http, true, name)?,
            "insecure_permissions" => set_once(&mut s.insecure_permissions, true, name)?,
            "sse" => set_once(&mut s.sse, text(v)?, name)?,
            "sse_kms_key_id" => set_once(&mut s.sse_kms_key_id, text(v)?, name)?,
            "config" => set_once(&mut self.config, path(v)?, name)?,
            "ro" | "rw" => self.read_only = name == "ro",
            "foreground" => self.foreground = true,
            "nonempty" => self.nonempty = true,
            "force_takeover" => self.force_takeover = true,
            "accept_rollback" => self.accept_rollback = true,
            "kms" => self.kms = true,
            "slot" => set_once(
                &mut self.slot,
                v.parse::<u32>()
                    .map_err(|_| format!("{v:?} is not a keyslot number"))?,
                name,
            )?,
            "snapshot" => set_once(&mut self.snapshot, text(v)?, name)?,
            "follow" => self.follow = true,
            "no_audit" => self.no_audit = true,
            "lock_after" => set_once(&mut self.lock_after, parse_duration(v)?, name)?,
            "allow_root" => self.allow_root = true,
            "noexec" | "exec" => self.noexec = name == "noexec",
            "sync" | "async" => self.sync = name == "sync",
            "dirsync" => self.dirsync = true,
            // AlwaysOn and Ignored.
            _ => {}
        }
        Ok(())
    }

    /// The kernel's part, once every layer decided `allow_other`.
    pub fn kernel(&self, allow_other: bool) -> CliResult<KernelOptions> {
        if allow_other && self.allow_root {
            return Err(CliError::usage(
                "allow_other and allow_root exclude each other: keep one",
            ));
        }
        Ok(KernelOptions {
            read_only: self.read_only,
            allow_other,
            allow_root: self.allow_root,
            noexec: self.noexec,
            sync: self.sync,
            dirsync: self.dirsync,
        })
    }
}

/// The `-o` section of `mount --help` and the man page, from the table.
pub fn long_help() -> String {
    let line = |o: &OptionSpec| {
        let spelled = match o.value {
            Some(v) => format!("{}={v}", o.name),
            None => o.name.to_owned(),
        };
        format!("  {spelled:<22} {}\n", o.help)
    };
    let mut out = String::from(
        "Mount options, comma separated; the spelling of every flag in fstab and systemd .mount units.\n",
    );
    for (kind, title) in [
        (Setting, "Settings (the config file may hold these too):"),
        (Mount, "For this mount:"),
        (AlwaysOn, "Always in effect (accepted):"),
        (
            Ignored,
            "Accepted from mount(8) and mount.fuse3, without effect:",
        ),
    ] {
        out.push('\n');
        out.push_str(title);
        out.push('\n');
        for o in OPTIONS.iter().filter(|o| o.kind == kind) {
            out.push_str(&line(o));
        }
        if kind == Ignored {
            for (_, help) in IGNORED_PREFIXES {
                out.push_str(&format!("  {help}\n"));
            }
        }
    }
    out.push_str("\nAnything else is refused.");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(lists: &[&str]) -> Result<MountRequest, CliError> {
        let mut r = MountRequest::default();
        for l in lists {
            r.apply_list(l)?;
        }
        Ok(r)
    }

    #[test]
    fn settings_and_choices() {
        let r = req(&[
            "cache_size=1G,passphrase_file=/etc/p,allow_other",
            "ro,noexec,sync",
        ])
        .unwrap();
        assert_eq!(r.settings.cache_size, Some(1 << 30));
        assert_eq!(r.settings.passphrase_file, Some("/etc/p".into()));
        assert_eq!(r.settings.allow_other, Some(true));
        assert!(r.read_only && r.noexec && r.sync && !r.dirsync);
        let k = r.kernel(true).unwrap();
        assert!(k.read_only && k.allow_other && k.noexec && k.sync);
        let s3 = req(&["endpoint=http://127.0.0.1:9000,region=eu-west-1,path_style,allow_http,sse=aws:kms,sse_kms_key_id=alias/x"]).unwrap();
        let a = s3.settings.s3_args();
        assert_eq!(a.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert_eq!(a.region.as_deref(), Some("eu-west-1"));
        assert!(a.path_style && a.allow_http);
        assert_eq!(a.sse_kms_key_id.as_deref(), Some("alias/x"));
    }

    #[test]
    fn what_mount_and_mount_fuse3_pass_is_accepted() {
        // As seen with strace: mount(8) then mount.fuse3.
        for list in [
            "rw,dev,suid",
            "rw,allow_other,dev,suid",
            "ro,noexec,sync,nosuid,relatime,nodev,users",
            "rw,nofail,_netdev,x-systemd.automount,x-systemd.mount-timeout=30,comment=ehr",
            "defaults,auto,noauto,user,nouser,owner,group,nodiratime,lazytime,default_permissions,noatime",
        ] {
            req(&[list]).unwrap_or_else(|e| panic!("{list}: {}", e.msg));
        }
        let r = req(&["rw,dev,suid"]).unwrap();
        assert_eq!(r, MountRequest::default());
    }

    #[test]
    fn the_last_of_opposites_wins() {
        assert!(!req(&["ro", "rw"]).unwrap().read_only);
        assert!(req(&["rw,ro"]).unwrap().read_only);
        assert!(!req(&["noexec,exec"]).unwrap().noexec);
        assert!(!req(&["sync,async"]).unwrap().sync);
    }

    #[test]
    fn refusals_name_the_option() {
        let table: &[(&str, &str)] = &[
            (
                "alow_other",
                "unknown mount option \"alow_other\" (sealedfs mount --help lists them)",
            ),
            (
                "cache_size",
                "mount option cache_size needs a value: cache_size=SIZE",
            ),
            (
                "cache_size=12Q",
                "mount option cache_size: invalid size \"12Q\": unknown unit \"Q\"",
            ),
            ("allow_other=1", "mount option allow_other takes no value"),
            (
                "passphrase_file=",
                "mount option passphrase_file: an empty value",
            ),
            ("endpoint=", "mount option endpoint: an empty value"),
            (
                "strictatime",
                "mount option \"strictatime\" is not supported: sealedfs never records access times (it is always noatime)",
            ),
            (
                "cache_size=1G,cache_size=2G",
                "mount option cache_size: cache_size is given twice with different values (1073741824 and 2147483648)",
            ),
            (
                "fsname=x",
                "unknown mount option \"fsname\" (sealedfs mount --help lists them)",
            ),
        ];
        for (list, want) in table {
            let e = req(&[list]).unwrap_err();
            assert_eq!((e.code, e.msg.as_str()), (1, *want), "{list}");
        }
        let both = req(&["allow_root"]).unwrap().kernel(true).unwrap_err();
        assert_eq!(both.code, 1);
    }

    #[test]
    fn every_mount_flag_has_an_o_spelling() {
        use clap::CommandFactory;
        let mut cmd = crate::cli::args::Cli::command();
        cmd.build();
        let mount = cmd.find_subcommand("mount").unwrap();
        let mut checked = 0;
        for arg in mount.get_arguments() {
            let Some(long) = arg.get_long() else {
                continue;
            };
            let name = match long {
                "help" => continue,
                "read-only" => "ro".to_owned(),
                other => other.replace('-', "_"),
            };
            assert!(spec(&name).is_some(), "--{long} has no -o spelling");
            checked += 1;
        }
        assert!(checked >= 14, "{checked}");
    }

    #[test]
    fn every_option_applies_and_is_documented() {
        let help = long_help();
        // The options that only undo another are the defaults.
        let undo = ["rw", "exec", "async"];
        for o in OPTIONS {
            let item = match o.value {
                Some(_) if o.name == "cache_size" || o.name == "cache_dir_size" => {
                    format!("{}=64M", o.name)
                }
                Some(_) if o.name == "slot" => format!("{}=2", o.name),
                Some(_) if o.name == "lock_after" => format!("{}=15m", o.name),
                Some(_) => format!("{}=/x", o.name),
                None => o.name.to_owned(),
            };
            let r = req(&[&item]).unwrap_or_else(|e| panic!("{item}: {}", e.msg));
            let has_effect = matches!(o.kind, Setting | Mount) && !undo.contains(&o.name);
            assert_eq!(r != MountRequest::default(), has_effect, "{item}");
            assert!(
                help.contains(&format!("  {}", o.name)),
                "{} not in help",
                o.name
            );
            assert_eq!(
                OPTIONS.iter().filter(|p| p.name == o.name).count(),
                1,
                "{}",
                o.name
            );
        }
    }
}
