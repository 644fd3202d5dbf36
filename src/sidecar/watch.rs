//! Watching the definitions directory: any filesystem event there means "maybe
//! changed". After a quiet debounce period the source revision is recomputed and
//! compared; a periodic rescan backs this up for missed events, inotify overflow and
//! filesystems without events (NFS, 9p). `detect` only updates the pending state and
//! metrics; `auto` also starts a run (trigger `watch`). Nothing here parses files or
//! depends on seeing `..data` by name.

use super::Sidecar;
use crate::config::WatchMode;
use crate::report::Trigger;
use crate::source;
use crate::sync::Request;
use notify::{RecursiveMode, Watcher};
use std::path::Path;
use std::sync::Arc;
use tokio::sync::{mpsc, watch as signal};

fn start_watcher(dir: &Path, tx: mpsc::UnboundedSender<()>) -> Option<notify::RecommendedWatcher> {
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        // Errors (e.g. an overflowed queue) are also a reason to look again.
        let _ = event;
        let _ = tx.send(());
    })
    .map_err(|e| tracing::warn!(error = %e, "cannot start the file watcher; relying on periodic rescans"))
    .ok()?;
    match watcher.watch(dir, RecursiveMode::NonRecursive) {
        Ok(()) => Some(watcher),
        Err(e) => {
            tracing::warn!(error = %e, dir = %dir.display(), "cannot watch the definitions directory; relying on periodic rescans");
            None
        }
    }
}

/// Recomputes the revision; in `auto` mode a change starts a run.
async fn check(sidecar: &Arc<Sidecar>, may_sync: bool) {
    let dir = sidecar.settings.definitions_dir.clone();
    let revision = tokio::task::spawn_blocking(move || source::revision_of(&dir)).await;
    match revision {
        Ok(Ok(revision)) => {
            let changed = sidecar.observe_revision(revision.clone());
            if changed {
                tracing::info!(revision = %revision, "definition files changed");
            }
            if changed && may_sync && sidecar.settings.watch.mode == WatchMode::Auto {
                sidecar.sync(Request::new(Trigger::Watch)).await;
            }
        }
        Ok(Err(e)) => tracing::warn!(error = %e, "cannot read the definitions directory"),
        Err(e) => tracing::warn!(error = %e, "revision check failed"),
    }
}

pub async fn run(sidecar: Arc<Sidecar>, mut stop: signal::Receiver<bool>) {
    let settings = sidecar.settings.clone();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut watcher = start_watcher(&settings.definitions_dir, tx.clone());
    // The first look only records the revision: the startup run covers what is there.
    check(&sidecar, false).await;
    let mut rescan = tokio::time::interval(settings.watch.rescan);
    rescan.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    rescan.tick().await;
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            Some(()) = rx.recv() => {
                // Debounce: wait until the directory has been quiet for the period.
                loop {
                    tokio::select! {
                        _ = tokio::time::sleep(settings.watch.debounce) => break,
                        Some(()) = rx.recv() => continue,
                        _ = stop.changed() => return,
                    }
                }
                check(&sidecar, true).await;
            }
            _ = rescan.tick() => {
                if watcher.is_none() {
                    watcher = start_watcher(&settings.definitions_dir, tx.clone());
                }
                check(&sidecar, true).await;
            }
        }
    }
    drop(watcher);
}
