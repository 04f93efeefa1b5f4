//! A store that answers nothing for a while (connections accepted, no
//! reply), made two ways: the fault proxy's standing `Stall`, and a
//! SIGSTOPped private moto. An fsync waits it out, neither failing nor
//! claiming success early, and succeeds once the store answers again; the
//! data is exact after a remount.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::harness::*;
use crate::proxy::Fault;

/// Mounts `v`, stalls the store, starts `dd … conv=fsync` of 200 KiB and
/// checks it is still waiting after 3 s; releases the store and checks
/// the fsync succeeded and the file survives a remount.
fn fsync_waits_out_a_stall(mut v: Volume, stall: impl Fn(&Volume), release: impl Fn(&Volume)) {
    v.mount();
    let data = pattern(21, 200_000);
    let src = v.dir.path().join("src");
    std::fs::write(&src, &data).unwrap();
    stall(&v);
    let mut dd = Command::new("dd")
        .arg(format!("if={}", src.display()))
        .arg(format!("of={}", v.path("f").display()))
        .args(["bs=64k", "conv=fsync", "status=none"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let early = wait_child(&mut dd, Duration::from_secs(3));
    release(&v);
    assert!(
        early.is_none(),
        "fsync returned ({early:?}) while the store answered nothing"
    );
    let status = wait_child(&mut dd, Duration::from_secs(60))
        .expect("fsync still waiting 60 s after the store came back");
    assert!(status.success(), "dd (its fsync) failed: {status}");
    v.remount();
    assert!(std::fs::read(v.path("f")).unwrap() == data, "after remount");
    v.unmount();
}

#[test]
fn fsync_waits_out_a_proxy_stall() {
    fsync_waits_out_a_stall(
        Volume::new(Backend::S3Proxy),
        |v| v.proxy().set_standing(Fault::Stall),
        |v| v.proxy().set_standing(Fault::Pass),
    );
}

#[test]
fn fsync_waits_out_a_stopped_server() {
    let moto = PrivateS3::start();
    let v = Volume::on_server(moto.server());
    fsync_waits_out_a_stall(v, |_| moto.pause(), |_| moto.resume());
}
