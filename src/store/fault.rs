//! Fault-injecting decorator: a store that fails when a test says so.
//!
//! A [`FaultPlan`] decides each call before it reaches the inner store.
//! The plan is a shared handle: a test keeps `fault.plan()` and changes it
//! after moving the store into a filesystem. Faults are
//! [`StoreError::Injected`] naming the op and key.
//!
//! Rules, checked in this order for every call:
//! 1. Crash: after `fail_after_mutations(n)`, the next `n` mutating calls
//!    (put, put_if_absent, put_if_match, delete) pass and every later one fails, until
//!    `heal`: the process is dead from that point, so nothing more reaches
//!    the store. Each mutating call spends one of the `n` even if a later
//!    rule fails it. Reads keep working, so a dying filesystem can still
//!    be inspected; the test remounts over the inner store to see what
//!    survived.
//! 2. Transient faults: `fail_matching(ops, prefix, times)` fails the next
//!    `times` calls of those ops whose key (for `list`, the prefix listed)
//!    starts with `prefix`. Rules accumulate; the first one that matches
//!    spends a failure.
//!    `deny_matching` is the same with a permanent refusal
//!    ([`StoreError::AccessDenied`]) instead of a transient fault.
//! 3. Lost answers: `lose_answer_on_next(op)` lets the next call of that op
//!    run on the inner store and then returns `Injected` anyway, the
//!    "PUT succeeded but the reply was lost" case that create-only commits
//!    must resolve by reading back. If the inner call fails, its own error
//!    is returned and the lost answer is still spent.
//!
//! `heal` clears all three; the count of injected faults survives it.
//!
//! A test can also run steps of its own at each call, outside the plan's
//! lock: [`FaultPlan::before_each`] (hold a call at a gate, then let the
//! rules above decide it) and [`FaultPlan::after_each`] (change the inner
//! store once the call has read it, racing the caller).

use std::ops::Range;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;

use super::{ObjectInfo, ObjectStore, RangeSink, StoreError, StoreResult};

/// The kinds of store call, as named in faults and plans.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Get,
    GetRange,
    Put,
    PutIfAbsent,
    PutIfMatch,
    Delete,
    List,
    Head,
}

impl Op {
    /// Calls that change the store, the ones a crash cuts off.
    pub fn is_mutation(self) -> bool {
        match self {
            Op::Put | Op::PutIfAbsent | Op::PutIfMatch | Op::Delete => true,
            Op::Get | Op::GetRange | Op::List | Op::Head => false,
        }
    }
}

/// A shared, changeable plan of faults; clones are handles to one plan.
#[derive(Clone, Debug, Default)]
pub struct FaultPlan {
    state: Arc<Mutex<PlanState>>,
}

#[derive(Debug, Default)]
struct PlanState {
    /// Mutating calls still allowed before the simulated crash; `None`
    /// when no crash is planned.
    mutations_left: Option<u64>,
    /// A mutating call has been refused by the crash.
    crashed: bool,
    rules: Vec<Rule>,
    /// Pending lost answers: (op, key prefix), each spent by one call.
    lost_answers: Vec<(Op, String)>,
    injected: u64,
    before: Option<Hook>,
    after: Option<Hook>,
}

/// A test's step at a call: its op and key (for `list`, the prefix).
#[derive(Clone)]
struct Hook(Arc<HookFn>);

type HookFn = dyn Fn(Op, &str) + Send + Sync;

impl std::fmt::Debug for Hook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Hook")
    }
}

#[derive(Debug)]
struct Rule {
    ops: Vec<Op>,
    key_prefix: String,
    times_left: u32,
    /// Refuse for good (access denied) instead of failing transiently.
    deny: bool,
}

#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Pass,
    Fail,
    Deny,
    LoseAnswer,
}

impl FaultPlan {
    pub fn new() -> FaultPlan {
        FaultPlan::default()
    }

    /// Let `n` more mutating calls through, then fail every one after them
    /// (`n = 0`: the next one already fails). Replaces an earlier crash.
    pub fn fail_after_mutations(&self, n: u64) {
        self.state().mutations_left = Some(n);
    }

    /// Fail the next `times` calls of `ops` whose key starts with
    /// `key_prefix` (`""` matches all); `u32::MAX` is "until healed".
    pub fn fail_matching(&self, ops: &[Op], key_prefix: &str, times: u32) {
        self.add_rule(ops, key_prefix, times, false);
    }

    /// As [`FaultPlan::fail_matching`], but each of those calls is refused
    /// for good ([`StoreError::AccessDenied`]), as a changed bucket policy
    /// would.
    pub fn deny_matching(&self, ops: &[Op], key_prefix: &str, times: u32) {
        self.add_rule(ops, key_prefix, times, true);
    }

    fn add_rule(&self, ops: &[Op], key_prefix: &str, times: u32, deny: bool) {
        let rule = Rule {
            ops: ops.to_vec(),
            key_prefix: key_prefix.into(),
            times_left: times,
            deny,
        };
        self.state().rules.push(rule);
    }

    /// Perform the next call of `op`, then report it failed.
    pub fn lose_answer_on_next(&self, op: Op) {
        self.lose_answer_on_next_matching(op, "");
    }

    /// As [`FaultPlan::lose_answer_on_next`], for the next call of `op`
    /// whose key starts with `key_prefix`.
    pub fn lose_answer_on_next_matching(&self, op: Op, key_prefix: &str) {
        self.state().lost_answers.push((op, key_prefix.into()));
    }

    /// Runs `hook` before each call, ahead of the rules: it may block.
    /// Replaces an earlier one; `heal` keeps it.
    pub fn before_each(&self, hook: impl Fn(Op, &str) + Send + Sync + 'static) {
        self.state().before = Some(Hook(Arc::new(hook)));
    }

    /// Runs `hook` after each call that reached the inner store, before
    /// its answer returns. Replaces an earlier one; `heal` keeps it.
    pub fn after_each(&self, hook: impl Fn(Op, &str) + Send + Sync + 'static) {
        self.state().after = Some(Hook(Arc::new(hook)));
    }

    fn hooks(&self) -> (Option<Hook>, Option<Hook>) {
        let state = self.state();
        (state.before.clone(), state.after.clone())
    }

    /// Clear every planned fault.
    pub fn heal(&self) {
        let mut state = self.state();
        state.mutations_left = None;
        state.crashed = false;
        state.rules.clear();
        state.lost_answers.clear();
    }

    /// True once the crash has refused a mutating call (until `heal`):
    /// tells a crash sweep whether the workload reached the crash point.
    pub fn crashed(&self) -> bool {
        self.state().crashed
    }

    /// Faults injected so far, lost answers included.
    pub fn injected(&self) -> u64 {
        self.state().injected
    }

    fn decide(&self, op: Op, key: &str) -> Verdict {
        let mut state = self.state();
        let verdict = state.verdict(op, key);
        if verdict != Verdict::Pass {
            state.injected += 1;
        }
        verdict
    }

    /// Plan changes are single assignments or pushes, consistent even if a
    /// panicking test thread poisoned the lock.
    fn state(&self) -> MutexGuard<'_, PlanState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl PlanState {
    fn verdict(&mut self, op: Op, key: &str) -> Verdict {
        if op.is_mutation() {
            match &mut self.mutations_left {
                Some(0) => {
                    self.crashed = true;
                    return Verdict::Fail;
                }
                Some(left) => *left -= 1,
                None => {}
            }
        }
        let rule = self
            .rules
            .iter_mut()
            .find(|r| r.times_left > 0 && r.ops.contains(&op) && key.starts_with(&r.key_prefix));
        if let Some(rule) = rule {
            rule.times_left -= 1;
            return if rule.deny {
                Verdict::Deny
            } else {
                Verdict::Fail
            };
        }
        let lost = self
            .lost_answers
            .iter()
            .position(|(o, p)| *o == op && key.starts_with(p));
        if let Some(i) = lost {
            self.lost_answers.remove(i);
            return Verdict::LoseAnswer;
        }
        Verdict::Pass
    }
}

#[derive(Clone, Debug)]
pub struct FaultStore<S> {
    inner: S,
    plan: FaultPlan,
}

impl<S: ObjectStore> FaultStore<S> {
    /// Wraps `inner` with an empty plan: every call passes until told.
    pub fn new(inner: S) -> FaultStore<S> {
        FaultStore::with_plan(inner, FaultPlan::new())
    }

    pub fn with_plan(inner: S, plan: FaultPlan) -> FaultStore<S> {
        FaultStore { inner, plan }
    }

    /// A handle to this store's plan.
    pub fn plan(&self) -> FaultPlan {
        self.plan.clone()
    }

    pub fn inner(&self) -> &S {
        &self.inner
    }

    fn call<T>(&self, op: Op, key: &str, f: impl FnOnce(&S) -> StoreResult<T>) -> StoreResult<T> {
        let injected = || StoreError::Injected {
            op,
            key: key.into(),
        };
        let (before, after) = self.plan.hooks();
        if let Some(Hook(hook)) = before {
            hook(op, key);
        }
        let reached = |answer: StoreResult<T>| {
            if let Some(Hook(hook)) = &after {
                hook(op, key);
            }
            answer
        };
        match self.plan.decide(op, key) {
            Verdict::Pass => reached(f(&self.inner)),
            Verdict::Fail => Err(injected()),
            Verdict::Deny => Err(StoreError::AccessDenied {
                key: key.into(),
                reason: format!("injected refusal of {op:?}"),
            }),
            Verdict::LoseAnswer => reached(f(&self.inner)).and_then(|_| Err(injected())),
        }
    }
}

impl<S: ObjectStore> ObjectStore for FaultStore<S> {
    fn get(&self, key: &str) -> StoreResult<Vec<u8>> {
        self.call(Op::Get, key, |s| s.get(key))
    }
    fn get_max(&self, key: &str, max: u64) -> StoreResult<Vec<u8>> {
        self.call(Op::Get, key, |s| s.get_max(key, max))
    }
    fn get_range(&self, key: &str, range: Range<u64>) -> StoreResult<Vec<u8>> {
        self.call(Op::GetRange, key, |s| s.get_range(key, range))
    }
    fn get_range_to(&self, key: &str, range: Range<u64>, sink: &mut RangeSink) -> StoreResult<()> {
        self.call(Op::GetRange, key, |s| s.get_range_to(key, range, sink))
    }
    fn get_range_fresh(&self, key: &str, range: Range<u64>) -> StoreResult<Vec<u8>> {
        self.call(Op::GetRange, key, |s| s.get_range_fresh(key, range))
    }
    fn forget(&self, key: &str, range: Range<u64>) -> bool {
        self.inner.forget(key, range)
    }
    fn put(&self, key: &str, body: &[u8]) -> StoreResult<()> {
        self.call(Op::Put, key, |s| s.put(key, body))
    }
    fn put_shared(&self, key: &str, body: &Bytes) -> StoreResult<()> {
        self.call(Op::Put, key, |s| s.put_shared(key, body))
    }
    fn put_if_absent(&self, key: &str, body: &[u8]) -> StoreResult<()> {
        self.call(Op::PutIfAbsent, key, |s| s.put_if_absent(key, body))
    }
    fn put_if_match(&self, key: &str, body: &[u8], etag: &str) -> StoreResult<()> {
        self.call(Op::PutIfMatch, key, |s| s.put_if_match(key, body, etag))
    }
    fn delete(&self, key: &str) -> StoreResult<()> {
        self.call(Op::Delete, key, |s| s.delete(key))
    }
    fn list(&self, prefix: &str) -> StoreResult<Vec<ObjectInfo>> {
        self.call(Op::List, prefix, |s| s.list(prefix))
    }
    fn conditional_writes(&self) -> bool {
        self.inner.conditional_writes()
    }
    fn head(&self, key: &str) -> StoreResult<Option<ObjectInfo>> {
        self.call(Op::Head, key, |s| s.head(key))
    }

    fn space(&self) -> Option<(u64, u64)> {
        self.inner.space()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{MemoryStore, conformance};

    fn fresh() -> (MemoryStore, FaultStore<MemoryStore>, FaultPlan) {
        let mem = MemoryStore::new();
        let fault = FaultStore::new(mem.clone());
        let plan = fault.plan();
        (mem, fault, plan)
    }

    fn is_injected(r: StoreResult<impl std::fmt::Debug>, want_op: Op, want_key: &str) -> bool {
        matches!(r, Err(StoreError::Injected { op, ref key }) if op == want_op && key == want_key)
    }

    #[test]
    fn an_empty_plan_conforms() {
        let (_, fault, plan) = fresh();
        conformance::check_all(&fault);
        assert_eq!(plan.injected(), 0);
    }

    #[test]
    fn crash_lets_n_mutations_through_then_fails_all_later_ones() {
        let (mem, fault, plan) = fresh();
        let store: Box<dyn ObjectStore> = Box::new(fault);
        plan.fail_after_mutations(2);
        store.put("a", b"1").unwrap();
        store.get("a").unwrap();
        store.delete("a").unwrap();
        assert!(!plan.crashed());
        assert!(is_injected(
            store.put_if_absent("b", b"2"),
            Op::PutIfAbsent,
            "b"
        ));
        assert!(plan.crashed());
        assert!(is_injected(store.put("c", b"3"), Op::Put, "c"));
        assert!(is_injected(store.delete("a"), Op::Delete, "a"));
        assert!(
            mem.keys().is_empty(),
            "nothing after the crash reached the store"
        );
        assert!(store.list("").unwrap().is_empty(), "reads still work");
        assert_eq!(plan.injected(), 3);
        plan.heal();
        store.put("d", b"4").unwrap();
        assert_eq!(mem.keys(), ["d"]);
    }

    #[test]
    fn crash_at_zero_fails_the_very_next_mutation() {
        let (mem, fault, plan) = fresh();
        plan.fail_after_mutations(0);
        assert!(is_injected(fault.put("a", b"1"), Op::Put, "a"));
        assert!(mem.keys().is_empty());
    }

    #[test]
    fn matching_faults_are_transient_and_targeted() {
        let (mem, fault, plan) = fresh();
        mem.put("data/ab/p", b"pack").unwrap();
        mem.put("volume", b"v").unwrap();
        plan.fail_matching(&[Op::Get, Op::GetRange], "data/", 2);
        assert!(is_injected(
            fault.get_range("data/ab/p", 0..1),
            Op::GetRange,
            "data/ab/p"
        ));
        assert_eq!(fault.get("volume").unwrap(), b"v", "other prefix passes");
        assert!(
            fault.head("data/ab/p").unwrap().is_some(),
            "other op passes"
        );
        assert!(is_injected(fault.get("data/ab/p"), Op::Get, "data/ab/p"));
        assert_eq!(fault.get("data/ab/p").unwrap(), b"pack", "spent after two");
        plan.fail_matching(&[Op::List], "meta/", 1);
        assert!(is_injected(
            fault.list("meta/journal/"),
            Op::List,
            "meta/journal/"
        ));
        assert!(fault.list("meta/journal/").unwrap().is_empty());
        assert_eq!(plan.injected(), 3);
    }

    #[test]
    fn failed_puts_do_not_reach_the_store() {
        let (mem, fault, plan) = fresh();
        plan.fail_matching(&[Op::Put, Op::PutIfAbsent], "", 2);
        assert!(fault.put("a", b"1").is_err());
        assert!(fault.put_if_absent("b", b"2").is_err());
        assert!(mem.keys().is_empty());
        fault.put_if_absent("b", b"2").unwrap();
        assert_eq!(mem.keys(), ["b"]);
    }

    #[test]
    fn lost_answer_performs_the_call_then_fails_it() {
        let (mem, fault, plan) = fresh();
        plan.lose_answer_on_next(Op::PutIfAbsent);
        assert!(is_injected(
            fault.put_if_absent("meta/journal/01", b"mine"),
            Op::PutIfAbsent,
            "meta/journal/01"
        ));
        assert_eq!(
            mem.get("meta/journal/01").unwrap(),
            b"mine",
            "the write happened"
        );
        // The retry is refused; reading back shows whose object it is.
        assert!(matches!(
            fault.put_if_absent("meta/journal/01", b"mine"),
            Err(StoreError::AlreadyExists { .. })
        ));
        assert_eq!(fault.get("meta/journal/01").unwrap(), b"mine");
    }

    #[test]
    fn lost_answer_can_target_a_prefix_and_reports_real_errors() {
        let (mem, fault, plan) = fresh();
        plan.lose_answer_on_next_matching(Op::PutIfAbsent, "meta/journal/");
        fault.put_if_absent("lease", b"l").unwrap();
        mem.put("meta/journal/02", b"theirs").unwrap();
        // The inner call fails on its own: that error, not Injected.
        assert!(matches!(
            fault.put_if_absent("meta/journal/02", b"mine"),
            Err(StoreError::AlreadyExists { .. })
        ));
        fault.put_if_absent("meta/journal/03", b"mine").unwrap();
        assert_eq!(plan.injected(), 1);
    }

    #[test]
    fn heal_clears_every_kind_of_fault() {
        let (_, fault, plan) = fresh();
        plan.fail_after_mutations(0);
        plan.fail_matching(&[Op::Get, Op::Head], "", u32::MAX);
        plan.lose_answer_on_next(Op::List);
        plan.heal();
        fault.put("a", b"1").unwrap();
        fault.get("a").unwrap();
        fault.head("a").unwrap();
        assert_eq!(fault.list("").unwrap().len(), 1);
        assert!(!plan.crashed());
        assert_eq!(plan.injected(), 0);
    }

    #[test]
    fn the_plan_handle_outlives_the_store_it_was_moved_with() {
        let plan = FaultPlan::new();
        let mem = MemoryStore::new();
        let store: std::sync::Arc<dyn ObjectStore> =
            std::sync::Arc::new(FaultStore::with_plan(mem.clone(), plan.clone()));
        store.put("a", b"1").unwrap();
        plan.fail_matching(&[Op::Get], "a", 1);
        assert!(store.get("a").is_err());
        assert!(store.get("a").is_ok());
        assert!(Op::Delete.is_mutation() && !Op::Head.is_mutation());
    }

    #[test]
    fn hooks_run_before_the_rules_and_after_the_inner_call() {
        let (mem, fault, plan) = fresh();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        let before_mem = mem.clone();
        plan.before_each(move |op, key| {
            log.lock().unwrap().push(format!("{op:?} {key}"));
            if op == Op::Get {
                before_mem.put(key, b"made before").unwrap();
            }
        });
        let after_mem = mem.clone();
        plan.after_each(move |op, prefix| {
            if op == Op::List {
                after_mem.put(&format!("{prefix}late"), b"").unwrap();
            }
        });
        assert_eq!(fault.get("g").unwrap(), b"made before");
        assert_eq!(fault.list("p/").unwrap().len(), 0, "listed before the hook");
        assert_eq!(fault.list("p/").unwrap().len(), 1);
        plan.fail_matching(&[Op::Put], "", 1);
        assert!(is_injected(fault.put("q", b"1"), Op::Put, "q"));
        assert!(
            mem.list("q").unwrap().is_empty(),
            "the failed put never reached the store"
        );
        assert_eq!(
            *seen.lock().unwrap(),
            ["Get g", "List p/", "List p/", "Put q"],
            "the before-hook runs for failed calls too"
        );
    }
}
