//! `GET /.well-known/oauth-authorization-server` (RFC 8414): what this server supports today.

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use crate::AppState;

pub async fn get_metadata(State(state): State<AppState>) -> Json<Value> {
    let issuer = &state.service.settings().public_url;
    let mut scopes: Vec<String> = state
        .service
        .types()
        .iter()
        .flat_map(|t| t.scopes.clone())
        .collect();
    scopes.sort();
    scopes.dedup();
    Json(json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}/oauth2/authorize"),
        "token_endpoint": format!("{issuer}/oauth2/token"),
        "jwks_uri": format!("{issuer}/.well-known/jwks.json"),
        "introspection_endpoint": format!("{issuer}/oauth2/introspect"),
        "revocation_endpoint": format!("{issuer}/oauth2/revoke"),
        "grant_types_supported": ["client_credentials", "authorization_code", "refresh_token"],
        "response_types_supported": ["code"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "token_endpoint_auth_signing_alg_values_supported": [],
        "scopes_supported": scopes,
        "access_token_signing_alg_values_supported": [state.service.settings().signing_alg.as_str()],
    }))
}
