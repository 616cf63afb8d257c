//! Signing in and out of the console. Failures answer the same sentence whether the email is
//! unknown or the password wrong (SECURITY.md); the service applies the abuse limits.

use axum::Form;
use axum::extract::Query;
use axum::extract::State;
use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use latchkey_service::{ErrorCode, ServiceError};
use secrecy::SecretString;

use super::{CheckedForm, Console, Empty, Layout, redirect, unavailable};
use crate::AppState;
use crate::cookies::{new_session_cookie, session_cookie};
use crate::extract::ClientIp;
use crate::extract::page::login_form_ok;
use crate::pages::signin::{LoginPage, render_login, safe_next};

fn login_response(
    state: &AppState,
    headers: &HeaderMap,
    status: StatusCode,
    email: &str,
    next: &str,
    error: Option<&str>,
) -> Response {
    let page = login_form(state, email, next, error, None);
    render_login(state, headers, status, page)
}

/// The console's sign-in form, coming back to `next`, with an error or a notice.
fn login_form(
    state: &AppState,
    email: &str,
    next: &str,
    error: Option<&str>,
    notice: Option<&str>,
) -> LoginPage {
    let mut layout = Layout::anonymous("Sign in", String::new());
    layout.error = error.map(str::to_owned);
    layout.notice = notice.map(str::to_owned);
    let next = safe_next(next);
    LoginPage {
        email: email.to_owned(),
        hidden: next
            .map(|n| vec![("next".to_owned(), n.to_owned())])
            .unwrap_or_default(),
        ..LoginPage::new(
            state,
            layout,
            "Sign in to Latchkey",
            "/login",
            next.unwrap_or("/credentials"),
        )
    }
}

/// `GET /`: the console's home is the API credentials page.
pub async fn get_home(console: Result<Console, Response>) -> Response {
    match console {
        Ok(_) => redirect("/credentials"),
        Err(to_login) => to_login,
    }
}

#[derive(serde::Deserialize, Default)]
pub struct Next {
    #[serde(default)]
    next: String,
    /// Why the person is asked to sign in: `expired` (their session ended), a fixed code.
    #[serde(default)]
    why: String,
}

/// `GET /login` (`?next=/path` comes back after signing in; `why=expired` says the session
/// ended).
pub async fn get_login(
    State(state): State<AppState>,
    headers: HeaderMap,
    next: Result<Query<Next>, QueryRejection>,
) -> Response {
    let next = next.map(|Query(n)| n).unwrap_or_default();
    let notice = (next.why == "expired").then_some(
        "Your session ended, so you are signed out. Sign in again to go back where you were.",
    );
    let mut page = login_form(&state, "", &next.next, None, notice);
    // A fresh installation: say how to make the first operator (a storage hiccup only
    // leaves the hint out).
    page.first_run = state.service.nobody_can_sign_in().await.unwrap_or(false);
    render_login(&state, &headers, StatusCode::OK, page)
}

#[derive(serde::Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    csrf_token: String,
    #[serde(default)]
    next: String,
}

/// `POST /login`.
pub async fn post_login(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    form: Result<Form<LoginForm>, FormRejection>,
) -> Response {
    let Ok(Form(form)) = form else {
        return login_response(
            &state,
            &headers,
            StatusCode::BAD_REQUEST,
            "",
            "",
            Some("Fill in your email and password."),
        );
    };
    if !login_form_ok(&state, &headers, &form.csrf_token) {
        return login_response(
            &state,
            &headers,
            StatusCode::FORBIDDEN,
            &form.email,
            &form.next,
            Some("The form has expired. Try again."),
        );
    }
    let password = SecretString::from(form.password);
    match state.service.login(Some(ip), &form.email, &password).await {
        Ok(session) => {
            let mut response = redirect(safe_next(&form.next).unwrap_or("/credentials"));
            response
                .headers_mut()
                .append(header::SET_COOKIE, new_session_cookie(&state, &session));
            response
        }
        Err(ServiceError::RateLimited { retry_after_secs }) => {
            let mut response = login_response(
                &state,
                &headers,
                StatusCode::TOO_MANY_REQUESTS,
                &form.email,
                &form.next,
                Some(&crate::pages::wait_sentence(retry_after_secs)),
            );
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
            response
        }
        // Password sign-in switched off: say so, not "wrong password".
        Err(ServiceError::Client {
            code: ErrorCode::Forbidden,
            message,
        }) => login_response(
            &state,
            &headers,
            StatusCode::FORBIDDEN,
            &form.email,
            &form.next,
            Some(&super::sentence(&message)),
        ),
        Err(ServiceError::Client { .. }) => login_response(
            &state,
            &headers,
            StatusCode::UNAUTHORIZED,
            &form.email,
            &form.next,
            Some("The email or password is not correct."),
        ),
        Err(_) => unavailable(),
    }
}

/// `POST /logout`: ends the session in the database, not only in the browser.
pub async fn post_logout(
    State(state): State<AppState>,
    console: Console,
    CheckedForm(_): CheckedForm<Empty>,
) -> Response {
    if state
        .service
        .logout(&console.caller(), &console.session)
        .await
        .is_err()
    {
        return unavailable();
    }
    let mut response = redirect("/login");
    response
        .headers_mut()
        .append(header::SET_COOKIE, session_cookie(&state, "", 0));
    response
}
