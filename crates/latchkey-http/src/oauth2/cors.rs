//! CORS for browser apps (SPEC 3): the token and revocation endpoints answer preflights and
//! let a page read their answers only from where the client's redirect URIs are; the JWKS and
//! the metadata document are public to any origin. No other route sends CORS headers.
//!
//! No credentials mode is ever allowed (no `Access-Control-Allow-Credentials`): a page can
//! read only the answer to what it sent itself, never anything a cookie would unlock.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use latchkey_core::oauth::parse_form;
use tower_http::cors::{Any, CorsLayer};

use crate::AppState;
use crate::oauth2::token::basic_credentials;

/// How long a browser may keep a preflight's answer.
const PREFLIGHT_MAX_AGE: HeaderValue = HeaderValue::from_static("600");

/// The JWKS and the metadata document: readable from any origin (they are public).
pub fn any_origin() -> CorsLayer {
    CorsLayer::new()
        .allow_origin(Any)
        .allow_methods([Method::GET, Method::HEAD])
}

/// `OPTIONS` on a public document: [`any_origin`] answers a preflight before this is reached;
/// an `OPTIONS` that is not a preflight gets an empty `204`.
pub async fn public_preflight() -> StatusCode {
    StatusCode::NO_CONTENT
}

fn origin(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::ORIGIN).and_then(|v| v.to_str().ok())
}

/// `OPTIONS /oauth2/token` and `/oauth2/revoke`. A preflight names no client, so an origin is
/// allowed when it is the origin of any live client's redirect URI; the answer to the request
/// itself is then readable only by the origins of the client it authenticates as.
pub async fn preflight(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    let out = response.headers_mut();
    out.insert(
        header::VARY,
        HeaderValue::from_static(
            "origin, access-control-request-method, access-control-request-headers",
        ),
    );
    let Some(origin_text) = origin(&headers) else {
        return response;
    };
    let asks_post = headers
        .get(header::ACCESS_CONTROL_REQUEST_METHOD)
        .is_some_and(|m| m.as_bytes() == b"POST");
    let allowed = asks_post
        && matches!(
            state.service.any_client_allows_origin(origin_text).await,
            Ok(true)
        );
    if let (true, Ok(value)) = (allowed, HeaderValue::from_str(origin_text)) {
        let out = response.headers_mut();
        out.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, value);
        out.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("POST"),
        );
        out.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static("authorization, content-type"),
        );
        out.insert(header::ACCESS_CONTROL_MAX_AGE, PREFLIGHT_MAX_AGE);
    }
    response
}

/// The client a request names, by Basic or by the `client_id` form field.
fn named_client(headers: &HeaderMap, body: &Bytes) -> Option<String> {
    if let Ok(Some(basic)) = basic_credentials(headers) {
        return Some(basic.client_id);
    }
    parse_form(body).ok()?.remove("client_id")
}

/// Adds `Access-Control-Allow-Origin` to a token or revocation answer when the request comes
/// from the origin of one of its client's redirect URIs. A failed client authentication
/// (`401`, `429`) gets none: the client is not known to be the one named. An error before
/// authentication (a malformed body) gets it for the client named, so that a browser app can
/// read why; the page reads only the answer to its own request.
pub async fn allow_client_origin(
    state: &AppState,
    headers: &HeaderMap,
    body: &Bytes,
    mut response: Response,
) -> Response {
    response
        .headers_mut()
        .append(header::VARY, HeaderValue::from_static("origin"));
    let Some(origin_text) = origin(headers) else {
        return response;
    };
    if matches!(
        response.status(),
        StatusCode::UNAUTHORIZED | StatusCode::TOO_MANY_REQUESTS
    ) {
        return response;
    }
    let Some(client_id) = named_client(headers, body) else {
        return response;
    };
    let allowed = matches!(
        state
            .service
            .client_allows_origin(&client_id, origin_text)
            .await,
        Ok(true)
    );
    if let (true, Ok(value)) = (allowed, HeaderValue::from_str(origin_text)) {
        response
            .headers_mut()
            .insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, value);
    }
    response
}
