//! `GET /v1/me`: the bearer-protected "who am I" every kind of token can call. The hot path.

use axum::extract::{Request, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

use crate::AppState;
use crate::api::views::rfc3339;
use crate::error::{ApiError, missing_bearer};
use crate::extract::{Bearer, bearer, peer_ip};

/// Tokens expiring sooner than this carry `Latchkey-Token-Expires` (SPEC 2.4).
const EXPIRY_HINT_DAYS: i64 = 30;

/// Takes the whole request rather than extractors: the header map is read where it lies, not
/// copied (this is the hot path).
pub async fn get_me(State(state): State<AppState>, request: Request) -> Response {
    let (parts, _body) = request.into_parts();
    let ip = peer_ip(&parts, &state.trusted_proxies);
    let token = match bearer(&parts.headers) {
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
            if let Some(expires_at) = verified.expires_at
                && expires_at - state.service.now() < time::Duration::days(EXPIRY_HINT_DAYS)
                && let Ok(v) = HeaderValue::from_str(&rfc3339(expires_at))
            {
                response.headers_mut().insert("latchkey-token-expires", v);
            }
            response
        }
        Err(e) => ApiError(e).into_response(),
    }
}
