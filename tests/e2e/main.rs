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
#[allow(dead_code)] // faults the e2e tests do not use
mod proxy;
mod roundtrip;
mod s3;
mod s3_durability;
mod s3_faults;
mod s3_integrity;
mod s3_lease;
mod s3_requests;
mod smoke;
mod tools;
