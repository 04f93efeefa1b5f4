//! The daemon's memory: one malloc arena, large buffers in their own
//! mappings, and a governor that keeps the resident size near
//! `--cache-size`.
//!
//! Rules:
//! - `--cache-size` bounds what the daemon holds, not only cached data:
//!   every second the governor reads the allocator's count of heap
//!   bytes in use and hands it to the cache, which counts what is not its
//!   own buffers (the namespace at about 250 B per inode, its own entries,
//!   handles, audit records) against its budget, down to a floor of a
//!   quarter of it (`Cache::set_heap_in_use`). The pack bodies the
//!   writeback keeps between uploads are mappings of their own, outside
//!   that count: the cache counts them itself (`Cache::set_kept`).
//! - The allocator's count, not the resident size, is what the cache
//!   follows: freed memory that stays resident would otherwise count as
//!   in use and shrink the cache again and again.
//! - Freed memory goes back to the kernel (`malloc_trim`) when the
//!   resident size passes the budget plus [`HEADROOM`]; a trim that frees
//!   little makes the next one wait longer, so a daemon whose live memory
//!   is above that (a namespace larger than three quarters of the budget)
//!   does not trim in a loop.

#[cfg(target_env = "gnu")]
use std::time::Duration;

/// What the daemon may hold beyond `--cache-size` before it trims: code,
/// thread stacks, buffers of requests under way.
pub const HEADROOM: u64 = 16 << 20;

/// One malloc arena for the whole process. glibc gives each busy thread its
/// own arena, and chunk buffers freed by another thread than the one that
/// allocated them leave every arena holding freed memory: with the default,
/// a daemon with a 256 MiB cache peaked at 465 MiB RSS reading 1 GiB, with
/// one arena at 284 MiB. The lock is uncontended at a few thousand
/// allocations a second. One arena is also what makes the governor's count
/// of heap in use one number. Call before any thread exists (inherited by
/// fork).
pub fn limit_malloc_arenas() {
    // Above a FUSE request's largest payload (1 MiB: the kernel's default
    // of 256 pages), whose copy each WRITE makes: at 1 MiB those copies
    // were mappings of their own, made, faulted in page by page and
    // unmapped again for every MiB written (262,144 page faults per GiB).
    #[cfg(target_env = "gnu")]
    const MMAP_THRESHOLD: libc::c_int = 2 << 20;
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only changes allocator tunables.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
        // Buffers of 2 MiB and more (pack bodies) get their own mappings,
        // returned whole when freed. glibc's default threshold rises to
        // the largest buffer freed, after which 8 MiB pack bodies came
        // from the heap and left holes in it.
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
    }
}

/// Starts the governor (see the rules above) for a daemon whose cache
/// budget is `budget`. `heap_in_use` is called with the heap bytes in use
/// at each check and returns false once the filesystem is gone.
pub fn govern(budget: u64, heap_in_use: impl Fn(u64) -> bool + Send + 'static) {
    #[cfg(target_env = "gnu")]
    {
        let spawned = std::thread::Builder::new()
            .name("heap-trim".into())
            .spawn(move || govern_loop(budget + HEADROOM, heap_in_use));
        if let Err(e) = spawned {
            log::warn!("cannot start the memory governor: {e}");
        }
    }
    #[cfg(not(target_env = "gnu"))]
    let _ = (budget, heap_in_use);
}

#[cfg(target_env = "gnu")]
fn govern_loop(limit: u64, heap_in_use: impl Fn(u64) -> bool) {
    const CHECK: Duration = Duration::from_millis(200);
    // mallinfo2 walks the allocator's free lists under its lock: about
    // 1 ms for 20,000 free chunks (a fragmented 350 MiB heap), so the
    // heap is counted every fifth check only.
    const COUNT_EVERY: u32 = 5;
    const SLOW: Duration = Duration::from_secs(5);
    let mut trim_wait = CHECK;
    let mut since_trim = Duration::ZERO;
    let mut check: u32 = 0;
    loop {
        check = check.wrapping_add(1);
        std::thread::sleep(CHECK);
        since_trim += CHECK;
        if check % COUNT_EVERY == 0 {
            // SAFETY: mallinfo2 only reads the allocator's statistics.
            let in_use = unsafe { libc::mallinfo2() }.uordblks as u64;
            if !heap_in_use(in_use) {
                return;
            }
        }
        let Some(before) = resident_bytes() else {
            return;
        };
        if before <= limit {
            trim_wait = CHECK;
            continue;
        }
        if since_trim < trim_wait {
            continue;
        }
        since_trim = Duration::ZERO;
        // SAFETY: malloc_trim only releases free memory of the allocator.
        unsafe { libc::malloc_trim(0) };
        let freed = before.saturating_sub(resident_bytes().unwrap_or(before));
        trim_wait = match freed >= 4 << 20 {
            true => CHECK,
            false => (trim_wait * 2).min(SLOW),
        };
    }
}

/// The process's resident size (VmRSS) in bytes.
#[cfg(target_env = "gnu")]
fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * u64::try_from(page).ok()?)
}
