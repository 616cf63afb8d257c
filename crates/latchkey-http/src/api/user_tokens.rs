//! Personal tokens: `/v1/user/tokens…`, and the user's audit log `/v1/user/events`.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use latchkey_core::Grace;
use latchkey_service::tokens::{CreatePersonalToken, CreatedToken};
use latchkey_store::{EventFilter, EventScope};
use secrecy::SecretString;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::AppState;
use crate::api::views::{AccountView, EventView, TokenView};
use crate::error::ApiResult;
use crate::extract::{JsonBody, JsonOrEmpty, SignedIn};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateBody {
    name: String,
    #[serde(rename = "type")]
    token_type: Option<String>,
    expires_in_days: Option<u32>,
    password: SecretString,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenameBody {
    name: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PasswordBody {
    password: SecretString,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RotateBody {
    #[serde(default)]
    grace: Grace,
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
    JsonBody(body): JsonBody<CreateBody>,
) -> ApiResult<Response> {
    let request = CreatePersonalToken {
        name: body.name,
        token_type: body.token_type,
        expires_in_days: body.expires_in_days,
        password: body.password,
    };
    let token = state
        .service
        .create_personal_token(&me.caller, &me.session.user, request)
        .await?;
    Ok(created(&state, &token))
}

/// One token, with the organisations and roles it reaches right now (SPEC 2.4).
pub async fn get_user_token(
    State(state): State<AppState>,
    me: SignedIn,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let token = state.service.personal_token(&me.session.user, &id).await?;
    let status = state.service.status_of(&token);
    let accounts = if status.is_live() && me.session.user.api_tokens_enabled {
        state
            .service
            .list_accounts(&me.session.user.id)
            .await?
            .iter()
            .filter(|a| a.api_tokens_enabled)
            .map(AccountView::new)
            .collect()
    } else {
        Vec::new()
    };
    let mut body =
        serde_json::to_value(TokenView::new(&token, state.service.now())).unwrap_or(Value::Null);
    if let Value::Object(map) = &mut body {
        map.insert(
            "accounts".into(),
            serde_json::to_value(accounts).unwrap_or(Value::Null),
        );
    }
    Ok(Json(body))
}

pub async fn rename_user_token(
    State(state): State<AppState>,
    me: SignedIn,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<RenameBody>,
) -> ApiResult<Json<TokenView>> {
    let token = state
        .service
        .rename_personal_token(&me.caller, &me.session.user, &id, &body.name)
        .await?;
    Ok(Json(TokenView::new(&token, state.service.now())))
}

pub async fn rotate_user_token(
    State(state): State<AppState>,
    me: SignedIn,
    Path(id): Path<String>,
    JsonOrEmpty(body): JsonOrEmpty<RotateBody>,
) -> ApiResult<Response> {
    let grace = body.grace;
    let token = state
        .service
        .rotate_personal_token(&me.caller, &me.session.user, &id, grace)
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
        .revoke_personal_token(&me.caller, &me.session.user, &id, &body.password)
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
        .reveal_personal_token(&me.caller, &me.session.user, &id, &body.password)
        .await?;
    Ok(Json(json!({ "id": id, "secret": secret.expose() })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PageQuery {
    before: Option<i64>,
    limit: Option<u32>,
}

/// The signed-in user's audit log, newest first; `?before=<cursor>` pages back, and the
/// `Link: <…>; rel="next"` header gives the next page.
pub async fn list_user_events(
    State(state): State<AppState>,
    me: SignedIn,
    Query(page): Query<PageQuery>,
) -> ApiResult<Response> {
    let limit = page.limit.unwrap_or(50).clamp(1, 200);
    let filter = EventFilter {
        scope: EventScope::User(me.session.user.id.clone()),
        before_seq: page.before,
        limit,
    };
    let events = state.service.list_events(&filter).await?;
    let views: Vec<EventView> = events.iter().map(EventView::new).collect();
    let mut response = Json(views).into_response();
    if events.len() == limit as usize
        && let Some(last) = events.last()
    {
        let link = format!(
            "</v1/user/events?before={}&limit={limit}>; rel=\"next\"",
            last.seq
        );
        if let Ok(v) = axum::http::HeaderValue::from_str(&link) {
            response.headers_mut().insert(axum::http::header::LINK, v);
        }
    }
    Ok(response)
}
