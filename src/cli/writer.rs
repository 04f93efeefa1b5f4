//! A short-lived writer in the foreground, for commands that change the
//! volume while nothing mounts it read-write (`snapshot create` and
//! `delete`): take the writer's lease as a mount would, open the engine
//! through the lease's gate with the same rollback checks, do the work,
//! commit, record the new head in this host's anchor, release the lease.
//! What it does is recorded in the audit trail's writer chain, bound into
//! its commits as a mount's are.

use std::sync::Arc;

use super::anchor::Anchors;
use super::error::CliResult;
use super::header;
use super::location::{FOREGROUND_DEADLINE, LockGuard, StoreSpec};
use super::mount::{lease, trail};
use super::passphrase::Passphrase;
use crate::audit::{Auditor, Record, segment::WRITER_CHAIN};
use crate::crypto::KeyRing;
use crate::engine::{Anchor, Engine, EngineOptions, Expected, Head};
use crate::lease::Holder;
use crate::store::{ObjectStore, RetryPolicy, RetryingStore};

pub struct Writer {
    pub engine: Arc<Engine>,
    pub holder: Arc<Holder>,
    /// The store through the lease's gate.
    pub store: Arc<dyn ObjectStore>,
    pub auditor: Arc<Auditor>,
    anchors: Anchors,
    volume_id: [u8; 16],
    _lock: Option<LockGuard>,
}

impl Writer {
    /// Unlocks the volume at `spec` and opens it for writing, recording
    /// `what` it is for in the audit trail. Fails with exit 4 when another
    /// mount holds the lease.
    pub fn open(
        spec: &mut StoreSpec,
        key: &super::args::KeySource,
        env_pass: Option<Passphrase>,
        what: &str,
    ) -> CliResult<Writer> {
        let header = header::read(&*spec.open()?)?;
        super::process::forbid_core_dumps()?;
        let ring = super::unlock::ring(&header, &spec.s3_args(), key, env_pass)?;
        Writer::with_ring(spec, &ring, what)
    }

    /// [`Writer::open`] with the key ring unlocked already.
    pub fn with_ring(spec: &mut StoreSpec, ring: &KeyRing, what: &str) -> CliResult<Writer> {
        let store = spec.open_for_writing()?;
        let header = header::read(&*store)?;
        let anchors = Anchors::for_location(&spec.location());
        let anchor = anchors.read().map_err(|e| {
            super::error::CliError::usage(format!(
                "cannot read this host's record of the volume ({e})"
            ))
        })?;
        let (taken, lock) = lease::take(&store, spec, &header, ring, false)?;
        let lease_head = Some(taken.acquired.committed)
            .filter(|(seq, _)| *seq > 0)
            .map(|(seq, hash)| Head { seq, hash });
        let claim = taken.acquired.took_over;
        let (gated, holder) = lease::hold(spec.open_bare()?, taken)?;
        let retrying: Arc<dyn ObjectStore> = Arc::new(RetryingStore::new(
            gated,
            RetryPolicy::with_deadline(FOREGROUND_DEADLINE),
        ));
        let opts = super::mount::tuned(EngineOptions {
            claim_journal: claim,
            expected: Expected {
                anchor,
                lease: lease_head,
                accept_rollback: false,
            },
            ..EngineOptions::default()
        });
        let opened = Engine::open(Arc::clone(&retrying), &header, ring, opts)
            .map_err(super::error::CliError::from)
            .and_then(|engine| {
                let key = header.keys(ring).audit;
                let spool = trail::spool_dir(&header.volume_id);
                let auditor = Auditor::open(
                    Arc::clone(&retrying),
                    key,
                    header.volume_id,
                    WRITER_CHAIN,
                    &spool,
                )?;
                Ok((engine, auditor))
            });
        let (engine, auditor) = match opened {
            Ok(o) => o,
            Err(e) => {
                lease::release(&holder);
                return Err(e);
            }
        };
        auditor.record(Record::admin(what));
        let bound = Arc::clone(&auditor);
        engine.bind(Box::new(move || bound.flush().map(|h| (h.seq, h.hash))));
        Ok(Writer {
            engine,
            holder,
            store: retrying,
            auditor,
            anchors,
            volume_id: header.volume_id,
            _lock: lock,
        })
    }

    /// Commits everything, records the head, releases the lease.
    pub fn close(self) -> CliResult<()> {
        let shut = self.engine.shutdown();
        trail::stop(&self.auditor);
        let (seq, hash) = self.engine.committed();
        let head = Anchor {
            volume_id: self.volume_id,
            head: Head { seq, hash },
        };
        if let Err(e) = self.anchors.advance(head) {
            log::warn!("cannot record the volume's state for rollback checks: {e}");
        }
        lease::release(&self.holder);
        Ok(shut?)
    }
}
