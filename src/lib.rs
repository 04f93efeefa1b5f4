//! sealedfs: an encrypted, crash-safe POSIX filesystem whose volume lives in
//! an object store. The layers, bottom-up: `store` (where ciphertext lives),
//! `crypto` (keys and sealing), `volume` (the header object), `meta`
//! (namespace, journal, checkpoints), `data` (chunks, packs, cache), `fs`
//! (POSIX rules), `fuse` (the kernel adapter), `lease` (one writer per
//! volume), `cli` (commands, daemon).

pub mod cli;
pub mod crypto;
pub mod data;
pub mod fs;
pub mod fuse;
pub mod lease;
pub mod meta;
pub mod store;
pub mod volume;
