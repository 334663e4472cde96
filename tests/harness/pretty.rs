//! libtest's human output (`--format pretty` and `terse`), written here
//! rather than by libtest-mimic.
//!
//! libtest-mimic prints a failure under `---- name ----`, where libtest
//! itself prints `---- name stdout ----`, and tools that read test output
//! (bacon, the watch loop the README suggests) look for exactly libtest's
//! line. So these formats are printed here, line for line as libtest prints
//! them; `--list` stays libtest-mimic's.

use std::io::{IsTerminal, Write};
use std::time::Instant;

use libtest_mimic::{Arguments, ColorSetting, FormatSetting};

use super::Printer;
use super::board::Board;
use super::judge::Verdict;

pub struct Pretty {
    terse: bool,
    color: bool,
    width: usize,
    started: Instant,
    failures: Vec<(String, String)>,
    counts: [usize; 3],
}

const GREEN: &str = "\x1b[32m";
const RED: &str = "\x1b[31m";
const YELLOW: &str = "\x1b[33m";
const RESET: &str = "\x1b[0m";

impl Pretty {
    /// Starts a run of `names` (those selected, ignored ones included),
    /// under `title`: whose answers are graded.
    pub fn start(args: &Arguments, title: &str, names: &[&str]) -> Pretty {
        let color = match args.color.unwrap_or(ColorSetting::Auto) {
            ColorSetting::Always => true,
            ColorSetting::Never => false,
            ColorSetting::Auto => std::io::stdout().is_terminal(),
        };
        let terse = args.quiet || matches!(args.format, Some(FormatSetting::Terse));
        let n = names.len();
        println!("\n{title}");
        println!("\nrunning {n} test{}", if n == 1 { "" } else { "s" });
        Pretty {
            terse,
            color,
            width: names.iter().map(|n| n.chars().count()).max().unwrap_or(0),
            started: Instant::now(),
            failures: Vec::new(),
            counts: [0; 3],
        }
    }

    fn paint(&self, color: &str, text: &str) -> String {
        if self.color {
            format!("{color}{text}{RESET}")
        } else {
            text.to_string()
        }
    }
}

impl Printer for Pretty {
    /// "test name ... "
    fn begin(&mut self, name: &str) {
        if !self.terse {
            print!("test {name:<0$} ... ", self.width);
            let _ = std::io::stdout().flush();
        }
    }

    fn verdict(&mut self, name: &str, verdict: &Verdict) {
        let (mark, word) = match verdict {
            Verdict::Passed => {
                self.counts[0] += 1;
                (self.paint(GREEN, "."), self.paint(GREEN, "ok"))
            }
            Verdict::Failed { message, .. } | Verdict::NotJudged { message, .. } => {
                self.counts[1] += 1;
                self.failures.push((name.to_string(), message.clone()));
                (self.paint(RED, "F"), self.paint(RED, "FAILED"))
            }
            Verdict::Ignored => {
                self.counts[2] += 1;
                (self.paint(YELLOW, "i"), self.paint(YELLOW, "ignored"))
            }
            Verdict::Skipped(reason) => {
                self.counts[2] += 1;
                let word = format!("ignored, {reason}");
                (self.paint(YELLOW, "i"), self.paint(YELLOW, &word))
            }
        };
        if self.terse {
            print!("{mark}");
            let _ = std::io::stdout().flush();
        } else {
            println!("{word}");
        }
    }

    fn timeline(&mut self, name: &str, text: &str) {
        println!("\n    what {name} saw your code do (time since the check began):");
        for line in text.lines() {
            println!("    {line}");
        }
        println!();
    }

    /// The failures, the result line, then the board if more than one
    /// trial was run; true if all passed.
    fn finish(self: Box<Self>, filtered_out: usize, board: &Board) -> bool {
        if self.terse {
            println!();
        }
        if !self.failures.is_empty() {
            println!("\nfailures:\n");
            for (name, message) in &self.failures {
                println!("---- {name} stdout ----\n{message}\n");
            }
            println!("\nfailures:");
            for (name, _) in &self.failures {
                println!("    {name}");
            }
        }
        let ok = self.failures.is_empty();
        let verdict = if ok {
            self.paint(GREEN, "ok")
        } else {
            self.paint(RED, "FAILED")
        };
        let [passed, failed, ignored] = self.counts;
        println!(
            "\ntest result: {verdict}. {passed} passed; {failed} failed; {ignored} ignored; 0 measured; {filtered_out} filtered out; finished in {:.2}s\n",
            self.started.elapsed().as_secs_f64()
        );
        if board.ran() > 1 {
            print!("{}", board.render());
        }
        ok
    }
}
