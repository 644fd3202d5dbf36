//! Admin authentication: `Authorization: Bearer <token>`, compared in constant time.
//! No token configured → 403 "admin API disabled", unless unauthenticated access was
//! allowed (which `serve` only accepts on a loopback listener).

use super::AppError;
use crate::sidecar::Sidecar;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;
use subtle::ConstantTimeEq;

pub async fn require_admin(
    State(sidecar): State<Arc<Sidecar>>,
    request: Request,
    next: Next,
) -> Response {
    let admin = &sidecar.settings.admin;
    let Some(token) = admin.token.as_ref() else {
        if admin.allow_unauthenticated {
            return next.run(request).await;
        }
        return AppError(StatusCode::FORBIDDEN, "admin API disabled".into()).into_response();
    };
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let valid =
        presented.is_some_and(|p| bool::from(p.as_bytes().ct_eq(token.expose().as_bytes())));
    if valid {
        return next.run(request).await;
    }
    let mut response = AppError(
        StatusCode::UNAUTHORIZED,
        "missing or wrong bearer token".into(),
    )
    .into_response();
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}
