//! The authorization endpoint and its two small pages: sign-in and consent (SPEC 3). Minimal
//! server-rendered HTML, no JavaScript; every user-supplied value is escaped; forms carry a
//! CSRF token and the consent POST checks `Origin`.

use std::collections::HashMap;

use axum::Form;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use latchkey_core::oauth::redirect_with;
use latchkey_service::oauth::authorize::{AuthorizeParams, AuthorizeRejection, ValidAuthorize};
use latchkey_service::sessions::{SessionUser, csrf_token_for, csrf_token_matches};
use latchkey_service::{Caller, ServiceError};
use secrecy::SecretString;

use crate::AppState;
use crate::extract::{ClientIp, SESSION_COOKIE, cookie};

/// Escapes text for HTML element content and quoted attributes.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title} · Latchkey</title><style>\
         body{{font:16px/1.5 system-ui,sans-serif;max-width:32rem;margin:3rem auto;padding:0 1rem;color:#1b1f24}}\
         h1{{font-size:1.4rem}} .card{{border:1px solid #d0d7de;border-radius:8px;padding:1.25rem}}\
         label{{display:block;margin:.75rem 0 .25rem}} input{{width:100%;padding:.5rem;font:inherit;box-sizing:border-box}}\
         button{{font:inherit;padding:.5rem 1rem;margin:1rem .5rem 0 0;border-radius:6px;border:1px solid #1f6feb;background:#1f6feb;color:#fff;cursor:pointer}}\
         button.secondary{{background:#fff;color:#1f6feb}} .error{{color:#b42318}} ul{{padding-left:1.25rem}}\
         </style></head><body><main class=\"card\">{body}</main></body></html>",
        title = escape(title)
    );
    let mut response = (status, Html(html)).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn error_page(message: &str) -> Response {
    page(
        StatusCode::BAD_REQUEST,
        "Cannot continue",
        &format!(
            "<h1>Cannot continue</h1><p class=\"error\">{}</p>",
            escape(message)
        ),
    )
}

fn redirect(to: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(to) {
        response.headers_mut().insert(header::LOCATION, v);
    }
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
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

fn hidden_params(map: &HashMap<String, String>) -> String {
    PARAM_NAMES
        .iter()
        .filter_map(|k| {
            map.get(*k).map(|v| {
                format!(
                    "<input type=\"hidden\" name=\"{k}\" value=\"{}\">",
                    escape(v)
                )
            })
        })
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
    map: &HashMap<String, String>,
    message: Option<&str>,
    status: StatusCode,
) -> Response {
    let error = message
        .map(|m| format!("<p class=\"error\" role=\"alert\">{}</p>", escape(m)))
        .unwrap_or_default();
    let body = format!(
        "<h1>Sign in to continue</h1>{error}\
         <form method=\"post\" action=\"/oauth2/login\">{hidden}\
         <label for=\"email\">Email</label><input id=\"email\" name=\"email\" type=\"email\" autocomplete=\"username\" required autofocus>\
         <label for=\"password\">Password</label><input id=\"password\" name=\"password\" type=\"password\" autocomplete=\"current-password\" required>\
         <button type=\"submit\">Sign in</button></form>",
        hidden = hidden_params(map)
    );
    page(status, "Sign in", &body)
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
        Err(_) => return error_page("The service is temporarily unavailable. Try again shortly."),
    };
    let scopes: String = v
        .scopes
        .iter()
        .map(|s| format!("<li><code>{}</code></li>", escape(s)))
        .collect();
    let orgs: String = if accounts.is_empty() {
        "<li>No organisation: only your own account</li>".to_owned()
    } else {
        accounts
            .iter()
            .map(|a| {
                format!(
                    "<li>{} <small>({})</small></li>",
                    escape(&a.org_name),
                    a.role
                )
            })
            .collect()
    };
    let body = format!(
        "<h1>Allow <strong>{app}</strong> to use your account?</h1>\
         <p>Signed in as {email}.</p>\
         <p><strong>{app}</strong> asks for:</p><ul>{scopes}</ul>\
         <p>It will act as you in these organisations:</p><ul>{orgs}</ul>\
         <form method=\"post\" action=\"/oauth2/authorize\">{hidden}\
         <input type=\"hidden\" name=\"csrf_token\" value=\"{csrf}\">\
         <button type=\"submit\" name=\"decision\" value=\"approve\">Allow</button>\
         <button type=\"submit\" name=\"decision\" value=\"deny\" class=\"secondary\">Deny</button></form>",
        app = escape(&v.client.name),
        email = escape(session.user.email.as_str()),
        hidden = hidden_params(map),
        csrf = csrf_token_for(session_token),
    );
    page(StatusCode::OK, "Authorize", &body)
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
        Ok(Err(AuthorizeRejection::ErrorPage(m))) => return error_page(&m),
        Ok(Err(AuthorizeRejection::Redirect(to))) => return redirect(&to),
        Err(_) => return error_page("The service is temporarily unavailable. Try again shortly."),
    };
    match signed_in(&state, &headers).await {
        Some((token, session)) => consent_page(&state, &session, &token, &valid, &map).await,
        None => login_page(&map, None, StatusCode::OK),
    }
}

/// `POST /oauth2/login`: signs in from the authorization page, then shows the consent page.
pub async fn post_login(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    Form(map): Form<HashMap<String, String>>,
) -> Response {
    let email = map.get("email").cloned().unwrap_or_default();
    let password = SecretString::from(map.get("password").cloned().unwrap_or_default());
    match state.service.login(Some(ip), &email, &password).await {
        Ok(session) => {
            let max_age = (session.expires_at - state.service.now()).whole_seconds();
            let secure = if state.secure_cookies { "; Secure" } else { "" };
            let mut response = redirect(&authorize_query(&map));
            let cookie = format!(
                "{SESSION_COOKIE}={}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}",
                session.secret.expose()
            );
            if let Ok(v) = HeaderValue::from_str(&cookie) {
                response.headers_mut().insert(header::SET_COOKIE, v);
            }
            response
        }
        Err(ServiceError::RateLimited { .. }) => login_page(
            &map,
            Some("Too many attempts. Wait a moment and try again."),
            StatusCode::TOO_MANY_REQUESTS,
        ),
        Err(ServiceError::Client { .. }) => login_page(
            &map,
            Some("The email or password is not correct."),
            StatusCode::UNAUTHORIZED,
        ),
        Err(_) => error_page("The service is temporarily unavailable. Try again shortly."),
    }
}

/// The request's `Origin`, when sent, must be ours (SECURITY.md: CSRF token plus Origin).
fn origin_ok(state: &AppState, headers: &HeaderMap) -> bool {
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

/// `POST /oauth2/authorize`: the consent decision.
pub async fn post_authorize(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    Form(map): Form<HashMap<String, String>>,
) -> Response {
    let Some((token, session)) = signed_in(&state, &headers).await else {
        return login_page(
            &map,
            Some("Your session ended. Sign in again."),
            StatusCode::UNAUTHORIZED,
        );
    };
    let csrf_ok = map
        .get("csrf_token")
        .is_some_and(|t| csrf_token_matches(&token, t));
    if !csrf_ok || !origin_ok(&state, &headers) {
        return page(
            StatusCode::FORBIDDEN,
            "Cannot continue",
            "<h1>Cannot continue</h1><p class=\"error\">The form has expired or did not come from this site. Go back and try again.</p>",
        );
    }
    let valid = match state.service.check_authorize(&params_from(&map)).await {
        Ok(Ok(valid)) => valid,
        Ok(Err(AuthorizeRejection::ErrorPage(m))) => return error_page(&m),
        Ok(Err(AuthorizeRejection::Redirect(to))) => return redirect(&to),
        Err(_) => return error_page("The service is temporarily unavailable. Try again shortly."),
    };
    if map.get("decision").map(String::as_str) != Some("approve") {
        return redirect(&state.service.deny_authorize(&valid));
    }
    let caller = Caller::user(session.user.id.clone(), Some(ip));
    match state
        .service
        .approve_authorize(&caller, &session.user, &valid)
        .await
    {
        Ok(to) => redirect(&to),
        Err(_) => error_page("The service is temporarily unavailable. Try again shortly."),
    }
}

#[cfg(test)]
mod tests {
    use super::escape;

    #[test]
    fn escapes_everything_that_matters() {
        assert_eq!(
            escape("<script>\"x\" & 'y'</script>"),
            "&lt;script&gt;&quot;x&quot; &amp; &#39;y&#39;&lt;/script&gt;"
        );
    }
}
