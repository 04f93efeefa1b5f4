//! `sealedfs key list|add|remove|passwd STORE`: manage keyslots.
//!
//! Every change replaces the `volume` object with a conditional write on
//! the ETag read before ([`update`]): two key commands racing each other
//! cannot lose either's change; the loser re-reads the header and applies
//! its change again. A write whose answer was lost and whose retry finds
//! the header changed is recognised by reading back our own bytes. Only
//! the header changes, never data: a mounted volume keeps working (its
//! daemon holds the key in memory; keyslots only wrap it).
//!
//! Who may change slots: whoever can unlock the volume (any slot; `--kms`
//! for a KMS slot). New secrets come from `--new-passphrase-file`,
//! `SEALEDFS_NEW_PASSPHRASE` or a prompt on a terminal (asked twice), or a
//! key file (`add --key-file`, at least 32 random bytes), or a KMS key
//! (`add --kms-key-id`). A first change to a format-v1 volume writes it as
//! format v2 (its v1 slots carried over).

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};

use super::args::{KdfArgs, S3Args};
use super::error::{CliError, CliResult, EXIT_BUSY};
use super::header::HEADER_KEY;
use super::json::{JsonFlag, Report};
use super::kms::Kms;
use super::location::StoreSpec;
use super::passphrase::{self, Passphrase, Prompt, Secret};
use super::snapshot::utc;
use super::unlock::{self, KeyChoice};
use super::{header, init, process};
use crate::crypto::slot::{NewSlot, kms_context};
use crate::crypto::{KeyRing, SlotKind};
use crate::store::{ObjectStore, StoreError};
use crate::volume::{HeaderError, MAX_HEADER_LEN, VolumeHeader};

#[derive(Debug, Args)]
pub struct KeyArgs {
    #[command(subcommand)]
    pub action: KeyAction,
}

#[derive(Debug, Subcommand)]
pub enum KeyAction {
    /// List the keyslots: id, kind, created, KDF cost (no secrets).
    List(KeyListArgs),
    /// Add a keyslot: a new passphrase, a key file or a KMS key.
    Add(KeyAddArgs),
    /// Remove a keyslot (never the last one).
    Remove(KeyRemoveArgs),
    /// Change the passphrase of the keyslot that opens with the current
    /// one (rewrites that slot only; data untouched).
    Passwd(KeyPasswdArgs),
    /// Make a new master key and re-encrypt the volume under it, then erase
    /// the old key from every keyslot (works while mounted; resumes after a
    /// crash or an unmount).
    Rotate(KeyRotateArgs),
}

#[derive(Debug, Args)]
pub struct KeyRotateArgs {
    /// The volume: a local directory or s3://BUCKET[/PREFIX].
    pub store: String,
    /// Re-encrypt at most this many MiB per second (default: as fast as
    /// the store takes it).
    #[arg(long, value_name = "MIB_PER_S")]
    pub rate: Option<u64>,
    #[command(flatten)]
    pub current: CurrentKey,
    #[command(flatten)]
    pub s3: S3Args,
}

#[derive(Debug, Args)]
pub struct KeyListArgs {
    /// The volume: a local directory or s3://BUCKET[/PREFIX].
    pub store: String,
    #[command(flatten)]
    pub json: JsonFlag,
    #[command(flatten)]
    pub s3: S3Args,
}

/// How the command proves it may change the keyslots.
#[derive(Debug, Clone, Args)]
pub struct CurrentKey {
    /// The current passphrase, from this file.
    #[arg(long, value_name = "FILE", conflicts_with = "current_key_file")]
    pub passphrase_file: Option<PathBuf>,
    /// Unlock with this key file.
    #[arg(long, value_name = "FILE")]
    pub current_key_file: Option<PathBuf>,
    /// Unlock with the volume's KMS keyslots.
    #[arg(long, conflicts_with_all = ["passphrase_file", "current_key_file"])]
    pub kms: bool,
}

#[derive(Debug, Args)]
pub struct KeyAddArgs {
    /// The volume: a local directory or s3://BUCKET[/PREFIX].
    pub store: String,
    /// The new slot opens with this key file (at least 32 random bytes).
    #[arg(long, value_name = "FILE", conflicts_with = "kms_key_id")]
    pub key_file: Option<PathBuf>,
    /// The new slot is wrapped by this AWS KMS key (id, ARN or alias/NAME).
    #[arg(long, value_name = "ID")]
    pub kms_key_id: Option<String>,
    /// The new passphrase, from this file.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["key_file", "kms_key_id"])]
    pub new_passphrase_file: Option<PathBuf>,
    #[command(flatten)]
    pub current: CurrentKey,
    #[command(flatten)]
    pub kdf: KdfArgs,
    #[command(flatten)]
    pub s3: S3Args,
}

#[derive(Debug, Args)]
pub struct KeyRemoveArgs {
    /// The volume: a local directory or s3://BUCKET[/PREFIX].
    pub store: String,
    /// The keyslot to remove (see key list).
    #[arg(long, value_name = "N")]
    pub slot: u32,
    #[command(flatten)]
    pub current: CurrentKey,
    #[command(flatten)]
    pub s3: S3Args,
}

#[derive(Debug, Args)]
pub struct KeyPasswdArgs {
    /// The volume: a local directory or s3://BUCKET[/PREFIX].
    pub store: String,
    /// The new passphrase, from this file.
    #[arg(long, value_name = "FILE")]
    pub new_passphrase_file: Option<PathBuf>,
    #[command(flatten)]
    pub current: CurrentKey,
    #[command(flatten)]
    pub kdf: KdfArgs,
    #[command(flatten)]
    pub s3: S3Args,
}

/// Runs a `key` command. `env_pass` is `SEALEDFS_PASSPHRASE`, `new_env`
/// `SEALEDFS_NEW_PASSPHRASE`, both already out of the environment.
pub fn run(a: KeyArgs, env_pass: Option<Passphrase>, new_env: Option<Passphrase>) -> CliResult<()> {
    match a.action {
        KeyAction::List(a) => list(a),
        KeyAction::Add(a) => add(a, env_pass, new_env),
        KeyAction::Remove(a) => remove(a, env_pass),
        KeyAction::Passwd(a) => passwd(a, env_pass, new_env),
        KeyAction::Rotate(a) => super::rotation::run(a, env_pass),
    }
}

fn list(a: KeyListArgs) -> CliResult<()> {
    let spec = StoreSpec::parse(&a.store)?.with_s3(&a.s3);
    let store = spec.open()?;
    let h = header::read(&*store)?;
    let mut out = Report::stdout(a.json);
    let id: String = h.volume_id.iter().map(|b| format!("{b:02x}")).collect();
    if !out.is_json() {
        println!(
            "volume {id}: format v{}, cipher {}, key epoch {}",
            h.version, h.cipher, h.epoch
        );
    }
    for slot in &h.keyslots {
        let cost = match (slot.kind.kdf(), &slot.kind) {
            (Some(kdf), _) => format!("{kdf} (about {:.1} s)", slot.cost_ms() as f64 / 1000.0),
            (None, SlotKind::Kms { key_id }) => format!("KMS key {key_id}"),
            (None, _) => "no KDF (a random key)".to_owned(),
        };
        let row = SlotRow {
            slot: slot.id,
            kind: slot.kind.name(),
            created: utc(slot.created_unix.saturating_mul(1000)),
            cost,
        };
        out.item(&row, |r| {
            format!(
                "slot {}  {:<16} created {}  {}",
                r.slot, r.kind, r.created, r.cost
            )
        })?;
    }
    Ok(())
}

/// One line of `key list`.
#[derive(serde::Serialize)]
struct SlotRow {
    slot: u32,
    kind: &'static str,
    created: String,
    cost: String,
}

/// Opens the store and unlocks it with the current key.
pub(super) fn open(
    store_arg: &str,
    s3: &S3Args,
    current: &CurrentKey,
    env_pass: Option<Passphrase>,
) -> CliResult<(std::sync::Arc<dyn ObjectStore>, StoreSpec, u32, KeyRing)> {
    let spec = StoreSpec::parse(store_arg)?.with_s3(s3);
    let store = spec.open()?;
    let h = header::read(&*store)?;
    process::forbid_core_dumps()?;
    let secret = Secret::from_flags(
        current.passphrase_file.as_ref(),
        current.current_key_file.as_ref(),
    );
    let choice = KeyChoice {
        kms: current.kms,
        slot: None,
    };
    let (slot, ring) = unlock::unlock(&h, &spec.s3_args(), secret.as_ref(), env_pass, choice)?;
    Ok((store, spec, slot, ring))
}

/// The new passphrase: a file, `SEALEDFS_NEW_PASSPHRASE`, or asked twice.
fn new_passphrase(
    file: Option<&Path>,
    new_env: Option<Passphrase>,
    kdf: &KdfArgs,
) -> CliResult<Passphrase> {
    let pass = passphrase::obtain(file, new_env, Prompt::Confirm)?;
    if !kdf.weak_passphrase {
        passphrase::check_strength(&pass)?;
    }
    Ok(pass)
}

fn add(a: KeyAddArgs, env_pass: Option<Passphrase>, new_env: Option<Passphrase>) -> CliResult<()> {
    let (store, spec, _, ring) = open(&a.store, &a.s3, &a.current, env_pass)?;
    let id = if let Some(key_id) = &a.kms_key_id {
        let kms = Kms::connect(&spec.s3_args())?;
        let mut failed = None;
        let result = update(&*store, |h| {
            let context = kms_context(&h.volume_id, h.next_slot_id());
            let mut wrap = |plain: &[u8]| {
                kms.encrypt(key_id, plain, &context).map_err(|e| {
                    let msg = e.msg.clone();
                    failed = Some(e);
                    msg
                })
            };
            let new = NewSlot::Kms {
                key_id,
                wrap: &mut wrap,
            };
            Ok(h.add_slot(&ring, new)?)
        });
        match (result, failed) {
            (Err(_), Some(kms_error)) => return Err(kms_error),
            (result, _) => result?,
        }
    } else if let Some(path) = &a.key_file {
        let bytes =
            passphrase::obtain_from(Some(&Secret::KeyFile(path.clone())), None, Prompt::Once)?;
        update(
            &*store,
            |h| Ok(h.add_slot(&ring, NewSlot::KeyFile(&bytes))?),
        )?
    } else {
        let pass = new_passphrase(a.new_passphrase_file.as_deref(), new_env, &a.kdf)?;
        let kdf = init::kdf_of(&a.kdf, ring.cipher(), false)?;
        update(&*store, |h| {
            Ok(h.add_slot(
                &ring,
                NewSlot::Passphrase {
                    secret: &pass,
                    kdf: kdf.clone(),
                },
            )?)
        })?
    };
    let kind = match (&a.kms_key_id, &a.key_file) {
        (Some(_), _) => "KMS",
        (None, Some(_)) => "key file",
        (None, None) => "passphrase",
    };
    note(store, &ring, &format!("key add: keyslot {id} ({kind})"));
    println!("added keyslot {id}");
    Ok(())
}

fn remove(a: KeyRemoveArgs, env_pass: Option<Passphrase>) -> CliResult<()> {
    let (store, _, _, ring) = open(&a.store, &a.s3, &a.current, env_pass)?;
    update(&*store, |h| Ok(h.remove_slot(&ring, a.slot).map(drop)?))?;
    note(store, &ring, &format!("key remove: keyslot {}", a.slot));
    println!("removed keyslot {}", a.slot);
    Ok(())
}

fn passwd(
    a: KeyPasswdArgs,
    env_pass: Option<Passphrase>,
    new_env: Option<Passphrase>,
) -> CliResult<()> {
    if a.current.kms {
        return Err(CliError::usage(
            "passwd changes a passphrase: unlock with the current one, not --kms",
        ));
    }
    let (store, _, slot, ring) = open(&a.store, &a.s3, &a.current, env_pass)?;
    let pass = new_passphrase(a.new_passphrase_file.as_deref(), new_env, &a.kdf)?;
    let kdf = init::kdf_of(&a.kdf, ring.cipher(), false)?;
    update(&*store, |h| {
        Ok(h.replace_slot(
            &ring,
            slot,
            NewSlot::Passphrase {
                secret: &pass,
                kdf: kdf.clone(),
            },
        )?)
    })?;
    note(store, &ring, &format!("key passwd: keyslot {slot}"));
    println!("changed the passphrase of keyslot {slot}");
    Ok(())
}

/// Records a key change in the volume's audit trail.
pub(super) fn note(store: std::sync::Arc<dyn ObjectStore>, ring: &KeyRing, what: &str) {
    match header::read(&*store) {
        Ok(h) => super::mount::trail::record_admin(store, ring, h.volume_id, what),
        Err(e) => log::warn!(
            "AUDIT: could not record {what:?} in the audit trail: {}",
            e.msg
        ),
    }
}

/// Tries of [`update`] before giving up (each lost race re-reads).
const UPDATE_TRIES: usize = 10;

/// Reads the header with its ETag, applies `change`, and writes it back
/// only if nobody replaced it meanwhile; on a lost race, again.
pub(super) fn update<T>(
    store: &dyn ObjectStore,
    mut change: impl FnMut(&mut VolumeHeader) -> CliResult<T>,
) -> CliResult<T> {
    for _ in 0..UPDATE_TRIES {
        let etag = match store.head(HEADER_KEY)? {
            Some(info) => info.etag,
            None => return Err(HeaderError::NotAVolume.into()),
        };
        // Read after the ETag: if it changed in between, the write below
        // fails and this round starts over.
        let mut h = header::read(store)?;
        let out = change(&mut h)?;
        let bytes = h.encode();
        match store.put_if_match(HEADER_KEY, &bytes, &etag) {
            Ok(()) => return Ok(out),
            Err(StoreError::PreconditionFailed { .. }) => {
                // Our own write whose answer was lost, or another's.
                if store
                    .get_max(HEADER_KEY, MAX_HEADER_LEN as u64)
                    .ok()
                    .as_deref()
                    == Some(&bytes[..])
                {
                    return Ok(out);
                }
                log::info!("the volume header changed meanwhile; applying the change again");
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(CliError::new(
        EXIT_BUSY,
        "the volume header kept changing under this command; try again",
    ))
}
