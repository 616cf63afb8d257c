//! `POST /v1/leaks`: anyone who finds a token (a scanner, a stranger) can report it; every live
//! token in the list is revoked. The answer says how many and nothing else.

use axum::Json;
use axum::extract::State;
use latchkey_service::ErrorCode;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::extract::{ClientIp, JsonBody};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeakReport {
    tokens: Vec<String>,
}

pub async fn report_leaks(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    body: Result<JsonBody<LeakReport>, ApiError>,
) -> ApiResult<Json<Value>> {
    // What is posted here is secrets by definition: a body that does not fit gets one fixed
    // sentence, with nothing of what was sent (not even where it went wrong).
    let JsonBody(body) = body.map_err(|e| match e.0.code() {
        ErrorCode::InvalidRequest => ApiError::client(
            ErrorCode::InvalidRequest,
            "the body must be {\"tokens\": [\"<token>\", …]}: a list of token strings",
        ),
        _ => e,
    })?;
    let revoked = state.service.report_leaks(ip, &body.tokens).await?;
    Ok(Json(json!({ "revoked": revoked })))
}
