//! Single sign-on's pages (SPEC 9): `/sso/start` sends the browser to the provider,
//! `/sso/reauth` does the same to confirm who a signed-in person is, and `/sso/callback` is where
//! the provider sends them back. The flow's state rides in the `latchkey_sso` cookie, sealed by
//! the service; this module only moves it between the browser and the service.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use latchkey_service::ServiceError;
use latchkey_service::sso::{SsoFinish, SsoPurpose};

use super::{CheckedForm, Console, Layout, MessagePage, PageQuery, redirect, render};
use crate::AppState;
use crate::cookies::{SESSION_COOKIE, cookie, new_session_cookie};
use crate::extract::ClientIp;
use crate::pages::signin::safe_next;

const FLOW_COOKIE: &str = "latchkey_sso";

/// A page that says why single sign-on did not go through, with the way to try again.
fn sso_problem(status: StatusCode, text: &str) -> Response {
    let page = MessagePage {
        layout: Layout::anonymous("Single sign-on", String::new()),
        heading: "Single sign-on did not go through".to_owned(),
        text: text.to_owned(),
        back: Some("/login".to_owned()),
    };
    render(status, &page)
}

fn problem_of(e: &ServiceError) -> Response {
    match e {
        ServiceError::Client { code, message } => {
            sso_problem(crate::error::status_of(*code), message)
        }
        ServiceError::Unavailable(detail) => {
            tracing::warn!(error = %detail, "the single-sign-on provider cannot be reached");
            sso_problem(
                StatusCode::SERVICE_UNAVAILABLE,
                "The sign-in provider cannot be reached just now. Try again shortly.",
            )
        }
        other => {
            let (status, text) = super::failure(other);
            sso_problem(status, &text)
        }
    }
}

/// `Set-Cookie` for the flow: sent back by the browser under `/sso` only (the callback, on
/// the provider's top-level redirect: `SameSite=Lax`), for as long as the flow may take.
fn flow_cookie(state: &AppState, value: &str, max_age: i64) -> Option<HeaderValue> {
    let secure = if state.secure_cookies { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{FLOW_COOKIE}={value}; Path=/sso; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}"
    ))
    .ok()
}

fn to_provider(state: &AppState, start: latchkey_service::sso::SsoStart) -> Response {
    let mut response = redirect(&start.authorize_url);
    if let Some(v) = flow_cookie(state, &start.cookie, 600) {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
    response
}

#[derive(serde::Deserialize)]
pub struct NextQuery {
    #[serde(default)]
    next: String,
}

/// `GET /sso/start?next=/path`: to the provider to sign in.
pub async fn get_start(
    State(state): State<AppState>,
    PageQuery(query): PageQuery<NextQuery>,
) -> Response {
    let next = safe_next(&query.next).unwrap_or("/credentials").to_owned();
    match state.service.sso_start(SsoPurpose::Login { next }).await {
        Ok(start) => to_provider(&state, start),
        Err(e) => problem_of(&e),
    }
}

/// `POST /sso/reauth`: to the provider to confirm who this session's person is.
pub async fn post_reauth(
    State(state): State<AppState>,
    console: Console,
    CheckedForm(form): CheckedForm<NextQuery>,
) -> Response {
    let next = safe_next(&form.next).unwrap_or("/credentials").to_owned();
    let purpose = SsoPurpose::Reauthenticate {
        session_id: console.session.session_id.clone(),
        next,
    };
    match state.service.sso_start(purpose).await {
        Ok(start) => to_provider(&state, start),
        Err(e) => problem_of(&e),
    }
}

#[derive(serde::Deserialize)]
pub struct CallbackQuery {
    #[serde(default)]
    code: String,
    #[serde(default)]
    state: String,
    /// RFC 9207: the provider names itself, so an answer from another provider is refused.
    iss: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

/// `GET /sso/callback?code=…&state=…`: the provider sends the person back.
pub async fn get_callback(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    PageQuery(query): PageQuery<CallbackQuery>,
) -> Response {
    let mut response = callback(&state, ip, &headers, &query).await;
    // The flow is over, whatever its outcome: its cookie goes.
    if let Some(v) = flow_cookie(&state, "", 0) {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
    response
}

async fn callback(
    state: &AppState,
    ip: std::net::IpAddr,
    headers: &HeaderMap,
    query: &CallbackQuery,
) -> Response {
    if let Some(error) = &query.error {
        // The person cancelled, or the provider refused. Anyone can send this address, so the
        // page says it in our words, naming only a well-formed OAuth error code; the
        // provider's description goes to the log.
        let code_ok =
            error.len() <= 40 && error.bytes().all(|b| b.is_ascii_lowercase() || b == b'_');
        let code = if code_ok { error.as_str() } else { "error" };
        let description: Option<String> = query
            .error_description
            .as_deref()
            .map(|d| d.chars().take(200).collect());
        // Debug-formatted: the provider's words are escaped in the log.
        tracing::info!(
            error = code,
            description = ?description,
            "the single-sign-on provider did not sign someone in"
        );
        return sso_problem(
            StatusCode::BAD_REQUEST,
            &format!("The sign-in provider did not sign you in ({code}). Try again."),
        );
    }
    let issuer_ok = match (&query.iss, state.service.sso()) {
        (Some(iss), Some(sso)) => *iss == sso.settings().issuer,
        _ => true,
    };
    if !issuer_ok || query.code.is_empty() || query.state.is_empty() {
        return sso_problem(
            StatusCode::BAD_REQUEST,
            "This sign-in answer is incomplete or from another provider: start again.",
        );
    }
    let session = match cookie(headers, SESSION_COOKIE) {
        Some(token) => state.service.authenticate_session(token).await.ok(),
        None => None,
    };
    let finished = state
        .service
        .sso_finish(
            Some(ip),
            cookie(headers, FLOW_COOKIE),
            &query.state,
            &query.code,
            session.as_ref(),
        )
        .await;
    match finished {
        Ok(SsoFinish::SignedIn { session, next }) => {
            let mut response = redirect(safe_next(&next).unwrap_or("/credentials"));
            response
                .headers_mut()
                .append(header::SET_COOKIE, new_session_cookie(state, &session));
            response
        }
        Ok(SsoFinish::Reauthenticated { next }) => {
            redirect(safe_next(&next).unwrap_or("/credentials"))
        }
        Err(e) => problem_of(&e),
    }
}
