//! Where the passphrase comes from, in order: `--passphrase-file`, the
//! `SEALEDFS_PASSPHRASE` variable, a prompt on a terminal.
//!
//! The variable is removed from the environment as soon as the command
//! starts (whichever source wins), so neither the daemon nor any helper it
//! runs (`fusermount3`) ever carries it. Passphrase bytes live in
//! `Zeroizing` buffers and are wiped when dropped.

use std::ffi::OsString;
use std::io::{self, IsTerminal};
use std::os::unix::ffi::OsStringExt;
use std::path::Path;

use zeroize::Zeroizing;

use super::error::{CliError, CliResult};

pub const ENV_VAR: &str = "SEALEDFS_PASSPHRASE";

pub type Passphrase = Zeroizing<Vec<u8>>;

/// Whether a prompt asks twice (a new passphrase) or once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prompt {
    Once,
    Confirm,
}

/// Takes `SEALEDFS_PASSPHRASE` out of the environment.
///
/// Call first thing in a command, while the process has one thread.
pub fn take_env() -> Option<Passphrase> {
    let value = std::env::var_os(ENV_VAR);
    // SAFETY: called before any thread is started (see `cli::main`), so no
    // other thread can be reading the environment.
    unsafe { std::env::remove_var(ENV_VAR) };
    value.map(|v: OsString| Zeroizing::new(v.into_vec()))
}

/// Picks the passphrase by the documented order. `from_env` is what
/// [`take_env`] returned.
pub fn obtain(
    file: Option<&Path>,
    from_env: Option<Passphrase>,
    prompt: Prompt,
) -> CliResult<Passphrase> {
    if let Some(path) = file {
        let bytes = Zeroizing::new(std::fs::read(path).map_err(|e| {
            CliError::usage(format!(
                "cannot read passphrase file {}: {e}",
                path.display()
            ))
        })?);
        return Ok(strip_newline(&bytes));
    }
    if let Some(p) = from_env {
        return Ok(p);
    }
    if io::stdin().is_terminal() {
        return ask(prompt);
    }
    Err(CliError::usage(
        "no passphrase: use --passphrase-file, SEALEDFS_PASSPHRASE or a terminal",
    ))
}

/// Drops one trailing newline (`\n` or `\r\n`), as `echo pass > file`
/// leaves; any other whitespace is part of the passphrase.
pub fn strip_newline(bytes: &[u8]) -> Passphrase {
    let body = bytes
        .strip_suffix(b"\r\n")
        .or_else(|| bytes.strip_suffix(b"\n"))
        .unwrap_or(bytes);
    Zeroizing::new(body.to_vec())
}

fn ask(prompt: Prompt) -> CliResult<Passphrase> {
    let read = |text: &str| -> CliResult<Passphrase> {
        let s = Zeroizing::new(
            rpassword::prompt_password(text)
                .map_err(|e| CliError::usage(format!("cannot read passphrase: {e}")))?,
        );
        Ok(Zeroizing::new(s.as_bytes().to_vec()))
    };
    match prompt {
        Prompt::Once => read("Passphrase: "),
        Prompt::Confirm => {
            let first = read("New passphrase: ")?;
            let second = read("Repeat passphrase: ")?;
            if *first != *second {
                return Err(CliError::usage("passphrases do not match"));
            }
            Ok(first)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_trailing_newline_is_dropped() {
        let table: &[(&[u8], &[u8])] = &[
            (b"secret\n", b"secret"),
            (b"secret\r\n", b"secret"),
            (b"secret\n\n", b"secret\n"),
            (b"secret", b"secret"),
            (b" secret \n", b" secret "),
            (b"\n", b""),
            (b"", b""),
        ];
        for (input, want) in table {
            assert_eq!(strip_newline(input).as_slice(), *want, "{input:?}");
        }
    }

    #[test]
    fn file_wins_over_env() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pass");
        std::fs::write(&path, b"from-file\n").unwrap();
        let env = Some(Zeroizing::new(b"from-env".to_vec()));
        let p = obtain(Some(&path), env, Prompt::Once).unwrap();
        assert_eq!(p.as_slice(), b"from-file");
        let env = Some(Zeroizing::new(b"from-env".to_vec()));
        assert_eq!(
            obtain(None, env, Prompt::Once).unwrap().as_slice(),
            b"from-env"
        );
    }

    #[test]
    fn missing_file_is_usage_error() {
        let e = obtain(Some(Path::new("/nonexistent/pass")), None, Prompt::Once).unwrap_err();
        assert_eq!(e.code, 1);
    }
}
