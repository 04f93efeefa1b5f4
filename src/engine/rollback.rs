//! Rollback and truncation detection: refusing a state older than one
//! already seen.
//!
//! Anyone who can write to the store can put an old copy of it back,
//! delete the newest journal segments, or damage the newest checkpoint so
//! an older one loads. Each of those yields a state that opens and
//! authenticates: only a memory of something newer gives it away. The
//! engine checks what it loaded against every such memory it is given:
//! - the host's [`Anchor`]: the newest commit this host saw of the volume
//!   at this location (kept outside the store, by the caller);
//! - the lease it took over, which names the committed head of its writer;
//! - the store itself: a newer checkpoint that did not load, or journal
//!   segments past the end of replay (a hole in the middle).
//!
//! A regression refuses the open ([`EngineError::Rollback`]) unless the
//! caller accepts it; an accepted one is logged, and the unreferenced-pack
//! sweep does not run on that open, so nothing only the hidden tail used
//! is deleted.
//!
//! [`EngineError::Rollback`]: super::EngineError::Rollback

use std::collections::BTreeMap;
use std::fmt;

/// A commit seen: its journal seq and the SHA-256 of its sealed segment
/// (the head of the hash chain at that point).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Head {
    pub seq: u64,
    pub hash: [u8; 32],
}

/// What a host remembers of a volume at one location.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Anchor {
    pub volume_id: [u8; 16],
    pub head: Head,
}

/// What the opener expects to find, and whether it accepts less.
#[derive(Clone, Debug, Default)]
pub struct Expected {
    pub anchor: Option<Anchor>,
    /// The committed head named by a lease just taken over.
    pub lease: Option<Head>,
    /// Open an older state anyway (`--accept-rollback`).
    pub accept_rollback: bool,
}

/// How the state found is older than one seen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Regression {
    /// Another volume is at this location than the one this host knew.
    OtherVolume { known: [u8; 16], found: [u8; 16] },
    /// The journal ends before the commit this host saw.
    OlderThanSeen { seen: u64, found: u64 },
    /// The journal reaches the commit this host saw, with other content.
    Forked { seq: u64 },
    /// The lease taken over named a newer commit than the journal holds.
    OlderThanLease { lease: u64, found: u64 },
    /// A newer checkpoint exists but did not load.
    CheckpointUnreadable { seq: u64, why: String },
    /// Journal segments exist past a missing one.
    JournalHole { missing: u64, newest: u64 },
}

impl fmt::Display for Regression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Regression::OtherVolume { known, found } => write!(
                f,
                "another volume ({}) is at this location than the one this host knew ({})",
                hex::encode(found),
                hex::encode(known)
            ),
            Regression::OlderThanSeen { seen, found } => write!(
                f,
                "the volume was rolled back or truncated: its journal ends at commit {found} but this host saw commit {seen}"
            ),
            Regression::Forked { seq } => write!(
                f,
                "commit {seq} is not the one this host saw: the volume was replaced by another history"
            ),
            Regression::OlderThanLease { lease, found } => write!(
                f,
                "the volume was truncated: its journal ends at commit {found} but its last writer's lease names commit {lease}"
            ),
            Regression::CheckpointUnreadable { seq, why } => write!(
                f,
                "the newest checkpoint ({seq}) does not load ({why}); an older state would be mounted"
            ),
            Regression::JournalHole { missing, newest } => write!(
                f,
                "journal segment {missing} is missing but segments up to {newest} exist: the volume was truncated"
            ),
        }
    }
}

/// Every regression an open found, gravest first (never empty).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Regressions(pub Vec<Regression>);

impl fmt::Display for Regressions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; also ")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

/// What the load found, as the check needs it.
pub struct Found<'a> {
    pub volume_id: [u8; 16],
    /// The last commit replayed.
    pub head: Head,
    /// Hashes of the commits replayed (and of the checkpoint's own seq).
    pub chain: &'a BTreeMap<u64, [u8; 32]>,
    pub skipped: &'a [(u64, String)],
    /// The newest journal segment in the store, if past the head.
    pub beyond: Option<u64>,
}

/// Every regression of `found` against `expected`, the gravest first.
pub fn check(found: &Found<'_>, expected: &Expected) -> Vec<Regression> {
    let mut out = Vec::new();
    if let Some(a) = &expected.anchor {
        if a.volume_id != found.volume_id {
            out.push(Regression::OtherVolume {
                known: a.volume_id,
                found: found.volume_id,
            });
            return out;
        }
        if a.head.seq > found.head.seq {
            out.push(Regression::OlderThanSeen {
                seen: a.head.seq,
                found: found.head.seq,
            });
        } else if found
            .chain
            .get(&a.head.seq)
            .is_some_and(|h| *h != a.head.hash)
        {
            out.push(Regression::Forked { seq: a.head.seq });
        }
    }
    if let Some(lease) = &expected.lease {
        if lease.seq > found.head.seq {
            out.push(Regression::OlderThanLease {
                lease: lease.seq,
                found: found.head.seq,
            });
        }
    }
    if let Some(newest) = found.beyond {
        out.push(Regression::JournalHole {
            missing: found.head.seq + 1,
            newest,
        });
    }
    for (seq, why) in found.skipped {
        out.push(Regression::CheckpointUnreadable {
            seq: *seq,
            why: why.clone(),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(seq: u64, h: u8) -> Head {
        Head { seq, hash: [h; 32] }
    }

    #[test]
    fn each_memory_catches_its_regression() {
        let chain: BTreeMap<u64, [u8; 32]> = (10..=20).map(|s| (s, [s as u8; 32])).collect();
        let found = Found {
            volume_id: [1; 16],
            head: head(20, 20),
            chain: &chain,
            skipped: &[],
            beyond: None,
        };
        let anchor = |seq: u64, h: u8| Expected {
            anchor: Some(Anchor {
                volume_id: [1; 16],
                head: head(seq, h),
            }),
            ..Expected::default()
        };
        assert!(check(&found, &Expected::default()).is_empty());
        assert!(check(&found, &anchor(20, 20)).is_empty(), "the same head");
        assert!(
            check(&found, &anchor(15, 15)).is_empty(),
            "an older head seen"
        );
        assert!(
            check(&found, &anchor(3, 9)).is_empty(),
            "before the checkpoint"
        );
        assert_eq!(
            check(&found, &anchor(21, 21)),
            [Regression::OlderThanSeen {
                seen: 21,
                found: 20
            }]
        );
        assert_eq!(
            check(&found, &anchor(15, 99)),
            [Regression::Forked { seq: 15 }]
        );
        let other = Expected {
            anchor: Some(Anchor {
                volume_id: [2; 16],
                head: head(1, 1),
            }),
            ..Expected::default()
        };
        assert!(matches!(
            check(&found, &other)[..],
            [Regression::OtherVolume { .. }]
        ));
        let lease = Expected {
            lease: Some(head(25, 0)),
            ..Expected::default()
        };
        assert_eq!(
            check(&found, &lease),
            [Regression::OlderThanLease {
                lease: 25,
                found: 20
            }]
        );
        let holed = Found {
            beyond: Some(23),
            skipped: &[(30, "bad".into())],
            ..found
        };
        let r = check(&holed, &Expected::default());
        assert!(r.contains(&Regression::JournalHole {
            missing: 21,
            newest: 23
        }));
        assert!(
            r.iter()
                .any(|x| matches!(x, Regression::CheckpointUnreadable { seq: 30, .. }))
        );
        for x in &r {
            assert!(!x.to_string().contains('\n'));
        }
    }
}
