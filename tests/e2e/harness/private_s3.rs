//! A private S3 server for one test: its own moto process, started with
//! `scripts/s3-server.sh start DIR` and stopped on drop, so a test may
//! `SIGSTOP` it (a store that accepts connections and never answers)
//! without disturbing the tests that share the suite's server.

use std::path::Path;
use std::process::Command;

use super::backend::S3Server;

pub struct PrivateS3 {
    dir: tempfile::TempDir,
    pid: i32,
    server: S3Server,
}

impl PrivateS3 {
    /// Starts moto on a free loopback port, with its own test user and
    /// bucket (s3_server_start in scripts/lib.sh writes DIR/env and
    /// DIR/pid).
    pub fn start() -> PrivateS3 {
        let dir = tempfile::Builder::new()
            .prefix("sealedfs-e2e-moto")
            .tempdir()
            .unwrap();
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/s3-server.sh");
        let out = Command::new("bash")
            .arg(script)
            .arg("start")
            .arg(dir.path())
            .output()
            .expect("run scripts/s3-server.sh");
        assert!(
            out.status.success(),
            "scripts/s3-server.sh start failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let pid = std::fs::read_to_string(dir.path().join("pid"))
            .expect("DIR/pid")
            .trim()
            .parse()
            .expect("a pid in DIR/pid");
        let server = parse_env(&dir.path().join("env"));
        PrivateS3 { dir, pid, server }
    }

    pub fn server(&self) -> &S3Server {
        &self.server
    }

    /// The moto process (the one to stop and continue).
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// SIGSTOP: connections are still accepted by the kernel, but no
    /// request is answered until [`PrivateS3::resume`].
    pub fn pause(&self) {
        assert_eq!(unsafe { libc::kill(self.pid, libc::SIGSTOP) }, 0);
        // Returns once it is stopped, not when the signal is merely sent.
        super::util::wait_for("moto to stop", std::time::Duration::from_secs(5), || {
            std::fs::read_to_string(format!("/proc/{}/stat", self.pid))
                .is_ok_and(|s| s.split(") ").nth(1).is_some_and(|st| st.starts_with('T')))
        });
    }

    pub fn resume(&self) {
        assert_eq!(unsafe { libc::kill(self.pid, libc::SIGCONT) }, 0);
    }
}

impl Drop for PrivateS3 {
    fn drop(&mut self) {
        // A stopped process would hold SIGTERM until continued.
        unsafe { libc::kill(self.pid, libc::SIGCONT) };
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/s3-server.sh");
        let _ = Command::new("bash")
            .arg(script)
            .arg("stop")
            .arg(self.dir.path())
            .output();
    }
}

/// The `export NAME=VALUE` lines s3_server_start writes.
fn parse_env(path: &Path) -> S3Server {
    let text = std::fs::read_to_string(path).expect("DIR/env");
    let get = |name: &str| {
        text.lines()
            .filter_map(|l| l.strip_prefix("export "))
            .filter_map(|l| l.split_once('='))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_owned())
            .unwrap_or_else(|| panic!("{name} missing from {}:\n{text}", path.display()))
    };
    S3Server {
        endpoint: get("SEALEDFS_TEST_S3_ENDPOINT"),
        bucket: get("SEALEDFS_TEST_S3_BUCKET"),
        access_key: get("AWS_ACCESS_KEY_ID"),
        secret_key: get("AWS_SECRET_ACCESS_KEY"),
        region: get("AWS_REGION"),
    }
}
