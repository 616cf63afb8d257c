//! The authorization endpoint and its two pages, sign-in and consent (SPEC 3), in the console's
//! templates and look: every user-supplied value is escaped by askama; forms carry a CSRF token
//! and the consent POST checks `Origin`.

use std::collections::HashMap;

use askama::Template;
use axum::Form;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use latchkey_core::oauth::redirect_with;
use latchkey_service::ServiceError;
use latchkey_service::oauth::authorize::{AuthorizeParams, AuthorizeRejection, ValidAuthorize};
use latchkey_service::sessions::{SessionUser, csrf_token_for, csrf_token_matches};
use secrecy::SecretString;

use crate::AppState;
use crate::cookies::{SESSION_COOKIE, cookie, new_session_cookie};
use crate::extract::ClientIp;
use crate::extract::page::{login_form_ok, origin_ok};
use crate::pages::signin::{LoginPage, render_login};
use crate::pages::{Layout, MessagePage, error_page, forbidden_form, redirect, render};

#[derive(Template)]
#[template(path = "consent.html")]
struct ConsentPage {
    layout: Layout,
    app: String,
    email: String,
    scopes: Vec<String>,
    orgs: Vec<String>,
    hidden: Vec<(String, String)>,
}

fn page_message(status: StatusCode, heading: &str, text: &str) -> Response {
    let page = MessagePage {
        layout: Layout::anonymous(heading, String::new()),
        heading: heading.to_owned(),
        text: text.to_owned(),
        back: None,
    };
    render(status, &page)
}

/// A malformed authorization request that cannot be sent back to the client (RFC 6749 §4.1.2.1:
/// an unknown client or redirect URI): told to the person, `400`.
fn bad_request_page(message: &str) -> Response {
    page_message(StatusCode::BAD_REQUEST, "Cannot continue", message)
}

fn params_from(map: &HashMap<String, String>) -> AuthorizeParams {
    let get = |k: &str| map.get(k).filter(|v| !v.is_empty()).cloned();
    AuthorizeParams {
        client_id: get("client_id"),
        redirect_uri: get("redirect_uri"),
        response_type: get("response_type"),
        scope: get("scope"),
        state: get("state"),
        code_challenge: get("code_challenge"),
        code_challenge_method: get("code_challenge_method"),
    }
}

const PARAM_NAMES: [&str; 7] = [
    "client_id",
    "redirect_uri",
    "response_type",
    "scope",
    "state",
    "code_challenge",
    "code_challenge_method",
];

fn hidden_params(map: &HashMap<String, String>) -> Vec<(String, String)> {
    PARAM_NAMES
        .iter()
        .filter_map(|k| map.get(*k).map(|v| ((*k).to_owned(), v.clone())))
        .collect()
}

fn authorize_query(map: &HashMap<String, String>) -> String {
    let pairs: Vec<(&str, &str)> = PARAM_NAMES
        .iter()
        .filter_map(|k| map.get(*k).map(|v| (*k, v.as_str())))
        .collect();
    redirect_with("/oauth2/authorize", &pairs)
}

async fn signed_in(state: &AppState, headers: &HeaderMap) -> Option<(String, SessionUser)> {
    let token = cookie(headers, SESSION_COOKIE)?;
    let session = state.service.authenticate_session(token).await.ok()?;
    Some((token.to_owned(), session))
}

fn login_page(
    state: &AppState,
    headers: &HeaderMap,
    map: &HashMap<String, String>,
    message: Option<&str>,
    status: StatusCode,
) -> Response {
    let mut layout = Layout::anonymous("Sign in", String::new());
    layout.error = message.map(str::to_owned);
    let page = LoginPage {
        hidden: hidden_params(map),
        ..LoginPage::new(
            state,
            layout,
            "Sign in to continue",
            "/oauth2/login",
            &authorize_query(map),
        )
    };
    render_login(state, headers, status, page)
}

async fn consent_page(
    state: &AppState,
    session: &SessionUser,
    session_token: &str,
    v: &ValidAuthorize,
    map: &HashMap<String, String>,
) -> Response {
    let accounts = match state.service.consent_accounts(&session.user).await {
        Ok(a) => a,
        Err(e) => return error_page(&e),
    };
    let page = ConsentPage {
        layout: Layout::anonymous("Authorize", csrf_token_for(session_token)),
        app: v.client.name.clone(),
        email: session.user.email.as_str().to_owned(),
        scopes: v.scopes.clone(),
        orgs: accounts
            .iter()
            .map(|a| format!("{} ({})", a.org_name, a.role))
            .collect(),
        hidden: hidden_params(map),
    };
    render(StatusCode::OK, &page)
}

/// `GET /oauth2/authorize`.
pub async fn get_authorize(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(map): Query<HashMap<String, String>>,
) -> Response {
    let params = params_from(&map);
    let valid = match state.service.check_authorize(&params).await {
        Ok(Ok(valid)) => valid,
        Ok(Err(AuthorizeRejection::ErrorPage(m))) => return bad_request_page(&m),
        Ok(Err(AuthorizeRejection::Redirect(to))) => return redirect(&to),
        Err(e) => return error_page(&e),
    };
    match signed_in(&state, &headers).await {
        Some((token, session)) => consent_page(&state, &session, &token, &valid, &map).await,
        None => login_page(&state, &headers, &map, None, StatusCode::OK),
    }
}

/// `POST /oauth2/login`: signs in from the authorization page, then shows the consent page.
pub async fn post_login(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    Form(map): Form<HashMap<String, String>>,
) -> Response {
    let csrf = map.get("csrf_token").map_or("", String::as_str);
    if !login_form_ok(&state, &headers, csrf) {
        return login_page(
            &state,
            &headers,
            &map,
            Some("The form has expired. Try again."),
            StatusCode::FORBIDDEN,
        );
    }
    let email = map.get("email").cloned().unwrap_or_default();
    let password = SecretString::from(map.get("password").cloned().unwrap_or_default());
    match state.service.login(Some(ip), &email, &password).await {
        Ok(session) => {
            let mut response = redirect(&authorize_query(&map));
            response
                .headers_mut()
                .insert(header::SET_COOKIE, new_session_cookie(&state, &session));
            response
        }
        Err(ServiceError::RateLimited { retry_after_secs }) => {
            let mut response = login_page(
                &state,
                &headers,
                &map,
                Some(&crate::pages::wait_sentence(retry_after_secs)),
                StatusCode::TOO_MANY_REQUESTS,
            );
            response.headers_mut().insert(
                header::RETRY_AFTER,
                axum::http::HeaderValue::from(retry_after_secs.max(1)),
            );
            response
        }
        Err(ServiceError::Client {
            code: latchkey_service::ErrorCode::Forbidden,
            ..
        }) => login_page(
            &state,
            &headers,
            &map,
            Some("Password sign-in is switched off here: sign in with single sign-on."),
            StatusCode::FORBIDDEN,
        ),
        Err(ServiceError::Client { .. }) => login_page(
            &state,
            &headers,
            &map,
            Some("The email or password is not correct."),
            StatusCode::UNAUTHORIZED,
        ),
        Err(e) => error_page(&e),
    }
}

/// `POST /oauth2/authorize`: the consent decision.
pub async fn post_authorize(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    Form(map): Form<HashMap<String, String>>,
) -> Response {
    let Some((token, session)) = signed_in(&state, &headers).await else {
        return login_page(
            &state,
            &headers,
            &map,
            Some("Your session ended. Sign in again."),
            StatusCode::UNAUTHORIZED,
        );
    };
    let csrf_ok = map
        .get("csrf_token")
        .is_some_and(|t| csrf_token_matches(&token, t));
    if !csrf_ok || !origin_ok(&state, &headers) {
        return forbidden_form();
    }
    let valid = match state.service.check_authorize(&params_from(&map)).await {
        Ok(Ok(valid)) => valid,
        Ok(Err(AuthorizeRejection::ErrorPage(m))) => return bad_request_page(&m),
        Ok(Err(AuthorizeRejection::Redirect(to))) => return redirect(&to),
        Err(e) => return error_page(&e),
    };
    if map.get("decision").map(String::as_str) != Some("approve") {
        return redirect(&state.service.deny_authorize(&valid));
    }
    let caller = session.caller(Some(ip));
    match state
        .service
        .approve_authorize(&caller, &session.user, &valid)
        .await
    {
        Ok(to) => redirect(&to),
        Err(e) => error_page(&e),
    }
}
