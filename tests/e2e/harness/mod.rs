//! The end-to-end harness: test volumes on a [`Backend`] (a local
//! directory, the suite's S3 server, S3 through the fault proxy, or a
//! test's private S3 server), mounted by the real binary, their objects
//! seen through the library's store trait; and the helpers every test
//! module shares (random data, trees, waits, shell commands).
//!
//! A scenario is written once as `fn name(backend: Backend)` and
//! [`per_backend!`] turns it into one `#[test]` per backend, so a failure
//! names the backend: `durability::crash_rounds::s3`.

mod backend;
mod private_s3;
pub mod tree;
mod users;
mod util;
mod volume;

pub use backend::{Backend, S3Server, all_objects, s3_random_prefix};
pub use private_s3::PrivateS3;
pub use users::*;
pub use util::*;
pub use volume::Volume;

/// `per_backend!(scenario: local, s3)` makes the module `scenario` with
/// one `#[test]` per named backend (`local`, `s3`, `s3_proxy`), each
/// calling `scenario(Backend::…)` from the enclosing module.
macro_rules! per_backend {
    (@one $scenario:ident, local) => {
        #[test]
        fn local() {
            super::$scenario($crate::harness::Backend::Local)
        }
    };
    (@one $scenario:ident, s3) => {
        #[test]
        fn s3() {
            super::$scenario($crate::harness::Backend::S3)
        }
    };
    (@one $scenario:ident, s3_proxy) => {
        #[test]
        fn s3_proxy() {
            super::$scenario($crate::harness::Backend::S3Proxy)
        }
    };
    ($scenario:ident: $($backend:ident),+ $(,)?) => {
        mod $scenario {
            $($crate::harness::per_backend!(@one $scenario, $backend);)+
        }
    };
}
pub(crate) use per_backend;
