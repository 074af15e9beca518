//! The standalone config source: a YAML file, reloaded when it changes (inotify through
//! `notify`, debounced) or on SIGHUP. A file that does not parse is logged and counted, and the
//! config in force stays.

use super::ConfigHandle;
use crate::metrics::Metrics;
use anyhow::Context;
use notify::{RecursiveMode, Watcher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use switchboard_crds::config::RegistrarConfig;
use tokio::sync::{mpsc, watch};

/// How long to wait for an editor or `kubectl` to finish writing before reading the file.
pub const DEBOUNCE: Duration = Duration::from_millis(150);

/// Reads and checks a config file.
pub fn load(path: &Path) -> anyhow::Result<RegistrarConfig> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    RegistrarConfig::from_yaml(&text).with_context(|| format!("loading {}", path.display()))
}

/// Reads the file again and puts it in force if its content changed. Returns whether a new
/// config went in.
pub fn reload(path: &Path, handle: &ConfigHandle, metrics: &Metrics) -> bool {
    match load(path) {
        Ok(config) => {
            if handle
                .current()
                .is_some_and(|c| c.config.hash == config.hash)
            {
                tracing::debug!(path = %path.display(), "config file unchanged");
                return false;
            }
            let hash = config.short_hash().to_string();
            let generation = handle.replace(config);
            tracing::info!(path = %path.display(), generation, hash, "config reloaded");
            true
        }
        Err(e) => {
            metrics.config_reload_errors.inc();
            tracing::warn!(path = %path.display(), error = format!("{e:#}"), "config reload refused; the previous config stays");
            false
        }
    }
}

/// Whether an event on `path` may have changed the config file called `name`: the file itself,
/// or one of the `..`-prefixed entries through which Kubernetes swaps a mounted volume's files.
fn concerns(path: &Path, name: Option<&std::ffi::OsStr>) -> bool {
    match path.file_name() {
        Some(f) => Some(f) == name || f.as_encoded_bytes().starts_with(b".."),
        None => true,
    }
}

/// Watches the file (through its directory, so editors' rename-over and Kubernetes' symlink
/// swaps are seen) and SIGHUP, until `shutdown` turns true.
pub fn spawn_watcher(
    path: PathBuf,
    handle: Arc<ConfigHandle>,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let (tx, mut rx) = mpsc::unbounded_channel::<()>();
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf();
    let name = path.file_name().map(|n| n.to_os_string());
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event {
            // Only events about the file (or Kubernetes' `..data` swap): a log file written
            // in the same directory must not make every write a reload.
            if !event.kind.is_access()
                && (event.paths.is_empty()
                    || event.paths.iter().any(|p| concerns(p, name.as_deref())))
            {
                let _ = tx.send(());
            }
        }
    })
    .context("starting the file watcher")?;
    watcher
        .watch(&dir, RecursiveMode::NonRecursive)
        .with_context(|| format!("watching {}", dir.display()))?;
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .context("installing the SIGHUP handler")?;
    Ok(tokio::spawn(async move {
        let _watcher = watcher; // dropped (and stopped) with the task
        loop {
            tokio::select! {
                _ = crate::transport::shutdown_requested(&mut shutdown) => break,
                _ = hup.recv() => {
                    tracing::info!("SIGHUP: reloading the config file");
                    reload(&path, &handle, &metrics);
                }
                event = rx.recv() => {
                    if event.is_none() {
                        break;
                    }
                    // Debounce: take every event of the next moment as one.
                    tokio::time::sleep(DEBOUNCE).await;
                    while rx.try_recv().is_ok() {}
                    reload(&path, &handle, &metrics);
                }
            }
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_file(name: &str, text: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("sb-config-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("config.yaml");
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn only_events_about_the_file_count() {
        let name = Some(std::ffi::OsStr::new("config.yaml"));
        assert!(concerns(Path::new("/etc/sb/config.yaml"), name));
        assert!(concerns(Path::new("/etc/sb/..data"), name));
        assert!(concerns(
            Path::new("/etc/sb/..2026_11_24_01_00_00.123"),
            name
        ));
        assert!(!concerns(Path::new("/etc/sb/registrar.log"), name));
        assert!(!concerns(Path::new("/etc/sb/config.yaml.swp"), name));
    }

    #[test]
    fn bad_file_keeps_the_old_config() {
        let p = temp_file("bad", super::super::EMBEDDED);
        let h = ConfigHandle::new();
        let m = Metrics::new();
        assert!(reload(&p, &h, &m));
        assert!(!reload(&p, &h, &m), "same content is no reload");
        std::fs::write(&p, "format: 1\ndomains: [ {").unwrap();
        assert!(!reload(&p, &h, &m));
        assert_eq!(m.config_reload_errors.get(), 1);
        assert_eq!(h.current().unwrap().generation, 1);
        std::fs::write(&p, "format: 99\n").unwrap();
        assert!(!reload(&p, &h, &m));
        assert_eq!(m.config_reload_errors.get(), 2);
        let _ = std::fs::remove_dir_all(p.parent().unwrap());
    }
}
