//! Every route, in one place, with the requirement each states in its handler's extractors:
//! `SignedIn` = a session; a bearer API token is verified by the handler itself (`/v1/me`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, HeaderValue, Request, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use latchkey_service::ErrorCode;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::TraceLayer;

use crate::AppState;
use crate::api::{health, me, orgs, sessions, user_tokens};
use crate::error::error_response;

/// Request bodies above this are refused with `413` (SECURITY.md).
const MAX_BODY: usize = 256 * 1024;

pub fn router(state: AppState) -> Router {
    let request_id = HeaderName::from_static("x-request-id");
    Router::new()
        .route("/healthz", get(health::get_healthz))
        .route("/readyz", get(health::get_readyz))
        .route("/v1/me", get(me::get_me))
        .route("/v1/sessions", post(sessions::create_session))
        .route(
            "/v1/sessions/current",
            axum::routing::delete(sessions::delete_current_session),
        )
        .route(
            "/v1/user/tokens",
            get(user_tokens::list_user_tokens).post(user_tokens::create_user_token),
        )
        .route(
            "/v1/user/tokens/{id}",
            get(user_tokens::get_user_token).patch(user_tokens::rename_user_token),
        )
        .route(
            "/v1/user/tokens/{id}/rotate",
            post(user_tokens::rotate_user_token),
        )
        .route(
            "/v1/user/tokens/{id}/revoke",
            post(user_tokens::revoke_user_token),
        )
        .route(
            "/v1/user/tokens/{id}/reveal",
            post(user_tokens::reveal_user_token),
        )
        .route("/v1/user/events", get(user_tokens::list_user_events))
        .route("/v1/orgs", get(orgs::list_orgs))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(TraceLayer::new_for_http())
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(SetRequestIdLayer::new(
            request_id,
            CountingRequestId::default(),
        ))
        .layer(SetSensitiveRequestHeadersLayer::new([
            header::AUTHORIZATION,
            header::COOKIE,
        ]))
        .layer(CatchPanicLayer::custom(panic_response))
}

async fn not_found() -> Response {
    error_response(ErrorCode::NotFound, "no such route")
}

async fn method_not_allowed() -> Response {
    error_response(
        ErrorCode::MethodNotAllowed,
        "this route does not accept that method",
    )
}

/// A panic in a handler becomes a generic `500`; the server keeps serving.
fn panic_response(_panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("a request handler panicked");
    error_response(ErrorCode::InternalError, "an internal error occurred").into_response()
}

/// Request ids: a per-process random prefix and a counter (cheaper than a UUID per request).
#[derive(Clone)]
struct CountingRequestId {
    prefix: Arc<str>,
    next: Arc<AtomicU64>,
}

impl Default for CountingRequestId {
    fn default() -> Self {
        let mut seed = [0u8; 4];
        let _ = getrandom_fill(&mut seed);
        Self {
            prefix: format!("{:08x}", u32::from_be_bytes(seed)).into(),
            next: Arc::new(AtomicU64::new(1)),
        }
    }
}

fn getrandom_fill(buf: &mut [u8]) -> Result<(), ()> {
    latchkey_service::crypto::random_bytes::<4>()
        .map(|b| buf.copy_from_slice(&b[..buf.len().min(4)]))
        .map_err(|_| ())
}

impl MakeRequestId for CountingRequestId {
    fn make_request_id<B>(&mut self, _request: &Request<B>) -> Option<RequestId> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        HeaderValue::from_str(&format!("{}-{n}", self.prefix))
            .ok()
            .map(RequestId::new)
    }
}
