//! Differential client runs: a client program prints one fact per line, each prefixed with its
//! step name (`step: fact`); it runs once directly against the primary and once through the
//! proxy, and every step whose lines differ must be explained by a list of deliberate
//! differences or of open bugs (each with its reason). Used by the client-library harnesses.

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Upper bound for one build or one client run; they normally take well under a few seconds.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(120);

/// Runs `cmd` to completion (killed after [`CLIENT_TIMEOUT`]); panics when it cannot start,
/// times out or fails, with what it printed. Returns stdout. Blocking: call inside
/// [`blocking`].
pub fn run(mut cmd: Command, what: &str) -> String {
    let started = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{what}: cannot start {cmd:?}: {e}"));
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut out, &mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut err, &mut s);
        s
    });
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > CLIENT_TIMEOUT {
            let _ = child.kill();
            panic!("{what} timed out after {CLIENT_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let (out, err) = (out.join().unwrap(), err.join().unwrap());
    assert!(status.success(), "{what} failed: {status}\n--- stdout ---\n{out}\n--- stderr ---\n{err}");
    out
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
