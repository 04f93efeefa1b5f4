//! Core tests over the memory store: no kernel, no network.

mod basic;
mod carried;
mod faults;
mod lease;
mod model;
mod opcount;
mod padding;
mod scale;
mod writeback;

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::sync::Arc;
use std::time::Duration;

use super::{Caller, DirReplier, Fs, FsError, FsOptions, FsResult, Kind, ROOT};
use crate::crypto::KdfParams;
use crate::store::{MemoryStore, ObjectStore, RetryPolicy, RetryingStore};
use crate::volume::VolumeHeader;

pub const PASS: &[u8] = b"test passphrase";

/// A volume in a memory store; `mount` opens it (again) over the same store.
pub struct Vol {
    pub store: Arc<dyn ObjectStore>,
    #[allow(dead_code)] // tamper tests reach the raw objects
    pub mem: MemoryStore,
    pub header: VolumeHeader,
}

impl Vol {
    pub fn new() -> Vol {
        Vol::with_chunk(65536)
    }

    pub fn with_chunk(chunk: u32) -> Vol {
        let mem = MemoryStore::new();
        Vol::create(mem.clone(), Arc::new(mem), chunk)
    }

    pub fn create(mem: MemoryStore, store: Arc<dyn ObjectStore>, chunk: u32) -> Vol {
        let master = crate::crypto::MasterKey::generate();
        let header = VolumeHeader::new(&master, PASS, KdfParams::insecure_fast(), chunk).unwrap();
        store.put_if_absent("volume", &header.encode()).unwrap();
        Fs::format(
            store.clone(),
            &header,
            &crate::crypto::KeyRing::single(0, master),
        )
        .unwrap();
        Vol { store, mem, header }
    }

    pub fn mount(&self) -> Arc<Fs> {
        self.mount_with(FsOptions::with_engine(|e| {
            e.commit_interval = Duration::from_millis(50);
            e.retire_grace = Duration::ZERO;
        }))
    }

    pub fn mount_with(&self, opts: FsOptions) -> Arc<Fs> {
        let master = self.header.unlock(PASS).unwrap();
        Fs::mount(self.store.clone(), &self.header, &master, opts).unwrap()
    }

    /// Mounts over another view of the same objects: a counting or fault
    /// wrapper around `mem`, or `mem` itself.
    pub fn try_mount_on(&self, store: Arc<dyn ObjectStore>, opts: FsOptions) -> FsResult<Arc<Fs>> {
        let master = self.header.unlock(PASS).unwrap();
        Fs::mount(store, &self.header, &master, opts)
    }

    /// Mounts over the bare memory store, bypassing whatever wrapper
    /// `store` is (after a simulated crash of a fault store, say).
    pub fn mount_mem(&self, opts: FsOptions) -> Arc<Fs> {
        self.try_mount_on(Arc::new(self.mem.clone()), opts).unwrap()
    }
}

/// `store` behind the one retry policy, with a deadline short enough for
/// a test to outlast it.
pub fn retrying(store: impl ObjectStore + 'static) -> Arc<dyn ObjectStore> {
    let policy = RetryPolicy {
        deadline: Duration::from_secs(2),
        base: Duration::from_millis(1),
        cap: Duration::from_millis(50),
    };
    Arc::new(RetryingStore::new(Arc::new(store), policy))
}

/// Options for tests that decide themselves when things commit: nothing
/// is flushed or committed in the background unless someone waits on it.
pub fn quiet() -> FsOptions {
    quiet_with(|_| {})
}

/// [`quiet`] options with `f` applied to the engine's.
pub fn quiet_with(f: impl FnOnce(&mut crate::engine::EngineOptions)) -> FsOptions {
    FsOptions::with_engine(|e| {
        e.commit_interval = Duration::from_secs(3600);
        // No follower reads these volumes: retired packs go at once.
        e.retire_grace = Duration::ZERO;
        f(e)
    })
}

/// `opts` with nothing carried in the journal: every fsync uploads a pack,
/// for tests of the pack path itself.
pub fn packs_only(mut opts: FsOptions) -> FsOptions {
    opts.carry_bytes = 0;
    opts
}

pub const ME: Caller = Caller::ROOT;

pub fn os(s: &str) -> &OsStr {
    OsStr::new(s)
}

/// Creates `name` in the root with `data`, closes it.
pub fn put_file(fs: &Fs, name: &str, data: &[u8]) -> u64 {
    let (attr, opened) = fs
        .create(&ME, ROOT, os(name), 0o644, 0o022, libc::O_WRONLY)
        .unwrap();
    if !data.is_empty() {
        assert_eq!(
            fs.write(&ME, attr.ino, opened.fh, 0, data).unwrap() as usize,
            data.len()
        );
    }
    fs.release(attr.ino, opened.fh).unwrap();
    attr.ino
}

pub fn read_all(fs: &Fs, ino: u64) -> Vec<u8> {
    let o = fs.open(&ME, ino, libc::O_RDONLY).unwrap();
    let size = fs.getattr(ino).unwrap().size;
    let mut out = Vec::new();
    while (out.len() as u64) < size {
        let b = fs.read(ino, o.fh, out.len() as u64, 1 << 20).unwrap();
        assert!(!b.is_empty());
        out.extend(b);
    }
    fs.release(ino, o.fh).unwrap();
    out
}

pub fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// Reads a whole file through a fresh handle, reporting errors instead of
/// panicking (tamper and crash tests expect some).
pub fn try_read_all(fs: &Fs, ino: u64) -> FsResult<Vec<u8>> {
    let o = fs.open(&ME, ino, libc::O_RDONLY)?;
    let result = read_through(fs, ino, o.fh);
    fs.release(ino, o.fh)?;
    result
}

/// Reads a whole file through an open handle.
pub fn read_through(fs: &Fs, ino: u64, fh: u64) -> FsResult<Vec<u8>> {
    let size = fs.getattr(ino)?.size;
    let mut out = Vec::with_capacity(size as usize);
    while (out.len() as u64) < size {
        let b = fs.read(ino, fh, out.len() as u64, 1 << 20)?;
        if b.is_empty() {
            return Err(FsError::Corrupt(format!(
                "inode {ino}: read stopped at {} of {size} bytes",
                out.len()
            )));
        }
        out.extend(b);
    }
    Ok(out)
}

/// Collects `readdir` entries.
#[derive(Default)]
pub struct Entries(pub Vec<(u64, Kind, Vec<u8>)>);

impl DirReplier for Entries {
    fn add(&mut self, ino: u64, _next_offset: u64, kind: Kind, name: &[u8]) -> bool {
        self.0.push((ino, kind, name.to_vec()));
        false
    }
}

/// The entries of a directory, `.` and `..` included, as `readdir` lists them.
pub fn list_dir(fs: &Fs, dir: u64) -> FsResult<Vec<(u64, Kind, Vec<u8>)>> {
    let fh = fs.opendir(&ME, dir, libc::O_RDONLY)?;
    let mut e = Entries::default();
    let r = fs.readdir(dir, fh, 0, &mut e);
    fs.releasedir(dir, fh)?;
    r.map(|()| e.0)
}

/// What a tree walk records of one entry (timestamps and modes aside).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Node {
    Dir { nlink: u32 },
    File { size: u64, nlink: u32 },
    Symlink { target: Vec<u8>, nlink: u32 },
    Other { kind: Kind },
}

/// Path ("" for the root, else "a/b") → (node, inode number).
pub type Tree = BTreeMap<String, (Node, u64)>;

/// Walks the whole tree through the POSIX API and checks it is consistent:
/// `readdir` agrees with `lookup` and `getattr` (kind, `.`, `..`), every
/// directory's link count is 2 + its subdirectories, every other inode's
/// link count is the number of entries naming it.
pub fn walk(fs: &Fs) -> Result<Tree, String> {
    let mut tree = Tree::new();
    let mut names: HashMap<u64, u32> = HashMap::new();
    let root = fs
        .getattr(ROOT)
        .map_err(|e| format!("getattr(root): {e}"))?;
    tree.insert(String::new(), (Node::Dir { nlink: root.nlink }, ROOT));
    let mut todo = vec![(String::new(), ROOT, ROOT)];
    while let Some((path, dir, parent)) = todo.pop() {
        let entries = list_dir(fs, dir).map_err(|e| format!("readdir({path:?}): {e}"))?;
        let mut subdirs = 0;
        let mut dots = 0;
        for (ino, kind, name) in entries {
            let name = String::from_utf8(name).map_err(|e| format!("{path:?}: {e}"))?;
            match name.as_str() {
                "." | ".." => {
                    let want = if name == "." { dir } else { parent };
                    if ino != want {
                        return Err(format!("{path:?}: {name} is {ino}, want {want}"));
                    }
                    dots += 1;
                    continue;
                }
                _ => {}
            }
            let child = if path.is_empty() {
                name.clone()
            } else {
                format!("{path}/{name}")
            };
            let attr = fs
                .lookup(&ME, dir, os(&name))
                .map_err(|e| format!("lookup({child:?}) of a listed entry: {e}"))?;
            if attr.ino != ino || attr.kind != kind {
                return Err(format!(
                    "{child:?}: readdir says {ino} {kind:?}, lookup {} {:?}",
                    attr.ino, attr.kind
                ));
            }
            let node = match kind {
                Kind::Dir => {
                    subdirs += 1;
                    let dotdot = fs
                        .lookup(&ME, ino, os(".."))
                        .map_err(|e| format!("lookup({child:?}/..): {e}"))?;
                    if dotdot.ino != dir {
                        return Err(format!("{child:?}/.. is {}, want {dir}", dotdot.ino));
                    }
                    todo.push((child.clone(), ino, dir));
                    Node::Dir { nlink: attr.nlink }
                }
                Kind::File => {
                    *names.entry(ino).or_default() += 1;
                    Node::File {
                        size: attr.size,
                        nlink: attr.nlink,
                    }
                }
                Kind::Symlink => {
                    *names.entry(ino).or_default() += 1;
                    let target = fs
                        .readlink(ino)
                        .map_err(|e| format!("readlink({child:?}): {e}"))?;
                    if target.len() as u64 != attr.size {
                        return Err(format!("{child:?}: symlink size {} != target", attr.size));
                    }
                    Node::Symlink {
                        target,
                        nlink: attr.nlink,
                    }
                }
                other => {
                    *names.entry(ino).or_default() += 1;
                    Node::Other { kind: other }
                }
            };
            tree.insert(child, (node, ino));
        }
        if dots != 2 {
            return Err(format!("{path:?}: readdir listed {dots} of . and .."));
        }
        let nlink = fs
            .getattr(dir)
            .map_err(|e| format!("getattr({path:?}): {e}"))?
            .nlink;
        if nlink != 2 + subdirs {
            return Err(format!(
                "{path:?}: nlink {nlink} with {subdirs} subdirectories"
            ));
        }
    }
    for (path, (node, ino)) in &tree {
        let nlink = match node {
            Node::File { nlink, .. } | Node::Symlink { nlink, .. } => *nlink,
            Node::Dir { .. } | Node::Other { .. } => continue,
        };
        if nlink != names[ino] {
            return Err(format!(
                "{path:?} (inode {ino}): nlink {nlink} but {} entries",
                names[ino]
            ));
        }
    }
    Ok(tree)
}

/// `walk`, then reads every file to its size: the checks a remount after a
/// crash must pass whatever state it lands in.
pub fn check_consistent(fs: &Fs) -> Result<Tree, String> {
    let tree = walk(fs)?;
    for (path, (node, ino)) in &tree {
        if let Node::File { size, .. } = node {
            let data = try_read_all(fs, *ino).map_err(|e| format!("reading {path:?}: {e}"))?;
            if data.len() as u64 != *size {
                return Err(format!("{path:?}: read {} of {size} bytes", data.len()));
            }
        }
    }
    Ok(tree)
}
