//! Typed input and credentials, extracted once per request.
//!
//! [`JsonBody`] insists on `application/json`, refuses unknown fields and maps every rejection
//! to our error envelope. [`SignedIn`] is the management endpoints' requirement: a session
//! (bearer session token, or cookie from our own origin); any API credential there is `403
//! session_required`.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use bytes::Bytes;
use latchkey_core::Refusal;
use latchkey_service::sessions::{SessionUser, looks_like_session};
use latchkey_service::{Caller, ErrorCode, ServiceError};
use serde::de::DeserializeOwned;

use crate::AppState;
use crate::error::ApiError;

pub const SESSION_COOKIE: &str = "latchkey_session";

/// The address the request came from (the TCP peer; put a trusted proxy's header handling in
/// front if Latchkey sits behind one).
pub fn peer_ip(parts: &Parts) -> IpAddr {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::from([127, 0, 0, 1]), |c| c.0.ip())
}

/// What an `Authorization` header holds for a bearer-protected resource.
pub enum Bearer<'a> {
    /// No header, another scheme, or nothing after `Bearer`: no credential at all.
    Absent,
    /// The credential of `Authorization: Bearer <token>`.
    Token(&'a str),
    /// A `Bearer` credential that is not header text (bytes outside visible ASCII): a bad
    /// credential, refused as malformed, never mistaken for an absent one.
    Unreadable,
}

/// The credential of an `Authorization: Bearer` header (scheme case-insensitive, RFC 6750
/// §2.1). Never read from the query string.
pub fn bearer(headers: &HeaderMap) -> Bearer<'_> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Bearer::Absent;
    };
    let Ok(text) = value.to_str() else {
        let bytes = value.as_bytes();
        let is_bearer = bytes
            .get(..7)
            .is_some_and(|scheme| scheme.eq_ignore_ascii_case(b"bearer "));
        return if is_bearer {
            Bearer::Unreadable
        } else {
            Bearer::Absent
        };
    };
    match text.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => {
            let token = token.trim();
            if token.is_empty() {
                Bearer::Absent
            } else {
                Bearer::Token(token)
            }
        }
        _ => Bearer::Absent,
    }
}

pub(crate) fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// A JSON request body of type `T`.
pub struct JsonBody<T>(pub T);

fn is_json(req: &Request) -> bool {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"))
}

async fn read_body(req: Request, state: &AppState) -> Result<Bytes, ApiError> {
    Bytes::from_request(req, state).await.map_err(|e| {
        if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::client(ErrorCode::PayloadTooLarge, "the request body is too large")
        } else {
            ApiError::client(
                ErrorCode::InvalidRequest,
                "the request body could not be read",
            )
        }
    })
}

fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| {
        // serde_json's messages name the field and position; they never echo long values.
        let message = format!("invalid JSON body: {e}");
        ApiError::client(
            ErrorCode::InvalidRequest,
            message.chars().take(300).collect::<String>(),
        )
    })
}

fn not_json() -> ApiError {
    ApiError::client(
        ErrorCode::UnsupportedMediaType,
        "the request body must be JSON (Content-Type: application/json)",
    )
}

impl<T: DeserializeOwned> FromRequest<AppState> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        if !is_json(&req) {
            return Err(not_json());
        }
        let bytes = read_body(req, state).await?;
        parse_json(&bytes).map(JsonBody)
    }
}

/// A JSON body whose every field is optional: no body at all means `T::default()`. Any byte of
/// body, even a space, must come as `application/json`: a cross-site "simple" request
/// (`text/plain`) never gets past this extractor by sending something blank.
pub struct JsonOrEmpty<T>(pub T);

impl<T: DeserializeOwned + Default> FromRequest<AppState> for JsonOrEmpty<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let json = is_json(&req);
        let bytes = read_body(req, state).await?;
        if bytes.is_empty() {
            return Ok(Self(T::default()));
        }
        if !json {
            return Err(not_json());
        }
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self(T::default()));
        }
        parse_json(&bytes).map(JsonOrEmpty)
    }
}

/// Query-string parameters of type `T`: a query string that does not fit is `400
/// invalid_request` in the error envelope (axum's own rejection is plain text).
pub struct QueryParams<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for QueryParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| Self(q.0))
            .map_err(|e| {
                // serde_urlencoded's messages name the parameter, never echo long values.
                let message = format!("invalid query string: {}", e.body_text());
                ApiError::client(
                    ErrorCode::InvalidRequest,
                    message.chars().take(300).collect::<String>(),
                )
            })
    }
}

/// A signed-in user and the caller context for audit events.
pub struct SignedIn {
    pub session: SessionUser,
    pub caller: Caller,
}

impl FromRequestParts<AppState> for SignedIn {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let ip = peer_ip(parts);
        let credential = match bearer(&parts.headers) {
            Bearer::Token(token) if looks_like_session(token) => token,
            Bearer::Token(token) => {
                if state.service.is_api_credential(token) {
                    return Err(ApiError::client(
                        ErrorCode::SessionRequired,
                        "this endpoint needs a session (sign in with POST /v1/sessions), not an API token",
                    ));
                }
                return Err(ApiError::client(
                    ErrorCode::Unauthenticated,
                    "sign in first: the credential is not a session",
                ));
            }
            Bearer::Unreadable => return Err(ApiError(ServiceError::Refused(Refusal::Malformed))),
            Bearer::Absent => {
                let token = cookie(&parts.headers, SESSION_COOKIE).ok_or_else(|| {
                    ApiError::client(
                        ErrorCode::Unauthenticated,
                        "sign in first (POST /v1/sessions)",
                    )
                })?;
                check_cookie_origin(state, parts)?;
                token
            }
        };
        let session = state.service.authenticate_session(credential).await?;
        let caller = Caller::user(session.user.id.clone(), Some(ip));
        Ok(Self { session, caller })
    }
}

/// The CSRF check of the JSON API (SPEC 4): a browser attaches the cookie to requests any site
/// makes, so a state-changing request carrying it must come from our own origin: its `Origin`,
/// or without one its `Referer`, is `public_url`'s. `SameSite=Lax` alone does not do: a sibling
/// subdomain is the same site.
///
/// Safe methods are let through without either header: they change nothing, `/v1` sends no
/// CORS headers for credentials so another site cannot read the answer, and browsers leave
/// `Origin` off same-origin GETs.
fn check_cookie_origin(state: &AppState, parts: &Parts) -> Result<(), ApiError> {
    if parts.method.is_safe() {
        return Ok(());
    }
    let header_origin = |name| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(|text| url::Url::parse(text).map(|u| u.origin()).ok())
    };
    // An `Origin` present but unparsable (`null`) is a refusal, not a reason to look at `Referer`.
    let presented = header_origin(header::ORIGIN).or_else(|| header_origin(header::REFERER));
    let ours = url::Url::parse(&state.service.settings().public_url).map(|u| u.origin());
    match (presented, ours) {
        (Some(Some(theirs)), Ok(ours)) if theirs.is_tuple() && theirs == ours => Ok(()),
        _ => Err(ApiError::client(
            ErrorCode::CsrfFailed,
            "a request with the session cookie must come from the console's own origin \
             (Origin or Referer); scripts and tools send the session as a bearer token",
        )),
    }
}

/// The peer address, for handlers that need it without a session.
pub struct ClientIp(pub IpAddr);

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(peer_ip(parts)))
    }
}
