//! `serve`: the long-running sidecar. It owns the single-flight runner, the startup
//! run, the interval loop, the watcher and the HTTP server, all stopped by one
//! shutdown signal passed in from outside (the binary passes SIGTERM/SIGINT, tests
//! pass a channel).
//!
//! No loop blocks startup, shutdown or the HTTP server: the listener is up before the
//! startup run begins, and every loop selects on the shutdown signal.

mod runner;
pub mod watch;

use crate::config::{Settings, WatchMode};
use crate::report::{Report, Trigger};
use crate::server;
use crate::store::Store;
use crate::sync::{Engine, Request};
use chrono::{DateTime, Utc};
pub use runner::Runner;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch as signal;

/// How long shutdown waits for a run in flight to finish.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// What `/admin/status` shows besides the last report.
#[derive(Debug, Clone, Default)]
pub struct SourceState {
    /// The revision the watcher last computed.
    pub revision: Option<String>,
    /// When the watcher last saw the files change.
    pub last_change: Option<DateTime<Utc>>,
    /// The revision of the last successful run.
    pub synced_revision: Option<String>,
}

impl SourceState {
    /// Whether the files changed since the last successful run.
    pub fn pending(&self) -> bool {
        match (&self.revision, &self.synced_revision) {
            (Some(seen), Some(synced)) => seen != synced,
            (Some(_), None) => true,
            _ => false,
        }
    }
}

/// State shared by the HTTP handlers and the loops.
pub struct Sidecar {
    pub settings: Arc<Settings>,
    pub runner: Runner,
    pub metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    ready: AtomicBool,
    source: Mutex<SourceState>,
}

impl Sidecar {
    pub fn new(
        settings: Arc<Settings>,
        store: Store,
        metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    ) -> Arc<Sidecar> {
        let engine = Engine::new(settings.clone(), store);
        Arc::new(Sidecar {
            settings,
            runner: Runner::new(engine),
            metrics,
            ready: AtomicBool::new(false),
            source: Mutex::new(SourceState::default()),
        })
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }

    pub fn source(&self) -> SourceState {
        self.source
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn last_report(&self) -> Option<Report> {
        self.runner.last_report()
    }

    /// Runs (or joins) a sync and keeps the source state and metrics current.
    pub async fn sync(&self, request: Request) -> Report {
        let report = self.runner.submit(request).await;
        if let Some(revision) = &report.source.revision {
            // The run read the files: what it saw is the newest known revision.
            self.observe_revision(revision.clone());
            if report.ok && !report.dry_run {
                let mut source = self.source.lock().unwrap_or_else(|p| p.into_inner());
                source.synced_revision = Some(revision.clone());
                crate::metrics::set_source_pending(source.pending());
            }
        }
        report
    }

    /// The watcher saw `revision`; returns whether it differs from the last one seen.
    fn observe_revision(&self, revision: String) -> bool {
        let mut source = self.source.lock().unwrap_or_else(|p| p.into_inner());
        let changed = source.revision.as_deref() != Some(revision.as_str());
        if changed {
            source.revision = Some(revision);
            source.last_change = Some(Utc::now());
            crate::metrics::source_changed();
        }
        crate::metrics::set_source_pending(source.pending());
        changed
    }
}

/// Runs the sidecar on an already-bound listener until `shutdown` resolves, then
/// stops accepting, lets a run in flight finish (bounded) and stops the loops.
pub async fn serve(
    settings: Arc<Settings>,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let metrics =
        crate::metrics::install().map_err(|e| anyhow::anyhow!("metrics recorder: {e}"))?;
    let store = Store::open(settings.database_url.expose())?;
    let sidecar = Sidecar::new(settings.clone(), store.clone(), Some(metrics));
    let (stop_tx, stop_rx) = signal::channel(false);

    let addr = listener.local_addr()?;
    tracing::info!(addr = %addr, watch = ?settings.watch.mode, "listening");

    let mut tasks = tokio::task::JoinSet::new();
    if settings.sync.on_startup {
        let s = sidecar.clone();
        tasks.spawn(async move {
            s.sync(Request::new(Trigger::Startup)).await;
            s.ready.store(true, Ordering::SeqCst);
            tracing::info!("startup run finished; ready");
        });
    } else {
        sidecar.ready.store(true, Ordering::SeqCst);
    }
    if let Some(every) = settings.sync.interval {
        let s = sidecar.clone();
        let mut stop = stop_rx.clone();
        tasks.spawn(async move {
            let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = ticker.tick() => { s.sync(Request::new(Trigger::Interval)).await; }
                    _ = stop.changed() => break,
                }
            }
        });
    }
    if settings.watch.mode != WatchMode::Off {
        let s = sidecar.clone();
        let stop = stop_rx.clone();
        tasks.spawn(async move { watch::run(s, stop).await });
    }

    let app = server::router(sidecar.clone());
    let mut http_stop = stop_rx.clone();
    let http = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        let _ = http_stop.changed().await;
    });
    let http = tokio::spawn(async move { http.await });

    shutdown.await;
    tracing::info!("shutting down: no new connections; waiting for a run in flight");
    let _ = stop_tx.send(true);
    if tokio::time::timeout(SHUTDOWN_GRACE, sidecar.runner.idle())
        .await
        .is_err()
    {
        tracing::warn!(
            "a run was still in flight after {}s; exiting anyway",
            SHUTDOWN_GRACE.as_secs()
        );
    }
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
    match tokio::time::timeout(Duration::from_secs(5), http).await {
        Ok(Ok(Err(e))) => tracing::warn!(error = %e, "HTTP server ended with an error"),
        Err(_) => tracing::warn!("HTTP connections did not close in time"),
        _ => {}
    }
    store.close().await;
    tracing::info!("stopped");
    Ok(())
}
