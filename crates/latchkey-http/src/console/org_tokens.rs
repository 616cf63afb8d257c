//! An organisation's "Tokens" page, for its admins: create, rename inline, rotate with a grace
//! choice, reveal behind the password, delete after typing `Delete token`. The service refuses
//! members and partners (403) and outsiders (404); the layout does not link them here.

use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use latchkey_core::policy::OwnerKind;
use latchkey_service::ServiceError;
use latchkey_service::org_tokens::CreateOrgToken;
use latchkey_service::tokens::Created;
use latchkey_store::Org;
use secrecy::SecretString;

use super::credentials::{
    PasswordForm, Prefill, RotateForm, TokenRow, TypeOption, at_limit, days, grace,
    token_secret_page,
};
use super::{
    CheckedForm, Console, Layout, PageQuery, PageResult, failure, notice_for, redirect, render,
};
use crate::AppState;
use crate::extract::page::PagePath;

#[derive(Template)]
#[template(path = "org_tokens.html")]
pub struct OrgTokensPage {
    pub layout: Layout,
    pub org_name: String,
    pub tokens: Vec<TokenRow>,
    /// Revoked and expired, shown apart.
    pub ended: Vec<TokenRow>,
    pub types: Vec<TypeOption>,
    pub form: Prefill,
    pub org: Option<String>,
    pub base: String,
}

#[derive(Template)]
#[template(path = "delete_token.html")]
pub struct DeleteTokenPage {
    pub layout: Layout,
    pub name: String,
    pub action: String,
    pub back: String,
}

/// The phrase that confirms a deletion.
pub const DELETE_PHRASE: &str = "Delete token";

fn base(org: &str) -> String {
    format!("/orgs/{org}/tokens")
}

fn org_types(state: &AppState, org: &Org, live: &[TokenRow]) -> Vec<TypeOption> {
    state
        .service
        .types()
        .iter()
        .filter(|t| t.owner == OwnerKind::Organisation)
        .map(|t| TypeOption {
            name: t.name.clone(),
            disabled: t
                .requires_feature
                .as_ref()
                .filter(|f| !org.features.contains(f))
                .map(|f| {
                    format!(
                        "needs the organisation feature “{f}”, which an operator turns on: latchkey org update --org {} --feature {f}",
                        org.id
                    )
                })
                .or_else(|| at_limit(t.max_active, live, &t.name)),
        })
        .collect()
}

async fn page(
    state: &AppState,
    console: &Console,
    org_id: &str,
    status: StatusCode,
    form: Prefill,
    error: Option<String>,
) -> PageResult {
    let user = &console.session.user;
    let org = state.service.require_admin(&user.id, org_id).await?;
    let tokens = state.service.list_org_tokens(user, org_id).await?;
    let mut layout = console
        .layout(
            state,
            &format!("Tokens of {}", org.name),
            &format!("tokens:{}", org.id),
        )
        .await;
    layout.notice = notice_for(form.done.as_deref());
    layout.error = error;
    let now = state.service.now();
    let (live, ended) = TokenRow::split(&tokens, now);
    let mut form = form;
    if form.token_type.is_empty() {
        form.token_type = "api".to_owned();
    }
    let page = OrgTokensPage {
        layout,
        org_name: org.name.clone(),
        types: org_types(state, &org, &live),
        tokens: live,
        ended,
        form,
        org: Some(org.id.to_string()),
        base: base(org_id),
    };
    Ok(render(status, &page))
}

/// The page again, with the refusal of an action on one of its tokens.
async fn refused(
    state: &AppState,
    console: &Console,
    org: &str,
    error: &ServiceError,
) -> PageResult {
    let (status, text) = failure(error);
    page(state, console, org, status, Prefill::default(), Some(text)).await
}

/// `GET /orgs/{org}/tokens` and `GET /orgs/{org}/tokens/new?name=…&type=…` (pre-filled).
pub async fn get_tokens(
    State(state): State<AppState>,
    console: Console,
    PagePath(org): PagePath<String>,
    PageQuery(prefill): PageQuery<Prefill>,
) -> PageResult {
    page(&state, &console, &org, StatusCode::OK, prefill, None).await
}

#[derive(serde::Deserialize)]
pub struct CreateForm {
    name: String,
    #[serde(default)]
    token_type: String,
    #[serde(default)]
    expires_in_days: String,
}

/// `POST /orgs/{org}/tokens`.
pub async fn post_create(
    State(state): State<AppState>,
    console: Console,
    PagePath(org): PagePath<String>,
    CheckedForm(form): CheckedForm<CreateForm>,
) -> PageResult {
    let prefill = Prefill {
        name: form.name.clone(),
        token_type: form.token_type.clone(),
        expires_in_days: form.expires_in_days.clone(),
        done: None,
    };
    let expires_in_days = match days(&form.expires_in_days) {
        Ok(d) => d,
        Err(e) => {
            return page(
                &state,
                &console,
                &org,
                StatusCode::BAD_REQUEST,
                prefill,
                Some(e),
            )
            .await;
        }
    };
    let request = CreateOrgToken {
        name: form.name,
        token_type: form.token_type,
        expires_in_days,
        allowed_ips: None,
    };
    let created = state
        .service
        .create_org_token(
            &console.caller(),
            &console.session.user,
            &org,
            request,
            None,
        )
        .await;
    match created {
        Ok(Created::New(created)) => Ok(token_secret_page(
            &state,
            &console,
            "The new token",
            &created.record,
            created.secret.expose(),
            &base(&org),
            &format!("tokens:{org}"),
        )
        .await),
        Ok(Created::Replayed(_)) => Ok(redirect(&base(&org))),
        Err(e) => {
            let (status, text) = failure(&e);
            page(&state, &console, &org, status, prefill, Some(text)).await
        }
    }
}

#[derive(serde::Deserialize)]
pub struct RenameForm {
    #[serde(default)]
    name: String,
}

/// `POST /orgs/{org}/tokens/{id}/rename`.
pub async fn post_rename(
    State(state): State<AppState>,
    console: Console,
    PagePath((org, id)): PagePath<(String, String)>,
    CheckedForm(form): CheckedForm<RenameForm>,
) -> PageResult {
    let result = state
        .service
        .update_org_token(
            &console.caller(),
            &console.session.user,
            &org,
            &id,
            Some(&form.name),
            None,
        )
        .await;
    match result {
        Ok(_) => Ok(redirect(&format!("{}?done=renamed", base(&org)))),
        Err(e) => refused(&state, &console, &org, &e).await,
    }
}

/// `POST /orgs/{org}/tokens/{id}/rotate`.
pub async fn post_rotate(
    State(state): State<AppState>,
    console: Console,
    PagePath((org, id)): PagePath<(String, String)>,
    CheckedForm(form): CheckedForm<RotateForm>,
) -> PageResult {
    let grace = match grace(&form.grace) {
        Ok(g) => g,
        Err(e) => {
            return page(
                &state,
                &console,
                &org,
                StatusCode::BAD_REQUEST,
                Prefill::default(),
                Some(e),
            )
            .await;
        }
    };
    let rotated = state
        .service
        .rotate_org_token(&console.caller(), &console.session.user, &org, &id, grace)
        .await;
    match rotated {
        Ok(created) => Ok(token_secret_page(
            &state,
            &console,
            "The replacement token",
            &created.record,
            created.secret.expose(),
            &base(&org),
            &format!("tokens:{org}"),
        )
        .await),
        Err(e) => refused(&state, &console, &org, &e).await,
    }
}

/// `POST /orgs/{org}/tokens/{id}/reveal`: behind the admin's password.
pub async fn post_reveal(
    State(state): State<AppState>,
    console: Console,
    PagePath((org, id)): PagePath<(String, String)>,
    CheckedForm(form): CheckedForm<PasswordForm>,
) -> PageResult {
    let password = SecretString::from(form.password);
    let user = &console.session.user;
    let revealed = state
        .service
        .reveal_org_token(&console.caller(), user, &org, &id, &password)
        .await;
    match revealed {
        Ok(secret) => {
            let (_, record) = state.service.org_token(user, &org, &id).await?;
            Ok(token_secret_page(
                &state,
                &console,
                "The token",
                &record,
                secret.expose(),
                &base(&org),
                &format!("tokens:{org}"),
            )
            .await)
        }
        Err(e) => refused(&state, &console, &org, &e).await,
    }
}

/// `GET /orgs/{org}/tokens/{id}/delete`: the confirmation that asks to type `Delete token`.
pub async fn get_delete(
    State(state): State<AppState>,
    console: Console,
    PagePath((org, id)): PagePath<(String, String)>,
) -> PageResult {
    delete_page(&state, &console, &org, &id, StatusCode::OK, None).await
}

async fn delete_page(
    state: &AppState,
    console: &Console,
    org: &str,
    id: &str,
    status: StatusCode,
    error: Option<String>,
) -> PageResult {
    let (org_record, token) = state
        .service
        .org_token(&console.session.user, org, id)
        .await?;
    let mut layout = console
        .layout(state, "Delete token", &format!("tokens:{}", org_record.id))
        .await;
    layout.error = error;
    let page = DeleteTokenPage {
        layout,
        name: token.name,
        action: format!("{}/{id}/delete", base(org)),
        back: base(org),
    };
    Ok(render(status, &page))
}

#[derive(serde::Deserialize)]
pub struct DeleteForm {
    #[serde(default)]
    confirm: String,
}

/// `POST /orgs/{org}/tokens/{id}/delete`: only with the typed phrase.
pub async fn post_delete(
    State(state): State<AppState>,
    console: Console,
    PagePath((org, id)): PagePath<(String, String)>,
    CheckedForm(form): CheckedForm<DeleteForm>,
) -> PageResult {
    if form.confirm.trim() != DELETE_PHRASE {
        let text = format!("Type “{DELETE_PHRASE}” exactly to delete the token.");
        return delete_page(
            &state,
            &console,
            &org,
            &id,
            StatusCode::BAD_REQUEST,
            Some(text),
        )
        .await;
    }
    let deleted = state
        .service
        .delete_org_token(&console.caller(), &console.session.user, &org, &id)
        .await;
    match deleted {
        Ok(_) => Ok(redirect(&format!("{}?done=deleted", base(&org)))),
        Err(e) => {
            let (status, text) = failure(&e);
            delete_page(&state, &console, &org, &id, status, Some(text)).await
        }
    }
}
