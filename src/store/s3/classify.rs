//! Every S3 failure is classified once, here: transient (5xx, 429,
//! throttling codes, timeouts, connection errors, a broken body) or final
//! (everything the server decided: 403, 404, 412, a wrong region …). The
//! SDK's own retries are off; [`crate::store::RetryingStore`] retries the
//! transient ones under the volume's one deadline.

use std::error::Error;

use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

/// Why one attempt failed, reduced to what callers decide on.
#[derive(Debug)]
pub(super) struct Failure {
    pub transient: bool,
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
    let detail = concise(&DisplayErrorContext(&err).to_string());
    match &err {
        SdkError::ServiceError(service) => {
            let raw = service.raw();
            let status = raw.status().as_u16();
            let code = service.err().code().map(str::to_owned);
            // The SDK's text of a service error it could not parse holds
            // the whole response; the status, code and message say it all.
            let detail = match (&code, service.err().message()) {
                (Some(c), Some(m)) => format!("HTTP {status} {c}: {}", one_line(m)),
                (Some(c), None) => format!("HTTP {status} {c}"),
                _ => format!("HTTP {status}"),
            };
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

/// One line without the debug dumps the SDK appends in parentheses (a
/// `Debug` of its error types, with braces), at most 300 characters.
fn concise(s: &str) -> String {
    let line = one_line(s);
    let cut = line
        .match_indices(" (")
        .map(|(i, _)| i)
        .find(|&i| line[i..].contains('{'))
        .unwrap_or(line.len());
    line[..cut].chars().take(300).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn details_drop_debug_dumps() {
        let sdk = "service error: unhandled error: error parsing XML: no root element \
                   (ServiceError(ServiceError { source: Unhandled(Unhandled { .. }) }))";
        assert_eq!(
            concise(sdk),
            "service error: unhandled error: error parsing XML: no root element"
        );
        let plain = "dispatch failure: io error: Connection refused (os error 111)";
        assert_eq!(concise(plain), plain);
    }

    #[test]
    fn region_hints_from_messages() {
        let m = "The authorization header is malformed; the region 'us-east-1' is wrong; expecting 'eu-west-1'";
        assert_eq!(region_from_message(Some(m)), Some("eu-west-1".into()));
        assert_eq!(region_from_message(Some("nothing")), None);
        assert_eq!(region_from_message(None), None);
    }
}
