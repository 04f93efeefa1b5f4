//! Reading the trail back: every chain's segments in order, checked link
//! by link (`verify`), or their records filtered (`query`), one segment in
//! memory at a time, so a year of records never has to fit.
//!
//! What `verify` proves about a chain: its segments are 1, 2, … (or,
//! after a prune, from where its sealed base says it starts) with none
//! missing; each authenticates under its own name (so none was edited,
//! moved from another chain or replayed at another seq); each names the
//! hash of the one before and the count of records before it; and the
//! writer's chain reaches at least the head the newest journal segment
//! binds (so its tail was not cut off). The first segment that breaks any
//! of that is named.

use std::collections::BTreeMap;

use super::prune::read_base;
use super::record::Record;
use super::segment::{self, AUDIT_PREFIX, MAX_SEGMENT_BYTES, WRITER_CHAIN};
use crate::crypto::SubKey;
use crate::store::{ObjectStore, StoreResult};

/// Every chain in the store and its segments' seqs, in order.
pub fn chains(store: &dyn ObjectStore) -> StoreResult<BTreeMap<String, Vec<u64>>> {
    let mut out: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for o in store.list(AUDIT_PREFIX)? {
        if let Some((chain, seq)) = segment::parse_key(&o.key) {
            out.entry(chain.to_owned()).or_default().push(seq);
        }
    }
    for seqs in out.values_mut() {
        seqs.sort_unstable();
    }
    Ok(out)
}

/// What `verify` found.
#[derive(Clone, Debug, Default)]
pub struct Verified {
    /// (chain, segments, records) of each chain checked.
    pub chains: Vec<(String, u64, u64)>,
    /// The first problem of each broken chain, naming its segment.
    pub problems: Vec<String>,
}

impl Verified {
    pub fn intact(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Checks every chain; `bound` is the writer chain's head as the newest
/// journal segment binds it.
pub fn verify(
    store: &dyn ObjectStore,
    key: &SubKey,
    volume_id: &[u8; 16],
    bound: Option<(u64, [u8; 32])>,
) -> StoreResult<Verified> {
    let mut out = Verified::default();
    let all = chains(store)?;
    if let Some((seq, _)) = bound {
        if seq > 0 && !all.contains_key(WRITER_CHAIN) {
            out.problems.push(format!(
                "{}: missing (the journal binds the trail through it)",
                segment::key(WRITER_CHAIN, seq)
            ));
        }
    }
    for (chain, seqs) in &all {
        let bound = (chain == WRITER_CHAIN).then_some(bound).flatten();
        match verify_chain(store, key, volume_id, chain, seqs, bound)? {
            Ok((segments, records)) => out.chains.push((chain.clone(), segments, records)),
            Err(problem) => out.problems.push(problem),
        }
    }
    Ok(out)
}

fn verify_chain(
    store: &dyn ObjectStore,
    key: &SubKey,
    volume_id: &[u8; 16],
    chain: &str,
    seqs: &[u64],
    bound: Option<(u64, [u8; 32])>,
) -> StoreResult<Result<(u64, u64), String>> {
    let (start, mut prev_hash, mut count) = match read_base(store, key, volume_id, chain)? {
        Ok(Some(b)) => (b.first_seq, b.prev_hash, b.count_before),
        Ok(None) => (1, [0u8; 32], 0),
        Err(e) => return Ok(Err(format!("{e} (does not authenticate)"))),
    };
    let seqs: Vec<u64> = seqs.iter().copied().filter(|&s| s >= start).collect();
    for (i, &seq) in seqs.iter().enumerate() {
        let name = segment::key(chain, seq);
        let want = start + i as u64;
        if seq != want {
            return Ok(Err(format!(
                "{}: missing (segments go on at {seq})",
                segment::key(chain, want)
            )));
        }
        let sealed = store.get_max(&name, MAX_SEGMENT_BYTES)?;
        let (seg, hash) = match segment::open(key, volume_id, chain, seq, &sealed) {
            Ok(s) => s,
            Err(e) => return Ok(Err(format!("{name}: does not authenticate ({e})"))),
        };
        if seg.prev_hash != prev_hash {
            return Ok(Err(format!(
                "{name}: does not follow segment {} (reordered, replayed or spliced)",
                seq - 1
            )));
        }
        if seg.count_before != count {
            return Ok(Err(format!(
                "{name}: says {} records came before it, the chain holds {count}",
                seg.count_before
            )));
        }
        if bound.is_some_and(|(s, h)| s == seq && h != hash) {
            return Ok(Err(format!("{name}: is not the segment the journal binds")));
        }
        prev_hash = hash;
        count += seg.records.len() as u64;
    }
    let newest = seqs.last().copied().unwrap_or(0);
    if let Some((seq, _)) = bound.filter(|(s, _)| *s > newest) {
        return Ok(Err(format!(
            "{}: missing (the journal binds the trail through segment {seq}; \
             the chain ends at {newest})",
            segment::key(chain, newest + 1)
        )));
    }
    Ok(Ok((seqs.len() as u64, count)))
}

/// Which records a query wants; `None` fields match everything.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    pub since_ms: Option<u64>,
    pub until_ms: Option<u64>,
    pub uid: Option<u32>,
    pub pid: Option<u32>,
    pub process: Option<String>,
    /// Records whose path (or second path) starts with this.
    pub path_prefix: Option<String>,
    pub op: Option<String>,
    /// Only failures (or only successes).
    pub failed: Option<bool>,
}

impl Filter {
    pub fn matches(&self, r: &Record) -> bool {
        let path_ok = |prefix: &String| {
            r.path.starts_with(prefix.as_str())
                || r.path2
                    .as_ref()
                    .is_some_and(|p| p.starts_with(prefix.as_str()))
        };
        self.since_ms.is_none_or(|t| r.time_ms >= t)
            && self.until_ms.is_none_or(|t| r.time_ms < t)
            && self.uid.is_none_or(|u| r.uid == u)
            && self.pid.is_none_or(|p| r.pid == p)
            && self.process.as_ref().is_none_or(|p| &r.process == p)
            && self.path_prefix.as_ref().is_none_or(path_ok)
            && self.op.as_ref().is_none_or(|o| r.op.name() == o)
            && self.failed.is_none_or(|f| (r.errno != 0) == f)
    }
}

/// Calls `each(chain, host, record)` for every record `filter` wants, in
/// chain and record order; stops early when `each` returns false.
pub fn query(
    store: &dyn ObjectStore,
    key: &SubKey,
    volume_id: &[u8; 16],
    filter: &Filter,
    each: &mut dyn FnMut(&str, &str, &Record) -> bool,
) -> StoreResult<()> {
    for (chain, seqs) in chains(store)? {
        let start = match read_base(store, key, volume_id, &chain)? {
            Ok(b) => b.map_or(1, |b| b.first_seq),
            Err(e) => {
                log::error!("AUDIT: {e}; reading chain {chain} from its oldest segment");
                1
            }
        };
        for seq in seqs.into_iter().filter(|&s| s >= start) {
            let name = segment::key(&chain, seq);
            let sealed = store.get_max(&name, MAX_SEGMENT_BYTES)?;
            let seg = match segment::open(key, volume_id, &chain, seq, &sealed) {
                Ok((s, _)) => s,
                Err(e) => {
                    log::error!("AUDIT: {name} does not authenticate, skipped: {e}");
                    continue;
                }
            };
            for r in seg.records.iter().filter(|r| filter.matches(r)) {
                if !each(&chain, &seg.host, r) {
                    return Ok(());
                }
            }
        }
    }
    Ok(())
}
