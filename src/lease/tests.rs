//! Lease tests over the memory store with a fake clock: a 30 s TTL runs
//! in microseconds, and nothing sleeps for real.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use super::*;
use crate::crypto::{Keys, MasterKey};
use crate::store::{CountingStore, FaultStore, MemoryStore, ObjectStore, Op};

const TTL: Duration = Duration::from_secs(30);
const VID: [u8; 16] = [9; 16];

struct World {
    mem: MemoryStore,
    keys: Keys,
    clock: FakeClock,
}

fn world() -> World {
    World {
        mem: MemoryStore::new(),
        keys: Keys::derive(&MasterKey::generate(), &VID),
        clock: FakeClock::new(SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)),
    }
}

fn who(host: &str, pid: u32) -> Identity {
    Identity {
        host: host.into(),
        boot_id: "boot-1".into(),
        pid,
        pid_start: 100,
    }
}

fn live(_: u32, _: u64) -> bool {
    true
}

fn dead(_: u32, _: u64) -> bool {
    false
}

impl World {
    fn try_acquire_on(
        &self,
        store: &dyn ObjectStore,
        me: Identity,
        alive: &dyn Fn(u32, u64) -> bool,
        force: bool,
    ) -> Result<Acquired, LeaseError> {
        Contender {
            store,
            key: &self.keys.lease,
            volume_id: &VID,
            me,
            clock: &self.clock,
            alive,
            ttl: TTL,
            force,
        }
        .acquire()
    }

    fn try_acquire(&self, me: Identity, force: bool) -> Result<Acquired, LeaseError> {
        self.try_acquire_on(&self.mem, me, &live, force)
    }

    fn holder_on(&self, store: Arc<dyn ObjectStore>, me: Identity, a: &Acquired) -> Arc<Holder> {
        Holder::new(
            store,
            self.lease_key(),
            VID,
            Arc::new(self.clock.clone()),
            me,
            a,
        )
    }

    fn holder(&self, me: Identity, a: &Acquired) -> Arc<Holder> {
        self.holder_on(Arc::new(self.mem.clone()), me, a)
    }

    /// A second copy of the lease subkey (SubKey has no Clone on purpose).
    fn lease_key(&self) -> crate::crypto::SubKey {
        crate::crypto::SubKey::from_bytes(*self.keys.lease.as_bytes())
    }

    fn lease(&self) -> Option<LeaseRecord> {
        let body = self.mem.raw(LEASE_KEY)?;
        Some(record::open(&self.keys.lease, &VID, &body).unwrap())
    }
}

#[test]
fn fresh_acquire_creates_the_lease() {
    let w = world();
    let a = w.try_acquire(who("a", 10), false).unwrap();
    assert!(!a.took_over);
    let r = w.lease().unwrap();
    assert_eq!((r.host.as_str(), r.pid, r.writer), ("a", 10, a.writer));
    assert_eq!(r.ttl_ms, 30_000);
    assert_eq!(w.mem.head(LEASE_KEY).unwrap().unwrap().etag, a.etag);
}

#[test]
fn second_acquire_is_refused_naming_the_holder() {
    let w = world();
    w.try_acquire(who("db1", 10), false).unwrap();
    let before = w.clock.now();
    let e = w.try_acquire(who("db2", 20), false).unwrap_err();
    assert!(matches!(&e, LeaseError::Held { host, pid: 10, .. } if host == "db1"));
    assert_eq!(
        e.to_string(),
        "volume is mounted read-write by host db1 (pid 10) until 2023-11-14 22:13:50 UTC"
    );
    assert_eq!(w.clock.now(), before, "refused at once, no watch");
    assert_eq!(w.lease().unwrap().host, "db1");
}

#[test]
fn same_host_dead_pid_is_taken_at_once() {
    let w = world();
    w.try_acquire(who("a", 10), false).unwrap();
    let before = w.clock.now();
    let a = w
        .try_acquire_on(&w.mem, who("a", 20), &dead, false)
        .unwrap();
    assert!(a.took_over);
    assert_eq!(w.clock.now(), before);
    assert_eq!(w.lease().unwrap().pid, 20);
}

#[test]
fn same_host_reused_pid_is_taken_at_once() {
    let w = world();
    w.try_acquire(who("a", 10), false).unwrap();
    // Pid 10 runs, but it started at another time: not the holder.
    let reused = |pid: u32, start: u64| pid == 10 && start == 555;
    let a = w.try_acquire_on(&w.mem, who("a", 20), &reused, false);
    assert!(a.unwrap().took_over);
}

#[test]
fn same_host_live_pid_is_refused() {
    let w = world();
    w.try_acquire(who("a", 10), false).unwrap();
    let holder_alive = |pid: u32, start: u64| pid == 10 && start == 100;
    let e = w.try_acquire_on(&w.mem, who("a", 20), &holder_alive, false);
    assert!(matches!(e, Err(LeaseError::Held { pid: 10, .. })));
}

#[test]
fn same_host_earlier_boot_is_taken_at_once() {
    let w = world();
    w.try_acquire(who("a", 10), false).unwrap();
    let mut rebooted = who("a", 10);
    rebooted.boot_id = "boot-2".into();
    assert!(w.try_acquire(rebooted, false).unwrap().took_over);
}

#[test]
fn expired_by_wall_clock_but_renewed_during_the_watch_is_refused() {
    let w = world();
    let a = w.try_acquire(who("a", 10), false).unwrap();
    let ha = w.holder(who("a", 10), &a);
    // The holder's wall clock said 30 s; ours is past that (skew, or the
    // holder was stopped): wall clocks must not decide.
    w.clock.advance(TTL + Duration::from_secs(1));
    let renewed = Arc::new(AtomicUsize::new(0));
    let (start, r2) = (w.clock.now(), renewed.clone());
    w.clock.on_sleep(move |now| {
        if now >= start + Duration::from_secs(5) && r2.fetch_add(1, Ordering::SeqCst) == 0 {
            assert_eq!(ha.renew_once(), Renewal::Renewed);
        }
    });
    let e = w.try_acquire(who("b", 20), false).unwrap_err();
    assert!(matches!(e, LeaseError::Held { pid: 10, .. }), "{e}");
    assert!(renewed.load(Ordering::SeqCst) >= 1);
    assert!(w.clock.now() < start + TTL, "refused as soon as it changed");
    assert_eq!(w.lease().unwrap().host, "a");
}

#[test]
fn unchanged_for_a_full_ttl_is_taken_over() {
    let w = world();
    w.try_acquire(who("a", 10), false).unwrap();
    w.clock.advance(TTL + Duration::from_secs(1));
    let start = w.clock.now();
    let b = w.try_acquire(who("b", 20), false).unwrap();
    assert!(b.took_over);
    assert!(w.clock.now() >= start + TTL, "watched a whole TTL");
    assert!(w.clock.now() < start + TTL + Duration::from_secs(2));
    assert_eq!(w.lease().unwrap().host, "b");
}

#[test]
fn force_takeover_takes_a_live_lease() {
    let w = world();
    w.try_acquire(who("a", 10), false).unwrap();
    let b = w.try_acquire(who("b", 20), true).unwrap();
    assert!(b.took_over);
    assert_eq!(w.lease().unwrap().writer, b.writer);
}

#[test]
fn renewal_after_a_takeover_fences_the_old_holder() {
    let w = world();
    let a = w.try_acquire(who("a", 10), false).unwrap();
    let ha = w.holder(who("a", 10), &a);
    let told = Arc::new(Mutex::new(Vec::<String>::new()));
    let t = told.clone();
    ha.on_fenced(move |why| t.lock().unwrap().push(why.to_string()));
    assert_eq!(ha.renew_once(), Renewal::Renewed);
    let b = w.try_acquire(who("b", 20), true).unwrap();
    assert!(ha.may_write().is_ok(), "not noticed yet");
    assert_eq!(ha.renew_once(), Renewal::Fenced);
    assert!(ha.is_fenced());
    assert!(ha.may_write().unwrap_err().contains("lost"));
    assert_eq!(told.lock().unwrap().len(), 1);
    assert_eq!(w.lease().unwrap().writer, b.writer, "B's lease untouched");
    // Later renewals write nothing and the hook does not run again.
    assert_eq!(ha.renew_once(), Renewal::Fenced);
    assert_eq!(told.lock().unwrap().len(), 1);
    // A hook registered after fencing runs at once.
    let late = Arc::new(AtomicUsize::new(0));
    let l = late.clone();
    ha.on_fenced(move |_| {
        l.fetch_add(1, Ordering::SeqCst);
    });
    assert_eq!(late.load(Ordering::SeqCst), 1);
}

#[test]
fn first_renewal_after_fork_names_the_child() {
    let w = world();
    let a = w.try_acquire(who("a", 10), false).unwrap();
    let child = w.holder(who("a", 11), &a);
    child.renew_now().unwrap();
    assert_eq!(w.lease().unwrap().pid, 11);
    assert_eq!(w.lease().unwrap().writer, a.writer);
}

/// Store errors through the whole validity: the gate lets nothing out
/// after the deadline; a renewal that finally gets through with nobody
/// having taken the lease resumes writing.
#[test]
fn lapse_stops_every_write_until_a_renewal_gets_through() {
    let w = world();
    let a = w.try_acquire(who("a", 10), false).unwrap();
    let faulty = Arc::new(FaultStore::new(w.mem.clone()));
    let plan = faulty.plan();
    let h = w.holder_on(faulty, who("a", 10), &a);
    let counted = Arc::new(CountingStore::new(w.mem.clone()));
    let gate = LeasedStore::new(counted.clone(), h.clone());
    plan.fail_matching(&[Op::PutIfMatch, Op::Head, Op::Get], LEASE_KEY, u32::MAX);

    w.clock.advance(TTL / 3);
    assert_eq!(h.renew_once(), Renewal::Retry);
    gate.put("data/00/a", b"x").unwrap();
    // Validity is TTL − margin from the acquisition: 24 s.
    w.clock
        .advance(TTL - h.margin() - TTL / 3 - Duration::from_millis(1));
    gate.put("data/00/b", b"x").unwrap();
    w.clock.advance(Duration::from_millis(1));
    assert_eq!(h.renew_once(), Renewal::Retry);
    let before = counted.counts();
    assert!(gate.put("data/00/c", b"x").is_err());
    assert!(
        gate.put_if_absent("meta/journal/0000000000000001", b"x")
            .is_err()
    );
    assert!(gate.delete("data/00/a").is_err());
    assert_eq!(
        counted.counts().puts(),
        before.puts(),
        "no PUT after the deadline"
    );
    assert_eq!(
        counted.counts().delete,
        before.delete,
        "no DELETE after the deadline"
    );
    assert!(gate.get("data/00/a").is_ok(), "reads still pass");
    assert!(!h.is_fenced());

    plan.heal();
    assert_eq!(h.renew_once(), Renewal::Renewed);
    gate.put("data/00/c", b"x").unwrap();
}

#[test]
fn lapse_then_takeover_fences_when_the_store_returns() {
    let w = world();
    let a = w.try_acquire(who("a", 10), false).unwrap();
    let faulty = Arc::new(FaultStore::new(w.mem.clone()));
    let plan = faulty.plan();
    let h = w.holder_on(faulty, who("a", 10), &a);
    let gate = LeasedStore::new(Arc::new(w.mem.clone()), h.clone());
    plan.fail_matching(&[Op::PutIfMatch], LEASE_KEY, u32::MAX);
    w.clock.advance(TTL + Duration::from_secs(1));
    assert_eq!(h.renew_once(), Renewal::Retry);
    // B sees an expired lease that does not change for a TTL: takes it.
    assert!(w.try_acquire(who("b", 20), false).unwrap().took_over);
    plan.heal();
    assert_eq!(h.renew_once(), Renewal::Fenced);
    assert!(gate.put("data/00/x", b"x").is_err());
    assert_eq!(w.lease().unwrap().host, "b");
}

#[test]
fn a_lost_renewal_answer_is_read_back_not_mistaken_for_a_takeover() {
    let w = world();
    let a = w.try_acquire(who("a", 10), false).unwrap();
    let faulty = Arc::new(FaultStore::new(w.mem.clone()));
    faulty.plan().lose_answer_on_next(Op::PutIfMatch);
    let h = w.holder_on(faulty, who("a", 10), &a);
    assert_eq!(h.renew_once(), Renewal::Retry, "answer lost");
    assert_eq!(h.renew_once(), Renewal::Retry, "412, but the lease is ours");
    assert_eq!(h.renew_once(), Renewal::Renewed);
    assert!(!h.is_fenced());
}

#[test]
fn a_lost_create_answer_is_ours() {
    let w = world();
    let faulty = FaultStore::new(w.mem.clone());
    faulty.plan().lose_answer_on_next(Op::PutIfAbsent);
    // The first create lands and reports failure: that is a store error.
    assert!(
        w.try_acquire_on(&faulty, who("a", 10), &live, false)
            .is_err()
    );
    // (A retry by the user then sees a live same-host holder: refused.)
    assert!(matches!(
        w.try_acquire_on(&faulty, who("a", 11), &live, false),
        Err(LeaseError::Held { .. })
    ));
}

#[test]
fn release_deletes_only_our_own_lease() {
    let w = world();
    let a = w.try_acquire(who("a", 10), false).unwrap();
    let h = w.holder(who("a", 10), &a);
    assert!(h.release().unwrap());
    assert!(w.mem.raw(LEASE_KEY).is_none());

    let a = w.try_acquire(who("a", 10), false).unwrap();
    let h = w.holder(who("a", 10), &a);
    let b = w.try_acquire(who("b", 20), true).unwrap();
    assert!(!h.release().unwrap());
    assert_eq!(w.lease().unwrap().writer, b.writer);

    // A lapsed holder leaves the lease alone too: a contender may be
    // taking it over right now.
    let hb = w.holder(who("b", 20), &b);
    w.clock.advance(TTL);
    assert!(!hb.release().unwrap());
    assert!(w.mem.raw(LEASE_KEY).is_some());
}

#[test]
fn a_tampered_lease_is_refused_as_unreadable_unless_forced() {
    let w = world();
    w.try_acquire(who("a", 10), false).unwrap();
    let mut body = w.mem.raw(LEASE_KEY).unwrap();
    body[30] ^= 1;
    w.mem.overwrite_raw(LEASE_KEY, &body);
    let e = w.try_acquire(who("b", 20), false).unwrap_err();
    assert!(matches!(e, LeaseError::Unreadable(_)), "{e}");
    assert!(e.to_string().contains("--force-takeover"));
    // Another volume's lease does not open either.
    let b = w.try_acquire(who("b", 20), true).unwrap();
    assert!(b.took_over);
    assert_eq!(w.lease().unwrap().host, "b");
}

#[test]
fn renewal_thread_keeps_the_lease_and_stops_on_release() {
    let w = world();
    let clock = Arc::new(SystemClock);
    let ttl = Duration::from_millis(300);
    let a = Contender {
        store: &w.mem,
        key: &w.keys.lease,
        volume_id: &VID,
        me: who("a", 10),
        clock: &*clock,
        alive: &live,
        ttl,
        force: false,
    }
    .acquire()
    .unwrap();
    let h = Holder::new(
        Arc::new(w.mem.clone()),
        w.lease_key(),
        VID,
        clock,
        who("a", 10),
        &a,
    );
    h.start().unwrap();
    let first = w.mem.head(LEASE_KEY).unwrap().unwrap().etag;
    std::thread::sleep(ttl * 2);
    assert!(h.may_write().is_ok(), "renewed in time");
    assert_ne!(w.mem.head(LEASE_KEY).unwrap().unwrap().etag, first);
    assert!(h.release().unwrap());
    assert!(w.mem.raw(LEASE_KEY).is_none());
}
