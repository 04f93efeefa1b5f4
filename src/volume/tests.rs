//! Header tests: v2 round trips and strict decoding, the v1 golden header
//! and its upgrade, keyslot management, the KDF budget.

use super::*;
use crate::crypto::kdf::{KdfParams, MAX_M_COST_KIB, MAX_T_COST};

const PASS: &[u8] = b"correct horse battery staple";
const VOL: [u8; 16] = [0x5e; 16];
/// 2023-11-14T22:13:20Z: a 5-byte varint.
const CREATED: u64 = 1_700_000_000;

fn fast() -> Kdf {
    Kdf::Argon2id(KdfParams::insecure_fast())
}

fn ring_of(cipher: Cipher) -> KeyRing {
    KeyRing::single(0, MasterKey::generate_for(cipher))
}

fn header_for(cipher: Cipher) -> (KeyRing, VolumeHeader) {
    let ring = ring_of(cipher);
    let slot = NewSlot::Passphrase {
        secret: PASS,
        kdf: fast(),
    };
    let h = VolumeHeader::create_at(&ring, slot, DEFAULT_CHUNK_SIZE, VOL, CREATED).unwrap();
    (ring, h)
}

fn header() -> (KeyRing, VolumeHeader) {
    header_for(Cipher::default())
}

fn pass(p: &[u8]) -> SlotSecret<'_> {
    SlotSecret::Passphrase(p)
}

fn unhex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn assert_malformed(bytes: &[u8], needle: &str) {
    match VolumeHeader::decode(bytes) {
        Err(HeaderError::Malformed(m)) => assert!(m.contains(needle), "{m:?} lacks {needle:?}"),
        other => panic!("expected Malformed({needle}), got {other:?}"),
    }
}

#[test]
fn new_then_unlock_with_either_cipher() {
    for cipher in Cipher::ALL {
        let (ring, h) = header_for(cipher);
        assert_eq!((h.version, h.cipher, h.epoch), (FORMAT_VERSION, cipher, 0));
        let opened = h.unlock(PASS).unwrap();
        assert_eq!(opened.current().as_bytes(), ring.current().as_bytes());
        assert_eq!(opened.cipher(), cipher);
        assert_eq!(h.keys(&opened).data.cipher(), cipher);
        assert_eq!(h.unlock(b"wrong").unwrap_err(), CryptoError::WrongKey);
        let back = VolumeHeader::decode(&h.encode()).unwrap();
        assert_eq!(back, h);
    }
}

#[test]
fn new_picks_random_id_current_time_and_the_masters_cipher() {
    let master = MasterKey::generate_for(Cipher::Aes256Gcm);
    let a = VolumeHeader::new(
        &master,
        PASS,
        KdfParams::insecure_fast(),
        DEFAULT_CHUNK_SIZE,
    )
    .unwrap();
    let b = VolumeHeader::new(
        &master,
        PASS,
        KdfParams::insecure_fast(),
        DEFAULT_CHUNK_SIZE,
    )
    .unwrap();
    assert_ne!(a.volume_id, b.volume_id);
    assert!(a.created_unix > CREATED);
    assert_eq!(a.cipher, Cipher::Aes256Gcm);
    assert_eq!(
        a.unlock(PASS).unwrap().current().as_bytes(),
        master.as_bytes()
    );
}

/// The worked sizes in docs/FORMAT.md: 10 B prefix + 16 id + 3 (65536 as
/// a varint) + 5 (1.7e9) + 1 (cipher) + 1 (epoch 0) + 1 (count) + slots +
/// 32 MAC = 69 B + slots. A passphrase slot with Argon2id costs of
/// 256 MiB × 6 × 1 is 1 (id) + 5 (created) + 1 (kind) + 1 (kdf) + 3 + 1 +
/// 1 (m, t, p) + 16 (salt) + 1 + 72 (wrapped) + 1 + 65 (public) + 2 + 141
/// (sealed ring: 65 + 36 + 40) = 311 B.
#[test]
fn worked_size() {
    let (ring, mut h) = header();
    let with_default = |h: &mut VolumeHeader| {
        for slot in &mut h.keyslots {
            slot.created_unix = CREATED;
            if let SlotKind::Passphrase { kdf, .. } = &mut slot.kind {
                *kdf = Kdf::Argon2id(KdfParams::default());
            }
        }
        h.encode().len()
    };
    assert_eq!(with_default(&mut h), 69 + 311);
    h.add_slot(
        &ring,
        NewSlot::Passphrase {
            secret: b"x",
            kdf: fast(),
        },
    )
    .unwrap();
    assert_eq!(with_default(&mut h), 69 + 2 * 311);
    h.add_slot(&ring, NewSlot::KeyFile(&[9; 32])).unwrap();
    // A key-file slot: 1 + 5 + 1 + 16 + 1 + 72 + 1 + 65 + 2 + 141 = 305 B.
    assert_eq!(with_default(&mut h), 69 + 2 * 311 + 305);
}

#[test]
fn decode_rejects_non_volumes() {
    let good = header().1.encode();
    for bad in [
        &b""[..],
        b"SEALEDFS",
        b"SEALEDFS\x01",
        b"SEALEDFT\x02\x00rest",
        b"PK\x03\x04 zipfile",
    ] {
        assert_eq!(
            VolumeHeader::decode(bad),
            Err(HeaderError::NotAVolume),
            "{bad:?}"
        );
    }
    let mut bad_magic = good.clone();
    bad_magic[0] ^= 0x20;
    assert_eq!(
        VolumeHeader::decode(&bad_magic),
        Err(HeaderError::NotAVolume)
    );
}

#[test]
fn decode_names_unknown_version() {
    let mut bytes = header().1.encode();
    for v in [0u16, 3, 0x0100, u16::MAX] {
        bytes[8..10].copy_from_slice(&v.to_le_bytes());
        let err = VolumeHeader::decode(&bytes).unwrap_err();
        assert_eq!(err, HeaderError::UnsupportedVersion(v));
        assert!(err.to_string().contains(&format!("version {v} ")), "{err}");
    }
}

#[test]
fn decode_rejects_garbage_and_truncation() {
    let good = header().1.encode();
    assert_malformed(b"SEALEDFS\x02\x00", "does not parse");
    for len in PREFIX_LEN..good.len() {
        assert!(
            matches!(
                VolumeHeader::decode(&good[..len]),
                Err(HeaderError::Malformed(_))
            ),
            "len {len}"
        );
    }
    let mut longer = good.clone();
    longer.push(0);
    assert_malformed(&longer, "1 trailing bytes");
    let mut huge = good.clone();
    huge.resize(MAX_HEADER_LEN + 1, 0);
    assert_malformed(&huge, "more than");
}

#[test]
fn decode_rejects_bad_fields() {
    let (ring, h) = header();
    let with = |f: &dyn Fn(&mut VolumeHeader)| {
        let mut x = h.clone();
        f(&mut x);
        x.encode()
    };
    assert_malformed(&with(&|x| x.chunk_size = 3000), "chunk size 3000");
    assert_malformed(&with(&|x| x.keyslots.clear()), "0 keyslots");
    assert_malformed(
        &with(&|x| x.keyslots = vec![x.keyslots[0].clone(); MAX_KEYSLOTS + 1]),
        "9 keyslots",
    );
    assert_malformed(
        &with(&|x| x.keyslots = vec![x.keyslots[0].clone(); 2]),
        "keyslot id 0 appears twice",
    );
    assert_malformed(
        &with(&|x| {
            x.keyslots[0].kind = SlotKind::Passphrase {
                kdf: Kdf::Pbkdf2Sha256 { iterations: 10 },
                salt: [0; 16],
            }
        }),
        "keyslot 0: KDF iterations 10",
    );
    assert_malformed(
        &with(&|x| {
            x.keyslots[0].wrapped.pop();
        }),
        "wrapped key of 71 B",
    );
    assert_malformed(
        &with(&|x| {
            x.keyslots[0].public.pop();
        }),
        "public key of 64 B",
    );
    assert_malformed(
        &with(&|x| x.keyslots[0].sealed_ring.truncate(100)),
        "sealed ring",
    );
    let _ = ring;
}

/// An overlong varint (65536 as 4 bytes instead of 3) is refused even if
/// postcard would accept it: decoded headers re-encode byte for byte.
#[test]
fn decode_rejects_non_canonical_varint() {
    let good = header().1.encode();
    let at = PREFIX_LEN + 16;
    assert_eq!(&good[at..at + 3], &[0x80, 0x80, 0x04]);
    let mut bad = good[..at].to_vec();
    bad.extend([0x80, 0x80, 0x84, 0x00]);
    bad.extend(&good[at + 3..]);
    assert!(matches!(
        VolumeHeader::decode(&bad),
        Err(HeaderError::Malformed(_))
    ));
}

#[test]
fn tampered_fixed_fields_fail_unlock() {
    let (_, h) = header();
    let tampers: [&dyn Fn(&mut VolumeHeader); 5] = [
        &|x| x.chunk_size = 4096,
        &|x| x.created_unix += 1,
        &|x| x.version = 1,
        &|x| x.header_mac[31] ^= 1,
        &|x| x.epoch = 1,
    ];
    for tamper in tampers {
        let mut x = h.clone();
        tamper(&mut x);
        let err = x.unlock(PASS).unwrap_err();
        assert!(
            matches!(&err, CryptoError::Authentication { object, unit: 0 } if object == "volume")
                || matches!(&err, CryptoError::Malformed(_)),
            "{err:?}"
        );
    }
    // A changed cipher or id breaks the slots' AD before the MAC is reached.
    let mut x = h.clone();
    x.cipher = Cipher::Aes256Gcm;
    assert_eq!(x.unlock(PASS).unwrap_err(), CryptoError::WrongKey);
    let mut x = h.clone();
    x.volume_id[0] ^= 1;
    assert_eq!(x.unlock(PASS).unwrap_err(), CryptoError::WrongKey);
}

#[test]
fn chunk_size_bounds() {
    let m = MasterKey::generate();
    for bad in [0, 1, 2048, 4095, 65537, 2 * MAX_CHUNK_SIZE, u32::MAX] {
        let err = VolumeHeader::new(&m, PASS, fast(), bad).unwrap_err();
        assert_eq!(err, HeaderError::InvalidChunkSize(bad));
    }
    for good in [MIN_CHUNK_SIZE, DEFAULT_CHUNK_SIZE, MAX_CHUNK_SIZE] {
        assert_eq!(
            VolumeHeader::new(&m, PASS, fast(), good)
                .unwrap()
                .chunk_size,
            good
        );
    }
}

#[test]
fn add_replace_and_remove_slots() {
    let (ring, mut h) = header();
    let key_file = [0xabu8; 40];
    assert_eq!(
        h.add_slot(
            &ring,
            NewSlot::Passphrase {
                secret: b"second",
                kdf: fast()
            }
        ),
        Ok(1)
    );
    assert_eq!(h.add_slot(&ring, NewSlot::KeyFile(&key_file)), Ok(2));
    assert_eq!(h.unlock_ring(pass(PASS), None).unwrap().0, 0);
    assert_eq!(h.unlock_ring(pass(b"second"), None).unwrap().0, 1);
    assert_eq!(
        h.unlock_ring(SlotSecret::KeyFile(&key_file), None)
            .unwrap()
            .0,
        2
    );
    // A key file's bytes typed as a passphrase do not open its slot.
    assert!(h.unlock_ring(pass(&key_file), None).is_err());
    // Too short to be a key.
    assert!(matches!(
        h.add_slot(&ring, NewSlot::KeyFile(&[1; 31])),
        Err(HeaderError::SlotRefused(m)) if m.contains("at least 32")
    ));

    // Another volume's ring is refused and changes nothing.
    let before = h.clone();
    let err = h
        .add_slot(&ring_of(Cipher::default()), NewSlot::KeyFile(&key_file))
        .unwrap_err();
    assert_eq!(err, HeaderError::Crypto(CryptoError::WrongKey));
    assert_eq!(h, before);

    // passwd: slot 1 keeps its id, the old passphrase stops working.
    h.replace_slot(
        &ring,
        1,
        NewSlot::Passphrase {
            secret: b"third",
            kdf: fast(),
        },
    )
    .unwrap();
    assert_eq!(h.unlock_ring(pass(b"third"), None).unwrap().0, 1);
    assert!(h.unlock_ring(pass(b"second"), None).is_err());

    assert_eq!(
        h.remove_slot(&ring, 7).unwrap_err(),
        HeaderError::NoSuchKeyslot(7)
    );
    h.remove_slot(&ring, 0).unwrap();
    assert!(h.unlock(PASS).is_err());
    // Ids are never reused: the next slot is 3, not 0.
    assert_eq!(h.add_slot(&ring, NewSlot::KeyFile(&[1; 32])), Ok(3));
    h.remove_slot(&ring, 3).unwrap();
    h.remove_slot(&ring, 2).unwrap();
    assert_eq!(
        h.remove_slot(&ring, 1).unwrap_err(),
        HeaderError::LastKeyslot
    );
    assert_eq!(VolumeHeader::decode(&h.encode()).unwrap(), h);
}

#[test]
fn keyslot_limit() {
    let (ring, mut h) = header();
    for i in 1..MAX_KEYSLOTS {
        assert_eq!(
            h.add_slot(&ring, NewSlot::KeyFile(&[i as u8; 32])),
            Ok(i as u32)
        );
    }
    assert_eq!(
        h.add_slot(&ring, NewSlot::KeyFile(&[0; 32])),
        Err(HeaderError::KeyslotsFull)
    );
    VolumeHeader::decode(&h.encode()).unwrap();
}

/// A hostile store lists eight slots at the largest costs the decoder
/// accepts: an unlock must refuse within the budget, not run for hours.
#[test]
fn kdf_work_per_unlock_is_capped() {
    let (ring, mut h) = header();
    for _ in 1..MAX_KEYSLOTS {
        h.add_slot(
            &ring,
            NewSlot::Passphrase {
                secret: b"x",
                kdf: fast(),
            },
        )
        .unwrap();
    }
    for slot in &mut h.keyslots {
        slot.kind = SlotKind::Passphrase {
            kdf: Kdf::Argon2id(KdfParams {
                m_cost_kib: MAX_M_COST_KIB,
                t_cost: MAX_T_COST,
                p_cost: 1,
            }),
            salt: [0; 16],
        };
    }
    let h = VolumeHeader::decode(&h.encode()).unwrap();
    let start = std::time::Instant::now();
    assert!(h.unlock(PASS).is_err());
    assert!(h.unlock_ring(pass(PASS), Some(3)).is_err());
    assert!(
        start.elapsed() < std::time::Duration::from_secs(1),
        "{:?}",
        start.elapsed()
    );
}

/// `--slot N` tries only that slot; a key file tries key-file slots first.
#[test]
fn named_and_key_file_slots_go_first() {
    let (ring, mut h) = header();
    h.add_slot(
        &ring,
        NewSlot::Passphrase {
            secret: b"two",
            kdf: fast(),
        },
    )
    .unwrap();
    assert!(h.unlock_ring(pass(b"two"), Some(0)).is_err());
    assert_eq!(h.unlock_ring(pass(b"two"), Some(1)).unwrap().0, 1);
    assert_eq!(
        h.unlock_ring(pass(b"two"), Some(9)).unwrap_err(),
        HeaderError::NoSuchKeyslot(9)
    );
}

/// A committed v1 header (insecure_fast costs, chunk 64 KiB). If this
/// stops opening, existing volumes stop opening.
#[test]
fn golden_v1_header_opens_and_upgrades() {
    let bytes = unhex(GOLDEN_V1);
    let h = VolumeHeader::decode(&bytes).unwrap();
    assert_eq!(
        (h.version, h.cipher, h.epoch),
        (1, Cipher::XChaCha20Poly1305, 0)
    );
    assert_eq!(h.volume_id, VOL);
    assert_eq!(h.chunk_size, DEFAULT_CHUNK_SIZE);
    assert_eq!(h.created_unix, CREATED);
    assert_eq!(h.keyslots[0].kind.kdf(), Some(fast()));
    assert_eq!(h.encode(), bytes, "a v1 header re-encodes as v1");
    let (id, ring) = h.unlock_ring(pass(GOLDEN_PASS), None).unwrap();
    assert_eq!(id, 0);
    assert_eq!(ring.current().as_bytes(), &GOLDEN_MASTER);
    assert_eq!(h.unlock(PASS).unwrap_err(), CryptoError::WrongKey);

    // A key command upgrades it to v2; the v1 slot keeps working.
    let mut up = h.clone();
    up.add_slot(
        &ring,
        NewSlot::Passphrase {
            secret: b"new",
            kdf: fast(),
        },
    )
    .unwrap();
    assert_eq!(up.version, 2);
    let up = VolumeHeader::decode(&up.encode()).unwrap();
    assert_eq!(
        up.unlock(GOLDEN_PASS).unwrap().current().as_bytes(),
        &GOLDEN_MASTER
    );
    assert_eq!(
        up.unlock(b"new").unwrap().current().as_bytes(),
        &GOLDEN_MASTER
    );
    assert_eq!(up.keyslots[0].kind.name(), "passphrase (v1)");
    // Downgrading the upgraded header's version fails its MAC.
    let mut down = up.clone();
    down.version = 1;
    down.keyslots.truncate(1);
    assert!(matches!(
        down.unlock(GOLDEN_PASS),
        Err(CryptoError::Authentication { .. })
    ));
}

const GOLDEN_PASS: &[u8] = b"sealedfs golden v1";
const GOLDEN_MASTER: [u8; 32] = [0x6d; 32];
const GOLDEN_V1: &str = concat!(
    "5345414c4544465301005e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e80800480e2cf",
    "aa0601800201010805eed5995aa0d691cda0a11f5f8b174896c1b149f7f079d1",
    "9d523ea2c1eb1227a0214585b5fdf692717d8d7f86ac19a15c13bb69e37282ef",
    "2609214ca419245f8dd3c68bc48bb848d0e75528cb98bb23d00b8f547612164f",
    "492faca8e67f200fcc422f04cf80227431f582e69035616c01492462c9d9f3dd",
);
