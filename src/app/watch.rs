//! What asks for a reload besides the admin interfaces: changes to the config file (notify,
//! debounced) and SIGHUP; and the stop signals SIGTERM / SIGINT.
//!
//! The file watcher watches the file's directory (editors replace files by renaming, which a
//! watch on the file itself would lose) and reloads once events for the file stop arriving for
//! [`DEBOUNCE`]. notify runs its own thread; it only hands events to the task through a bounded
//! channel. A config mounted from a Kubernetes ConfigMap (`rwsplit.toml -> ..data/rwsplit.toml`)
//! changes by a swap of the `..data` symlink, which counts as a change of the file too.

use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::{EventKind, RecursiveMode, Watcher};
use tokio::sync::{mpsc, watch};

use crate::admin::Reload;

/// Quiet time after the last file event before reloading.
pub const DEBOUNCE: Duration = Duration::from_millis(300);
/// The symlink Kubernetes swaps atomically to update a mounted ConfigMap or Secret.
const K8S_DATA_LINK: &str = "..data";
/// How long a triggered reload may take before the trigger stops waiting for it.
const RELOAD_WAIT: Duration = Duration::from_secs(30);

/// Starts watching `path`; `None` (logged) when the platform watcher cannot start.
pub(super) fn file(path: PathBuf, reload: Reload, stop: watch::Receiver<bool>) -> Option<tokio::task::JoinHandle<()>> {
    let (tx, rx) = mpsc::channel::<()>(1);
    let name = path.file_name().map(|n| n.to_owned());
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let handler = move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        // A mounted Kubernetes ConfigMap never writes the file: it renames a new `..data`
        // symlink (pointing at a fresh timestamped directory) over the old one.
        let relevant = matches!(event.kind, EventKind::Create(_) | EventKind::Modify(_))
            && event.paths.iter().any(|p| {
                let file = p.file_name();
                file == name.as_deref() || file == Some(std::ffi::OsStr::new(K8S_DATA_LINK))
            });
        if relevant {
            // A full channel already has a reload coming.
            let _ = tx.try_send(());
        }
    };
    let mut watcher = match notify::recommended_watcher(handler) {
        Ok(watcher) => watcher,
        Err(err) => {
            tracing::warn!(error = %err, "cannot watch the config file; reload with SIGHUP or the admin interfaces");
            return None;
        }
    };
    if let Err(err) = watcher.watch(&dir, RecursiveMode::NonRecursive) {
        tracing::warn!(dir = %dir.display(), error = %err, "cannot watch the config directory");
        return None;
    }
    tracing::info!(file = %path.display(), "watching the config file for changes");
    Some(tokio::spawn(debounce(watcher, rx, reload, stop)))
}

/// Reloads after each burst of file events. Owns `watcher` so that it lives as long as the task.
async fn debounce<W: Watcher + Send>(
    watcher: W,
    mut events: mpsc::Receiver<()>,
    reload: Reload,
    mut stop: watch::Receiver<bool>,
) {
    let _watcher = watcher;
    loop {
        let event = tokio::select! {
            event = events.recv() => event,
            _ = stop.wait_for(|stop| *stop) => return,
        };
        if event.is_none() {
            return;
        }
        while let Ok(Some(())) = tokio::time::timeout(DEBOUNCE, events.recv()).await {}
        tracing::info!("config file changed; reloading");
        if let Err(err) = reload.request(RELOAD_WAIT).await {
            tracing::warn!(error = %err, "file-triggered reload did not run");
        }
    }
}

/// The signals the binary reacts to.
#[derive(Debug)]
pub(super) enum Signal {
    /// SIGHUP: reload the config file.
    Reload,
    /// SIGTERM or SIGINT: drain and exit (a second one forces).
    Stop,
}

/// The process's signal streams (SIGTERM, SIGINT, SIGHUP), kept for the whole run so that no
/// signal is lost between two waits.
pub(super) struct Signals {
    #[cfg(unix)]
    streams: Option<[tokio::signal::unix::Signal; 3]>,
}

impl Signals {
    /// Installs the handlers; without SIGTERM/SIGHUP support only Ctrl-C stops the proxy.
    pub fn new() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let kinds =
                (signal(SignalKind::terminate()), signal(SignalKind::interrupt()), signal(SignalKind::hangup()));
            let streams = match kinds {
                (Ok(term), Ok(int), Ok(hup)) => Some([term, int, hup]),
                (Err(err), _, _) | (_, Err(err), _) | (_, _, Err(err)) => {
                    tracing::warn!(error = %err, "cannot watch SIGTERM/SIGHUP; only Ctrl-C stops the proxy");
                    None
                }
            };
            Self { streams }
        }
        #[cfg(not(unix))]
        Self {}
    }

    /// The next signal.
    pub async fn next(&mut self) -> Signal {
        #[cfg(unix)]
        if let Some([term, int, hup]) = &mut self.streams {
            return tokio::select! {
                _ = term.recv() => Signal::Stop,
                _ = int.recv() => Signal::Stop,
                _ = hup.recv() => Signal::Reload,
            };
        }
        let _ = tokio::signal::ctrl_c().await;
        Signal::Stop
    }

    /// Completes at the next stop signal (SIGHUP keeps asking for reloads meanwhile).
    pub async fn next_stop(&mut self, reload: &Reload) {
        loop {
            if let Signal::Stop = self.next().await {
                return;
            }
            hup(reload);
        }
    }
}

/// Asks for a reload without waiting for it (the reload task logs the outcome).
pub(super) fn hup(reload: &Reload) {
    tracing::info!("SIGHUP: reloading the config file");
    let reload = reload.clone();
    tokio::spawn(async move {
        let _ = reload.request(RELOAD_WAIT).await;
    });
}

/// `path` made absolute against the working directory, so the watcher and reloads agree.
pub(super) fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}
