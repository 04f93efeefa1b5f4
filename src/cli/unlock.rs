//! Unlocking a volume for a command: which secret, which keyslots.
//!
//! Order of sources (the passphrase sources themselves are ranked by
//! `settings` and `passphrase`):
//! 1. `--kms`: KMS keyslots only, with the host's AWS credentials; no
//!    passphrase is ever asked for.
//! 2. No passphrase source at all (no file named by a flag or the config
//!    file, no `SEALEDFS_PASSPHRASE`) and the volume has KMS keyslots: they
//!    are tried first (an EC2 host mounting at boot); if KMS refuses, a
//!    terminal gets a prompt (the refusal is printed as a warning), anything
//!    else gets KMS's one-line refusal.
//! 3. The passphrase or key file, against the slots it may open (a key file
//!    tries key-file slots first), within the header's KDF budget;
//!    `--slot N` tries slot N alone.

use std::io::IsTerminal;

use super::args::{KeySource, S3Args};
use super::error::{CliError, CliResult};
use super::kms::Kms;
use super::passphrase::{self, Passphrase, Prompt, Secret};
use crate::crypto::slot::kms_context;
use crate::crypto::{KeyRing, SlotSecret};
use crate::volume::VolumeHeader;

/// What the command line says about the key.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KeyChoice {
    /// `--kms`: KMS keyslots only.
    pub kms: bool,
    /// `--slot N`: this keyslot only.
    pub slot: Option<u32>,
}

/// Unlocks `header` as the module notes say; returns the slot that opened
/// and the key ring.
pub fn unlock(
    header: &VolumeHeader,
    s3: &S3Args,
    secret: Option<&Secret>,
    env_pass: Option<Passphrase>,
    choice: KeyChoice,
) -> CliResult<(u32, KeyRing)> {
    if choice.kms {
        return with_kms(header, s3, choice.slot);
    }
    let kms_fits = choice
        .slot
        .is_none_or(|id| header.kms_slots().iter().any(|(s, _)| *s == id));
    if secret.is_none() && env_pass.is_none() && kms_fits && !header.kms_slots().is_empty() {
        match with_kms(header, s3, choice.slot) {
            Ok(opened) => return Ok(opened),
            Err(e) if std::io::stdin().is_terminal() => {
                log::warn!("{}; asking for a passphrase instead", e.msg);
            }
            Err(e) => return Err(e),
        }
    }
    let pass = passphrase::obtain_from(secret, env_pass, Prompt::Once)?;
    let slot_secret = match secret {
        Some(Secret::KeyFile(_)) => SlotSecret::KeyFile(&pass),
        _ => SlotSecret::Passphrase(&pass),
    };
    Ok(header.unlock_ring(slot_secret, choice.slot)?)
}

/// The key ring for a command that opens the volume (fsck, snapshots,
/// audit, a short-lived writer), from its `KeySource` flags: KMS first
/// when no passphrase source is given, as for a mount.
pub fn ring(
    header: &VolumeHeader,
    s3: &S3Args,
    key: &KeySource,
    env_pass: Option<Passphrase>,
) -> CliResult<KeyRing> {
    let secret = Secret::from_flags(key.passphrase_file.as_ref(), key.key_file.as_ref());
    let choice = KeyChoice {
        kms: key.kms,
        slot: key.slot,
    };
    let (_, ring) = unlock(header, s3, secret.as_ref(), env_pass, choice)?;
    Ok(ring)
}

/// Tries the KMS keyslots (or KMS slot `only`) in order; the first that
/// KMS decrypts and whose ring opens wins. Errors name the key.
pub fn with_kms(
    header: &VolumeHeader,
    s3: &S3Args,
    only: Option<u32>,
) -> CliResult<(u32, KeyRing)> {
    let slots: Vec<(u32, String)> = header
        .kms_slots()
        .into_iter()
        .filter(|(id, _)| only.is_none_or(|o| o == *id))
        .collect();
    if slots.is_empty() {
        return Err(CliError::usage(match only {
            Some(id) => format!("keyslot {id} is not a KMS keyslot"),
            None => "the volume has no KMS keyslot (add one with sealedfs key add --kms-key-id)"
                .to_owned(),
        }));
    }
    let kms = Kms::connect(s3)?;
    let mut first_error = None;
    for (id, key_id) in slots {
        let slot = header.slot(id)?;
        let context = kms_context(&header.volume_id, id);
        let opened = kms
            .decrypt(&key_id, &slot.wrapped, &context)
            .and_then(|private| Ok(header.unlock_kms(id, &private)?));
        match opened {
            Ok(ring) => return Ok((id, ring)),
            Err(e) => {
                log::info!("KMS keyslot {id}: {}", e.msg);
                first_error.get_or_insert(e);
            }
        }
    }
    Err(first_error.expect("at least one slot was tried"))
}
