//! The OAuth2 authorization server (SPEC 3): clients, the token endpoint and its grants, JWT
//! access tokens (RFC 9068), introspection (RFC 7662) and revocation (RFC 7009).
//!
//! Errors here are RFC 6749 §5.2 errors ([`OAuthFailure::OAuth`]); storage outages and bugs
//! stay distinct so the HTTP layer answers 503/500, never a misleading `invalid_grant`.

pub mod access_tokens;
pub mod authorize;
pub mod clients;
pub(crate) mod grant_types;
pub mod token_endpoint;

use latchkey_core::oauth::{OAuthError, OAuthErrorCode};

use crate::error::ServiceError;

/// A failure at an OAuth endpoint.
#[derive(Debug)]
pub enum OAuthFailure {
    /// An RFC 6749 error, answered as `{"error", "error_description"}`.
    OAuth(OAuthError),
    /// Too many failed client authentications: `429` with `Retry-After`.
    SlowDown { retry_after_secs: u64 },
    /// Anything else (storage outage, bug): the usual 503/500.
    Service(ServiceError),
}

impl From<ServiceError> for OAuthFailure {
    fn from(e: ServiceError) -> Self {
        Self::Service(e)
    }
}

impl From<latchkey_store::StoreError> for OAuthFailure {
    fn from(e: latchkey_store::StoreError) -> Self {
        Self::Service(e.into())
    }
}

impl From<OAuthError> for OAuthFailure {
    fn from(e: OAuthError) -> Self {
        Self::OAuth(e)
    }
}

pub type OAuthResult<T> = Result<T, OAuthFailure>;

pub(crate) fn oauth_err(code: OAuthErrorCode, description: impl Into<String>) -> OAuthFailure {
    OAuthFailure::OAuth(OAuthError::new(code, description))
}
