//! SCIM Groups (RFC 7643 §4.2) are organisations: `displayName` is the name, `members` the
//! people in it (`value` = a user's id). Roles ride the extension
//! `urn:ietf:params:scim:schemas:extension:latchkey:2.0:Group` (`admins`, `partners`: lists of
//! members as `{"value": id}`); a member in neither list is a `member`.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use latchkey_core::scim;
use latchkey_core::{Role, UserId};
use latchkey_service::provisioning::ProvisionedGroup;
use latchkey_store::{Member, Org};
use serde_json::{Map, Value, json};
use sha2::Digest as _;

use super::users::{ListQuery, Projection, page_bounds, project};
use super::{
    Provisioner, ScimFailure, ScimQuery, ScimResult, attr_value, body_object, check_if_match,
    external_id_of, json_body, list_response, scim_json,
};
use crate::AppState;
use crate::api::views::rfc3339;
use crate::extract::Path;

pub const GROUP_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
pub const ROLES_SCHEMA: &str = "urn:ietf:params:scim:schemas:extension:latchkey:2.0:Group";
/// At most this many members in one Group body.
const MAX_MEMBERS: usize = 10_000;

fn location(state: &AppState, org: &Org) -> String {
    format!(
        "{}/scim/v2/Groups/{}",
        state.service.settings().public_url,
        org.id
    )
}

/// The group's ETag: a digest of what SCIM shows of it, members included (a membership has no
/// version of its own, and a change of anyone's role changes the group).
fn etag(body: &Value) -> String {
    let digest = sha2::Sha256::digest(body.to_string().as_bytes());
    let hex: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    format!("W/\"{hex}\"")
}

/// The group as SCIM shows it; `members` is `None` when they were not read (left out).
fn representation(state: &AppState, org: &Org, members: Option<&[Member]>) -> Value {
    let created = rfc3339(org.created_at);
    let mut out = Map::new();
    out.insert("schemas".into(), json!([GROUP_SCHEMA, ROLES_SCHEMA]));
    out.insert("id".into(), json!(org.id));
    out.insert("displayName".into(), json!(org.name));
    if let Some(external_id) = &org.external_id {
        out.insert("externalId".into(), json!(external_id));
    }
    if let Some(members) = members {
        let base = state.service.settings().public_url.clone();
        // `display` is left out: what a provider sends is what it reads back.
        let entry = |m: &Member| {
            json!({
                "value": m.user_id,
                "type": "User",
                "$ref": format!("{base}/scim/v2/Users/{}", m.user_id),
            })
        };
        let with = |role: Role| -> Vec<Value> {
            members
                .iter()
                .filter(|m| m.role == role)
                .map(entry)
                .collect()
        };
        // An empty list is an attribute without a value: left out (RFC 7643 §2.5).
        if !members.is_empty() {
            out.insert("members".into(), members.iter().map(entry).collect());
        }
        let mut roles = Map::new();
        for (name, role) in [("admins", Role::Admin), ("partners", Role::Partner)] {
            let list = with(role);
            if !list.is_empty() {
                roles.insert(name.into(), Value::Array(list));
            }
        }
        if !roles.is_empty() {
            out.insert(ROLES_SCHEMA.into(), Value::Object(roles));
        }
    }
    let mut body = Value::Object(out);
    let version = etag(&body);
    body["meta"] = json!({
        "resourceType": "Group",
        "created": created,
        "lastModified": created,
        "location": location(state, org),
        "version": version,
    });
    body
}

/// The user ids of a list of members (`[{"value": id}]`).
fn ids(list: Option<&Value>, what: &str) -> ScimResult<Vec<UserId>> {
    let items = match list {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(items)) if items.len() <= MAX_MEMBERS => items,
        Some(_) => {
            return Err(ScimFailure::invalid_value(format!(
                "{what} must be a list of at most {MAX_MEMBERS} members"
            )));
        }
    };
    items
        .iter()
        .map(|item| {
            let value = match item {
                Value::Object(o) => attr_value(o, "value"),
                _ => None,
            };
            match value {
                Some(Value::String(id)) => id.parse::<UserId>().map_err(|_| {
                    ScimFailure::invalid_value(format!("{what}: a value is not a user's id"))
                }),
                _ => Err(ScimFailure::invalid_value(format!(
                    "{what}: each member is an object with a value"
                ))),
            }
        })
        .collect()
}

/// A Group body (POST, PUT, or the result of a PATCH) in Latchkey's terms.
fn provisioned(body: &Value) -> ScimResult<ProvisionedGroup> {
    let object = body_object(body)?;
    let name = match attr_value(object, "displayName") {
        Some(Value::String(s)) if !s.trim().is_empty() => s.trim().to_owned(),
        _ => return Err(ScimFailure::invalid_value("displayName is required")),
    };
    let external_id = external_id_of(object)?;
    let roles = match attr_value(object, ROLES_SCHEMA) {
        None | Some(Value::Null) => None,
        Some(Value::Object(o)) => Some(o),
        Some(_) => {
            return Err(ScimFailure::invalid_value(
                "the roles extension is an object",
            ));
        }
    };
    let admins = ids(roles.and_then(|r| attr_value(r, "admins")), "admins")?;
    let partners = ids(roles.and_then(|r| attr_value(r, "partners")), "partners")?;
    let mut members: Vec<(UserId, Role)> = Vec::new();
    let everyone = ids(attr_value(object, "members"), "members")?
        .into_iter()
        .chain(admins.iter().cloned())
        .chain(partners.iter().cloned());
    for user in everyone {
        if members.iter().any(|(u, _)| *u == user) {
            continue;
        }
        // An admin listed as a partner too is an admin: the larger right wins.
        let role = if admins.contains(&user) {
            Role::Admin
        } else if partners.contains(&user) {
            Role::Partner
        } else {
            Role::Member
        };
        members.push((user, role));
    }
    Ok(ProvisionedGroup {
        name,
        external_id,
        members,
    })
}

/// An organisation SCIM made; any other is `404` (storage trouble is not "not found").
async fn live_org(state: &AppState, id: &str) -> ScimResult<Org> {
    state
        .service
        .find_provisioned_org(id)
        .await
        .map_err(ScimFailure::from)
}

async fn full(state: &AppState, org: &Org) -> ScimResult<Value> {
    let members = state.service.org_members(org).await?;
    Ok(representation(state, org, Some(&members)))
}

fn one(state: &AppState, status: StatusCode, org: &Org, body: &Value) -> Response {
    let mut response = scim_json(status, body);
    if let Some(Ok(value)) = body["meta"]["version"].as_str().map(HeaderValue::from_str) {
        response.headers_mut().insert(header::ETAG, value);
    }
    if status == StatusCode::CREATED
        && let Ok(value) = HeaderValue::from_str(&location(state, org))
    {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

pub async fn get_group(
    State(state): State<AppState>,
    Provisioner(_): Provisioner,
    Path(id): Path<String>,
    ScimQuery(projection): ScimQuery<Projection>,
) -> ScimResult<Response> {
    let org = live_org(&state, &id).await?;
    let body = full(&state, &org).await?;
    let shown = project(
        body.clone(),
        &projection.attributes,
        &projection.excluded_attributes,
    );
    let mut response = one(&state, StatusCode::OK, &org, &body);
    *response.body_mut() = axum::body::Body::from(shown.to_string());
    Ok(response)
}

pub async fn create_group(
    State(state): State<AppState>,
    Provisioner(caller): Provisioner,
    headers: HeaderMap,
    body: axum::body::Body,
) -> ScimResult<Response> {
    let body = json_body(&headers, body).await?;
    let group = provisioned(&body)?;
    let org = state.service.provision_group(&caller, &group).await?;
    let body = full(&state, &org).await?;
    Ok(one(&state, StatusCode::CREATED, &org, &body))
}

pub async fn replace_group(
    State(state): State<AppState>,
    Provisioner(caller): Provisioner,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> ScimResult<Response> {
    let org = live_org(&state, &id).await?;
    let current = full(&state, &org).await?;
    check_if_match(
        &headers,
        current["meta"]["version"].as_str().unwrap_or_default(),
    )?;
    let body = json_body(&headers, body).await?;
    let group = provisioned(&body)?;
    let org = state
        .service
        .reprovision_group(&caller, &org, &group)
        .await?;
    let body = full(&state, &org).await?;
    Ok(one(&state, StatusCode::OK, &org, &body))
}

pub async fn patch_group(
    State(state): State<AppState>,
    Provisioner(caller): Provisioner,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> ScimResult<Response> {
    let org = live_org(&state, &id).await?;
    let mut resource = full(&state, &org).await?;
    check_if_match(
        &headers,
        resource["meta"]["version"].as_str().unwrap_or_default(),
    )?;
    let body = json_body(&headers, body).await?;
    let operations = scim::parse_patch(&body)?;
    scim::apply_patch(&mut resource, &operations)?;
    if resource.get("id") != Some(&json!(org.id)) {
        return Err(ScimFailure::new(
            StatusCode::BAD_REQUEST,
            Some("mutability"),
            "id cannot be changed",
        ));
    }
    let group = provisioned(&resource)?;
    let org = state
        .service
        .reprovision_group(&caller, &org, &group)
        .await?;
    let body = full(&state, &org).await?;
    Ok(one(&state, StatusCode::OK, &org, &body))
}

pub async fn delete_group(
    State(state): State<AppState>,
    Provisioner(caller): Provisioner,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> ScimResult<Response> {
    let org = live_org(&state, &id).await?;
    if headers.contains_key(header::IF_MATCH) {
        let current = full(&state, &org).await?;
        check_if_match(
            &headers,
            current["meta"]["version"].as_str().unwrap_or_default(),
        )?;
    }
    state.service.delete_group(&caller, &org).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub async fn list_groups(
    State(state): State<AppState>,
    Provisioner(_): Provisioner,
    ScimQuery(query): ScimQuery<ListQuery>,
) -> ScimResult<Response> {
    let (start, count) = page_bounds(&query);
    let filter = query
        .filter
        .as_deref()
        .map(scim::parse_filter)
        .transpose()?;
    // Members are read only when they are shown or filtered on (provisioning tools list groups
    // with `excludedAttributes=members`).
    let wants_members = query
        .filter
        .as_deref()
        .is_some_and(|f| f.to_ascii_lowercase().contains("members"))
        || (query.attributes.is_empty()
            && !query
                .excluded_attributes
                .iter()
                .any(|a| a.eq_ignore_ascii_case("members")))
        || query
            .attributes
            .iter()
            .any(|a| a.to_ascii_lowercase().starts_with("members"));
    let orgs = match filter.as_ref().and_then(|f| f.simple_equality()) {
        Some((attr, value)) if attr.is("externalId") => state
            .service
            .find_org_by_external_id(value)
            .await?
            .into_iter()
            .collect(),
        _ => state.service.list_provisioned_orgs().await?,
    };
    let mut selected = Vec::new();
    for org in &orgs {
        let body = if wants_members {
            full(&state, org).await?
        } else {
            representation(&state, org, None)
        };
        if filter.as_ref().is_none_or(|f| f.matches(&body)) {
            selected.push(body);
        }
    }
    let total = selected.len();
    let resources: Vec<Value> = selected
        .into_iter()
        .skip(usize::try_from(start - 1).unwrap_or(usize::MAX))
        .take(count as usize)
        .map(|b| project(b, &query.attributes, &query.excluded_attributes))
        .collect();
    Ok(list_response(start, total as u64, resources))
}
