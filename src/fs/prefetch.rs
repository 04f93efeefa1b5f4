//! Background read-ahead: a sequential reader keeps several ranged GETs of
//! whole packs in flight, so a cold read runs at the store's speed rather
//! than at one GET's latency after another.
//!
//! Rules:
//! - A handle streams once a read starts within [`SLACK`] of where its
//!   last read ended (the kernel sends read-ahead requests concurrently,
//!   so they arrive a little out of order); any other read ends the stream
//!   and its state, so a random reader fetches single segments only.
//! - While streaming, runs are asked for ahead of the reader: the first of
//!   [`FIRST_RUN`] bytes, each next one twice as large up to [`MAX_RUN`].
//!   A run never crosses an extent, so a file written sequentially costs
//!   about one GET per pack. How far ahead grows with what the stream has
//!   consumed (eight times that, and at least four runs), up to
//!   [`AHEAD_RUNS`] runs and a quarter of the cache budget: memory stays
//!   bounded. That is twice the GETs in flight: runs finish out of order
//!   and the reader takes them in order, so a thread whose run is done
//!   starts the next one instead of idling behind a slow one.
//! - A run is entered in the cache's fetch table before it is queued, so
//!   a reader of its chunks waits for it instead of fetching them again;
//!   its entry ends however the run ends (done, failed, dropped).
//! - A queued run whose handle has closed, or whose stream has ended, is
//!   dropped when a thread takes it, unfetched.
//! - [`READ_AHEAD_GETS`] threads run the fetches. They take no inode lock:
//!   a reader holding its file's shared lock may be waiting for them.
//!   Fetched bytes are cached only if the chunk map still points at the
//!   segments fetched (`fetch_run` checks under the namespace lock the
//!   flusher settles under), so a run racing a write, truncate or
//!   compaction never caches stale bytes. A failed run is dropped quietly:
//!   the reader then fetches the chunk itself and reports the failure.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex, Weak};

use super::Fs;
use super::handles::Handle;
use super::read::FetchDone;

/// Ranged GETs in flight for read-ahead (and worker threads): the
/// concurrency `scripts/bench.sh` gives the raw server too.
pub const READ_AHEAD_GETS: usize = 4;

/// Runs a stream keeps ahead of its reader, in flight or done.
const AHEAD_RUNS: u64 = 2 * READ_AHEAD_GETS as u64;

/// The first run of a stream, in bytes (mountpoint-s3 starts at about
/// 1 MiB too).
const FIRST_RUN: u64 = 1 << 20;

/// The largest run: a pack's worth.
const MAX_RUN: u64 = super::writeback::PACK_TARGET;

/// How far from the last read's end a read may start and still continue
/// the stream.
const SLACK: u64 = 4 << 20;

/// Chunks `chunk .. chunk + n` of `ino`, entered in the fetch table, with
/// its bytes reserved in the cache.
struct Run {
    ino: u64,
    chunk: u64,
    n: u64,
    /// The handle whose stream asked for it, and where that stream began:
    /// a run still queued when its handle closed or its stream ended is
    /// dropped unfetched (`head` over many large files would otherwise
    /// queue GETs nobody reads).
    fh: u64,
    stream_start: u64,
    /// Bytes reserved for it in the cache until its chunks are cached
    /// (handed over under one lock, so they never count twice) or it ends.
    held: AtomicU64,
}

/// What a streaming read asks for: chunks `from .. until`, in runs that
/// start at `run` chunks.
pub(super) struct Plan {
    from: u64,
    until: u64,
    run: u64,
}

pub(super) struct Prefetcher {
    tx: Mutex<Sender<Run>>,
    rx: Arc<Mutex<Receiver<Run>>>,
}

impl Default for Prefetcher {
    fn default() -> Self {
        let (tx, rx) = channel();
        Prefetcher {
            tx: Mutex::new(tx),
            rx: Arc::new(Mutex::new(rx)),
        }
    }
}

/// Starts the read-ahead threads. They hold the filesystem weakly and end
/// when it is dropped (its sender with it).
pub(super) fn start(fs: &Arc<Fs>) {
    for i in 0..READ_AHEAD_GETS {
        let weak = Arc::downgrade(fs);
        let rx = Arc::clone(&fs.prefetch.rx);
        std::thread::Builder::new()
            .name(format!("read-ahead-{i}"))
            .spawn(move || worker(&weak, &rx))
            .unwrap_or_else(|e| panic!("cannot start a read-ahead thread: {e}"));
    }
}

fn worker(weak: &Weak<Fs>, rx: &Mutex<Receiver<Run>>) {
    loop {
        let run = match rx.lock().unwrap_or_else(|p| p.into_inner()).recv() {
            Ok(run) => run,
            Err(_) => return,
        };
        let Some(fs) = weak.upgrade() else { return };
        fs.run_ahead(run);
    }
}

/// Updates `h`'s stream for a read of `offset .. end` (before `h` records
/// that read) and says what to ask for; `cap` is the most chunks ahead.
pub(super) fn stream(h: &mut Handle, offset: u64, end: u64, cs: u64, cap: u64) -> Option<Plan> {
    let near = h.read > 0
        && offset <= h.last_read_end.saturating_add(SLACK)
        && offset.saturating_add(SLACK) >= h.last_read_end;
    if !near {
        h.run = 0;
        return None;
    }
    let next = end.div_ceil(cs);
    if h.run == 0 {
        h.run = (FIRST_RUN / cs).clamp(1, cap) as u32;
        h.stream_start = offset / cs;
        h.ahead = next;
    }
    h.ahead = h.ahead.max(next);
    let most = (AHEAD_RUNS * MAX_RUN / cs).min(cap);
    // Eight times what the stream consumed, and at least four runs: on
    // S3 one GET streams at a fraction of the server's speed, so the
    // stream reaches four GETs in flight by its third read.
    let depth = ((next - h.stream_start.min(next)) * 8)
        .max(h.run as u64 * 4)
        .min(most);
    Some(Plan {
        from: h.ahead,
        until: next + depth,
        run: h.run as u64,
    })
}

impl Fs {
    /// Queues the runs `plan` asks for that are neither cached nor being
    /// fetched, and moves `fh`'s stream past them.
    pub(super) fn read_ahead(&self, ino: u64, fh: u64, plan: Plan) {
        if plan.from >= plan.until {
            return;
        }
        let cs = self.chunk_size as u64;
        let max_run = (MAX_RUN / cs).clamp(1, self.ahead_cap());
        // Set by `stream` before this plan; a handle already gone gets no runs.
        let Some(stream_start) = self.handles.with(fh, |h| h.stream_start) else {
            return;
        };
        let mut runs = Vec::new();
        let (mut c, mut run) = (plan.from, plan.run);
        {
            let l = self.lock();
            let Ok(attr) = self.inode_attr(&l, ino) else {
                return;
            };
            let Some(map) = l.ns().get(ino).and_then(|i| i.chunks()) else {
                return;
            };
            let last = attr.size.div_ceil(cs);
            let until = plan.until.min(last);
            let mut cache = self.cache();
            while c < until {
                let Some((first, e)) = map.extent_at(c) else {
                    c += 1; // a hole: nothing to fetch
                    continue;
                };
                if cache.contains((ino, c)) || cache.is_fetching((ino, c)) {
                    c += 1;
                    continue;
                }
                // Whole runs, even past `until`: GETs stay large.
                let want = run.min(first + e.count as u64 - c).min(last - c);
                let n = cache.begin_fetch((ino, c), want);
                cache.reserve(run_bytes(n, cs));
                runs.push(Run {
                    ino,
                    chunk: c,
                    n,
                    fh,
                    stream_start,
                    held: AtomicU64::new(run_bytes(n, cs)),
                });
                c += n;
                run = (run * 2).min(max_run);
            }
        }
        self.handles.with(fh, |h| {
            if h.run != 0 {
                h.ahead = h.ahead.max(c);
                h.run = run as u32;
            }
        });
        let tx = self.prefetch.tx.lock().unwrap_or_else(|p| p.into_inner());
        for r in runs {
            if let Err(unsent) = tx.send(r) {
                // The threads are gone (shutting down): end its entry.
                self.end_run(&unsent.0);
            }
        }
    }

    /// The most chunks a stream keeps ahead: a quarter of the cache's
    /// room (its budget less the heap held outside it).
    pub(super) fn ahead_cap(&self) -> u64 {
        (self.cache().room() / 4 / self.chunk_size as u64).max(1)
    }

    fn run_ahead(&self, r: Run) {
        // Ends the run however the fetch leaves (a panic too), so no
        // reader waits for it forever.
        let _done = RunDone { fs: self, run: &r };
        if self.shut.load(std::sync::atomic::Ordering::Relaxed) {
            return;
        }
        let wanted = self
            .handles
            .with(r.fh, |h| h.run != 0 && h.stream_start == r.stream_start);
        if wanted != Some(true) {
            return; // readers of its chunks, if any, fetch them themselves
        }
        if let Err(e) = self.fetch_run(r.ino, r.chunk, r.n, Some(&r.held)) {
            log::debug!(
                "read-ahead of chunks {}..{} of inode {} dropped: {e}",
                r.chunk,
                r.chunk + r.n,
                r.ino
            );
        }
    }

    /// Gives back a run's reservation and ends its fetch-table entry.
    fn end_run(&self, r: &Run) {
        self.cache().release(r.held.swap(0, Ordering::Relaxed));
        drop(FetchDone::new(self, (r.ino, r.chunk)));
    }
}

/// What a run of `n` chunks holds while under way: its plaintext. The
/// sealed bytes stream into those buffers (`data::streamed`); a store that
/// reads a whole range first (the trait's default `get_range_to`) holds it
/// twice for a moment.
fn run_bytes(n: u64, cs: u64) -> u64 {
    n * cs
}

struct RunDone<'a> {
    fs: &'a Fs,
    run: &'a Run,
}

impl Drop for RunDone<'_> {
    fn drop(&mut self) {
        self.fs.end_run(self.run);
    }
}
