//! Worker threads for requests that may wait on the store.
//!
//! fuser's own worker threads must stay free for the requests that answer
//! from memory (`lookup`, `getattr`, `readdir`, a read of cached data), so
//! a stalled store never stops `ls` or `stat`. Requests that may upload,
//! download, wait for a commit or wait for a file's data lock are handed
//! here with their reply, which fuser lets any thread send.
//!
//! Rules:
//! - A fixed number of threads take jobs from one queue, in order; a job
//!   never waits for another queued job (only for the store, the writeback
//!   or a commit, which run on threads of their own), so a full pool only
//!   delays, never deadlocks.
//! - A job that panics is logged; its reply, dropped unanswered, tells the
//!   kernel EIO (fuser answers a dropped reply that way), and the thread
//!   goes on with the next job.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

type Job = Box<dyn FnOnce() + Send>;

pub struct Pool {
    tx: Option<Sender<Job>>,
    threads: Vec<JoinHandle<()>>,
}

impl Pool {
    pub fn new(n: usize) -> Pool {
        let (tx, rx) = channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        let threads = (0..n)
            .map(|i| {
                let rx = Arc::clone(&rx);
                std::thread::Builder::new()
                    .name(format!("fuse-io-{i}"))
                    .spawn(move || work(&rx))
                    .unwrap_or_else(|e| panic!("cannot start a FUSE I/O thread: {e}"))
            })
            .collect();
        Pool {
            tx: Some(tx),
            threads,
        }
    }

    /// Runs `job` on a pool thread.
    pub fn run(&self, job: impl FnOnce() + Send + 'static) {
        let tx = self.tx.as_ref().expect("the queue lives until drop");
        if let Err(unsent) = tx.send(Box::new(job)) {
            // Every thread is gone (cannot happen while the pool lives):
            // run it here rather than lose the reply.
            (unsent.0)();
        }
    }
}

fn work(rx: &Mutex<Receiver<Job>>) {
    loop {
        let job = {
            let rx = rx.lock().unwrap_or_else(|p| p.into_inner());
            match rx.recv() {
                Ok(job) => job,
                Err(_) => return,
            }
        };
        if catch_unwind(AssertUnwindSafe(job)).is_err() {
            log::error!("a FUSE request panicked; it was answered EIO");
        }
    }
}

impl Drop for Pool {
    /// Lets the queued jobs finish, then the threads.
    fn drop(&mut self) {
        self.tx.take();
        let me = std::thread::current().id();
        for t in self.threads.drain(..) {
            if t.thread().id() != me {
                let _ = t.join();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    #[test]
    fn a_blocked_job_leaves_the_others_running() {
        let pool = Pool::new(2);
        let (block_tx, block_rx) = mpsc::channel::<()>();
        pool.run(move || {
            let _ = block_rx.recv();
        });
        let (done_tx, done_rx) = mpsc::channel();
        pool.run(move || done_tx.send(7).unwrap());
        assert_eq!(done_rx.recv_timeout(Duration::from_secs(5)), Ok(7));
        block_tx.send(()).unwrap();
    }

    #[test]
    fn a_panicking_job_does_not_kill_its_thread() {
        let pool = Pool::new(1);
        pool.run(|| panic!("boom"));
        let (tx, rx) = mpsc::channel();
        pool.run(move || tx.send(()).unwrap());
        assert!(rx.recv_timeout(Duration::from_secs(5)).is_ok());
    }
}
