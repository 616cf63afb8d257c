//! A refused console page in the person's own frame. A handler that cannot show its page (a
//! member opening an admin's page, an object that does not exist, storage down) answers with
//! the service's error, rendered without knowing who is signed in (`pages::error_page`, which
//! marks the answer [`Unframed`]). This layer, on the console's routes only, renders such an
//! answer again with the header, the organisation switcher and, under an organisation's
//! address, that organisation's navigation: the person is never left on a dead end. Anyone
//! not signed in keeps the plain page.
//!
//! It also keeps what was typed in a creation form (never a password) when the session ended
//! before it was sent: the sign-in leads back to the form filled in again.

use axum::body::Body;
use axum::extract::{FromRequestParts as _, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;

use super::{Console, MessagePage, render};
use crate::AppState;
use crate::pages::Unframed;

/// The navigation entry of a console address (`tokens:{org}` for `/orgs/{org}/tokens/…`), so
/// that the frame shows the organisation's own line.
fn current_of(path: &str) -> String {
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match parts.as_slice() {
        ["orgs", org, kind, ..] => format!("{kind}:{org}"),
        [first, ..] => (*first).to_owned(),
        [] => String::new(),
    }
}

/// The forms whose fields may be kept across a sign-in when the session has ended (never a
/// password, never a token): the page that opens with them, and the fields.
fn keepable(path: &str) -> Option<(String, &'static [&'static str])> {
    const TOKEN_FORM: &[&str] = &["name", "token_type", "expires_in_days"];
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match parts.as_slice() {
        ["credentials", "tokens"] => Some(("/credentials/new".to_owned(), TOKEN_FORM)),
        ["orgs", org, "tokens"] => Some((format!("/orgs/{org}/tokens/new"), TOKEN_FORM)),
        ["orgs", org, "members"] => Some((format!("/orgs/{org}/members"), &["email", "role"])),
        _ => None,
    }
}

/// A sign-in after an ended session comes back to `page` with what was typed in `kept`.
fn with_typed(response: &mut Response, page: &str, kept: &[(String, String)]) {
    let expired = response.status() == StatusCode::SEE_OTHER
        && response
            .headers()
            .get(header::LOCATION)
            .and_then(|l| l.to_str().ok())
            .is_some_and(|l| l.starts_with("/login?") && l.contains("why=expired"));
    if !expired || kept.is_empty() {
        return;
    }
    let Ok(query) = serde_urlencoded::to_string(kept) else {
        return;
    };
    let next = format!("{page}?{query}");
    if let Ok(login) = serde_urlencoded::to_string([("next", next.as_str()), ("why", "expired")])
        && let Ok(to) = HeaderValue::from_str(&format!("/login?{login}"))
    {
        response.headers_mut().insert(header::LOCATION, to);
    }
}

pub async fn frame_refusals(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let (parts, body) = request.into_parts();
    // Kept for the frame: the cookie and the peer, read again only for a refusal.
    let mut kept = parts.clone();
    // A creation form's safe fields, read before the handler so that a session that has
    // ended does not lose what was typed (the body goes on to the handler unchanged).
    let keep = (parts.method == Method::POST)
        .then(|| keepable(parts.uri.path()))
        .flatten();
    let (body, typed) = match keep {
        Some((page, fields)) => match axum::body::to_bytes(body, crate::extract::MAX_BODY).await {
            Ok(bytes) => {
                let pairs: Vec<(String, String)> =
                    serde_urlencoded::from_bytes(&bytes).unwrap_or_default();
                let typed: Vec<(String, String)> = pairs
                    .into_iter()
                    .filter(|(k, v)| fields.contains(&k.as_str()) && !v.is_empty())
                    .collect();
                (Body::from(bytes), Some((page, typed)))
            }
            Err(_) => return crate::pages::bad_form("The form could not be read."),
        },
        None => (body, None),
    };
    let mut response = next.run(Request::from_parts(parts, body)).await;
    if let Some((page, typed)) = typed {
        with_typed(&mut response, &page, &typed);
    }
    let Some(unframed) = response.extensions().get::<Unframed>().cloned() else {
        return response;
    };
    let Ok(console) = Console::from_request_parts(&mut kept, &state).await else {
        return response;
    };
    let layout = console
        .layout(&state, &unframed.heading, &current_of(kept.uri.path()))
        .await;
    let page = MessagePage {
        layout,
        heading: unframed.heading,
        text: unframed.text,
        back: Some("/".to_owned()),
    };
    let mut framed = render(response.status(), &page);
    if let Some(wait) = response.headers().get(header::RETRY_AFTER) {
        framed
            .headers_mut()
            .insert(header::RETRY_AFTER, wait.clone());
    }
    framed
}

#[cfg(test)]
mod tests {
    use super::current_of;

    #[test]
    fn an_organisation_address_names_its_entry() {
        assert_eq!(
            current_of("/orgs/org_1/tokens/tok_2/delete"),
            "tokens:org_1"
        );
        assert_eq!(current_of("/orgs/org_1/members"), "members:org_1");
        assert_eq!(current_of("/credentials/tokens"), "credentials");
        assert_eq!(current_of("/"), "");
    }
}
