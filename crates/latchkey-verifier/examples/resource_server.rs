//! A resource server that lets Latchkey say who is calling, in process.
//!
//! ```sh
//! latchkey client create --org org_… --name "Orders API" --grant client_credentials --introspect
//! LATCHKEY_URL=http://127.0.0.1:8080 LATCHKEY_CLIENT_ID=cli_… LATCHKEY_CLIENT_SECRET=… \
//!   cargo run -p latchkey-verifier --example resource_server -- 127.0.0.1:3000
//! curl -H "authorization: Bearer lkp_…" http://127.0.0.1:3000/orders
//! ```
//!
//! `/orders` needs any valid token, `/admin/{org}` an admin of that organisation;
//! `/public/orders`, `/healthz` and `/metrics` are open (outside the layer). Every token is verified by the layer; the
//! handlers read the [`Identity`] from the request's extensions.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Extension, Json, Router};
use latchkey_verifier::{Config, Identity, Verifier, VerifyLayer};
use serde_json::{Value, json};

async fn orders(Extension(who): Extension<Identity>) -> Json<Value> {
    Json(json!({
        "orders_for": who.principal,
        "kind": who.kind,
        "accounts": who.accounts,
        "scopes": who.scopes,
    }))
}

// axum's own `Path`: this example is a plain axum server, not Latchkey's API (whose clippy
// configuration asks for its own extractor).
#[expect(clippy::disallowed_types, reason = "an ordinary axum resource server")]
async fn admin(
    Extension(who): Extension<Identity>,
    axum::extract::Path(org): axum::extract::Path<String>,
) -> Result<Json<Value>, StatusCode> {
    match who.role_in(&org) {
        Some("admin" | "organisation") => Ok(Json(json!({ "org": org, "admin": who.principal }))),
        _ => Err(StatusCode::FORBIDDEN),
    }
}

async fn metrics(State(verifier): State<Verifier>) -> Json<Value> {
    let m = verifier.metrics();
    Json(json!({
        "stream_up": m.stream_up,
        "stream_drops": m.stream_drops,
        "cache_hits": m.cache_hits,
        "latchkey_requests": m.latchkey_requests,
        "refused": m.refused,
        "invalidations": m.invalidations,
        "cached": m.cached,
    }))
}

fn env(name: &str) -> Result<String, String> {
    #[expect(
        clippy::disallowed_methods,
        reason = "an example configured by its environment"
    )]
    std::env::var(name).map_err(|_| format!("{name} is not set"))
}

/// The example's routes: `/orders` and `/admin/{org}` behind the layer; `/public/orders` (the
/// same answer without authentication, the benchmark's baseline), `/healthz` and `/metrics`
/// open.
pub fn app(verifier: Verifier) -> Router {
    let protected = Router::new()
        .route("/orders", get(orders))
        .route("/admin/{org}", get(admin))
        .layer(VerifyLayer::new(verifier.clone()));
    Router::new()
        .route("/public/orders", get(public_orders))
        .route("/healthz", get(|| async { "ok" }))
        .route("/metrics", get(metrics))
        .with_state(verifier)
        .merge(protected)
}

/// What `/orders` answers, for an anonymous caller: the same work but the check.
async fn public_orders() -> Json<Value> {
    Json(json!({
        "orders_for": "anonymous",
        "kind": "none",
        "accounts": [],
        "scopes": [],
    }))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt().with_env_filter("warn").init();
    let listen = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:3000".to_owned());
    let verifier = Verifier::new(Config::new(
        &env("LATCHKEY_URL")?,
        &env("LATCHKEY_CLIENT_ID")?,
        &env("LATCHKEY_CLIENT_SECRET")?,
    ))?;
    verifier.start();
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app(verifier)).await?;
    Ok(())
}
