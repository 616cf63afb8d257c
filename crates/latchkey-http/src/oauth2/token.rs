//! `POST /oauth2/token`, `/oauth2/introspect`, `/oauth2/revoke`: form-urlencoded only, client
//! authentication by HTTP Basic or form fields, errors exactly as RFC 6749 §5.2.

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use latchkey_core::oauth::{OAuthError, OAuthErrorCode, decode_form_value, error_description_text};
use latchkey_service::oauth::OAuthFailure;
use latchkey_service::oauth::token_endpoint::BasicCredentials;
use serde_json::json;

use crate::AppState;
use crate::error::ApiError;
use crate::extract::{BodyError, body_bytes};
use crate::oauth2::cors::allow_client_origin;

/// The body limit of the OAuth endpoints (SECURITY.md).
pub const MAX_FORM: usize = 64 * 1024;

fn oauth_error(e: &OAuthError, used_basic: bool) -> Response {
    let status = StatusCode::from_u16(e.code.status()).unwrap_or(StatusCode::BAD_REQUEST);
    let mut response = (
        status,
        // The one place OAuth error bodies are written: RFC 6749 §5.2's character set is
        // enforced here, whatever a message (or a parameter echoed in it) holds.
        Json(json!({
            "error": e.code.as_str(),
            "error_description": error_description_text(&e.description),
        })),
    )
        .into_response();
    if e.code == OAuthErrorCode::InvalidClient && used_basic {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"latchkey\""),
        );
    }
    no_store(&mut response);
    response
}

pub(crate) fn failure(state: &AppState, f: OAuthFailure, used_basic: bool) -> Response {
    if matches!(f, OAuthFailure::OAuth(_) | OAuthFailure::SlowDown { .. }) {
        state.service.metrics().oauth_error();
    }
    match f {
        OAuthFailure::OAuth(e) => oauth_error(&e, used_basic),
        OAuthFailure::SlowDown { retry_after_secs } => {
            let mut response = (
                StatusCode::TOO_MANY_REQUESTS,
                Json(json!({ "error": "invalid_client", "error_description": "too many failed client authentications: retry later" })),
            )
                .into_response();
            response.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from(retry_after_secs.max(1)),
            );
            response
        }
        OAuthFailure::Service(e) => ApiError(e).into_response(),
    }
}

fn no_store(response: &mut Response) {
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
        .headers_mut()
        .insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
}

fn invalid_request(description: &str) -> OAuthFailure {
    OAuthFailure::OAuth(OAuthError::new(OAuthErrorCode::InvalidRequest, description))
}

/// Reads the `Authorization: Basic` credentials; other schemes are ignored, a malformed Basic
/// header is `invalid_client`.
pub(crate) fn basic_credentials(
    headers: &HeaderMap,
) -> Result<Option<BasicCredentials>, OAuthFailure> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let bad = || {
        OAuthFailure::OAuth(OAuthError::new(
            OAuthErrorCode::InvalidClient,
            "malformed Basic credentials",
        ))
    };
    let text = value.to_str().map_err(|_| bad())?;
    // `Basic` alone (nothing after the scheme) is a malformed Basic header, not no header.
    let (scheme, encoded) = text.split_once(' ').unwrap_or((text, ""));
    if !scheme.eq_ignore_ascii_case("basic") {
        return Ok(None);
    }
    if encoded.trim().is_empty() {
        return Err(bad());
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .map_err(|_| bad())?;
    let decoded = String::from_utf8(decoded).map_err(|_| bad())?;
    let (id, secret) = decoded.split_once(':').ok_or_else(bad)?;
    // Each part is form-encoded before it is joined (RFC 6749 §2.3.1).
    let (client_id, client_secret) = (
        decode_form_value(id).map_err(|_| bad())?,
        decode_form_value(secret).map_err(|_| bad())?,
    );
    if client_id.is_empty() {
        return Err(bad());
    }
    Ok(Some(BasicCredentials {
        client_id,
        client_secret,
    }))
}

/// The checks every OAuth endpoint makes before the service sees the request: a form, at most
/// [`MAX_FORM`] of it (read no further), and well-formed Basic credentials if any.
async fn preflight(
    headers: &HeaderMap,
    body: Body,
) -> Result<(Bytes, Option<BasicCredentials>), OAuthFailure> {
    let is_form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| {
            v.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    if !is_form {
        return Err(invalid_request(
            "the body must be application/x-www-form-urlencoded",
        ));
    }
    let body = body_bytes(body, MAX_FORM).await.map_err(|e| match e {
        BodyError::TooLarge => invalid_request("the body is larger than 64 KiB"),
        BodyError::Unreadable => invalid_request("the request body could not be read"),
    })?;
    Ok((body, basic_credentials(headers)?))
}

/// Whether the request tried Basic, even with a header that is not valid text or has nothing
/// after the scheme: RFC 6749 §5.2 then wants `WWW-Authenticate` on `invalid_client`.
fn has_basic(headers: &HeaderMap) -> bool {
    headers.get(header::AUTHORIZATION).is_some_and(|v| {
        let bytes = v.as_bytes();
        let scheme = bytes.split(|b| *b == b' ').next().unwrap_or_default();
        scheme.eq_ignore_ascii_case(b"basic")
    })
}

/// Every OAuth endpoint ends alike: `Cache-Control: no-store` on the answer, or the OAuth error.
fn answer(state: &AppState, used_basic: bool, result: Result<Response, OAuthFailure>) -> Response {
    match result {
        Ok(mut response) => {
            no_store(&mut response);
            response
        }
        Err(f) => failure(state, f, used_basic),
    }
}

/// RFC 6749 §5.1, in the order of the names.
#[derive(serde::Serialize)]
struct TokenAnswer<'a> {
    access_token: &'a str,
    expires_in: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    refresh_token: Option<&'a str>,
    scope: String,
    token_type: &'static str,
}

pub async fn post_token(State(state): State<AppState>, request: Request) -> Response {
    let (head, body) = request.into_parts();
    token(&state, &head.headers, body).await
}

/// `POST /oauth2/token`, behind the router or at its door (`doors.rs`).
pub(crate) async fn token(state: &AppState, headers: &HeaderMap, body: Body) -> Response {
    let mut form = Bytes::new();
    let result = async {
        let (body, basic) = preflight(headers, body).await?;
        form = body;
        let issued = state.service.token(basic.as_ref(), &form).await?;
        state.service.metrics().access_token_issued();
        Ok(Json(TokenAnswer {
            access_token: &issued.jwt,
            expires_in: issued.expires_in,
            refresh_token: issued.refresh_token.as_deref(),
            scope: issued.scope.join(" "),
            token_type: "Bearer",
        })
        .into_response())
    }
    .await;
    let response = answer(state, has_basic(headers), result);
    allow_client_origin(state, headers, &form, response).await
}

pub async fn post_introspect(State(state): State<AppState>, request: Request) -> Response {
    let (head, body) = request.into_parts();
    introspect(&state, &head.headers, body).await
}

/// `POST /oauth2/introspect`, behind the router or at its door (`doors.rs`).
pub(crate) async fn introspect(state: &AppState, headers: &HeaderMap, body: Body) -> Response {
    let result = async {
        let (body, basic) = preflight(headers, body).await?;
        let answer = state.service.introspect(basic.as_ref(), &body).await?;
        Ok((
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            answer,
        )
            .into_response())
    }
    .await;
    answer(state, has_basic(headers), result)
}

pub async fn post_revoke(State(state): State<AppState>, request: Request) -> Response {
    let (head, body) = request.into_parts();
    let headers = &head.headers;
    let mut form = Bytes::new();
    let result = async {
        let (body, basic) = preflight(headers, body).await?;
        form = body;
        state
            .service
            .revoke_oauth_token(basic.as_ref(), &form)
            .await?;
        // RFC 7009 §2.2 says only "200"; an empty JSON object is what client libraries
        // (simple-oauth2 among them) can parse.
        Ok(Json(json!({})).into_response())
    }
    .await;
    let response = answer(&state, has_basic(headers), result);
    allow_client_origin(&state, headers, &form, response).await
}
