//! The cookies Latchkey reads and sets, in one place: their names, their attributes, and how a
//! request's are read. The session cookie is `HttpOnly; SameSite=Lax` (and `Secure` behind
//! https); the sign-in form's CSRF seed is `SameSite=Strict`. (The single-sign-on flow's own
//! cookie, scoped to `/sso`, lives with that flow in `console/sso.rs`.)

use axum::http::{HeaderMap, HeaderValue, header};
use latchkey_service::sessions::NewSessionToken;

use crate::AppState;

/// The console's session (the API accepts it too, from our own origin).
pub const SESSION_COOKIE: &str = "latchkey_session";

/// The sign-in form has no session yet: its CSRF token is tied to a random value in this cookie
/// (the double-submit pattern), so another site cannot sign a victim into its own account.
pub const LOGIN_COOKIE: &str = "latchkey_login";

/// The value of the cookie `name` in a request, if sent.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// `Set-Cookie` for the session cookie holding `value` for `max_age` seconds; `("", 0)` ends it.
pub fn session_cookie(state: &AppState, value: &str, max_age: i64) -> HeaderValue {
    let secure = if state.secure_cookies { "; Secure" } else { "" };
    let text = format!(
        "{SESSION_COOKIE}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}"
    );
    HeaderValue::from_str(&text)
        .unwrap_or_else(|_| HeaderValue::from_static("latchkey_session=; Path=/; Max-Age=0"))
}

/// `Set-Cookie` for a session just made, for as long as it lives.
pub fn new_session_cookie(state: &AppState, session: &NewSessionToken) -> HeaderValue {
    let max_age = (session.expires_at - state.service.now()).whole_seconds();
    session_cookie(state, session.secret.expose(), max_age)
}

/// `Set-Cookie` for the sign-in form's seed.
pub fn login_seed_cookie(state: &AppState, seed: &str) -> Option<HeaderValue> {
    let secure = if state.secure_cookies { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{LOGIN_COOKIE}={seed}; Path=/; HttpOnly; SameSite=Strict{secure}"
    ))
    .ok()
}
