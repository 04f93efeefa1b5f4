//! Progress bars for commands that walk a whole volume (`fsck --deep`,
//! `replicate`, key rotation, `audit verify`), on `indicatif`.
//!
//! Rules:
//! - a bar is drawn on **stderr, and only when stderr is a terminal** (and
//!   `TERM` is not `dumb`): under systemd, cron, CI or a pipe nothing is
//!   drawn and nothing is printed in its place, so logs and `--json` output
//!   stay clean. Code never checks this itself; it makes a [`Progress`]
//!   and calls it, drawn or not;
//! - a bar counts bytes ([`Progress::bytes`]) or items
//!   ([`Progress::items`]); with the total unknown it is a counter with a
//!   rate and no estimate;
//! - a line that must appear while a bar runs goes through
//!   [`Progress::println`] (above the bar, or plainly on stderr when no bar
//!   is drawn), never a bare `eprintln!`, which would tear the bar;
//! - the bar is cleared when the [`Progress`] is dropped, whatever the
//!   outcome: the command's own one-line result or error follows it;
//! - the message names what is counted ("segments", "objects"), never a
//!   file name or path (DESIGN.md: no names outside the audit trail).

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

pub struct Progress {
    bar: ProgressBar,
}

impl Progress {
    /// Counts bytes, e.g. of segments read and authenticated.
    pub fn bytes(what: &str, total: Option<u64>) -> Progress {
        Progress::new(what, total, Unit::Bytes, stderr_target())
    }

    /// Counts items, e.g. objects checked.
    pub fn items(what: &str, total: Option<u64>) -> Progress {
        Progress::new(what, total, Unit::Items, stderr_target())
    }

    fn new(what: &str, total: Option<u64>, unit: Unit, target: ProgressDrawTarget) -> Progress {
        let template = match (unit, total) {
            (Unit::Bytes, Some(_)) => {
                "{msg} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}"
            }
            (Unit::Bytes, None) => "{spinner} {msg} {bytes} {binary_bytes_per_sec}",
            (Unit::Items, Some(_)) => {
                "{msg} [{bar:30}] {human_pos}/{human_len} {per_sec} eta {eta}"
            }
            (Unit::Items, None) => "{spinner} {msg} {human_pos} {per_sec}",
        };
        let style = ProgressStyle::with_template(template)
            .expect("a valid template")
            .progress_chars("=> ");
        let bar = ProgressBar::with_draw_target(total, target)
            .with_style(style)
            .with_message(what.to_owned());
        Progress { bar }
    }

    /// A bar that draws nothing (tests, or a command told to be quiet).
    pub fn hidden(what: &str, total: Option<u64>) -> Progress {
        Progress::new(what, total, Unit::Items, ProgressDrawTarget::hidden())
    }

    pub fn inc(&self, n: u64) {
        self.bar.inc(n);
    }

    pub fn position(&self) -> u64 {
        self.bar.position()
    }

    /// Sets or changes the total once it is known.
    pub fn set_total(&self, total: u64) {
        self.bar.set_length(total);
    }

    pub fn is_hidden(&self) -> bool {
        self.bar.is_hidden()
    }

    /// Prints `line` on stderr without tearing the bar.
    pub fn println(&self, line: &str) {
        if self.bar.is_hidden() {
            eprintln!("{line}");
        } else {
            self.bar.println(line);
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.bar.finish_and_clear();
    }
}

#[derive(Clone, Copy)]
enum Unit {
    Bytes,
    Items,
}

fn stderr_target() -> ProgressDrawTarget {
    let term = std::env::var("TERM").ok();
    target(std::io::stderr().is_terminal(), term.as_deref())
}

fn target(stderr_is_terminal: bool, term: Option<&str>) -> ProgressDrawTarget {
    if drawn(stderr_is_terminal, term) {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    }
}

/// Whether a bar is drawn: on a terminal that can move the cursor.
fn drawn(stderr_is_terminal: bool, term: Option<&str>) -> bool {
    stderr_is_terminal && term != Some("dumb")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drawn_only_on_a_real_terminal() {
        assert!(drawn(true, Some("xterm-256color")));
        assert!(drawn(true, None));
        assert!(!drawn(true, Some("dumb")));
        assert!(!drawn(false, Some("xterm")));
        assert!(!drawn(false, None));
    }

    #[test]
    fn a_hidden_bar_still_counts() {
        let p = Progress::hidden("segments", None);
        assert!(p.is_hidden());
        p.inc(3);
        p.inc(4);
        p.set_total(10);
        assert_eq!(p.position(), 7);
        p.println("a line goes to stderr");
    }

    #[test]
    fn every_template_is_valid() {
        for unit in [Unit::Bytes, Unit::Items] {
            for total in [None, Some(100)] {
                let p = Progress::new("x", total, unit, ProgressDrawTarget::hidden());
                p.inc(1);
            }
        }
    }

    #[test]
    fn without_a_terminal_nothing_is_drawn() {
        assert!(target(false, Some("xterm")).is_hidden());
        assert!(target(true, Some("dumb")).is_hidden());
        let p = Progress::new("objects", None, Unit::Items, target(false, None));
        assert!(p.is_hidden());
    }
}
