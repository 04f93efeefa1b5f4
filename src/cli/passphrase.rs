//! Where the passphrase comes from, in order: a passphrase or key file
//! named by a flag, the `SEALEDFS_PASSPHRASE` variable, a file named by the
//! config file, a prompt on a terminal (`settings` ranks the files).
//!
//! A passphrase file holds text: one trailing newline is dropped, as
//! `echo pass > file` leaves one. A key file is used byte for byte, so it
//! may hold random binary data (`head -c 64 /dev/urandom > key`); both
//! unlock a keyslot the same way. Either is refused when empty, and a
//! file that other users may read is used with a warning.
//!
//! The variables (`SEALEDFS_PASSPHRASE`, and `SEALEDFS_NEW_PASSPHRASE` for
//! key commands) are taken out of the environment as soon as the command
//! starts (whichever source wins), so neither the daemon nor any helper it
//! runs (`fusermount3`) ever carries them. Removing a variable is not
//! enough: `unsetenv` only drops the pointer, and the bytes stay in the
//! process's original environment block, which `/proc/PID/environ` shows
//! for the daemon's whole life (it is forked, not re-executed). So the
//! value is overwritten in place first ([`wipe_in_place`]). Passphrase
//! bytes live in `Zeroizing` buffers and are wiped when dropped.
//!
//! New passphrases (`init`, `key add`, `key passwd`) must be strong: at
//! least [`MIN_PASSPHRASE_CHARS`] characters and a zxcvbn score of 3 ("safely
//! unguessable") or more, unless `--weak-passphrase`. Key files are random
//! bytes and are not judged.

use std::ffi::OsString;
use std::io::{self, IsTerminal, Read};
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use super::error::{CliError, CliResult};

pub const ENV_VAR: &str = "SEALEDFS_PASSPHRASE";
/// A new passphrase for `key add` and `key passwd`.
pub const NEW_ENV_VAR: &str = "SEALEDFS_NEW_PASSPHRASE";
/// Shortest new passphrase accepted without `--weak-passphrase`.
pub const MIN_PASSPHRASE_CHARS: usize = 12;

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
    take_var(ENV_VAR)
}

/// Takes `SEALEDFS_NEW_PASSPHRASE` out of the environment, as [`take_env`].
pub fn take_new_env() -> Option<Passphrase> {
    take_var(NEW_ENV_VAR)
}

fn take_var(name: &str) -> Option<Passphrase> {
    let value = std::env::var_os(name);
    wipe_in_place(name);
    // SAFETY: called before any thread is started (see `cli::main`), so no
    // other thread can be reading the environment.
    unsafe { std::env::remove_var(name) };
    value.map(|v: OsString| Zeroizing::new(v.into_vec()))
}

unsafe extern "C" {
    /// The C library's environment array (POSIX `environ`).
    static mut environ: *mut *mut libc::c_char;
}

/// Overwrites the value of every `NAME=value` entry of the environment
/// with zero bytes where it lies, so that neither `/proc/PID/environ` nor
/// a core file shows it once the variable is removed.
fn wipe_in_place(name: &str) {
    let mut prefix = name.as_bytes().to_vec();
    prefix.push(b'=');
    // SAFETY: single-threaded here (see `take_env`); `environ` is a
    // NULL-terminated array of NUL-terminated strings owned by the C
    // library, each writable (the initial block on the stack, or memory
    // from setenv); only bytes before each string's NUL are written.
    unsafe {
        let mut entry = environ;
        if entry.is_null() {
            return;
        }
        while !(*entry).is_null() {
            let text = *entry;
            let bytes = std::ffi::CStr::from_ptr(text).to_bytes();
            if bytes.starts_with(&prefix) {
                for i in prefix.len()..bytes.len() {
                    std::ptr::write_volatile(text.add(i), 0);
                }
            }
            entry = entry.add(1);
        }
    }
}

/// Refuses a new passphrase that is short or easy to guess; `what` names
/// it in the message. Not applied to key files.
pub fn check_strength(pass: &[u8]) -> CliResult<()> {
    let weak = |why: String| {
        Err(CliError::usage(format!(
            "passphrase refused: {why}; choose a longer one (several unrelated words), \
             or pass --weak-passphrase to use it anyway"
        )))
    };
    let text = String::from_utf8_lossy(pass);
    let chars = text.chars().count();
    if chars < MIN_PASSPHRASE_CHARS {
        return weak(format!(
            "{chars} characters, fewer than {MIN_PASSPHRASE_CHARS}"
        ));
    }
    let entropy = zxcvbn::zxcvbn(&text, &["sealedfs", "passphrase", "password"]);
    if u8::from(entropy.score()) < 3 {
        let hint = entropy
            .feedback()
            .and_then(|f| f.warning())
            .map(|w| format!(" ({w})"))
            .unwrap_or_default();
        return weak(format!("too easy to guess{hint}"));
    }
    Ok(())
}

/// A file holding the secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Secret {
    /// Text; one trailing newline is dropped.
    PassphraseFile(PathBuf),
    /// Bytes, used as they are.
    KeyFile(PathBuf),
}

impl Secret {
    /// The secret a command's `--passphrase-file` / key-file flags name (a
    /// passphrase file first), or `None` for the environment or a prompt.
    pub fn from_flags(
        passphrase_file: Option<&PathBuf>,
        key_file: Option<&PathBuf>,
    ) -> Option<Secret> {
        match (passphrase_file, key_file) {
            (Some(p), _) => Some(Secret::PassphraseFile(p.clone())),
            (None, Some(k)) => Some(Secret::KeyFile(k.clone())),
            (None, None) => None,
        }
    }
}

/// Larger files are not key files (a typo naming a disk image or a device).
const MAX_SECRET_FILE: u64 = 64 << 10;

/// Picks the passphrase: a `--passphrase-file` when given, else
/// `from_env` (what [`take_env`] returned), else a prompt on a terminal.
pub fn obtain(
    file: Option<&Path>,
    from_env: Option<Passphrase>,
    prompt: Prompt,
) -> CliResult<Passphrase> {
    let file = file.map(|p| Secret::PassphraseFile(p.to_path_buf()));
    obtain_from(file.as_ref(), from_env, prompt)
}

/// Picks the passphrase: `file` when given (the caller ranked it above or
/// below the environment, see `settings`), else `from_env` (what
/// [`take_env`] returned), else a prompt on a terminal.
pub fn obtain_from(
    file: Option<&Secret>,
    from_env: Option<Passphrase>,
    prompt: Prompt,
) -> CliResult<Passphrase> {
    match file {
        Some(Secret::PassphraseFile(path)) => {
            return Ok(strip_newline(&read_secret(path, "passphrase")?));
        }
        Some(Secret::KeyFile(path)) => return read_secret(path, "key"),
        None => {}
    }
    if let Some(p) = from_env {
        return Ok(p);
    }
    if io::stdin().is_terminal() {
        return ask(prompt);
    }
    Err(CliError::usage(
        "no passphrase: give --passphrase-file FILE or --key-file FILE (-o passphrase_file=FILE \
         in fstab), SEALEDFS_PASSPHRASE, or run on a terminal",
    ))
}

fn read_secret(path: &Path, what: &str) -> CliResult<Passphrase> {
    let fail =
        |e: io::Error| CliError::usage(format!("cannot read {what} file {}: {e}", path.display()));
    let file = std::fs::File::open(path).map_err(fail)?;
    let meta = file.metadata().map_err(fail)?;
    if !meta.is_file() {
        return Err(CliError::usage(format!(
            "{what} file {} is not a regular file",
            path.display()
        )));
    }
    if meta.permissions().mode() & 0o077 != 0 {
        log::warn!(
            "{what} file {} may be read by other users: chmod 600 it",
            path.display()
        );
    }
    let mut bytes = Zeroizing::new(Vec::new());
    file.take(MAX_SECRET_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(fail)?;
    if bytes.len() as u64 > MAX_SECRET_FILE {
        return Err(CliError::usage(format!(
            "{what} file {} is larger than {} KiB: not a {what} file",
            path.display(),
            MAX_SECRET_FILE >> 10
        )));
    }
    if bytes.is_empty() {
        return Err(CliError::usage(format!(
            "{what} file {} is empty",
            path.display()
        )));
    }
    Ok(bytes)
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
    fn weak_passphrases_are_refused() {
        for weak in [
            &b"short"[..],
            b"password1234",
            b"aaaaaaaaaaaaaaaa",
            b"e2e passphrase",
        ] {
            let e = check_strength(weak).unwrap_err();
            assert_eq!(e.code, 1);
            assert!(e.msg.starts_with("passphrase refused: "), "{}", e.msg);
        }
        check_strength(b"staple orbit marmalade quiver").unwrap();
    }

    /// The value's bytes are overwritten where the C library keeps them,
    /// then the variable is gone.
    #[test]
    fn the_variable_is_wiped_in_place() {
        let name = "SEALEDFS_TEST_WIPE";
        // SAFETY: this test's variable is read by no other test.
        unsafe { std::env::set_var(name, "hunter2-secret") };
        let ptr = unsafe { libc::getenv(c"SEALEDFS_TEST_WIPE".as_ptr()) };
        assert!(!ptr.is_null());
        let taken = take_var(name).unwrap();
        assert_eq!(taken.as_slice(), b"hunter2-secret");
        assert!(std::env::var_os(name).is_none());
        // The old string (still allocated: unsetenv never frees it) holds
        // zeros now.
        let left = unsafe { std::slice::from_raw_parts(ptr.cast::<u8>(), 14) };
        assert_eq!(left, &[0u8; 14]);
    }

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
        let file = Secret::PassphraseFile(path.clone());
        let p = obtain_from(Some(&file), env, Prompt::Once).unwrap();
        assert_eq!(p.as_slice(), b"from-file");
        // A key file is taken byte for byte, newline and all.
        let key = Secret::KeyFile(path);
        let p = obtain_from(Some(&key), None, Prompt::Once).unwrap();
        assert_eq!(p.as_slice(), b"from-file\n");
        let env = Some(Zeroizing::new(b"from-env".to_vec()));
        assert_eq!(
            obtain(None, env, Prompt::Once).unwrap().as_slice(),
            b"from-env"
        );
        let path = dir.path().join("pass");
        let p = obtain(Some(&path), None, Prompt::Once).unwrap();
        assert_eq!(p.as_slice(), b"from-file");
    }

    #[test]
    fn unusable_files_are_usage_errors() {
        let missing = Secret::PassphraseFile("/nonexistent/pass".into());
        let e = obtain_from(Some(&missing), None, Prompt::Once).unwrap_err();
        assert_eq!(e.code, 1);
        assert!(
            e.msg
                .starts_with("cannot read passphrase file /nonexistent/pass")
        );
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty");
        std::fs::write(&empty, b"").unwrap();
        let e = obtain_from(Some(&Secret::KeyFile(empty)), None, Prompt::Once).unwrap_err();
        assert!(e.msg.ends_with("is empty"), "{}", e.msg);
        let big = dir.path().join("big");
        std::fs::write(&big, vec![7u8; (MAX_SECRET_FILE + 1) as usize]).unwrap();
        let e = obtain_from(Some(&Secret::KeyFile(big)), None, Prompt::Once).unwrap_err();
        assert!(e.msg.contains("larger than 64 KiB"), "{}", e.msg);
        let e = obtain_from(
            Some(&Secret::KeyFile(dir.path().to_path_buf())),
            None,
            Prompt::Once,
        )
        .unwrap_err();
        assert!(e.msg.ends_with("is not a regular file"), "{}", e.msg);
    }
}
