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
