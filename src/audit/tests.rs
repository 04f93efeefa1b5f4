//! The auditor over an in-memory store: chains stay linear when two
//! auditors append to one, and a dead mount's spool is adopted exactly
//! (nothing lost, nothing twice) whatever it had uploaded.

use std::sync::Arc;

use super::query::{self, Filter};
use super::*;
use crate::crypto::{Keys, MasterKey};
use crate::store::MemoryStore;

const VID: [u8; 16] = [9; 16];

fn rec(pid: u32) -> Record {
    Record {
        time_ms: now_ms(),
        uid: 1000,
        gid: 1000,
        pid,
        process: "t".into(),
        op: Op::Mkdir,
        path: format!("/d{pid}"),
        path2: None,
        errno: 0,
    }
}

fn key(master: &MasterKey) -> SubKey {
    Keys::derive(master, &VID).audit
}

fn pids(store: &dyn ObjectStore, master: &MasterKey) -> Vec<u32> {
    let mut out = Vec::new();
    query::query(
        store,
        &key(master),
        &VID,
        &Filter::default(),
        &mut |_, _, r| {
            out.push(r.pid);
            true
        },
    )
    .unwrap();
    out
}

fn intact(store: &dyn ObjectStore, master: &MasterKey) -> bool {
    query::verify(store, &key(master), &VID, None)
        .unwrap()
        .intact()
}

#[test]
fn two_auditors_of_one_chain_keep_it_linear() {
    let master = MasterKey::generate();
    let store: Arc<dyn ObjectStore> = Arc::new(MemoryStore::new());
    let dir = tempfile::tempdir().unwrap();
    let a = Auditor::open(Arc::clone(&store), key(&master), VID, "w", dir.path()).unwrap();
    let b = Auditor::open(Arc::clone(&store), key(&master), VID, "w", dir.path()).unwrap();
    a.record(rec(1));
    a.flush().unwrap();
    // b still thinks the chain is empty: its seq 1 is taken, it moves on.
    b.record(rec(2));
    assert_eq!(b.flush().unwrap().seq, 2);
    a.record(rec(3));
    assert_eq!(a.flush().unwrap().seq, 3);
    assert_eq!(pids(&*store, &master), [1, 2, 3]);
    assert!(intact(&*store, &master));
}

#[test]
fn a_dead_mounts_spool_is_adopted_exactly_once() {
    let master = MasterKey::generate();
    let store: Arc<dyn ObjectStore> = Arc::new(MemoryStore::new());
    let dir = tempfile::tempdir().unwrap();
    let dead = Auditor::open(Arc::clone(&store), key(&master), VID, "w", dir.path()).unwrap();
    let stem = format!("w~{}", hex::encode(dead.instance));
    dead.record(rec(1));
    dead.record(rec(2));
    let first = std::fs::read(dir.path().join(format!("{stem}.open"))).unwrap();
    dead.flush().unwrap();
    dead.record(rec(3));
    // Killed after uploading records 1 and 2 but before deleting their
    // generation's file; its lock went with its process.
    let copy = tempfile::tempdir().unwrap();
    std::fs::write(copy.path().join(format!("{stem}.00000001")), first).unwrap();
    std::fs::copy(
        dir.path().join(format!("{stem}.open")),
        copy.path().join(format!("{stem}.open")),
    )
    .unwrap();
    drop(dead);
    // Records 1 and 2 are in the store; 3 only in the spool.
    let next = Auditor::open(Arc::clone(&store), key(&master), VID, "w", copy.path()).unwrap();
    next.flush().unwrap();
    assert_eq!(pids(&*store, &master), [1, 2, 3]);
    assert!(intact(&*store, &master));
    let left: Vec<String> = std::fs::read_dir(copy.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.contains(&stem))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn records_whose_upload_failed_stay_in_the_spool_for_the_next_mount() {
    let master = MasterKey::generate();
    let memory: Arc<dyn ObjectStore> = Arc::new(MemoryStore::new());
    let plan = crate::store::FaultPlan::new();
    let faulty: Arc<dyn ObjectStore> = Arc::new(crate::store::FaultStore::with_plan(
        Arc::clone(&memory),
        plan.clone(),
    ));
    let dir = tempfile::tempdir().unwrap();
    let dead = Auditor::open(faulty, key(&master), VID, "w", dir.path()).unwrap();
    dead.record(rec(1));
    dead.flush().unwrap();
    // The second upload fails: its generation stays on disk, closed (and
    // fsynced: the only spool fsync a flush makes).
    dead.record(rec(2));
    plan.fail_matching(&[crate::store::Op::PutIfAbsent], "audit/", 1);
    assert!(dead.flush().is_err());
    let stem = format!("w~{}", hex::encode(dead.instance));
    assert!(dir.path().join(format!("{stem}.00000002")).exists());
    // Killed now: its files outlive it, its lock does not.
    let copy = tempfile::tempdir().unwrap();
    for e in std::fs::read_dir(dir.path()).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), copy.path().join(e.file_name())).unwrap();
    }
    drop(dead);
    let next = Auditor::open(Arc::clone(&memory), key(&master), VID, "w", copy.path()).unwrap();
    next.flush().unwrap();
    assert_eq!(pids(&*memory, &master), [1, 2]);
    assert!(intact(&*memory, &master));
}

#[test]
fn a_base_written_before_padded_segments_still_reads() {
    // Builds before audit segment version 2 wrote bases as `01` ‖ postcard,
    // and bases never took the segments' version bump.
    let master = MasterKey::generate();
    let store = MemoryStore::new();
    let base = prune::Base {
        chain: "w".into(),
        first_seq: 3,
        prev_hash: [5; 32],
        count_before: 7,
        before_ms: 1,
    };
    let object = prune::base_key("w");
    let mut plain = vec![1u8];
    plain.extend(postcard::to_allocvec(&base).unwrap());
    let sealed = crate::crypto::seal(
        &key(&master),
        &crate::crypto::UnitAd::whole(&VID, &object),
        &plain,
    );
    store.put(&object, &sealed).unwrap();
    let read = prune::read_base(&store, &key(&master), &VID, "w").unwrap();
    assert_eq!(read.unwrap(), Some(base));
}

/// What piles up during an outage goes out in segments of bounded size;
/// a piece whose PUT fails is retried by the next flush, after the pieces
/// before it, and nothing is lost or recorded twice.
#[test]
fn a_backlog_goes_out_in_bounded_segments_and_a_failed_piece_is_retried() {
    let master = MasterKey::generate();
    let memory: Arc<dyn ObjectStore> = Arc::new(MemoryStore::new());
    let faulty = crate::store::FaultStore::new(Arc::clone(&memory));
    let plan = faulty.plan();
    let puts = std::sync::atomic::AtomicU32::new(0);
    let failing = plan.clone();
    plan.before_each(move |op, key| {
        let second = op == crate::store::Op::PutIfAbsent
            && key.starts_with("audit/")
            && puts.fetch_add(1, Ordering::SeqCst) == 1;
        if second {
            failing.fail_matching(&[op], key, 1);
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let a = Auditor::open(Arc::new(faulty), key(&master), VID, "w", dir.path()).unwrap();
    let n = 2 * SEGMENT_RECORDS as u32 + 5;
    for pid in 0..n {
        a.record(rec(pid));
    }
    assert!(a.flush().is_err(), "the second piece fails");
    assert_eq!(memory.list("audit/").unwrap().len(), 1, "the first is up");
    assert_eq!(a.flush().unwrap().seq, 3);
    assert_eq!(pids(&*memory, &master), (0..n).collect::<Vec<_>>());
    assert!(intact(&*memory, &master));
}

/// A PUT that stored its segment but whose answer was lost is found by
/// the retry, not uploaded again as the next segment.
#[test]
fn a_segment_whose_answer_was_lost_is_not_uploaded_twice() {
    let master = MasterKey::generate();
    let memory: Arc<dyn ObjectStore> = Arc::new(MemoryStore::new());
    let faulty = crate::store::FaultStore::new(Arc::clone(&memory));
    faulty
        .plan()
        .lose_answer_on_next_matching(crate::store::Op::PutIfAbsent, "audit/");
    let dir = tempfile::tempdir().unwrap();
    let a = Auditor::open(Arc::new(faulty), key(&master), VID, "w", dir.path()).unwrap();
    for pid in 0..3 {
        a.record(rec(pid));
    }
    assert!(a.flush().is_err(), "the answer is lost");
    assert_eq!(
        memory.list("audit/").unwrap().len(),
        1,
        "but the segment is up"
    );
    a.record(rec(3));
    assert_eq!(a.flush().unwrap().seq, 2, "the retry finds seq 1 its own");
    assert_eq!(pids(&*memory, &master), vec![0, 1, 2, 3]);
    assert!(intact(&*memory, &master));
}

#[test]
fn pieces_are_bounded_by_bytes_as_well_as_by_records() {
    let long = |pid| Record {
        path: "p".repeat(1 << 20),
        ..rec(pid)
    };
    let records: Vec<Record> = (0..100).map(long).collect();
    let n = piece_len(&records);
    assert!((16..=32).contains(&n), "{n} records of 1 MiB in a piece");
    let small: Vec<Record> = (0..20_000).map(rec).collect();
    assert_eq!(piece_len(&small), SEGMENT_RECORDS);
    assert_eq!(piece_len(&records[..1]), 1);
    let huge = Record {
        path: "p".repeat(SEGMENT_BYTES + 1),
        ..rec(0)
    };
    assert_eq!(piece_len(&[huge]), 1, "a record always fits a piece alone");
}
