//! `--json`: one convention for the machine-readable output of every
//! command that reports something (`status`, `fsck`, `key list`,
//! `snapshot list`, `audit`, …).
//!
//! The convention:
//! - a command takes the flag by flattening [`JsonFlag`] into its args
//!   (`#[command(flatten)] pub json: JsonFlag`), so the flag is spelt and
//!   documented the same everywhere;
//! - with `--json`, stdout carries JSON and nothing else: **one object**
//!   for a report ([`Report::one`]: `status`, `fsck`), or **one object per
//!   line** (JSON Lines, [`Report::item`]) for a list (`key list`,
//!   `snapshot list`, `audit`), so a consumer can stream a long list and
//!   `jq` reads both;
//! - field names are `snake_case`; sizes are integers in bytes with a
//!   `_bytes` suffix; times are RFC 3339 strings in UTC; ids and hashes
//!   are lowercase hex strings; absent values are `null`, not missing;
//! - the human form and the JSON form print the same struct: derive
//!   `Serialize` on it and give [`Report`] a function for the text;
//! - errors are never JSON: the one-line `sealedfs: reason` on stderr and
//!   the exit code, exactly as without `--json`; progress bars stay on
//!   stderr (see `progress`), so stdout remains parseable;
//! - a closed stdout (`sealedfs … --json | head -1`) ends the output
//!   quietly instead of failing the command.

use std::io::{self, Write};

use clap::Args;
use serde::Serialize;

use super::error::{CliError, CliResult};

/// `--json`, for flattening into a command's arguments.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Args)]
pub struct JsonFlag {
    /// Print JSON on stdout (one object, or one object per line for lists).
    #[arg(long)]
    pub json: bool,
}

/// Where a command's results go: JSON or text, to stdout or (in tests)
/// any writer.
pub struct Report<W: Write> {
    json: bool,
    out: W,
    /// Set once a write found the reader gone; later writes are skipped.
    closed: bool,
}

impl Report<io::Stdout> {
    pub fn stdout(flag: JsonFlag) -> Report<io::Stdout> {
        Report::new(flag.json, io::stdout())
    }
}

impl<W: Write> Report<W> {
    pub fn new(json: bool, out: W) -> Report<W> {
        Report {
            json,
            out,
            closed: false,
        }
    }

    pub fn is_json(&self) -> bool {
        self.json
    }

    /// A report: one JSON object, or `human(value)` as text.
    pub fn one<T: Serialize>(
        &mut self,
        value: &T,
        human: impl FnOnce(&T) -> String,
    ) -> CliResult<()> {
        let text = if self.json {
            to_line(value)?
        } else {
            with_newline(human(value))
        };
        self.write(&text)
    }

    /// One item of a list: one line of JSON, or `human(item)` as text.
    pub fn item<T: Serialize>(
        &mut self,
        item: &T,
        human: impl FnOnce(&T) -> String,
    ) -> CliResult<()> {
        self.one(item, human)
    }

    fn write(&mut self, text: &str) -> CliResult<()> {
        if self.closed {
            return Ok(());
        }
        match self
            .out
            .write_all(text.as_bytes())
            .and_then(|()| self.out.flush())
        {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
                self.closed = true;
                Ok(())
            }
            Err(e) => Err(CliError::usage(format!("cannot write the output: {e}"))),
        }
    }
}

/// `value` as one line of JSON with its newline.
pub fn to_line<T: Serialize>(value: &T) -> CliResult<String> {
    serde_json::to_string(value)
        .map(with_newline)
        .map_err(|e| CliError::usage(format!("cannot encode the output as JSON: {e}")))
}

fn with_newline(mut s: String) -> String {
    if !s.ends_with('\n') {
        s.push('\n');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize)]
    struct Slot {
        slot: u8,
        label: Option<String>,
        size_bytes: u64,
    }

    fn slots() -> Vec<Slot> {
        vec![
            Slot {
                slot: 0,
                label: Some("admin \"root\"\nkey".into()),
                size_bytes: 1 << 40,
            },
            Slot {
                slot: 3,
                label: None,
                size_bytes: 0,
            },
        ]
    }

    fn human(s: &Slot) -> String {
        format!("slot {}", s.slot)
    }

    #[test]
    fn lists_are_json_lines_and_text_is_text() {
        let mut out = Vec::new();
        let mut report = Report::new(true, &mut out);
        for s in slots() {
            report.item(&s, human).unwrap();
        }
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["label"], "admin \"root\"\nkey");
        assert_eq!(lines[0]["size_bytes"], 1u64 << 40);
        assert!(lines[1]["label"].is_null());

        let mut out = Vec::new();
        let mut report = Report::new(false, &mut out);
        for s in slots() {
            report.item(&s, human).unwrap();
        }
        assert_eq!(String::from_utf8(out).unwrap(), "slot 0\nslot 3\n");
    }

    #[test]
    fn a_closed_reader_ends_the_output_quietly() {
        struct Closed(usize);
        impl Write for Closed {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                self.0 += 1;
                Err(io::ErrorKind::BrokenPipe.into())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let mut report = Report::new(true, Closed(0));
        for s in slots() {
            report.one(&s, human).unwrap();
        }
        assert_eq!(report.out.0, 1);
    }

    #[test]
    fn the_flag_parses() {
        use clap::Parser;
        #[derive(Parser)]
        struct T {
            #[command(flatten)]
            json: JsonFlag,
        }
        assert!(T::try_parse_from(["t", "--json"]).unwrap().json.json);
        assert!(!T::try_parse_from(["t"]).unwrap().json.json);
    }
}
