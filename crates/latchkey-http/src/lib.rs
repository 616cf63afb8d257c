//! Latchkey's HTTP surface, axum only.
//!
//! Owns routing (`router.rs`, every route in one place), extraction of typed input and
//! credentials (`extract.rs`), and the one mapping from service errors to HTTP (`error.rs`).
//! Must not decide anything: each handler extracts, calls one service function, maps the result.

mod api;
mod console;
mod error;
mod extract;
mod oauth2;
mod router;

use std::sync::Arc;

use latchkey_service::Service;

pub use router::router;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub service: Arc<Service>,
    /// Set the `Secure` flag on cookies (when `public_url` is https).
    pub secure_cookies: bool,
    /// Peers whose `X-Forwarded-For` / `Forwarded` are believed (SPEC 7).
    pub trusted_proxies: Arc<[ipnet::IpNet]>,
}
