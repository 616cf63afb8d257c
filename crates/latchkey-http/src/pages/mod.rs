//! Pages: what every HTML answer shares, for the console and the OAuth pages alike (SPEC 5).
//! The frame ([`Layout`]) and its navigation, rendering with the pages' security headers (a
//! strict CSP with `frame-ancestors 'none'`, only our own script and stylesheet, `no-store`,
//! `Referrer-Policy: same-origin`, `no-referrer` on pages that show a secret), the message
//! pages, times for people, the assets, and the sign-in form ([`signin`]). It knows nothing of
//! routes or extractors: the console and the OAuth pages use it, never the other way round.

pub mod signin;

use askama::Template;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use latchkey_core::Timestamp;
use latchkey_service::ServiceError;
use time::macros::format_description;

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
    /// The organisation this page belongs to (`current` is `tokens:{org}`, `members:{org}`,
    /// …), when it is one of this person's: the header then shows its own navigation.
    pub fn current_org(&self) -> Option<&NavOrg> {
        let (_, org) = self.current.split_once(':')?;
        self.orgs.iter().find(|o| o.id == org)
    }

    /// `aria-current` for the organisation's navigation entry `kind` (`tokens`, `apps`, …).
    pub fn org_entry(&self, kind: &str, org: &str) -> &'static str {
        match self.current.split_once(':') {
            Some((k, o)) if k == kind && o == org => "page",
            _ => "false",
        }
    }

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

/// A time of day for people, in UTC ("14:05 UTC").
pub(crate) fn clock_time(t: Timestamp) -> String {
    t.format(format_description!("[hour]:[minute] UTC"))
        .unwrap_or_default()
}

/// Renders a page. (Its security headers are added by `policy::response_policies`, for every
/// HTML answer.)
pub fn render<T: Template>(status: StatusCode, page: &T) -> Response {
    match page.render() {
        Ok(html) => (status, axum::response::Html(html)).into_response(),
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

/// `303 See Other` to `to` (after a POST, so a reload does not repeat it).
pub fn redirect(to: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(to) {
        response.headers_mut().insert(header::LOCATION, v);
    }
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

pub(crate) fn message(status: StatusCode, heading: &str, text: &str) -> Response {
    let page = MessagePage {
        layout: Layout::anonymous(heading, String::new()),
        heading: heading.to_owned(),
        text: text.to_owned(),
        back: Some("/".to_owned()),
    };
    render(status, &page)
}

pub(crate) fn bad_form(text: &str) -> Response {
    message(StatusCode::BAD_REQUEST, "Cannot continue", text)
}

pub(crate) fn forbidden_form() -> Response {
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

/// The status and sentence a failed action shows on its page: the API's mapping
/// (`error::public`), the message made a sentence. 5xx details stay in the log.
pub fn failure(error: &ServiceError) -> (StatusCode, String) {
    let told = crate::error::public(error);
    match error {
        ServiceError::RateLimited { retry_after_secs } => {
            (told.status, wait_sentence(*retry_after_secs))
        }
        _ => (told.status, sentence(&told.message)),
    }
}

/// "Too many attempts. Try again in 4 seconds." — a back-off says how long.
pub fn wait_sentence(secs: u64) -> String {
    let secs = secs.max(1);
    let (n, unit) = if secs < 120 {
        (secs, if secs == 1 { "second" } else { "seconds" })
    } else {
        (secs.div_ceil(60), "minutes")
    };
    format!("Too many attempts. Try again in {n} {unit}.")
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

/// A message page that was rendered without the person's frame (a handler's refusal knows
/// the error, not who is signed in): a response extension, so that the console can show it
/// again with the navigation (`console/frame.rs`).
#[derive(Clone, Debug)]
pub struct Unframed {
    pub heading: String,
    pub text: String,
}

/// An error page for a request that has no page to go back to (an unknown organisation, say).
pub fn error_page(error: &ServiceError) -> Response {
    let told = crate::error::public(error);
    const HEADING: &str = "Cannot show this page";
    let text = sentence(&told.message);
    let mut response = message(told.status, HEADING, &text);
    response.extensions_mut().insert(Unframed {
        heading: HEADING.to_owned(),
        text,
    });
    if let Some(secs) = told.retry_after {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    response
}

/// Why a page cannot be shown, as a page in the console's look, never JSON: a handler returns
/// [`PageResult`] and uses `?` on the service's answers. The status, sentence and
/// `Retry-After` come from the API's one mapping (`error::public`).
#[derive(Debug)]
pub struct PageError(pub ServiceError);

pub type PageResult<T = Response> = Result<T, PageError>;

impl From<ServiceError> for PageError {
    fn from(error: ServiceError) -> Self {
        Self(error)
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        error_page(&self.0)
    }
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

/// `GET /assets/favicon.svg` (and `/favicon.ico`, which browsers ask for on their own).
pub async fn get_favicon() -> Response {
    asset("image/svg+xml", include_str!("../../assets/favicon.svg"))
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
        "member_added" => "The person is added.",
        "role_changed" => "The role is changed.",
        "member_removed" => "The person is removed from the organisation.",
        "left_org" => "You have left the organisation.",
        "left_admin" => "Your role is changed: you are no longer an admin of that organisation.",
        _ => return None,
    };
    Some(text.to_owned())
}
