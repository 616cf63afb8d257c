//! `/v1/forward-auth` (SPEC 8): the door for proxies (nginx `auth_request`, Traefik
//! `ForwardAuth`, Caddy `forward_auth`, Envoy `ext_authz`, HAProxy). Any method, any path below
//! it. `200` with an empty body and the caller's identity as `Latchkey-*` headers; `401` with the
//! RFC 6750 challenge when the token is missing or refused; `403` with `insufficient_scope` when
//! a requirement of the query (`scope`, `account`, `role`, `kind`) is not met. The hot path,
//! like `/v1/me`: one cached verification, headers built from the cached identity.

use std::net::IpAddr;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use latchkey_service::ErrorCode;
use latchkey_service::forward_auth::Requirements;

use crate::AppState;
use crate::api::views::expiry_hint;
use crate::error::{ApiError, error_response, missing_bearer};
use crate::extract::{Bearer, bearer, client_ip, connected_peer};

/// The routes (`/v1/forward-auth` and below, any method); the door in `doors.rs` calls
/// [`answer`] directly.
pub async fn forward_auth(State(state): State<AppState>, request: Request) -> Response {
    let peer = connected_peer(request.extensions());
    answer(&state, peer, request.uri(), request.headers()).await
}

/// As `/v1/me`'s: the headers read where they lie, the TCP peer from the accept loop.
pub async fn answer(state: &AppState, peer: IpAddr, uri: &Uri, headers: &HeaderMap) -> Response {
    let ip = client_ip(peer, headers, &state.trusted_proxies);
    let requirements = match uri.query() {
        None => Requirements::default(),
        Some(query) => {
            let pairs: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect();
            match Requirements::from_pairs(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()))) {
                Ok(r) => r,
                Err(message) => return error_response(ErrorCode::InvalidRequest, &message),
            }
        }
    };
    let token = match bearer(headers) {
        Bearer::Token(token) => token,
        Bearer::Absent => return missing_bearer(),
        Bearer::Unreadable => "",
    };
    let verified = match state.service.verify_bearer(token, ip).await {
        Ok(verified) => verified,
        Err(e) => return ApiError(e).into_response(),
    };
    let identity = verified.identity();
    if let Some(why) = requirements.unmet(identity) {
        return insufficient(&why, &requirements);
    }
    let mut response = StatusCode::OK.into_response();
    let out = response.headers_mut();
    let mut put = |name: &'static str, value: &str| {
        if let Ok(v) = HeaderValue::from_str(value) {
            out.insert(HeaderName::from_static(name), v);
        }
    };
    put("latchkey-principal", &identity.principal);
    put("latchkey-principal-kind", &identity.kind);
    put("latchkey-token-id", &identity.token_id);
    put("latchkey-accounts", &identity.accounts_header());
    put("latchkey-scopes", &identity.scopes_header());
    if let Some(v) = expiry_hint(verified.expires_at, state.service.now()) {
        out.insert(HeaderName::from_static("latchkey-token-expires"), v);
    }
    response
}

/// `403` with the RFC 6750 §3.1 `insufficient_scope` challenge, naming the scopes asked for.
fn insufficient(why: &str, requirements: &Requirements) -> Response {
    let mut response = error_response(ErrorCode::Forbidden, why);
    let mut challenge = format!(
        "Bearer realm=\"latchkey\", error=\"insufficient_scope\", error_description=\"{}\"",
        why.replace(['"', '\\'], "'")
    );
    if !requirements.scopes.is_empty() {
        challenge.push_str(&format!(", scope=\"{}\"", requirements.scopes.join(" ")));
    }
    if let Ok(v) = HeaderValue::from_str(&challenge) {
        response.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    response
}
