//! A follower mount (`--follow`): read-only, on any host, seeing the
//! writer's commits within seconds.
//!
//! A thread asks the engine to catch up with the journal, then drops what
//! this mount caches of the inodes that changed: our plaintext chunks, and
//! through the invalidator the adapter installs, the kernel's page cache.
//! Entries and attributes the kernel holds expire by their TTL (1 s).
//!
//! Polling: every `interval` while the writer is busy; after a minute of
//! nothing new, gradually up to eight times that (one GET per poll on S3,
//! a few cents a month). Every tenth poll also lists the checkpoints, to
//! notice a writer that trimmed the journal we would need next.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use super::{Fs, FsResult};

/// Tells the kernel to drop what it caches of these inodes' data and
/// attributes (`None`: of everything it can).
pub type Invalidator = Box<dyn Fn(Option<&BTreeSet<u64>>) + Send + Sync>;

/// What the follower thread knows, for `status`.
#[derive(Default)]
pub struct FollowState {
    invalidator: Mutex<Option<Invalidator>>,
    /// When the journal was last read to its end.
    caught_up_at: Mutex<Option<Instant>>,
}

impl Fs {
    /// Installs how the kernel's caches are invalidated.
    pub fn set_invalidator(&self, f: Invalidator) {
        *self
            .follow
            .invalidator
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(f);
    }

    /// How long ago this follower last read the journal to its end.
    pub fn staleness(&self) -> Option<Duration> {
        self.follow
            .caught_up_at
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .map(|t| t.elapsed())
    }

    /// One catch-up; returns how many segments it applied.
    pub fn follow_once(&self, look_for_trim: bool) -> FsResult<u64> {
        let followed = self.engine.catch_up(look_for_trim)?;
        *self
            .follow
            .caught_up_at
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
        if followed.segments == 0 {
            return Ok(0);
        }
        {
            let mut cache = self.cache();
            match &followed.changed {
                Some(inos) => inos.iter().for_each(|&ino| cache.remove_inode(ino)),
                None => cache.drop_clean(),
            }
        }
        self.invalidate(followed.changed.as_ref());
        Ok(followed.segments)
    }

    /// Tells the kernel to drop what it caches of `inos` (`None`: a full
    /// reload, which the attribute TTL and reopening take care of).
    pub(crate) fn invalidate(&self, inos: Option<&BTreeSet<u64>>) {
        let invalidate = self
            .follow
            .invalidator
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(f) = invalidate.as_ref() {
            f(inos);
        }
    }
}

pub fn start(fs: &Arc<Fs>, interval: Duration) {
    let weak = Arc::downgrade(fs);
    let spawned = std::thread::Builder::new()
        .name("follower".into())
        .spawn(move || run(weak, interval));
    if let Err(e) = spawned {
        log::error!("cannot start the follower thread: {e}; this mount will not see new commits");
    }
}

fn run(weak: Weak<Fs>, interval: Duration) {
    let mut idle = 0u32;
    let mut polls = 0u64;
    loop {
        let pause = interval * (1 + idle.saturating_sub(30).min(70) / 10);
        std::thread::sleep(pause);
        let Some(fs) = weak.upgrade() else { return };
        if fs.shut.load(std::sync::atomic::Ordering::Relaxed) {
            return;
        }
        polls += 1;
        match fs.follow_once(polls % 10 == 0) {
            Ok(0) => idle = idle.saturating_add(1),
            Ok(n) => {
                log::debug!("followed {n} journal segments");
                idle = 0;
            }
            Err(e) => log::warn!("following the writer: {e}"),
        }
    }
}
