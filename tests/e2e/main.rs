//! End-to-end tests: real FUSE mounts of real volumes through the
//! `sealedfs` binary. One test binary, many modules (see Cargo.toml).
//! Needs root and /dev/fuse (CI runs as root); the S3 tests need the S3
//! test server (scripts/test.sh starts one) and fail, never skip, without.
//!
//! Scenarios that mean the same on every store run once per backend (see
//! harness/mod.rs): `durability::crash_rounds::local`, `…::s3`.

mod audit;
mod config;
mod disk_cache;
mod durability;
mod faults;
mod follow;
mod fsck;
mod fstab;
mod golden;
mod harness;
mod integrity;
mod keys;
mod leak;
mod lease;
mod lockdown;
mod messages;
mod mount_cli;
mod notify;
mod outage;
mod perms;
mod posix;
#[allow(dead_code)] // faults the e2e tests do not use
mod proxy;
mod requests;
mod restore;
mod rollback;
mod rotation;
mod roundtrip;
mod s3;
mod smoke;
mod snapshots;
mod stall;
mod tools;
