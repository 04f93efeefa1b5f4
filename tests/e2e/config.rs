//! The config file through real mounts: a volume's table supplies what a
//! boot-time mount lacks (the secret, the S3 endpoint), and the layers
//! rank flag > environment > file.

use std::path::PathBuf;
use std::process::{Output, Stdio};

use crate::harness::*;

/// Writes `text` as a config file in `v`'s directory.
fn config_file(v: &Volume, name: &str, text: &str) -> PathBuf {
    let path = v.dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// `sealedfs ARGS` with `env` only (besides PATH and such): no passphrase
/// variable unless `env` has one, no terminal.
fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    sealedfs_cmd(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn secret(v: &Volume, name: &str, text: &str) -> String {
    let path = v.dir.path().join(name);
    write_secret(&path, text.as_bytes());
    path.to_str().unwrap().to_owned()
}

#[test]
fn the_file_supplies_the_secret_and_flags_and_env_win() {
    let mut v = Volume::local();
    let good = secret(&v, "good", PASS);
    let bad = secret(&v, "bad", "not the passphrase");
    let (url, mnt) = (v.url.clone(), v.mnt.to_str().unwrap().to_owned());
    let log = v.log.to_str().unwrap().to_owned();
    // The store spelt otherwise than on the command line: matched anyway.
    let table = |pass: &str| {
        format!(
            "cache_size = \"64M\"\n\n[volume.\"file://{url}/.\"]\npassphrase_file = \"{pass}\"\nallow_other = true\n"
        )
    };
    let cfg = |name: &str, text: &str| config_file(&v, name, text).to_str().unwrap().to_owned();
    let with_good = cfg("good.toml", &table(&good));
    let with_bad = cfg("bad.toml", &table(&bad));
    let broken = cfg("broken.toml", "pasphrase_file = \"/x\"\n");
    let mount = ["mount", url.as_str(), mnt.as_str()];

    // The file alone: an unattended mount, with the file's allow_other.
    let out = run(
        &mount,
        &[("SEALEDFS_CONFIG", &with_good), ("SEALEDFS_LOG_FILE", &log)],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    v.adopt_mount();
    assert!(mount_options_of(&v.mnt).unwrap().contains("allow_other"));
    v.unmount();

    // SEALEDFS_PASSPHRASE beats the file's wrong passphrase file …
    let env = [
        ("SEALEDFS_CONFIG", with_bad.as_str()),
        ("SEALEDFS_PASSPHRASE", PASS),
        ("SEALEDFS_LOG_FILE", &log),
    ];
    let out = run(&mount, &env);
    assert!(out.status.success(), "{}", stderr(&out));
    v.adopt_mount();
    v.unmount();
    // … and loses to a flag's.
    let wrong = format!("passphrase_file={bad}");
    let flagged = [&mount[..], &["-o", &wrong]].concat();
    assert_cli_error(&run(&flagged, &env), 2);
    assert!(!v.is_mounted());

    // --config beats SEALEDFS_CONFIG; a broken file is one line naming it.
    let env = [
        ("SEALEDFS_CONFIG", broken.as_str()),
        ("SEALEDFS_LOG_FILE", &log),
    ];
    let err = assert_cli_error(&run(&mount, &env), 1);
    assert!(
        err.contains("broken.toml") && err.contains("\"pasphrase_file\""),
        "{err}"
    );
    let chosen = [&mount[..], &["--config", &with_good]].concat();
    let out = run(&chosen, &env);
    assert!(out.status.success(), "{}", stderr(&out));
    v.adopt_mount();
}

#[test]
fn s3_endpoint_from_the_file_and_the_environment_over_it() {
    let mut v = Volume::new(Backend::S3);
    let endpoint = v.s3().unwrap().0.endpoint.clone();
    let good = secret(&v, "pass", PASS);
    let (url, mnt) = (v.url.clone(), v.mnt.to_str().unwrap().to_owned());
    let table = |endpoint: &str| {
        format!("[volume.\"{url}\"]\nendpoint = \"{endpoint}\"\npassphrase_file = \"{good}\"\n")
    };
    let file = config_file(&v, "s3.toml", &table(&endpoint));
    let dead = config_file(&v, "dead.toml", &table("http://127.0.0.1:1"));
    let mut env: Vec<(String, String)> = v
        .env()
        .iter()
        .filter(|(k, _)| k != "AWS_ENDPOINT_URL")
        .cloned()
        .collect();
    env.push((
        "SEALEDFS_LOG_FILE".into(),
        v.log.to_str().unwrap().to_owned(),
    ));
    let mount = ["mount", url.as_str(), mnt.as_str()];
    let run_with = |extra: &[(&str, &str)]| {
        let mut all: Vec<(&str, &str)> =
            env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        all.extend_from_slice(extra);
        run(&mount, &all)
    };

    // No endpoint in the environment: the file's is used.
    let out = run_with(&[("SEALEDFS_CONFIG", file.to_str().unwrap())]);
    assert!(out.status.success(), "{}", stderr(&out));
    v.adopt_mount();
    std::fs::write(v.path("f"), b"via the file's endpoint").unwrap();
    v.unmount();

    // AWS_ENDPOINT_URL beats a file naming a port nobody listens on.
    let out = run_with(&[
        ("SEALEDFS_CONFIG", dead.to_str().unwrap()),
        ("AWS_ENDPOINT_URL", &endpoint),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    v.adopt_mount();
    assert_eq!(
        std::fs::read(v.path("f")).unwrap(),
        b"via the file's endpoint"
    );
}
