//! OAuth clients of an organisation (admins): `/v1/orgs/{org}/clients…`.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use latchkey_service::oauth::clients::{ClientSpec, ClientSpecChange};
use latchkey_store::{ClientSecretRecord, OAuthClient};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::AppState;
use crate::api::views::rfc3339;
use crate::error::ApiResult;
use crate::extract::{JsonBody, JsonOrEmpty, Path, SignedIn};

#[derive(Serialize)]
pub struct SecretView {
    id: String,
    hint: String,
    created_at: String,
    /// When it last authenticated the app (to ten minutes); `null` if never.
    last_used_at: Option<String>,
}

impl SecretView {
    fn new(s: &ClientSecretRecord) -> Self {
        Self {
            id: s.id.clone(),
            hint: s.hint.clone(),
            created_at: rfc3339(s.created_at),
            last_used_at: s.last_used_at.map(rfc3339),
        }
    }
}

#[derive(Serialize)]
pub struct ClientView {
    id: String,
    name: String,
    grant_types: Vec<String>,
    redirect_uris: Vec<String>,
    scopes: Vec<String>,
    confidential: bool,
    introspect: bool,
    created_at: String,
    secrets: Vec<SecretView>,
}

impl ClientView {
    fn new(c: &OAuthClient, secrets: &[ClientSecretRecord]) -> Self {
        Self {
            id: c.id.clone(),
            name: c.name.clone(),
            grant_types: c.grant_types.clone(),
            redirect_uris: c.redirect_uris.clone(),
            scopes: c.scopes.clone(),
            confidential: c.is_confidential,
            introspect: c.can_introspect,
            created_at: rfc3339(c.created_at),
            secrets: secrets
                .iter()
                .filter(|s| s.revoked_at.is_none())
                .map(SecretView::new)
                .collect(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateClient {
    name: String,
    grant_types: Vec<String>,
    #[serde(default)]
    redirect_uris: Vec<String>,
    #[serde(default)]
    scopes: Vec<String>,
    /// `false` for a public client (no secret, PKCE).
    confidential: Option<bool>,
    #[serde(default)]
    introspect: bool,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct UpdateClient {
    name: Option<String>,
    grant_types: Option<Vec<String>>,
    redirect_uris: Option<Vec<String>>,
    scopes: Option<Vec<String>>,
    introspect: Option<bool>,
}

pub async fn list_clients(
    State(state): State<AppState>,
    me: SignedIn,
    Path(org): Path<String>,
) -> ApiResult<Json<Vec<ClientView>>> {
    let clients = state.service.list_clients(&me.session.user, &org).await?;
    Ok(Json(
        clients.iter().map(|(c, s)| ClientView::new(c, s)).collect(),
    ))
}

/// `201` with the client and, for a confidential client, its first secret, shown this once.
pub async fn create_client(
    State(state): State<AppState>,
    me: SignedIn,
    Path(org): Path<String>,
    JsonBody(body): JsonBody<CreateClient>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let spec = ClientSpec {
        name: body.name,
        grant_types: body.grant_types,
        redirect_uris: body.redirect_uris,
        scopes: body.scopes,
        confidential: body.confidential.unwrap_or(true),
        can_introspect: body.introspect,
    };
    let created = state
        .service
        .create_client_as_admin(&me.caller, &me.session.user, &org, spec)
        .await?;
    let secrets: Vec<ClientSecretRecord> = created.secret.iter().map(|(r, _)| r.clone()).collect();
    let mut view =
        serde_json::to_value(ClientView::new(&created.client, &secrets)).unwrap_or(Value::Null);
    if let (Value::Object(map), Some((_, secret))) = (&mut view, &created.secret) {
        map.insert(
            "client_secret".into(),
            Value::String(secret.expose().to_owned()),
        );
    }
    Ok((StatusCode::CREATED, Json(view)))
}

pub async fn update_client(
    State(state): State<AppState>,
    me: SignedIn,
    Path((org, id)): Path<(String, String)>,
    JsonOrEmpty(body): JsonOrEmpty<UpdateClient>,
) -> ApiResult<Json<ClientView>> {
    let change = ClientSpecChange {
        name: body.name,
        grant_types: body.grant_types,
        redirect_uris: body.redirect_uris,
        scopes: body.scopes,
        can_introspect: body.introspect,
    };
    let client = state
        .service
        .update_client(&me.caller, &me.session.user, &org, &id, change)
        .await?;
    let secrets = state.service.client_secrets(&client.id).await?;
    Ok(Json(ClientView::new(&client, &secrets)))
}

pub async fn delete_client(
    State(state): State<AppState>,
    me: SignedIn,
    Path((org, id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    state
        .service
        .delete_client(&me.caller, &me.session.user, &org, &id)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `201 {id, hint, created_at, secret}`: a new secret, shown this once (at most 2 active).
pub async fn add_client_secret(
    State(state): State<AppState>,
    me: SignedIn,
    Path((org, id)): Path<(String, String)>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let (record, secret) = state
        .service
        .add_client_secret(&me.caller, &me.session.user, &org, &id)
        .await?;
    let body = json!({ "id": record.id, "hint": record.hint, "created_at": rfc3339(record.created_at), "secret": secret.expose() });
    Ok((StatusCode::CREATED, Json(body)))
}

pub async fn delete_client_secret(
    State(state): State<AppState>,
    me: SignedIn,
    Path((org, id, secret_id)): Path<(String, String, String)>,
) -> ApiResult<StatusCode> {
    state
        .service
        .delete_client_secret(&me.caller, &me.session.user, &org, &id, &secret_id)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
