//! The JSON API under `/v1`, one module per resource.

pub mod health;
pub mod me;
pub mod orgs;
pub mod sessions;
pub mod user_tokens;
pub mod views;
