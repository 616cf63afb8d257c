//! `POST /v1/sessions` (sign in) and `DELETE /v1/sessions/current` (sign out).

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use secrecy::SecretString;
use serde::Deserialize;
use serde_json::json;

use crate::AppState;
use crate::api::views::rfc3339;
use crate::cookies::{new_session_cookie, session_cookie};
use crate::error::ApiResult;
use crate::extract::{ClientIp, JsonBody, SignedIn};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateSession {
    email: String,
    password: SecretString,
}

pub async fn create_session(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    JsonBody(body): JsonBody<CreateSession>,
) -> ApiResult<Response> {
    let session = state
        .service
        .login(Some(ip), &body.email, &body.password)
        .await?;
    let body = json!({
        "session_token": session.secret.expose(),
        "expires_at": rfc3339(session.expires_at),
        "user": { "id": session.user.id, "email": session.user.email },
    });
    let mut response = (StatusCode::CREATED, Json(body)).into_response();
    response
        .headers_mut()
        .insert(header::SET_COOKIE, new_session_cookie(&state, &session));
    Ok(response)
}

pub async fn delete_current_session(
    State(state): State<AppState>,
    signed_in: SignedIn,
) -> ApiResult<Response> {
    state
        .service
        .logout(&signed_in.caller, &signed_in.session)
        .await?;
    let mut response = StatusCode::NO_CONTENT.into_response();
    response
        .headers_mut()
        .insert(header::SET_COOKIE, session_cookie(&state, "", 0));
    Ok(response)
}
