//! Differential client runs: a client program prints one fact per line, each prefixed with its
//! step name (`step: fact`); it runs once directly against the primary and once through the
//! proxy, and every step whose lines differ must be explained by a list of deliberate
//! differences or of open bugs (each with its reason). Used by the client-library harnesses.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Upper bound for one build or one client run; they normally take well under a few seconds.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(120);

/// What a finished child process printed.
pub struct Run {
    /// How it exited.
    pub status: std::process::ExitStatus,
    /// Everything it printed on stdout.
    pub stdout: String,
    /// Everything it printed on stderr.
    pub stderr: String,
    /// How long it ran.
    pub took: Duration,
}

impl Run {
    /// The run, for a failure message or the test's output.
    pub fn report(&self, what: &str) -> String {
        format!(
            "{what}: {} after {:.1?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.status, self.took, self.stdout, self.stderr
        )
    }
}

/// Runs `cmd` to completion, killing it after [`CLIENT_TIMEOUT`]; panics when it cannot start,
/// times out or exits non-zero, with everything it printed. Blocking: call inside [`blocking`].
pub fn run_report(mut cmd: Command, what: &str) -> Run {
    let started = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{what}: cannot start {cmd:?}: {e}"));
    // Drain both pipes on their own threads so a chatty child never blocks on a full pipe.
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut text = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut text);
            }
            String::from_utf8_lossy(&text).into_owned()
        })
    };
    let stdout = drain(child.stdout.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let stderr = drain(child.stderr.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let (status, timed_out) = loop {
        if let Some(status) = child.try_wait().expect("wait for the child") {
            break (status, false);
        }
        if started.elapsed() > CLIENT_TIMEOUT {
            let _ = child.kill();
            break (child.wait().expect("wait for the killed child"), true);
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let run = Run {
        status,
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
        took: started.elapsed(),
    };
    assert!(!timed_out, "{}", run.report(&format!("{what} timed out after {CLIENT_TIMEOUT:?} and was killed")));
    assert!(run.status.success(), "{}", run.report(&format!("{what} failed")));
    run
}

/// [`run_report`], returning only stdout.
pub fn run(cmd: Command, what: &str) -> String {
    run_report(cmd, what).stdout
}

/// Runs blocking work (a client process) off the test's runtime, re-raising its panic.
pub async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(f).await {
        Ok(value) => value,
        Err(err) => std::panic::resume_unwind(err.into_panic()),
    }
}

/// Groups output lines by step (the text before the first `:`), keeping order within a step.
pub fn by_step(out: &str) -> BTreeMap<String, Vec<String>> {
    let mut steps: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in out.lines() {
        let (step, _) = line.split_once(':').unwrap_or((line, ""));
        steps.entry(step.to_owned()).or_default().push(line.to_owned());
    }
    steps
}

/// Compares two runs step by step; returns the differences that `explained` (step, reason) does
/// not list, and prints the explained ones.
pub fn unexplained(direct: &str, proxied: &str, explained: &[&[(&str, &str)]]) -> Vec<String> {
    let (direct, proxied) = (by_step(direct), by_step(proxied));
    let mut bad = Vec::new();
    let steps: BTreeSet<&String> = direct.keys().chain(proxied.keys()).collect();
    for step in steps {
        let (d, p) = (direct.get(step), proxied.get(step));
        if d == p {
            continue;
        }
        let why = explained.iter().flat_map(|list| list.iter()).find(|(s, _)| s == step).map(|(_, why)| *why);
        let (d, p) = (d.cloned().unwrap_or_default(), p.cloned().unwrap_or_default());
        let mut text = format!("step {step}:");
        for line in d.iter().filter(|l| !p.contains(l)) {
            text.push_str(&format!("\n  - direct  {line}"));
        }
        for line in p.iter().filter(|l| !d.contains(l)) {
            text.push_str(&format!("\n  + proxied {line}"));
        }
        match why {
            Some(why) => println!("explained difference ({why}) {text}"),
            None => bad.push(text),
        }
    }
    bad
}
