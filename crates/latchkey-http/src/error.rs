//! The one mapping from [`ServiceError`] to an HTTP response.
//!
//! Body: `{"error": {"code": "snake_case", "message": "sentence"}}`. 5xx bodies are generic;
//! their cause is logged here, once. A refused bearer token is RFC 6750's `401` with
//! `WWW-Authenticate: Bearer error="invalid_token", error_description="<reason>: …"`.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use latchkey_service::{ErrorCode, ServiceError};
use serde_json::json;

/// A service error on its way to becoming a response.
#[derive(Debug)]
pub struct ApiError(pub ServiceError);

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        Self(e)
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn client(code: ErrorCode, message: impl Into<String>) -> Self {
        Self(ServiceError::client(code, message))
    }
}

pub fn status_of(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::InvalidRequest => StatusCode::BAD_REQUEST,
        ErrorCode::Unauthenticated | ErrorCode::InvalidCredentials | ErrorCode::InvalidToken => {
            StatusCode::UNAUTHORIZED
        }
        ErrorCode::Forbidden
        | ErrorCode::InvalidPassword
        | ErrorCode::ReauthenticationRequired
        | ErrorCode::FeatureNotEnabled
        | ErrorCode::TokensDisabled
        | ErrorCode::SessionRequired
        | ErrorCode::CsrfFailed => StatusCode::FORBIDDEN,
        ErrorCode::NotFound => StatusCode::NOT_FOUND,
        ErrorCode::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
        ErrorCode::TokenLimitReached
        | ErrorCode::NotRevealable
        | ErrorCode::TokenNotLive
        | ErrorCode::Conflict => StatusCode::CONFLICT,
        ErrorCode::PreconditionFailed => StatusCode::PRECONDITION_FAILED,
        ErrorCode::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        ErrorCode::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ErrorCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        ErrorCode::InternalError => StatusCode::INTERNAL_SERVER_ERROR,
        ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
    }
}

pub fn error_response(code: ErrorCode, message: &str) -> Response {
    let body = json!({ "error": { "code": code, "message": message } });
    (status_of(code), axum::Json(body)).into_response()
}

/// `WWW-Authenticate` for a request with no or bad bearer credentials (RFC 6750 §3).
fn bearer_challenge(description: Option<&str>) -> HeaderValue {
    let value = match description {
        // The description is built from fixed reason texts and a timestamp: no quotes inside.
        Some(d) => format!(
            "Bearer realm=\"latchkey\", error=\"invalid_token\", error_description=\"{}\"",
            d.replace('"', "'")
        ),
        None => "Bearer realm=\"latchkey\"".to_owned(),
    };
    HeaderValue::from_str(&value)
        .unwrap_or_else(|_| HeaderValue::from_static("Bearer realm=\"latchkey\""))
}

/// `401` for a request to a bearer-protected resource that carried no token at all.
pub fn missing_bearer() -> Response {
    let mut response = error_response(
        ErrorCode::Unauthenticated,
        "this resource needs an API token: Authorization: Bearer <token>",
    );
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, bearer_challenge(None));
    response
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self.0 {
            ServiceError::Client { code, message } => error_response(code, &message),
            ServiceError::Refused(refusal) => {
                let description = refusal.description();
                let mut response = error_response(
                    ErrorCode::InvalidToken,
                    &format!("the token was refused ({description})"),
                );
                response.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    bearer_challenge(Some(&description)),
                );
                response
            }
            ServiceError::RateLimited { retry_after_secs } => {
                let mut response = error_response(
                    ErrorCode::RateLimited,
                    "too many requests: slow down and retry later",
                );
                response.headers_mut().insert(
                    header::RETRY_AFTER,
                    HeaderValue::from(retry_after_secs.max(1)),
                );
                response
            }
            ServiceError::Unavailable(detail) => {
                tracing::error!(error = %detail, "storage unavailable");
                let mut response = error_response(
                    ErrorCode::Unavailable,
                    "the service is temporarily unavailable: retry shortly",
                );
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                response
            }
            ServiceError::Internal(detail) => {
                tracing::error!(error = %detail, "internal error");
                error_response(ErrorCode::InternalError, "an internal error occurred")
            }
        }
    }
}
