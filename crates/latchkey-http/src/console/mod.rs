//! The web console (SPEC 5): server-rendered pages for people, askama templates, no JavaScript
//! framework. Each page calls the same service functions as the API, so the console can do
//! nothing the API would refuse.
//!
//! Every page is answered with a strict CSP (`frame-ancestors 'none'`, only our own script and
//! stylesheet), `no-store` and `Referrer-Policy: same-origin` (`no-referrer` on pages that show
//! a secret); every form carries the session's CSRF token and a POST whose `Origin` is another
//! site is refused. Errors are shown on the page they came from,
//! with the service's sentence (which never holds a secret).

pub mod account;
pub mod activity;
pub mod apps;
pub mod auth;
pub mod cancel;
pub mod credentials;
pub mod org_tokens;
pub mod password_reset;
pub mod sso;

use std::net::IpAddr;

use askama::Template;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use latchkey_core::{Role, Timestamp};
use latchkey_service::sessions::{SessionUser, csrf_token_for, csrf_token_matches};
use latchkey_service::{Caller, ServiceError};
use serde::de::DeserializeOwned;
use time::macros::format_description;

use crate::AppState;
use crate::extract::{SESSION_COOKIE, cookie, peer_ip};

/// What the page frame shows: the title, who is signed in, their organisations, messages.
pub struct Layout {
    pub title: String,
    pub email: Option<String>,
    pub csrf: String,
    pub orgs: Vec<NavOrg>,
    /// Which navigation entry is this page (`credentials`, `tokens:{org}`, …).
    pub current: String,
    pub notice: Option<String>,
    pub error: Option<String>,
    /// This person types their password where an action asks for it; false for someone who
    /// confirms at the single-sign-on provider instead (the password fields are left out).
    pub password_prompt: bool,
    /// On the pages whose actions need that confirmation: the box that offers it.
    pub reauth: Option<ReauthBox>,
}

/// "Confirm it's you at <provider>", or how long the last confirmation lasts.
pub struct ReauthBox {
    pub provider: String,
    /// The confirmation's end ("14:05 UTC") while it lasts.
    pub fresh_until: Option<String>,
    /// The page to come back to.
    pub next: String,
}

pub struct NavOrg {
    pub id: String,
    pub name: String,
    pub role: String,
    /// Tokens, Apps and the organisation's activity are for admins only: others do not see the
    /// links at all.
    pub is_admin: bool,
}

impl Layout {
    /// The frame of a page for someone not signed in (login, OAuth pages).
    pub fn anonymous(title: &str, csrf: String) -> Self {
        Self {
            title: title.to_owned(),
            email: None,
            csrf,
            orgs: Vec::new(),
            current: String::new(),
            notice: None,
            error: None,
            password_prompt: true,
            reauth: None,
        }
    }
}

/// A signed-in person using the console. Without a valid session cookie, the request is sent
/// to the login page instead.
pub struct Console {
    pub session: SessionUser,
    session_token: String,
    pub ip: IpAddr,
}

impl Console {
    pub fn caller(&self) -> Caller {
        self.session.caller(Some(self.ip))
    }
    pub fn csrf(&self) -> String {
        csrf_token_for(&self.session_token)
    }

    /// The frame for one of this person's pages.
    pub async fn layout(&self, state: &AppState, title: &str, current: &str) -> Layout {
        // The navigation is a convenience: if storage hiccups, the page still renders.
        let accounts = state
            .service
            .list_accounts(&self.session.user.id)
            .await
            .unwrap_or_default();
        Layout {
            title: title.to_owned(),
            email: Some(self.session.user.email.as_str().to_owned()),
            csrf: self.csrf(),
            orgs: accounts
                .iter()
                .map(|a| NavOrg {
                    id: a.org_id.to_string(),
                    name: a.org_name.clone(),
                    role: a.role.to_string(),
                    is_admin: a.role == Role::Admin,
                })
                .collect(),
            current: current.to_owned(),
            notice: None,
            error: None,
            password_prompt: !state
                .service
                .reauthenticates_at_provider(&self.session.user),
            reauth: self.reauth_box(state, current),
        }
    }

    /// The confirmation box of the pages where actions ask for a password (personal tokens,
    /// an organisation's tokens), for someone who confirms at the provider instead.
    fn reauth_box(&self, state: &AppState, current: &str) -> Option<ReauthBox> {
        let sso = state.service.sso()?;
        if !state
            .service
            .reauthenticates_at_provider(&self.session.user)
        {
            return None;
        }
        let next = match current.strip_prefix("tokens:") {
            Some(org) => format!("/orgs/{org}/tokens"),
            None if current == "credentials" => "/credentials".to_owned(),
            None => return None,
        };
        let until = self
            .session
            .reauth_at
            .map(|at| at + sso.settings().reauth_window.to_time())
            .filter(|until| *until > state.service.now());
        Some(ReauthBox {
            provider: sso.settings().display_name.clone(),
            fresh_until: until.map(clock_time),
            next,
        })
    }
}

/// A time of day for people, in UTC ("14:05 UTC").
fn clock_time(t: Timestamp) -> String {
    t.format(format_description!("[hour]:[minute] UTC"))
        .unwrap_or_default()
}

impl FromRequestParts<AppState> for Console {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        // After signing in, a page opened from a link (an expiry notice) is shown as asked.
        let to_login = || {
            let here = parts.uri.path_and_query().map_or("/", |p| p.as_str());
            if parts.method == axum::http::Method::GET && here != "/" {
                match serde_urlencoded::to_string([("next", here)]) {
                    Ok(query) => redirect(&format!("/login?{query}")),
                    Err(_) => redirect("/login"),
                }
            } else {
                redirect("/login")
            }
        };
        let Some(token) = cookie(&parts.headers, SESSION_COOKIE) else {
            return Err(to_login());
        };
        match state.service.authenticate_session(token).await {
            Ok(session) => Ok(Self {
                session,
                session_token: token.to_owned(),
                ip: peer_ip(parts, &state.trusted_proxies),
            }),
            Err(ServiceError::Unavailable(_)) => Err(unavailable()),
            Err(_) => Err(to_login()),
        }
    }
}

/// A console form: the body as `T`, accepted only with the session's CSRF token and, when the
/// browser sends one, our own `Origin`.
pub struct CheckedForm<T>(pub T);

/// A form with nothing but its CSRF token (a button).
#[derive(serde::Deserialize)]
pub struct Empty {}

#[derive(serde::Deserialize)]
struct CsrfField {
    csrf_token: Option<String>,
}

impl<T: DeserializeOwned + Send> FromRequest<AppState> for CheckedForm<T> {
    type Rejection = Response;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Response> {
        let (parts, body) = req.into_parts();
        let token = cookie(&parts.headers, SESSION_COOKIE)
            .map(str::to_owned)
            .unwrap_or_default();
        let origin_ok = origin_ok(state, &parts.headers);
        let bytes = axum::body::to_bytes(body, crate::router::MAX_BODY)
            .await
            .map_err(|_| bad_form("The form could not be read."))?;
        let csrf: CsrfField = serde_urlencoded::from_bytes(&bytes)
            .map_err(|_| bad_form("The form could not be read."))?;
        let csrf_ok = !token.is_empty()
            && csrf
                .csrf_token
                .is_some_and(|t| csrf_token_matches(&token, &t));
        if !csrf_ok || !origin_ok {
            return Err(forbidden_form());
        }
        let form = serde_urlencoded::from_bytes(&bytes)
            .map_err(|_| bad_form("The form is missing a field or has a wrong value."))?;
        Ok(Self(form))
    }
}

/// A page's query string as `T`; a malformed one is a `400` page like a malformed form.
pub struct PageQuery<T>(pub T);

impl<T: DeserializeOwned + Send> FromRequestParts<AppState> for PageQuery<T> {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _: &AppState) -> Result<Self, Response> {
        serde_urlencoded::from_str(parts.uri.query().unwrap_or_default())
            .map(Self)
            .map_err(|_| bad_form("The address has a malformed query string."))
    }
}

/// The request's `Origin`, when sent, must be ours (SECURITY.md: CSRF token plus Origin).
pub fn origin_ok(state: &AppState, headers: &HeaderMap) -> bool {
    match headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        None => true,
        Some(origin) => state
            .service
            .settings()
            .public_url
            .trim_end_matches('/')
            .eq_ignore_ascii_case(origin),
    }
}

/// Renders a page with the console's security headers.
pub fn render<T: Template>(status: StatusCode, page: &T) -> Response {
    match page.render() {
        Ok(html) => {
            let mut response = (status, axum::response::Html(html)).into_response();
            secure_headers(response.headers_mut());
            response
        }
        Err(e) => {
            tracing::error!(error = %e, "a console page failed to render");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// Renders a page that shows a secret: as [`render`], and no `Referer` at all leaves it.
/// (Other pages send `same-origin`: with `no-referrer`, browsers send `Origin: null` on form
/// posts, which the `Origin` check must refuse.)
pub fn render_secret<T: Template>(page: &T) -> Response {
    let mut response = render(StatusCode::OK, page);
    response.headers_mut().insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

pub fn secure_headers(headers: &mut HeaderMap) {
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self'; \
             frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

/// `303 See Other` to `to` (after a POST, so a reload does not repeat it).
pub fn redirect(to: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(to) {
        response.headers_mut().insert(header::LOCATION, v);
    }
    secure_headers(response.headers_mut());
    response
}

#[derive(Template)]
#[template(path = "message.html")]
pub struct MessagePage {
    pub layout: Layout,
    pub heading: String,
    pub text: String,
    pub back: Option<String>,
}

fn message(status: StatusCode, heading: &str, text: &str) -> Response {
    let page = MessagePage {
        layout: Layout::anonymous(heading, String::new()),
        heading: heading.to_owned(),
        text: text.to_owned(),
        back: Some("/".to_owned()),
    };
    render(status, &page)
}

fn bad_form(text: &str) -> Response {
    message(StatusCode::BAD_REQUEST, "Cannot continue", text)
}

fn forbidden_form() -> Response {
    message(
        StatusCode::FORBIDDEN,
        "Cannot continue",
        "The form has expired or did not come from this site. Go back, reload the page and try again.",
    )
}

pub fn unavailable() -> Response {
    message(
        StatusCode::SERVICE_UNAVAILABLE,
        "Temporarily unavailable",
        "The service is temporarily unavailable. Try again shortly.",
    )
}

/// The status and sentence a failed action shows on its page. 5xx details stay in the log.
pub fn failure(error: &ServiceError) -> (StatusCode, String) {
    match error {
        ServiceError::Client { message, .. } => {
            (crate::error::status_of(error.code()), sentence(message))
        }
        ServiceError::RateLimited { .. } => (
            StatusCode::TOO_MANY_REQUESTS,
            "Too many attempts. Wait a moment and try again.".to_owned(),
        ),
        ServiceError::Refused(_) => (StatusCode::UNAUTHORIZED, "That was refused.".to_owned()),
        ServiceError::Unavailable(_) | ServiceError::Internal(_) => {
            tracing::error!(error = %error, "a console action failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "The service is temporarily unavailable. Try again shortly.".to_owned(),
            )
        }
    }
}

/// The service's messages start lower-case for the API; on a page they are sentences.
pub(crate) fn sentence(message: &str) -> String {
    let mut chars = message.chars();
    let mut out: String = chars
        .next()
        .map(|c| c.to_uppercase().collect())
        .unwrap_or_default();
    out.push_str(chars.as_str());
    if !out.ends_with('.') {
        out.push('.');
    }
    out
}

/// An error page for a request that has no page to go back to (an unknown organisation, say).
pub fn error_page(error: &ServiceError) -> Response {
    let (status, text) = failure(error);
    message(status, "Cannot show this page", &text)
}

/// Times on pages: `2026-12-01 21:14 UTC`.
pub fn when(t: Timestamp) -> String {
    t.format(format_description!(
        "[year]-[month]-[day] [hour]:[minute] UTC"
    ))
    .unwrap_or_default()
}

pub fn when_or(t: Option<Timestamp>, none: &str) -> String {
    t.map_or_else(|| none.to_owned(), when)
}

/// `GET /assets/console.css` and `/assets/console.js`: compiled into the binary.
pub async fn get_stylesheet() -> Response {
    asset(
        "text/css; charset=utf-8",
        include_str!("../../assets/console.css"),
    )
}

pub async fn get_script() -> Response {
    asset(
        "text/javascript; charset=utf-8",
        include_str!("../../assets/console.js"),
    )
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    response
}

/// Fixed success messages, picked by a short code in the redirect's query (never user input).
pub fn notice_for(done: Option<&str>) -> Option<String> {
    let text = match done? {
        "revoked" => "The token is revoked.",
        "renamed" => "The token is renamed.",
        "deleted" => "The token is deleted.",
        "saved" => "The changes are saved.",
        "secret_removed" => "The secret is removed.",
        "app_deleted" => "The app is deleted.",
        "app_created" => "The app is created.",
        "cancelled" => "The token is cancelled.",
        _ => return None,
    };
    Some(text.to_owned())
}
