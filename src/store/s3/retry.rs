//! Our own retries: the SDK's are off (its default three attempts and
//! retry-token bucket give up within seconds, and a store outage of a
//! minute must be ridden out).
//!
//! Rules:
//! - Every failure is classified once, here: transient (5xx, 429,
//!   throttling codes, timeouts, connection errors, a broken body) or
//!   final (everything the server decided: 403, 404, 412, bad region …).
//! - Transient failures are retried with exponential backoff and full
//!   jitter (a random sleep in `0..min(cap, base·2ⁿ)`) until the deadline
//!   would pass; then the last failure is returned.
//! - A failure after which the request may still have been applied (no
//!   answer, a reset, a 5xx) is *ambiguous*; the loop reports whether any
//!   attempt ended that way, so a create-only PUT that later gets 412 can
//!   check whether the object is its own write.

use std::error::Error;
use std::future::Future;
use std::time::{Duration, Instant};

use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use rand::Rng;

const BACKOFF_BASE: Duration = Duration::from_millis(100);
const BACKOFF_CAP: Duration = Duration::from_secs(5);

/// Why one attempt failed, reduced to what callers decide on.
#[derive(Debug)]
pub(super) struct Failure {
    pub transient: bool,
    pub ambiguous: bool,
    pub status: Option<u16>,
    /// The S3 error code (`NoSuchKey`, `SlowDown`, …) where the server sent one.
    pub code: Option<String>,
    /// The bucket's region, from a redirect or a malformed-authorization answer.
    pub region_hint: Option<String>,
    /// One line for logs and messages; never a body or a credential.
    pub detail: String,
}

impl Failure {
    pub fn transport(detail: String) -> Failure {
        Failure {
            transient: true,
            ambiguous: true,
            status: None,
            code: None,
            region_hint: None,
            detail,
        }
    }

    pub fn is(&self, status: u16) -> bool {
        self.status == Some(status)
    }

    pub fn code_is(&self, code: &str) -> bool {
        self.code.as_deref() == Some(code)
    }
}

const TRANSIENT_CODES: &[&str] = &[
    "SlowDown",
    "RequestTimeout",
    "InternalError",
    "ServiceUnavailable",
    "Throttling",
    "ThrottlingException",
    "RequestLimitExceeded",
    "TooManyRequestsException",
    // S3 answers 409 to two conditional writes of one key racing; the
    // retry then gets the real 412 or 200.
    "ConditionalRequestConflict",
];

pub(super) fn classify<E>(err: SdkError<E, aws_sdk_s3::config::http::HttpResponse>) -> Failure
where
    E: ProvideErrorMetadata + Error + Send + Sync + 'static,
{
    let detail = one_line(&DisplayErrorContext(&err).to_string());
    match &err {
        SdkError::ServiceError(service) => {
            let raw = service.raw();
            let status = raw.status().as_u16();
            let code = service.err().code().map(str::to_owned);
            let region_hint = raw
                .headers()
                .get("x-amz-bucket-region")
                .map(str::to_owned)
                .or_else(|| region_from_message(service.err().message()));
            let transient = status >= 500
                || status == 429
                || code
                    .as_deref()
                    .is_some_and(|c| TRANSIENT_CODES.contains(&c));
            Failure {
                transient,
                // A 5xx may come after the write was applied.
                ambiguous: status >= 500,
                status: Some(status),
                code,
                region_hint,
                detail,
            }
        }
        SdkError::TimeoutError(_) | SdkError::ResponseError(_) => Failure::transport(detail),
        SdkError::DispatchFailure(d) if !d.is_user() => Failure::transport(detail),
        // A request that could not be built or signed (no credentials, a
        // bad endpoint): retrying cannot help.
        _ => Failure {
            transient: false,
            ambiguous: false,
            status: None,
            code: None,
            region_hint: None,
            detail,
        },
    }
}

/// "… expecting 'eu-west-1'" in AuthorizationHeaderMalformed messages.
fn region_from_message(msg: Option<&str>) -> Option<String> {
    let msg = msg?;
    let at = msg.find("expecting '")? + "expecting '".len();
    let rest = &msg[at..];
    Some(rest[..rest.find('\'')?].to_owned())
}

pub(super) fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The sleep before retry number `n` (0-based): full jitter.
pub(super) fn backoff(n: u32) -> Duration {
    let ceiling = BACKOFF_BASE
        .saturating_mul(1u32.checked_shl(n.min(16)).unwrap_or(u32::MAX))
        .min(BACKOFF_CAP);
    ceiling.mul_f64(rand::thread_rng().r#gen::<f64>())
}

/// Runs `attempt` until it succeeds, fails for good, or `deadline` would
/// pass. Returns the result and whether any failed attempt was ambiguous.
pub(super) async fn run<T, F, Fut>(
    what: &str,
    key: &str,
    deadline: Duration,
    mut attempt: F,
) -> (Result<T, Failure>, bool)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Failure>>,
{
    let start = Instant::now();
    let mut ambiguous = false;
    let mut n = 0u32;
    loop {
        let failure = match attempt().await {
            Ok(v) => {
                if n > 0 {
                    log::info!("{what} {key}: succeeded after {n} retries");
                }
                return (Ok(v), ambiguous);
            }
            Err(f) => f,
        };
        ambiguous |= failure.ambiguous;
        if !failure.transient {
            return (Err(failure), ambiguous);
        }
        let sleep = backoff(n);
        if start.elapsed() + sleep >= deadline {
            log::warn!(
                "{what} {key}: giving up after {} attempts in {:.1}s: {}",
                n + 1,
                start.elapsed().as_secs_f64(),
                failure.detail
            );
            return (Err(failure), ambiguous);
        }
        // The first retry and then every tenth: an outage of a minute
        // should not flood the log.
        if n % 10 == 0 {
            log::warn!(
                "{what} {key}: {} (attempt {}); retrying until {}s have passed",
                failure.detail,
                n + 1,
                deadline.as_secs()
            );
        }
        tokio::time::sleep(sleep).await;
        n += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_the_cap_with_jitter() {
        for n in 0..40 {
            let ceiling = BACKOFF_BASE.saturating_mul(1 << n.min(16)).min(BACKOFF_CAP);
            for _ in 0..20 {
                assert!(backoff(n) <= ceiling, "{n}");
            }
        }
        let late: Vec<Duration> = (0..50).map(|_| backoff(30)).collect();
        assert!(late.iter().any(|d| *d > BACKOFF_CAP / 2));
        assert!(late.iter().any(|d| *d < BACKOFF_CAP / 2));
    }

    #[test]
    fn region_hints_from_messages() {
        let m = "The authorization header is malformed; the region 'us-east-1' is wrong; expecting 'eu-west-1'";
        assert_eq!(region_from_message(Some(m)), Some("eu-west-1".into()));
        assert_eq!(region_from_message(Some("nothing")), None);
        assert_eq!(region_from_message(None), None);
    }
}
