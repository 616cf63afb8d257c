//! Liveness and readiness.

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use crate::AppState;
use crate::error::ApiResult;

/// `GET /healthz`: the process answers.
pub async fn get_healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// `GET /readyz`: storage is reachable (else `503`).
pub async fn get_readyz(State(state): State<AppState>) -> ApiResult<Json<Value>> {
    state.service.ready().await?;
    Ok(Json(json!({ "status": "ready" })))
}

/// `GET /metrics`: Prometheus text. Counters and the cache's size; no secret, token id or address.
pub async fn get_metrics(State(state): State<AppState>) -> impl axum::response::IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.service.metrics_text(),
    )
}
