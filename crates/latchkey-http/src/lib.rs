//! Latchkey's HTTP surface, axum only.
//!
//! Owns routing (`router.rs`, every route in one place), extraction of typed input and
//! credentials (`extract.rs`), and the one mapping from service errors to HTTP (`error.rs`).
//! Must not decide anything: each handler extracts, calls one service function, maps the result.

mod api;
mod console;
mod cookies;
mod doors;
mod error;
mod extract;
mod oauth2;
mod pages;
mod policy;
mod router;
mod scim;

use std::sync::Arc;

use latchkey_service::Service;

pub use doors::Server;
pub use router::server;

/// What the fuzz targets (`fuzz/`, docs/RELIABILITY.md) reach: the header parsers that see a
/// request's bytes before any handler.
#[doc(hidden)]
pub mod fuzzing {
    pub use crate::extract::{Bearer, bearer};

    /// `Authorization: Basic` at the OAuth endpoints, as they read it.
    pub enum Basic {
        /// No header, or another scheme.
        Absent,
        Malformed,
        Credentials {
            client_id: String,
        },
    }

    pub fn basic_credentials(headers: &axum::http::HeaderMap) -> Basic {
        match crate::oauth2::token::basic_credentials(headers) {
            Ok(Some(c)) => Basic::Credentials {
                client_id: c.client_id,
            },
            Ok(None) => Basic::Absent,
            Err(_) => Basic::Malformed,
        }
    }
}

/// What every handler can reach: one shared value behind an `Arc`, because axum clones the
/// state for every request (one reference count moved, not one per field).
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

pub struct Shared {
    pub service: Arc<Service>,
    /// Set the `Secure` flag on cookies (when `public_url` is https).
    pub secure_cookies: bool,
    /// Peers whose `X-Forwarded-For` / `Forwarded` are believed (SPEC 7).
    pub trusted_proxies: Arc<[ipnet::IpNet]>,
    /// Turns true when the server begins to stop: responses that would never end by themselves
    /// (the invalidation stream) end then, so that a graceful stop is not held by them.
    pub stopping: tokio::sync::watch::Receiver<bool>,
    /// A request body must arrive whole within this of the first moment it kept its reader
    /// waiting (slow clients, SECURITY.md; `extract::DeadlineBody`).
    pub body_read_timeout: std::time::Duration,
}

impl AppState {
    pub fn new(shared: Shared) -> Self {
        Self(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}
