//! SCIM's discovery endpoints (RFC 7644 §4): what this server supports, its resource types and
//! their schemas. Provisioning tools and checkers read them before anything else.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};

use super::groups::{GROUP_SCHEMA, ROLES_SCHEMA};
use super::users::USER_SCHEMA;
use super::{MAX_PAGE, Provisioner, ScimFailure, ScimResult, list_response, scim_json};
use crate::AppState;
use crate::extract::Path;

fn meta(state: &AppState, kind: &str, path: &str) -> Value {
    json!({
        "resourceType": kind,
        "location": format!("{}/scim/v2/{path}", state.service.settings().public_url),
    })
}

fn list(resources: Vec<Value>) -> Response {
    let total = resources.len() as u64;
    list_response(1, total, resources)
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

fn group_type(state: &AppState) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ResourceType"],
        "id": "Group",
        "name": "Group",
        "endpoint": "/Groups",
        "description": "An organisation: its members, and their roles through the extension",
        "schema": GROUP_SCHEMA,
        "schemaExtensions": [{ "schema": ROLES_SCHEMA, "required": false }],
        "meta": meta(state, "ResourceType", "ResourceTypes/Group"),
    })
}

pub async fn resource_types(
    State(state): State<AppState>,
    Provisioner(_): Provisioner,
) -> Response {
    list(vec![user_type(&state), group_type(&state)])
}

pub async fn resource_type(
    State(state): State<AppState>,
    Provisioner(_): Provisioner,
    Path(id): Path<String>,
) -> ScimResult<Response> {
    match id.as_str() {
        "User" => Ok(scim_json(StatusCode::OK, &user_type(&state))),
        "Group" => Ok(scim_json(StatusCode::OK, &group_type(&state))),
        _ => Err(ScimFailure::not_found()),
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

/// A list of members: `value` is a user's id.
fn member_list(name: &str, description: &str) -> Value {
    attribute(
        name,
        "complex",
        json!({
            "multiValued": true,
            "description": description,
            "subAttributes": [
                attribute("value", "string", json!({ "caseExact": true, "mutability": "immutable" })),
                attribute("display", "string", json!({ "mutability": "readOnly" })),
                attribute("type", "string", json!({ "mutability": "immutable", "canonicalValues": ["User"] })),
                attribute("$ref", "reference", json!({ "mutability": "immutable", "referenceTypes": ["User"] })),
            ],
        }),
    )
}

fn group_schema(state: &AppState) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Schema"],
        "id": GROUP_SCHEMA,
        "name": "Group",
        "description": "An organisation",
        "attributes": [
            attribute("displayName", "string", json!({
                "required": true, "description": "The organisation's name",
            })),
            member_list("members", "The people in it (value: the user's id)"),
            attribute("externalId", "string", json!({
                "caseExact": true, "uniqueness": "server",
                "description": "The identity provider's id for the organisation",
            })),
        ],
        "meta": meta(state, "Schema", &format!("Schemas/{GROUP_SCHEMA}")),
    })
}

fn roles_schema(state: &AppState) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Schema"],
        "id": ROLES_SCHEMA,
        "name": "LatchkeyRoles",
        "description": "Members' roles in the organisation: admins and partners; anyone else in members is a member",
        "attributes": [
            member_list("admins", "Members with the admin role"),
            member_list("partners", "Members with the partner role"),
        ],
        "meta": meta(state, "Schema", &format!("Schemas/{ROLES_SCHEMA}")),
    })
}

pub async fn schemas(State(state): State<AppState>, Provisioner(_): Provisioner) -> Response {
    list(vec![
        user_schema(&state),
        group_schema(&state),
        roles_schema(&state),
    ])
}

pub async fn schema(
    State(state): State<AppState>,
    Provisioner(_): Provisioner,
    Path(id): Path<String>,
) -> ScimResult<Response> {
    match id.as_str() {
        USER_SCHEMA => Ok(scim_json(StatusCode::OK, &user_schema(&state))),
        GROUP_SCHEMA => Ok(scim_json(StatusCode::OK, &group_schema(&state))),
        ROLES_SCHEMA => Ok(scim_json(StatusCode::OK, &roles_schema(&state))),
        _ => Err(ScimFailure::not_found()),
    }
}
