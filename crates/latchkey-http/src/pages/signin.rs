//! The sign-in form, shared by the console (`/login`) and the OAuth authorization page
//! (`/oauth2/login`): the page, where it may send the person afterwards ([`safe_next`]), and
//! its CSRF seed (the `latchkey_login` cookie, checked by `extract::page::login_form_ok`).

use askama::Template;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use latchkey_service::crypto::random_bytes;
use latchkey_service::sessions::csrf_token_for;

use super::{Layout, render, unavailable};
use crate::AppState;
use crate::cookies::{LOGIN_COOKIE, cookie, login_seed_cookie};

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
    /// A fresh installation where no one can sign in yet: the page says how to make the first
    /// operator.
    pub first_run: bool,
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
            first_run: false,
        }
    }
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
    if let Some(v) = login_seed_cookie(state, seed) {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
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
