//! `sealedfs lock MOUNTPOINT` and `sealedfs unlock MOUNTPOINT`: asked of
//! the mount's daemon over its control socket (root and the mount's owner
//! only). What a lock does is `crate::fs::lockdown`'s.

use super::args::{LockArgs, UnlockArgs};
use super::control::{self, Reply, Request};
use super::error::{CliError, CliResult};
use super::passphrase::{self, Passphrase, Prompt, Secret};
use super::snapshot::human_bytes;
use super::status::daemon_of;

pub fn lock(args: LockArgs) -> CliResult<()> {
    let pid = daemon_of(&args.mountpoint)?;
    match control::call(pid, &Request::Lock)? {
        Reply::Locked {
            keys_zeroed,
            dropped_bytes,
        } => {
            if !keys_zeroed {
                return Err(CliError::usage(
                    "locked, but a key did not read back as zeros: restart the mount",
                ));
            }
            println!(
                "{} locked: changes committed, keys wiped, {} of cached plaintext dropped",
                args.mountpoint.display(),
                human_bytes(dropped_bytes)
            );
            Ok(())
        }
        other => Err(CliError::usage(format!("the daemon answered {other:?}"))),
    }
}

pub fn unlock(args: UnlockArgs, env_pass: Option<Passphrase>) -> CliResult<()> {
    let pid = daemon_of(&args.mountpoint)?;
    let key = &args.key;
    let secret = Secret::from_flags(key.passphrase_file.as_ref(), key.key_file.as_ref());
    let pass = match key.kms {
        true => None,
        false => Some(passphrase::obtain_from(
            secret.as_ref(),
            env_pass,
            Prompt::Once,
        )?),
    };
    let request = Request::Unlock {
        secret: pass.as_ref().map(|p| p.to_vec()),
        key_file: key.key_file.is_some(),
        kms: key.kms,
        slot: key.slot,
    };
    let reply = control::call(pid, &request);
    if let Request::Unlock {
        secret: Some(mut s),
        ..
    } = request
    {
        zeroize::Zeroize::zeroize(&mut s);
    }
    match reply? {
        Reply::Done => {
            println!("{} unlocked", args.mountpoint.display());
            Ok(())
        }
        other => Err(CliError::usage(format!("the daemon answered {other:?}"))),
    }
}
