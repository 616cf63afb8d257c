//! The operator API (SPEC 9): what `latchkey user|org|token` do to people, organisations and
//! tokens, over HTTP under `/v1/admin` for the platform's back office, authenticated by an
//! operator credential (`latchkey operator-key create`). Every handler calls the service
//! function the CLI calls.

use axum::Json;
use axum::extract::{FromRequestParts, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use latchkey_core::Role;
use latchkey_service::{Caller, ErrorCode};
use latchkey_store::{CredentialKind, Org, Owner, User};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::AppState;
use crate::api::orgs::MemberView;
use crate::api::views::{TokenView, rfc3339};
use crate::error::{ApiError, ApiResult};
use crate::extract::{Bearer, JsonBody, Path, QueryParams, bearer, peer_ip};

/// The back office, authenticated by its operator credential (looked up on every request: a
/// revoked one is refused from the very next).
pub struct Operator(pub Caller);

impl FromRequestParts<AppState> for Operator {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> ApiResult<Self> {
        let ip = peer_ip(parts, &state.trusted_proxies);
        let Bearer::Token(secret) = bearer(&parts.headers) else {
            return Err(ApiError::client(
                ErrorCode::Unauthenticated,
                "an operator credential is required (Authorization: Bearer lkop_…)",
            ));
        };
        Ok(Self(
            state
                .service
                .authenticate_platform(CredentialKind::Operator, secret, ip)
                .await?,
        ))
    }
}

#[derive(Serialize)]
pub struct UserView {
    id: String,
    email: String,
    operator: bool,
    disabled: bool,
    api_tokens_enabled: bool,
    provisioned: bool,
    created_at: String,
}

impl UserView {
    fn new(u: &User) -> Self {
        Self {
            id: u.id.to_string(),
            email: u.email.to_string(),
            operator: u.is_operator,
            disabled: u.disabled,
            api_tokens_enabled: u.api_tokens_enabled,
            provisioned: u.provisioned,
            created_at: rfc3339(u.created_at),
        }
    }
}

#[derive(Serialize)]
pub struct OrgView {
    id: String,
    name: String,
    features: Vec<String>,
    api_tokens_enabled: bool,
    provisioned: bool,
    created_at: String,
}

impl OrgView {
    fn new(o: &Org) -> Self {
        Self {
            id: o.id.to_string(),
            name: o.name.clone(),
            features: o.features.clone(),
            api_tokens_enabled: o.api_tokens_enabled,
            provisioned: o.provisioned,
            created_at: rfc3339(o.created_at),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    email: String,
    password: SecretString,
    #[serde(default)]
    operator: bool,
}

/// `POST /v1/admin/users` (`latchkey user create`).
pub async fn create_user(
    State(state): State<AppState>,
    Operator(caller): Operator,
    JsonBody(body): JsonBody<CreateUser>,
) -> ApiResult<(StatusCode, Json<UserView>)> {
    let user = state
        .service
        .create_user(&caller, &body.email, &body.password, body.operator)
        .await?;
    Ok((StatusCode::CREATED, Json(UserView::new(&user))))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FindUser {
    email: String,
}

/// `GET /v1/admin/users?email=` : one person by email.
pub async fn find_user(
    State(state): State<AppState>,
    Operator(_): Operator,
    QueryParams(query): QueryParams<FindUser>,
) -> ApiResult<Json<UserView>> {
    let user = state.service.find_user_by_email(&query.email).await?;
    Ok(Json(UserView::new(&user)))
}

pub async fn get_user(
    State(state): State<AppState>,
    Operator(_): Operator,
    Path(id): Path<String>,
) -> ApiResult<Json<UserView>> {
    let user = state.service.find_user_by_id(&id).await?;
    Ok(Json(UserView::new(&user)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateUser {
    disabled: Option<bool>,
    api_tokens_enabled: Option<bool>,
}

/// `PATCH /v1/admin/users/{id}` (`latchkey user update`): in force at once.
pub async fn update_user(
    State(state): State<AppState>,
    Operator(caller): Operator,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<UpdateUser>,
) -> ApiResult<Json<UserView>> {
    let user = state.service.find_user_by_id(&id).await?;
    let user = state
        .service
        .switch_user(&caller, &user, body.disabled, body.api_tokens_enabled)
        .await?;
    Ok(Json(UserView::new(&user)))
}

/// `POST /v1/admin/users/{id}/revoke-all` (`latchkey user revoke-all`).
pub async fn revoke_all_user_tokens(
    State(state): State<AppState>,
    Operator(caller): Operator,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let user = state.service.find_user_by_id(&id).await?;
    let done = state
        .service
        .revoke_all_person_tokens(&caller, &user)
        .await?;
    Ok(Json(killed(&done)))
}

/// The kill switch's answer, as `POST /v1/user/tokens/revoke-all` and the CLI give it.
fn killed(done: &latchkey_service::tokens::KillSwitch) -> Value {
    json!({ "revoked": done.tokens.len(), "tokens": done.tokens, "applied": done.applied })
}

/// `GET /v1/admin/orgs` (every organisation).
pub async fn list_orgs(
    State(state): State<AppState>,
    Operator(_): Operator,
) -> ApiResult<Json<Vec<OrgView>>> {
    let orgs = state.service.list_orgs().await?;
    Ok(Json(orgs.iter().map(OrgView::new).collect()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateOrg {
    name: String,
    #[serde(default)]
    features: Vec<String>,
}

/// `POST /v1/admin/orgs` (`latchkey org create`).
pub async fn create_org(
    State(state): State<AppState>,
    Operator(caller): Operator,
    JsonBody(body): JsonBody<CreateOrg>,
) -> ApiResult<(StatusCode, Json<OrgView>)> {
    let org = state
        .service
        .create_org(&caller, &body.name, &body.features)
        .await?;
    Ok((StatusCode::CREATED, Json(OrgView::new(&org))))
}

pub async fn get_org(
    State(state): State<AppState>,
    Operator(_): Operator,
    Path(id): Path<String>,
) -> ApiResult<Json<OrgView>> {
    let org = state.service.find_org(&id).await?;
    Ok(Json(OrgView::new(&org)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateOrg {
    #[serde(default)]
    add_features: Vec<String>,
    #[serde(default)]
    remove_features: Vec<String>,
    api_tokens_enabled: Option<bool>,
}

/// `PATCH /v1/admin/orgs/{id}` (`latchkey org update`): in force at once.
pub async fn update_org(
    State(state): State<AppState>,
    Operator(caller): Operator,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<UpdateOrg>,
) -> ApiResult<Json<OrgView>> {
    let org = state
        .service
        .update_org(
            &caller,
            &id,
            &body.add_features,
            &body.remove_features,
            body.api_tokens_enabled,
        )
        .await?;
    Ok(Json(OrgView::new(&org)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevokeAllOrg {
    #[serde(rename = "type")]
    token_type: Option<String>,
}

/// `POST /v1/admin/orgs/{id}/revoke-all` (`latchkey org revoke-all`): the kill switch.
pub async fn revoke_all_org_tokens(
    State(state): State<AppState>,
    Operator(caller): Operator,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<RevokeAllOrg>,
) -> ApiResult<Json<Value>> {
    let done = state
        .service
        .revoke_all_org_tokens_as_operator(&caller, &id, body.token_type.as_deref())
        .await?;
    Ok(Json(killed(&done)))
}

pub async fn list_members(
    State(state): State<AppState>,
    Operator(_): Operator,
    Path(id): Path<String>,
) -> ApiResult<Json<Vec<MemberView>>> {
    let org = state.service.find_org(&id).await?;
    let members = state.service.org_members(&org).await?;
    Ok(Json(members.iter().map(MemberView::new).collect()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetMember {
    email: String,
    role: Role,
}

/// `POST /v1/admin/orgs/{id}/members` (`latchkey org add-member`): adds, or changes the role.
pub async fn set_member(
    State(state): State<AppState>,
    Operator(caller): Operator,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<SetMember>,
) -> ApiResult<Json<Vec<MemberView>>> {
    state
        .service
        .set_member(&caller, &id, &body.email, body.role)
        .await?;
    let org = state.service.find_org(&id).await?;
    let members = state.service.org_members(&org).await?;
    Ok(Json(members.iter().map(MemberView::new).collect()))
}

/// `DELETE /v1/admin/orgs/{id}/members/{user}` (`latchkey org remove-member`).
pub async fn remove_member(
    State(state): State<AppState>,
    Operator(caller): Operator,
    Path((id, user)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let user = state.service.find_user_by_id(&user).await?;
    state.service.remove_person(&caller, &id, &user.id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListTokens {
    user: Option<String>,
    org: Option<String>,
    #[serde(rename = "type")]
    token_type: Option<String>,
    limit: Option<u32>,
}

/// `GET /v1/admin/tokens?user=&org=&type=&limit=` (`latchkey token list`): never secrets.
pub async fn list_tokens(
    State(state): State<AppState>,
    Operator(_): Operator,
    QueryParams(query): QueryParams<ListTokens>,
) -> ApiResult<Json<Vec<TokenView>>> {
    let owner = match (&query.user, &query.org) {
        (Some(_), Some(_)) => {
            return Err(ApiError::client(
                ErrorCode::InvalidRequest,
                "user and org: one owner at a time",
            ));
        }
        (Some(user), None) => Some(Owner::User(state.service.find_user_by_id(user).await?.id)),
        (None, Some(org)) => Some(Owner::Organisation(state.service.find_org(org).await?.id)),
        (None, None) => None,
    };
    let limit = query.limit.unwrap_or(100).clamp(1, 1000);
    let now = state.service.now();
    let tokens = state
        .service
        .list_tokens(owner, query.token_type, limit)
        .await?;
    Ok(Json(
        tokens.iter().map(|t| TokenView::new(t, now)).collect(),
    ))
}

/// `POST /v1/admin/tokens/{id}/revoke` (`latchkey token revoke`): in force at once.
pub async fn revoke_token(
    State(state): State<AppState>,
    Operator(caller): Operator,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let revoked = state.service.revoke_token_by_id(&caller, &id).await?;
    Ok(Json(json!({ "id": id, "revoked": revoked })))
}
