//! Settings that can be given in several places, and which place wins.
//!
//! A setting (the cache size, how to reach an S3 store, where the secret
//! is) may come from four layers; the first that says something wins:
//!
//! | layer | where |
//! |---|---|
//! | flag | `--cache-size 1G` or its `-o cache_size=1G` spelling (an fstab line) |
//! | environment | `AWS_ENDPOINT_URL_S3`/`AWS_ENDPOINT_URL` (endpoint), `AWS_REGION` (region), `SEALEDFS_PASSPHRASE` (the secret) |
//! | config file | the store's `[volume."STORE"]` table, then the file's top-level keys ([`super::config`]) |
//! | default | as `--help` says |
//!
//! A flag and its `-o` spelling are one layer: giving both with different
//! values is refused, never silently resolved. Switches (`path_style`,
//! `allow_http`, `allow_other`) can only be turned on by a layer; a layer
//! that does not mention one leaves it to the next.
//!
//! The secret is chosen as a whole, not field by field: a `--key-file`
//! flag beats `SEALEDFS_PASSPHRASE`, which beats a `passphrase_file` in the
//! config file; `passphrase_file` and `key_file` in one layer are refused.

use std::path::PathBuf;

use super::args::S3Args;
use super::error::{CliError, CliResult};
use super::passphrase::Secret;

/// The layered settings; `None` means "this layer does not say".
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Settings {
    pub cache_size: Option<u64>,
    pub cache_dir: Option<PathBuf>,
    pub cache_dir_size: Option<u64>,
    pub passphrase_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub allow_other: Option<bool>,
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub path_style: Option<bool>,
    pub allow_http: Option<bool>,
    pub insecure_permissions: Option<bool>,
    pub sse: Option<String>,
    pub sse_kms_key_id: Option<String>,
}

impl Settings {
    /// The flags of a command line's S3 connection (`--endpoint` …).
    pub fn from_s3_flags(s3: &S3Args) -> Settings {
        Settings {
            endpoint: s3.endpoint.clone(),
            region: s3.region.clone(),
            path_style: s3.path_style.then_some(true),
            allow_http: s3.allow_http.then_some(true),
            insecure_permissions: s3.insecure_permissions.then_some(true),
            sse: s3.sse.clone(),
            sse_kms_key_id: s3.sse_kms_key_id.clone(),
            ..Settings::default()
        }
    }

    /// What the environment says. The SDK would read these variables
    /// itself, but only when nothing else names an endpoint or region, so
    /// they are read here to rank them above the config file.
    pub fn from_env() -> Settings {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        Settings {
            endpoint: var("AWS_ENDPOINT_URL_S3").or_else(|| var("AWS_ENDPOINT_URL")),
            region: var("AWS_REGION"),
            ..Settings::default()
        }
    }

    /// This layer over `lower`: each field from the first that has it.
    /// The secret's two fields move together (see [`Settings::secret`]).
    pub fn or(self, lower: Settings) -> Settings {
        let own_secret = self.passphrase_file.is_some() || self.key_file.is_some();
        let (passphrase_file, key_file) = if own_secret {
            (self.passphrase_file, self.key_file)
        } else {
            (lower.passphrase_file, lower.key_file)
        };
        Settings {
            cache_size: self.cache_size.or(lower.cache_size),
            cache_dir: self.cache_dir.or(lower.cache_dir),
            cache_dir_size: self.cache_dir_size.or(lower.cache_dir_size),
            passphrase_file,
            key_file,
            allow_other: self.allow_other.or(lower.allow_other),
            endpoint: self.endpoint.or(lower.endpoint),
            region: self.region.or(lower.region),
            path_style: self.path_style.or(lower.path_style),
            allow_http: self.allow_http.or(lower.allow_http),
            insecure_permissions: self.insecure_permissions.or(lower.insecure_permissions),
            sse: self.sse.or(lower.sse),
            sse_kms_key_id: self.sse_kms_key_id.or(lower.sse_kms_key_id),
        }
    }

    /// Where this layer says the secret is, if it says.
    fn own_secret(&self) -> CliResult<Option<Secret>> {
        match (&self.passphrase_file, &self.key_file) {
            (Some(_), Some(_)) => Err(CliError::usage(
                "both a passphrase file and a key file are given: keep one",
            )),
            (Some(p), None) => Ok(Some(Secret::PassphraseFile(p.clone()))),
            (None, Some(k)) => Ok(Some(Secret::KeyFile(k.clone()))),
            (None, None) => Ok(None),
        }
    }

    /// The secret's source by precedence: this layer's (the flags') file,
    /// else nothing when `SEALEDFS_PASSPHRASE` was set (the caller uses
    /// it), else the config file's. `None`: the environment or a prompt.
    pub fn secret(&self, env_has_passphrase: bool, file: &Settings) -> CliResult<Option<Secret>> {
        if let Some(s) = self.own_secret()? {
            return Ok(Some(s));
        }
        if env_has_passphrase {
            return Ok(None);
        }
        file.own_secret()
    }

    /// The S3 connection these settings describe.
    pub fn s3_args(&self) -> S3Args {
        S3Args {
            endpoint: self.endpoint.clone(),
            region: self.region.clone(),
            path_style: self.path_style.unwrap_or(false),
            allow_http: self.allow_http.unwrap_or(false),
            insecure_permissions: self.insecure_permissions.unwrap_or(false),
            sse: self.sse.clone(),
            sse_kms_key_id: self.sse_kms_key_id.clone(),
            conditional_writes: None,
        }
    }
}

/// Sets `slot` to `value` unless it holds a different value already: the
/// same setting given twice in one layer (`--cache-size 1G -o
/// cache_size=2G`) is a mistake to report, not a race to resolve.
pub fn set_once<T: PartialEq + std::fmt::Debug>(
    slot: &mut Option<T>,
    value: T,
    name: &str,
) -> Result<(), String> {
    match slot {
        Some(old) if *old != value => Err(format!(
            "{name} is given twice with different values ({old:?} and {value:?})"
        )),
        _ => {
            *slot = Some(value);
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file_settings() -> Settings {
        Settings {
            cache_size: Some(1 << 30),
            passphrase_file: Some("/etc/sealedfs/ehr.pass".into()),
            endpoint: Some("https://file.example".into()),
            region: Some("eu-west-1".into()),
            path_style: Some(true),
            ..Settings::default()
        }
    }

    #[test]
    fn upper_layers_win_field_by_field() {
        let flags = Settings {
            cache_size: Some(64 << 20),
            ..Settings::default()
        };
        let env = Settings {
            endpoint: Some("http://127.0.0.1:9000".into()),
            ..Settings::default()
        };
        let merged = flags.or(env).or(file_settings());
        assert_eq!(merged.cache_size, Some(64 << 20));
        assert_eq!(merged.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert_eq!(merged.region.as_deref(), Some("eu-west-1"));
        assert_eq!(merged.path_style, Some(true));
        assert_eq!(merged.allow_other, None);
        let s3 = merged.s3_args();
        assert!(s3.path_style && !s3.allow_http);
        assert_eq!(s3.region.as_deref(), Some("eu-west-1"));
    }

    #[test]
    fn the_secret_moves_as_a_whole() {
        let flags = Settings {
            key_file: Some("/k".into()),
            ..Settings::default()
        };
        let merged = flags.clone().or(file_settings());
        assert_eq!(merged.key_file, Some("/k".into()));
        assert_eq!(merged.passphrase_file, None);

        let file = file_settings();
        let from_file = Some(Secret::PassphraseFile("/etc/sealedfs/ehr.pass".into()));
        assert_eq!(
            flags.secret(true, &file).unwrap(),
            Some(Secret::KeyFile("/k".into()))
        );
        // SEALEDFS_PASSPHRASE beats the file, loses to a flag.
        assert_eq!(Settings::default().secret(true, &file).unwrap(), None);
        assert_eq!(Settings::default().secret(false, &file).unwrap(), from_file);
        assert_eq!(
            Settings::default()
                .secret(false, &Settings::default())
                .unwrap(),
            None
        );
        let both = Settings {
            passphrase_file: Some("/p".into()),
            key_file: Some("/k".into()),
            ..Settings::default()
        };
        assert_eq!(both.secret(false, &file).unwrap_err().code, 1);
        assert_eq!(
            Settings::default().secret(false, &both).unwrap_err().code,
            1
        );
    }

    #[test]
    fn set_once_refuses_a_different_second_value() {
        let mut slot = None;
        assert_eq!(set_once(&mut slot, 5u64, "cache_size"), Ok(()));
        assert_eq!(set_once(&mut slot, 5u64, "cache_size"), Ok(()));
        let e = set_once(&mut slot, 6u64, "cache_size").unwrap_err();
        assert_eq!(
            e,
            "cache_size is given twice with different values (5 and 6)"
        );
        assert_eq!(slot, Some(5));
    }

    #[test]
    fn s3_flags_become_a_layer() {
        let s3 = S3Args {
            endpoint: Some("https://e".into()),
            path_style: true,
            ..S3Args::default()
        };
        let s = Settings::from_s3_flags(&s3);
        assert_eq!(s.path_style, Some(true));
        assert_eq!(s.allow_http, None);
        assert_eq!(s.s3_args(), s3);
    }
}
