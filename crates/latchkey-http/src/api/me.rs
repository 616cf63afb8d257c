//! `GET /v1/me`: the bearer-protected "who am I" every kind of token can call. The hot path.

use std::net::IpAddr;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};

use crate::AppState;
use crate::api::views::expiry_hint;
use crate::error::{ApiError, missing_bearer};
use crate::extract::{Bearer, bearer, client_ip, connected_peer};

/// The route (`HEAD`, and every request while the log asks for request spans); the door in
/// `doors.rs` calls [`answer`] directly.
pub async fn get_me(State(state): State<AppState>, request: Request) -> Response {
    answer(
        &state,
        connected_peer(request.extensions()),
        request.headers(),
    )
    .await
}

/// Reads the header map where it lies, and the TCP peer as the accept loop saw it (this is the
/// hot path: no extractor copies, no extension map).
pub async fn answer(state: &AppState, peer: IpAddr, headers: &HeaderMap) -> Response {
    let ip = client_ip(peer, headers, &state.trusted_proxies);
    let token = match bearer(headers) {
        Bearer::Token(token) => token,
        Bearer::Absent => return missing_bearer(),
        // Verified as the empty string: refused as malformed and counted against the address
        // like any bad token, by the one verification path.
        Bearer::Unreadable => "",
    };
    let verified = state.service.verify_bearer(token, ip).await;
    match verified {
        Ok(verified) => {
            let mut response = (
                [(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                )],
                verified.me_body(),
            )
                .into_response();
            if let Some(v) = expiry_hint(verified.expires_at, state.service.now()) {
                response.headers_mut().insert("latchkey-token-expires", v);
            }
            response
        }
        Err(e) => ApiError(e).into_response(),
    }
}
