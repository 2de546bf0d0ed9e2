//! Real client programs against the real proxy: a Go program on database/sql with
//! go-sql-driver/mysql (server-side prepared statements over COM_STMT_PREPARE/EXECUTE) and a Python
//! program on PyMySQL (client-side parameters, text-protocol PREPARE/EXECUTE), each doing CRUD,
//! prepared statements and transactions through a `TestProxy`. Sources are in `tests/clients/`.
//!
//! Both use Debian packages and work offline (`scripts/test.sh` installs them):
//! - Go: `golang-go` and `golang-github-go-sql-driver-mysql-dev`, built in GOPATH mode
//!   (`GO111MODULE=off`, `GOPATH=/usr/share/gocode`, `GOPROXY=off`) into `CARGO_TARGET_TMPDIR`, with
//!   Go's build cache there too, so later runs only relink.
//! - Python: `python3-pymysql`, which only Debian's `/usr/bin/python3` sees (a pyenv `python3`
//!   first on PATH does not), so that interpreter is used unless `RWSPLIT_PYTHON` names another.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::differential::{blocking, run_report, Run};
use common::{fresh_db, Cluster, TestProxy};

/// Where Debian's golang-github-go-sql-driver-mysql-dev puts the driver's source (a GOPATH).
const DEBIAN_GOPATH: &str = "/usr/share/gocode";

fn clients_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients")
}

fn build_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("clients")
}

/// Builds the Go client offline and returns the binary. Go's build cache lives next to it, so a
/// build with unchanged sources only relinks (well under a second).
fn build_go_client() -> PathBuf {
    let driver = Path::new(DEBIAN_GOPATH).join("src/github.com/go-sql-driver/mysql");
    assert!(
        driver.is_dir(),
        "{} is missing: install the Debian packages golang-go and golang-github-go-sql-driver-mysql-dev \
         (scripts/test.sh does)",
        driver.display()
    );
    let go = ["go", "/usr/lib/go/bin/go"]
        .into_iter()
        .find(|go| Command::new(go).arg("version").output().is_ok_and(|o| o.status.success()))
        .expect("no `go` found: install the Debian package golang-go (scripts/test.sh does)");
    let out = build_dir().join("go-client");
    let mut cmd = Command::new(go);
    cmd.current_dir(clients_dir().join("go"))
        .args(["build", "-o"])
        .arg(&out)
        .arg(".")
        // GOPATH mode against Debian's packaged source: no go.mod, no module proxy, no network.
        .env("GO111MODULE", "off")
        .env("GOPROXY", "off")
        .env("GOFLAGS", "")
        .env("GOENV", "off")
        .env("GOPATH", DEBIAN_GOPATH)
        .env("GOCACHE", build_dir().join("go-cache"));
    let build = run_report(cmd, "go build of tests/clients/go");
    println!("go build of tests/clients/go took {:.1?}", build.took);
    out
}

/// The Python interpreter that has PyMySQL: `RWSPLIT_PYTHON`, else Debian's `/usr/bin/python3`
/// (python3-pymysql installs into its dist-packages), else `python3` from PATH.
fn python_with_pymysql() -> String {
    let python = std::env::var("RWSPLIT_PYTHON").ok().unwrap_or_else(|| {
        if Path::new("/usr/bin/python3").exists() {
            "/usr/bin/python3".into()
        } else {
            "python3".into()
        }
    });
    let why = match Command::new(&python).args(["-c", "import pymysql"]).output() {
        Ok(o) if o.status.success() => return python,
        Ok(o) => String::from_utf8_lossy(&o.stderr).trim().to_owned(),
        Err(e) => e.to_string(),
    };
    panic!(
        "{python} cannot import pymysql ({why}): install the Debian package python3-pymysql \
         (scripts/test.sh does), or point RWSPLIT_PYTHON at an interpreter that has PyMySQL"
    )
}

/// Starts a proxy, gives the client program a fresh database and runs `command(proxy port, db,
/// primary port)` on a blocking thread; returns what it printed.
async fn run_against_proxy(prefix: &str, what: &'static str, command: impl FnOnce(u16, &str, u16) -> Command) -> Run {
    let cluster = Cluster::shared().await;
    // The clients check that a plain read runs on a replica: none may still be catching up on
    // what earlier tests wrote (a lagging replica leaves rotation).
    cluster.wait_replicas().await;
    let proxy = TestProxy::start(cluster).await;
    let db = fresh_db(&proxy.cluster, prefix).await;
    let cmd = command(proxy.port(), &db, proxy.cluster.primary);
    let run = blocking(move || run_report(cmd, what)).await;
    print!("{}", run.report(what));
    run
}

#[tokio::test]
async fn go_database_sql_client_does_crud_prepared_statements_and_transactions() {
    let binary = blocking(build_go_client).await;
    let run = run_against_proxy("goclient", "go client", |port, db, primary| {
        let mut cmd = Command::new(&binary);
        cmd.arg("-port").arg(port.to_string()).arg("-db").arg(db).arg("-primary-port").arg(primary.to_string());
        cmd
    })
    .await;
    assert!(run.stdout.contains("go client: all checks passed"), "{}", run.report("go client"));
}

#[tokio::test]
async fn python_pymysql_client_does_crud_parameters_and_transactions() {
    let python = blocking(python_with_pymysql).await;
    let script = clients_dir().join("python/client.py");
    let run = run_against_proxy("pyclient", "python client", |port, db, primary| {
        let mut cmd = Command::new(&python);
        cmd.arg(&script)
            .arg("--port")
            .arg(port.to_string())
            .arg("--db")
            .arg(db)
            .arg("--primary-port")
            .arg(primary.to_string());
        cmd
    })
    .await;
    assert!(run.stdout.contains("python client: all checks passed"), "{}", run.report("python client"));
}
