//! Keyslot commands, KMS keyslots and secret hygiene, through the binary
//! on real mounts: a key file added and mounted with, a passphrase
//! changed (the old one fails with exit 2, only `volume` changed), the
//! last slot kept, concurrent adds both kept, KMS slots unwrapped by the
//! test server's KMS with auth on (and refused under another volume's
//! context or to a user denied kms:Decrypt), no passphrase bytes in the
//! daemon's /proc/PID/environ, 0600 objects in a fresh local store, weak
//! passphrases refused, and plain-HTTP endpoints from a profile refused.

use std::os::unix::fs::PermissionsExt;

use crate::harness::*;

fn key_list(v: &Volume) -> String {
    let out = v.run(&["key", "list", &v.url], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Every object's bytes, keyed by name.
fn snapshot_of(v: &Volume) -> std::collections::BTreeMap<String, Vec<u8>> {
    all_objects(&*v.store()).into_iter().collect()
}

#[test]
fn keyslot_commands_local() {
    keyslot_commands_on(Backend::Local);
}

#[test]
fn keyslot_commands_s3() {
    keyslot_commands_on(Backend::S3);
}

fn keyslot_commands_on(backend: Backend) {
    let mut v = Volume::new(backend);
    v.mount();
    std::fs::write(v.path("kept"), b"data survives key changes").unwrap();
    let key = v.dir.path().join("dr.key");
    write_secret(&key, &pattern(7, 32));
    let out = v.run(
        &["key", "add", &v.url, "--key-file", key.to_str().unwrap()],
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    // The mount kept working across the header change.
    std::fs::write(v.path("after"), b"written after key add").unwrap();
    v.unmount();
    let list = key_list(&v);
    assert!(list.contains("slot 1  key-file"), "{list}");
    // Every command that opens the volume takes the same key flags.
    let k = key.to_str().unwrap();
    for args in [
        vec!["audit", "verify", &v.url, "--key-file", k, "--slot", "1"],
        vec!["snapshot", "list", &v.url, "--key-file", k],
        vec!["fsck", &v.url, "--key-file", k],
    ] {
        let out = v.run(&args, &[]);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    }
    let wrong_slot = v.run(&["audit", &v.url, "--key-file", k, "--slot", "0"], &[]);
    assert_cli_error(&wrong_slot, 2);
    v.mount_with(&["--key-file", key.to_str().unwrap()]);
    assert_eq!(
        std::fs::read(v.path("kept")).unwrap(),
        b"data survives key changes"
    );
    assert_eq!(
        std::fs::read(v.path("after")).unwrap(),
        b"written after key add"
    );
    v.unmount();

    // passwd: only `volume` changes (and the audit trail records it); the
    // old passphrase then fails, exit 2.
    let before = snapshot_of(&v);
    let new = "orbit staple marmalade quiver";
    let out = v.run(
        &["key", "passwd", &v.url],
        &[("SEALEDFS_NEW_PASSPHRASE", new)],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let after = snapshot_of(&v);
    let changed: Vec<&String> = after
        .iter()
        .filter(|(k, b)| before.get(*k) != Some(b) && !k.starts_with("audit/"))
        .map(|(k, _)| k)
        .collect();
    assert_eq!(changed, ["volume"], "only the header may change");
    assert!(before.keys().all(|k| after.contains_key(k)));
    let audit = v.run(
        &["audit", &v.url, "--op", "admin"],
        &[("SEALEDFS_PASSPHRASE", new)],
    );
    let trail = String::from_utf8_lossy(&audit.stdout).into_owned();
    assert!(trail.contains("key add: keyslot 1 (key file)"), "{trail}");
    assert!(trail.contains("key passwd: keyslot 0"), "{trail}");
    assert_cli_error(&v.try_mount(&[]), 2);
    v.set_env("SEALEDFS_PASSPHRASE", new);
    v.mount();
    assert_eq!(
        std::fs::read(v.path("kept")).unwrap(),
        b"data survives key changes"
    );
    v.unmount();

    // Two concurrent adds both end up in the header.
    let keys: Vec<_> = (0..2)
        .map(|i| {
            let k = v.dir.path().join(format!("k{i}"));
            write_secret(&k, &pattern(100 + i, 32));
            k
        })
        .collect();
    let handles: Vec<_> = keys
        .iter()
        .map(|k| {
            let args: Vec<String> = ["key", "add", &v.url, "--key-file", k.to_str().unwrap()]
                .iter()
                .map(|s| s.to_string())
                .collect();
            let env: Vec<(String, String)> = v.env().to_vec();
            std::thread::spawn(move || {
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                let mut env: Vec<(&str, &str)> =
                    env.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
                env.push(("SEALEDFS_PASSPHRASE", new));
                sealedfs_with(&args, &env)
            })
        })
        .collect();
    for h in handles {
        let out = h.join().unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let list = key_list(&v);
    assert_eq!(list.matches("key-file").count(), 3, "{list}");
    for k in &keys {
        v.mount_with(&["--key-file", k.to_str().unwrap()]);
        v.unmount();
    }

    // Removing slots down to the last: the last is refused, exit 1.
    for slot in ["1", "2", "3"] {
        let out = v.run(&["key", "remove", &v.url, "--slot", slot], &[]);
        assert!(out.status.success(), "slot {slot}: {}", stderr(&out));
    }
    let msg = assert_cli_error(&v.run(&["key", "remove", &v.url, "--slot", "0"], &[]), 1);
    assert!(msg.contains("last keyslot"), "{msg}");
}

/// A KMS slot on the test server's KMS (auth on): mount with --kms and no
/// passphrase at all; the same wrapped key under another volume's id is
/// refused; a user denied kms:Decrypt gets one line and exit 3.
#[test]
fn kms_keyslots() {
    let key_id = std::env::var("SEALEDFS_TEST_KMS_KEY")
        .expect("SEALEDFS_TEST_KMS_KEY: start the server with scripts/s3-server.sh");
    let mut v = Volume::new(Backend::S3);
    let out = v.run(&["key", "add", &v.url, "--kms-key-id", &key_id], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(key_list(&v).contains("kms "), "{}", key_list(&v));
    let out = v.run(
        &["key", "add", &v.url, "--kms-key-id", "alias/sealedfs-e2e"],
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    // No passphrase anywhere: --kms, then no source at all (KMS first).
    let unattended: Vec<(String, String)> = v.env().to_vec();
    for extra in [&["--kms"][..], &[][..]] {
        let mut args = vec!["mount", v.url.as_str(), v.mnt.to_str().unwrap()];
        args.extend_from_slice(extra);
        let out = sealedfs_cmd(&args)
            .envs(unattended.iter().map(|(a, b)| (a.as_str(), b.as_str())))
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        assert!(out.status.success(), "{extra:?}: {}", stderr(&out));
        v.adopt_mount();
        std::fs::write(v.path("via-kms"), b"x").unwrap();
        v.unmount();
    }

    // The same KMS slot copied into another volume: its context names the
    // other volume id, so KMS refuses (exit 2, naming the key).
    let other = Volume::new(Backend::S3);
    let slot = {
        let h = sealedfs::volume::VolumeHeader::decode(&v.store().get("volume").unwrap()).unwrap();
        h.keyslots
            .iter()
            .find(|s| s.kind.name() == "kms")
            .unwrap()
            .clone()
    };
    let mut h =
        sealedfs::volume::VolumeHeader::decode(&other.store().get("volume").unwrap()).unwrap();
    h.keyslots.push(slot);
    other.store().put("volume", &h.encode()).unwrap();
    let out = sealedfs_cmd(&["mount", &other.url, other.mnt.to_str().unwrap(), "--kms"])
        .envs(other.env().iter().map(|(a, b)| (a.as_str(), b.as_str())))
        .output()
        .unwrap();
    let msg = assert_cli_error(&out, 2);
    assert!(msg.contains("KMS") && msg.contains(&key_id), "{msg}");

    // A caller denied kms:Decrypt: one line naming the key, exit 3.
    let id = std::env::var("SEALEDFS_TEST_NOKMS_ACCESS_KEY_ID").unwrap();
    let secret = std::env::var("SEALEDFS_TEST_NOKMS_SECRET_ACCESS_KEY").unwrap();
    let out = sealedfs_cmd(&["mount", &v.url, v.mnt.to_str().unwrap(), "--kms"])
        .envs(unattended.iter().map(|(a, b)| (a.as_str(), b.as_str())))
        .env("AWS_ACCESS_KEY_ID", id)
        .env("AWS_SECRET_ACCESS_KEY", secret)
        .output()
        .unwrap();
    let msg = assert_cli_error(&out, 3);
    assert!(msg.contains("denied") && msg.contains("decrypt"), "{msg}");
}

/// The daemon's /proc/PID/environ holds no passphrase bytes, though the
/// passphrase came in SEALEDFS_PASSPHRASE.
#[test]
fn daemon_environ_has_no_passphrase() {
    let mut v = Volume::new(Backend::Local);
    v.mount();
    let pid = v.daemon_pid().expect("daemon pid");
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    assert!(!environ.is_empty());
    let pass = PASS.as_bytes();
    assert!(
        !environ.windows(pass.len()).any(|w| w == pass),
        "the passphrase is in the daemon's environ"
    );
    // The variable's bytes were overwritten where they lay: what is left
    // of the entry is its name and zeros.
    let text = String::from_utf8_lossy(&environ);
    assert!(!text.contains("SEALEDFS_PASSPHRASE=e"), "{text}");
    v.unmount();
}

/// A fresh local store: directory 0700, `volume` and `lease` 0600; a
/// header made readable by others is refused unless --insecure-permissions.
#[test]
fn local_store_is_private() {
    let mut v = Volume::new(Backend::Local);
    let dir = v.local_dir().unwrap().to_path_buf();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&dir.join("volume")), 0o600);
    v.mount();
    assert_eq!(mode(&dir.join("lease")), 0o600);
    for f in files_below(&dir) {
        if f.is_file() {
            assert_eq!(mode(&f) & 0o077, 0, "{}", f.display());
        }
    }
    v.unmount();
    std::fs::set_permissions(dir.join("volume"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let msg = assert_cli_error(&v.try_mount(&[]), 1);
    assert!(
        msg.contains("readable by other users") && msg.contains("--insecure-permissions"),
        "{msg}"
    );
    v.mount_with(&["--insecure-permissions"]);
    v.unmount();
}

/// init refuses a weak passphrase (exit 1) unless --weak-passphrase, and
/// writes nothing.
#[test]
fn weak_passphrase_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("vault");
    let s = store.to_str().unwrap();
    let out = sealedfs_with(
        &["init", s, "--kdf-memory", "8M", "--kdf-time", "1"],
        &[("SEALEDFS_PASSPHRASE", "password123")],
    );
    let msg = assert_cli_error(&out, 1);
    assert!(msg.contains("passphrase refused"), "{msg}");
    assert!(!store.join("volume").exists());
    let out = sealedfs_with(
        &[
            "init",
            s,
            "--kdf-memory",
            "8M",
            "--kdf-time",
            "1",
            "--weak-passphrase",
        ],
        &[("SEALEDFS_PASSPHRASE", "password123")],
    );
    assert!(out.status.success(), "{}", stderr(&out));
}

/// A profile's endpoint_url (or services section) over plain HTTP to
/// another host is refused before any request, as --endpoint is.
#[test]
fn plain_http_endpoint_from_a_profile_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let plain = "[default]\nregion = us-east-1\nendpoint_url = http://192.0.2.7:9000\n";
    let services = "[default]\nregion = us-east-1\nservices = here\n\n[services here]\ns3 =\n  endpoint_url = http://192.0.2.7:9000\n";
    for (name, text) in [("plain", plain), ("services", services)] {
        let cfg = dir.path().join(name);
        std::fs::write(&cfg, text).unwrap();
        let out = sealedfs_cmd(&["init", "s3://bucket/x", "--insecure-fast-kdf"])
            .env_remove("AWS_ENDPOINT_URL")
            .env_remove("AWS_ENDPOINT_URL_S3")
            .env("AWS_CONFIG_FILE", &cfg)
            .env("AWS_ACCESS_KEY_ID", "x")
            .env("AWS_SECRET_ACCESS_KEY", "y")
            .env("SEALEDFS_PASSPHRASE", PASS)
            .output()
            .unwrap();
        let msg = assert_cli_error(&out, 1);
        assert!(
            msg.contains("refusing plain-HTTP endpoint http://192.0.2.7:9000"),
            "{name}: {msg}"
        );
    }
}
