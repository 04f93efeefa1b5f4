//! The namespace: every inode, entry, xattr and chunk map, held in memory
//! while mounted, plus the pack table with live-byte counts.
//!
//! Rules:
//! - The namespace changes only through [`Namespace::apply`], both live and
//!   in replay, so the state after a replay is the state that was
//!   journaled. Its fields are private: `fs` decides *what* to change and
//!   says it in records; the engine applies them; everyone else reads.
//! - `apply` is strict: a record that contradicts the state (an entry in a
//!   non-directory, chunks of a missing inode) is corruption and fails the
//!   mount rather than being guessed around.
//! - Per-pack live bytes are derived state: kept exact by `apply` and
//!   rebuilt from the chunk maps when a checkpoint loads.

use std::collections::{BTreeSet, HashMap};

use super::table::InodeTable;

use serde::{Deserialize, Serialize};

use super::carried::Carried;
use super::inode::{Content, Inode, InodeAttr, Kind};
use super::record::Record;
use crate::crypto::SEAL_OVERHEAD;
use crate::data::{ChunkMap, Extent, Freed, PackId};

pub const ROOT_INO: u64 = 1;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackInfo {
    /// Object size in bytes.
    pub size: u64,
    pub units: u32,
    /// Ciphertext bytes still referenced by some chunk map.
    #[serde(skip)]
    pub live: u64,
}

#[derive(Debug, thiserror::Error)]
#[error("metadata record contradicts the state: {0}")]
pub struct Corrupt(pub String);

#[derive(Clone, Debug, Default)]
pub struct Namespace {
    inodes: InodeTable,
    packs: HashMap<PackId, PackInfo>,
    orphans: BTreeSet<u64>,
    next_ino: u64,
    chunk_size: u32,
    /// Checkpoint shards changed since the last checkpoint took them.
    dirty_shards: BTreeSet<u64>,
    /// Packs whose bodies are still only in journal segments.
    carried: Carried,
}

/// An extent must lie inside its pack and its file's addressable range:
/// a record says where bytes are, and offsets computed from it must never
/// overflow or point outside the object.
fn check_extent(
    ino: u64,
    first: u64,
    e: &Extent,
    pack: &PackInfo,
    chunk_size: u32,
) -> Result<(), Corrupt> {
    let bad = |why: &str| {
        Err(Corrupt(format!(
            "inode {ino}: extent at chunk {first} {why}"
        )))
    };
    let chunk_end = first.checked_add(e.count as u64);
    let last_byte = chunk_end.and_then(|end| end.checked_mul(chunk_size as u64));
    let cipher_end = (e.count as u64)
        .checked_mul(e.cipher_len as u64)
        .and_then(|len| e.cipher_off.checked_add(len));
    if e.count == 0 {
        return bad("maps no chunk");
    }
    if last_byte.is_none() {
        return bad("lies past the largest file");
    }
    if e.first_unit
        .checked_add(e.count)
        .is_none_or(|end| end > pack.units)
    {
        return bad("names units its pack does not have");
    }
    if cipher_end.is_none_or(|end| end > pack.size) {
        return bad("reaches past the end of its pack");
    }
    if e.plain_len > chunk_size || (e.cipher_len as u64) < e.plain_len as u64 + SEAL_OVERHEAD as u64
    {
        return bad("has impossible segment lengths");
    }
    Ok(())
}

impl Namespace {
    /// A fresh volume: just the root directory.
    pub fn new(chunk_size: u32, root: InodeAttr) -> Namespace {
        let mut ns = Namespace {
            next_ino: ROOT_INO + 1,
            chunk_size,
            ..Namespace::default()
        };
        let mut inode = Inode::new(root);
        inode.parent = ROOT_INO;
        ns.inodes.insert(ROOT_INO, inode);
        ns
    }

    /// The state a checkpoint holds; derived state is rebuilt here.
    pub(super) fn from_parts(
        inodes: Vec<(u64, Inode)>,
        packs: HashMap<PackId, PackInfo>,
        orphans: BTreeSet<u64>,
        next_ino: u64,
        chunk_size: u32,
    ) -> Namespace {
        let mut ns = Namespace {
            inodes: InodeTable::from_vec(inodes),
            packs,
            orphans,
            next_ino,
            chunk_size,
            dirty_shards: BTreeSet::new(),
            carried: Carried::default(),
        };
        ns.rebuild_derived();
        ns
    }

    pub fn get(&self, ino: u64) -> Option<&Inode> {
        self.inodes.get(ino)
    }

    pub fn inodes(&self) -> impl Iterator<Item = (u64, &Inode)> {
        self.inodes.iter()
    }

    pub fn inode_count(&self) -> usize {
        self.inodes.len()
    }

    pub fn pack(&self, id: &PackId) -> Option<&PackInfo> {
        self.packs.get(id)
    }

    pub fn packs(&self) -> impl Iterator<Item = (&PackId, &PackInfo)> {
        self.packs.iter()
    }

    pub fn pack_count(&self) -> usize {
        self.packs.len()
    }

    /// Packs still carried in journal segments (see `meta::carried`).
    pub fn carried(&self) -> &Carried {
        &self.carried
    }

    /// Carried packs now written as objects of their own.
    pub fn landed(&mut self, ids: &[PackId]) {
        self.carried.landed(ids);
    }

    pub fn is_orphan(&self, ino: u64) -> bool {
        self.orphans.contains(&ino)
    }

    pub fn orphans(&self) -> impl Iterator<Item = u64> + '_ {
        self.orphans.iter().copied()
    }

    pub fn chunk_size(&self) -> u32 {
        self.chunk_size
    }

    pub fn next_ino(&self) -> u64 {
        self.next_ino
    }

    /// Reserves an inode number; the `Record::Inode` that creates it
    /// follows (applying it keeps `next_ino` past every inode, in replay
    /// too).
    pub fn alloc_ino(&mut self) -> u64 {
        let ino = self.next_ino;
        self.next_ino += 1;
        ino
    }

    /// The shards changed since the last call, for an incremental
    /// checkpoint; [`Namespace::mark_dirty`] gives them back if it failed.
    pub fn take_dirty_shards(&mut self) -> BTreeSet<u64> {
        std::mem::take(&mut self.dirty_shards)
    }

    pub fn mark_dirty(&mut self, shards: impl IntoIterator<Item = u64>) {
        self.dirty_shards.extend(shards);
    }

    /// Every shard that holds an inode (a full checkpoint).
    pub fn all_shards(&self) -> BTreeSet<u64> {
        self.inodes.shard_numbers().collect()
    }

    /// The inodes of checkpoint shard `n`, in number order: a scan of the
    /// whole namespace takes the lock one shard at a time.
    pub fn shard_inodes(&self, n: u64) -> impl Iterator<Item = (u64, &Inode)> {
        self.inodes.shard_iter(n)
    }

    /// Shard `n` as it is now, for a checkpoint to encode without the lock
    /// (see `meta::table`).
    pub(super) fn freeze_shard(&self, n: u64) -> Option<super::table::Frozen> {
        self.inodes.freeze(n)
    }

    /// Applies one record; returns packs whose live bytes dropped to zero.
    pub fn apply(&mut self, r: &Record) -> Result<Vec<PackId>, Corrupt> {
        if let Some(ino) = r.inode() {
            self.dirty_shards.insert(super::checkpoint::shard_of(ino));
        }
        let mut freed: Freed = Vec::new();
        match r {
            Record::Inode { ino, attr } => {
                self.next_ino = self.next_ino.max(ino + 1);
                match self.inodes.get_mut(*ino) {
                    Some(i) if i.attr.kind == attr.kind => i.attr = *attr,
                    Some(_) => return Err(Corrupt(format!("inode {ino} changed kind"))),
                    None => {
                        self.inodes.insert(*ino, Inode::new(*attr));
                    }
                }
            }
            Record::Symlink { ino, target } => match &mut self.inode_mut(*ino)?.content {
                Content::Symlink(t) => *t = target.clone(),
                _ => return Err(Corrupt(format!("symlink target on inode {ino}"))),
            },
            Record::Dirent { dir, name, ino } => {
                if let Some(child) = ino {
                    self.inode_mut(*child)?.parent = *dir;
                }
                let entries = self
                    .inode_mut(*dir)?
                    .entries_mut()
                    .ok_or_else(|| Corrupt(format!("entry in non-directory {dir}")))?;
                match ino {
                    Some(child) => {
                        entries.insert(name.as_slice().into(), *child);
                    }
                    None => {
                        entries.remove(name.as_slice());
                    }
                }
            }
            Record::Xattr { ino, name, value } => {
                let x = &mut self.inode_mut(*ino)?.xattrs;
                match value {
                    Some(v) => {
                        x.insert(name.clone(), v.clone());
                    }
                    None => {
                        x.remove(name);
                    }
                }
            }
            Record::Chunks { ino, first, extent } => {
                let pack = self.packs.get(&extent.pack).ok_or_else(|| {
                    Corrupt(format!(
                        "inode {ino} maps chunks to unknown {:?}",
                        extent.pack
                    ))
                })?;
                check_extent(*ino, *first, extent, pack, self.chunk_size)?;
                self.chunks_mut(*ino)?.insert(*first, *extent, &mut freed);
                let p = self.packs.get_mut(&extent.pack).expect("looked up above");
                p.live += extent.count as u64 * extent.cipher_len as u64;
            }
            Record::Punch { ino, first, count } => {
                self.chunks_mut(*ino)?.remove(*first, *count, &mut freed);
            }
            Record::Truncate { ino, size } => {
                let cs = self.chunk_size;
                self.chunks_mut(*ino)?.truncate(*size, cs, &mut freed);
            }
            Record::Drop { ino } => {
                let inode = self
                    .inodes
                    .remove(*ino)
                    .ok_or_else(|| Corrupt(format!("drop of missing inode {ino}")))?;
                self.orphans.remove(ino);
                if let Content::File(mut map) = inode.content {
                    map.truncate(0, self.chunk_size, &mut freed);
                }
            }
            Record::Orphan { ino } => {
                self.inode_mut(*ino)?;
                self.orphans.insert(*ino);
            }
            Record::Pack { id, size, units } => {
                self.packs.insert(
                    *id,
                    PackInfo {
                        size: *size,
                        units: *units,
                        live: 0,
                    },
                );
            }
            Record::Carried { id, units, body } => {
                if *units == 0 {
                    return Err(Corrupt(format!("carried {id:?} has no unit")));
                }
                let size = body.len() as u64;
                self.packs.insert(
                    *id,
                    PackInfo {
                        size,
                        units: *units,
                        live: 0,
                    },
                );
                self.carried.insert(*id, body);
            }
            Record::PackGone { id } => {
                self.packs.remove(id);
                self.carried.remove(id);
            }
        }
        Ok(self.release(freed))
    }

    fn release(&mut self, freed: Freed) -> Vec<PackId> {
        let mut dead = Vec::new();
        for (id, bytes) in freed {
            if let Some(p) = self.packs.get_mut(&id) {
                p.live = p.live.saturating_sub(bytes);
                if p.live == 0 {
                    dead.push(id);
                }
            }
        }
        dead.sort();
        dead.dedup();
        dead
    }

    fn inode_mut(&mut self, ino: u64) -> Result<&mut Inode, Corrupt> {
        self.inodes
            .get_mut(ino)
            .ok_or_else(|| Corrupt(format!("record for missing inode {ino}")))
    }

    fn chunks_mut(&mut self, ino: u64) -> Result<&mut ChunkMap, Corrupt> {
        self.inode_mut(ino)?
            .chunks_mut()
            .ok_or_else(|| Corrupt(format!("chunks on non-file inode {ino}")))
    }

    /// Recomputes live bytes and parent pointers after a checkpoint load.
    fn rebuild_derived(&mut self) {
        for p in self.packs.values_mut() {
            p.live = 0;
        }
        let mut parents = Vec::new();
        for (ino, inode) in self.inodes.iter() {
            if let Some(map) = inode.chunks() {
                for (_, e) in map.extents() {
                    if let Some(p) = self.packs.get_mut(&e.pack) {
                        p.live += e.count as u64 * e.cipher_len as u64;
                    }
                }
            }
            if let Some(entries) = inode.entries() {
                parents.extend(entries.values().map(|&child| (child, ino)));
            }
        }
        for (child, parent) in parents {
            if let Some(i) = self.inodes.get_mut(child) {
                i.parent = parent;
            }
        }
        if let Some(root) = self.inodes.get_mut(ROOT_INO) {
            root.parent = ROOT_INO;
        }
    }

    /// Structural checks run after a mount: every entry points at an inode
    /// and every directory's link count matches its subdirectories.
    pub fn check(&self) -> Result<(), Corrupt> {
        for (ino, inode) in self.inodes.iter() {
            if let Some(entries) = inode.entries() {
                let mut subdirs = 0;
                for &child in entries.values() {
                    let c = self.inodes.get(child).ok_or_else(|| {
                        Corrupt(format!("dir {ino} has an entry for missing inode {child}"))
                    })?;
                    if c.attr.kind == Kind::Dir {
                        subdirs += 1;
                    }
                }
                if inode.attr.nlink != 2 + subdirs {
                    return Err(Corrupt(format!(
                        "dir {ino} nlink {} != {}",
                        inode.attr.nlink,
                        2 + subdirs
                    )));
                }
            }
        }
        Ok(())
    }
}
