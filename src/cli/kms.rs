//! AWS KMS for keyslots: encrypt a new KMS slot's private key, decrypt it
//! at mount time with the host's IAM role.
//!
//! The client is the S3 store's sibling: the same SDK family, credential
//! chain, region rules and rustls HTTPS client, and its own tokio runtime
//! (current-thread, dropped with the client) — never a static one, because
//! `mount` unwraps its key in the foreground and then forks, and a
//! runtime's threads would not survive the fork. The endpoint the SDK
//! resolves (`AWS_ENDPOINT_URL_KMS`, `AWS_ENDPOINT_URL`, the profile) is
//! held to the same plain-HTTP rule as the store's.
//!
//! Every call carries the slot's encryption context (volume id and slot
//! id, [`crate::crypto::slot::kms_context`]): KMS refuses to decrypt a blob
//! under any other context, so a slot copied to another volume or slot is
//! useless, and CloudTrail logs every unwrap with the volume it was for.
//!
//! Errors are one line naming the key: a refusal by IAM or a key policy
//! (`AccessDeniedException`), a disabled or missing key, or KMS out of
//! reach are exit 3; a blob KMS will not decrypt under this context
//! (`InvalidCiphertextException`: the slot belongs elsewhere) is exit 2.

use std::collections::HashMap;
use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_sdk_kms::Client;
use aws_sdk_kms::config::Region;
use aws_sdk_kms::config::http::HttpResponse;
use aws_sdk_kms::config::timeout::TimeoutConfig;
use aws_sdk_kms::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_kms::primitives::Blob;
use tokio::runtime::Runtime;
use zeroize::Zeroizing;

use super::args::S3Args;
use super::error::{CliError, CliResult, EXIT_STORE, EXIT_WRONG_KEY};
use crate::store::{check_url, sdk_endpoint};

/// A KMS client on its own runtime; drop it before forking.
pub struct Kms {
    client: Client,
    rt: Runtime,
}

impl Kms {
    /// Connects with the default credential chain; the region is
    /// `--region`, else `AWS_REGION` or the profile. Nothing is sent yet.
    pub fn connect(s3: &S3Args) -> CliResult<Kms> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| CliError::new(EXIT_STORE, format!("cannot start the KMS client: {e}")))?;
        let client = rt.block_on(async {
            let mut loader = aws_config::defaults(BehaviorVersion::latest()).timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(5))
                    .operation_timeout(Duration::from_secs(20))
                    .build(),
            );
            if let Some(region) = &s3.region {
                loader = loader.region(Region::new(region.clone()));
            }
            let shared = loader.load().await;
            if let Some(url) = sdk_endpoint(&shared, "KMS") {
                check_url(&url, s3.allow_http)
                    .map_err(|why| CliError::usage(format!("KMS: {why}")))?;
            }
            if shared.region().is_none() {
                return Err(CliError::usage(
                    "KMS needs a region: set AWS_REGION or --region",
                ));
            }
            Ok(Client::new(&shared))
        })?;
        Ok(Kms { client, rt })
    }

    /// Encrypts `plain` under `key_id` with `context`.
    pub fn encrypt(
        &self,
        key_id: &str,
        plain: &[u8],
        context: &[(String, String)],
    ) -> CliResult<Vec<u8>> {
        let req = self
            .client
            .encrypt()
            .key_id(key_id)
            .plaintext(Blob::new(plain.to_vec()))
            .set_encryption_context(Some(to_map(context)));
        let out = self
            .rt
            .block_on(req.send())
            .map_err(|e| failure("encrypt with", key_id, &e))?;
        out.ciphertext_blob
            .map(Blob::into_inner)
            .ok_or_else(|| CliError::new(EXIT_STORE, format!("KMS key {key_id}: no ciphertext")))
    }

    /// Decrypts `blob` (made under `key_id` with `context`).
    pub fn decrypt(
        &self,
        key_id: &str,
        blob: &[u8],
        context: &[(String, String)],
    ) -> CliResult<Zeroizing<Vec<u8>>> {
        let req = self
            .client
            .decrypt()
            .key_id(key_id)
            .ciphertext_blob(Blob::new(blob.to_vec()))
            .set_encryption_context(Some(to_map(context)));
        let out = self
            .rt
            .block_on(req.send())
            .map_err(|e| failure("decrypt with", key_id, &e))?;
        out.plaintext
            .map(|b| Zeroizing::new(b.into_inner()))
            .ok_or_else(|| CliError::new(EXIT_STORE, format!("KMS key {key_id}: no plaintext")))
    }
}

fn to_map(context: &[(String, String)]) -> HashMap<String, String> {
    context.iter().cloned().collect()
}

/// One line naming the key and what KMS (or the way to it) said.
fn failure<E>(what: &str, key_id: &str, e: &SdkError<E, HttpResponse>) -> CliError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match e {
        SdkError::ServiceError(inner) => {
            let err = inner.err();
            let status = inner.raw().status().as_u16();
            // moto (and a proxy in front of KMS) may answer a denial
            // without a parseable error code: the HTTP status says it.
            let code = match (err.code(), status) {
                (Some(code), _) => code,
                (None, 403) => "AccessDeniedException",
                (None, _) => "error",
            };
            let msg = err.message().unwrap_or("").trim();
            let detail = match (msg.is_empty(), status) {
                (false, _) => format!("{code}: {msg}"),
                (true, s) => format!("{code} (HTTP {s})"),
            };
            let exit = match code {
                // The blob is not this key's under this context: the slot
                // was made for another volume or slot (or was altered).
                "InvalidCiphertextException" | "IncorrectKeyException" => EXIT_WRONG_KEY,
                _ => EXIT_STORE,
            };
            let verb = match code {
                "AccessDeniedException" => "denied",
                _ => "refused",
            };
            CliError::new(
                exit,
                format!("KMS {verb} the request to {what} key {key_id}: {detail}"),
            )
        }
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) => CliError::new(
            EXIT_STORE,
            format!("KMS is unreachable (key {key_id}): {}", one_line(e)),
        ),
        other => CliError::new(
            EXIT_STORE,
            format!("KMS failed to {what} key {key_id}: {}", one_line(other)),
        ),
    }
}

fn one_line(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}
