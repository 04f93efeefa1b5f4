use crate::harness::*;

#[test]
fn mount_write_remount_read() {
    let mut v = Volume::local();
    v.mount();
    std::fs::write(v.path("hello.txt"), b"hello world").unwrap();
    std::fs::create_dir(v.path("dir")).unwrap();
    v.remount();
    assert_eq!(std::fs::read(v.path("hello.txt")).unwrap(), b"hello world");
    assert!(v.path("dir").is_dir());
}
