//! Receiving GET bodies. The SDK hands a body over in chunks as they come
//! off the socket; each chunk goes straight to where its bytes belong (one
//! buffer allocated once at the body's size, or the caller's sink), never
//! through the SDK's aggregate and a copy of it, which moved every byte
//! twice more than receiving it.

use aws_sdk_s3::primitives::ByteStream;

use super::classify::{Failure, one_line};
use crate::store::RangeSink;

/// Feeds the bytes `skip .. skip + len` of `body` to `sink`, at offsets
/// counted from `skip`, as they arrive. `skip` is non-zero when a server
/// ignored the Range header and sends the whole object. Returns how many
/// bytes the server sent in all.
pub(super) async fn stream(
    mut body: ByteStream,
    skip: u64,
    len: u64,
    sink: &mut RangeSink<'_>,
) -> Result<u64, Failure> {
    let mut at = 0u64;
    while let Some(chunk) = body
        .try_next()
        .await
        .map_err(|e| Failure::transport(format!("body broke off: {}", one_line(&e.to_string()))))?
    {
        let (start, end) = (at, at + chunk.len() as u64);
        at = end;
        let (a, b) = (start.max(skip), end.min(skip.saturating_add(len)));
        if a < b {
            sink(a - skip, &chunk[(a - start) as usize..(b - start) as usize]);
        }
    }
    Ok(at)
}

/// The whole of `body` in one buffer, sized once from the announced
/// length (`announced`, capped by `cap` so a hostile length cannot make us
/// allocate without limit before a byte arrives).
pub(super) async fn collect(
    body: ByteStream,
    announced: Option<i64>,
    cap: u64,
) -> Result<Vec<u8>, Failure> {
    let size = announced.and_then(|n| u64::try_from(n).ok()).unwrap_or(0);
    let mut out = Vec::with_capacity(size.min(cap) as usize);
    stream(body, 0, u64::MAX, &mut |_, b| out.extend_from_slice(b)).await?;
    Ok(out)
}
