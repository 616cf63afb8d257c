//! Organisation tokens (admins): `/v1/orgs/{org}/tokens…`.

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use latchkey_service::org_tokens::CreateOrgToken;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::AppState;
use crate::api::tokens::{
    PasswordBody, RotateBody, UpdateBody, created, created_or_replayed, idempotency_key,
    password_of,
};
use crate::api::views::TokenView;
use crate::error::ApiResult;
use crate::extract::{JsonBody, JsonOrEmpty, Path, SignedIn};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateBody {
    name: String,
    #[serde(rename = "type")]
    token_type: String,
    expires_in_days: Option<u32>,
    allowed_ips: Option<Vec<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RevokeAllBody {
    #[serde(rename = "type")]
    token_type: Option<String>,
}

pub async fn list_org_tokens(
    State(state): State<AppState>,
    me: SignedIn,
    Path(org): Path<String>,
) -> ApiResult<Json<Vec<TokenView>>> {
    let now = state.service.now();
    let tokens = state
        .service
        .list_org_tokens(&me.session.user, &org)
        .await?;
    Ok(Json(
        tokens.iter().map(|t| TokenView::new(t, now)).collect(),
    ))
}

pub async fn create_org_token(
    State(state): State<AppState>,
    me: SignedIn,
    Path(org): Path<String>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<CreateBody>,
) -> ApiResult<Response> {
    let request = CreateOrgToken {
        name: body.name,
        token_type: body.token_type,
        expires_in_days: body.expires_in_days,
        allowed_ips: body.allowed_ips,
    };
    let outcome = state
        .service
        .create_org_token(
            &me.caller,
            &me.session.user,
            &org,
            request,
            idempotency_key(&headers),
        )
        .await?;
    Ok(created_or_replayed(&state, &outcome))
}

/// One token, with what it reaches right now: the organisation itself, while it is live, the
/// organisation's tokens are switched on and the organisation has the feature its type needs
/// (the checks `/v1/me` makes).
pub async fn get_org_token(
    State(state): State<AppState>,
    me: SignedIn,
    Path((org, id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let (_org, token) = state.service.org_token(&me.session.user, &org, &id).await?;
    let accounts = state.service.token_accounts(&token).await?;
    let now = state.service.now();
    let mut body = serde_json::to_value(TokenView::new(&token, now)).unwrap_or(Value::Null);
    if let Value::Object(map) = &mut body {
        map.insert("accounts".into(), Value::Array(accounts));
    }
    Ok(Json(body))
}

pub async fn update_org_token(
    State(state): State<AppState>,
    me: SignedIn,
    Path((org, id)): Path<(String, String)>,
    JsonBody(body): JsonBody<UpdateBody>,
) -> ApiResult<Json<TokenView>> {
    let token = state
        .service
        .update_org_token(
            &me.caller,
            &me.session.user,
            &org,
            &id,
            body.name.as_deref(),
            body.allowed_ips.as_deref(),
        )
        .await?;
    Ok(Json(TokenView::new(&token, state.service.now())))
}

pub async fn delete_org_token(
    State(state): State<AppState>,
    me: SignedIn,
    Path((org, id)): Path<(String, String)>,
) -> ApiResult<Json<TokenView>> {
    let token = state
        .service
        .delete_org_token(&me.caller, &me.session.user, &org, &id)
        .await?;
    Ok(Json(TokenView::new(&token, state.service.now())))
}

pub async fn rotate_org_token(
    State(state): State<AppState>,
    me: SignedIn,
    Path((org, id)): Path<(String, String)>,
    JsonOrEmpty(body): JsonOrEmpty<RotateBody>,
) -> ApiResult<Response> {
    let token = state
        .service
        .rotate_org_token(&me.caller, &me.session.user, &org, &id, body.grace)
        .await?;
    Ok(created(&state, &token))
}

pub async fn reveal_org_token(
    State(state): State<AppState>,
    me: SignedIn,
    Path((org, id)): Path<(String, String)>,
    JsonBody(body): JsonBody<PasswordBody>,
) -> ApiResult<Json<Value>> {
    let secret = state
        .service
        .reveal_org_token(
            &me.caller,
            &me.session.user,
            &org,
            &id,
            &password_of(&state, &me, body.password)?,
        )
        .await?;
    Ok(Json(json!({ "id": id, "secret": secret.expose() })))
}

/// `POST /v1/orgs/{org}/tokens/revoke-all {type?}`: the organisation's kill switch.
pub async fn revoke_all_org_tokens(
    State(state): State<AppState>,
    me: SignedIn,
    Path(org): Path<String>,
    JsonOrEmpty(body): JsonOrEmpty<RevokeAllBody>,
) -> ApiResult<Json<Value>> {
    let done = state
        .service
        .revoke_all_org_tokens(
            &me.caller,
            &me.session.user,
            &org,
            body.token_type.as_deref(),
        )
        .await?;
    Ok(Json(
        json!({ "revoked": done.tokens.len(), "tokens": done.tokens, "applied": done.applied }),
    ))
}
