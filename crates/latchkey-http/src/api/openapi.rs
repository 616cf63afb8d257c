//! `GET /openapi.json` and `GET /docs` (SPEC 4): the API's description, and a browsable
//! reference served from the binary (no script, no CDN: it works offline).
//!
//! One table, [`OPERATIONS`], describes every route; a unit test reads `router.rs` and fails
//! when a route is missing from it or listed with other methods, so the two cannot drift.
//! Request and response bodies are described in words and in `docs/API.md`; the typed schemas
//! are the next step.

use askama::Template;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use crate::AppState;

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    /// Open to anyone.
    None,
    /// `Authorization: Bearer` with an API token or an OAuth access token.
    Token,
    /// A session: `Authorization: Bearer lkses_…` or the console's cookie.
    Session,
    /// OAuth client authentication (Basic or form).
    Client,
    /// The console's session cookie (pages redirect to `/login` without it).
    Console,
    /// `Authorization: Bearer` with a provisioning credential (SCIM).
    Provisioning,
    /// `Authorization: Bearer` with an operator credential (the back office).
    Operator,
}

impl Auth {
    fn label(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Token => "API token",
            Self::Session => "session",
            Self::Client => "OAuth client",
            Self::Console => "console session",
            Self::Provisioning => "provisioning credential",
            Self::Operator => "operator credential",
        }
    }
}

/// One route and method.
pub struct Operation {
    pub method: &'static str,
    pub path: &'static str,
    pub tag: &'static str,
    pub summary: &'static str,
    pub auth: Auth,
    /// The success status.
    pub status: u16,
    /// `json`, `form` or `none`: the request body.
    pub body: &'static str,
    /// `json`, `html`, `text` or `none`: the success answer.
    pub answer: &'static str,
}

macro_rules! op {
    ($m:literal $p:literal, $tag:literal, $auth:ident, $status:literal, $body:literal -> $answer:literal, $summary:literal) => {
        Operation {
            method: $m,
            path: $p,
            tag: $tag,
            summary: $summary,
            auth: Auth::$auth,
            status: $status,
            body: $body,
            answer: $answer,
        }
    };
}

/// Every route of `router.rs`.
pub const OPERATIONS: &[Operation] = &[
    op!("get" "/healthz", "operations", None, 200, "none" -> "json", "The process is up."),
    op!("get" "/readyz", "operations", None, 200, "none" -> "json", "Storage is reachable (503 otherwise)."),
    op!("get" "/metrics", "operations", None, 200, "none" -> "text", "Prometheus metrics (no secrets, no per-token labels)."),
    op!("get" "/.well-known/jwks.json", "keys", None, 200, "none" -> "json", "The public keys that sign JWT tokens (RFC 7517)."),
    op!("get" "/v1/me", "verification", Token, 200, "none" -> "json", "Who is calling: the token's principal, type, scopes and the organisations it reaches; 401 with a reason otherwise."),
    op!("get" "/v1/forward-auth", "verification", Token, 200, "none" -> "none", "Forward auth for proxies (any method, any path below it): 200 with the Latchkey-* identity headers, 401 with the RFC 6750 challenge, 403 insufficient_scope when a requirement of the query (scope, account, role, kind) is not met."),
    op!("post" "/v1/forward-auth", "verification", Token, 200, "none" -> "none", "Forward auth for proxies (any method, any path below it): 200 with the Latchkey-* identity headers, 401 with the RFC 6750 challenge, 403 insufficient_scope when a requirement of the query (scope, account, role, kind) is not met."),
    op!("put" "/v1/forward-auth", "verification", Token, 200, "none" -> "none", "Forward auth for proxies (any method, any path below it): 200 with the Latchkey-* identity headers, 401 with the RFC 6750 challenge, 403 insufficient_scope when a requirement of the query (scope, account, role, kind) is not met."),
    op!("patch" "/v1/forward-auth", "verification", Token, 200, "none" -> "none", "Forward auth for proxies (any method, any path below it): 200 with the Latchkey-* identity headers, 401 with the RFC 6750 challenge, 403 insufficient_scope when a requirement of the query (scope, account, role, kind) is not met."),
    op!("delete" "/v1/forward-auth", "verification", Token, 200, "none" -> "none", "Forward auth for proxies (any method, any path below it): 200 with the Latchkey-* identity headers, 401 with the RFC 6750 challenge, 403 insufficient_scope when a requirement of the query (scope, account, role, kind) is not met."),
    op!("get" "/v1/forward-auth/{*rest}", "verification", Token, 200, "none" -> "none", "Forward auth for proxies (any method, any path below it): 200 with the Latchkey-* identity headers, 401 with the RFC 6750 challenge, 403 insufficient_scope when a requirement of the query (scope, account, role, kind) is not met."),
    op!("post" "/v1/forward-auth/{*rest}", "verification", Token, 200, "none" -> "none", "Forward auth for proxies (any method, any path below it): 200 with the Latchkey-* identity headers, 401 with the RFC 6750 challenge, 403 insufficient_scope when a requirement of the query (scope, account, role, kind) is not met."),
    op!("put" "/v1/forward-auth/{*rest}", "verification", Token, 200, "none" -> "none", "Forward auth for proxies (any method, any path below it): 200 with the Latchkey-* identity headers, 401 with the RFC 6750 challenge, 403 insufficient_scope when a requirement of the query (scope, account, role, kind) is not met."),
    op!("patch" "/v1/forward-auth/{*rest}", "verification", Token, 200, "none" -> "none", "Forward auth for proxies (any method, any path below it): 200 with the Latchkey-* identity headers, 401 with the RFC 6750 challenge, 403 insufficient_scope when a requirement of the query (scope, account, role, kind) is not met."),
    op!("delete" "/v1/forward-auth/{*rest}", "verification", Token, 200, "none" -> "none", "Forward auth for proxies (any method, any path below it): 200 with the Latchkey-* identity headers, 401 with the RFC 6750 challenge, 403 insufficient_scope when a requirement of the query (scope, account, role, kind) is not met."),
    op!("get" "/v1/forward-auth/", "verification", Token, 200, "none" -> "none", "Forward auth, as /v1/forward-auth."),
    op!("post" "/v1/forward-auth/", "verification", Token, 200, "none" -> "none", "Forward auth, as /v1/forward-auth."),
    op!("put" "/v1/forward-auth/", "verification", Token, 200, "none" -> "none", "Forward auth, as /v1/forward-auth."),
    op!("patch" "/v1/forward-auth/", "verification", Token, 200, "none" -> "none", "Forward auth, as /v1/forward-auth."),
    op!("delete" "/v1/forward-auth/", "verification", Token, 200, "none" -> "none", "Forward auth, as /v1/forward-auth."),
    op!("get" "/v1/invalidations", "verification", Client, 200, "none" -> "text", "Server-sent events: every change as it commits (id = the change log's sequence, resumable with Last-Event-ID; event change or reset), for a client with the introspect permission."),
    op!("post" "/v1/leaks", "governance", None, 200, "json" -> "json", "Report leaked token strings: live ones are revoked and their owners told; the answer is only a count."),
    op!("post" "/v1/token-cancellations", "governance", None, 200, "json" -> "json", "Use the cancel link of a token with an activation delay ({\"code\"})."),
    op!("post" "/v1/sessions", "sessions", None, 201, "json" -> "json", "Sign in with email and password: a session token."),
    op!("delete" "/v1/sessions/current", "sessions", Session, 204, "none" -> "none", "Sign out."),
    op!("get" "/v1/user/tokens", "personal tokens", Session, 200, "none" -> "json", "The signed-in user's tokens (hints, never secrets)."),
    op!("post" "/v1/user/tokens", "personal tokens", Session, 201, "json" -> "json", "Create a personal token (password required); the secret is in this answer only. Honours Idempotency-Key."),
    op!("post" "/v1/user/tokens/revoke-all", "personal tokens", Session, 200, "json" -> "json", "Kill switch: revoke every token and OAuth grant of the user (password required)."),
    op!("get" "/v1/user/tokens/{id}", "personal tokens", Session, 200, "none" -> "json", "One token, with its effective access."),
    op!("patch" "/v1/user/tokens/{id}", "personal tokens", Session, 200, "json" -> "json", "Rename, or set the IP allowlist."),
    op!("post" "/v1/user/tokens/{id}/rotate", "personal tokens", Session, 201, "json" -> "json", "A replacement (secret shown once); the old one keeps working for the grace period or until first use."),
    op!("post" "/v1/user/tokens/{id}/revoke", "personal tokens", Session, 200, "json" -> "json", "Revoke (password required)."),
    op!("post" "/v1/user/tokens/{id}/reveal", "personal tokens", Session, 200, "json" -> "json", "Show the secret again (types with reveal = reauth; password required); 409 otherwise."),
    op!("get" "/v1/user/events", "audit", Session, 200, "none" -> "json", "The user's audit log, newest first (Link header for the next page); narrowed by action=, subject=, actor=."),
    op!("get" "/v1/orgs", "organisations", Session, 200, "none" -> "json", "The user's organisations and roles."),
    op!("get" "/v1/orgs/{org}/members", "organisations", Session, 200, "none" -> "json", "Members and roles (admins)."),
    op!("post" "/v1/orgs/{org}/members", "organisations", Session, 201, "json" -> "json", "Add a member with a role (admins)."),
    op!("patch" "/v1/orgs/{org}/members/{user}", "organisations", Session, 200, "json" -> "json", "Change a member's role (admins)."),
    op!("delete" "/v1/orgs/{org}/members/{user}", "organisations", Session, 204, "none" -> "none", "Remove a member (admins)."),
    op!("get" "/v1/orgs/{org}/tokens", "organisation tokens", Session, 200, "none" -> "json", "The organisation's tokens (admins)."),
    op!("post" "/v1/orgs/{org}/tokens", "organisation tokens", Session, 201, "json" -> "json", "Create a token of a type (admins); the secret is in this answer only. Honours Idempotency-Key."),
    op!("post" "/v1/orgs/{org}/tokens/revoke-all", "organisation tokens", Session, 200, "json" -> "json", "Kill switch: every token (of one type, if given) and the clients' grants (admins)."),
    op!("get" "/v1/orgs/{org}/tokens/{id}", "organisation tokens", Session, 200, "none" -> "json", "One token, with its effective access (admins)."),
    op!("patch" "/v1/orgs/{org}/tokens/{id}", "organisation tokens", Session, 200, "json" -> "json", "Rename, or set the IP allowlist (admins)."),
    op!("delete" "/v1/orgs/{org}/tokens/{id}", "organisation tokens", Session, 200, "none" -> "json", "Delete: revoked at once, the record stays for audit (admins)."),
    op!("post" "/v1/orgs/{org}/tokens/{id}/rotate", "organisation tokens", Session, 201, "json" -> "json", "A replacement with a grace period or until first use (admins)."),
    op!("post" "/v1/orgs/{org}/tokens/{id}/reveal", "organisation tokens", Session, 200, "json" -> "json", "Show the secret again (admin's password required)."),
    op!("get" "/v1/orgs/{org}/events", "audit", Session, 200, "none" -> "json", "The organisation's audit log (admins)."),
    op!("get" "/v1/orgs/{org}/clients", "OAuth clients", Session, 200, "none" -> "json", "The organisation's OAuth clients (admins)."),
    op!("post" "/v1/orgs/{org}/clients", "OAuth clients", Session, 201, "json" -> "json", "Create a client; a confidential one gets its first secret, shown once (admins)."),
    op!("patch" "/v1/orgs/{org}/clients/{id}", "OAuth clients", Session, 200, "json" -> "json", "Change name, grants, redirect URIs or scopes, or take introspection away (admins; an operator grants it)."),
    op!("delete" "/v1/orgs/{org}/clients/{id}", "OAuth clients", Session, 204, "none" -> "none", "Delete a client: its secrets and tokens stop working (admins)."),
    op!("post" "/v1/orgs/{org}/clients/{id}/secrets", "OAuth clients", Session, 201, "none" -> "json", "A new secret, shown once; at most two active (admins)."),
    op!("delete" "/v1/orgs/{org}/clients/{id}/secrets/{secret_id}", "OAuth clients", Session, 204, "none" -> "none", "Revoke a secret (admins)."),
    op!("get" "/.well-known/oauth-authorization-server", "OAuth2", None, 200, "none" -> "json", "Authorization server metadata (RFC 8414)."),
    op!("get" "/oauth2/authorize", "OAuth2", None, 200, "none" -> "html", "Authorization endpoint: sign-in and consent pages, or a redirect with an error."),
    op!("post" "/oauth2/authorize", "OAuth2", Console, 303, "form" -> "none", "The consent decision (CSRF token and Origin checked)."),
    op!("post" "/oauth2/login", "OAuth2", None, 303, "form" -> "none", "Sign in from the authorization page."),
    op!("post" "/oauth2/token", "OAuth2", Client, 200, "form" -> "json", "Token endpoint: client_credentials, authorization_code (PKCE S256), refresh_token (RFC 6749)."),
    op!("post" "/oauth2/introspect", "OAuth2", Client, 200, "form" -> "json", "Introspection of any token kind (RFC 7662), for clients allowed to."),
    op!("post" "/oauth2/revoke", "OAuth2", Client, 200, "form" -> "json", "Revocation of access and refresh tokens (RFC 7009); answers {}."),
    op!("get" "/openapi.json", "reference", None, 200, "none" -> "json", "This document."),
    op!("get" "/docs", "reference", None, 200, "none" -> "html", "A browsable reference, served offline."),
    op!("get" "/assets/console.css", "console", None, 200, "none" -> "text", "The console's stylesheet."),
    op!("get" "/assets/console.js", "console", None, 200, "none" -> "text", "The console's copy button."),
    op!("get" "/assets/favicon.svg", "console", None, 200, "none" -> "text", "The console's icon (SVG)."),
    op!("get" "/favicon.ico", "console", None, 200, "none" -> "text", "The same icon, where browsers look for it."),
    op!("get" "/", "console", Console, 303, "none" -> "none", "The console's home: API credentials, or the sign-in."),
    op!("get" "/login", "console", None, 200, "none" -> "html", "Sign-in page (?next= returns to a page of this site)."),
    op!("post" "/login", "console", None, 303, "form" -> "none", "Sign in (login CSRF token and Origin checked)."),
    op!("post" "/logout", "console", Console, 303, "form" -> "none", "Sign out."),
    op!("get" "/sso/start", "console", None, 303, "none" -> "none", "Single sign-on: to the OpenID provider to sign in (?next= returns to a page of this site); 404 without [sso], 503 when the provider cannot be reached."),
    op!("post" "/sso/reauth", "console", Console, 303, "form" -> "none", "Single sign-on: to the provider to confirm who this session's person is (max_age=0, prompt=login)."),
    op!("get" "/sso/callback", "console", None, 303, "none" -> "none", "Single sign-on: where the provider sends the person back (?code&state[&iss], or ?error); a refusal is a 400 page."),
    op!("get" "/credentials", "console", Console, 200, "none" -> "html", "API credentials: the personal tokens."),
    op!("get" "/credentials/new", "console", Console, 200, "none" -> "html", "The same page, the creation form pre-filled (?name=&type=)."),
    op!("post" "/credentials/tokens", "console", Console, 200, "form" -> "html", "Generate a personal token: the copy-once page."),
    op!("post" "/credentials/tokens/{id}/rotate", "console", Console, 200, "form" -> "html", "Rotate: the replacement's copy-once page."),
    op!("post" "/credentials/tokens/{id}/revoke", "console", Console, 303, "form" -> "none", "Revoke (password)."),
    op!("post" "/credentials/tokens/{id}/reveal", "console", Console, 200, "form" -> "html", "Reveal (password)."),
    op!("get" "/activity", "console", Console, 200, "none" -> "html", "The user's audit log."),
    op!("get" "/orgs/{org}/tokens", "console", Console, 200, "none" -> "html", "The organisation's tokens (admins)."),
    op!("post" "/orgs/{org}/tokens", "console", Console, 200, "form" -> "html", "Create a token: the copy-once page."),
    op!("get" "/orgs/{org}/tokens/new", "console", Console, 200, "none" -> "html", "The tokens page with the creation form pre-filled."),
    op!("post" "/orgs/{org}/tokens/{id}/rename", "console", Console, 303, "form" -> "none", "Rename."),
    op!("post" "/orgs/{org}/tokens/{id}/rotate", "console", Console, 200, "form" -> "html", "Rotate with a grace choice: the copy-once page."),
    op!("post" "/orgs/{org}/tokens/{id}/reveal", "console", Console, 200, "form" -> "html", "Reveal (password)."),
    op!("get" "/orgs/{org}/tokens/{id}/delete", "console", Console, 200, "none" -> "html", "Confirm a deletion by typing `Delete token`."),
    op!("post" "/orgs/{org}/tokens/{id}/delete", "console", Console, 303, "form" -> "none", "Delete (with the typed phrase)."),
    op!("get" "/orgs/{org}/apps", "console", Console, 200, "none" -> "html", "The organisation's apps (admins)."),
    op!("post" "/orgs/{org}/apps", "console", Console, 200, "form" -> "html", "Create an app: its secret's copy-once page."),
    op!("get" "/orgs/{org}/apps/{id}", "console", Console, 200, "none" -> "html", "One app: settings and secrets."),
    op!("post" "/orgs/{org}/apps/{id}", "console", Console, 303, "form" -> "none", "Save redirect URIs and scopes."),
    op!("post" "/orgs/{org}/apps/{id}/secrets", "console", Console, 200, "form" -> "html", "Add a secret: the copy-once page."),
    op!("get" "/orgs/{org}/apps/{id}/secrets/{secret}/revoke", "console", Console, 200, "none" -> "html", "Confirm removing a secret (its last use; a warning for the only one)."),
    op!("post" "/orgs/{org}/apps/{id}/secrets/{secret}/revoke", "console", Console, 303, "form" -> "none", "Remove a secret."),
    op!("post" "/orgs/{org}/apps/{id}/delete", "console", Console, 303, "form" -> "none", "Delete the app (with its name typed)."),
    op!("get" "/orgs/{org}/members", "console", Console, 200, "none" -> "html", "The organisation's members (admins)."),
    op!("post" "/orgs/{org}/members", "console", Console, 303, "form" -> "none", "Add a person by email, with a role."),
    op!("post" "/orgs/{org}/members/{user}/role", "console", Console, 303, "form" -> "none", "Change a member's role."),
    op!("get" "/orgs/{org}/members/{user}/remove", "console", Console, 200, "none" -> "html", "Confirm removing a member."),
    op!("post" "/orgs/{org}/members/{user}/remove", "console", Console, 303, "form" -> "none", "Remove a member (or leave)."),
    op!("get" "/orgs/{org}/activity", "console", Console, 200, "none" -> "html", "The organisation's audit log (admins)."),
    op!("get" "/cancel", "console", None, 200, "none" -> "html", "The cancel link's page (?code=): names the pending token."),
    op!("post" "/cancel", "console", None, 200, "form" -> "html", "Cancel the pending token (the code is the credential)."),
    op!("post" "/v1/password-resets", "account", None, 202, "json" -> "json", "Ask for a password reset link by mail ({email}): 202 whether the address is known or not."),
    op!("post" "/v1/password-resets/complete", "account", None, 204, "json" -> "none", "Choose a new password with the mailed code ({code, new_password}): every session ends."),
    op!("get" "/account", "console", Console, 200, "none" -> "html", "One's account: the password, the sessions, the apps one allowed."),
    op!("post" "/account/password", "console", Console, 303, "form" -> "none", "Change one's password: every other session ends."),
    op!("post" "/account/sessions/{id}/end", "console", Console, 303, "form" -> "none", "End one of one's sessions (this one: sign out)."),
    op!("post" "/account/apps/{client_id}/revoke", "console", Console, 303, "form" -> "none", "Withdraw one's consent to an app."),
    op!("get" "/forgot-password", "console", None, 200, "none" -> "html", "Ask for a password reset link."),
    op!("post" "/forgot-password", "console", None, 200, "form" -> "html", "Mail the link (the same answer for any address)."),
    op!("get" "/reset-password", "console", None, 200, "none" -> "html", "The mailed link's page (?code=): choose a new password."),
    op!("post" "/reset-password", "console", None, 200, "form" -> "html", "Change the password (once); every session ends."),
    // The person's own security (api/account.rs).
    op!("post" "/v1/user/password", "account", Session, 200, "json" -> "json", "Change one's password ({current_password, new_password}): every session ends; the answer holds the new one."),
    op!("get" "/v1/user/sessions", "account", Session, 200, "none" -> "json", "One's live sessions (current: the one asking)."),
    op!("delete" "/v1/user/sessions/{id}", "account", Session, 204, "none" -> "none", "End one of one's sessions."),
    op!("get" "/v1/user/apps", "account", Session, 200, "none" -> "json", "The OAuth apps one has consented to."),
    op!("delete" "/v1/user/apps/{client_id}", "account", Session, 204, "none" -> "none", "Withdraw one's consent to one app: its tokens stop at once."),
    // The back office (api/admin.rs): what the CLI does to people, organisations and tokens.
    op!("get" "/v1/admin/users", "operator", Operator, 200, "none" -> "json", "One person by email (?email=)."),
    op!("post" "/v1/admin/users", "operator", Operator, 201, "json" -> "json", "Create a person ({email, password, operator}), as latchkey user create."),
    op!("get" "/v1/admin/users/{id}", "operator", Operator, 200, "none" -> "json", "One person."),
    op!("patch" "/v1/admin/users/{id}", "operator", Operator, 200, "json" -> "json", "Disable a person or switch their tokens off ({disabled, api_tokens_enabled}), in force at once."),
    op!("post" "/v1/admin/users/{id}/revoke-all", "operator", Operator, 200, "none" -> "json", "The kill switch for a person: every token revoked."),
    op!("get" "/v1/admin/orgs", "operator", Operator, 200, "none" -> "json", "Every organisation."),
    op!("post" "/v1/admin/orgs", "operator", Operator, 201, "json" -> "json", "Create an organisation ({name, features}), as latchkey org create."),
    op!("get" "/v1/admin/orgs/{id}", "operator", Operator, 200, "none" -> "json", "One organisation."),
    op!("patch" "/v1/admin/orgs/{id}", "operator", Operator, 200, "json" -> "json", "Features and the tokens switch ({add_features, remove_features, api_tokens_enabled}), in force at once."),
    op!("post" "/v1/admin/orgs/{id}/revoke-all", "operator", Operator, 200, "json" -> "json", "The kill switch for an organisation ({type} to revoke only one type)."),
    op!("get" "/v1/admin/orgs/{id}/members", "operator", Operator, 200, "none" -> "json", "The members with their roles."),
    op!("post" "/v1/admin/orgs/{id}/members", "operator", Operator, 200, "json" -> "json", "Add a member or change their role ({email, role}), as latchkey org add-member."),
    op!("delete" "/v1/admin/orgs/{id}/members/{user}", "operator", Operator, 204, "none" -> "none", "Remove a member, as latchkey org remove-member."),
    op!("get" "/v1/admin/tokens", "operator", Operator, 200, "none" -> "json", "Tokens (never secrets), newest first: ?user=, ?org=, ?type=, ?limit=."),
    op!("post" "/v1/admin/tokens/{id}/revoke", "operator", Operator, 200, "none" -> "json", "Revoke any token, in force at once."),
    // SCIM 2.0 (scim/mod.rs): SCIM's own JSON and errors, application/scim+json.
    op!("get" "/scim/v2/ServiceProviderConfig", "SCIM", Provisioning, 200, "none" -> "json", "What this SCIM server supports (RFC 7644 §4)."),
    op!("get" "/scim/v2/ResourceTypes", "SCIM", Provisioning, 200, "none" -> "json", "The resource types (User, Group)."),
    op!("get" "/scim/v2/ResourceTypes/{id}", "SCIM", Provisioning, 200, "none" -> "json", "One resource type."),
    op!("get" "/scim/v2/Schemas", "SCIM", Provisioning, 200, "none" -> "json", "The schemas: User, Group and the roles extension."),
    op!("get" "/scim/v2/Schemas/{id}", "SCIM", Provisioning, 200, "none" -> "json", "One schema."),
    op!("get" "/scim/v2/Users", "SCIM", Provisioning, 200, "none" -> "json", "People, with filter, startIndex, count, attributes and excludedAttributes."),
    op!("post" "/scim/v2/Users", "SCIM", Provisioning, 201, "json" -> "json", "Provision a person (userName is the email)."),
    op!("post" "/scim/v2/Users/.search", "SCIM", Provisioning, 200, "json" -> "json", "A list whose parameters are in the body (RFC 7644 §3.4.3)."),
    op!("post" "/scim/v2/.search", "SCIM", Provisioning, 501, "json" -> "json", "A search across resource types at once: not supported (501); use /Users/.search."),
    op!("get" "/scim/v2/Groups", "SCIM", Provisioning, 200, "none" -> "json", "Organisations SCIM made, with filter, startIndex, count, attributes and excludedAttributes."),
    op!("post" "/scim/v2/Groups", "SCIM", Provisioning, 201, "json" -> "json", "Provision an organisation with its members (roles through the latchkey extension)."),
    op!("get" "/scim/v2/Groups/{id}", "SCIM", Provisioning, 200, "none" -> "json", "One organisation with its members and roles."),
    op!("put" "/scim/v2/Groups/{id}", "SCIM", Provisioning, 200, "json" -> "json", "The organisation as the provider now describes it; members obeyed on the next request."),
    op!("patch" "/scim/v2/Groups/{id}", "SCIM", Provisioning, 200, "json" -> "json", "PATCH members and roles as Okta and Entra ID send it."),
    op!("delete" "/scim/v2/Groups/{id}", "SCIM", Provisioning, 204, "none" -> "none", "Delete: switched off (tokens refused at once) and emptied; kept for the audit log."),
    op!("get" "/scim/v2/Users/{id}", "SCIM", Provisioning, 200, "none" -> "json", "One person, with an ETag."),
    op!("put" "/scim/v2/Users/{id}", "SCIM", Provisioning, 200, "json" -> "json", "The person as the provider now describes them (If-Match honoured)."),
    op!("patch" "/scim/v2/Users/{id}", "SCIM", Provisioning, 200, "json" -> "json", "PATCH as Okta and Entra ID send it; active=false disables the person at once."),
    op!("delete" "/scim/v2/Users/{id}", "SCIM", Provisioning, 204, "none" -> "none", "Delete: disabled, out of every organisation, email freed; kept for the audit log."),
];

fn parameters(path: &str) -> Vec<Value> {
    path.split('/')
        .filter_map(|segment| segment.strip_prefix('{')?.strip_suffix('}'))
        .map(|name| json!({ "name": name, "in": "path", "required": true, "schema": { "type": "string" } }))
        .collect()
}

fn operation_json(op: &Operation) -> Value {
    let mut o = Map::new();
    o.insert("tags".into(), json!([op.tag]));
    o.insert("summary".into(), json!(op.summary));
    o.insert(
        "operationId".into(),
        json!(format!(
            "{}{}",
            op.method,
            op.path.replace(['/', '{', '}', '.', '-'], "_")
        )),
    );
    let params = parameters(op.path);
    if !params.is_empty() {
        o.insert("parameters".into(), Value::Array(params));
    }
    let security = match op.auth {
        Auth::None => json!([]),
        Auth::Token => json!([{ "bearer": [] }]),
        Auth::Session => json!([{ "bearer": [] }, { "session_cookie": [] }]),
        Auth::Client => json!([{ "client_basic": [] }, {}]),
        Auth::Console => json!([{ "session_cookie": [] }]),
        Auth::Provisioning => json!([{ "provisioning": [] }]),
        Auth::Operator => json!([{ "operator": [] }]),
    };
    o.insert("security".into(), security);
    match op.body {
        "json" => {
            o.insert("requestBody".into(), json!({ "required": true, "content": { "application/json": { "schema": { "type": "object" } } } }));
        }
        "form" => {
            o.insert("requestBody".into(), json!({ "required": true, "content": { "application/x-www-form-urlencoded": { "schema": { "type": "object" } } } }));
        }
        _ => {}
    }
    let content = match op.answer {
        "json" => json!({ "application/json": { "schema": { "type": "object" } } }),
        "html" => json!({ "text/html": { "schema": { "type": "string" } } }),
        "text" => json!({ "text/plain": { "schema": { "type": "string" } } }),
        _ => Value::Null,
    };
    let mut success = json!({ "description": "success" });
    if !content.is_null() {
        success["content"] = content;
    }
    let mut responses = Map::new();
    responses.insert(op.status.to_string(), success);
    responses.insert(
        "4XX".into(),
        json!({ "description": "refused: the error envelope (RFC 6749 errors on /oauth2/*, pages on the console)", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } }),
    );
    o.insert("responses".into(), Value::Object(responses));
    Value::Object(o)
}

/// The OpenAPI 3.1 document, with `public_url` as the server.
pub fn document(public_url: &str) -> Value {
    let mut paths = Map::new();
    for op in OPERATIONS {
        let entry = paths
            .entry(op.path.to_owned())
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(methods) = entry {
            methods.insert(op.method.to_owned(), operation_json(op));
        }
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Latchkey",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Self-hosted API access tokens: personal and organisation tokens, OAuth2, verification. Conventions: docs/API-CONVENTIONS.md; bodies: docs/API.md.",
        },
        "servers": [{ "url": public_url }],
        "paths": paths,
        "components": {
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {
                        "error": {
                            "type": "object",
                            "required": ["code", "message"],
                            "properties": {
                                "code": { "type": "string", "description": "stable, snake_case" },
                                "message": { "type": "string" },
                            },
                        },
                    },
                },
            },
            "securitySchemes": {
                "bearer": { "type": "http", "scheme": "bearer", "description": "An API token, an OAuth access token, or (management routes) a session token" },
                "session_cookie": { "type": "apiKey", "in": "cookie", "name": "latchkey_session" },
                "client_basic": { "type": "http", "scheme": "basic", "description": "OAuth client id and secret (or client_id/client_secret in the form)" },
                "provisioning": { "type": "http", "scheme": "bearer", "description": "A provisioning credential (latchkey provisioning create), for SCIM" },
                "operator": { "type": "http", "scheme": "bearer", "description": "An operator credential (latchkey operator-key create), for /v1/admin" },
            },
        },
    })
}

/// `GET /openapi.json`.
pub async fn get_openapi(State(state): State<AppState>) -> Response {
    // Built per request (a few hundred microseconds, a reference page): no cache to go stale.
    let body = serde_json::to_vec_pretty(&document(&state.service.settings().public_url))
        .unwrap_or_default();
    let mut response = (StatusCode::OK, body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

pub struct DocRow {
    pub method: String,
    pub path: &'static str,
    pub summary: &'static str,
    pub auth: &'static str,
    pub status: u16,
}

pub struct DocGroup {
    pub tag: &'static str,
    pub anchor: String,
    pub rows: Vec<DocRow>,
}

#[derive(Template)]
#[template(path = "docs.html")]
pub struct DocsPage {
    pub version: &'static str,
    pub groups: Vec<DocGroup>,
}

/// `GET /docs`: every operation, grouped, in one page.
pub async fn get_docs() -> Response {
    let mut groups: Vec<DocGroup> = Vec::new();
    for op in OPERATIONS {
        let row = DocRow {
            method: op.method.to_uppercase(),
            path: op.path,
            summary: op.summary,
            auth: op.auth.label(),
            status: op.status,
        };
        match groups.iter_mut().find(|g| g.tag == op.tag) {
            Some(group) => group.rows.push(row),
            None => groups.push(DocGroup {
                tag: op.tag,
                anchor: op.tag.replace(' ', "-"),
                rows: vec![row],
            }),
        }
    }
    let page = DocsPage {
        version: env!("CARGO_PKG_VERSION"),
        groups,
    };
    crate::pages::render(StatusCode::OK, &page)
}

#[cfg(test)]
mod tests {
    use super::OPERATIONS;

    /// `(path, methods)` of every `.route(…)` in router.rs.
    /// The routes of `router.rs` and of SCIM's router (`scim/mod.rs`), without SCIM's
    /// catch-all for unknown paths (its own 404, not an operation).
    fn routes_in_router() -> Vec<(String, Vec<String>)> {
        let mut out = routes_in(include_str!("../router.rs"), "fn routes(", "fn with_layers");
        out.extend(
            routes_in(
                include_str!("../scim/mod.rs"),
                "pub fn routes()",
                "async fn unknown",
            )
            .into_iter()
            .filter(|(path, _)| path != "/scim/v2" && path != "/scim/v2/{*rest}"),
        );
        out
    }

    fn routes_in(source: &str, from: &str, to: &str) -> Vec<(String, Vec<String>)> {
        let start = source.find(from).unwrap_or(0);
        let end = source.find(to).unwrap_or(source.len());
        let body = &source[start..end];
        let mut out = Vec::new();
        let mut rest = body;
        while let Some(i) = rest.find(".route(") {
            let after = &rest[i + ".route(".len()..];
            let mut depth = 1;
            let mut end = 0;
            for (j, c) in after.char_indices() {
                match c {
                    '(' => depth += 1,
                    ')' => depth -= 1,
                    _ => {}
                }
                if depth == 0 {
                    end = j;
                    break;
                }
            }
            let args = &after[..end];
            let path = args.split('"').nth(1).unwrap_or_default().to_owned();
            // `any(` routes every method (forward auth).
            let methods = ["get", "post", "patch", "delete", "put"]
                .iter()
                .filter(|m| {
                    args.contains("any(")
                        || args.match_indices(&format!("{m}(")).any(|(k, _)| {
                            k == 0
                                || args[..k]
                                    .chars()
                                    .last()
                                    .is_some_and(|c| !c.is_alphanumeric() && c != '_')
                        })
                })
                .map(|m| (*m).to_owned())
                .collect();
            out.push((path, methods));
            rest = &after[end..];
        }
        out
    }

    #[test]
    fn every_route_is_described_with_its_methods() {
        let routes = routes_in_router();
        assert!(routes.len() > 50, "parsed {} routes", routes.len());
        for (path, methods) in &routes {
            let mut described: Vec<String> = OPERATIONS
                .iter()
                .filter(|o| o.path == path)
                .map(|o| o.method.to_owned())
                .collect();
            described.sort();
            let mut methods = methods.clone();
            methods.sort();
            assert_eq!(described, methods, "{path}");
        }
        for op in OPERATIONS {
            assert!(
                routes.iter().any(|(p, _)| p == op.path),
                "{} is described but not routed",
                op.path
            );
        }
    }

    #[test]
    fn the_document_is_openapi_with_every_path() {
        let doc = super::document("http://127.0.0.1:8080");
        assert_eq!(doc["openapi"], "3.1.0");
        assert!(doc["paths"]["/v1/user/tokens/{id}"]["get"]["parameters"][0]["name"] == "id");
    }
}
