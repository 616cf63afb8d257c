//! SCIM's discovery endpoints (RFC 7644 §4): what this server supports, its resource types and
//! their schemas. Provisioning tools and checkers read them before anything else.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};

use super::users::USER_SCHEMA;
use super::{LIST_SCHEMA, MAX_PAGE, Provisioner, ScimFailure, ScimResult, scim_json};
use crate::AppState;
use crate::extract::Path;

fn meta(state: &AppState, kind: &str, path: &str) -> Value {
    json!({
        "resourceType": kind,
        "location": format!("{}/scim/v2/{path}", state.service.settings().public_url),
    })
}

fn list(resources: Vec<Value>) -> Response {
    scim_json(
        StatusCode::OK,
        &json!({
            "schemas": [LIST_SCHEMA],
            "totalResults": resources.len(),
            "startIndex": 1,
            "itemsPerPage": resources.len(),
            "Resources": resources,
        }),
    )
}

pub async fn service_provider_config(
    State(state): State<AppState>,
    Provisioner(_): Provisioner,
) -> Response {
    scim_json(
        StatusCode::OK,
        &json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
            "documentationUri": format!("{}/docs", state.service.settings().public_url),
            "patch": { "supported": true },
            "bulk": { "supported": false, "maxOperations": 0, "maxPayloadSize": 0 },
            "filter": { "supported": true, "maxResults": MAX_PAGE },
            "changePassword": { "supported": true },
            "sort": { "supported": false },
            "etag": { "supported": true },
            "authenticationSchemes": [{
                "type": "oauthbearertoken",
                "name": "Provisioning credential",
                "description": "Authorization: Bearer with a secret made by `latchkey provisioning create`",
                "primary": true,
            }],
            "meta": meta(&state, "ServiceProviderConfig", "ServiceProviderConfig"),
        }),
    )
}

fn user_type(state: &AppState) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ResourceType"],
        "id": "User",
        "name": "User",
        "endpoint": "/Users",
        "description": "A person: userName is the email, active means not disabled",
        "schema": USER_SCHEMA,
        "schemaExtensions": [],
        "meta": meta(state, "ResourceType", "ResourceTypes/User"),
    })
}

pub async fn resource_types(
    State(state): State<AppState>,
    Provisioner(_): Provisioner,
) -> Response {
    list(vec![user_type(&state)])
}

pub async fn resource_type(
    State(state): State<AppState>,
    Provisioner(_): Provisioner,
    Path(id): Path<String>,
) -> ScimResult<Response> {
    if id == "User" {
        Ok(scim_json(StatusCode::OK, &user_type(&state)))
    } else {
        Err(ScimFailure::not_found())
    }
}

fn attribute(name: &str, kind: &str, extra: Value) -> Value {
    let mut out = json!({
        "name": name,
        "type": kind,
        "multiValued": false,
        "required": false,
        "caseExact": false,
        "mutability": "readWrite",
        "returned": "default",
        "uniqueness": "none",
    });
    if let (Value::Object(out), Value::Object(extra)) = (&mut out, extra) {
        out.extend(extra);
    }
    out
}

fn user_schema(state: &AppState) -> Value {
    let string = |name: &str| attribute(name, "string", json!({}));
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Schema"],
        "id": USER_SCHEMA,
        "name": "User",
        "description": "A person who may hold personal tokens and belong to organisations",
        "attributes": [
            attribute("userName", "string", json!({
                "required": true, "uniqueness": "server",
                "description": "The email address: unique, how the person signs in",
            })),
            attribute("name", "complex", json!({
                "subAttributes": [string("formatted"), string("familyName"), string("givenName")],
            })),
            string("displayName"),
            attribute("active", "boolean", json!({
                "description": "false disables the person: sessions end and tokens are refused at once",
            })),
            attribute("password", "string", json!({
                "mutability": "writeOnly", "returned": "never",
                "description": "Optional: for sign-in without single sign-on",
            })),
            attribute("emails", "complex", json!({
                "multiValued": true,
                "subAttributes": [
                    string("value"),
                    attribute("type", "string", json!({ "canonicalValues": ["work", "home", "other"] })),
                    attribute("primary", "boolean", json!({})),
                ],
            })),
            attribute("externalId", "string", json!({
                "caseExact": true, "uniqueness": "server",
                "description": "The identity provider's id for this person",
            })),
        ],
        "meta": meta(state, "Schema", &format!("Schemas/{USER_SCHEMA}")),
    })
}

pub async fn schemas(State(state): State<AppState>, Provisioner(_): Provisioner) -> Response {
    list(vec![user_schema(&state)])
}

pub async fn schema(
    State(state): State<AppState>,
    Provisioner(_): Provisioner,
    Path(id): Path<String>,
) -> ScimResult<Response> {
    if id == USER_SCHEMA {
        Ok(scim_json(StatusCode::OK, &user_schema(&state)))
    } else {
        Err(ScimFailure::not_found())
    }
}
