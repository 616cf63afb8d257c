//! The pages' extractors: [`Console`] (a signed-in person, or a redirect to the sign-in page),
//! [`CheckedForm`] (a form accepted only with the session's CSRF token and our own `Origin`),
//! [`PageQuery`], [`PagePath`], and the sign-in form's own check ([`login_form_ok`]). Their refusals are
//! pages, not JSON.

use std::net::IpAddr;

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use axum::response::Response;
use latchkey_core::Role;
use latchkey_service::sessions::{SessionUser, csrf_token_for, csrf_token_matches};
use latchkey_service::{Caller, ServiceError};
use serde::de::DeserializeOwned;

use crate::AppState;
use crate::cookies::{LOGIN_COOKIE, SESSION_COOKIE, cookie};
use crate::extract::peer_ip;
use crate::pages::{
    Layout, NavOrg, ReauthBox, bad_form, clock_time, forbidden_form, redirect, unavailable,
};

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

impl FromRequestParts<AppState> for Console {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        // After signing in, the person comes back where they were: the page they opened (a
        // link from a mail, say), or for a form, the page it belongs to (a form's body is
        // not kept: it may hold a password). A session that was there and has ended is said.
        let to_login = |ended: bool| {
            let here = parts.uri.path_and_query().map_or("/", |p| p.as_str());
            let next = if parts.method == axum::http::Method::GET {
                Some(here.to_owned())
            } else {
                owning_page(parts.uri.path())
            };
            let mut query: Vec<(&str, &str)> = Vec::new();
            if let Some(next) = next.as_deref().filter(|n| *n != "/") {
                query.push(("next", next));
            }
            if ended {
                query.push(("why", "expired"));
            }
            let mut response = match serde_urlencoded::to_string(&query) {
                Ok(q) if !q.is_empty() => redirect(&format!("/login?{q}")),
                _ => redirect("/login"),
            };
            if ended {
                response.headers_mut().append(
                    axum::http::header::SET_COOKIE,
                    crate::cookies::session_cookie(state, "", 0),
                );
            }
            response
        };
        let Some(token) = cookie(&parts.headers, SESSION_COOKIE) else {
            return Err(to_login(false));
        };
        match state.service.authenticate_session(token).await {
            Ok(session) => Ok(Self {
                session,
                session_token: token.to_owned(),
                ip: peer_ip(parts, &state.trusted_proxies),
            }),
            Err(ServiceError::Unavailable(_)) => Err(unavailable()),
            Err(_) => Err(to_login(true)),
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
        let bytes = axum::body::to_bytes(body, crate::extract::MAX_BODY)
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

/// A sign-in form may be used: its token matches the seed cookie and it came from this site.
pub(crate) fn login_form_ok(state: &AppState, headers: &HeaderMap, csrf_token: &str) -> bool {
    let token_ok =
        cookie(headers, LOGIN_COOKIE).is_some_and(|seed| csrf_token_matches(seed, csrf_token));
    token_ok && origin_ok(state, headers)
}

/// The page a form's address belongs to: where a reload of it goes, and where a person whose
/// session ended while sending it comes back to. `/orgs/o/tokens/t/rotate` → `/orgs/o/tokens`,
/// `/account/password` → `/account`.
pub(crate) fn owning_page(path: &str) -> Option<String> {
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match parts.as_slice() {
        ["credentials", ..] => Some("/credentials".to_owned()),
        ["account", ..] => Some("/account".to_owned()),
        ["orgs", org, "tokens", ..] => Some(format!("/orgs/{org}/tokens")),
        ["orgs", org, "members", ..] => Some(format!("/orgs/{org}/members")),
        ["orgs", org, "apps", id, _, ..] => Some(format!("/orgs/{org}/apps/{id}")),
        ["orgs", org, "apps", ..] => Some(format!("/orgs/{org}/apps")),
        ["logout"] => Some("/".to_owned()),
        ["sso", ..] => Some("/login".to_owned()),
        _ => None,
    }
}

/// A page's path parameters as `T`: as `extract::Path`, but a malformed one (a segment that is
/// not UTF-8 text, say) is a page, not the API's JSON.
pub struct PagePath<T>(pub T);

impl<T: DeserializeOwned + Send> FromRequestParts<AppState> for PagePath<T> {
    type Rejection = crate::pages::PageError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        crate::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| Self(p.0))
            .map_err(|e| crate::pages::PageError(e.0))
    }
}
