//! The raw S3 server, for `scripts/bench.sh`: PUTs and then GETs the same
//! bytes sealedfs moves, in objects of a pack's size, with as many requests
//! in flight as sealedfs keeps, through the same client (`S3Store`, the AWS
//! SDK). Its figures are the ceiling sealedfs is measured against.
//!
//! Usage: `s3_raw s3://BUCKET/PREFIX TOTAL_MIB` prints `put SECONDS` and
//! `get SECONDS` and deletes what it wrote; `s3_raw --tuning` prints the
//! object size in MiB and the PUTs and GETs it keeps in flight. The
//! endpoint, region and keys come from the SDK's environment
//! (`AWS_ENDPOINT_URL`, `AWS_REGION`, `AWS_ACCESS_KEY_ID`, …).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use sealedfs::fs::{PACK_TARGET, READ_AHEAD_GETS};
use sealedfs::store::{ObjectStore, S3Config, S3Store};

/// Packs are uploaded one at a time by the one flusher thread
/// (src/fs/writeback.rs).
const PUTS_IN_FLIGHT: usize = 1;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let object = PACK_TARGET as usize;
    let (put_conc, get_conc) = (PUTS_IN_FLIGHT, READ_AHEAD_GETS);
    let (url, total) = match args.as_slice() {
        [t] if t == "--tuning" => {
            println!("{} {put_conc} {get_conc}", object >> 20);
            return;
        }
        [url, total] => (url, total),
        _ => fail("usage: s3_raw s3://BUCKET/PREFIX TOTAL_MIB | s3_raw --tuning".into()),
    };
    let total: usize = total
        .parse()
        .ok()
        .filter(|&n: &usize| n > 0)
        .unwrap_or_else(|| fail(format!("not a positive number of MiB: {total}")))
        << 20;
    let (bucket, prefix) = url
        .strip_prefix("s3://")
        .and_then(|r| r.split_once('/'))
        .unwrap_or_else(|| fail(format!("not s3://BUCKET/PREFIX: {url}")));
    let mut cfg = S3Config::new(bucket, prefix);
    cfg.max_requests = put_conc.max(get_conc);
    let store = S3Store::open(cfg).unwrap_or_else(|e| fail(e.to_string()));

    let count = total.div_ceil(object);
    let keys: Vec<String> = (0..count).map(|i| format!("raw/{i:06}")).collect();
    // Random bytes, as sealed packs are: nothing on the way can compress them.
    let body: Vec<u8> = (0..object).map(|_| rand_byte()).collect();

    let put = timed(put_conc, count, |i| store.put(&keys[i], &body));
    println!("put {put:.3}");
    let get = timed(get_conc, count, |i| {
        store
            .get_range(&keys[i], 0..object as u64)
            .map(|b| assert_eq!(b.len(), object))
    });
    println!("get {get:.3}");
    store
        .delete_many(&keys)
        .unwrap_or_else(|e| fail(e.to_string()));
}

/// Runs `op(0..count)` on `threads` threads, each taking the next index;
/// the wall time in seconds.
fn timed<E: std::fmt::Display>(
    threads: usize,
    count: usize,
    op: impl Fn(usize) -> Result<(), E> + Sync,
) -> f64 {
    let next = AtomicUsize::new(0);
    let start = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= count {
                        return;
                    }
                    op(i).unwrap_or_else(|e| fail(e.to_string()));
                }
            });
        }
    });
    start.elapsed().as_secs_f64()
}

fn rand_byte() -> u8 {
    rand::random()
}

fn fail(msg: String) -> ! {
    eprintln!("s3_raw: {msg}");
    std::process::exit(1);
}
