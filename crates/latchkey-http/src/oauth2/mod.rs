//! The OAuth2 endpoints (SPEC 3): form bodies in, RFC 6749 JSON errors out.

pub mod authorize;
pub mod cors;
pub mod invalidations;
pub mod metadata;
pub mod token;
