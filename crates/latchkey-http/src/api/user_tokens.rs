//! Personal tokens: `/v1/user/tokens…`.

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use latchkey_service::tokens::CreatePersonalToken;
use secrecy::SecretString;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::AppState;
use crate::api::tokens::{
    PasswordBody, PersonalRotateBody, UpdateBody, created, created_or_replayed, idempotency_key,
    password_of,
};
use crate::api::views::TokenView;
use crate::error::ApiResult;
use crate::extract::{JsonBody, Path, SignedIn};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateBody {
    name: String,
    #[serde(rename = "type")]
    token_type: Option<String>,
    expires_in_days: Option<u32>,
    allowed_ips: Option<Vec<String>>,
    password: Option<SecretString>,
}

pub async fn list_user_tokens(
    State(state): State<AppState>,
    me: SignedIn,
) -> ApiResult<Json<Vec<TokenView>>> {
    let now = state.service.now();
    let tokens = state.service.list_personal_tokens(&me.session.user).await?;
    Ok(Json(
        tokens.iter().map(|t| TokenView::new(t, now)).collect(),
    ))
}

pub async fn create_user_token(
    State(state): State<AppState>,
    me: SignedIn,
    headers: HeaderMap,
    JsonBody(body): JsonBody<CreateBody>,
) -> ApiResult<Response> {
    let request = CreatePersonalToken {
        name: body.name,
        token_type: body.token_type,
        expires_in_days: body.expires_in_days,
        allowed_ips: body.allowed_ips,
        password: password_of(&state, &me, body.password)?,
    };
    let outcome = state
        .service
        .create_personal_token(
            &me.caller,
            &me.session.user,
            request,
            idempotency_key(&headers),
        )
        .await?;
    Ok(created_or_replayed(&state, &outcome))
}

/// One token, with the organisations and roles it reaches right now (SPEC 2.4).
pub async fn get_user_token(
    State(state): State<AppState>,
    me: SignedIn,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let token = state.service.personal_token(&me.session.user, &id).await?;
    let accounts = state.service.token_accounts(&token).await?;
    let mut body =
        serde_json::to_value(TokenView::new(&token, state.service.now())).unwrap_or(Value::Null);
    if let Value::Object(map) = &mut body {
        map.insert("accounts".into(), Value::Array(accounts));
    }
    Ok(Json(body))
}

pub async fn update_user_token(
    State(state): State<AppState>,
    me: SignedIn,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<UpdateBody>,
) -> ApiResult<Json<TokenView>> {
    let token = state
        .service
        .update_personal_token(
            &me.caller,
            &me.session.user,
            &id,
            body.name.as_deref(),
            body.allowed_ips.as_deref(),
        )
        .await?;
    Ok(Json(TokenView::new(&token, state.service.now())))
}

pub async fn rotate_user_token(
    State(state): State<AppState>,
    me: SignedIn,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<PersonalRotateBody>,
) -> ApiResult<Response> {
    let token = state
        .service
        .rotate_personal_token(
            &me.caller,
            &me.session.user,
            &id,
            body.grace,
            &password_of(&state, &me, body.password)?,
        )
        .await?;
    Ok(created(&state, &token))
}

pub async fn revoke_user_token(
    State(state): State<AppState>,
    me: SignedIn,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<PasswordBody>,
) -> ApiResult<Json<TokenView>> {
    let token = state
        .service
        .revoke_personal_token(
            &me.caller,
            &me.session.user,
            &id,
            &password_of(&state, &me, body.password)?,
        )
        .await?;
    Ok(Json(TokenView::new(&token, state.service.now())))
}

pub async fn reveal_user_token(
    State(state): State<AppState>,
    me: SignedIn,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<PasswordBody>,
) -> ApiResult<Json<Value>> {
    let secret = state
        .service
        .reveal_personal_token(
            &me.caller,
            &me.session.user,
            &id,
            &password_of(&state, &me, body.password)?,
        )
        .await?;
    Ok(Json(json!({ "id": id, "secret": secret.expose() })))
}

/// `POST /v1/user/tokens/revoke-all {password}`: every personal token, at once.
pub async fn revoke_all_user_tokens(
    State(state): State<AppState>,
    me: SignedIn,
    JsonBody(body): JsonBody<PasswordBody>,
) -> ApiResult<Json<Value>> {
    let done = state
        .service
        .revoke_all_personal_tokens(
            &me.caller,
            &me.session.user,
            &password_of(&state, &me, body.password)?,
        )
        .await?;
    Ok(Json(
        json!({ "revoked": done.tokens.len(), "tokens": done.tokens, "applied": done.applied }),
    ))
}
