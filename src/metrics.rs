//! Metric names in one place (a stable contract: product.md §5) and the one function
//! that turns a finished run into metric updates. Labels are low-cardinality only; the
//! last error's text goes to `/admin/status` and the logs, never into a label.
//!
//! The Prometheus recorder is installed by `serve` only; elsewhere (`sync`, tests of
//! the library) the `metrics` macros are no-ops.

use crate::report::{Report, Stage};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

pub const LAST_SUCCESS: &str = "activity_sync_last_success_timestamp_seconds";
pub const LAST_ATTEMPT: &str = "activity_sync_last_attempt_timestamp_seconds";
pub const LAST_ERROR: &str = "activity_sync_last_error_timestamp_seconds";
pub const LAST_RUN_SUCCESS: &str = "activity_sync_last_run_success";
pub const LAST_RUN_ERRORS: &str = "activity_sync_last_run_errors";
pub const RUNS_TOTAL: &str = "activity_sync_runs_total";
pub const STAGE_ERRORS_TOTAL: &str = "activity_sync_stage_errors_total";
pub const CHANGES_TOTAL: &str = "activity_sync_changes_total";
pub const DURATION_SECONDS: &str = "activity_sync_duration_seconds";
pub const SOURCE_DOCUMENTS: &str = "activity_sync_source_documents";
pub const SOURCE_PENDING: &str = "activity_sync_source_pending";
pub const SOURCE_LAST_CHANGE: &str = "activity_sync_source_last_change_timestamp_seconds";
pub const IN_PROGRESS: &str = "activity_sync_in_progress";
pub const BUILD_INFO: &str = "activity_sync_build_info";

/// Histogram buckets for run and stage durations, in seconds.
const DURATION_BUCKETS: &[f64] = &[
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];

/// Installs the process-wide Prometheus recorder and returns the handle `/metrics`
/// renders from. Call once, from `serve`.
pub fn install() -> Result<PrometheusHandle, String> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full(DURATION_SECONDS.to_string()),
            DURATION_BUCKETS,
        )
        .map_err(|e| e.to_string())?
        .install_recorder()
        .map_err(|e| e.to_string())?;
    metrics::gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    metrics::gauge!(IN_PROGRESS).set(0.0);
    metrics::gauge!(SOURCE_PENDING).set(0.0);
    Ok(handle)
}

fn now_seconds() -> f64 {
    chrono::Utc::now().timestamp_millis() as f64 / 1000.0
}

/// `success`, `partial` (some stage did its work, errors remain), `failed` or `dry_run`.
pub fn result_label(report: &Report) -> &'static str {
    if report.dry_run {
        "dry_run"
    } else if report.ok {
        "success"
    } else if report.definitions.is_some()
        || report.event_types.is_some()
        || report.schedules.is_some()
    {
        "partial"
    } else {
        "failed"
    }
}

/// Records a finished run.
pub fn record_run(report: &Report) {
    let now = now_seconds();
    metrics::counter!(RUNS_TOTAL, "trigger" => report.trigger.as_str(), "result" => result_label(report)).increment(1);
    metrics::gauge!(LAST_ATTEMPT).set(now);
    metrics::gauge!(LAST_RUN_SUCCESS).set(if report.ok { 1.0 } else { 0.0 });
    metrics::gauge!(LAST_RUN_ERRORS).set(report.error_count() as f64);
    if report.ok {
        metrics::gauge!(LAST_SUCCESS).set(now);
    } else {
        metrics::gauge!(LAST_ERROR).set(now);
    }
    for stage in [
        Stage::Source,
        Stage::Definitions,
        Stage::EventTypes,
        Stage::Schedules,
    ] {
        let n = report.errors.iter().filter(|e| e.stage == stage).count();
        if n > 0 {
            metrics::counter!(STAGE_ERRORS_TOTAL, "stage" => stage.as_str()).increment(n as u64);
        }
    }
    if !report.dry_run {
        for c in &report.changes {
            metrics::counter!(CHANGES_TOTAL, "kind" => c.kind, "action" => c.action).increment(1);
        }
    }
    metrics::histogram!(DURATION_SECONDS, "stage" => "total")
        .record(report.duration_ms as f64 / 1000.0);
    for (stage, d) in &report.stage_durations {
        metrics::histogram!(DURATION_SECONDS, "stage" => stage.as_str()).record(d.as_secs_f64());
    }
    let valid = report
        .source
        .documents
        .saturating_sub(report.source.invalid);
    metrics::gauge!(SOURCE_DOCUMENTS, "state" => "valid").set(valid as f64);
    metrics::gauge!(SOURCE_DOCUMENTS, "state" => "invalid").set(report.source.invalid as f64);
}

pub fn set_in_progress(running: bool) {
    metrics::gauge!(IN_PROGRESS).set(if running { 1.0 } else { 0.0 });
}

pub fn set_source_pending(pending: bool) {
    metrics::gauge!(SOURCE_PENDING).set(if pending { 1.0 } else { 0.0 });
}

pub fn source_changed() {
    metrics::gauge!(SOURCE_LAST_CHANGE).set(now_seconds());
}
