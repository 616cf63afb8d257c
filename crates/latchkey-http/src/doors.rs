//! What the accept loop serves: the verification doors that resource servers and proxies call
//! on every request of theirs (`GET /v1/me`, `/v1/forward-auth`, `POST /oauth2/introspect`)
//! and the token endpoint's `POST` answered before the router, everything else by the router
//! behind its middleware.
//!
//! The doors run the same handlers as their routes (which stay in the router, for `HEAD` and
//! the route table) and keep what the middleware promises for them: the header-size limit, a
//! panic answered with a `500`, the request id and the response policies, through the same
//! functions. What they skip is what costs a verification more than the verification itself
//! (docs/BENCHMARKS.md): the route match, a boxed service per layer and a boxed future per
//! request. The two that read a body read it as the router's handlers do, with its size limit
//! and read timeout (`extract::body_bytes`). When the log asks for request
//! spans, every request goes through the router, so that none is missing from the log.

use std::net::{IpAddr, SocketAddr};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use axum::Router;
use axum::extract::{ConnectInfo, Request};
use axum::http::{HeaderName, Method};
use axum::response::Response;
use futures_util::FutureExt as _;
use tower::ServiceExt as _;

use crate::AppState;
use crate::api::{forward_auth, me};
use crate::oauth2::token;
use crate::policy::{
    CountingRequestId, REQUEST_ID, headers_too_large, panic_response, response_policies,
};

/// The server's one service (cheap to clone: one reference count).
#[derive(Clone)]
pub struct Server(Arc<Inner>);

struct Inner {
    router: Router,
    state: AppState,
    ids: CountingRequestId,
    doors_first: bool,
}

#[derive(Clone, Copy)]
enum Door {
    Me,
    ForwardAuth,
    Introspect,
    Token,
}

fn door(request: &Request) -> Option<Door> {
    let path = request.uri().path();
    if path == "/v1/me" && request.method() == Method::GET {
        Some(Door::Me)
    } else if path == "/v1/forward-auth" || path.starts_with("/v1/forward-auth/") {
        Some(Door::ForwardAuth)
    } else if request.method() == Method::POST && path == "/oauth2/introspect" {
        Some(Door::Introspect)
    } else if request.method() == Method::POST && path == "/oauth2/token" {
        Some(Door::Token)
    } else {
        None
    }
}

impl Server {
    pub(crate) fn new(
        router: Router,
        state: AppState,
        ids: CountingRequestId,
        doors_first: bool,
    ) -> Self {
        Self(Arc::new(Inner {
            router,
            state,
            ids,
            doors_first,
        }))
    }

    /// Answers one request from the TCP peer `peer`.
    pub async fn handle(self, mut request: Request, peer: SocketAddr) -> Response {
        // Every body, at a door or behind the router, has the same deadline; a request without
        // one (the verification GETs) is not wrapped.
        if !axum::body::HttpBody::is_end_stream(request.body()) {
            let limit = self.0.state.body_read_timeout;
            request = request.map(|body| crate::extract::DeadlineBody::wrap(body, limit));
        }
        let door = if self.0.doors_first {
            door(&request)
        } else {
            None
        };
        match door {
            Some(door) => self.0.open(door, request, peer.ip()).await,
            None => {
                // The router's handlers read the peer from the request (`extract.rs`).
                request.extensions_mut().insert(ConnectInfo(peer));
                match self.0.router.clone().oneshot(request).await {
                    Ok(response) => response,
                    Err(never) => match never {},
                }
            }
        }
    }
}

impl Inner {
    async fn open(&self, door: Door, request: Request, peer: IpAddr) -> Response {
        let name = HeaderName::from_static(REQUEST_ID);
        let id = match request.headers().get(&name) {
            Some(given) => Some(given.clone()),
            None => self.ids.next_id(),
        };
        let mut response = match headers_too_large(request.headers()) {
            Some(refusal) => refusal,
            None => {
                let state = &self.state;
                // The head is borrowed, not copied.
                let (head, body) = request.into_parts();
                let head = &head;
                let answer = async move {
                    match door {
                        Door::Me => me::answer(state, peer, &head.headers).await,
                        Door::ForwardAuth => {
                            forward_auth::answer(state, peer, &head.uri, &head.headers).await
                        }
                        Door::Introspect => token::introspect(state, &head.headers, body).await,
                        Door::Token => token::token(state, &head.headers, body).await,
                    }
                };
                AssertUnwindSafe(answer)
                    .catch_unwind()
                    .await
                    .unwrap_or_else(panic_response)
            }
        };
        let headers = response.headers_mut();
        response_policies(headers);
        if let Some(id) = id {
            headers.insert(name, id);
        }
        response
    }
}
