//! The deadline of the store call under way on this thread.
//!
//! One deadline bounds a whole call, retries included ([`RetryingStore`]
//! sets it); a backend bounds each attempt by what is left of it, so an
//! attempt that hangs (a stalled server) ends when the call's deadline
//! does, not a full attempt timeout later. Deadlines nest: an inner one
//! never outlives the outer.
//!
//! [`RetryingStore`]: super::RetryingStore

use std::cell::Cell;
use std::time::{Duration, Instant};

thread_local! {
    static DEADLINE: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// Runs `f` with store calls on this thread bounded by `deadline`.
pub fn within<T>(deadline: Instant, f: impl FnOnce() -> T) -> T {
    let outer = DEADLINE.get();
    let inner = outer.map_or(deadline, |o| o.min(deadline));
    DEADLINE.set(Some(inner));
    // Restored on unwind too, so a panicking call leaves no deadline behind.
    struct Restore(Option<Instant>);
    impl Drop for Restore {
        fn drop(&mut self) {
            DEADLINE.set(self.0);
        }
    }
    let _restore = Restore(outer);
    f()
}

/// Time left before this thread's deadline (`None`: no deadline).
pub fn remaining() -> Option<Duration> {
    DEADLINE
        .get()
        .map(|d| d.saturating_duration_since(Instant::now()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_deadlines_take_the_earlier_and_restore() {
        assert_eq!(remaining(), None);
        let far = Instant::now() + Duration::from_secs(100);
        let near = Instant::now() + Duration::from_secs(1);
        within(near, || {
            within(far, || {
                assert!(remaining().unwrap() <= Duration::from_secs(1));
            });
            assert!(remaining().unwrap() <= Duration::from_secs(1));
        });
        assert_eq!(remaining(), None);
        let _ = std::panic::catch_unwind(|| within(near, || panic!("boom")));
        assert_eq!(remaining(), None);
    }
}
