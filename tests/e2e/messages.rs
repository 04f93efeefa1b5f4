//! What the binary prints for people: one-line messages (never a
//! library's debug dump), `--version`, completion scripts that bash
//! loads, and man pages.

use crate::harness::*;

/// Lines a library would print if its debug text reached the user.
const DUMP_MARKERS: &[&str] = &[
    "ServiceError",
    "SdkBody",
    "Response {",
    "ErrorMetadata",
    "\\n",
];

#[test]
fn init_on_s3_prints_only_one_line_messages() {
    // moto answers GetBucketVersioning with XML the SDK cannot parse:
    // init says so in one line and what to do, and goes on.
    let server = S3Server::shared();
    let url = format!("s3://{}/{}", server.bucket, s3_random_prefix());
    let out = server.run(&["init", &url, "--insecure-fast-kdf"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(!err.is_empty(), "expected the versioning warning");
    for line in err.lines() {
        assert!(line.starts_with("sealedfs: "), "{line}");
        assert!(line.len() < 300, "{} chars: {line}", line.len());
        for marker in DUMP_MARKERS {
            assert!(!line.contains(marker), "{marker} in {line}");
        }
    }
    assert!(err.contains("versioning"), "{err}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.starts_with("created sealedfs volume "), "{stdout}");
}

#[test]
fn version_names_the_on_disk_formats() {
    let out = sealedfs(&["--version"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let want = format!(
        "sealedfs {} (volume format {}, metadata format {})\n",
        env!("CARGO_PKG_VERSION"),
        sealedfs::volume::FORMAT_VERSION,
        sealedfs::meta::META_VERSION
    );
    assert_eq!(text, want);
}

#[test]
fn completions_load_in_bash_and_man_pages_are_written() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("sealedfs.bash");
    let out = sealedfs(&["completions", "bash"]);
    assert!(out.status.success(), "{}", stderr(&out));
    std::fs::write(&script, &out.stdout).unwrap();
    // The completion for the second word lists the subcommands.
    let words = sh(&format!(
        "source '{}'; COMP_WORDS=(sealedfs mo); COMP_CWORD=1; COMP_LINE='sealedfs mo'; \
         COMP_POINT=11; _sealedfs sealedfs mo sealedfs; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        script.display()
    ));
    assert_eq!(words.trim(), "mount", "{words}");

    let man = dir.path().join("man");
    let out = sealedfs(&["manpages", man.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let page = std::fs::read_to_string(man.join("sealedfs-mount.1")).unwrap();
    assert!(page.starts_with(".ie \\n(.g .ds Aq"), "not roff: {page}");
    assert!(page.contains("passphrase_file=FILE"), "{page}");
    assert!(page.contains("fuse.sealedfs"), "{page}");
    let root = std::fs::read_to_string(man.join("sealedfs.1")).unwrap();
    assert!(root.contains("Exit status"), "{root}");
}
