//! People's own security (SPEC 9): `POST /v1/user/password`, `GET|DELETE /v1/user/sessions…`
//! and `GET|DELETE /v1/user/apps…`, with a session (`SignedIn`).

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::AppState;
use crate::api::views::rfc3339;
use crate::cookies::new_session_cookie;
use crate::error::ApiResult;
use crate::extract::{ClientIp, JsonBody, Path, SignedIn};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangePassword {
    current_password: SecretString,
    new_password: SecretString,
}

/// Every session of the person ends, this one included; the answer holds the new one (and
/// sets the console's cookie to it).
pub async fn change_password(
    State(state): State<AppState>,
    me: SignedIn,
    JsonBody(body): JsonBody<ChangePassword>,
) -> ApiResult<Response> {
    let session = state
        .service
        .change_password(
            &me.caller,
            &me.session,
            &body.current_password,
            &body.new_password,
        )
        .await?;
    let answer = json!({
        "session_token": session.secret.expose(),
        "expires_at": rfc3339(session.expires_at),
    });
    let mut response = Json(answer).into_response();
    response
        .headers_mut()
        .insert(header::SET_COOKIE, new_session_cookie(&state, &session));
    Ok(response)
}

#[derive(Serialize)]
pub struct SessionView {
    id: String,
    created_at: String,
    last_seen_at: String,
    expires_at: String,
    /// The session this request came with.
    current: bool,
}

pub async fn list_sessions(
    State(state): State<AppState>,
    me: SignedIn,
) -> ApiResult<Json<Vec<SessionView>>> {
    let sessions = state.service.list_my_sessions(&me.session).await?;
    Ok(Json(
        sessions
            .iter()
            .map(|s| SessionView {
                id: s.id.clone(),
                created_at: rfc3339(s.created_at),
                last_seen_at: rfc3339(s.last_seen_at),
                expires_at: rfc3339(s.expires_at),
                current: s.id == me.session.session_id,
            })
            .collect(),
    ))
}

pub async fn end_session(
    State(state): State<AppState>,
    me: SignedIn,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    state
        .service
        .end_my_session(&me.caller, &me.session, &id)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize)]
pub struct AppView {
    client_id: String,
    name: String,
    scopes: Vec<String>,
    since: String,
}

pub async fn list_apps(
    State(state): State<AppState>,
    me: SignedIn,
) -> ApiResult<Json<Vec<AppView>>> {
    let apps = state.service.list_my_apps(&me.session).await?;
    Ok(Json(
        apps.into_iter()
            .map(|a| AppView {
                client_id: a.client_id,
                name: a.client_name,
                scopes: a.scopes,
                since: rfc3339(a.since),
            })
            .collect(),
    ))
}

/// Withdraws every consent given to one app: its refresh and access tokens stop at once.
pub async fn revoke_app(
    State(state): State<AppState>,
    me: SignedIn,
    Path(client_id): Path<String>,
) -> ApiResult<StatusCode> {
    state
        .service
        .revoke_my_app(&me.caller, &me.session, &client_id)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResetRequest {
    email: String,
}

/// `POST /v1/password-resets`: `202` whether the address is known or not.
pub async fn request_password_reset(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    JsonBody(body): JsonBody<ResetRequest>,
) -> ApiResult<(StatusCode, Json<serde_json::Value>)> {
    state
        .service
        .request_password_reset(ip, &body.email)
        .await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "status": "if an account has this address, a link is on its way" })),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResetCompletion {
    code: String,
    new_password: SecretString,
}

/// `POST /v1/password-resets/complete`: the new password, with the code from the mail.
pub async fn complete_password_reset(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    JsonBody(body): JsonBody<ResetCompletion>,
) -> ApiResult<StatusCode> {
    state
        .service
        .complete_password_reset(ip, &body.code, &body.new_password)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
