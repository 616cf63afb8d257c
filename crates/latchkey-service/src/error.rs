//! The service layer's one error type, with the stable error codes of the API.
//!
//! Codes are part of the public contract (SPEC 4): snake_case, never renamed. The HTTP layer
//! maps each to a status in one place; the CLI prints the message.

use latchkey_core::Refusal;
use latchkey_store::StoreError;
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    InvalidRequest,
    Unauthenticated,
    InvalidCredentials,
    InvalidToken,
    Forbidden,
    InvalidPassword,
    /// Someone who signs in with single sign-on must confirm who they are at the provider
    /// before this action.
    ReauthenticationRequired,
    FeatureNotEnabled,
    TokensDisabled,
    SessionRequired,
    CsrfFailed,
    NotFound,
    MethodNotAllowed,
    TokenLimitReached,
    NotRevealable,
    TokenNotLive,
    Conflict,
    /// The record changed since the caller read it (`If-Match`).
    PreconditionFailed,
    PayloadTooLarge,
    HeadersTooLarge,
    UnsupportedMediaType,
    RateLimited,
    InternalError,
    Unavailable,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidRequest => "invalid_request",
            Self::Unauthenticated => "unauthenticated",
            Self::InvalidCredentials => "invalid_credentials",
            Self::InvalidToken => "invalid_token",
            Self::Forbidden => "forbidden",
            Self::InvalidPassword => "invalid_password",
            Self::ReauthenticationRequired => "reauthentication_required",
            Self::FeatureNotEnabled => "feature_not_enabled",
            Self::TokensDisabled => "tokens_disabled",
            Self::SessionRequired => "session_required",
            Self::CsrfFailed => "csrf_failed",
            Self::NotFound => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::TokenLimitReached => "token_limit_reached",
            Self::NotRevealable => "not_revealable",
            Self::TokenNotLive => "token_not_live",
            Self::Conflict => "conflict",
            Self::PreconditionFailed => "precondition_failed",
            Self::PayloadTooLarge => "payload_too_large",
            Self::HeadersTooLarge => "headers_too_large",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::RateLimited => "rate_limited",
            Self::InternalError => "internal_error",
            Self::Unavailable => "unavailable",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// 4xx with a code and a sentence for people. Never holds a secret.
    #[error("{message}")]
    Client { code: ErrorCode, message: String },
    /// A presented token was refused: `401 invalid_token` with the reason.
    #[error("invalid token: {}", .0.reason())]
    Refused(Refusal),
    /// Too many attempts; retry after this many seconds.
    #[error("too many requests")]
    RateLimited { retry_after_secs: u64 },
    /// Storage is down: 503 with `Retry-After`. The detail goes to the log only.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// A bug or an impossible state: a generic 500. The detail goes to the log only.
    #[error("internal error: {0}")]
    Internal(String),
}

pub type ServiceResult<T> = Result<T, ServiceError>;

impl ServiceError {
    pub fn client(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::Client {
            code,
            message: message.into(),
        }
    }
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::client(ErrorCode::InvalidRequest, message)
    }
    pub fn not_found(what: &str) -> Self {
        Self::client(ErrorCode::NotFound, format!("no such {what}"))
    }
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::client(ErrorCode::Forbidden, message)
    }
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Client { code, .. } => *code,
            Self::Refused(_) => ErrorCode::InvalidToken,
            Self::RateLimited { .. } => ErrorCode::RateLimited,
            Self::Unavailable(_) => ErrorCode::Unavailable,
            Self::Internal(_) => ErrorCode::InternalError,
        }
    }
}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(what) => {
                Self::client(ErrorCode::Conflict, format!("the {what} already exists"))
            }
            StoreError::NotFound(what) => Self::not_found(what),
            StoreError::LimitReached => Self::client(
                ErrorCode::TokenLimitReached,
                "the limit of live tokens of this type is reached: revoke one or rotate it",
            ),
            StoreError::Stale(what) => Self::client(
                ErrorCode::PreconditionFailed,
                format!("the {what} changed since it was read"),
            ),
            StoreError::LastAdmin => Self::client(
                ErrorCode::Conflict,
                "an organisation keeps at least one admin: make someone else admin first",
            ),
            StoreError::Unavailable(detail) => Self::Unavailable(detail),
            StoreError::Internal(detail) => Self::Internal(detail),
        }
    }
}
