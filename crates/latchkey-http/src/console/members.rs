//! An organisation's "Members" page, for its admins: who is in it with which role, adding a
//! person by email, changing a role, removing someone after a confirmation. The service keeps
//! the last-admin rule (an organisation always keeps an admin); the page says it before anyone
//! tries, and offers neither a demotion nor a removal of the last admin.

use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use latchkey_core::Role;
use latchkey_service::{ErrorCode, ServiceError};
use latchkey_store::Member;

use super::{
    CheckedForm, Console, Empty, Layout, PageQuery, PageResult, failure, notice_for, redirect,
    render, when,
};
use crate::AppState;
use crate::extract::page::PagePath;

#[derive(Template)]
#[template(path = "members.html")]
pub struct MembersPage {
    pub layout: Layout,
    pub org_name: String,
    pub base: String,
    pub members: Vec<MemberRow>,
    pub roles: &'static [(&'static str, &'static str)],
    pub form: AddForm,
}

pub struct MemberRow {
    pub user_id: String,
    pub email: String,
    pub role: String,
    pub since: String,
    pub is_me: bool,
    /// The only admin: neither demoted nor removed (the page says why).
    pub last_admin: bool,
}

#[derive(Template)]
#[template(path = "remove_member.html")]
pub struct RemoveMemberPage {
    pub layout: Layout,
    pub email: String,
    pub org_name: String,
    pub is_me: bool,
    pub action: String,
    pub back: String,
}

/// The roles an admin gives, with what each may do.
const ROLES: &[(&str, &str)] = &[
    (
        "member",
        "member: belongs to the organisation; its accounts appear on their personal tokens",
    ),
    (
        "admin",
        "admin: also manages the organisation's tokens, apps, members and sees its activity",
    ),
    (
        "partner",
        "partner: an outside collaborator with the organisation's account on their tokens",
    ),
];

fn base(org: &str) -> String {
    format!("/orgs/{org}/members")
}

#[derive(serde::Deserialize, Default)]
pub struct AddForm {
    #[serde(default)]
    pub email: String,
    #[serde(default)]
    pub role: String,
    #[serde(default)]
    pub done: Option<String>,
}

fn rows(members: &[Member], me: &str) -> Vec<MemberRow> {
    let admins = members.iter().filter(|m| m.role == Role::Admin).count();
    let mut rows: Vec<MemberRow> = members
        .iter()
        .map(|m| MemberRow {
            user_id: m.user_id.to_string(),
            email: m.email.as_str().to_owned(),
            role: m.role.to_string(),
            since: when(m.since),
            is_me: m.user_id.as_str() == me,
            last_admin: m.role == Role::Admin && admins == 1,
        })
        .collect();
    // Admins first, then by address: the people to ask come first.
    rows.sort_by(|a, b| (a.role != "admin", &a.email).cmp(&(b.role != "admin", &b.email)));
    rows
}

async fn page(
    state: &AppState,
    console: &Console,
    org_id: &str,
    status: StatusCode,
    form: AddForm,
    error: Option<String>,
) -> PageResult {
    let user = &console.session.user;
    let org = state.service.require_admin(&user.id, org_id).await?;
    let members = state.service.list_members(&user.id, org_id).await?;
    let mut layout = console
        .layout(
            state,
            &format!("Members of {}", org.name),
            &format!("members:{}", org.id),
        )
        .await;
    layout.notice = notice_for(form.done.as_deref());
    layout.error = error;
    let mut form = form;
    if form.role.is_empty() {
        form.role = "member".to_owned();
    }
    let page = MembersPage {
        layout,
        org_name: org.name.clone(),
        base: base(org_id),
        members: rows(&members, user.id.as_str()),
        roles: ROLES,
        form,
    };
    Ok(render(status, &page))
}

async fn refused(
    state: &AppState,
    console: &Console,
    org: &str,
    form: AddForm,
    error: &ServiceError,
) -> PageResult {
    let (status, text) = failure(error);
    page(state, console, org, status, form, Some(text)).await
}

/// `GET /orgs/{org}/members`.
pub async fn get_members(
    State(state): State<AppState>,
    console: Console,
    PagePath(org): PagePath<String>,
    PageQuery(form): PageQuery<AddForm>,
) -> PageResult {
    page(&state, &console, &org, StatusCode::OK, form, None).await
}

fn role_of(text: &str) -> Result<Role, ServiceError> {
    text.parse()
        .map_err(|_| ServiceError::invalid("a role is admin, member or partner"))
}

/// `POST /orgs/{org}/members`: add a person who has an account, by email (or change the
/// role of someone already in).
pub async fn post_add(
    State(state): State<AppState>,
    console: Console,
    PagePath(org): PagePath<String>,
    CheckedForm(form): CheckedForm<AddForm>,
) -> PageResult {
    let added = match role_of(&form.role) {
        Ok(role) => {
            state
                .service
                .add_member_as_admin(
                    &console.caller(),
                    &console.session.user.id,
                    &org,
                    form.email.trim(),
                    role,
                )
                .await
        }
        Err(e) => Err(e),
    };
    match added {
        Ok(_) => Ok(redirect(&format!("{}?done=member_added", base(&org)))),
        Err(e) => {
            let form = AddForm { done: None, ..form };
            // The organisation was found (the admin check passed): the address is unknown.
            let unknown = e.code() == ErrorCode::NotFound
                && state
                    .service
                    .require_admin(&console.session.user.id, &org)
                    .await
                    .is_ok();
            if !unknown {
                return refused(&state, &console, &org, form, &e).await;
            }
            let text = format!(
                "No one has an account with the address {}. They need one before they can be added: it is made when they first sign in with your single sign-on, by your platform's provisioning, or by an operator.",
                form.email.trim()
            );
            page(
                &state,
                &console,
                &org,
                StatusCode::NOT_FOUND,
                form,
                Some(text),
            )
            .await
        }
    }
}

#[derive(serde::Deserialize)]
pub struct RoleForm {
    #[serde(default)]
    role: String,
}

/// `POST /orgs/{org}/members/{user}/role`.
pub async fn post_role(
    State(state): State<AppState>,
    console: Console,
    PagePath((org, user)): PagePath<(String, String)>,
    CheckedForm(form): CheckedForm<RoleForm>,
) -> PageResult {
    let changed = match role_of(&form.role) {
        Ok(role) => {
            state
                .service
                .update_member_as_admin(
                    &console.caller(),
                    &console.session.user.id,
                    &org,
                    &user,
                    role,
                )
                .await
        }
        Err(e) => Err(e),
    };
    match changed {
        // Someone who made themselves a member is no longer an admin here.
        Ok(_) if user == console.session.user.id.as_str() && form.role != "admin" => {
            Ok(redirect("/?done=left_admin"))
        }
        Ok(_) => Ok(redirect(&format!("{}?done=role_changed", base(&org)))),
        Err(e) => refused(&state, &console, &org, AddForm::default(), &e).await,
    }
}

/// `GET /orgs/{org}/members/{user}/remove`: the confirmation.
pub async fn get_remove(
    State(state): State<AppState>,
    console: Console,
    PagePath((org, user)): PagePath<(String, String)>,
) -> PageResult {
    let me = &console.session.user;
    let found = state.service.require_admin(&me.id, &org).await?;
    let members = state.service.list_members(&me.id, &org).await?;
    let member = members
        .iter()
        .find(|m| m.user_id.as_str() == user)
        .ok_or_else(|| ServiceError::not_found("member"))?;
    let layout = console
        .layout(
            &state,
            &format!("Remove {}", member.email.as_str()),
            &format!("members:{}", found.id),
        )
        .await;
    let page = RemoveMemberPage {
        layout,
        email: member.email.as_str().to_owned(),
        org_name: found.name.clone(),
        is_me: member.user_id == me.id,
        action: format!("{}/{user}/remove", base(&org)),
        back: base(&org),
    };
    Ok(render(StatusCode::OK, &page))
}

/// `POST /orgs/{org}/members/{user}/remove`.
pub async fn post_remove(
    State(state): State<AppState>,
    console: Console,
    PagePath((org, user)): PagePath<(String, String)>,
    CheckedForm(_): CheckedForm<Empty>,
) -> PageResult {
    let removed = state
        .service
        .remove_member_as_admin(&console.caller(), &console.session.user.id, &org, &user)
        .await;
    match removed {
        Ok(()) if user == console.session.user.id.as_str() => Ok(redirect("/?done=left_org")),
        Ok(()) => Ok(redirect(&format!("{}?done=member_removed", base(&org)))),
        Err(e) => refused(&state, &console, &org, AddForm::default(), &e).await,
    }
}
