//! Every route, in one place, with the requirement each states in its handler's extractors:
//! `SignedIn` = a session; a bearer API token is verified by the handler itself (`/v1/me`).

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderName, Request, header};
use axum::response::Response;
use axum::routing::{any, delete, get, patch, post};
use latchkey_service::ErrorCode;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::trace::TraceLayer;

use crate::AppState;
use crate::api::{
    account, admin, cancellations, clients, events, forward_auth, health, leaks, me, openapi,
    org_tokens, orgs, sessions, user_tokens, well_known,
};
use crate::console::{
    activity, apps, auth, credentials, members, org_tokens as console_org_tokens,
};
use crate::error::error_response;
use crate::oauth2;
use crate::policy::{
    CountingRequestId, HeaderSizeLimit, REQUEST_ID, panic_response, response_policies,
};

/// The whole HTTP surface: the verification doors answered first (`doors.rs`), every route
/// behind the middleware otherwise.
pub fn server(state: AppState) -> crate::doors::Server {
    let ids = CountingRequestId::default();
    let traced = request_tracing_enabled();
    let router = with_layers(
        routes(state.clone()).with_state(state.clone()),
        ids.clone(),
        traced,
    );
    crate::doors::Server::new(router, state, ids, !traced)
}

/// Whether the log asks for request spans or access lines (`debug` for this crate or for
/// `tower_http`), as it did at start.
fn request_tracing_enabled() -> bool {
    tracing::enabled!(tracing::Level::DEBUG)
        || tracing::enabled!(target: "tower_http::trace", tracing::Level::DEBUG)
}

fn routes(state: AppState) -> Router<AppState> {
    Router::new()
        // SCIM 2.0 for the platform's identity provider (SPEC 9): a provisioning credential.
        .merge(crate::scim::routes())
        .route("/healthz", get(health::get_healthz))
        .route("/readyz", get(health::get_readyz))
        .route("/metrics", get(health::get_metrics))
        .route(
            "/.well-known/jwks.json",
            get(well_known::get_jwks)
                .options(oauth2::cors::public_preflight)
                .layer(oauth2::cors::any_origin()),
        )
        .route("/openapi.json", get(openapi::get_openapi))
        .route("/docs", get(openapi::get_docs))
        // Bearer API token, verified by the handler (the hot path).
        .route("/v1/me", get(me::get_me))
        // Every change as it commits, for resource servers (SPEC 8): a client with introspect.
        .route(
            "/v1/invalidations",
            get(oauth2::invalidations::get_invalidations),
        )
        // The same, for proxies: any method, any path below it (SPEC 8).
        .route("/v1/forward-auth", any(forward_auth::forward_auth))
        .route("/v1/forward-auth/", any(forward_auth::forward_auth))
        .route("/v1/forward-auth/{*rest}", any(forward_auth::forward_auth))
        // The platform's back office (SPEC 9): an operator credential (`api/admin.rs`).
        .route(
            "/v1/admin/users",
            get(admin::find_user).post(admin::create_user),
        )
        .route(
            "/v1/admin/users/{id}",
            get(admin::get_user).patch(admin::update_user),
        )
        .route(
            "/v1/admin/users/{id}/revoke-all",
            post(admin::revoke_all_user_tokens),
        )
        .route(
            "/v1/admin/orgs",
            get(admin::list_orgs).post(admin::create_org),
        )
        .route(
            "/v1/admin/orgs/{id}",
            get(admin::get_org).patch(admin::update_org),
        )
        .route(
            "/v1/admin/orgs/{id}/revoke-all",
            post(admin::revoke_all_org_tokens),
        )
        .route(
            "/v1/admin/orgs/{id}/members",
            get(admin::list_members).post(admin::set_member),
        )
        .route(
            "/v1/admin/orgs/{id}/members/{user}",
            delete(admin::remove_member),
        )
        .route("/v1/admin/tokens", get(admin::list_tokens))
        .route("/v1/admin/tokens/{id}/revoke", post(admin::revoke_token))
        // Open to anyone, rate-limited per address.
        .route("/v1/leaks", post(leaks::report_leaks))
        // Open to whoever holds a cancel link's code (it is the credential).
        .route(
            "/v1/token-cancellations",
            post(cancellations::create_token_cancellation),
        )
        .route("/v1/sessions", post(sessions::create_session))
        // A forgotten password (SPEC 9): open to anyone, limited per address and account;
        // the code from the mail is the credential.
        .route("/v1/password-resets", post(account::request_password_reset))
        .route(
            "/v1/password-resets/complete",
            post(account::complete_password_reset),
        )
        // Everything below needs a session (the `SignedIn` extractor).
        .route(
            "/v1/sessions/current",
            delete(sessions::delete_current_session),
        )
        .route(
            "/v1/user/tokens",
            get(user_tokens::list_user_tokens).post(user_tokens::create_user_token),
        )
        .route(
            "/v1/user/tokens/revoke-all",
            post(user_tokens::revoke_all_user_tokens),
        )
        .route(
            "/v1/user/tokens/{id}",
            get(user_tokens::get_user_token).patch(user_tokens::update_user_token),
        )
        .route(
            "/v1/user/tokens/{id}/rotate",
            post(user_tokens::rotate_user_token),
        )
        .route(
            "/v1/user/tokens/{id}/revoke",
            post(user_tokens::revoke_user_token),
        )
        .route(
            "/v1/user/tokens/{id}/reveal",
            post(user_tokens::reveal_user_token),
        )
        .route("/v1/user/events", get(events::list_user_events))
        // The person's own security (SPEC 9, `api/account.rs`).
        .route("/v1/user/password", post(account::change_password))
        .route("/v1/user/sessions", get(account::list_sessions))
        .route("/v1/user/sessions/{id}", delete(account::end_session))
        .route("/v1/user/apps", get(account::list_apps))
        .route("/v1/user/apps/{client_id}", delete(account::revoke_app))
        .route("/v1/orgs", get(orgs::list_orgs))
        .route(
            "/v1/orgs/{org}/members",
            get(orgs::list_members).post(orgs::add_member),
        )
        .route(
            "/v1/orgs/{org}/members/{user}",
            patch(orgs::update_member).delete(orgs::remove_member),
        )
        .route(
            "/v1/orgs/{org}/tokens",
            get(org_tokens::list_org_tokens).post(org_tokens::create_org_token),
        )
        .route(
            "/v1/orgs/{org}/tokens/revoke-all",
            post(org_tokens::revoke_all_org_tokens),
        )
        .route(
            "/v1/orgs/{org}/tokens/{id}",
            get(org_tokens::get_org_token)
                .patch(org_tokens::update_org_token)
                .delete(org_tokens::delete_org_token),
        )
        .route(
            "/v1/orgs/{org}/tokens/{id}/rotate",
            post(org_tokens::rotate_org_token),
        )
        .route(
            "/v1/orgs/{org}/tokens/{id}/reveal",
            post(org_tokens::reveal_org_token),
        )
        .route("/v1/orgs/{org}/events", get(events::list_org_events))
        .route(
            "/v1/orgs/{org}/clients",
            get(clients::list_clients).post(clients::create_client),
        )
        .route(
            "/v1/orgs/{org}/clients/{id}",
            patch(clients::update_client).delete(clients::delete_client),
        )
        .route(
            "/v1/orgs/{org}/clients/{id}/secrets",
            post(clients::add_client_secret),
        )
        .route(
            "/v1/orgs/{org}/clients/{id}/secrets/{secret_id}",
            delete(clients::delete_client_secret),
        )
        // OAuth2 (SPEC 3): form bodies, RFC 6749 errors, client authentication in the service.
        .route(
            "/.well-known/oauth-authorization-server",
            get(oauth2::metadata::get_metadata)
                .options(oauth2::cors::public_preflight)
                .layer(oauth2::cors::any_origin()),
        )
        .route(
            "/oauth2/authorize",
            get(oauth2::authorize::get_authorize).post(oauth2::authorize::post_authorize),
        )
        .route("/oauth2/login", post(oauth2::authorize::post_login))
        // CORS for browser apps (SPEC 3): preflights here, the answer's header in the handler.
        .route(
            "/oauth2/token",
            post(oauth2::token::post_token).options(oauth2::cors::preflight),
        )
        .route("/oauth2/introspect", post(oauth2::token::post_introspect))
        .route(
            "/oauth2/revoke",
            post(oauth2::token::post_revoke).options(oauth2::cors::preflight),
        )
        // The web console (SPEC 5): pages for people, a session cookie, CSRF-checked forms;
        // a page that cannot be shown is shown in the person's own frame (`console/frame.rs`).
        .merge(
            console_routes().route_layer(axum::middleware::from_fn_with_state(
                state,
                crate::console::frame::frame_refusals,
            )),
        )
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
}

/// The console's pages (SPEC 5).
fn console_routes() -> Router<AppState> {
    Router::new()
        .route("/assets/console.css", get(crate::pages::get_stylesheet))
        .route("/assets/console.js", get(crate::pages::get_script))
        .route("/assets/favicon.svg", get(crate::pages::get_favicon))
        .route("/favicon.ico", get(crate::pages::get_favicon))
        .route("/", get(auth::get_home))
        .route("/login", get(auth::get_login).post(auth::post_login))
        .route("/logout", post(auth::post_logout))
        .route("/sso/start", get(crate::console::sso::get_start))
        .route("/sso/reauth", post(crate::console::sso::post_reauth))
        .route("/sso/callback", get(crate::console::sso::get_callback))
        .route("/credentials", get(credentials::get_credentials))
        .route("/credentials/new", get(credentials::get_credentials))
        .route("/credentials/tokens", post(credentials::post_create))
        .route(
            "/credentials/tokens/{id}/rotate",
            post(credentials::post_rotate),
        )
        .route(
            "/credentials/tokens/{id}/revoke",
            post(credentials::post_revoke),
        )
        .route(
            "/credentials/tokens/{id}/reveal",
            post(credentials::post_reveal),
        )
        .route("/activity", get(activity::get_user_activity))
        .route(
            "/orgs/{org}/tokens",
            get(console_org_tokens::get_tokens).post(console_org_tokens::post_create),
        )
        .route(
            "/orgs/{org}/tokens/new",
            get(console_org_tokens::get_tokens),
        )
        .route(
            "/orgs/{org}/tokens/{id}/rename",
            post(console_org_tokens::post_rename),
        )
        .route(
            "/orgs/{org}/tokens/{id}/rotate",
            post(console_org_tokens::post_rotate),
        )
        .route(
            "/orgs/{org}/tokens/{id}/reveal",
            post(console_org_tokens::post_reveal),
        )
        .route(
            "/orgs/{org}/tokens/{id}/delete",
            get(console_org_tokens::get_delete).post(console_org_tokens::post_delete),
        )
        .route(
            "/orgs/{org}/apps",
            get(apps::get_apps).post(apps::post_create),
        )
        .route(
            "/orgs/{org}/apps/{id}",
            get(apps::get_app).post(apps::post_edit),
        )
        .route("/orgs/{org}/apps/{id}/secrets", post(apps::post_add_secret))
        .route(
            "/orgs/{org}/apps/{id}/secrets/{secret}/revoke",
            get(apps::get_remove_secret).post(apps::post_remove_secret),
        )
        .route("/orgs/{org}/apps/{id}/delete", post(apps::post_delete))
        .route(
            "/orgs/{org}/members",
            get(members::get_members).post(members::post_add),
        )
        .route("/orgs/{org}/members/{user}/role", post(members::post_role))
        .route(
            "/orgs/{org}/members/{user}/remove",
            get(members::get_remove).post(members::post_remove),
        )
        .route("/orgs/{org}/activity", get(activity::get_org_activity))
        // One's own security, in the console (`console/account.rs`).
        .route("/account", get(crate::console::account::get_account))
        .route(
            "/account/password",
            post(crate::console::account::post_password),
        )
        .route(
            "/account/sessions/{id}/end",
            post(crate::console::account::post_end_session),
        )
        .route(
            "/account/apps/{client_id}/revoke",
            post(crate::console::account::post_revoke_app),
        )
        // A forgotten password, in the console (`console/password_reset.rs`).
        .route(
            "/forgot-password",
            get(crate::console::password_reset::get_forgot)
                .post(crate::console::password_reset::post_forgot),
        )
        .route(
            "/reset-password",
            get(crate::console::password_reset::get_reset)
                .post(crate::console::password_reset::post_reset),
        )
        // The cancel link of a token's creation mail: the code is the credential.
        .route(
            "/cancel",
            get(crate::console::cancel::get_cancel).post(crate::console::cancel::post_cancel),
        )
}

/// The middleware every route runs behind, outermost first.
fn with_layers(router: Router, ids: CountingRequestId, traced: bool) -> Router {
    let request_id = HeaderName::from_static(REQUEST_ID);
    // One `.layer()` call with the whole stack (outermost first): each `Router::layer` call
    // would wrap every route in another boxed, cloned service (10–15 % of the CPU of a
    // `/v1/me` request, docs/BENCHMARKS.md).
    let stack = tower::ServiceBuilder::new()
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(SetSensitiveRequestHeadersLayer::new([
            header::AUTHORIZATION,
            header::COOKIE,
        ]))
        .layer(SetRequestIdLayer::new(request_id.clone(), ids))
        .layer(PropagateRequestIdLayer::new(request_id))
        // The request span costs a clock read and a span per request even when nothing
        // would record it: it is there when the log asks for it.
        .option_layer(traced.then(|| {
            tower::ServiceBuilder::new()
                .map_response(|r: Response<_>| r.map(axum::body::Body::new))
                .layer(TraceLayer::new_for_http().make_span_with(request_span))
        }))
        .map_response(|mut response: Response| {
            response_policies(response.headers_mut());
            response
        })
        .layer(tower::layer::layer_fn(|inner| HeaderSizeLimit { inner }))
        .layer(DefaultBodyLimit::max(crate::extract::MAX_BODY));
    router.layer(stack)
}

/// The request span: method, path and version. Not the query string: a client that sends a
/// token there (refused: tokens are read from the `Authorization` header only) must not have it
/// written to the log.
fn request_span(request: &Request<axum::body::Body>) -> tracing::Span {
    tracing::debug_span!(
        "request",
        method = %request.method(),
        path = %request.uri().path(),
        version = ?request.version(),
    )
}

/// An address no route has: a page for the console's addresses and browsers, JSON otherwise.
async fn not_found(State(state): State<AppState>, request: Request<axum::body::Body>) -> Response {
    let (parts, _) = request.into_parts();
    if crate::console::fallback::is_page(&parts.method, parts.uri.path(), &parts.headers) {
        return crate::console::fallback::not_found(&state, parts).await;
    }
    error_response(ErrorCode::NotFound, "no such route")
}

async fn method_not_allowed(
    State(state): State<AppState>,
    request: Request<axum::body::Body>,
) -> Response {
    let (parts, _) = request.into_parts();
    if crate::console::fallback::is_page(&parts.method, parts.uri.path(), &parts.headers) {
        return crate::console::fallback::method_not_allowed(&state, parts).await;
    }
    error_response(
        ErrorCode::MethodNotAllowed,
        "this route does not accept that method",
    )
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use tower::ServiceExt as _;

    use super::*;

    #[tokio::test]
    async fn a_panicking_handler_is_a_generic_500_and_the_server_keeps_serving() {
        async fn boom() -> &'static str {
            panic!("handler bug")
        }
        async fn fine() -> &'static str {
            "fine"
        }
        let app = with_layers(
            Router::new()
                .route("/boom", get(boom))
                .route("/fine", get(fine)),
            CountingRequestId::default(),
            false,
        );
        let req = |path: &str| {
            Request::builder()
                .uri(path)
                .body(Body::empty())
                .unwrap_or_default()
        };
        let res = app
            .clone()
            .oneshot(req("/boom"))
            .await
            .unwrap_or_else(|e| match e {});
        assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = axum::body::to_bytes(res.into_body(), 1 << 16)
            .await
            .unwrap_or_default();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        assert_eq!(body["error"]["code"], "internal_error");
        assert!(
            !body.to_string().contains("handler bug"),
            "the panic message must not leak: {body}"
        );
        let res = app
            .oneshot(req("/fine"))
            .await
            .unwrap_or_else(|e| match e {});
        assert_eq!(res.status(), StatusCode::OK);
    }

    #[tokio::test]
    async fn oversized_headers_are_refused_with_431() {
        async fn fine() -> &'static str {
            "fine"
        }
        let app = with_layers(
            Router::new().route("/fine", get(fine)),
            CountingRequestId::default(),
            false,
        );
        let big = "x".repeat(17 * 1024);
        let req = Request::builder()
            .uri("/fine")
            .header("x-big", big)
            .body(Body::empty())
            .unwrap_or_default();
        let res = app
            .clone()
            .oneshot(req)
            .await
            .unwrap_or_else(|e| match e {});
        assert_eq!(res.status(), StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
        let ok = Request::builder()
            .uri("/fine")
            .header("x-small", "y")
            .body(Body::empty())
            .unwrap_or_default();
        assert_eq!(
            app.oneshot(ok)
                .await
                .unwrap_or_else(|e| match e {})
                .status(),
            StatusCode::OK
        );
    }
}
