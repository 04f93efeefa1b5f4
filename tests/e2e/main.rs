//! End-to-end tests: real FUSE mounts of real volumes through the
//! `sealedfs` binary. One test binary, many modules (see Cargo.toml).
//! Needs root and /dev/fuse (CI runs as root).

mod durability;
mod golden;
#[allow(dead_code)] // helpers used by some test modules only
mod harness;
mod integrity;
mod lease;
mod perms;
mod posix;
mod roundtrip;
mod s3;
mod smoke;
mod tools;
