//! Alerts: the failures someone must act on, logged at `error` with a
//! stable prefix that log filters and monitoring can match, and kept (the
//! newest [`KEPT`]) for `sealedfs status`.
//!
//! | prefix | what happened |
//! |---|---|
//! | `INTEGRITY:` | stored bytes failed authentication or contradict the metadata: tampering, corruption, or a rollback |
//! | `FENCED:` | another writer committed or took the lease; this mount is read-only from now on |
//! | `LEASE:` | the lease could not be renewed in time: writes wait |
//! | `STORE:` | the store refuses or does not answer: uploads and commits wait and retry |
//! | `AUDIT:` | audit records cannot be spooled or uploaded |
//!
//! Like every log line, an alert names inodes and object keys, never a
//! path, file name or content (paths live only in the sealed audit trail).

use std::collections::VecDeque;
use std::fmt::Display;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

/// Alerts kept for `status`.
pub const KEPT: usize = 16;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Alert {
    Integrity,
    Fenced,
    Lease,
    Store,
    Audit,
}

impl Alert {
    pub fn prefix(self) -> &'static str {
        match self {
            Alert::Integrity => "INTEGRITY",
            Alert::Fenced => "FENCED",
            Alert::Lease => "LEASE",
            Alert::Store => "STORE",
            Alert::Audit => "AUDIT",
        }
    }
}

/// One alert as `status` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Raised {
    pub time_ms: u64,
    pub kind: String,
    pub message: String,
}

static RECENT: Mutex<VecDeque<Raised>> = Mutex::new(VecDeque::new());

/// Logs `msg` at `error` as a `kind` alert and keeps it for `status`.
pub fn raise(kind: Alert, msg: impl Display) {
    let message = msg.to_string();
    log::error!("{}: {message}", kind.prefix());
    let mut recent = RECENT.lock().unwrap_or_else(|p| p.into_inner());
    if recent.len() == KEPT {
        recent.pop_front();
    }
    recent.push_back(Raised {
        time_ms: crate::audit::now_ms(),
        kind: kind.prefix().to_owned(),
        message,
    });
}

/// The newest alerts, oldest first.
pub fn recent() -> Vec<Raised> {
    let recent = RECENT.lock().unwrap_or_else(|p| p.into_inner());
    recent.iter().cloned().collect()
}
