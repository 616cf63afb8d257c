//! SCIM 2.0 (RFC 7643/7644) at `/scim/v2`, for the platform's identity provider (SPEC 9):
//! authenticated by a provisioning credential, answered in SCIM's own JSON and error shape.
//! Every change calls the same service functions as the API and the CLI
//! (`latchkey_service::provisioning`).

mod discovery;
mod groups;
mod users;

use axum::Router;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use latchkey_core::scim::ScimError;
use latchkey_service::{Caller, ErrorCode, ServiceError};
use serde_json::{Value, json};

use crate::AppState;
use crate::error::{ApiError, status_of};
use crate::extract::{Bearer, bearer, peer_ip};

pub const ERROR_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:Error";
const LIST_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
/// SCIM's media type (RFC 7644 §3.1); `application/json` is accepted too.
const SCIM_JSON: &str = "application/scim+json";
/// At most this many resources in one page (`count` above it is lowered, RFC 7644 §3.4.2.4).
pub const MAX_PAGE: u32 = 200;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/scim/v2/ServiceProviderConfig",
            get(discovery::service_provider_config),
        )
        .route("/scim/v2/ResourceTypes", get(discovery::resource_types))
        .route("/scim/v2/ResourceTypes/{id}", get(discovery::resource_type))
        .route("/scim/v2/Schemas", get(discovery::schemas))
        .route("/scim/v2/Schemas/{id}", get(discovery::schema))
        .route(
            "/scim/v2/Users",
            get(users::list_users).post(users::create_user),
        )
        .route("/scim/v2/Users/.search", post(users::search_users))
        // A search across resource types at once is not supported (RFC 7644 §3.4.3 allows it
        // to be answered 501): search /Users/.search or list /Groups.
        .route("/scim/v2/.search", post(not_implemented))
        .route(
            "/scim/v2/Groups",
            get(groups::list_groups).post(groups::create_group),
        )
        .route(
            "/scim/v2/Groups/{id}",
            get(groups::get_group)
                .put(groups::replace_group)
                .patch(groups::patch_group)
                .delete(groups::delete_group),
        )
        .route(
            "/scim/v2/Users/{id}",
            get(users::get_user)
                .put(users::replace_user)
                .patch(users::patch_user)
                .delete(users::delete_user),
        )
        .route("/scim/v2", axum::routing::any(unknown))
        .route("/scim/v2/{*rest}", axum::routing::any(unknown))
}

/// What this server does not do, in SCIM's shape.
async fn not_implemented() -> ScimFailure {
    ScimFailure::new(
        StatusCode::NOT_IMPLEMENTED,
        None,
        "searching several resource types at once is not supported: use /Users/.search",
    )
}

/// Anything else under `/scim/v2`: SCIM's own `404`.
async fn unknown() -> ScimFailure {
    ScimFailure::not_found()
}

/// A SCIM answer: the body as `application/scim+json`.
pub fn scim_json(status: StatusCode, body: &Value) -> Response {
    let mut response = (status, body.to_string()).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(SCIM_JSON));
    response
}

/// A list answer (RFC 7644 §3.4.2): one page of `resources` from the 1-based `start`, of
/// `total` in all.
pub fn list_response(start: u64, total: u64, resources: Vec<Value>) -> Response {
    scim_json(
        StatusCode::OK,
        &json!({
            "schemas": [LIST_SCHEMA],
            "totalResults": total,
            "startIndex": start,
            "itemsPerPage": resources.len(),
            "Resources": resources,
        }),
    )
}

/// A resource body (POST, PUT, or the result of a PATCH) as the object it must be.
pub fn body_object(body: &Value) -> ScimResult<&serde_json::Map<String, Value>> {
    match body {
        Value::Object(object) => Ok(object),
        _ => Err(ScimFailure::new(
            StatusCode::BAD_REQUEST,
            Some("invalidSyntax"),
            "the body must be a JSON object",
        )),
    }
}

/// The value of attribute `name`, compared case-insensitively (SCIM attribute names are).
pub fn attr_value<'a>(object: &'a serde_json::Map<String, Value>, name: &str) -> Option<&'a Value> {
    object
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
}

/// `externalId`: absent, `null`, or text of at most 256 bytes.
pub fn external_id_of(object: &serde_json::Map<String, Value>) -> ScimResult<Option<String>> {
    match attr_value(object, "externalId") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.len() <= 256 => Ok(Some(s.clone())),
        Some(_) => Err(ScimFailure::invalid_value(
            "externalId must be text of at most 256 bytes",
        )),
    }
}

/// An error in SCIM's shape (RFC 7644 §3.12).
pub struct ScimFailure {
    status: StatusCode,
    scim_type: Option<&'static str>,
    detail: String,
    /// `Retry-After` of a `429` or a `503`, as the API would send it.
    retry_after: Option<HeaderValue>,
}

pub type ScimResult<T> = Result<T, ScimFailure>;

impl ScimFailure {
    pub fn new(
        status: StatusCode,
        scim_type: Option<&'static str>,
        detail: impl Into<String>,
    ) -> Self {
        Self {
            status,
            scim_type,
            detail: detail.into(),
            retry_after: None,
        }
    }
    pub fn invalid_value(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, Some("invalidValue"), detail)
    }
    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, None, "no such resource")
    }
}

impl From<ScimError> for ScimFailure {
    fn from(e: ScimError) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            Some(e.scim_type.as_str()),
            e.detail,
        )
    }
}

impl From<ServiceError> for ScimFailure {
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::Client { code, message } => {
                let scim_type = match code {
                    ErrorCode::Conflict => Some("uniqueness"),
                    ErrorCode::InvalidRequest => Some("invalidValue"),
                    _ => None,
                };
                Self::new(status_of(code), scim_type, message)
            }
            other => {
                // Logged and made generic by the one mapping of the API, whose status and
                // `Retry-After` are kept.
                let response = ApiError(other).into_response();
                let mut failure = Self::new(
                    response.status(),
                    None,
                    "the request could not be completed",
                );
                failure.retry_after = response.headers().get(header::RETRY_AFTER).cloned();
                failure
            }
        }
    }
}

impl IntoResponse for ScimFailure {
    fn into_response(self) -> Response {
        let mut body = json!({
            "schemas": [ERROR_SCHEMA],
            "status": self.status.as_u16().to_string(),
            "detail": self.detail,
        });
        if let Some(scim_type) = self.scim_type {
            body["scimType"] = json!(scim_type);
        }
        let mut response = scim_json(self.status, &body);
        if let Some(retry_after) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, retry_after);
        }
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"latchkey-scim\""),
            );
        }
        response
    }
}

/// The SCIM client, authenticated by its provisioning credential (looked up on every request:
/// a revoked credential is refused from the very next one).
pub struct Provisioner(pub Caller);

impl FromRequestParts<AppState> for Provisioner {
    type Rejection = ScimFailure;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> ScimResult<Self> {
        let ip = peer_ip(parts, &state.trusted_proxies);
        let Bearer::Token(secret) = bearer(&parts.headers) else {
            return Err(ScimFailure::new(
                StatusCode::UNAUTHORIZED,
                None,
                "a provisioning credential is required (Authorization: Bearer)",
            ));
        };
        let caller = state
            .service
            .authenticate_platform(latchkey_store::CredentialKind::Provisioning, secret, ip)
            .await?;
        Ok(Self(caller))
    }
}

/// The query string as `T`, a malformed one answered in SCIM's shape.
pub struct ScimQuery<T>(pub T);

impl<T: serde::de::DeserializeOwned> FromRequestParts<AppState> for ScimQuery<T> {
    type Rejection = ScimFailure;

    async fn from_request_parts(parts: &mut Parts, _state: &AppState) -> ScimResult<Self> {
        serde_urlencoded::from_str(parts.uri.query().unwrap_or_default())
            .map(Self)
            .map_err(|_| {
                ScimFailure::new(
                    StatusCode::BAD_REQUEST,
                    Some("invalidValue"),
                    "the query string is not valid (startIndex and count are integers)",
                )
            })
    }
}

/// A JSON request body (`application/scim+json` or `application/json`), at most 256 KiB.
pub async fn json_body(headers: &HeaderMap, body: axum::body::Body) -> ScimResult<Value> {
    let media = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase());
    if !matches!(media.as_deref(), Some(SCIM_JSON | "application/json")) {
        return Err(ScimFailure::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            None,
            "the body must be application/scim+json",
        ));
    }
    let bytes = crate::extract::body_bytes(body, crate::extract::MAX_BODY)
        .await
        .map_err(|e| match e {
            crate::extract::BodyError::TooLarge => ScimFailure::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                None,
                "the request body is too large",
            ),
            crate::extract::BodyError::Unreadable => ScimFailure::new(
                StatusCode::BAD_REQUEST,
                Some("invalidSyntax"),
                "the request body could not be read",
            ),
        })?;
    serde_json::from_slice(&bytes).map_err(|e| {
        ScimFailure::new(
            StatusCode::BAD_REQUEST,
            Some("invalidSyntax"),
            format!(
                "the body is not JSON (line {}, column {})",
                e.line(),
                e.column()
            ),
        )
    })
}

/// `If-Match` (RFC 7644 §3.14): a version other than the current one is `412`.
pub fn check_if_match(headers: &HeaderMap, etag: &str) -> ScimResult<()> {
    let Some(given) = headers.get(header::IF_MATCH) else {
        return Ok(());
    };
    let given = given.to_str().unwrap_or_default();
    let matches = given.split(',').map(str::trim).any(|tag| {
        tag == "*" || tag == etag || tag.trim_start_matches("W/") == etag.trim_start_matches("W/")
    });
    if matches {
        Ok(())
    } else {
        Err(ScimFailure::new(
            StatusCode::PRECONDITION_FAILED,
            None,
            "the resource has changed (If-Match)",
        ))
    }
}
