//! sealedfs: an encrypted, crash-safe POSIX filesystem whose volume lives in
//! an object store. The layers, bottom-up: `store` (where ciphertext lives),
//! `crypto` (keys and sealing), `volume` (the header object), `meta`
//! (persisted formats: namespace, records, journal segments, checkpoints),
//! `data` (chunks, packs, cache), `lease` (one writer per volume), `engine`
//! (the volume's durable life: open, commit, checkpoints, garbage), `fs`
//! (POSIX rules), `fuse` (the kernel adapter), `cli` (commands, daemon).

pub mod alert;
pub mod audit;
pub mod cli;
pub mod crypto;
pub mod data;
pub mod engine;
pub mod fs;
pub mod fuse;
pub mod lease;
pub mod meta;
pub mod replica;
pub mod store;
pub mod volume;

#[cfg(test)]
mod fuzz;
