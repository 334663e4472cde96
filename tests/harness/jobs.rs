//! Every check runs in a process of its own: a copy of this test binary,
//! started with `LAB_JOB` set, runs one check on one set of answers and
//! prints one report line. Process-global state in an answer (its own lock
//! map, an in-flight map, a memo) therefore starts as fresh as in a newly
//! started application, and a thread stuck in learner code dies with its
//! process.
//!
//! Jobs are queued in lab order and run by a fixed number of workers, so
//! checks still run in parallel (across processes) while the results can be
//! reported in order.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::sync::{Arc, Condvar, Mutex, mpsc};
use std::time::{Duration, Instant};

use cache_aside_lab::labkit::testkit::timeline::{self, Event};
use cache_aside_lab::labkit::testkit::{self, panics};
use serde::{Deserialize, Serialize};

use crate::checks::{Failure, Outcome, marks};

/// The environment variable that makes this binary a job's child.
const JOB_ENV: &str = "LAB_JOB";
/// Prefixes the report line, so that it can't be mistaken for the output of
/// learner code (which may print anything).
const MARKER: &str = "\u{1e}lab-report ";
/// A child that has not finished after this long is killed. Checks bound
/// their own waits far below it; this is only the safety net.
const JOB_LIMIT: Duration = Duration::from_secs(60);

/// One check on one set of answers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Job {
    pub answers: String,
    pub check: String,
}

/// What one job came to. The child sends it as its report line (without
/// `output`, which the parent adds); a child that dies without a report
/// counts as a setup failure that says why.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Done {
    pub outcome: Outcome,
    /// Spaces kept for inspection (`LAB_KEEP_FAILED`): (schema, key prefix).
    pub kept: Vec<(String, String)>,
    /// What the answers did, call by call, the culprit step marked.
    #[serde(default)]
    pub timeline: Vec<Event>,
    /// What the child printed (learner code's own output), unless streamed.
    #[serde(skip)]
    pub output: String,
}

#[derive(Default)]
struct Queue {
    jobs: VecDeque<(Job, mpsc::Sender<Done>)>,
    closed: bool,
}

/// A fixed number of workers, each running one child process at a time.
pub struct Pool {
    queue: Mutex<Queue>,
    more: Condvar,
    stream: bool,
}

impl Pool {
    /// `stream`: pass the children's output through as it comes
    /// (`--nocapture`) instead of keeping it for the report.
    pub fn start(workers: usize, stream: bool) -> Arc<Pool> {
        let pool = Arc::new(Pool {
            queue: Mutex::default(),
            more: Condvar::new(),
            stream,
        });
        for _ in 0..workers.max(1) {
            let pool = pool.clone();
            std::thread::spawn(move || pool.work());
        }
        pool
    }

    /// Queues `job`; its result arrives on the receiver.
    pub fn submit(&self, job: Job) -> mpsc::Receiver<Done> {
        let (tx, rx) = mpsc::channel();
        let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        queue.jobs.push_back((job, tx));
        self.more.notify_one();
        rx
    }

    fn work(&self) {
        loop {
            let next = {
                let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
                loop {
                    if let Some(next) = queue.jobs.pop_front() {
                        break Some(next);
                    }
                    if queue.closed {
                        break None;
                    }
                    queue = self.more.wait(queue).unwrap_or_else(|e| e.into_inner());
                }
            };
            let Some((job, tx)) = next else { return };
            let _ = tx.send(run_child(&job, self.stream));
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.queue.lock().unwrap_or_else(|e| e.into_inner()).closed = true;
        self.more.notify_all();
    }
}

/// Starts the child for `job` and waits for its report.
fn run_child(job: &Job, stream: bool) -> Done {
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => return crashed(format!("cannot find the test binary: {e}"), String::new()),
    };
    let spawned = Command::new(exe)
        .env(JOB_ENV, serde_json::to_string(job).expect("jobs serialize"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) => {
            return crashed(
                format!("cannot start the check's process: {e}"),
                String::new(),
            );
        }
    };
    let (tx, rx) = mpsc::channel::<Line>();
    read_lines(child.stdout.take().expect("piped"), tx.clone(), false);
    read_lines(child.stderr.take().expect("piped"), tx, true);
    let deadline = Instant::now() + JOB_LIMIT;
    let (mut report, mut output, mut ended) = (None, String::new(), 0);
    while ended < 2 {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(Line::Text { text, stderr }) => match text.strip_prefix(MARKER) {
                Some(json) => report = serde_json::from_str::<Done>(json).ok(),
                None if stream => {
                    if stderr {
                        eprintln!("{text}");
                    } else {
                        println!("{text}");
                    }
                }
                None => {
                    output.push_str(&text);
                    output.push('\n');
                }
            },
            Ok(Line::End) => ended += 1,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                return crashed(
                    format!(
                        "the check's process had not finished after {JOB_LIMIT:?} and was stopped"
                    ),
                    output,
                );
            }
        }
    }
    let status = child.wait();
    match report {
        Some(report) => Done { output, ..report },
        None => {
            let status = status.map_or_else(|e| e.to_string(), |s| s.to_string());
            crashed(
                format!(
                    "the check's process exited ({status}) without a report: did the code under test call exit() or abort (a stack overflow, say)?"
                ),
                output,
            )
        }
    }
}

/// A job whose child gave no report: a setup failure that says why.
pub fn crashed(why: String, output: String) -> Done {
    Done {
        outcome: Err(Failure::Setup(why)),
        kept: Vec::new(),
        timeline: Vec::new(),
        output,
    }
}

enum Line {
    Text {
        text: String,
        stderr: bool,
    },
    /// One of the two streams ended.
    End,
}

fn read_lines(stream: impl Read + Send + 'static, tx: mpsc::Sender<Line>, stderr: bool) {
    std::thread::spawn(move || {
        for text in BufReader::new(stream).lines().map_while(Result::ok) {
            let _ = tx.send(Line::Text { text, stderr });
        }
        let _ = tx.send(Line::End);
    });
}

/// The job this process was started for, if it is a job's child.
pub fn job_from_env() -> Option<Job> {
    let text = std::env::var(JOB_ENV).ok()?;
    Some(serde_json::from_str(&text).expect("LAB_JOB holds a job"))
}

/// The child's side: runs `check` on `answers`, prints the report line and
/// exits (whatever threads of learner code are still stuck).
pub fn serve(check: impl FnOnce() -> Outcome) -> ! {
    panics::install_quiet_hook();
    let keep = std::env::var_os("LAB_KEEP_FAILED").is_some();
    if keep {
        testkit::keep_spaces();
    }
    timeline::start();
    let mut outcome =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(check)).unwrap_or_else(|payload| {
            let panic = panics::Panic::from_payload(&*payload);
            Err(Failure::Setup(format!("the check itself failed: {panic}")))
        });
    // A setup labkit found unusable (a Redis user who may not run scripts,
    // say) decides the verdict, whatever the check made of the answers:
    // code that carries on past a failed cache call would otherwise be
    // judged by what the broken setup made of it, with the wrong hint.
    if let Some(e) = testkit::misconfiguration() {
        outcome = Err(Failure::Setup(e.to_string()));
    }
    // Kept only when the check failed; a passing check leaves nothing.
    let kept = testkit::release_kept(!keep || outcome.is_ok());
    marks::apply();
    let report = Done {
        outcome,
        kept,
        timeline: timeline::stop(),
        output: String::new(),
    };
    let line = serde_json::to_string(&report).expect("reports serialize");
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{MARKER}{line}");
    let _ = stdout.flush();
    testkit::finish();
    std::process::exit(0)
}
