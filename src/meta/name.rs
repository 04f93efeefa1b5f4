//! A directory entry's name as the namespace holds it, sized for ten
//! million entries: names up to [`INLINE_MAX`] bytes (nearly all of them)
//! live inside the entry itself, so they cost no allocation of their own.
//! A boxed name cost its 16-byte pointer plus a 32-byte malloc chunk for a
//! typical 15-byte name; inline it costs 24 bytes and nothing else.
//!
//! Ordered, compared and hashed exactly as the bytes are (so a
//! `BTreeMap<Name, _>` is looked up by `&[u8]` and iterates in the same
//! order as the `Box<[u8]>` keys it replaced), and persisted exactly as
//! `Box<[u8]>` was: the checkpoint format does not change.

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::ops::Deref;

use serde::de::{MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The longest name held inline: what fits beside the length byte and the
/// enum's tag in the 24 bytes a boxed name needs anyway.
pub const INLINE_MAX: usize = 22;

#[derive(Clone)]
pub enum Name {
    Inline { len: u8, bytes: [u8; INLINE_MAX] },
    Boxed(Box<[u8]>),
}

impl Name {
    pub fn as_slice(&self) -> &[u8] {
        match self {
            Name::Inline { len, bytes } => &bytes[..*len as usize],
            Name::Boxed(b) => b,
        }
    }
}

impl From<&[u8]> for Name {
    fn from(s: &[u8]) -> Name {
        if s.len() <= INLINE_MAX {
            let mut bytes = [0; INLINE_MAX];
            bytes[..s.len()].copy_from_slice(s);
            Name::Inline {
                len: s.len() as u8,
                bytes,
            }
        } else {
            Name::Boxed(s.into())
        }
    }
}

impl Deref for Name {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl Borrow<[u8]> for Name {
    fn borrow(&self) -> &[u8] {
        self.as_slice()
    }
}

impl PartialEq for Name {
    fn eq(&self, other: &Name) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl Eq for Name {}

impl PartialOrd for Name {
    fn partial_cmp(&self, other: &Name) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Name {
    fn cmp(&self, other: &Name) -> Ordering {
        self.as_slice().cmp(other.as_slice())
    }
}

impl Hash for Name {
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.as_slice().hash(h)
    }
}

impl std::fmt::Debug for Name {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(self.as_slice()))
    }
}

impl Serialize for Name {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.as_slice().serialize(s)
    }
}

impl<'de> Deserialize<'de> for Name {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Name, D::Error> {
        /// Reads the bytes in place: a mount decodes ten million names,
        /// and a `Vec` for each, freed at once, cost a malloc and a free.
        struct Bytes;
        impl<'de> Visitor<'de> for Bytes {
            type Value = Name;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a name's bytes")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Name, A::Error> {
                let mut bytes = [0; INLINE_MAX];
                let mut len = 0;
                while let Some(b) = seq.next_element::<u8>()? {
                    if len == INLINE_MAX {
                        let mut v = bytes.to_vec();
                        v.push(b);
                        while let Some(b) = seq.next_element::<u8>()? {
                            v.push(b);
                        }
                        return Ok(Name::Boxed(v.into()));
                    }
                    bytes[len] = b;
                    len += 1;
                }
                Ok(Name::Inline {
                    len: len as u8,
                    bytes,
                })
            }
            fn visit_bytes<E: serde::de::Error>(self, b: &[u8]) -> Result<Name, E> {
                Ok(Name::from(b))
            }
        }
        d.deserialize_seq(Bytes)
    }
}

/// A directory's entries.
pub type Entries = BTreeMap<Name, u64>;

/// Reads a directory's entries with every B-tree node full: inserting them
/// one by one (serde's way) leaves ascending keys in half-full leaves,
/// about 1.8 times the node memory. Duplicates keep the last, as inserts
/// did.
pub fn deserialize_entries<'de, D: Deserializer<'de>>(d: D) -> Result<Entries, D::Error> {
    struct Pairs;
    impl<'de> Visitor<'de> for Pairs {
        type Value = Vec<(Name, u64)>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a map of names to inode numbers")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Self::Value, A::Error> {
            // Bounded: a corrupt length must not reserve gigabytes.
            let mut v = Vec::with_capacity(m.size_hint().unwrap_or(0).min(1 << 16));
            while let Some(pair) = m.next_entry()? {
                v.push(pair);
            }
            Ok(v)
        }
    }
    let mut v = d.deserialize_map(Pairs)?;
    if !v.is_sorted_by(|a, b| a.0 < b.0) {
        // `collect` keeps the first of equal keys; the inserts this
        // replaced kept the last.
        v.reverse();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v.dedup_by(|a, b| a.0 == b.0);
    }
    Ok(v.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_is_24_bytes_and_short_ones_are_inline() {
        assert_eq!(std::mem::size_of::<Name>(), 24);
        assert!(matches!(Name::from(&[b'a'; 22][..]), Name::Inline { .. }));
        assert!(matches!(Name::from(&[b'a'; 23][..]), Name::Boxed(_)));
    }

    /// Old checkpoints hold `BTreeMap<Box<[u8]>, u64>`: the bytes and the
    /// order must be the same both ways.
    #[test]
    fn entries_encode_as_boxed_names_did() {
        let names: [&[u8]; 6] = [b"", b"b", b"a", &[b'z'; 40], &[0xff; 22], &[0xfe; 23]];
        let old: BTreeMap<Box<[u8]>, u64> = names
            .iter()
            .enumerate()
            .map(|(i, n)| (Box::from(*n), i as u64))
            .collect();
        let new: Entries = names
            .iter()
            .enumerate()
            .map(|(i, n)| (Name::from(*n), i as u64))
            .collect();
        let bytes = postcard::to_allocvec(&old).unwrap();
        assert_eq!(postcard::to_allocvec(&new).unwrap(), bytes);
        let mut de = postcard::Deserializer::from_bytes(&bytes);
        let back = deserialize_entries(&mut de).unwrap();
        assert_eq!(back, new);
        assert_eq!(back.get(&b"a"[..]), Some(&2));
        assert_eq!(back.get(&[b'z'; 40][..]), Some(&3));
        assert_eq!(back.get(&[0xfe; 23][..]), Some(&5));
    }

    #[test]
    fn unsorted_or_repeated_entries_read_as_inserts_would() {
        let pairs: Vec<(Box<[u8]>, u64)> = vec![
            (Box::from(&b"b"[..]), 1),
            (Box::from(&b"a"[..]), 2),
            (Box::from(&b"b"[..]), 3),
        ];
        // A postcard map is its length, then its pairs in order.
        let mut bytes = vec![3u8];
        for p in &pairs {
            bytes.extend(postcard::to_allocvec(p).unwrap());
        }
        let mut de = postcard::Deserializer::from_bytes(&bytes);
        let back = deserialize_entries(&mut de).unwrap();
        let want: BTreeMap<Box<[u8]>, u64> = pairs.into_iter().collect();
        let got: Vec<(Vec<u8>, u64)> = back.iter().map(|(k, v)| (k.to_vec(), *v)).collect();
        let want: Vec<(Vec<u8>, u64)> = want.iter().map(|(k, v)| (k.to_vec(), *v)).collect();
        assert_eq!(got, want);
    }
}
