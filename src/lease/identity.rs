//! Who we are, as a lease names a holder: host, boot, process.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::record::LeaseRecord;

/// The process that holds (or wants) the lease.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub host: String,
    pub boot_id: String,
    pub pid: u32,
    /// `/proc/PID/stat` field 22 of `pid`.
    pub pid_start: u64,
}

impl Identity {
    /// This host and boot, with the given process (the caller reads its
    /// start time from `/proc/self/stat`).
    pub fn this_host(pid: u32, pid_start: u64) -> Identity {
        Identity {
            host: host_name(),
            boot_id: boot_id(),
            pid,
            pid_start,
        }
    }

    /// The record this identity writes: `writer` from the acquisition,
    /// display expiry `wall + ttl`.
    /// The lease body naming this process, with `committed` (seq, hash)
    /// as the newest commit it knows of.
    pub fn record(
        &self,
        writer: [u8; 16],
        ttl: Duration,
        wall: SystemTime,
        committed: (u64, [u8; 32]),
    ) -> LeaseRecord {
        let until = wall + ttl;
        LeaseRecord {
            host: self.host.clone(),
            boot_id: self.boot_id.clone(),
            pid: self.pid,
            pid_start: self.pid_start,
            writer,
            ttl_ms: ttl.as_millis() as u64,
            valid_until_ms: until
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            committed_seq: committed.0,
            committed_hash: committed.1,
        }
    }

    /// True when `r` was written on this host during this boot.
    pub fn same_boot(&self, r: &LeaseRecord) -> bool {
        r.host == self.host && r.boot_id == self.boot_id
    }
}

/// `gethostname`, or "unknown-host".
pub fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer and its length are valid; the name is truncated
    // (and then maybe not NUL-terminated, handled below) if too long.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "unknown-host".into();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// The kernel's random id of this boot, or "" where it cannot be read
/// (then a same-host lease is never judged dead by boot id alone).
pub fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// `ms` after the Unix epoch as `YYYY-MM-DD HH:MM:SS UTC`.
pub fn show_wall(ms: u64) -> String {
    let secs = (ms / 1000) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Howard Hinnant's days-to-civil: proleptic Gregorian (y, m, d).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wall_display() {
        assert_eq!(show_wall(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(show_wall(951_782_400_000), "2000-02-29 00:00:00 UTC");
        assert_eq!(show_wall(1_735_689_599_999), "2024-12-31 23:59:59 UTC");
    }

    #[test]
    fn this_host_is_readable() {
        let me = Identity::this_host(1, 2);
        assert!(!me.host.is_empty());
        assert_eq!(me.boot_id.len(), 36, "a UUID: {:?}", me.boot_id);
    }
}
