//! Signing in and out of the console. Failures answer the same sentence whether the email is
//! unknown or the password wrong (SECURITY.md); the service applies the abuse limits.

use askama::Template;
use axum::Form;
use axum::extract::Query;
use axum::extract::State;
use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use latchkey_service::crypto::random_bytes;
use latchkey_service::sessions::{NewSessionToken, csrf_token_for, csrf_token_matches};
use latchkey_service::{ErrorCode, ServiceError};
use secrecy::SecretString;

use super::{CheckedForm, Console, Empty, Layout, origin_ok, redirect, render, unavailable};
use crate::AppState;
use crate::extract::{ClientIp, SESSION_COOKIE, cookie};

/// The login form has no session yet: its CSRF token is tied to a random value in this cookie
/// (the double-submit pattern), so another site cannot sign a victim into its own account.
const LOGIN_COOKIE: &str = "latchkey_login";

#[derive(Template)]
#[template(path = "login.html")]
pub struct LoginPage {
    pub layout: Layout,
    pub heading: String,
    pub action: String,
    pub email: String,
    /// Extra fields carried through (the OAuth authorization request).
    pub hidden: Vec<(String, String)>,
    /// "Sign in with <provider>", when single sign-on is configured.
    pub sso: Option<SsoButton>,
    /// The email and password form is shown (not switched off).
    pub password_login: bool,
}

pub struct SsoButton {
    pub label: String,
    pub href: String,
}

impl LoginPage {
    /// A sign-in page that comes back to `next` (a path on this site) after signing in.
    pub fn new(state: &AppState, layout: Layout, heading: &str, action: &str, next: &str) -> Self {
        let sso = state.service.sso().and_then(|sso| {
            let query = serde_urlencoded::to_string([("next", next)]).ok()?;
            Some(SsoButton {
                label: sso.settings().display_name.clone(),
                href: format!("/sso/start?{query}"),
            })
        });
        Self {
            layout,
            heading: heading.to_owned(),
            action: action.to_owned(),
            email: String::new(),
            hidden: Vec::new(),
            sso,
            password_login: state.service.password_login_enabled(),
        }
    }
}

/// The `Set-Cookie` value of a new session.
pub fn session_cookie(state: &AppState, session: &NewSessionToken) -> Option<HeaderValue> {
    let max_age = (session.expires_at - state.service.now()).whole_seconds();
    let secure = if state.secure_cookies { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}={}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}",
        session.secret.expose()
    ))
    .ok()
}

/// Where to go after signing in: a path on this site, never another site (`//host`, `/\\host`
/// or a scheme would be an open redirect).
pub(crate) fn safe_next(next: &str) -> Option<&str> {
    let path = next.split(['?', '#']).next().unwrap_or_default();
    let ok = next.starts_with('/')
        && !next.starts_with("//")
        && !next.contains('\\')
        && next.is_ascii()
        && !next.chars().any(|c| c.is_ascii_control())
        && !path
            .split('/')
            .any(|segment| segment == "." || segment == "..")
        && next.len() <= 2_000;
    ok.then_some(next)
}

/// The login form's CSRF seed: the browser's `latchkey_login` cookie, or a new one (`true`:
/// the response must set it).
fn login_seed(headers: &HeaderMap) -> Option<(String, bool)> {
    match cookie(headers, LOGIN_COOKIE) {
        Some(seed) if seed.len() >= 32 => Some((seed.to_owned(), false)),
        _ => random_bytes::<32>()
            .ok()
            .map(|bytes| (URL_SAFE_NO_PAD.encode(bytes), true)),
    }
}

/// Sets the seed cookie on a login page's response when it is new.
fn set_login_seed(state: &AppState, response: &mut Response, seed: &str, fresh: bool) {
    if !fresh {
        return;
    }
    let secure = if state.secure_cookies { "; Secure" } else { "" };
    if let Ok(v) = HeaderValue::from_str(&format!(
        "{LOGIN_COOKIE}={seed}; Path=/; HttpOnly; SameSite=Strict{secure}"
    )) {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
}

/// A sign-in form may be used: its token matches the seed cookie and it came from this site.
pub(crate) fn login_form_ok(state: &AppState, headers: &HeaderMap, csrf_token: &str) -> bool {
    let token_ok =
        cookie(headers, LOGIN_COOKIE).is_some_and(|seed| csrf_token_matches(seed, csrf_token));
    token_ok && origin_ok(state, headers)
}

/// Renders a sign-in form (the console's or the OAuth one) with its login CSRF token.
pub(crate) fn render_login(
    state: &AppState,
    headers: &HeaderMap,
    status: StatusCode,
    mut page: LoginPage,
) -> Response {
    let Some((seed, fresh)) = login_seed(headers) else {
        return unavailable();
    };
    page.layout.csrf = csrf_token_for(&seed);
    let mut response = render(status, &page);
    set_login_seed(state, &mut response, &seed, fresh);
    response
}

fn login_response(
    state: &AppState,
    headers: &HeaderMap,
    status: StatusCode,
    email: &str,
    next: &str,
    error: Option<&str>,
) -> Response {
    let mut layout = Layout::anonymous("Sign in", String::new());
    layout.error = error.map(str::to_owned);
    let next = safe_next(next);
    let page = LoginPage {
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
    };
    render_login(state, headers, status, page)
}

/// `GET /`: the console's home is the API credentials page.
pub async fn get_home(console: Result<Console, Response>) -> Response {
    match console {
        Ok(_) => redirect("/credentials"),
        Err(to_login) => to_login,
    }
}

#[derive(serde::Deserialize)]
pub struct Next {
    #[serde(default)]
    next: String,
}

/// `GET /login` (`?next=/path` comes back after signing in).
pub async fn get_login(
    State(state): State<AppState>,
    headers: HeaderMap,
    next: Result<Query<Next>, QueryRejection>,
) -> Response {
    let next = next.map(|Query(n)| n.next).unwrap_or_default();
    login_response(&state, &headers, StatusCode::OK, "", &next, None)
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
            if let Some(v) = session_cookie(&state, &session) {
                response.headers_mut().append(header::SET_COOKIE, v);
            }
            response
        }
        Err(ServiceError::RateLimited { retry_after_secs }) => {
            let mut response = login_response(
                &state,
                &headers,
                StatusCode::TOO_MANY_REQUESTS,
                &form.email,
                &form.next,
                Some("Too many attempts. Wait a moment and try again."),
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
    let secure = if state.secure_cookies { "; Secure" } else { "" };
    if let Ok(v) = HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0{secure}"
    )) {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::safe_next;

    #[test]
    fn only_paths_on_this_site_are_followed() {
        assert_eq!(
            safe_next("/credentials/new?name=x"),
            Some("/credentials/new?name=x")
        );
        for bad in [
            "",
            "//evil.example",
            "/\\evil.example",
            "https://evil.example",
            "evil",
            "/a\nb",
            "/../..//evil.example",
            "/.//evil.example",
            "/\u{3000}/evil",
        ] {
            assert_eq!(safe_next(bad), None, "{bad:?}");
        }
    }
}
