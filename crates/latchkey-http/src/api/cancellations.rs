//! `POST /v1/token-cancellations`: uses the one-click cancel link of a token's creation mail
//! (SPEC 2.4). Open to anyone holding the code: the code is the credential, and it only ever
//! revokes a token that has not started working. The console's `/cancel` page calls the same
//! service methods.

use axum::Json;
use axum::extract::State;
use latchkey_service::Caller;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::AppState;
use crate::error::ApiResult;
use crate::extract::{ClientIp, JsonBody};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cancellation {
    code: String,
}

pub async fn create_token_cancellation(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    JsonBody(body): JsonBody<Cancellation>,
) -> ApiResult<Json<Value>> {
    let token = state
        .service
        .use_cancel_link(&body.code, &Caller::anonymous(Some(ip)))
        .await?;
    Ok(Json(json!({ "token_id": token.id, "status": "revoked" })))
}
