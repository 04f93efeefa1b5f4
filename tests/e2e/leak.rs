//! Nothing about names, paths, xattrs, link targets or contents reaches
//! the store in the clear, on any backend: not in keys or bodies (read
//! through the store trait), not in a local directory's file names or
//! hidden files, not in S3 headers or tags, and not in the daemon's log.

use crate::harness::*;

/// Written into names, contents, xattrs and link targets; none may show.
const MARKERS: [&str; 8] = [
    "LEAKDIRNAME",
    "LEAKFILENAME",
    "LEAKXATTRNAME",
    "LEAKXATTRVALUE",
    "LEAKCONTENT",
    "LEAKLINKTARGET",
    "patient-record",
    "PHI-MARKER",
];
/// The random tails of the names and contents above: looked for in bodies
/// and local files, not in S3 keys (hex names, where four hex digits turn
/// up by chance).
const TAILS: [&str; 4] = ["51d0", "9c2e", "7f3a", "44aa"];
/// Parts of plain names that must not show in keys or bodies either.
const FRAGMENTS: [&str; 4] = ["records", "patient", "renamed", "second"];

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

per_backend!(no_name_xattr_or_content_reaches_the_store: local, s3);
fn no_name_xattr_or_content_reaches_the_store(backend: Backend) {
    let mut v = Volume::new(backend);
    v.mount();
    let dir = v.path("LEAKDIRNAME-records");
    std::fs::create_dir(&dir).unwrap();
    let file = dir.join("LEAKFILENAME-patient.txt");
    // Compressible and incompressible-looking content both.
    std::fs::write(&file, "LEAKCONTENT ".repeat(50_000)).unwrap();
    std::fs::write(dir.join("small"), "one LEAKCONTENT line in a small file\n").unwrap();
    sh(&format!(
        "setfattr -n user.LEAKXATTRNAME -v LEAKXATTRVALUE '{}'",
        file.display()
    ));
    std::os::unix::fs::symlink("/LEAKLINKTARGET/x", dir.join("link")).unwrap();
    let phi_dir = v.path("patient-record-dir-7f3a");
    std::fs::create_dir(&phi_dir).unwrap();
    let phi = phi_dir.join("patient-record-name-9c2e.txt");
    std::fs::write(&phi, "PHI-MARKER-CONTENT-51d0 ".repeat(5000)).unwrap();
    std::os::unix::fs::symlink("PHI-MARKER-TARGET-44aa", v.path("link")).unwrap();
    sh(&format!(
        "setfattr -n user.PHI-MARKER-XNAME-0b1e -v PHI-MARKER-XVALUE-e2f9 '{}'",
        phi.display()
    ));
    sh(&format!(
        "sync '{}' && mv '{}' '{}/LEAKFILENAME-renamed'",
        file.display(),
        file.display(),
        dir.display()
    ));
    v.unmount();
    // Mounted again and changed, so journal, checkpoint and lease objects
    // of a second session are in the store too.
    v.mount();
    std::fs::write(dir.join("LEAKFILENAME-second"), "LEAKCONTENT again").unwrap();
    v.unmount();

    let store = v.store();
    let objects = all_objects(&*store);
    assert!(objects.len() >= 3, "{:?}", objects.iter().map(|o| &o.0));
    let mut bytes_seen = 0;
    for (key, body) in &objects {
        bytes_seen += body.len();
        for m in MARKERS.iter().chain(&FRAGMENTS) {
            assert!(!key.contains(m), "{m} in key {key}");
        }
        for m in MARKERS.iter().chain(&FRAGMENTS).chain(&TAILS) {
            assert!(!contains(body, m), "{m} in the body of {key}");
        }
    }
    if let Some(root) = v.local_dir() {
        // What the trait does not list: hidden files, and the paths.
        for path in files_below(root) {
            let name = path.strip_prefix(root).unwrap().to_string_lossy();
            let body = std::fs::read(&path).unwrap();
            for m in MARKERS.iter().chain(&TAILS) {
                assert!(!name.contains(m), "{m} in the file name {name}");
                assert!(!contains(&body, m), "{m} in the file {name}");
            }
        }
    }
    if let Some((server, prefix)) = v.s3() {
        let headers = object_headers(server, prefix);
        assert_eq!(headers.len(), objects.len());
        for (key, head) in &headers {
            for m in MARKERS.iter().chain(&["records", "patient"]) {
                assert!(!head.contains(m), "{m} in the HEAD answer of {key}: {head}");
            }
        }
    }
    let log = v.log_text();
    for m in MARKERS {
        assert!(!log.contains(m), "{m} leaked into the log");
    }
    eprintln!(
        "leak check on {backend:?}: {} objects, {bytes_seen} bytes: no marker",
        objects.len()
    );
}

/// Every object's whole HEAD answer, checking on the way that it carries
/// no user metadata and no tags (the store trait exposes neither).
fn object_headers(server: &S3Server, prefix: &str) -> Vec<(String, String)> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let client = server.sdk_client();
    rt.block_on(async {
        let mut out = Vec::new();
        let mut token = None;
        loop {
            let page = client
                .list_objects_v2()
                .bucket(&server.bucket)
                .prefix(format!("{prefix}/"))
                .set_continuation_token(token)
                .send()
                .await
                .expect("list");
            for o in page.contents() {
                let key = o.key().unwrap().to_owned();
                let head = client
                    .head_object()
                    .bucket(&server.bucket)
                    .key(&key)
                    .send()
                    .await
                    .expect("head");
                assert!(
                    head.metadata().is_none_or(|m| m.is_empty()),
                    "{key}: user metadata {:?}",
                    head.metadata()
                );
                let tags = client
                    .get_object_tagging()
                    .bucket(&server.bucket)
                    .key(&key)
                    .send()
                    .await
                    .expect("tagging");
                assert!(
                    tags.tag_set().is_empty(),
                    "{key}: tags {:?}",
                    tags.tag_set()
                );
                out.push((key, format!("{head:?}")));
            }
            token = page.next_continuation_token().map(str::to_owned);
            if token.is_none() {
                break;
            }
        }
        out
    })
}
