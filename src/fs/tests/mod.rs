//! Core tests over the memory store: no kernel, no network.

mod basic;

use std::ffi::OsStr;
use std::sync::Arc;
use std::time::Duration;

use super::{Caller, Fs, FsOptions, ROOT};
use crate::crypto::KdfParams;
use crate::store::{MemoryStore, ObjectStore};
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
        Fs::format(store.clone(), &header, &master).unwrap();
        Vol { store, mem, header }
    }

    pub fn mount(&self) -> Arc<Fs> {
        self.mount_with(FsOptions {
            commit_interval: Duration::from_millis(50),
            ..FsOptions::default()
        })
    }

    pub fn mount_with(&self, opts: FsOptions) -> Arc<Fs> {
        let master = self.header.unlock(PASS).unwrap();
        Fs::mount(self.store.clone(), &self.header, &master, opts).unwrap()
    }
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
