//! The config file: `/etc/sealedfs/config.toml`, or the file named by
//! `--config FILE` or `SEALEDFS_CONFIG`.
//!
//! It holds what a boot-time mount cannot take from a shell: how to reach
//! the store and where the secret is. mount(8) runs helpers without the
//! caller's `PATH` and systemd without a login environment, so an fstab
//! line either repeats every setting or names a volume this file
//! describes:
//!
//! ```toml
//! # Settings for every volume.
//! region = "eu-west-1"
//! cache_size = "512M"
//!
//! # Settings for one volume, found by the STORE argument.
//! [volume."s3://ehr-prod/volume1"]
//! passphrase_file = "/etc/sealedfs/ehr.pass"
//! allow_other = true
//! ```
//!
//! Keys are the `-o` names of the settings ([`Kind::Setting`] in
//! `mount_options`), with the same meaning and parser: strings, `true`
//! for switches, a number or a string like `"512M"` for sizes. Per-mount
//! choices (`ro`, `foreground`, …) belong on the command line or the fstab
//! line, not here. Which layer wins is `settings`'s rule: flag >
//! environment > the volume's table > top-level keys > default.
//!
//! The default file may be missing; a file named by `--config` or
//! `SEALEDFS_CONFIG` must exist. Any key or table this module does not
//! know, or a value of the wrong type, is an error naming the file, the
//! line and the key (exit 1): a misspelt `pasphrase_file` must not send a
//! boot-time mount to a prompt that nobody answers.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::error::{CliError, CliResult};
use super::location::StoreSpec;
use super::mount_options::{Kind, MountRequest, spec};
use super::settings::Settings;

pub const DEFAULT_PATH: &str = "/etc/sealedfs/config.toml";
pub const PATH_VAR: &str = "SEALEDFS_CONFIG";

/// A parsed config file: the top-level settings and each volume's.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Config {
    pub defaults: Settings,
    /// By store, as [`store_key`] spells it.
    pub volumes: BTreeMap<String, Settings>,
}

impl Config {
    /// Reads the file `flag` names, else `SEALEDFS_CONFIG`'s, else the
    /// default one if it exists.
    pub fn load(flag: Option<&Path>) -> CliResult<Config> {
        let named = flag
            .map(Path::to_path_buf)
            .or_else(|| std::env::var_os(PATH_VAR).map(PathBuf::from));
        let (path, must_exist) = match named {
            Some(p) => (p, true),
            None => (PathBuf::from(DEFAULT_PATH), false),
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => Config::parse(&text, &path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !must_exist => {
                Ok(Config::default())
            }
            Err(e) => Err(CliError::usage(format!(
                "cannot read config file {}: {e}",
                path.display()
            ))),
        }
    }

    /// Parses `text` (read from `path`, which error messages name).
    pub fn parse(text: &str, path: &Path) -> CliResult<Config> {
        let shown = path.display();
        let doc: toml::Table = text.parse().map_err(|e: toml::de::Error| {
            let line = e
                .span()
                .map_or(String::new(), |r| format!(":{}", line_of(text, r.start)));
            CliError::usage(format!("config file {shown}{line}: {}", e.message().trim()))
        })?;
        let mut config = Config::default();
        for (key, value) in &doc {
            match (key.as_str(), value) {
                ("volume", toml::Value::Table(volumes)) => {
                    for (store, table) in volumes {
                        let here = format!("{shown}: [volume.{store:?}]");
                        let toml::Value::Table(table) = table else {
                            return Err(bad(&here, "must be a table of settings"));
                        };
                        let key = store_key(store).map_err(|e| {
                            CliError::usage(format!("config file {here}: {}", e.msg))
                        })?;
                        let mut settings = Settings::default();
                        for (k, v) in table {
                            apply(&mut settings, k, v).map_err(|e| bad(&here, &e))?;
                        }
                        config.volumes.insert(key, settings);
                    }
                }
                ("volume", _) => {
                    return Err(bad(
                        &shown.to_string(),
                        "volume must be a table: [volume.\"STORE\"]",
                    ));
                }
                (name, v) => {
                    apply(&mut config.defaults, name, v).map_err(|e| bad(&shown.to_string(), &e))?
                }
            }
        }
        Ok(config)
    }

    /// The file's layer for `store`: its volume table over the top-level
    /// keys.
    pub fn for_store(&self, store: &str) -> Settings {
        let own = store_key(store)
            .ok()
            .and_then(|k| self.volumes.get(&k).cloned())
            .unwrap_or_default();
        own.or(self.defaults.clone())
    }
}

fn bad(here: &str, what: &str) -> CliError {
    CliError::usage(format!("config file {here}: {what}"))
}

/// Applies one `key = value` through the `-o` option of that name.
fn apply(settings: &mut Settings, key: &str, value: &toml::Value) -> Result<(), String> {
    use toml::Value;
    let Some(spec) = spec(key).filter(|s| s.kind == Kind::Setting) else {
        let hint = match spec(key) {
            Some(_) => " (a choice for one mount: put it on the command line or the fstab line)",
            None => "",
        };
        return Err(format!("unknown key {key:?}{hint}"));
    };
    let item = match (spec.value, value) {
        (None, Value::Boolean(true)) => key.to_owned(),
        (None, Value::Boolean(false)) => return Ok(()),
        (None, _) => return Err(format!("{key} must be true or false")),
        (Some(_), Value::String(s)) => format!("{key}={s}"),
        (Some(_), Value::Integer(n)) if key == "cache_size" || key == "cache_dir_size" => {
            format!("{key}={n}")
        }
        (Some(meta), _) => return Err(format!("{key} must be a string ({meta})")),
    };
    let mut req = MountRequest {
        settings: std::mem::take(settings),
        ..MountRequest::default()
    };
    let result = req.apply_list(&item).map_err(|e| e.msg);
    *settings = req.settings;
    result
}

/// A store as the file and the command line are compared: `s3://B/P`
/// without a trailing slash, a local directory as an absolute path
/// (resolved when it exists).
pub fn store_key(store: &str) -> CliResult<String> {
    Ok(match StoreSpec::parse(store)? {
        StoreSpec::Local(path, _) => {
            let abs = std::fs::canonicalize(&path)
                .or_else(|_| std::path::absolute(&path))
                .unwrap_or(path);
            abs.display().to_string()
        }
        s3 => s3.to_string(),
    })
}

/// The 1-based line of byte offset `at`.
fn line_of(text: &str, at: usize) -> usize {
    text.get(..at).map_or(0, |t| t.matches('\n').count()) + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"
# every volume
region = "eu-west-1"
cache_size = "512M"
path_style = false

[volume."s3://ehr-prod/volume1/"]
passphrase_file = "/etc/sealedfs/ehr.pass"
allow_other = true
cache_size = 1073741824
cache_dir = "/var/cache/sealedfs"
cache_dir_size = 21474836480

[volume."/srv/vault"]
key_file = "/etc/sealedfs/vault.key"
endpoint = "http://127.0.0.1:9000"
"#;

    fn parse(text: &str) -> CliResult<Config> {
        Config::parse(text, Path::new("/etc/sealedfs/config.toml"))
    }

    #[test]
    fn volumes_over_defaults() {
        let c = parse(SAMPLE).unwrap();
        let ehr = c.for_store("s3://ehr-prod/volume1");
        assert_eq!(ehr.cache_size, Some(1 << 30));
        assert_eq!(ehr.cache_dir, Some("/var/cache/sealedfs".into()));
        assert_eq!(ehr.cache_dir_size, Some(20 << 30));
        assert_eq!(ehr.region.as_deref(), Some("eu-west-1"));
        assert_eq!(ehr.allow_other, Some(true));
        assert_eq!(ehr.path_style, None);
        assert_eq!(ehr.passphrase_file, Some("/etc/sealedfs/ehr.pass".into()));
        let vault = c.for_store("file:///srv/vault");
        assert_eq!(vault.key_file, Some("/etc/sealedfs/vault.key".into()));
        assert_eq!(vault.cache_size, Some(512 << 20));
        let other = c.for_store("s3://other");
        assert_eq!(other, c.defaults);
        assert_eq!(parse("").unwrap(), Config::default());
    }

    #[test]
    fn mistakes_name_file_line_and_key() {
        let table: &[(&str, &str)] = &[
            (
                "pasphrase_file = \"/p\"",
                "config file /etc/sealedfs/config.toml: unknown key \"pasphrase_file\"",
            ),
            (
                "\n\nro = true",
                "config file /etc/sealedfs/config.toml: unknown key \"ro\" (a choice for one mount: put it on the command line or the fstab line)",
            ),
            (
                "allow_other = \"yes\"",
                "config file /etc/sealedfs/config.toml: allow_other must be true or false",
            ),
            (
                "region = 3",
                "config file /etc/sealedfs/config.toml: region must be a string (REGION)",
            ),
            (
                "cache_size = \"12Q\"",
                "config file /etc/sealedfs/config.toml: mount option cache_size: invalid size \"12Q\": unknown unit \"Q\"",
            ),
            (
                "[volume]\nx = 1",
                "config file /etc/sealedfs/config.toml: [volume.\"x\"]: must be a table of settings",
            ),
            (
                "volume = 1",
                "config file /etc/sealedfs/config.toml: volume must be a table",
            ),
            (
                "[volume.\"gs://b\"]",
                "config file /etc/sealedfs/config.toml: [volume.\"gs://b\"]: unsupported store \"gs://b\"",
            ),
            (
                "[volume.\"/v\"]\nendpoint = true",
                "config file /etc/sealedfs/config.toml: [volume.\"/v\"]: endpoint must be a string (URL)",
            ),
            ("\nregion = ", "config file /etc/sealedfs/config.toml:2: "),
        ];
        for (text, want) in table {
            let e = parse(text).unwrap_err();
            assert_eq!(e.code, 1);
            assert!(e.msg.starts_with(want), "{text:?}: {}", e.msg);
            assert!(!e.msg.contains('\n'));
        }
    }

    #[test]
    fn the_documented_example_parses() {
        let text = include_str!("../../docs/systemd/config.toml");
        let c = parse(text).unwrap();
        let ehr = c.for_store("s3://ehr-prod/volume1/");
        assert_eq!(ehr.passphrase_file, Some("/etc/sealedfs/ehr.pass".into()));
        assert_eq!(ehr.allow_other, Some(true));
        assert_eq!(ehr.region.as_deref(), Some("us-east-1"));
        let scans = c.for_store("file:///srv/vaults/scans");
        assert_eq!(scans.cache_size, Some(1 << 30));
    }

    #[test]
    fn loading() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "region = \"r1\"\n").unwrap();
        assert_eq!(
            Config::load(Some(&path))
                .unwrap()
                .defaults
                .region
                .as_deref(),
            Some("r1")
        );
        let e = Config::load(Some(&dir.path().join("missing.toml"))).unwrap_err();
        assert!(e.msg.starts_with("cannot read config file"), "{}", e.msg);
    }

    #[test]
    fn store_keys() {
        assert_eq!(store_key("s3://b/p/").unwrap(), "s3://b/p");
        assert_eq!(store_key("s3://b").unwrap(), "s3://b");
        let dir = tempfile::tempdir().unwrap();
        let real = std::fs::canonicalize(dir.path()).unwrap();
        let spelled = format!("file://{}/.", dir.path().display());
        assert_eq!(store_key(&spelled).unwrap(), real.display().to_string());
        assert_eq!(store_key("/no/such/dir").unwrap(), "/no/such/dir");
    }
}
