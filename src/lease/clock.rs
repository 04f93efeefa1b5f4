//! The clocks a lease is judged by, behind a trait so tests run a TTL in
//! microseconds.
//!
//! `now` is CLOCK_BOOTTIME: monotonic and, unlike `Instant`
//! (CLOCK_MONOTONIC), it keeps counting while the machine is suspended, so
//! a holder that slept through its TTL knows it. It is system-wide, so a
//! reading taken before `fork` stays meaningful in the child. Wall time is
//! used only to print "until T" and to refuse at once when another
//! holder's wall-clock expiry is plainly in the future.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

pub trait Clock: Send + Sync {
    /// Time since boot, counting suspend.
    fn now(&self) -> Duration;
    fn wall(&self) -> SystemTime;
    fn sleep(&self, d: Duration);
}

/// CLOCK_BOOTTIME, the system's wall clock and real sleeps.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Duration {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `ts` is a valid out pointer; CLOCK_BOOTTIME exists on
        // every Linux sealedfs supports (2.6.39+).
        let rc = unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
        assert_eq!(rc, 0, "clock_gettime(CLOCK_BOOTTIME) failed");
        Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
    }

    fn wall(&self) -> SystemTime {
        SystemTime::now()
    }

    fn sleep(&self, d: Duration) {
        std::thread::sleep(d)
    }
}

/// A clock that moves only when told (or when someone sleeps on it);
/// clones share one time. `on_sleep` runs after every sleep, so a test can
/// change the store "while" acquire watches it.
#[derive(Clone)]
pub struct FakeClock {
    inner: Arc<Mutex<FakeState>>,
}

struct FakeState {
    now: Duration,
    wall: SystemTime,
    on_sleep: Option<Box<dyn FnMut(Duration) + Send>>,
}

impl FakeClock {
    pub fn new(wall: SystemTime) -> FakeClock {
        FakeClock {
            inner: Arc::new(Mutex::new(FakeState {
                now: Duration::from_secs(1000),
                wall,
                on_sleep: None,
            })),
        }
    }

    pub fn advance(&self, d: Duration) {
        let mut s = self.inner.lock().unwrap();
        s.now += d;
        s.wall += d;
    }

    /// Called with the boot time after each sleep.
    pub fn on_sleep(&self, f: impl FnMut(Duration) + Send + 'static) {
        self.inner.lock().unwrap().on_sleep = Some(Box::new(f));
    }
}

impl Clock for FakeClock {
    fn now(&self) -> Duration {
        self.inner.lock().unwrap().now
    }

    fn wall(&self) -> SystemTime {
        self.inner.lock().unwrap().wall
    }

    fn sleep(&self, d: Duration) {
        self.advance(d);
        // The hook runs unlocked: it may read the clock.
        let (hook, now) = {
            let mut s = self.inner.lock().unwrap();
            (s.on_sleep.take(), s.now)
        };
        if let Some(mut f) = hook {
            f(now);
            let mut s = self.inner.lock().unwrap();
            s.on_sleep.get_or_insert(f);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boottime_moves_forward() {
        let c = SystemClock;
        let a = c.now();
        c.sleep(Duration::from_millis(5));
        assert!(c.now() >= a + Duration::from_millis(5));
    }
}
