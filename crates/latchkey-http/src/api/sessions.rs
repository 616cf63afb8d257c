//! `POST /v1/sessions` (sign in) and `DELETE /v1/sessions/current` (sign out).

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use secrecy::SecretString;
use serde::Deserialize;
use serde_json::json;

use crate::AppState;
use crate::api::views::rfc3339;
use crate::error::ApiResult;
use crate::extract::{ClientIp, JsonBody, SESSION_COOKIE, SignedIn};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateSession {
    email: String,
    password: SecretString,
}

pub(crate) fn cookie(state: &AppState, value: &str, max_age: i64) -> HeaderValue {
    let secure = if state.secure_cookies { "; Secure" } else { "" };
    let text = format!(
        "{SESSION_COOKIE}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}"
    );
    HeaderValue::from_str(&text)
        .unwrap_or_else(|_| HeaderValue::from_static("latchkey_session=; Path=/; Max-Age=0"))
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
    let max_age = (session.expires_at - state.service.now()).whole_seconds();
    let body = json!({
        "session_token": session.secret.expose(),
        "expires_at": rfc3339(session.expires_at),
        "user": { "id": session.user.id, "email": session.user.email },
    });
    let mut response = (StatusCode::CREATED, Json(body)).into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        cookie(&state, session.secret.expose(), max_age),
    );
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
        .insert(header::SET_COOKIE, cookie(&state, "", 0));
    Ok(response)
}
