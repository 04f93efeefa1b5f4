//! Open file and directory handles, and the per-inode data locks.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use super::audit::Opener;
use super::{Caller, Kind};

/// A directory listing snapshot taken at `opendir`, so offsets stay stable
/// while entries are added or removed.
pub type DirSnapshot = Vec<(Vec<u8>, u64, Kind)>;

pub struct Handle {
    /// Who opened it: reads and writes through the handle are theirs.
    pub caller: Caller,
    /// Who opened it by which path, when the mount is audited.
    pub opener: Option<Opener>,
    /// Bytes served and taken through it, for its audit record.
    pub read: u64,
    pub written: u64,
    pub flags: i32,
    pub dir: Option<Arc<DirSnapshot>>,
    /// End of the last read, to detect sequential readers.
    pub last_read_end: u64,
    /// Read-ahead in chunks; doubles while reads stay sequential.
    pub window: u32,
    /// Background read-ahead (`prefetch`): the first chunk of this
    /// sequential stream, the first chunk not yet asked for, and the size
    /// in chunks of the next run; `run == 0` while the reader is not
    /// sequential.
    pub stream_start: u64,
    pub ahead: u64,
    pub run: u32,
}

#[derive(Default)]
pub struct Handles {
    next: AtomicU64,
    map: Mutex<HashMap<u64, Handle>>,
}

impl Handles {
    pub fn insert(
        &self,
        caller: &Caller,
        opener: Option<Opener>,
        flags: i32,
        dir: Option<DirSnapshot>,
    ) -> u64 {
        let fh = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        let h = Handle {
            caller: *caller,
            opener,
            read: 0,
            written: 0,
            flags,
            dir: dir.map(Arc::new),
            last_read_end: 0,
            window: 1,
            stream_start: 0,
            ahead: 0,
            run: 0,
        };
        self.map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(fh, h);
        fh
    }

    pub fn len(&self) -> usize {
        self.map.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn remove(&self, fh: u64) -> Option<Handle> {
        self.map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&fh)
    }

    pub fn with<T>(&self, fh: u64, f: impl FnOnce(&mut Handle) -> T) -> Option<T> {
        self.map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_mut(&fh)
            .map(f)
    }
}

/// One `RwLock` per inode with data in flight: readers share, writers,
/// truncates and punches are exclusive. Held across store I/O for that one
/// file only; never while taking the namespace lock for long.
#[derive(Default)]
pub struct InodeLocks {
    map: Mutex<HashMap<u64, Arc<RwLock<()>>>>,
}

impl InodeLocks {
    pub fn get(&self, ino: u64) -> Arc<RwLock<()>> {
        let mut m = self.map.lock().unwrap_or_else(|p| p.into_inner());
        // Drop locks nobody holds, so the table stays as small as the set
        // of files in use.
        if m.len() > 4096 {
            m.retain(|_, l| Arc::strong_count(l) > 1);
        }
        m.entry(ino).or_default().clone()
    }
}
