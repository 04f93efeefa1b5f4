//! `sealedfs init STORE`: write a new volume.
//!
//! Order matters so that a failure leaves nothing half-made:
//! 1. the store must be empty (no header, no objects) — checked before the
//!    passphrase is asked for;
//! 2. the header goes in create-only (`put_if_absent`), so two racing
//!    `init`s cannot both win;
//! 3. `Fs::format` writes the root directory; if it fails, the header is
//!    deleted again, so the directory never looks like a volume that
//!    cannot be mounted.
//!
//! A local store stays locked throughout, so a `mount` cannot open the
//! volume between steps 2 and 3. An S3 prefix has no lock: step 2's
//! create-only PUT is what makes one of two racing `init`s lose.

use std::path::Path;

use super::anchor::Anchors;
use super::args::InitArgs;
use super::args::KdfArgs;
use super::config::Config;
use super::error::{CliError, CliResult};
use super::header::HEADER_KEY;
use super::location::StoreSpec;
use super::passphrase::Secret;
use super::passphrase::{self, Passphrase, Prompt};
use super::process;
use super::settings::Settings;
use crate::crypto::kdf::MAX_UNLOCK_MS;
use crate::crypto::slot::MIN_KEY_FILE_LEN;
use crate::crypto::{Cipher, Kdf, KdfParams, KeyRing, MasterKey, NewSlot};
use crate::engine::{Anchor, Head};
use crate::fs::Fs;
use crate::store::{ObjectStore, StoreError};
use crate::volume::{MAX_CHUNK_SIZE, MIN_CHUNK_SIZE, VolumeHeader};

pub fn run(args: InitArgs, env_pass: Option<Passphrase>, config: Option<&Path>) -> CliResult<()> {
    let chunk_size = check_chunk_size(args.chunk_size)?;
    let cipher = Cipher::parse(&args.cipher).map_err(CliError::usage)?;
    // Refuse bad KDF flags before asking for anything.
    kdf_of(&args.kdf, cipher, args.insecure_fast_kdf)?;
    let flags = Settings {
        passphrase_file: args.passphrase_file.clone(),
        key_file: args.key_file.clone(),
        ..Settings::from_s3_flags(&args.s3)
    };
    let file = Config::load(config)?.for_store(&args.store);
    let secret = flags.secret(env_pass.is_some(), &file)?;
    let settings = flags.or(Settings::from_env()).or(file);
    let spec = StoreSpec::parse(&args.store)?.with_s3(&settings.s3_args());
    let store = spec.create()?;
    check_empty(&*store, &args.store)?;
    let _lock = spec.lock()?;

    process::forbid_core_dumps()?;
    let pass = passphrase::obtain_from(secret.as_ref(), env_pass, Prompt::Confirm)?;
    if pass.is_empty() {
        return Err(CliError::usage("empty passphrase"));
    }
    let key_file = matches!(secret, Some(Secret::KeyFile(_)));
    if !key_file && !args.kdf.weak_passphrase && !args.insecure_fast_kdf {
        passphrase::check_strength(&pass)?;
    }
    let kdf = kdf_of(&args.kdf, cipher, args.insecure_fast_kdf)?;
    let master = MasterKey::generate_for(cipher);
    let ring = KeyRing::single(0, master);
    // A key file of 32 bytes or more is a key: no slow KDF in front of it.
    let first = if key_file && pass.len() >= MIN_KEY_FILE_LEN {
        NewSlot::KeyFile(&pass)
    } else {
        NewSlot::Passphrase { secret: &pass, kdf }
    };
    let header = VolumeHeader::create(&ring, first, chunk_size)?;
    drop(pass);

    store
        .put_if_absent(HEADER_KEY, &header.encode())
        .map_err(|e| match e {
            StoreError::AlreadyExists { .. } => already_a_volume(&args.store),
            other => CliError::from(other),
        })?;
    if let Err(e) = Fs::format(store.clone(), &header, &ring) {
        let err = CliError::from(e).context("cannot format the volume");
        if let Err(undo) = store.delete(HEADER_KEY) {
            log::error!("could not remove the header of the unformatted volume: {undo}");
        }
        return Err(err);
    }
    // This host made the volume here: it is the one to expect at this
    // location from now on (a volume re-created at a path is not a
    // replaced one).
    let anchor = Anchor {
        volume_id: header.volume_id,
        head: Head {
            seq: 0,
            hash: [0; 32],
        },
    };
    if let Err(e) = Anchors::for_location(&spec.location()).reset(anchor) {
        log::warn!("cannot record the new volume for rollback checks: {e}");
    }
    println!(
        "created sealedfs volume {} (chunk size {} bytes, cipher {})",
        hex::encode(header.volume_id),
        header.chunk_size,
        header.cipher
    );
    Ok(())
}

/// The KDF of a new passphrase slot from `--kdf`, `--kdf-memory` and
/// `--kdf-time`: Argon2id by default, PBKDF2-SHA256 by default on an
/// AES-256-GCM volume; `insecure_fast` (tests) keeps the family but costs
/// nothing.
pub fn kdf_of(a: &KdfArgs, cipher: Cipher, insecure_fast: bool) -> CliResult<Kdf> {
    let name = a.kdf.as_deref().unwrap_or(match cipher {
        Cipher::Aes256Gcm => "pbkdf2-sha256",
        Cipher::XChaCha20Poly1305 => "argon2id",
    });
    let kdf = match name {
        "argon2id" => {
            let mut p = KdfParams::default();
            if let Some(bytes) = a.kdf_memory {
                p.m_cost_kib = u32::try_from(bytes >> 10).unwrap_or(u32::MAX);
            }
            if let Some(t) = a.kdf_time {
                p.t_cost = t;
            }
            Kdf::Argon2id(p)
        }
        "pbkdf2-sha256" => {
            if a.kdf_memory.is_some() {
                return Err(CliError::usage("--kdf-memory applies to argon2id only"));
            }
            match (Kdf::pbkdf2_default(), a.kdf_time) {
                (_, Some(iterations)) => Kdf::Pbkdf2Sha256 { iterations },
                (default, None) => default,
            }
        }
        other => {
            return Err(CliError::usage(format!(
                "unknown --kdf {other:?}: expected argon2id or pbkdf2-sha256"
            )));
        }
    };
    if let Err(e) = kdf.validate() {
        return Err(CliError::usage(format!("invalid KDF cost: {e}")));
    }
    if kdf.cost_ms() > MAX_UNLOCK_MS {
        return Err(CliError::usage(format!(
            "that KDF would cost about {} s per unlock, more than the {} s an unlock may spend",
            kdf.cost_ms() / 1000,
            MAX_UNLOCK_MS / 1000
        )));
    }
    Ok(if insecure_fast {
        kdf.insecure_fast_like()
    } else {
        kdf
    })
}

fn check_chunk_size(size: u64) -> CliResult<u32> {
    let range = u64::from(MIN_CHUNK_SIZE)..=u64::from(MAX_CHUNK_SIZE);
    match u32::try_from(size) {
        Ok(s) if size.is_power_of_two() && range.contains(&size) => Ok(s),
        _ => Err(CliError::usage(format!(
            "chunk size {size} is not a power of two from 4K to 1M"
        ))),
    }
}

fn check_empty(store: &dyn ObjectStore, label: &str) -> CliResult<()> {
    if store.head(HEADER_KEY)?.is_some() {
        return Err(already_a_volume(label));
    }
    if !store.list("")?.is_empty() {
        return Err(CliError::usage(format!(
            "store {label} is not empty: it holds objects that are not a sealedfs volume"
        )));
    }
    Ok(())
}

fn already_a_volume(label: &str) -> CliError {
    CliError::usage(format!("store {label} already holds a sealedfs volume"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_sizes() {
        assert_eq!(check_chunk_size(4 << 10), Ok(4096));
        assert_eq!(check_chunk_size(64 << 10), Ok(65536));
        assert_eq!(check_chunk_size(1 << 20), Ok(1 << 20));
        for bad in [2 << 10, 2 << 20, 65535, 96 << 10] {
            assert_eq!(check_chunk_size(bad).unwrap_err().code, 1, "{bad}");
        }
    }

    #[test]
    fn kdf_flags() {
        let none = KdfArgs::default();
        assert_eq!(
            kdf_of(&none, Cipher::default(), false).unwrap(),
            Kdf::Argon2id(KdfParams::default())
        );
        assert_eq!(
            kdf_of(&none, Cipher::Aes256Gcm, false).unwrap(),
            Kdf::pbkdf2_default()
        );
        let small = KdfArgs {
            kdf_memory: Some(64 << 20),
            kdf_time: Some(2),
            ..KdfArgs::default()
        };
        let want = KdfParams {
            m_cost_kib: 65536,
            t_cost: 2,
            p_cost: 1,
        };
        assert_eq!(
            kdf_of(&small, Cipher::default(), false).unwrap(),
            Kdf::Argon2id(want)
        );
        assert_eq!(
            kdf_of(&small, Cipher::Aes256Gcm, false).unwrap_err().code,
            1,
            "memory with pbkdf2"
        );
        let huge = KdfArgs {
            kdf_memory: Some(4 << 30),
            kdf_time: Some(100),
            ..KdfArgs::default()
        };
        assert!(
            kdf_of(&huge, Cipher::default(), false)
                .unwrap_err()
                .msg
                .contains("per unlock")
        );
        let bad = KdfArgs {
            kdf: Some("scrypt".into()),
            ..KdfArgs::default()
        };
        assert_eq!(kdf_of(&bad, Cipher::default(), false).unwrap_err().code, 1);
    }
}
