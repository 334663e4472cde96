//! libtest's machine output (`--format json -Z unstable-options`): one JSON
//! object a line, as libtest-mimic writes them, for the selected trials.
//! No title and no board: whatever reads this reads the events.

use std::io::Write;
use std::time::Instant;

use super::Printer;
use super::board::Board;
use super::judge::Verdict;

pub struct Json {
    started: Instant,
    /// passed, failed, ignored
    counts: [usize; 3],
}

/// `text` as the inside of a JSON string.
fn escape(text: &str) -> String {
    let quoted = serde_json::to_string(text).expect("strings serialize");
    quoted[1..quoted.len() - 1].to_string()
}

fn line(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{text}");
    let _ = out.flush();
}

impl Json {
    /// Starts a run of `count` selected trials.
    pub fn start(count: usize) -> Json {
        line(&format!(
            r#"{{ "type": "suite", "event": "started", "test_count": {count} }}"#
        ));
        Json {
            started: Instant::now(),
            counts: [0; 3],
        }
    }
}

impl Printer for Json {
    fn begin(&mut self, name: &str) {
        line(&format!(
            r#"{{ "type": "test", "event": "started", "name": "{}" }}"#,
            escape(name)
        ));
    }

    fn verdict(&mut self, name: &str, verdict: &Verdict) {
        let (event, stdout) = match verdict {
            Verdict::Passed => {
                self.counts[0] += 1;
                ("ok", String::new())
            }
            Verdict::Failed { message, .. } | Verdict::NotJudged { message, .. } => {
                self.counts[1] += 1;
                let stdout = format!(r#", "stdout": "Error: \"{}\"\n""#, escape(message));
                ("failed", stdout)
            }
            Verdict::Ignored | Verdict::Skipped(_) => {
                self.counts[2] += 1;
                ("ignored", String::new())
            }
        };
        line(&format!(
            r#"{{ "type": "test", "name": "{}", "event": "{event}"{stdout} }}"#,
            escape(name)
        ));
    }

    fn finish(self: Box<Self>, filtered_out: usize, _board: &Board) -> bool {
        let [passed, failed, ignored] = self.counts;
        let event = if failed > 0 { "failed" } else { "ok" };
        line(&format!(
            r#"{{ "type": "suite", "event": "{event}", "passed": {passed}, "failed": {failed}, "ignored": {ignored}, "measured": 0, "filtered_out": {filtered_out}, "exec_time": {} }}"#,
            self.started.elapsed().as_secs_f64()
        ));
        failed == 0
    }
}
