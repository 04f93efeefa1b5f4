//! The one retry policy: a decorator that retries transient store failures
//! with jittered exponential backoff under a single deadline.
//!
//! Rules:
//! - Only [`StoreError::is_transient`] failures are retried. A refusal
//!   (access denied), a missing object or a lost conditional race is the
//!   store's answer and returns at once.
//! - One deadline per call, counted from its first attempt; a retry whose
//!   backoff would end past the deadline is not started, and each attempt
//!   is cut off when the deadline passes (`deadline::within`: a backend
//!   bounds its attempt by what is left). Backends make single attempts
//!   and nothing above this decorator retries, so deadlines never stack.
//! - Backoff: full jitter, a random sleep in `0..min(cap, base·2ⁿ)`, so
//!   many clients recovering from one outage do not retry in step.
//! - A write whose attempt failed transiently may still have been applied
//!   (the answer was lost). When a retry of a create-only or conditional
//!   write is then refused, [`landed`] reads the object back: our own
//!   bytes mean our write landed. Every sealed object carries a random
//!   nonce, so another writer's object never equals ours.
//! - Logs name the call and key, never a body: the first retry, every
//!   tenth after it, and the give-up.

use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::Rng;

use super::{ObjectInfo, ObjectStore, RangeSink, StoreError, StoreResult, deadline};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// How long one call may keep retrying, from its first attempt.
    pub deadline: Duration,
    /// First backoff ceiling; doubles per retry up to `cap`.
    pub base: Duration,
    pub cap: Duration,
}

impl Default for RetryPolicy {
    /// Rides out a store outage of a few minutes.
    fn default() -> RetryPolicy {
        RetryPolicy::with_deadline(Duration::from_secs(300))
    }
}

/// What [`RetryPolicy::run`] ended with.
pub struct Outcome<T> {
    pub result: StoreResult<T>,
    /// Some attempt failed transiently before the last one: a write may
    /// have landed even if the last attempt says otherwise.
    pub retried: bool,
}

impl RetryPolicy {
    pub fn with_deadline(deadline: Duration) -> RetryPolicy {
        RetryPolicy {
            deadline,
            base: Duration::from_millis(100),
            cap: Duration::from_secs(5),
        }
    }

    /// The sleep before retry number `n` (0-based).
    pub fn backoff(&self, n: u32) -> Duration {
        let ceiling = self
            .base
            .saturating_mul(1u32.checked_shl(n.min(16)).unwrap_or(u32::MAX))
            .min(self.cap);
        ceiling.mul_f64(rand::thread_rng().r#gen::<f64>())
    }

    /// Runs `attempt` until it succeeds, fails for good, or the deadline
    /// would pass.
    pub fn run<T>(
        &self,
        what: &str,
        key: &str,
        mut attempt: impl FnMut() -> StoreResult<T>,
    ) -> Outcome<T> {
        let start = Instant::now();
        deadline::within(start + self.deadline, || {
            self.retry(what, key, start, &mut attempt)
        })
    }

    fn retry<T>(
        &self,
        what: &str,
        key: &str,
        start: Instant,
        attempt: &mut impl FnMut() -> StoreResult<T>,
    ) -> Outcome<T> {
        let mut n = 0u32;
        loop {
            let err = match attempt() {
                Ok(v) => {
                    if n > 0 {
                        log::info!("{what} {key}: succeeded after {n} retries");
                    }
                    return Outcome {
                        result: Ok(v),
                        retried: n > 0,
                    };
                }
                Err(e) => e,
            };
            if !err.is_transient() {
                return Outcome {
                    result: Err(err),
                    retried: n > 0,
                };
            }
            let sleep = self.backoff(n);
            if start.elapsed() + sleep >= self.deadline {
                // The caller reports the failure itself, in one line.
                log::info!(
                    "{what} {key}: giving up after {} attempts in {:.1}s: {err}",
                    n + 1,
                    start.elapsed().as_secs_f64(),
                );
                return Outcome {
                    result: Err(err),
                    retried: n > 0,
                };
            }
            if n % 10 == 0 {
                log::warn!(
                    "{what} {key}: {err} (attempt {}); retrying for up to {}s",
                    n + 1,
                    self.deadline.as_secs()
                );
            }
            std::thread::sleep(sleep);
            n += 1;
        }
    }
}

/// After a write that may have landed was refused on retry: does the
/// object hold exactly `body`?
pub fn landed(store: &dyn ObjectStore, key: &str, body: &[u8]) -> bool {
    match store.get_max(key, body.len() as u64) {
        Ok(now) if now == body => {
            log::info!(
                "put {key}: an earlier attempt's answer was lost; the object holds our write"
            );
            true
        }
        Ok(_) | Err(_) => false,
    }
}

/// Any store, with every call retried under one [`RetryPolicy`].
pub struct RetryingStore {
    inner: Arc<dyn ObjectStore>,
    policy: RetryPolicy,
}

impl RetryingStore {
    pub fn new(inner: Arc<dyn ObjectStore>, policy: RetryPolicy) -> RetryingStore {
        RetryingStore { inner, policy }
    }

    pub fn policy(&self) -> RetryPolicy {
        self.policy
    }

    fn run<T>(&self, what: &str, key: &str, f: impl FnMut() -> StoreResult<T>) -> StoreResult<T> {
        self.policy.run(what, key, f).result
    }

    /// A create-only or conditional write, with the lost-answer check.
    fn write_once(
        &self,
        what: &str,
        key: &str,
        body: &[u8],
        f: impl FnMut() -> StoreResult<()>,
    ) -> StoreResult<()> {
        let out = self.policy.run(what, key, f);
        match out.result {
            Err(StoreError::AlreadyExists { .. } | StoreError::PreconditionFailed { .. })
                if out.retried && landed(self, key, body) =>
            {
                Ok(())
            }
            other => other,
        }
    }
}

impl ObjectStore for RetryingStore {
    fn get(&self, key: &str) -> StoreResult<Vec<u8>> {
        self.run("get", key, || self.inner.get(key))
    }
    fn get_max(&self, key: &str, max: u64) -> StoreResult<Vec<u8>> {
        self.run("get", key, || self.inner.get_max(key, max))
    }
    fn get_range(&self, key: &str, range: Range<u64>) -> StoreResult<Vec<u8>> {
        self.run("get", key, || self.inner.get_range(key, range.clone()))
    }
    fn get_range_to(&self, key: &str, range: Range<u64>, sink: &mut RangeSink) -> StoreResult<()> {
        self.run("get", key, || {
            self.inner.get_range_to(key, range.clone(), &mut *sink)
        })
    }
    fn put(&self, key: &str, body: &[u8]) -> StoreResult<()> {
        self.run("put", key, || self.inner.put(key, body))
    }
    fn put_shared(&self, key: &str, body: &Bytes) -> StoreResult<()> {
        self.run("put", key, || self.inner.put_shared(key, body))
    }
    fn put_if_absent(&self, key: &str, body: &[u8]) -> StoreResult<()> {
        self.write_once("put", key, body, || self.inner.put_if_absent(key, body))
    }
    fn put_if_match(&self, key: &str, body: &[u8], etag: &str) -> StoreResult<()> {
        self.write_once("put", key, body, || {
            self.inner.put_if_match(key, body, etag)
        })
    }
    fn delete(&self, key: &str) -> StoreResult<()> {
        self.run("delete", key, || self.inner.delete(key))
    }
    fn delete_many(&self, keys: &[String]) -> StoreResult<()> {
        let first = keys.first().map_or("", String::as_str);
        // Deletes are idempotent: a retry repeats the whole batch.
        self.run("delete", first, || self.inner.delete_many(keys))
    }
    fn list(&self, prefix: &str) -> StoreResult<Vec<ObjectInfo>> {
        self.run("list", prefix, || self.inner.list(prefix))
    }
    fn head(&self, key: &str) -> StoreResult<Option<ObjectInfo>> {
        self.run("head", key, || self.inner.head(key))
    }
    fn conditional_writes(&self) -> bool {
        self.inner.conditional_writes()
    }
    fn space(&self) -> Option<(u64, u64)> {
        self.inner.space()
    }
    fn forget(&self, key: &str, range: Range<u64>) -> bool {
        self.inner.forget(key, range)
    }
    fn get_range_fresh(&self, key: &str, range: Range<u64>) -> StoreResult<Vec<u8>> {
        self.run("get", key, || {
            self.inner.get_range_fresh(key, range.clone())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{FaultStore, MemoryStore, Op};

    fn quick() -> RetryPolicy {
        RetryPolicy {
            deadline: Duration::from_secs(2),
            base: Duration::from_millis(1),
            cap: Duration::from_millis(5),
        }
    }

    #[test]
    fn backoff_grows_to_the_cap_with_jitter() {
        let p = RetryPolicy::default();
        for n in 0..40 {
            let ceiling = p.base.saturating_mul(1 << n.min(16)).min(p.cap);
            for _ in 0..20 {
                assert!(p.backoff(n) <= ceiling, "{n}");
            }
        }
        let late: Vec<Duration> = (0..50).map(|_| p.backoff(30)).collect();
        assert!(late.iter().any(|d| *d > p.cap / 2));
        assert!(late.iter().any(|d| *d < p.cap / 2));
    }

    #[test]
    fn transient_faults_are_retried_permanent_ones_are_not() {
        let faulty = FaultStore::new(MemoryStore::new());
        let plan = faulty.plan();
        let store = RetryingStore::new(Arc::new(faulty), quick());
        plan.fail_matching(&[Op::Put], "", 3);
        store.put("a", b"1").unwrap();
        assert_eq!(plan.injected(), 3);

        plan.deny_matching(&[Op::Get], "", 1);
        let err = store.get("a").unwrap_err();
        assert!(matches!(err, StoreError::AccessDenied { .. }), "{err}");
        assert_eq!(store.get("a").unwrap(), b"1", "the denial was spent once");
        assert!(matches!(
            store.get("missing"),
            Err(StoreError::NotFound { .. })
        ));
    }

    #[test]
    fn the_deadline_bounds_an_outage() {
        let faulty = FaultStore::new(MemoryStore::new());
        let plan = faulty.plan();
        let store = RetryingStore::new(Arc::new(faulty), quick());
        plan.fail_matching(&[Op::Get], "", u32::MAX);
        let start = Instant::now();
        let err = store.get("a").unwrap_err();
        assert!(err.is_transient(), "{err}");
        assert!(start.elapsed() < Duration::from_secs(3));
        assert!(plan.injected() > 10, "retried until the deadline");
    }

    #[test]
    fn a_lost_answer_is_resolved_by_reading_back() {
        let faulty = FaultStore::new(MemoryStore::new());
        let plan = faulty.plan();
        let store = RetryingStore::new(Arc::new(faulty), quick());
        plan.lose_answer_on_next(Op::PutIfAbsent);
        store.put_if_absent("seg", b"ours").unwrap();
        assert_eq!(store.get("seg").unwrap(), b"ours");

        // Someone else's object is still theirs, lost answer or not.
        store.put("other", b"theirs").unwrap();
        plan.fail_matching(&[Op::PutIfAbsent], "", 1);
        assert!(matches!(
            store.put_if_absent("other", b"ours"),
            Err(StoreError::AlreadyExists { .. })
        ));

        let etag = store.head("other").unwrap().unwrap().etag;
        plan.lose_answer_on_next(Op::PutIfMatch);
        store.put_if_match("other", b"mine now", &etag).unwrap();
        assert_eq!(store.get("other").unwrap(), b"mine now");
    }
}
