//! What personal and organisation token endpoints share: request bodies and the answers to a
//! create.

use axum::Json;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use latchkey_core::Grace;
use latchkey_service::tokens::{Created, CreatedToken};
use secrecy::SecretString;
use serde::Deserialize;
use serde_json::Value;

use crate::AppState;
use crate::api::views::TokenView;
use crate::error::{ApiError, ApiResult};
use crate::extract::SignedIn;
use latchkey_service::ErrorCode;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateBody {
    pub name: Option<String>,
    pub allowed_ips: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PasswordBody {
    pub password: Option<SecretString>,
}

/// The `password` of a body: required (`400` without it), except from someone who confirms at
/// the single-sign-on provider, who has none to give (their session's confirmation counts).
pub fn password_of(
    state: &AppState,
    me: &SignedIn,
    given: Option<SecretString>,
) -> ApiResult<SecretString> {
    match given {
        Some(password) => Ok(password),
        None if state.service.reauthenticates_at_provider(&me.session.user) => {
            Ok(SecretString::from(""))
        }
        None => Err(ApiError::client(
            ErrorCode::InvalidRequest,
            "invalid JSON body: missing field `password`",
        )),
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RotateBody {
    #[serde(default)]
    pub grace: Grace,
}

/// A personal token's rotation: like creating one, it needs the password (SPEC 2.3).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PersonalRotateBody {
    #[serde(default)]
    pub grace: Grace,
    pub password: Option<SecretString>,
}

/// The `Idempotency-Key` header, if any.
pub fn idempotency_key(headers: &HeaderMap) -> Option<String> {
    headers
        .get("idempotency-key")
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
}

/// `201` with the record and, this once, the secret.
pub fn created(state: &AppState, token: &CreatedToken) -> Response {
    let mut body = serde_json::to_value(TokenView::new(&token.record, state.service.now()))
        .unwrap_or(Value::Null);
    if let Value::Object(map) = &mut body {
        map.insert(
            "secret".into(),
            Value::String(token.secret.expose().to_owned()),
        );
    }
    (StatusCode::CREATED, Json(body)).into_response()
}

/// `201` for a new token; for a retry with the same `Idempotency-Key`, `200` with the first
/// token's record (not its secret) and `Idempotent-Replayed: true`.
pub fn created_or_replayed(state: &AppState, outcome: &Created) -> Response {
    match outcome {
        Created::New(token) => created(state, token),
        Created::Replayed(record) => {
            let mut response = Json(TokenView::new(record, state.service.now())).into_response();
            response
                .headers_mut()
                .insert("idempotent-replayed", HeaderValue::from_static("true"));
            response
        }
    }
}
