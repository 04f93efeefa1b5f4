//! Ciphertext replication: copying a volume to another store, object by
//! object, without its keys.
//!
//! Every object is sealed with its name relative to the volume, never the
//! bucket or directory, so a byte-for-byte copy under the same names in
//! another store opens there as the same volume. Replication only needs to
//! copy in an order that leaves the target a volume state at every moment
//! a copy may stop, and to know what it may delete there.
//!
//! Rules (the source may be mounted and writing meanwhile):
//! - Copied once: an object already at the target with the same size, and
//!   not changed at the source since the copy was made, is the same object
//!   (every name but `volume` and `lease` is written once, except that a
//!   key rotation re-seals objects in place, same size), so a second run,
//!   or one resumed after an interruption, copies only what is new. The
//!   header is compared byte for byte. While the target's header names
//!   another key epoch than the source's, every object is copied again:
//!   a rotation may have re-sealed any of them.
//! - Order: packs, then checkpoints (shards before indexes), the attic,
//!   snapshot records, journal segments in seq order, and the header
//!   last. Everything that names packs is listed before the packs: a
//!   journal segment names only packs made durable before it was
//!   committed, and a checkpoint only packs that exist when it is written
//!   (it lands the packs the journal carried first), so the packs listed
//!   after them cover every segment and checkpoint copied. A pack that
//!   vanishes before its copy was retired by a commit; the pass then
//!   starts over with fresh listings, which hold that commit.
//! - Never copied: the writer's lease (the replica is nobody's mount) and
//!   conditional-write probes.
//! - Deleted at the target: what the source no longer has, once the copy
//!   is complete, journal and checkpoints first, packs last. A pack is
//!   deleted only if it was already gone from the source before the
//!   journal copied was listed (so a segment that still maps it is not in
//!   the copy).
//! - Each copy is read back and compared (`verify`), or at least its size.
//! - A target that holds another volume, or objects that are not a
//!   volume, is refused before anything is written.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use crate::meta::checkpoint::CHECKPOINT_PREFIX;
use crate::meta::journal::{JOURNAL_PREFIX, seq_of_key};
use crate::meta::snapshot::SNAPSHOT_PREFIX;
use crate::store::{ObjectInfo, ObjectStore, StoreError};
use crate::volume::{HeaderError, VOLUME_OBJECT, VolumeHeader};

/// Objects copied at once.
const PARALLEL: usize = 8;

/// Passes over a source that keeps retiring packs under us.
const MAX_PASSES: usize = 5;

#[derive(Debug, thiserror::Error)]
pub enum ReplicaError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the source is not a sealedfs volume")]
    NotAVolume,
    #[error("the source's header does not decode: {0}")]
    Header(#[from] HeaderError),
    #[error("the target holds another volume ({0}); refusing to touch it")]
    OtherVolume(String),
    #[error("the target holds objects that are not a sealedfs volume; refusing to touch it")]
    TargetNotEmpty,
    #[error("copy of {key} does not match the source after writing it")]
    Mismatch { key: String },
    #[error("the source kept retiring packs under the copy for {MAX_PASSES} passes; try again")]
    Unsettled,
}

#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// Read each copy back and compare it with what was written.
    pub verify: bool,
}

/// What one run did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    pub copied: u64,
    pub copied_bytes: u64,
    /// Objects already at the target.
    pub present: u64,
    pub deleted: u64,
    /// The newest journal segment copied.
    pub journal_head: Option<u64>,
}

/// Progress: (bytes copied so far, bytes to copy in this pass).
pub type Progress<'a> = &'a (dyn Fn(u64, u64) + Sync);

pub fn replicate(
    src: &dyn ObjectStore,
    dst: &dyn ObjectStore,
    opts: Options,
    progress: Progress<'_>,
) -> Result<Report, ReplicaError> {
    let header = match src.get_max(VOLUME_OBJECT, crate::volume::MAX_HEADER_LEN as u64) {
        Ok(h) => h,
        Err(e) if e.is_not_found() => return Err(ReplicaError::NotAVolume),
        Err(e) => return Err(e.into()),
    };
    let source = VolumeHeader::decode(&header)?;
    let target_epoch = check_target(dst, &source.volume_id)?;

    let mut report = Report::default();
    // What the target holds: one listing for the run.
    let present = Present {
        objects: dst
            .list("")?
            .into_iter()
            .map(|o| (o.key, (o.size, o.modified)))
            .collect(),
        rotated: target_epoch.is_some_and(|e| e != source.epoch),
    };
    let at_start: BTreeSet<String> = keys(&src.list("data/")?);
    let mut pass = 0;
    let (metadata, journal, packs) = loop {
        pass += 1;
        if pass > MAX_PASSES {
            return Err(ReplicaError::Unsettled);
        }
        // Everything that names packs is listed before the packs: a
        // snapshot record before the checkpoint it pins, checkpoints (which
        // may land packs the journal carried) and the journal before the
        // pack listing, so every pack they name is in it.
        let mut metadata = Vec::new();
        for prefix in [SNAPSHOT_PREFIX, "meta/attic/", CHECKPOINT_PREFIX] {
            metadata.push(src.list(prefix)?);
        }
        let journal = src.list(JOURNAL_PREFIX)?;
        let packs = src.list("data/")?;
        let vanished = copy_all(src, dst, &packs, &present, opts, &mut report, progress)?;
        if vanished == 0 {
            break (metadata, journal, packs);
        }
        log::info!("{vanished} packs were retired during the copy; listing the journal again");
    };
    let mut others = Vec::new();
    // Checkpoints first (each index after its shards, as at the source),
    // then the snapshot records that pin them, then the attic.
    for mut objects in metadata.into_iter().rev() {
        objects.sort_by_key(|o| (o.key.ends_with("/index"), o.key.clone()));
        copy_in_order(src, dst, &objects, &present, opts, &mut report)?;
        others.extend(objects);
    }
    let mut segments: Vec<&ObjectInfo> = journal
        .iter()
        .filter(|o| seq_of_key(&o.key).is_some())
        .collect();
    segments.sort_by_key(|o| seq_of_key(&o.key));
    let segments: Vec<ObjectInfo> = segments.into_iter().cloned().collect();
    copy_in_order(src, dst, &segments, &present, opts, &mut report)?;
    report.journal_head = segments.last().and_then(|o| seq_of_key(&o.key));
    if dst
        .get_max(VOLUME_OBJECT, header.len() as u64)
        .ok()
        .as_deref()
        != Some(&header[..])
    {
        put_checked(dst, VOLUME_OBJECT, &header, opts)?;
        report.copied += 1;
        report.copied_bytes += header.len() as u64;
    }

    // What the source no longer has goes at the target too.
    let mut source: BTreeSet<String> = keys(&journal);
    source.extend(keys(&packs));
    source.extend(keys(&others));
    source.insert(VOLUME_OBJECT.into());
    let mut doomed: Vec<String> = present
        .objects
        .keys()
        .filter(|&k| !source.contains(k) && k != "lease")
        .filter(|k| !k.starts_with("data/") || !at_start.contains(*k))
        .cloned()
        .collect();
    // Metadata first, packs last: the target is a volume at every step.
    doomed.sort_by_key(|k| (k.starts_with("data/"), k.clone()));
    if !doomed.is_empty() {
        dst.delete_many(&doomed)?;
        report.deleted = doomed.len() as u64;
    }
    Ok(report)
}

fn keys(objects: &[ObjectInfo]) -> BTreeSet<String> {
    objects.iter().map(|o| o.key.clone()).collect()
}

/// The target must be empty or hold the same volume.
/// Refuses a target that holds something else; returns the key epoch of
/// the replica's header, if it has one yet.
fn check_target(dst: &dyn ObjectStore, volume_id: &[u8; 16]) -> Result<Option<u32>, ReplicaError> {
    match dst.get_max(VOLUME_OBJECT, crate::volume::MAX_HEADER_LEN as u64) {
        Ok(bytes) => match VolumeHeader::decode(&bytes) {
            Ok(h) if &h.volume_id == volume_id => Ok(Some(h.epoch)),
            Ok(h) => Err(ReplicaError::OtherVolume(hex::encode(h.volume_id))),
            Err(_) => Err(ReplicaError::TargetNotEmpty),
        },
        Err(e) if e.is_not_found() => {
            // A replica interrupted before its header: only our objects.
            let ours = |k: &str| {
                k.starts_with("data/") || k.starts_with("meta/") || k.starts_with(SNAPSHOT_PREFIX)
            };
            match dst.list("")?.iter().all(|o| ours(&o.key)) {
                true => Ok(None),
                false => Err(ReplicaError::TargetNotEmpty),
            }
        }
        Err(e) => Err(e.into()),
    }
}

/// Copies at the target younger than the source object by less than this
/// are still taken as current (clocks of two stores differ a little).
const CLOCK_SLACK: Duration = Duration::from_secs(2);

/// What the target holds: name → (size, when written there).
struct Present {
    objects: BTreeMap<String, (u64, SystemTime)>,
    /// The target's header names another key epoch: copy everything.
    rotated: bool,
}

impl Present {
    /// Whether the target's copy of `o` is `o` as it is now.
    fn has(&self, o: &ObjectInfo) -> bool {
        !self.rotated
            && self
                .objects
                .get(&o.key)
                .is_some_and(|(size, at)| *size == o.size && o.modified <= *at + CLOCK_SLACK)
    }
}

/// Copies, in parallel, the objects the target lacks; returns how many
/// vanished from the source first.
fn copy_all(
    src: &dyn ObjectStore,
    dst: &dyn ObjectStore,
    objects: &[ObjectInfo],
    present: &Present,
    opts: Options,
    report: &mut Report,
    progress: Progress<'_>,
) -> Result<u64, ReplicaError> {
    let todo: Vec<&ObjectInfo> = objects.iter().filter(|o| !present.has(o)).collect();
    report.present += (objects.len() - todo.len()) as u64;
    let total: u64 = todo.iter().map(|o| o.size).sum();
    let done = AtomicU64::new(0);
    let copied = AtomicU64::new(0);
    let vanished = AtomicU64::new(0);
    let next = AtomicU64::new(0);
    let failure: Mutex<Option<ReplicaError>> = Mutex::new(None);
    std::thread::scope(|scope| {
        for _ in 0..PARALLEL.min(todo.len()) {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                    let Some(o) = todo.get(i) else { return };
                    if failure.lock().unwrap_or_else(|p| p.into_inner()).is_some() {
                        return;
                    }
                    match copy_one(src, dst, &o.key, opts) {
                        Ok(Some(n)) => {
                            copied.fetch_add(1, Ordering::Relaxed);
                            progress(done.fetch_add(n, Ordering::Relaxed) + n, total);
                        }
                        Ok(None) => {
                            vanished.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => {
                            failure
                                .lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .get_or_insert(e);
                        }
                    }
                }
            });
        }
    });
    if let Some(e) = failure.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(e);
    }
    report.copied += copied.load(Ordering::Relaxed);
    report.copied_bytes += done.load(Ordering::Relaxed);
    Ok(vanished.load(Ordering::Relaxed))
}

/// Copies `objects` one after another, in the order given.
fn copy_in_order(
    src: &dyn ObjectStore,
    dst: &dyn ObjectStore,
    objects: &[ObjectInfo],
    present: &Present,
    opts: Options,
    report: &mut Report,
) -> Result<(), ReplicaError> {
    for o in objects {
        if present.has(o) {
            report.present += 1;
        } else if let Some(n) = copy_one(src, dst, &o.key, opts)? {
            report.copied += 1;
            report.copied_bytes += n;
        }
    }
    Ok(())
}

/// One object; `None` if it vanished from the source first.
fn copy_one(
    src: &dyn ObjectStore,
    dst: &dyn ObjectStore,
    key: &str,
    opts: Options,
) -> Result<Option<u64>, ReplicaError> {
    let body = match src.get(key) {
        Ok(b) => b,
        Err(e) if e.is_not_found() => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    put_checked(dst, key, &body, opts)?;
    Ok(Some(body.len() as u64))
}

fn put_checked(
    dst: &dyn ObjectStore,
    key: &str,
    body: &[u8],
    opts: Options,
) -> Result<(), ReplicaError> {
    dst.put(key, body)?;
    let same = if opts.verify {
        dst.get_max(key, body.len() as u64).ok().as_deref() == Some(body)
    } else {
        dst.head(key)?.is_some_and(|i| i.size == body.len() as u64)
    };
    if !same {
        return Err(ReplicaError::Mismatch { key: key.into() });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::{KdfParams, MasterKey};
    use crate::store::{CountingStore, FaultStore, MemoryStore, Op};

    fn volume(store: &MemoryStore) -> Vec<u8> {
        let header = VolumeHeader::new(
            &MasterKey::generate(),
            b"p",
            KdfParams::insecure_fast(),
            65536,
        )
        .unwrap()
        .encode();
        store.put(VOLUME_OBJECT, &header).unwrap();
        store
            .put("meta/checkpoint/0000000000000000/000000", b"shard")
            .unwrap();
        store
            .put("meta/checkpoint/0000000000000000/index", b"index")
            .unwrap();
        for seq in 1..=3u64 {
            store
                .put(&format!("meta/journal/{seq:016x}"), &[seq as u8; 10])
                .unwrap();
        }
        store.put("data/aa/pack1", &[1; 100]).unwrap();
        store.put("data/bb/pack2", &[2; 200]).unwrap();
        store.put("lease", b"held").unwrap();
        header
    }

    const OPTS: Options = Options { verify: true };

    /// A source where a checkpoint (landing a new pack first) is written
    /// the moment the packs to copy are listed (the run's second listing of
    /// `data/`; the first is what the source held at the start).
    fn checkpoint_during_copy(inner: MemoryStore) -> FaultStore<MemoryStore> {
        let store = FaultStore::new(inner.clone());
        let pack_listings = AtomicU64::new(0);
        store.plan().after_each(move |op, prefix| {
            if op == Op::List
                && prefix == "data/"
                && pack_listings.fetch_add(1, Ordering::SeqCst) == 1
            {
                inner.put("data/dd/landed", &[4; 400]).unwrap();
                let cp = "meta/checkpoint/0000000000000009";
                inner.put(&format!("{cp}/000000"), b"names landed").unwrap();
                inner.put(&format!("{cp}/index"), b"index 9").unwrap();
            }
        });
        store
    }

    /// A checkpoint written while the packs are being copied is not copied
    /// without the packs it names: it is left for the next run.
    #[test]
    fn a_checkpoint_written_during_the_copy_never_lacks_its_packs() {
        let (inner, dst) = (MemoryStore::new(), MemoryStore::new());
        volume(&inner);
        let src = checkpoint_during_copy(inner);
        replicate(&src, &dst, OPTS, &|_, _| {}).unwrap();
        let copied = dst.keys();
        let has = |k: &str| copied.iter().any(|c| c == k);
        assert!(
            !has("meta/checkpoint/0000000000000009/index") || has("data/dd/landed"),
            "{copied:?}"
        );
        replicate(&src, &dst, OPTS, &|_, _| {}).unwrap();
        assert!(has("data/dd/landed") || dst.keys().iter().any(|k| k == "data/dd/landed"));
        assert!(
            dst.keys()
                .iter()
                .any(|k| k == "meta/checkpoint/0000000000000009/index")
        );
    }

    #[test]
    fn copies_everything_but_the_lease_then_only_what_is_new() {
        let (src, dst) = (MemoryStore::new(), MemoryStore::new());
        volume(&src);
        let r = replicate(&src, &dst, OPTS, &|_, _| {}).unwrap();
        assert_eq!(r.copied, 8);
        assert_eq!(r.journal_head, Some(3));
        let mut want = src.keys();
        want.retain(|k| k != "lease");
        assert_eq!(dst.keys(), want);

        // The source moves on: a new segment and pack, a pack retired and
        // deleted, the journal trimmed.
        src.put("meta/journal/0000000000000004", &[4; 10]).unwrap();
        src.put("data/cc/pack3", &[3; 300]).unwrap();
        src.delete("data/aa/pack1").unwrap();
        src.delete("meta/journal/0000000000000001").unwrap();
        let counted = CountingStore::new(dst.clone());
        let r = replicate(&src, &counted, OPTS, &|_, _| {}).unwrap();
        assert_eq!((r.copied, r.deleted), (2, 2), "{r:?}");
        assert_eq!(counted.counts().list, 1, "one listing of the target");
        let mut want = src.keys();
        want.retain(|k| k != "lease");
        assert_eq!(dst.keys(), want);
        let again = replicate(&src, &dst, OPTS, &|_, _| {}).unwrap();
        assert_eq!((again.copied, again.deleted), (0, 0));
    }

    #[test]
    fn refuses_targets_that_are_not_this_volume() {
        let (src, other, junk) = (MemoryStore::new(), MemoryStore::new(), MemoryStore::new());
        volume(&src);
        volume(&other);
        assert!(matches!(
            replicate(&src, &other, OPTS, &|_, _| {}),
            Err(ReplicaError::OtherVolume(_))
        ));
        junk.put("notes.txt", b"mine").unwrap();
        assert!(matches!(
            replicate(&src, &junk, OPTS, &|_, _| {}),
            Err(ReplicaError::TargetNotEmpty)
        ));
        assert_eq!(junk.keys(), ["notes.txt"], "nothing written");
        assert!(matches!(
            replicate(&MemoryStore::new(), &junk, OPTS, &|_, _| {}),
            Err(ReplicaError::NotAVolume)
        ));
    }
}
