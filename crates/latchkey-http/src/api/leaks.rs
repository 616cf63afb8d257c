//! `POST /v1/leaks`: anyone who finds a token (a scanner, a stranger) can report it; every live
//! token in the list is revoked. The answer says how many and nothing else.

use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::AppState;
use crate::error::ApiResult;
use crate::extract::{ClientIp, JsonBody};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeakReport {
    tokens: Vec<String>,
}

pub async fn report_leaks(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    JsonBody(body): JsonBody<LeakReport>,
) -> ApiResult<Json<Value>> {
    let revoked = state.service.report_leaks(ip, &body.tokens).await?;
    Ok(Json(json!({ "revoked": revoked })))
}
