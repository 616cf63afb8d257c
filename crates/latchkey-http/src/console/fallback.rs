//! The console's answers for addresses it does not have: a page in the console's look (with
//! the navigation when someone is signed in), never the API's JSON. A reload of an address that
//! only takes a form (the page after a POST) goes back to the page that form belongs to.

use axum::extract::FromRequestParts as _;
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::Response;

use super::{Console, MessagePage, redirect, render};
use crate::AppState;
use crate::extract::page::owning_page;
use crate::pages::Layout;

/// The first path segments that are the console's (and its sign-in's) pages.
const PAGE_ROOTS: &[&str] = &[
    "credentials",
    "orgs",
    "account",
    "activity",
    "sso",
    "login",
    "logout",
    "forgot-password",
    "reset-password",
    "cancel",
];

/// Whether an unknown address or method is answered as a page: under one of the console's
/// roots, or asked for by a browser (`Accept: text/html`) outside the API's own prefixes.
pub fn is_page(method: &Method, path: &str, headers: &HeaderMap) -> bool {
    let first = path.trim_start_matches('/').split('/').next().unwrap_or("");
    if PAGE_ROOTS.contains(&first) {
        return true;
    }
    let api = [
        "v1",
        "v2",
        "scim",
        "oauth2",
        ".well-known",
        "healthz",
        "readyz",
        "metrics",
    ];
    let browser = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/html"));
    (*method == Method::GET || *method == Method::HEAD) && browser && !api.contains(&first)
}

async fn frame(state: &AppState, parts: &mut Parts, title: &str) -> Layout {
    match Console::from_request_parts(parts, state).await {
        Ok(console) => console.layout(state, title, "").await,
        Err(_) => Layout::anonymous(title, String::new()),
    }
}

/// `404` for an address the console does not have.
pub async fn not_found(state: &AppState, mut parts: Parts) -> Response {
    let page = MessagePage {
        layout: frame(state, &mut parts, "Page not found").await,
        heading: "Page not found".to_owned(),
        text: "There is no page at this address. It may have moved, or the link may be \
               mistyped."
            .to_owned(),
        back: Some("/".to_owned()),
    };
    render(StatusCode::NOT_FOUND, &page)
}

/// A method the address does not take: a reload of a form's address goes back to its page;
/// anything else is a `405` page.
pub async fn method_not_allowed(state: &AppState, mut parts: Parts) -> Response {
    if (parts.method == Method::GET || parts.method == Method::HEAD)
        && let Some(page) = owning_page(parts.uri.path())
    {
        return redirect(&page);
    }
    let page = MessagePage {
        layout: frame(state, &mut parts, "Not possible here").await,
        heading: "Not possible here".to_owned(),
        text: "This address does not take that kind of request. Go back to the page and use \
               its buttons."
            .to_owned(),
        back: Some("/".to_owned()),
    };
    render(StatusCode::METHOD_NOT_ALLOWED, &page)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reload_of_a_form_address_goes_to_its_page() {
        for (path, page) in [
            ("/credentials/tokens/tok_1/rotate", Some("/credentials")),
            ("/credentials/tokens", Some("/credentials")),
            ("/account/password", Some("/account")),
            ("/orgs/o1/apps", Some("/orgs/o1/apps")),
            ("/account/sessions/s1/end", Some("/account")),
            ("/orgs/o1/tokens/t1/delete", Some("/orgs/o1/tokens")),
            ("/orgs/o1/apps/c1/secrets", Some("/orgs/o1/apps/c1")),
            (
                "/orgs/o1/apps/c1/secrets/s1/revoke",
                Some("/orgs/o1/apps/c1"),
            ),
            ("/logout", Some("/")),
            ("/nope", None),
        ] {
            assert_eq!(owning_page(path).as_deref(), page, "{path}");
        }
    }

    #[test]
    fn only_the_console_roots_and_browsers_outside_the_api_get_pages() {
        let browser = {
            let mut h = HeaderMap::new();
            h.insert(header::ACCEPT, "text/html,*/*".parse().unwrap());
            h
        };
        let api = HeaderMap::new();
        assert!(is_page(&Method::GET, "/orgs/x/nope", &api));
        assert!(is_page(&Method::POST, "/credentials/x", &api));
        assert!(is_page(&Method::GET, "/nope", &browser));
        assert!(!is_page(&Method::GET, "/nope", &api));
        assert!(!is_page(&Method::GET, "/v1/nope", &browser));
        assert!(!is_page(&Method::POST, "/nope", &browser));
    }
}
