//! The local audit spool: records the store does not hold yet, kept on
//! this host so a crash of the daemon loses none of them.
//!
//! Every auditor (one per mount) has its own instance id and its own files
//! in the spool directory, named `<chain>~<instance>.<generation>`:
//! `.open` takes records as they come; a flush closes it as the next
//! numbered generation (`.00000001`, …), uploads every closed generation's
//! records as one segment, and deletes them once that segment is in the
//! store. Records are numbered from 0 per instance, and each segment says
//! which instance wrote it and the number of its first record, so a
//! spool left behind can be matched against the chain exactly.
//!
//! Rules:
//! - A frame is `index (u64, big-endian) ‖ len (u32, big-endian) ‖ sealed
//!   record`, sealed under the audit key with `spool/<chain>` and the
//!   index in the associated data: a spool file shows only sizes.
//! - Appends are plain `write`s: they survive the process being killed.
//!   A flush closes a generation and uploads it; only when that upload
//!   fails does it `fsync` the closed generations ([`Spool::make_durable`]),
//!   so records a commit depends on survive a power loss either in the
//!   store or here, and a commit whose upload works pays no local fsync
//!   (on the local store two of a commit's six fsyncs were the spool's).
//! - The owner holds an exclusive `flock` on its `.open` file while it
//!   runs; recovery takes only instances whose `.open` lock it gets, so a
//!   live mount's spool (a follower's, or a stopped writer's) is left
//!   alone.
//! - Recovery reads a dead instance's generations in order then its
//!   `.open` (stopping at a torn last frame); the caller drops the records
//!   its chain already holds, re-spools the rest as its own, makes that
//!   durable, and only then removes the dead files.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::record::Record;
use crate::crypto::{self, SubKey, UnitAd};

/// A writer instance: one auditor's id in spool names and segments.
pub type Instance = [u8; 8];

pub struct Spool {
    dir: PathBuf,
    /// `<chain>~<instance hex>`.
    stem: String,
    chain: String,
    open: File,
    /// Generations closed and not yet known to be in the store.
    closed: Vec<u32>,
    next_generation: u32,
}

fn ad<'a>(volume_id: &'a [u8; 16], object: &'a str, index: u64) -> UnitAd<'a> {
    UnitAd {
        volume_id,
        object,
        unit: index,
        last: false,
    }
}

/// Opens (creating) `path` and takes its lock; `None` if another holds it.
fn open_locked(path: &Path) -> io::Result<Option<File>> {
    let f = OpenOptions::new()
        .create(true)
        .append(true)
        .read(true)
        .mode(0o600)
        .open(path)?;
    // SAFETY: a valid descriptor owned by `f` for the whole call.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let e = io::Error::last_os_error();
        return match e.kind() {
            io::ErrorKind::WouldBlock => Ok(None),
            _ => Err(e),
        };
    }
    Ok(Some(f))
}

impl Spool {
    /// A new instance's spool for `chain` in `dir` (made private if
    /// missing).
    pub fn create(dir: &Path, chain: &str, instance: Instance) -> io::Result<Spool> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
        let stem = format!("{chain}~{}", hex::encode(instance));
        let open = open_locked(&dir.join(format!("{stem}.open")))?
            .ok_or_else(|| io::Error::other("a fresh spool file is locked"))?;
        Ok(Spool {
            dir: dir.to_path_buf(),
            stem,
            chain: chain.to_owned(),
            open,
            closed: Vec::new(),
            next_generation: 1,
        })
    }

    /// Appends record number `index` (no fsync: see the module rules).
    pub fn append(
        &mut self,
        key: &SubKey,
        volume_id: &[u8; 16],
        index: u64,
        r: &Record,
    ) -> io::Result<()> {
        self.open
            .write_all(&frame(key, volume_id, &self.chain, index, r)?)
    }

    /// Closes what was appended as a generation; later records go to a
    /// fresh `.open`. Not durable yet: the upload or [`Spool::make_durable`]
    /// makes it so. Losing the rename in a crash is harmless, since
    /// recovery reads `.open` and every generation alike.
    pub fn close_generation(&mut self) -> io::Result<()> {
        let open = self.dir.join(format!("{}.open", self.stem));
        let g = self.next_generation;
        fs::rename(&open, self.dir.join(format!("{}.{g:08x}", self.stem)))?;
        self.next_generation += 1;
        self.closed.push(g);
        self.open = open_locked(&open)?.ok_or_else(|| io::Error::other("spool lock lost"))?;
        Ok(())
    }

    /// Puts the closed generations on disk for good: their upload failed,
    /// and a commit may go on without it.
    pub fn make_durable(&self) -> io::Result<()> {
        for g in &self.closed {
            File::open(self.dir.join(format!("{}.{g:08x}", self.stem)))?.sync_all()?;
        }
        File::open(&self.dir)?.sync_all()
    }

    /// Every closed generation is in the store: their files go.
    pub fn uploaded(&mut self) {
        for g in self.closed.drain(..) {
            let _ = fs::remove_file(self.dir.join(format!("{}.{g:08x}", self.stem)));
        }
    }
}

impl Drop for Spool {
    /// A clean stop with nothing left: no files stay behind.
    fn drop(&mut self) {
        let open = self.dir.join(format!("{}.open", self.stem));
        if self.closed.is_empty() && self.open.metadata().is_ok_and(|m| m.len() == 0) {
            let _ = fs::remove_file(open);
        }
    }
}

fn frame(
    key: &SubKey,
    volume_id: &[u8; 16],
    chain: &str,
    index: u64,
    r: &Record,
) -> io::Result<Vec<u8>> {
    let object = format!("spool/{chain}");
    let plain = postcard::to_allocvec(r).map_err(io::Error::other)?;
    let sealed = crypto::seal(key, &ad(volume_id, &object, index), &plain);
    let mut out = index.to_be_bytes().to_vec();
    out.extend((sealed.len() as u32).to_be_bytes());
    out.extend(sealed);
    Ok(out)
}

/// The whole frames of a spool file as (index, sealed); a torn last one
/// is dropped.
fn frames(data: &[u8]) -> impl Iterator<Item = (u64, &[u8])> {
    let mut at = 0;
    std::iter::from_fn(move || {
        let index = u64::from_be_bytes(data.get(at..at + 8)?.try_into().ok()?);
        let len = u32::from_be_bytes(data.get(at + 8..at + 12)?.try_into().ok()?) as usize;
        let sealed = data.get(at + 12..at + 12 + len)?;
        at += 12 + len;
        Some((index, sealed))
    })
}

/// What a mount that is gone left: its records, numbered, oldest first,
/// and the files they came from.
pub struct Leftover {
    pub chain: String,
    pub instance: Instance,
    pub records: Vec<(u64, Record)>,
    pub files: Vec<PathBuf>,
}

/// The spools in `dir` of instances no live mount holds.
pub fn leftovers(dir: &Path, key: &SubKey, volume_id: &[u8; 16]) -> io::Result<Vec<Leftover>> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Ok(Vec::new());
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".open"))
        .collect();
    names.sort();
    let mut out = Vec::new();
    for name in names {
        let stem = &name[..name.len() - ".open".len()];
        let Some((chain, instance)) = stem
            .split_once('~')
            .and_then(|(c, i)| Some((c, hex::decode(i).ok()?.try_into().ok()?)))
        else {
            continue;
        };
        let Some(_held) = open_locked(&dir.join(&name))? else {
            continue; // a live mount's
        };
        let mut files: Vec<PathBuf> = fs::read_dir(dir)?
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.strip_prefix(stem).is_some_and(|g| g.len() == 9))
            .map(|n| dir.join(n))
            .collect();
        files.sort();
        files.push(dir.join(&name));
        let object = format!("spool/{chain}");
        let mut records = Vec::new();
        for path in &files {
            let mut data = Vec::new();
            File::open(path)?.read_to_end(&mut data)?;
            for (index, sealed) in frames(&data) {
                match crypto::open(key, &ad(volume_id, &object, index), sealed)
                    .ok()
                    .and_then(|p| postcard::from_bytes::<Record>(&p).ok())
                {
                    Some(r) => records.push((index, r)),
                    None => log::error!(
                        "AUDIT: spool {}: record {index} does not open",
                        path.display()
                    ),
                }
            }
        }
        out.push(Leftover {
            chain: chain.to_owned(),
            instance,
            records,
            files,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::Op;
    use crate::crypto::{Keys, MasterKey};

    fn rec(pid: u32) -> Record {
        Record {
            time_ms: 1,
            uid: 1,
            gid: 1,
            pid,
            process: "p".into(),
            op: Op::Mkdir,
            path: "/x".into(),
            path2: None,
            errno: 0,
        }
    }

    #[test]
    fn a_dead_spool_is_read_back_in_order_and_a_live_one_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let keys = Keys::derive(&MasterKey::generate(), &[1; 16]);
        let vid = [1; 16];
        // What a killed mount leaves: a closed generation and its `.open`
        // (no lock: its process is gone), the last frame torn.
        let stem = format!("w~{}", hex::encode([1u8; 8]));
        let f = |i, pid| frame(&keys.audit, &vid, "w", i, &rec(pid)).unwrap();
        std::fs::write(dir.path().join(format!("{stem}.00000001")), f(0, 10)).unwrap();
        let mut open = f(1, 11);
        open.extend(&f(2, 12)[..9]);
        std::fs::write(dir.path().join(format!("{stem}.open")), open).unwrap();
        let mut live = Spool::create(dir.path(), "r-1", [2; 8]).unwrap();
        live.append(&keys.audit, &vid, 0, &rec(20)).unwrap();

        let found = leftovers(dir.path(), &keys.audit, &vid).unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].chain, "w");
        assert_eq!(found[0].instance, [1; 8]);
        let got: Vec<(u64, u32)> = found[0].records.iter().map(|(i, r)| (*i, r.pid)).collect();
        assert_eq!(got, [(0, 10), (1, 11)]);
        assert_eq!(found[0].files.len(), 2);
        // A frame read under another index does not open.
        let mut moved = f(5, 13);
        moved[7] = 6;
        std::fs::write(dir.path().join(format!("{stem}.open")), moved).unwrap();
        let found = leftovers(dir.path(), &keys.audit, &vid).unwrap();
        assert_eq!(found[0].records.len(), 1);
    }
}
