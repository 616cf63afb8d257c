//! Organisations and their members: `GET /v1/orgs` (mine, with my role) and
//! `/v1/orgs/{org}/members[/{user}]` (admins only; members and partners get `403`, outsiders `404`).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use latchkey_core::Role;
use latchkey_store::Member;
use serde::{Deserialize, Serialize};

use crate::AppState;
use crate::api::views::{AccountView, rfc3339};
use crate::error::ApiResult;
use crate::extract::{JsonBody, Path, SignedIn};

pub async fn list_orgs(
    State(state): State<AppState>,
    me: SignedIn,
) -> ApiResult<Json<Vec<AccountView>>> {
    let accounts = state.service.list_accounts(&me.session.user.id).await?;
    Ok(Json(accounts.iter().map(AccountView::new).collect()))
}

#[derive(Serialize)]
pub struct MemberView {
    id: String,
    email: String,
    role: Role,
    since: String,
}

impl MemberView {
    pub(crate) fn new(m: &Member) -> Self {
        Self {
            id: m.user_id.to_string(),
            email: m.email.to_string(),
            role: m.role,
            since: rfc3339(m.since),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddMember {
    email: String,
    role: Role,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateMember {
    role: Role,
}

pub async fn list_members(
    State(state): State<AppState>,
    me: SignedIn,
    Path(org): Path<String>,
) -> ApiResult<Json<Vec<MemberView>>> {
    let members = state
        .service
        .list_members(&me.session.user.id, &org)
        .await?;
    Ok(Json(members.iter().map(MemberView::new).collect()))
}

pub async fn add_member(
    State(state): State<AppState>,
    me: SignedIn,
    Path(org): Path<String>,
    JsonBody(body): JsonBody<AddMember>,
) -> ApiResult<(StatusCode, Json<MemberView>)> {
    let member = state
        .service
        .add_member_as_admin(
            &me.caller,
            &me.session.user.id,
            &org,
            &body.email,
            body.role,
        )
        .await?;
    Ok((StatusCode::CREATED, Json(MemberView::new(&member))))
}

pub async fn update_member(
    State(state): State<AppState>,
    me: SignedIn,
    Path((org, user)): Path<(String, String)>,
    JsonBody(body): JsonBody<UpdateMember>,
) -> ApiResult<Json<MemberView>> {
    let member = state
        .service
        .update_member_as_admin(&me.caller, &me.session.user.id, &org, &user, body.role)
        .await?;
    Ok(Json(MemberView::new(&member)))
}

pub async fn remove_member(
    State(state): State<AppState>,
    me: SignedIn,
    Path((org, user)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    state
        .service
        .remove_member_as_admin(&me.caller, &me.session.user.id, &org, &user)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
