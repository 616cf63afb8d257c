//! `/account`: one's own security in the console (SPEC 9): the password, the sessions, the
//! apps one allowed. The same service functions as `/v1/user/password`, `/v1/user/sessions`
//! and `/v1/user/apps`; every form carries the CSRF token.

use askama::Template;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::Response;
use latchkey_service::ServiceError;
use secrecy::SecretString;

use super::{CheckedForm, Console, Empty, Layout, PageQuery, failure, redirect, render, when};
use crate::AppState;
use crate::cookies::{new_session_cookie, session_cookie};
use crate::extract::page::PagePath;

pub struct SessionRow {
    pub id: String,
    pub created: String,
    pub last_seen: String,
    pub expires: String,
    pub current: bool,
}

pub struct AppRow {
    pub client_id: String,
    pub name: String,
    pub scopes: String,
    pub since: String,
}

#[derive(Template)]
#[template(path = "account.html")]
pub struct AccountPage {
    pub layout: Layout,
    pub sessions: Vec<SessionRow>,
    pub apps: Vec<AppRow>,
}

#[derive(serde::Deserialize, Default)]
pub struct Done {
    done: Option<String>,
}

fn notice(done: Option<&str>) -> Option<String> {
    match done? {
        "password" => Some("Your password is changed; every other session has ended.".to_owned()),
        "session" => Some("The session has ended.".to_owned()),
        "app" => Some("The app can no longer act for you.".to_owned()),
        _ => None,
    }
}

async fn page(
    state: &AppState,
    console: &Console,
    status: StatusCode,
    notice: Option<String>,
    error: Option<String>,
) -> Response {
    // A list that cannot be read is not an empty list: someone looking for an intruder must
    // not be told there is none.
    let (sessions, apps) = match (
        state.service.list_my_sessions(&console.session).await,
        state.service.list_my_apps(&console.session).await,
    ) {
        (Ok(sessions), Ok(apps)) => (sessions, apps),
        (Err(e), _) | (_, Err(e)) => {
            let (status, text) = failure(&e);
            return render(
                status,
                &super::MessagePage {
                    layout: console.layout(state, "Account", "account").await,
                    heading: "Cannot show your account".to_owned(),
                    text,
                    back: Some("/account".to_owned()),
                },
            );
        }
    };
    let mut layout = console.layout(state, "Account", "account").await;
    layout.notice = notice;
    layout.error = error;
    let sessions = sessions
        .iter()
        .map(|s| SessionRow {
            id: s.id.clone(),
            created: when(s.created_at),
            last_seen: when(s.last_seen_at),
            expires: when(s.expires_at),
            current: s.id == console.session.session_id,
        })
        .collect();
    let apps = apps
        .into_iter()
        .map(|a| AppRow {
            client_id: a.client_id,
            name: a.client_name,
            scopes: a.scopes.join(" "),
            since: when(a.since),
        })
        .collect();
    render(
        status,
        &AccountPage {
            layout,
            sessions,
            apps,
        },
    )
}

async fn refused(state: &AppState, console: &Console, error: &ServiceError) -> Response {
    let (status, text) = failure(error);
    page(state, console, status, None, Some(text)).await
}

/// `GET /account`.
pub async fn get_account(
    State(state): State<AppState>,
    console: Console,
    PageQuery(done): PageQuery<Done>,
) -> Response {
    page(
        &state,
        &console,
        StatusCode::OK,
        notice(done.done.as_deref()),
        None,
    )
    .await
}

#[derive(serde::Deserialize)]
pub struct PasswordChange {
    #[serde(default)]
    current_password: String,
    #[serde(default)]
    new_password: String,
}

/// `POST /account/password`: every session ends; this browser goes on with the new one.
pub async fn post_password(
    State(state): State<AppState>,
    console: Console,
    CheckedForm(form): CheckedForm<PasswordChange>,
) -> Response {
    match state
        .service
        .change_password(
            &console.caller(),
            &console.session,
            &SecretString::from(form.current_password),
            &SecretString::from(form.new_password),
        )
        .await
    {
        Ok(session) => {
            let mut response = redirect("/account?done=password");
            response
                .headers_mut()
                .insert(header::SET_COOKIE, new_session_cookie(&state, &session));
            response
        }
        Err(e) => refused(&state, &console, &e).await,
    }
}

/// `POST /account/sessions/{id}/end`: ending this one signs out.
pub async fn post_end_session(
    State(state): State<AppState>,
    console: Console,
    PagePath(id): PagePath<String>,
    CheckedForm(_): CheckedForm<Empty>,
) -> Response {
    let this_one = id == console.session.session_id;
    match state
        .service
        .end_my_session(&console.caller(), &console.session, &id)
        .await
    {
        Ok(()) if this_one => {
            let mut response = redirect("/login");
            response
                .headers_mut()
                .insert(header::SET_COOKIE, session_cookie(&state, "", 0));
            response
        }
        Ok(()) => redirect("/account?done=session"),
        Err(e) => refused(&state, &console, &e).await,
    }
}

/// `POST /account/apps/{client_id}/revoke`: the app's tokens stop at once.
pub async fn post_revoke_app(
    State(state): State<AppState>,
    console: Console,
    PagePath(client_id): PagePath<String>,
    CheckedForm(_): CheckedForm<Empty>,
) -> Response {
    match state
        .service
        .revoke_my_app(&console.caller(), &console.session, &client_id)
        .await
    {
        Ok(()) => redirect("/account?done=app"),
        Err(e) => refused(&state, &console, &e).await,
    }
}
