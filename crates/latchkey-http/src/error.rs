//! The one mapping from [`ServiceError`] to what a client is told ([`public`]): the API's JSON
//! answer here ([`ApiError`]), a page's in `pages::PageError`, from the same status, code,
//! sentence and wait.
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

/// What a client is told of a service error, as JSON or on a page.
pub struct Public {
    pub status: StatusCode,
    pub code: ErrorCode,
    /// Lower-case, as the API says it (a page makes it a sentence); never a secret.
    pub message: String,
    /// Seconds before a retry makes sense (`Retry-After`).
    pub retry_after: Option<u64>,
    /// A refused token's reason, for `WWW-Authenticate`.
    pub refusal: Option<String>,
}

/// The one mapping. 5xx causes are logged here, once; their answers are generic.
pub fn public(error: &ServiceError) -> Public {
    let plain = |code: ErrorCode, message: &str| Public {
        status: status_of(code),
        code,
        message: message.to_owned(),
        retry_after: None,
        refusal: None,
    };
    match error {
        ServiceError::Client { code, message } => plain(*code, message),
        ServiceError::Refused(refusal) => {
            let description = refusal.description();
            Public {
                message: format!("the token was refused ({description})"),
                refusal: Some(description),
                ..plain(ErrorCode::InvalidToken, "")
            }
        }
        ServiceError::RateLimited { retry_after_secs } => Public {
            retry_after: Some((*retry_after_secs).max(1)),
            ..plain(
                ErrorCode::RateLimited,
                "too many requests: slow down and retry later",
            )
        },
        ServiceError::Unavailable(detail) => {
            tracing::error!(error = %detail, "storage unavailable");
            Public {
                retry_after: Some(1),
                ..plain(
                    ErrorCode::Unavailable,
                    "the service is temporarily unavailable: retry shortly",
                )
            }
        }
        ServiceError::Internal(detail) => {
            tracing::error!(error = %detail, "internal error");
            plain(ErrorCode::InternalError, "an internal error occurred")
        }
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
        let told = public(&self.0);
        let mut response = error_response(told.code, &told.message);
        let headers = response.headers_mut();
        if let Some(secs) = told.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if let Some(reason) = &told.refusal {
            headers.insert(header::WWW_AUTHENTICATE, bearer_challenge(Some(reason)));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_and_the_api_tell_the_same_status_and_wait() {
        let told = public(&ServiceError::Internal("a bug".into()));
        assert_eq!(told.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(!told.message.contains("bug"), "{}", told.message);
        let told = public(&ServiceError::Unavailable("the disk".into()));
        assert_eq!(
            (told.status, told.retry_after),
            (StatusCode::SERVICE_UNAVAILABLE, Some(1))
        );
        let told = public(&ServiceError::RateLimited {
            retry_after_secs: 0,
        });
        assert_eq!(
            (told.status, told.retry_after),
            (StatusCode::TOO_MANY_REQUESTS, Some(1))
        );
        let page = crate::pages::error_page(&ServiceError::Unavailable("x".into()));
        assert_eq!(page.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(page.headers()[header::RETRY_AFTER], "1");
        let page = crate::pages::error_page(&ServiceError::Internal("x".into()));
        assert_eq!(page.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }
}
