//! Opening a run of consecutive sealed segments of one pack while its
//! ranged GET is still arriving (`ObjectStore::get_range_to`).
//!
//! Each segment's ciphertext goes straight into the buffer its plaintext
//! will live in (its nonce and tag to the side), and the segment is opened
//! in place as soon as its last byte is in. Receiving and decrypting
//! overlap, no buffer holds the whole run, and between the socket and the
//! cache each byte is copied once.
//!
//! Rules:
//! - A segment is opened only when all of its bytes are in, and the tag is
//!   checked before its plaintext is used. One failed segment fails the
//!   whole run (`finish`): no byte of such a run is returned.
//! - The key is asked for per segment ([`KeySource`]), never held across
//!   the GET: a lock or a rotation waits for one segment's opening, not
//!   for a transfer (and its retries) that can take minutes.
//! - A retried GET sends the range again from its start: bytes land where
//!   they belong again, and bytes for a segment already opened are ignored
//!   (packs are immutable, so they are the same bytes).

use super::Extent;
use super::pack::{PackId, segment_ad};
use crate::crypto::seal::open_in_place;
use crate::crypto::{CryptoError, NONCE_LEN, SEAL_OVERHEAD, SubKey, TAG_LEN};

/// One sealed segment on its way in: 24 B nonce ‖ ciphertext ‖ 16 B tag.
struct Seg {
    nonce: [u8; NONCE_LEN],
    tag: [u8; TAG_LEN],
    /// The ciphertext, then (opened) the plaintext.
    body: Vec<u8>,
    /// Bytes of the sealed segment received without a gap from its start.
    got: usize,
    opened: bool,
}

/// Runs `f` with the key segments open under and returns true, or
/// returns false (`f` not run) when the keys are locked.
pub type KeySource<'a> = &'a dyn Fn(&mut dyn FnMut(&SubKey)) -> bool;

pub struct StreamedRun<'a> {
    key: KeySource<'a>,
    volume_id: &'a [u8; 16],
    pack: PackId,
    object: String,
    first_unit: u32,
    /// Units in the pack: its last one is sealed as such.
    units: u32,
    cipher_len: usize,
    plain_len: usize,
    segs: Vec<Seg>,
    failed: Option<CryptoError>,
    /// A segment could not be opened: the keys were locked.
    locked: bool,
}

impl<'a> StreamedRun<'a> {
    /// Segments `skip .. skip + n` of `extent`, in a pack of `units` units.
    pub fn new(
        key: KeySource<'a>,
        volume_id: &'a [u8; 16],
        extent: &Extent,
        skip: u32,
        n: u32,
        units: u32,
    ) -> StreamedRun<'a> {
        let cipher_len = extent.cipher_len as usize;
        let padded = cipher_len.saturating_sub(SEAL_OVERHEAD);
        let segs = (0..n)
            .map(|_| Seg {
                nonce: [0; NONCE_LEN],
                tag: [0; TAG_LEN],
                body: Vec::with_capacity(padded),
                got: 0,
                opened: false,
            })
            .collect();
        StreamedRun {
            key,
            volume_id,
            pack: extent.pack,
            object: extent.pack.key(),
            first_unit: extent.first_unit + skip,
            units,
            cipher_len,
            plain_len: extent.plain_len as usize,
            segs,
            failed: None,
            locked: false,
        }
    }

    /// Takes `bytes` found at offset `at` of the run's sealed bytes.
    pub fn put(&mut self, at: u64, mut bytes: &[u8]) {
        if self.cipher_len < SEAL_OVERHEAD {
            return; // `finish` reports the malformed map
        }
        let mut at = at as usize;
        while !bytes.is_empty() {
            let (i, off) = (at / self.cipher_len, at % self.cipher_len);
            if i >= self.segs.len() {
                return;
            }
            let take = (self.cipher_len - off).min(bytes.len());
            self.fill(i, off, &bytes[..take]);
            bytes = &bytes[take..];
            at += take;
        }
    }

    /// Writes `b` at offset `off` of segment `i`, and opens the segment
    /// once it is whole.
    fn fill(&mut self, i: usize, off: usize, b: &[u8]) {
        let (cipher_len, tag_at) = (self.cipher_len, self.cipher_len - TAG_LEN);
        let seg = &mut self.segs[i];
        if seg.opened {
            return;
        }
        let end = off + b.len();
        // The parts of `b` that fall in the nonce, the ciphertext and the tag.
        let part = |from: usize, to: usize| (off.max(from), end.min(to));
        let (a, z) = part(0, NONCE_LEN);
        if a < z {
            seg.nonce[a..z].copy_from_slice(&b[a - off..z - off]);
        }
        let (a, z) = part(NONCE_LEN, tag_at);
        if a < z {
            write_at(&mut seg.body, a - NONCE_LEN, &b[a - off..z - off]);
        }
        let (a, z) = part(tag_at, cipher_len);
        if a < z {
            seg.tag[a - tag_at..z - tag_at].copy_from_slice(&b[a - off..z - off]);
        }
        if off <= seg.got {
            seg.got = seg.got.max(off + b.len());
        }
        if seg.got == cipher_len {
            self.open(i);
        }
    }

    fn open(&mut self, i: usize) {
        let unit = self.first_unit + i as u32;
        let ad = segment_ad(self.volume_id, &self.object, unit, unit + 1 == self.units);
        let seg = &mut self.segs[i];
        seg.opened = true;
        let mut opened = None;
        let unlocked = (self.key)(&mut |key| {
            opened = Some(open_in_place(key, &ad, &seg.nonce, &mut seg.body, &seg.tag));
        });
        match opened {
            Some(Ok(())) => trim(&mut seg.body, self.plain_len),
            Some(Err(e)) => {
                seg.body = Vec::new();
                self.failed.get_or_insert(e);
            }
            None => {
                seg.body = Vec::new();
                self.locked |= !unlocked;
                self.failed
                    .get_or_insert(CryptoError::Malformed("the keys are locked".into()));
            }
        }
    }

    /// Whether the keys were locked while the run came in (its `finish`
    /// then fails, and that is no sign of tampering).
    pub fn locked(&self) -> bool {
        self.locked
    }

    /// The plaintext of every segment, or the first failure.
    pub fn finish(self) -> Result<Vec<Vec<u8>>, CryptoError> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        if let Some(i) = self.segs.iter().position(|s| !s.opened) {
            return Err(CryptoError::Malformed(format!(
                "segment {} of object {} ({:?}) did not arrive whole",
                self.first_unit + i as u32,
                self.object,
                self.pack
            )));
        }
        Ok(self.segs.into_iter().map(|s| s.body).collect())
    }
}

/// Cuts an opened segment to its chunk's length, giving back the padding's
/// memory where it is a large part (a small file's chunk): the cache
/// counts what a buffer holds.
pub(super) fn trim(plain: &mut Vec<u8>, len: usize) {
    plain.truncate(len);
    if plain.capacity() - plain.len() > plain.capacity() / 8 {
        let exact = plain.clone();
        zeroize::Zeroize::zeroize(plain);
        *plain = exact;
    }
}

/// Writes `b` at `pos` of `v`, growing it (bytes arrive in order, so a gap
/// is never left in practice; one would read as zeros and fail the tag).
fn write_at(v: &mut Vec<u8>, pos: usize, b: &[u8]) {
    if pos > v.len() {
        v.resize(pos, 0);
    }
    let overlap = (v.len() - pos).min(b.len());
    v[pos..pos + overlap].copy_from_slice(&b[..overlap]);
    v.extend_from_slice(&b[overlap..]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::{Keys, MasterKey};
    use crate::data::{open_segment, seal_pack};

    const VOL: [u8; 16] = [7; 16];

    fn with(key: &SubKey) -> impl Fn(&mut dyn FnMut(&SubKey)) -> bool + '_ {
        move |f| {
            f(key);
            true
        }
    }

    /// A pack of three 9,000 B chunks (padded in their segments) and the
    /// extent over it.
    fn pack(keys: &Keys) -> (Vec<u8>, Extent, Vec<Vec<u8>>) {
        let chunks: Vec<Vec<u8>> = (0..3u8).map(|i| vec![i + 1; 9000]).collect();
        let id = PackId::random();
        let refs: Vec<&[u8]> = chunks.iter().map(|c| c.as_slice()).collect();
        let (body, placed) = seal_pack(&keys.data, &VOL, id, &refs);
        let extent = Extent {
            pack: id,
            first_unit: 0,
            cipher_off: 0,
            cipher_len: placed[0].cipher_len,
            plain_len: 9000,
            count: 3,
        };
        (body, extent, chunks)
    }

    fn keys() -> Keys {
        Keys::derive(&MasterKey::generate(), &VOL)
    }

    /// Feeds `body` in pieces of `step` bytes.
    fn feed(run: &mut StreamedRun, body: &[u8], step: usize) {
        for (i, piece) in body.chunks(step).enumerate() {
            run.put((i * step) as u64, piece);
        }
    }

    #[test]
    fn opens_what_open_segment_opens_however_the_bytes_are_cut() {
        let keys = keys();
        let key = with(&keys.data);
        let (body, extent, chunks) = pack(&keys);
        for step in [1, 7, 24, 40, 4096, extent.cipher_len as usize, body.len()] {
            let mut run = StreamedRun::new(&key, &VOL, &extent, 0, 3, 3);
            feed(&mut run, &body, step);
            assert_eq!(run.finish().unwrap(), chunks, "pieces of {step} B");
        }
        // From the middle of the extent: segments 1 and 2 only.
        let len = extent.cipher_len as usize;
        let mut run = StreamedRun::new(&key, &VOL, &extent, 1, 2, 3);
        feed(&mut run, &body[len..], 1000);
        let want = open_segment(
            &keys.data,
            &VOL,
            extent.pack,
            2,
            true,
            &body[2 * len..],
            9000,
        );
        assert_eq!(
            run.finish().unwrap(),
            vec![chunks[1].clone(), want.unwrap()]
        );
    }

    #[test]
    fn a_retry_from_the_start_gives_the_same_plaintext() {
        let keys = keys();
        let key = with(&keys.data);
        let (body, extent, chunks) = pack(&keys);
        let mut run = StreamedRun::new(&key, &VOL, &extent, 0, 3, 3);
        feed(&mut run, &body[..body.len() / 2 + 5], 333);
        feed(&mut run, &body, 1024);
        assert_eq!(run.finish().unwrap(), chunks);
    }

    #[test]
    fn one_altered_byte_fails_the_run_and_returns_nothing() {
        let keys = keys();
        let key = with(&keys.data);
        let (body, extent, _) = pack(&keys);
        let len = extent.cipher_len as usize;
        // A nonce byte, a ciphertext byte, a tag byte, of the middle unit.
        for at in [len + 3, len + 100, 2 * len - 1] {
            let mut bad = body.clone();
            bad[at] ^= 1;
            let mut run = StreamedRun::new(&key, &VOL, &extent, 0, 3, 3);
            feed(&mut run, &bad, 4096);
            let err = run.finish().unwrap_err();
            assert!(
                matches!(err, CryptoError::Authentication { unit: 1, .. }),
                "{err}"
            );
        }
        // Another unit's place (wrong `last` flag) fails too.
        let mut run = StreamedRun::new(&key, &VOL, &extent, 0, 3, 4);
        feed(&mut run, &body, 4096);
        assert!(run.finish().is_err());
    }

    #[test]
    fn a_run_that_did_not_arrive_whole_is_an_error() {
        let keys = keys();
        let key = with(&keys.data);
        let (body, extent, _) = pack(&keys);
        let mut run = StreamedRun::new(&key, &VOL, &extent, 0, 3, 3);
        feed(&mut run, &body[..body.len() - 1], 4096);
        assert!(matches!(run.finish(), Err(CryptoError::Malformed(_))));
    }

    #[test]
    fn locked_keys_fail_the_run_as_locked_not_as_tampering() {
        let keys = keys();
        let (body, extent, _) = pack(&keys);
        let locked = |_: &mut dyn FnMut(&SubKey)| false;
        let mut run = StreamedRun::new(&locked, &VOL, &extent, 0, 3, 3);
        run.put(0, &body[..3 * extent.cipher_len as usize]);
        assert!(run.locked());
        assert!(run.finish().is_err());
    }
}
