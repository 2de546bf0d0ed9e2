//! The `rwsplit` command: run the proxy, or check a configuration file.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use rwsplit::app::{LogFilter, Options};
use rwsplit::config::{Config, LogFormat};

/// MySQL read/write-splitting proxy.
#[derive(Debug, Parser)]
#[command(name = "rwsplit", version, about)]
struct Cli {
    /// Configuration file to run with.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Parse and validate a configuration file; exit 1 listing every problem.
    CheckConfig {
        /// The file to check.
        file: PathBuf,
    },
}

fn main() -> ExitCode {
    rwsplit::app::alloc::give_big_blocks_back_to_the_os();
    let cli = Cli::parse();
    if let Some(Command::CheckConfig { file }) = cli.command {
        return match Config::load(&file) {
            Ok(_) => {
                println!("{}: ok", file.display());
                ExitCode::SUCCESS
            }
            Err(err) => {
                eprintln!("{err}");
                ExitCode::FAILURE
            }
        };
    }
    let Some(path) = cli.config else {
        eprintln!("rwsplit: --config FILE is required (or use `rwsplit check-config FILE`)");
        return ExitCode::from(2);
    };
    let config = match Config::load(&path) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("{err}");
            return ExitCode::FAILURE;
        }
    };
    let log_filter = init_tracing(&config);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("rwsplit: cannot start the runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let options = Options { config_path: Some(path), watch_file: true, log_filter: Some(log_filter) };
    let result = runtime.block_on(rwsplit::app::run(config, options));
    // Sessions still mid-statement after the drain must not hold up the exit.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(error = %err, "rwsplit failed");
            eprintln!("rwsplit: {err}");
            ExitCode::FAILURE
        }
    }
}

/// Installs the subscriber; the returned filter handle lets a reload change `logging.level`.
fn init_tracing(config: &Config) -> LogFilter {
    use tracing_subscriber::{layer::SubscriberExt, reload, util::SubscriberInitExt, EnvFilter, Layer};
    let filter = EnvFilter::try_new(&config.logging.level).unwrap_or_else(|_| EnvFilter::new("info"));
    let (filter, handle) = reload::Layer::new(filter);
    let output = match config.logging.format {
        LogFormat::Json => tracing_subscriber::fmt::layer().json().with_writer(std::io::stderr).boxed(),
        LogFormat::Pretty => tracing_subscriber::fmt::layer().with_writer(std::io::stderr).boxed(),
    };
    tracing_subscriber::registry().with(filter).with(output).init();
    Arc::new(move |directives: &str| {
        let filter = EnvFilter::try_new(directives).map_err(|err| err.to_string())?;
        handle.reload(filter).map_err(|err| err.to_string())
    })
}
