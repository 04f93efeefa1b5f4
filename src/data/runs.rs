//! The ordered (first chunk → extent) table behind a chunk map, sized for
//! a million files: most files have one extent, and a `BTreeMap` leaf for
//! it costs about 540 bytes, so one extent is held inline (no allocation),
//! a few as a sorted, exactly sized `Vec`, and only maps past [`SMALL_MAX`]
//! extents (fragmented files, where an insert in the middle would move too
//! much) as a `BTreeMap`.
//!
//! Persisted as a map, exactly as the `BTreeMap` it replaced was, so the
//! checkpoint format does not change.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::Extent;

const SMALL_MAX: usize = 32;

#[derive(Clone)]
pub(super) enum Runs {
    One(u64, Extent),
    Small(Vec<(u64, Extent)>),
    Large(BTreeMap<u64, Extent>),
}

impl Default for Runs {
    fn default() -> Self {
        Runs::Small(Vec::new())
    }
}

impl Runs {
    pub fn is_empty(&self) -> bool {
        match self {
            Runs::One(..) => false,
            Runs::Small(v) => v.is_empty(),
            Runs::Large(m) => m.is_empty(),
        }
    }

    pub fn iter(&self) -> Box<dyn DoubleEndedIterator<Item = (u64, &Extent)> + '_> {
        match self {
            Runs::One(k, e) => Box::new(std::iter::once((*k, e))),
            Runs::Small(v) => Box::new(v.iter().map(|(k, e)| (*k, e))),
            Runs::Large(m) => Box::new(m.iter().map(|(k, e)| (*k, e))),
        }
    }

    /// The last extent starting at or before `chunk`.
    pub fn at_or_before(&self, chunk: u64) -> Option<(u64, &Extent)> {
        match self {
            Runs::One(k, e) => (*k <= chunk).then_some((*k, e)),
            Runs::Small(v) => {
                let i = v.partition_point(|(k, _)| *k <= chunk);
                i.checked_sub(1).map(|i| (v[i].0, &v[i].1))
            }
            Runs::Large(m) => m.range(..=chunk).next_back().map(|(k, e)| (*k, e)),
        }
    }

    /// The last extent starting before `chunk`.
    pub fn before(&self, chunk: u64) -> Option<(u64, &Extent)> {
        chunk.checked_sub(1).and_then(|c| self.at_or_before(c))
    }

    /// The first extent's start at or after `chunk`.
    pub fn first_from(&self, chunk: u64) -> Option<u64> {
        match self {
            Runs::One(k, _) => (*k >= chunk).then_some(*k),
            Runs::Small(v) => v.get(v.partition_point(|(k, _)| *k < chunk)).map(|r| r.0),
            Runs::Large(m) => m.range(chunk..).next().map(|(k, _)| *k),
        }
    }

    /// Starts of the extents starting in `first..end`.
    pub fn starts_in(&self, first: u64, end: u64) -> Vec<u64> {
        match self {
            Runs::One(k, _) => (first..end).contains(k).then_some(*k).into_iter().collect(),
            Runs::Small(v) => v
                .iter()
                .map(|r| r.0)
                .filter(|k| (first..end).contains(k))
                .collect(),
            Runs::Large(m) => m.range(first..end).map(|(k, _)| *k).collect(),
        }
    }

    pub fn get_mut(&mut self, chunk: u64) -> Option<&mut Extent> {
        match self {
            Runs::One(k, e) => (*k == chunk).then_some(e),
            Runs::Small(v) => v
                .binary_search_by_key(&chunk, |r| r.0)
                .ok()
                .map(|i| &mut v[i].1),
            Runs::Large(m) => m.get_mut(&chunk),
        }
    }

    pub fn get(&self, chunk: u64) -> Option<&Extent> {
        match self {
            Runs::One(k, e) => (*k == chunk).then_some(e),
            Runs::Small(v) => v
                .binary_search_by_key(&chunk, |r| r.0)
                .ok()
                .map(|i| &v[i].1),
            Runs::Large(m) => m.get(&chunk),
        }
    }

    pub fn remove(&mut self, chunk: u64) -> Option<Extent> {
        match self {
            Runs::One(k, e) => {
                let e = *e;
                (*k == chunk).then(|| {
                    *self = Runs::default();
                    e
                })
            }
            Runs::Small(v) => {
                let i = v.binary_search_by_key(&chunk, |r| r.0).ok()?;
                let e = v.remove(i).1;
                if let [(k, last)] = v[..] {
                    *self = Runs::One(k, last);
                }
                Some(e)
            }
            Runs::Large(m) => m.remove(&chunk),
        }
    }

    pub fn insert(&mut self, chunk: u64, e: Extent) {
        match self {
            Runs::One(k, old) if *k == chunk => *old = e,
            Runs::One(k, old) => {
                let (k, old) = (*k, *old);
                let mut v = Vec::with_capacity(2);
                v.push((k.min(chunk), if k < chunk { old } else { e }));
                v.push((k.max(chunk), if k < chunk { e } else { old }));
                *self = Runs::Small(v);
            }
            Runs::Small(v) if v.is_empty() => *self = Runs::One(chunk, e),
            Runs::Small(v) => match v.binary_search_by_key(&chunk, |r| r.0) {
                Ok(i) => v[i].1 = e,
                Err(_) if v.len() >= SMALL_MAX => {
                    let mut m: BTreeMap<u64, Extent> = std::mem::take(v).into_iter().collect();
                    m.insert(chunk, e);
                    *self = Runs::Large(m);
                }
                Err(i) => {
                    // Exactly sized: most maps never grow past one extent.
                    v.reserve_exact(1);
                    v.insert(i, (chunk, e));
                }
            },
            Runs::Large(m) => {
                m.insert(chunk, e);
            }
        }
    }
}

impl PartialEq for Runs {
    fn eq(&self, other: &Runs) -> bool {
        self.iter().eq(other.iter())
    }
}

impl Eq for Runs {}

impl fmt::Debug for Runs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl Serialize for Runs {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Runs::One(k, e) => s.collect_map(std::iter::once((k, e))),
            Runs::Small(v) => s.collect_map(v.iter().map(|(k, e)| (k, e))),
            Runs::Large(m) => m.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for Runs {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Runs, D::Error> {
        d.deserialize_map(RunsVisitor)
    }
}

struct RunsVisitor;

impl<'de> Visitor<'de> for RunsVisitor {
    type Value = Runs;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a map of chunk extents")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Runs, A::Error> {
        let hint = access.size_hint().unwrap_or(0);
        if hint > SMALL_MAX {
            let mut m = BTreeMap::new();
            while let Some((k, e)) = access.next_entry()? {
                m.insert(k, e);
            }
            return Ok(Runs::Large(m));
        }
        let mut runs = match hint {
            0 | 1 => Runs::default(),
            n => Runs::Small(Vec::with_capacity(n)),
        };
        while let Some((k, e)) = access.next_entry()? {
            runs.insert(k, e);
        }
        Ok(runs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::PackId;

    fn ext(unit: u32) -> Extent {
        Extent {
            count: 1,
            pack: PackId([3; 16]),
            first_unit: unit,
            cipher_off: unit as u64 * 100,
            cipher_len: 100,
            plain_len: 64,
        }
    }

    #[test]
    fn small_and_large_encode_as_the_btreemap_did() {
        for n in [0u64, 1, 5, SMALL_MAX as u64 + 7] {
            let mut runs = Runs::default();
            let mut map = BTreeMap::new();
            // Out of order, so the small table's sorted insert is exercised.
            for i in (0..n).rev() {
                runs.insert(i * 3, ext(i as u32));
                map.insert(i * 3, ext(i as u32));
            }
            assert_eq!(runs.iter().count() as u64, n);
            let bytes = postcard::to_allocvec(&runs).unwrap();
            assert_eq!(bytes, postcard::to_allocvec(&map).unwrap(), "{n} extents");
            let back: Runs = postcard::from_bytes(&bytes).unwrap();
            assert_eq!(back, runs);
            assert_eq!(matches!(back, Runs::Large(_)), n as usize > SMALL_MAX);
            assert_eq!(matches!(back, Runs::One(..)), n == 1);
        }
    }

    /// Random inserts and removes across the One/Small/Large forms agree
    /// with a `BTreeMap` after every step.
    #[test]
    fn random_changes_agree_with_a_btreemap() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut runs = Runs::default();
        let mut map = BTreeMap::new();
        for step in 0..5000 {
            let k = next() % 80;
            if next() % 3 == 0 {
                assert_eq!(runs.remove(k), map.remove(&k), "step {step}");
            } else {
                runs.insert(k, ext(step));
                map.insert(k, ext(step));
            }
            let c = next() % 90;
            assert_eq!(
                runs.at_or_before(c),
                map.range(..=c).next_back().map(|(k, e)| (*k, e)),
                "step {step}"
            );
            assert_eq!(runs.first_from(c), map.range(c..).next().map(|(k, _)| *k));
            assert_eq!(runs.get(c), map.get(&c));
            assert_eq!(runs.is_empty(), map.is_empty());
            assert!(
                runs.iter().eq(map.iter().map(|(k, e)| (*k, e))),
                "step {step}"
            );
        }
    }

    #[test]
    fn lookups_agree_with_a_btreemap() {
        let mut runs = Runs::default();
        let mut map = BTreeMap::new();
        for (i, k) in [10u64, 2, 40, 7, 25].into_iter().enumerate() {
            runs.insert(k, ext(i as u32));
            map.insert(k, ext(i as u32));
        }
        for c in 0..50 {
            let want = map.range(..=c).next_back().map(|(k, e)| (*k, e));
            assert_eq!(runs.at_or_before(c), want, "at_or_before {c}");
            assert_eq!(runs.first_from(c), map.range(c..).next().map(|(k, _)| *k));
        }
        assert_eq!(runs.starts_in(7, 26), vec![7, 10, 25]);
        assert_eq!(runs.remove(10), map.remove(&10));
        assert_eq!(runs.get(10), None);
        assert_eq!(runs.before(0), None);
        for k in [2, 40, 7] {
            assert_eq!(runs.remove(k), map.remove(&k));
        }
        assert!(matches!(runs, Runs::One(25, _)));
        assert_eq!(runs.at_or_before(30).map(|r| r.0), Some(25));
        runs.insert(3, ext(9));
        assert_eq!(runs.starts_in(0, 100), vec![3, 25]);
        assert_eq!(runs.remove(25).map(|e| e.first_unit), Some(4));
        assert_eq!(runs.remove(3).map(|e| e.first_unit), Some(9));
        assert!(runs.is_empty());
    }
}
