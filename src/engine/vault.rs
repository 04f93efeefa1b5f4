//! The engine's keys, and the lock that wipes them (`sealedfs lock`).
//!
//! Rules:
//! - Every use takes the keys for one step ([`Vault::get`]) and fails
//!   with [`EngineError::Locked`] while the mount is locked; nothing keeps
//!   a guard across store I/O it does not need the keys for.
//! - [`Vault::lock`] waits for the steps under way, then zeroes every key
//!   byte in place (the buffers stay allocated, so a self-check can read
//!   them); [`Vault::unlock`] puts keys derived again from the passphrase
//!   in their place.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{RwLock, RwLockReadGuard};

use super::error::{EngineError, EngineResult};
use crate::crypto::Keys;

pub struct Vault {
    keys: RwLock<Keys>,
    locked: AtomicBool,
}

impl Vault {
    pub fn new(keys: Keys) -> Vault {
        Vault {
            keys: RwLock::new(keys),
            locked: AtomicBool::new(false),
        }
    }

    /// The keys for one step.
    pub fn get(&self) -> EngineResult<RwLockReadGuard<'_, Keys>> {
        if self.locked.load(Ordering::SeqCst) {
            return Err(EngineError::Locked);
        }
        let keys = self.keys.read().unwrap_or_else(|p| p.into_inner());
        // Locked while this caller waited for the read lock.
        if self.locked.load(Ordering::SeqCst) {
            return Err(EngineError::Locked);
        }
        Ok(keys)
    }

    pub fn is_locked(&self) -> bool {
        self.locked.load(Ordering::SeqCst)
    }

    /// Zeroes every key; returns whether the bytes read back as zero.
    pub fn lock(&self) -> bool {
        self.locked.store(true, Ordering::SeqCst);
        let mut keys = self.keys.write().unwrap_or_else(|p| p.into_inner());
        keys.wipe();
        keys.is_wiped()
    }

    /// Puts `keys` (a rotation's) in place of the ones in use, waiting for
    /// the steps under way; refused while locked, since nothing could be
    /// re-sealed then anyway.
    pub fn replace(&self, keys: Keys) -> EngineResult<()> {
        let mut held = self.keys.write().unwrap_or_else(|p| p.into_inner());
        if self.locked.load(Ordering::SeqCst) {
            return Err(EngineError::Locked);
        }
        *held = keys;
        Ok(())
    }

    /// Puts `keys` in place of the wiped ones.
    pub fn unlock(&self, keys: Keys) {
        *self.keys.write().unwrap_or_else(|p| p.into_inner()) = keys;
        self.locked.store(false, Ordering::SeqCst);
    }
}
