//! A refused console page in the person's own frame. A handler that cannot show its page (a
//! member opening an admin's page, an object that does not exist, storage down) answers with
//! the service's error, rendered without knowing who is signed in (`pages::error_page`, which
//! marks the answer [`Unframed`]). This layer, on the console's routes only, renders such an
//! answer again with the header, the organisation switcher and, under an organisation's
//! address, that organisation's navigation: the person is never left on a dead end. Anyone
//! not signed in keeps the plain page.

use axum::extract::{FromRequestParts as _, Request, State};
use axum::http::header;
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

pub async fn frame_refusals(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let (parts, body) = request.into_parts();
    // Kept for the frame: the cookie and the peer, read again only for a refusal.
    let mut kept = parts.clone();
    let response = next.run(Request::from_parts(parts, body)).await;
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
