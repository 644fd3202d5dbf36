//! The HTTP surface: admin API, probes and metrics. Handlers translate HTTP to
//! `Sidecar` calls and back; they contain no sync logic.

mod auth;

use crate::report::{Stage, Trigger};
use crate::sidecar::Sidecar;
use crate::sync::{Request, Stages};
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router, middleware};
use serde_json::json;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;

/// Probes, status and metrics answer quickly or not at all.
const QUICK_TIMEOUT: Duration = Duration::from_secs(10);
/// A sync may wait for the cluster lock and then run; bounded all the same.
const SYNC_TIMEOUT: Duration = Duration::from_secs(600);
const BODY_LIMIT: usize = 64 * 1024;

/// An error answer: a status and a plain message, as JSON `{"error": "..."}`.
pub struct AppError(StatusCode, String);

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({"error": self.1}))).into_response()
    }
}

pub fn router(sidecar: Arc<Sidecar>) -> Router {
    let admin = Router::new()
        .route(
            "/admin/sync",
            post(post_sync).layer(TimeoutLayer::with_status_code(
                StatusCode::GATEWAY_TIMEOUT,
                SYNC_TIMEOUT,
            )),
        )
        .route(
            "/admin/status",
            get(get_status).layer(TimeoutLayer::with_status_code(
                StatusCode::GATEWAY_TIMEOUT,
                QUICK_TIMEOUT,
            )),
        )
        .route_layer(middleware::from_fn_with_state(
            sidecar.clone(),
            auth::require_admin,
        ));
    let open = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::GATEWAY_TIMEOUT,
            QUICK_TIMEOUT,
        ));
    admin
        .merge(open)
        .layer(RequestBodyLimitLayer::new(BODY_LIMIT))
        .with_state(sidecar)
}

fn parse_bool(key: &str, value: &str) -> Result<bool, AppError> {
    match value {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        other => Err(AppError(
            StatusCode::BAD_REQUEST,
            format!("parameter `{key}` must be true or false, not `{other}`"),
        )),
    }
}

/// Reads the query; unknown, repeated or malformed parameters are a 400.
fn parse_sync_query(pairs: &[(String, String)]) -> Result<(Stages, bool, bool), AppError> {
    let mut stages = Stages::default();
    let (mut dry_run, mut force) = (false, false);
    let mut seen = std::collections::BTreeSet::new();
    for (key, value) in pairs {
        if !seen.insert(key.as_str()) {
            return Err(AppError(
                StatusCode::BAD_REQUEST,
                format!("parameter `{key}` is given twice"),
            ));
        }
        let v = parse_bool(key, value)?;
        match key.as_str() {
            "definitions" => stages.definitions = v,
            "schedules" => stages.schedules = v,
            "event_types" => stages.event_types = v,
            "dry_run" => dry_run = v,
            "force" => force = v,
            other => {
                return Err(AppError(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "unknown parameter `{other}` (expected definitions, schedules, event_types, dry_run, force)"
                    ),
                ));
            }
        }
    }
    Ok((stages, dry_run, force))
}

async fn post_sync(
    State(sidecar): State<Arc<Sidecar>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    query: Result<Query<Vec<(String, String)>>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, AppError> {
    let Query(pairs) = query.map_err(|e| AppError(StatusCode::BAD_REQUEST, e.body_text()))?;
    let (stages, dry_run, force) = parse_sync_query(&pairs)?;
    let request = Request {
        trigger: Trigger::Admin,
        caller: Some(format!("admin:{}", peer.ip())),
        stages,
        dry_run,
        force,
    };
    let report = sidecar.sync(request).await;
    let status = if report.errors.iter().any(|e| e.stage == Stage::Lock) {
        StatusCode::CONFLICT
    } else {
        StatusCode::OK
    };
    Ok((status, Json(report)).into_response())
}

async fn get_status(State(sidecar): State<Arc<Sidecar>>) -> Response {
    let source = sidecar.source();
    let last = sidecar.last_report();
    let last_error = last
        .as_ref()
        .and_then(|r| r.errors.first())
        .map(|e| e.message.clone());
    Json(json!({
        "ready": sidecar.is_ready(),
        "watch_mode": sidecar.settings.watch.mode,
        "source": {
            "revision": source.revision,
            "synced_revision": source.synced_revision,
            "changed_since_last_success": source.pending(),
            "last_change": source.last_change,
        },
        "runs": sidecar.runner.runs(),
        "last_error": last_error,
        "last_report": last,
        "config": *sidecar.settings,
    }))
    .into_response()
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(sidecar): State<Arc<Sidecar>>) -> Response {
    if sidecar.is_ready() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "starting: the startup run has not finished\n",
        )
            .into_response()
    }
}

async fn metrics(State(sidecar): State<Arc<Sidecar>>) -> Response {
    match &sidecar.metrics {
        Some(handle) => {
            handle.run_upkeep();
            (
                [(
                    header::CONTENT_TYPE,
                    "text/plain; version=0.0.4; charset=utf-8",
                )],
                handle.render(),
            )
                .into_response()
        }
        None => (StatusCode::NOT_FOUND, "metrics are not enabled\n").into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(q: &[(&str, &str)]) -> Vec<(String, String)> {
        q.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn query_defaults_and_overrides() {
        let (stages, dry, force) = parse_sync_query(&[]).unwrap_or_else(|_| panic!("defaults"));
        assert_eq!(stages, Stages::default());
        assert!(!dry && !force);
        let (stages, dry, force) = parse_sync_query(&pairs(&[
            ("event_types", "true"),
            ("schedules", "0"),
            ("dry_run", "1"),
            ("force", "true"),
        ]))
        .unwrap_or_else(|_| panic!("valid"));
        assert!(stages.event_types && !stages.schedules && stages.definitions && dry && force);
    }

    #[test]
    fn query_errors_are_bad_requests() {
        for q in [
            vec![("forse", "true")],
            vec![("force", "yes")],
            vec![("force", "true"), ("force", "false")],
        ] {
            match parse_sync_query(&pairs(&q)) {
                Err(AppError(code, _)) => assert_eq!(code, StatusCode::BAD_REQUEST),
                Ok(_) => panic!("{q:?} accepted"),
            }
        }
    }
}
