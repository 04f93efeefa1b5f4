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
use super::config::Config;
use super::error::{CliError, CliResult};
use super::header::HEADER_KEY;
use super::location::StoreSpec;
use super::passphrase::{self, Passphrase, Prompt};
use super::process;
use super::settings::Settings;
use crate::crypto::{KdfParams, MasterKey};
use crate::engine::{Anchor, Head};
use crate::fs::Fs;
use crate::store::{ObjectStore, StoreError};
use crate::volume::{MAX_CHUNK_SIZE, MIN_CHUNK_SIZE, VolumeHeader};

pub fn run(args: InitArgs, env_pass: Option<Passphrase>, config: Option<&Path>) -> CliResult<()> {
    let chunk_size = check_chunk_size(args.chunk_size)?;
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
    let kdf = if args.insecure_fast_kdf {
        KdfParams::insecure_fast()
    } else {
        KdfParams::default()
    };
    let master = MasterKey::generate();
    let header = VolumeHeader::new(&master, &pass, kdf, chunk_size)?;
    drop(pass);

    store
        .put_if_absent(HEADER_KEY, &header.encode())
        .map_err(|e| match e {
            StoreError::AlreadyExists { .. } => already_a_volume(&args.store),
            other => CliError::from(other),
        })?;
    if let Err(e) = Fs::format(store.clone(), &header, &master) {
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
        "created sealedfs volume {} (chunk size {} bytes)",
        hex::encode(header.volume_id),
        header.chunk_size
    );
    Ok(())
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
}
