//! The JSON API under `/v1`, one module per resource.

pub mod account;
pub mod admin;
pub mod cancellations;
pub mod clients;
pub mod events;
pub mod forward_auth;
pub mod health;
pub mod leaks;
pub mod me;
pub mod openapi;
pub mod org_tokens;
pub mod orgs;
pub mod sessions;
pub mod tokens;
pub mod user_tokens;
pub mod views;
pub mod well_known;
