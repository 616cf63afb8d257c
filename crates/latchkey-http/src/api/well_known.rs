//! `GET /.well-known/jwks.json`: the public keys that verify Latchkey's JWTs.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

use crate::AppState;
use crate::error::ApiResult;

pub async fn get_jwks(State(state): State<AppState>) -> ApiResult<Response> {
    let jwks = state.service.jwks().await?;
    let mut response = Json(jwks).into_response();
    // Public and safe to cache briefly; new keys are published before they sign.
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    Ok(response)
}
