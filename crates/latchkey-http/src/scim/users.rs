//! SCIM Users (RFC 7643 §4.1): `userName` is the email, `active` is "not disabled",
//! `externalId` the provider's id; `name`, `displayName`, `emails` and the like are kept for the
//! provider as it sent them (Latchkey does not use them).

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use latchkey_core::Email;
use latchkey_core::scim::{self, Filter};
use latchkey_service::provisioning::ProvisionedUser;
use latchkey_store::User;
use secrecy::SecretString;
use serde_json::{Map, Value, json};

use super::{
    MAX_PAGE, Provisioner, ScimFailure, ScimQuery, ScimResult, attr_value, body_object,
    check_if_match, external_id_of, json_body, list_response, scim_json,
};
use crate::AppState;
use crate::api::views::rfc3339;
use crate::extract::Path;

pub const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
/// The largest profile kept for the provider (the attributes Latchkey does not use).
const MAX_PROFILE: usize = 16 * 1024;
/// The attributes Latchkey models itself; everything else the provider sends is its profile.
const MODELLED: &[&str] = &[
    "schemas",
    "id",
    "meta",
    "userName",
    "active",
    "externalId",
    "password",
    "groups",
];

fn etag(user: &User) -> String {
    format!("W/\"{}\"", user.version)
}

fn location(state: &AppState, user: &User) -> String {
    format!(
        "{}/scim/v2/Users/{}",
        state.service.settings().public_url,
        user.id
    )
}

/// The user as SCIM shows them.
pub fn representation(state: &AppState, user: &User) -> Value {
    let mut out = Map::new();
    if let Some(Value::Object(profile)) = user
        .profile
        .as_deref()
        .and_then(|p| serde_json::from_str::<Value>(p).ok())
    {
        out.extend(profile);
    }
    out.insert("schemas".into(), json!([USER_SCHEMA]));
    out.insert("id".into(), json!(user.id));
    // A userName that is not the email was kept in the profile as it came.
    if !out.contains_key("userName") {
        out.insert("userName".into(), json!(user.email));
    }
    out.insert("active".into(), json!(!user.disabled));
    if let Some(external_id) = &user.external_id {
        out.insert("externalId".into(), json!(external_id));
    }
    out.insert(
        "meta".into(),
        json!({
            "resourceType": "User",
            "created": rfc3339(user.created_at),
            "lastModified": rfc3339(user.updated_at.unwrap_or(user.created_at)),
            "location": location(state, user),
            "version": etag(user),
        }),
    );
    Value::Object(out)
}

fn one(state: &AppState, status: StatusCode, user: &User) -> Response {
    let mut response = scim_json(status, &representation(state, user));
    if let Ok(value) = HeaderValue::from_str(&etag(user)) {
        response.headers_mut().insert(header::ETAG, value);
    }
    if status == StatusCode::CREATED
        && let Ok(value) = HeaderValue::from_str(&location(state, user))
    {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

/// Reads a boolean as Okta and Entra ID send it: `true`, or the text `"True"`.
fn boolean(value: &Value) -> ScimResult<bool> {
    match value {
        Value::Bool(b) => Ok(*b),
        Value::String(s) if s.eq_ignore_ascii_case("true") => Ok(true),
        Value::String(s) if s.eq_ignore_ascii_case("false") => Ok(false),
        _ => Err(ScimFailure::invalid_value("active must be true or false")),
    }
}

/// A User body (POST, PUT, or the result of a PATCH) in Latchkey's terms.
fn provisioned(body: &Value) -> ScimResult<ProvisionedUser> {
    let object = body_object(body)?;
    let user_name = match attr_value(object, "userName") {
        Some(Value::String(s)) if !s.trim().is_empty() && s.len() <= 256 => s.trim().to_owned(),
        _ => {
            return Err(ScimFailure::invalid_value(
                "userName is required (text of at most 256 bytes)",
            ));
        }
    };
    // The userName is the email; a provider whose userName is another login (Entra ID's UPN
    // can be) gives the email among `emails`, the primary one first.
    let email = if Email::parse(&user_name).is_ok() {
        user_name.clone()
    } else {
        email_of(object).ok_or_else(|| {
            ScimFailure::invalid_value(
                "userName is not an email address, and emails holds none (Latchkey needs one)",
            )
        })?
    };
    let external_id = external_id_of(object)?;
    // Not said (absent, null, removed by a PATCH): left as it is, never switched back on.
    let active = match attr_value(object, "active") {
        None | Some(Value::Null) => None,
        Some(value) => Some(boolean(value)?),
    };
    let password = match attr_value(object, "password") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(SecretString::from(s.clone())),
        Some(_) => return Err(ScimFailure::invalid_value("password must be text")),
    };
    let mut profile: Map<String, Value> = object
        .iter()
        .filter(|(k, _)| !MODELLED.iter().any(|m| m.eq_ignore_ascii_case(k)))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if user_name != email {
        profile.insert("userName".into(), json!(user_name));
    }
    let profile = if profile.is_empty() {
        None
    } else {
        let text = Value::Object(profile).to_string();
        if text.len() > MAX_PROFILE {
            return Err(ScimFailure::invalid_value(
                "the profile attributes are larger than 16 KiB",
            ));
        }
        Some(text)
    };
    Ok(ProvisionedUser {
        email,
        external_id,
        profile,
        active,
        password,
    })
}

/// The primary email among `emails`, or the first.
fn email_of(object: &Map<String, Value>) -> Option<String> {
    let Some(Value::Array(emails)) = attr_value(object, "emails") else {
        return None;
    };
    let value = |e: &Value| match e {
        Value::Object(o) => match attr_value(o, "value") {
            Some(Value::String(s)) if Email::parse(s).is_ok() => Some(s.clone()),
            _ => None,
        },
        _ => None,
    };
    let primary = emails.iter().find(|e| match e {
        Value::Object(o) => attr_value(o, "primary").is_some_and(|p| boolean(p).unwrap_or(false)),
        _ => false,
    });
    primary
        .and_then(value)
        .or_else(|| emails.iter().find_map(value))
}

/// A person SCIM made; anyone else is `404`. Storage trouble is not "not found": a
/// provider takes a `404` to a DELETE for done.
async fn live_user(state: &AppState, id: &str) -> ScimResult<User> {
    state
        .service
        .find_provisioned_user(id)
        .await
        .map_err(ScimFailure::from)
}

/// How many times a PUT or PATCH without `If-Match` is applied again when the person changed
/// between its read and its write (the write is conditional on the version read).
const RETRIES: usize = 3;

/// Reads the person, makes the new description from the old (`make`), and writes it at the
/// version read: with `If-Match`, a concurrent change is `412`; without, it is read again.
async fn rewrite(
    state: &AppState,
    caller: &latchkey_service::Caller,
    id: &str,
    headers: &HeaderMap,
    make: impl Fn(&User) -> ScimResult<ProvisionedUser>,
) -> ScimResult<User> {
    let mut attempt = 0;
    loop {
        let user = live_user(state, id).await?;
        check_if_match(headers, &etag(&user))?;
        let person = make(&user)?;
        match state.service.reprovision_user(caller, &user, &person).await {
            Err(latchkey_service::ServiceError::Client {
                code: latchkey_service::ErrorCode::PreconditionFailed,
                ..
            }) if !headers.contains_key(header::IF_MATCH) && attempt < RETRIES => attempt += 1,
            other => return other.map_err(ScimFailure::from),
        }
    }
}

pub async fn get_user(
    State(state): State<AppState>,
    Provisioner(_): Provisioner,
    Path(id): Path<String>,
    ScimQuery(projection): ScimQuery<Projection>,
) -> ScimResult<Response> {
    let user = live_user(&state, &id).await?;
    let body = project(
        representation(&state, &user),
        &projection.attributes,
        &projection.excluded_attributes,
    );
    let mut response = scim_json(StatusCode::OK, &body);
    if let Ok(value) = HeaderValue::from_str(&etag(&user)) {
        response.headers_mut().insert(header::ETAG, value);
    }
    Ok(response)
}

pub async fn create_user(
    State(state): State<AppState>,
    Provisioner(caller): Provisioner,
    headers: HeaderMap,
    body: axum::body::Body,
) -> ScimResult<Response> {
    let body = json_body(&headers, body).await?;
    let person = provisioned(&body)?;
    let user = state.service.provision_user(&caller, &person).await?;
    Ok(one(&state, StatusCode::CREATED, &user))
}

pub async fn replace_user(
    State(state): State<AppState>,
    Provisioner(caller): Provisioner,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> ScimResult<Response> {
    let body = json_body(&headers, body).await?;
    let person = provisioned(&body)?;
    let user = rewrite(&state, &caller, &id, &headers, |_| Ok(person.clone())).await?;
    Ok(one(&state, StatusCode::OK, &user))
}

pub async fn patch_user(
    State(state): State<AppState>,
    Provisioner(caller): Provisioner,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> ScimResult<Response> {
    let body = json_body(&headers, body).await?;
    let operations = scim::parse_patch(&body)?;
    let user = rewrite(&state, &caller, &id, &headers, |user| {
        let mut resource = representation(&state, user);
        scim::apply_patch(&mut resource, &operations)?;
        if resource.get("id") != Some(&json!(user.id)) {
            return Err(ScimFailure::new(
                StatusCode::BAD_REQUEST,
                Some("mutability"),
                "id cannot be changed",
            ));
        }
        provisioned(&resource)
    })
    .await?;
    Ok(one(&state, StatusCode::OK, &user))
}

pub async fn delete_user(
    State(state): State<AppState>,
    Provisioner(caller): Provisioner,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> ScimResult<Response> {
    let user = live_user(&state, &id).await?;
    check_if_match(&headers, &etag(&user))?;
    state.service.delete_user(&caller, &user).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// What a list or a search asks for (RFC 7644 §3.4.2 and §3.4.3): in the query string of a
/// `GET`, or the body of a `POST …/.search`.
#[derive(serde::Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct ListQuery {
    pub(super) filter: Option<String>,
    start_index: Option<i64>,
    count: Option<i64>,
    #[serde(default, deserialize_with = "names")]
    pub(super) attributes: Vec<String>,
    #[serde(default, deserialize_with = "names")]
    pub(super) excluded_attributes: Vec<String>,
}

/// Which attributes to return (`attributes`, `excludedAttributes`), as the query string gives
/// them (comma-separated) or a search body does (a list).
#[derive(serde::Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct Projection {
    #[serde(default, deserialize_with = "names")]
    pub(super) attributes: Vec<String>,
    #[serde(default, deserialize_with = "names")]
    pub(super) excluded_attributes: Vec<String>,
}

fn names<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum Names {
        Text(String),
        List(Vec<String>),
    }
    let list = match <Names as serde::Deserialize>::deserialize(d)? {
        Names::Text(text) => text.split(',').map(str::to_owned).collect(),
        Names::List(list) => list,
    };
    Ok(list
        .into_iter()
        .map(|n| {
            let n = n.trim();
            // `urn:…:User:name.givenName` names the core attribute `name.givenName`.
            n.strip_prefix(USER_SCHEMA)
                .and_then(|rest| rest.strip_prefix(':'))
                .unwrap_or(n)
                .to_owned()
        })
        .filter(|n| !n.is_empty())
        .collect())
}

/// The attributes that are always returned (RFC 7643 §7: `returned: always`, and what
/// identifies the resource).
const ALWAYS: &[&str] = &["id", "schemas", "meta", "userName"];

/// Applies `attributes` or `excludedAttributes` to a representation (top-level attributes and
/// `parent.sub` sub-attributes).
pub(super) fn project(resource: Value, attributes: &[String], excluded: &[String]) -> Value {
    let Value::Object(mut object) = resource else {
        return resource;
    };
    let is = |key: &str, name: &str| key.eq_ignore_ascii_case(name);
    if !attributes.is_empty() {
        let mut kept = Map::new();
        for (key, value) in object {
            if ALWAYS.iter().any(|a| is(&key, a)) {
                kept.insert(key, value);
                continue;
            }
            let whole = attributes.iter().any(|a| is(&key, a));
            let subs: Vec<&str> = attributes
                .iter()
                .filter_map(|a| a.split_once('.'))
                .filter(|(parent, _)| is(&key, parent))
                .map(|(_, sub)| sub)
                .collect();
            if whole {
                kept.insert(key, value);
            } else if !subs.is_empty() {
                kept.insert(key, keep_subs(value, &subs));
            }
        }
        object = kept;
    }
    for name in excluded {
        match name.split_once('.') {
            None if !ALWAYS.iter().any(|a| is(name, a)) => object.retain(|k, _| !is(k, name)),
            None => {}
            Some((parent, sub)) => {
                for (key, value) in object.iter_mut() {
                    if is(key, parent) {
                        drop_sub(value, sub);
                    }
                }
            }
        }
    }
    Value::Object(object)
}

/// Keeps only the named sub-attributes of a complex value (or of each of a list's values).
fn keep_subs(value: Value, subs: &[&str]) -> Value {
    match value {
        Value::Object(o) => Value::Object(
            o.into_iter()
                .filter(|(k, _)| subs.iter().any(|s| k.eq_ignore_ascii_case(s)))
                .collect(),
        ),
        Value::Array(items) => {
            Value::Array(items.into_iter().map(|v| keep_subs(v, subs)).collect())
        }
        other => other,
    }
}

fn drop_sub(value: &mut Value, sub: &str) {
    match value {
        Value::Object(o) => o.retain(|k, _| !k.eq_ignore_ascii_case(sub)),
        Value::Array(items) => items.iter_mut().for_each(|v| drop_sub(v, sub)),
        _ => {}
    }
}

/// How many users one scan reads at a time (a filter that no index answers).
const SCAN_PAGE: u32 = 1000;

pub async fn list_users(
    State(state): State<AppState>,
    Provisioner(_): Provisioner,
    ScimQuery(query): ScimQuery<ListQuery>,
) -> ScimResult<Response> {
    list(&state, query).await
}

/// `POST /Users/.search` (RFC 7644 §3.4.3): a list whose parameters come in the body.
pub async fn search_users(
    State(state): State<AppState>,
    Provisioner(_): Provisioner,
    headers: HeaderMap,
    body: axum::body::Body,
) -> ScimResult<Response> {
    let body = json_body(&headers, body).await?;
    let query: ListQuery = serde_json::from_value(body).map_err(|_| {
        ScimFailure::new(
            StatusCode::BAD_REQUEST,
            Some("invalidSyntax"),
            "a search request has filter, startIndex, count, attributes and excludedAttributes",
        )
    })?;
    list(&state, query).await
}

/// The page a list asks for (RFC 7644 §3.4.2.4): `startIndex` 1-based (anything below 1 is
/// 1), `count` between 0 and [`MAX_PAGE`].
pub(super) fn page_bounds(query: &ListQuery) -> (u64, u32) {
    let start = u64::try_from(query.start_index.unwrap_or(1).max(1)).unwrap_or(1);
    let count = u32::try_from(
        query
            .count
            .unwrap_or(i64::from(MAX_PAGE))
            .clamp(0, i64::from(MAX_PAGE)),
    )
    .unwrap_or(MAX_PAGE);
    (start, count)
}

async fn list(state: &AppState, query: ListQuery) -> ScimResult<Response> {
    let (start, count) = page_bounds(&query);
    let (page, total) = match query
        .filter
        .as_deref()
        .map(scim::parse_filter)
        .transpose()?
    {
        None => (
            state
                .service
                .list_provisioned_users(start - 1, count)
                .await?,
            state.service.count_provisioned_users().await?,
        ),
        Some(filter) => matching(state, &filter, start, count).await?,
    };
    let resources: Vec<Value> = page
        .iter()
        .map(|u| {
            project(
                representation(state, u),
                &query.attributes,
                &query.excluded_attributes,
            )
        })
        .collect();
    Ok(list_response(start, total, resources))
}

/// The most people a filter without an index may read: beyond it the answer is `400 tooMany`
/// (RFC 7644 §3.12), and the provider is asked to filter on `userName` or `externalId`.
const MAX_SCAN: u64 = 50_000;

/// The page (from the 1-based `start`, `count` long) of the people a filter selects, and how
/// many it selects: `userName eq` and `externalId eq` (what provisioning tools ask before they
/// create someone) through the store's indexes, anything else by a bounded scan that keeps
/// only the page.
async fn matching(
    state: &AppState,
    filter: &Filter,
    start: u64,
    count: u32,
) -> ScimResult<(Vec<User>, u64)> {
    let selects = |u: &User| filter.matches(&representation(state, u));
    let page_of = |found: Option<User>| {
        let found: Vec<User> = found.filter(|u| selects(u)).into_iter().collect();
        let total = found.len() as u64;
        let page = found
            .into_iter()
            .skip(usize::try_from(start - 1).unwrap_or(usize::MAX))
            .take(count as usize)
            .collect();
        (page, total)
    };
    if let Some((attr, value)) = filter.simple_equality() {
        // A userName that is not an email was kept as given: only a scan finds it.
        if attr.is("userName") && Email::parse(value).is_ok() {
            let found = state.service.find_provisioned_user_by_email(value).await?;
            return Ok(page_of(found));
        }
        if attr.is("externalId") {
            let found = state.service.find_user_by_external_id(value).await?;
            return Ok(page_of(found));
        }
    }
    if state.service.count_provisioned_users().await? > MAX_SCAN {
        return Err(ScimFailure::new(
            StatusCode::BAD_REQUEST,
            Some("tooMany"),
            "this filter would read more than 50,000 people: filter on userName or externalId",
        ));
    }
    let mut page = Vec::new();
    let mut total = 0u64;
    let mut offset = 0u64;
    loop {
        let users = state
            .service
            .list_provisioned_users(offset, SCAN_PAGE)
            .await?;
        let read = users.len();
        for user in users.into_iter().filter(|u| selects(u)) {
            total += 1;
            if total >= start && page.len() < count as usize {
                page.push(user);
            }
        }
        if read < SCAN_PAGE as usize {
            return Ok((page, total));
        }
        offset += read as u64;
    }
}
