//! Checking a volume: its tree's invariants, that every object it needs is
//! in the store, and (deep) that every byte it maps authenticates.
//!
//! Rules:
//! - Nothing is changed here: the caller decides what to repair.
//! - Every problem names what it affects by path (one of a file's paths),
//!   so people know which files to restore.
//! - Integrity problems (missing or damaged objects, a tree that
//!   contradicts itself) are told apart from garbage (unreferenced
//!   objects, maps past a file's end that the next read-write mount cuts):
//!   only the first make a volume unhealthy.
//! - A deep check reads each pack once, in ranges of the segments mapped,
//!   and opens every one: the throughput is the store's.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Instant, SystemTime};

use super::Engine;
use super::error::EngineResult;
use crate::data::{Extent, PackId};
use crate::meta::snapshot;
use crate::meta::{Kind, Namespace, ROOT_INO, checkpoint};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Severity {
    /// Data or metadata is missing, damaged or contradictory.
    Integrity,
    /// Left over, harmless, removable (`fsck --repair`).
    Garbage,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub severity: Severity,
    /// One line naming what is affected (paths, objects).
    pub what: String,
}

#[derive(Clone, Debug, Default)]
pub struct FsckReport {
    pub problems: Vec<Problem>,
    pub inodes: u64,
    pub packs: u64,
    pub pack_bytes: u64,
    pub snapshots: u64,
    /// Deep: segments and bytes authenticated, and how long it took.
    pub segments_opened: u64,
    pub bytes_authenticated: u64,
    pub deep_secs: f64,
}

impl FsckReport {
    pub fn healthy(&self) -> bool {
        !self
            .problems
            .iter()
            .any(|p| p.severity == Severity::Integrity)
    }

    fn integrity(&mut self, what: String) {
        self.problems.push(Problem {
            severity: Severity::Integrity,
            what,
        });
    }

    fn garbage(&mut self, what: String) {
        self.problems.push(Problem {
            severity: Severity::Garbage,
            what,
        });
    }
}

/// One path of each inode, from the directory entries.
fn paths(ns: &Namespace) -> HashMap<u64, String> {
    let mut named: HashMap<u64, (u64, Vec<u8>)> = HashMap::new();
    for (dir, inode) in ns.inodes() {
        for (name, &child) in inode.entries().into_iter().flatten() {
            named.entry(child).or_insert((dir, name.clone()));
        }
    }
    let mut out = HashMap::new();
    for (ino, _) in ns.inodes() {
        let mut parts = Vec::new();
        let mut at = ino;
        while at != ROOT_INO && parts.len() < 4096 {
            let Some((dir, name)) = named.get(&at) else {
                parts.clear();
                parts.push(format!("<inode {ino}, unreachable>"));
                break;
            };
            parts.push(String::from_utf8_lossy(name).into_owned());
            at = *dir;
        }
        parts.reverse();
        out.insert(ino, format!("/{}", parts.join("/")));
    }
    out
}

impl Engine {
    /// Checks the volume; `deep` also reads and authenticates every mapped
    /// segment. `progress(bytes done, bytes to do)` during the deep pass.
    pub fn fsck(&self, deep: bool, progress: &dyn Fn(u64, u64)) -> EngineResult<FsckReport> {
        let mut report = FsckReport::default();
        for r in &self.regressions {
            report.integrity(format!("rollback: {r}"));
        }
        let ns = self.tree().clone();
        let path = paths(&ns);
        let name = |ino: u64| path.get(&ino).cloned().unwrap_or(format!("<inode {ino}>"));
        report.inodes = ns.inode_count() as u64;
        check_tree(&ns, &name, &mut report);

        // Every pack the tree or a snapshot maps must be in the store.
        let stored: BTreeMap<PackId, u64> = self
            .store
            .list("data/")?
            .into_iter()
            .filter_map(|o| PackId::from_key(&o.key).map(|id| (id, o.size)))
            .collect();
        let mut users: BTreeMap<PackId, BTreeSet<u64>> = BTreeMap::new();
        for (ino, inode) in ns.inodes() {
            for (_, e) in inode.chunks().into_iter().flat_map(|m| m.extents()) {
                users.entry(e.pack).or_default().insert(ino);
            }
        }
        for (id, info) in ns.packs() {
            report.packs += 1;
            report.pack_bytes += info.size;
            let who = || {
                let files: Vec<String> = users
                    .get(id)
                    .into_iter()
                    .flatten()
                    .take(5)
                    .map(|&i| name(i))
                    .collect();
                files.join(", ")
            };
            match stored.get(id) {
                // Still carried in the journal (`meta::carried`): its body
                // was authenticated with the segment when it was replayed.
                None if ns.carried().contains(id) => {}
                None if info.live > 0 => report.integrity(format!(
                    "missing pack {} holding data of {}",
                    id.key(),
                    who()
                )),
                Some(&size) if size != info.size => report.integrity(format!(
                    "pack {} is {size} bytes, the volume says {} (data of {})",
                    id.key(),
                    info.size,
                    who()
                )),
                _ => {}
            }
        }
        let mut needed: BTreeSet<PackId> = ns.packs().map(|(id, _)| *id).collect();
        let snapshots = snapshot::list(&*self.store, &*self.keys.get()?, &self.volume_id)?;
        for (key, record) in snapshots {
            report.snapshots += 1;
            let keys = self.keys.get()?;
            match checkpoint::read(&*self.store, &keys, &self.volume_id, record.checkpoint) {
                Ok(cp) => {
                    for (id, _) in cp.ns.packs() {
                        needed.insert(*id);
                        if !stored.contains_key(id) {
                            report.integrity(format!(
                                "snapshot {} lost pack {}",
                                record.name,
                                id.key()
                            ));
                        }
                    }
                }
                Err(e) => report.integrity(format!(
                    "snapshot {} ({key}) does not load: {e}",
                    record.name
                )),
            }
        }
        let now = SystemTime::now();
        for o in self.store.list("data/")? {
            if PackId::from_key(&o.key).is_none_or(|id| !needed.contains(&id)) {
                let age = now.duration_since(o.modified).unwrap_or_default().as_secs();
                report.garbage(format!(
                    "unreferenced object {} ({} bytes, {age} s old)",
                    o.key, o.size
                ));
            }
        }
        if deep {
            self.authenticate_all(&ns, &name, &stored, &mut report, progress);
        }
        Ok(report)
    }

    /// Reads every mapped segment once, pack by pack, and opens it.
    fn authenticate_all(
        &self,
        ns: &Namespace,
        name: &dyn Fn(u64) -> String,
        stored: &BTreeMap<PackId, u64>,
        report: &mut FsckReport,
        progress: &dyn Fn(u64, u64),
    ) {
        let mut runs: BTreeMap<PackId, Vec<(u64, u64, Extent)>> = BTreeMap::new();
        for (ino, inode) in ns.inodes() {
            for (first, e) in inode.chunks().into_iter().flat_map(|m| m.extents()) {
                runs.entry(e.pack).or_default().push((ino, first, *e));
            }
        }
        let total: u64 = runs
            .values()
            .flatten()
            .map(|(_, _, e)| e.count as u64 * e.cipher_len as u64)
            .sum();
        let start = Instant::now();
        let mut done = 0;
        for (pack, list) in runs {
            if !stored.contains_key(&pack) && !ns.carried().contains(&pack) {
                continue; // already reported missing
            }
            let units = ns.pack(&pack).map_or(0, |p| p.units);
            for (ino, first, e) in list {
                let bytes = e.count as u64 * e.cipher_len as u64;
                match self.read_run(&e, 0, e.count, units) {
                    Ok(_) => {
                        report.segments_opened += e.count as u64;
                        report.bytes_authenticated += bytes;
                    }
                    Err(err) => report.integrity(format!(
                        "{}: chunks {first}.. of {} do not authenticate: {err}",
                        name(ino),
                        e.count
                    )),
                }
                done += bytes;
                progress(done, total);
            }
        }
        report.deep_secs = start.elapsed().as_secs_f64();
    }
}

/// The tree's own invariants.
fn check_tree(ns: &Namespace, name: &dyn Fn(u64) -> String, report: &mut FsckReport) {
    let mut links: HashMap<u64, u32> = HashMap::new();
    let mut segments: HashMap<(PackId, u32), (u64, u64)> = HashMap::new();
    for (ino, inode) in ns.inodes() {
        if let Some(entries) = inode.entries() {
            let mut subdirs = 0;
            for (entry, &child) in entries {
                match ns.get(child) {
                    None => report.integrity(format!(
                        "{}/{} names inode {child}, which does not exist",
                        name(ino),
                        String::from_utf8_lossy(entry)
                    )),
                    Some(c) => {
                        *links.entry(child).or_default() += 1;
                        subdirs += (c.attr.kind == Kind::Dir) as u32;
                    }
                }
            }
            if inode.attr.nlink != 2 + subdirs {
                report.integrity(format!(
                    "directory {} has link count {}, its subdirectories say {}",
                    name(ino),
                    inode.attr.nlink,
                    2 + subdirs
                ));
            }
        }
        if let Some(map) = inode.chunks() {
            if map.extends_past(inode.attr.size, ns.chunk_size()) {
                report.garbage(format!(
                    "{} maps data past its size {} (cut at the next read-write mount)",
                    name(ino),
                    inode.attr.size
                ));
            }
            for (first, e) in map.extents() {
                if ns.pack(&e.pack).is_none() {
                    report.integrity(format!(
                        "{} maps chunks to {}, which the volume does not list",
                        name(ino),
                        e.pack.key()
                    ));
                }
                for i in 0..e.count {
                    let seg = (e.pack, e.first_unit + i);
                    if let Some((other, chunk)) = segments.insert(seg, (ino, first + i as u64)) {
                        report.integrity(format!(
                            "{} (chunk {}) and {} (chunk {chunk}) claim one segment of {}",
                            name(ino),
                            first + i as u64,
                            name(other),
                            e.pack.key()
                        ));
                    }
                }
            }
        }
    }
    for (ino, inode) in ns.inodes() {
        if inode.attr.kind == Kind::Dir || ns.is_orphan(ino) {
            continue;
        }
        let found = links.get(&ino).copied().unwrap_or(0);
        if found == 0 {
            report.integrity(format!("inode {ino} is in no directory and not open"));
        } else if inode.attr.nlink != found {
            report.integrity(format!(
                "{} has link count {}, but {found} entries name it",
                name(ino),
                inode.attr.nlink
            ));
        }
    }
}
