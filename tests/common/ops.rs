//! Fixtures for the operations tests: a minimal HTTP client, the real `mysql` CLI against the admin
//! port, a strict Prometheus text-format parser, and a proxy started in-process from a config file.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::Cluster;

/// One HTTP/1.1 request with `Connection: close`; returns (status, body).
pub async fn http(addr: SocketAddr, method: &str, path: &str) -> (u16, String) {
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let request =
            format!("{method} {path} HTTP/1.1\r\nHost: rwsplit\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await.unwrap();
        raw
    };
    let raw = tokio::time::timeout(Duration::from_secs(40), exchange).await.expect("http request timed out");
    let text = String::from_utf8(raw).expect("utf-8 response");
    let (head, body) = text.split_once("\r\n\r\n").expect("response has a header block");
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).expect("status code");
    (status, body.to_owned())
}

/// Runs `sql` with the real `mysql` CLI against the admin port (batch mode: tab-separated, with a
/// header line). Returns stdout, or stderr when the CLI fails.
pub async fn admin_cli(port: u16, password: &str, sql: &str) -> Result<String, String> {
    let (password, sql) = (password.to_owned(), sql.to_owned());
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new("mysql")
            .args(["-h127.0.0.1", &format!("-P{port}"), "-uadmin", &format!("-p{password}"), "--batch", "-e", &sql])
            .output()
            .expect("the mysql CLI is installed (scripts/test.sh installs it)")
    })
    .await
    .unwrap();
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}

/// Batch output as rows of columns, header first.
pub fn rows(batch: &str) -> Vec<Vec<String>> {
    batch.lines().map(|l| l.split('\t').map(str::to_owned).collect()).collect()
}

/// One sample of the text exposition format.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// Parses the Prometheus text format strictly: `# HELP` / `# TYPE` lines, sample lines with
/// valid names, quoted and escaped label values, float values; every sample belongs to a family
/// announced by `# TYPE` (histograms through `_bucket`/`_sum`/`_count`, with a `+Inf` bucket).
pub fn parse_prometheus(text: &str) -> Result<Vec<Sample>, String> {
    let mut types: BTreeMap<String, String> = BTreeMap::new();
    let mut samples = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let at = |msg: &str| format!("line {}: {msg}: {line:?}", n + 1);
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            match (parts.next(), parts.next(), parts.next()) {
                (Some("HELP"), Some(name), _) if is_name(name) => {}
                (Some("TYPE"), Some(name), Some(kind)) if is_name(name) => {
                    if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind) {
                        return Err(at("unknown type"));
                    }
                    types.insert(name.to_owned(), kind.to_owned());
                }
                _ => return Err(at("bad comment line")),
            }
            continue;
        }
        let name_end = line.find(['{', ' ']).ok_or_else(|| at("no value"))?;
        let name = &line[..name_end];
        if !is_name(name) {
            return Err(at("bad metric name"));
        }
        let mut rest = &line[name_end..];
        let mut labels = BTreeMap::new();
        if let Some(body) = rest.strip_prefix('{') {
            let (parsed, after) = parse_labels(body).map_err(|e| at(&e))?;
            labels = parsed;
            rest = after;
        }
        let mut fields = rest.split_whitespace();
        let value = fields.next().ok_or_else(|| at("no value"))?;
        let value = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            "NaN" => f64::NAN,
            v => v.parse().map_err(|_| at("bad value"))?,
        };
        if let Some(ts) = fields.next() {
            ts.parse::<i64>().map_err(|_| at("bad timestamp"))?;
        }
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s).filter(|f| types.get(*f).is_some_and(|t| t == "histogram")))
            .unwrap_or(name);
        if !types.contains_key(family) {
            return Err(at("sample without # TYPE"));
        }
        if name.ends_with("_bucket") && !labels.contains_key("le") {
            return Err(at("bucket without le"));
        }
        samples.push(Sample { name: name.to_owned(), labels, value });
    }
    for (family, kind) in &types {
        let bucket = format!("{family}_bucket");
        if kind == "histogram"
            && samples.iter().any(|s| s.name == bucket)
            && !samples.iter().any(|s| s.name == bucket && s.labels.get("le").map(String::as_str) == Some("+Inf"))
        {
            return Err(format!("histogram {family} has no +Inf bucket"));
        }
    }
    Ok(samples)
}

fn is_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn parse_labels(mut s: &str) -> Result<(BTreeMap<String, String>, &str), String> {
    let mut labels = BTreeMap::new();
    loop {
        if let Some(rest) = s.strip_prefix('}') {
            return Ok((labels, rest));
        }
        let eq = s.find('=').ok_or("label without =")?;
        let name = &s[..eq];
        if !is_name(name) || name.contains(':') {
            return Err(format!("bad label name {name:?}"));
        }
        let mut chars = s[eq + 1..].char_indices();
        if chars.next().map(|(_, c)| c) != Some('"') {
            return Err("label value not quoted".into());
        }
        let mut value = String::new();
        let mut end = None;
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => match chars.next().map(|(_, c)| c) {
                    Some('n') => value.push('\n'),
                    Some('\\') => value.push('\\'),
                    Some('"') => value.push('"'),
                    _ => return Err("bad escape in label value".into()),
                },
                '"' => {
                    end = Some(eq + 1 + i + 1);
                    break;
                }
                '\n' => return Err("raw newline in label value".into()),
                c => value.push(c),
            }
        }
        let end = end.ok_or("unterminated label value")?;
        labels.insert(name.to_owned(), value);
        s = &s[end..];
        s = s.strip_prefix(',').unwrap_or(s);
    }
}

/// Sum of the samples named `name` whose labels include every pair of `with`.
pub fn sum(samples: &[Sample], name: &str, with: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|s| s.name == name && with.iter().all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v)))
        .map(|s| s.value)
        .sum()
}

/// A config file for the cluster on ephemeral ports; `extra_backends` are appended as
/// `(name, port, weight)` and `tail` is appended verbatim.
pub fn config_text(cluster: &Cluster, weights: &[u32], extra_backends: &[(&str, u16, u32)], tail: &str) -> String {
    let mut text = String::from(
        "[listen]\nmysql = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\nhttp = \"127.0.0.1:0\"\n\n\
         [admin]\nuser = \"admin\"\npassword = \"admin\"\n\n",
    );
    for (i, &port) in cluster.ports.iter().enumerate() {
        let role = if port == cluster.primary { "primary" } else { "replica" };
        let weight = weights.get(i).copied().unwrap_or(1);
        text.push_str(&format!(
            "[[backends]]\nname = \"node{i}\"\nhost = \"127.0.0.1\"\nport = {port}\nweight = {weight}\nrole = \"{role}\"\n\n"
        ));
    }
    for (name, port, weight) in extra_backends {
        text.push_str(&format!(
            "[[backends]]\nname = \"{name}\"\nhost = \"127.0.0.1\"\nport = {port}\nweight = {weight}\nrole = \"replica\"\n\n"
        ));
    }
    text.push_str(
        "[[users]]\nname = \"app\"\npassword = \"app\"\n\n[monitor]\nuser = \"monitor\"\npassword = \"monitor\"\n\n",
    );
    text.push_str(tail);
    text
}

/// A temporary config file, removed on drop.
pub struct ConfigFile {
    pub path: PathBuf,
}

impl ConfigFile {
    /// Writes `text` to a fresh file named after `tag`.
    pub fn new(tag: &str, text: &str) -> ConfigFile {
        static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("rwsplit-{tag}-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("rwsplit.toml");
        std::fs::write(&path, text).unwrap();
        ConfigFile { path }
    }

    /// Replaces the file's content (write to a temporary file, then rename, as editors do).
    pub fn replace(&self, text: &str) {
        let tmp = self.path.with_extension("tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, &self.path).unwrap();
    }

    /// The parsed config.
    pub fn config(&self) -> rwsplit::config::Config {
        rwsplit::config::Config::load(&self.path).unwrap()
    }
}

impl Drop for ConfigFile {
    fn drop(&mut self) {
        if let Some(dir) = self.path.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Starts the proxy in-process from `file`, as the binary would (reloads read the file).
pub async fn start_from(file: &ConfigFile, watch_file: bool) -> rwsplit::app::Handle {
    let options = rwsplit::app::Options { config_path: Some(file.path.clone()), watch_file, log_filter: None };
    rwsplit::app::start_with(file.config(), options).await.expect("proxy starts")
}

/// The sum of a metric's samples matching `with`, scraped from `handle`'s registry now.
pub fn metric(handle: &rwsplit::app::Handle, name: &str, with: &[(&str, &str)]) -> f64 {
    let text = handle.metrics_text().expect("the registry encodes");
    sum(&parse_prometheus(&text).expect("the exposition parses"), name, with)
}
