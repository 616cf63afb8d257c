//! SCIM PATCH (RFC 7644 §3.5.2): reading a PatchOp request and applying its operations to a
//! resource's JSON representation.
//!
//! Owns the meaning of `add`, `replace` and `remove` on attributes, sub-attributes, extension
//! attributes and values selected by a filter, including the shapes Okta, Entra ID and OneLogin
//! send (`"op": "Replace"`, dotted keys without a path, member lists on `remove`). Must not judge
//! mutability (`id`, `meta`) or normalise values (`"active": "False"` stays a string): the caller
//! knows the schema and does both after [`apply_patch`].

use serde_json::{Map, Value};

use super::filter::{Filter, default_case_exact};
use super::path::{AttrPath, PatchPath, find_key, get_ignore_case, parse_patch_path};
use super::{ScimError, ScimType, snippet};

/// The message schema a PATCH body must declare.
pub const PATCH_OP_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

/// The most operations one PATCH request may carry. Identity providers send a handful; the
/// bound keeps one request from holding a resource for long.
pub const MAX_OPERATIONS: usize = 1000;

/// Complex values are merged member by member down to this depth and replaced whole below it,
/// so a hostile value cannot drive the merge's recursion. SCIM itself nests three levels at
/// most (extension, complex attribute, sub-attribute).
const MAX_MERGE_DEPTH: usize = 8;

/// The kind of a PATCH operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PatchKind {
    /// `add` (RFC 7644 §3.5.2.1).
    Add,
    /// `remove` (RFC 7644 §3.5.2.2).
    Remove,
    /// `replace` (RFC 7644 §3.5.2.3).
    Replace,
}

impl PatchKind {
    /// The keyword, lowercase.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Add => "add",
            Self::Remove => "remove",
            Self::Replace => "replace",
        }
    }
}

/// One PATCH operation.
#[derive(Debug, Clone, PartialEq)]
pub struct PatchOp {
    /// What to do.
    pub op: PatchKind,
    /// Where; `None` means the resource itself (`add` and `replace` only).
    pub path: Option<PatchPath>,
    /// The value; required for `add` and `replace`, an optional list of values to take out of a
    /// multi-valued attribute for `remove`.
    pub value: Option<Value>,
}

/// Reads a PatchOp request body into its operations.
///
/// The body must list [`PATCH_OP_SCHEMA`] in `schemas` and carry 1 to [`MAX_OPERATIONS`]
/// `Operations` (`invalidSyntax` otherwise). `op` is case-insensitive (Entra ID sends
/// `Replace`). A `remove` without `path` is `noTarget` (RFC 7644 §3.5.2.2); an `add` or `replace`
/// without `value`, or without `path` and with a `value` that is not an object, is
/// `invalidValue`; a malformed `path` is `invalidPath`.
pub fn parse_patch(body: &Value) -> Result<Vec<PatchOp>, ScimError> {
    let syntax = |detail: String| ScimError::new(ScimType::InvalidSyntax, detail);
    if !body.is_object() {
        return Err(syntax("a PATCH body is a JSON object".to_owned()));
    }
    let declares_patch_op = get_ignore_case(body, "schemas")
        .and_then(Value::as_array)
        .is_some_and(|schemas| {
            schemas
                .iter()
                .filter_map(Value::as_str)
                .any(|s| s.eq_ignore_ascii_case(PATCH_OP_SCHEMA))
        });
    if !declares_patch_op {
        return Err(syntax(format!(
            "\"schemas\" must contain {PATCH_OP_SCHEMA}"
        )));
    }
    let operations = get_ignore_case(body, "Operations")
        .and_then(Value::as_array)
        .ok_or_else(|| syntax("\"Operations\" must be an array".to_owned()))?;
    if operations.is_empty() {
        return Err(syntax(
            "\"Operations\" must hold at least one operation".to_owned(),
        ));
    }
    if operations.len() > MAX_OPERATIONS {
        return Err(syntax(format!(
            "a PATCH request holds at most {MAX_OPERATIONS} operations"
        )));
    }
    operations
        .iter()
        .enumerate()
        .map(|(index, operation)| {
            parse_operation(operation).map_err(|error| in_operation(index, error))
        })
        .collect()
}

fn parse_operation(operation: &Value) -> Result<PatchOp, ScimError> {
    if !operation.is_object() {
        return Err(ScimError::new(
            ScimType::InvalidSyntax,
            "an operation is a JSON object",
        ));
    }
    let op = match get_ignore_case(operation, "op") {
        Some(Value::String(op)) if op.eq_ignore_ascii_case("add") => PatchKind::Add,
        Some(Value::String(op)) if op.eq_ignore_ascii_case("remove") => PatchKind::Remove,
        Some(Value::String(op)) if op.eq_ignore_ascii_case("replace") => PatchKind::Replace,
        Some(Value::String(op)) => {
            return Err(ScimError::new(
                ScimType::InvalidSyntax,
                format!("\"op\" is add, remove or replace, not {}", snippet(op)),
            ));
        }
        _ => {
            return Err(ScimError::new(
                ScimType::InvalidSyntax,
                "\"op\" must be add, remove or replace",
            ));
        }
    };
    let path = match get_ignore_case(operation, "path") {
        None | Some(Value::Null) => None,
        Some(Value::String(text)) if text.trim().is_empty() => None,
        Some(Value::String(text)) => Some(parse_patch_path(text)?),
        Some(_) => {
            return Err(ScimError::new(
                ScimType::InvalidPath,
                "\"path\" must be a string",
            ));
        }
    };
    let value = get_ignore_case(operation, "value").cloned();
    match op {
        PatchKind::Remove if path.is_none() => {
            return Err(ScimError::new(
                ScimType::NoTarget,
                "remove needs a \"path\"",
            ));
        }
        PatchKind::Add | PatchKind::Replace if value.is_none() => {
            return Err(ScimError::new(
                ScimType::InvalidValue,
                format!("{} needs a \"value\"", op.as_str()),
            ));
        }
        PatchKind::Add | PatchKind::Replace
            if path.is_none() && !value.as_ref().is_some_and(Value::is_object) =>
        {
            return Err(ScimError::new(
                ScimType::InvalidValue,
                format!(
                    "{} without \"path\" needs an object of attributes as \"value\"",
                    op.as_str()
                ),
            ));
        }
        _ => {}
    }
    Ok(PatchOp { op, path, value })
}

fn in_operation(index: usize, error: ScimError) -> ScimError {
    ScimError::new(
        error.scim_type,
        format!("operation {}: {}", index + 1, error.detail),
    )
}

/// The attributes value filters in PATCH paths compare case-exactly: those of
/// [`default_case_exact`], and `members.value`, a Latchkey id whose base62 body is
/// case-sensitive (removing `usr_aB` must never remove `usr_Ab`).
pub fn patch_case_exact(path: &AttrPath) -> bool {
    default_case_exact(path) || path.is_sub("members", "value")
}

/// Applies the operations in order to `resource` (a JSON object), comparing strings in value
/// filters as [`patch_case_exact`] says.
///
/// All or nothing (RFC 7644 §3.5.2): on an error the resource is left as it was. Attribute names
/// match existing keys ignoring case and keep the resource's spelling; a new key takes the
/// spelling of the request.
pub fn apply_patch(resource: &mut Value, ops: &[PatchOp]) -> Result<(), ScimError> {
    apply_patch_with(resource, ops, &patch_case_exact)
}

/// [`apply_patch`] with the caller's choice of case-exact attributes for value filters.
pub fn apply_patch_with(
    resource: &mut Value,
    ops: &[PatchOp],
    case_exact: &dyn Fn(&AttrPath) -> bool,
) -> Result<(), ScimError> {
    if !resource.is_object() {
        return Err(ScimError::new(
            ScimType::InvalidValue,
            "the resource is not a JSON object",
        ));
    }
    let mut working = resource.clone();
    for (index, op) in ops.iter().enumerate() {
        apply_one(&mut working, op, case_exact).map_err(|error| in_operation(index, error))?;
    }
    *resource = working;
    Ok(())
}

fn apply_one(
    resource: &mut Value,
    op: &PatchOp,
    case_exact: &dyn Fn(&AttrPath) -> bool,
) -> Result<(), ScimError> {
    if let Some(path) = &op.path {
        return apply_at(resource, op.op, path, op.value.as_ref(), case_exact);
    }
    if op.op == PatchKind::Remove {
        return Err(ScimError::new(
            ScimType::NoTarget,
            "remove needs a \"path\"",
        ));
    }
    let Some(Value::Object(attributes)) = &op.value else {
        return Err(ScimError::new(
            ScimType::InvalidValue,
            "without \"path\", \"value\" must be an object of attributes",
        ));
    };
    // Without a path every key is itself a path: Entra ID sends `"name.givenName"`, URN-prefixed
    // extension attributes and even `emails[type eq "work"].value` as keys.
    for (key, value) in attributes {
        let path = parse_patch_path(key)?;
        apply_at(resource, op.op, &path, Some(value), case_exact)?;
    }
    Ok(())
}

fn apply_at(
    resource: &mut Value,
    kind: PatchKind,
    path: &PatchPath,
    value: Option<&Value>,
    case_exact: &dyn Fn(&AttrPath) -> bool,
) -> Result<(), ScimError> {
    if path.value_filter.is_none() && path.attr.is_core_schema_itself() {
        // Some clients wrap core attributes in an object keyed by the core schema URN, as an
        // extension's are; its members are the resource's own attributes.
        let Some(Value::Object(members)) = value.filter(|_| kind != PatchKind::Remove) else {
            return Err(ScimError::new(
                ScimType::InvalidPath,
                "a core schema URN names no attribute",
            ));
        };
        for (key, member_value) in members {
            let member_path = parse_patch_path(key)?;
            apply_path(resource, kind, &member_path, Some(member_value), case_exact)?;
        }
        return Ok(());
    }
    apply_path(resource, kind, path, value, case_exact)
}

fn apply_path(
    resource: &mut Value,
    kind: PatchKind,
    path: &PatchPath,
    value: Option<&Value>,
    case_exact: &dyn Fn(&AttrPath) -> bool,
) -> Result<(), ScimError> {
    let create = kind != PatchKind::Remove;
    let Some((container, name)) = container(resource, &path.attr, create)? else {
        // Removing from an extension the resource does not have.
        return match path.value_filter {
            Some(_) => Err(no_target(&path.attr)),
            None => Ok(()),
        };
    };
    match (&path.value_filter, &path.attr.sub_attr) {
        (Some(filter), _) => {
            apply_filtered(container, &name, kind, path, filter, value, case_exact)
        }
        (None, Some(sub_attr)) => apply_sub_attr(container, &name, sub_attr, kind, value),
        (None, None) => apply_attr(container, &name, kind, value),
    }
}

/// An object holding an attribute, and the attribute's name in it.
type Slot<'r> = (&'r mut Map<String, Value>, String);

/// The object that holds `attr`, and the attribute's name in it. Core attributes (with or
/// without a core schema prefix) and whole extensions are members of the resource; an extension
/// attribute is a member of the extension's object, created for `add`/`replace` when missing.
/// `None` when that object does not exist and `create` is false.
fn container<'r>(
    resource: &'r mut Value,
    attr: &AttrPath,
    create: bool,
) -> Result<Option<Slot<'r>>, ScimError> {
    let whole_extension = attr.whole_extension_key(resource);
    let extension_key = attr
        .schema
        .as_deref()
        .and_then(|schema| find_key(resource, schema))
        .cloned();
    let Value::Object(root) = resource else {
        return Err(ScimError::new(
            ScimType::InvalidValue,
            "the resource is not a JSON object",
        ));
    };
    if let Some(key) = whole_extension {
        return Ok(Some((root, key)));
    }
    let Some(schema) = &attr.schema else {
        if create && starts_with_urn(&attr.attr) {
            list_extension(root, &attr.attr);
        }
        return Ok(Some((root, attr.attr.clone())));
    };
    if let Some(key) = extension_key {
        return match root.get_mut(&key) {
            Some(Value::Object(extension)) => Ok(Some((extension, attr.attr.clone()))),
            _ => Err(ScimError::new(
                ScimType::InvalidValue,
                format!("{} is not an object", snippet(&key)),
            )),
        };
    }
    if attr.has_core_schema() {
        return Ok(Some((root, attr.attr.clone())));
    }
    if !create {
        return Ok(None);
    }
    list_extension(root, schema);
    let extension = root
        .entry(schema.clone())
        .or_insert_with(|| Value::Object(Map::new()));
    Ok(extension.as_object_mut().map(|e| (e, attr.attr.clone())))
}

fn starts_with_urn(text: &str) -> bool {
    text.get(..4)
        .is_some_and(|head| head.eq_ignore_ascii_case("urn:"))
}

/// A resource lists the extensions it carries in `schemas` (RFC 7643 §3); keep that true when a
/// PATCH brings a new one.
fn list_extension(root: &mut Map<String, Value>, urn: &str) {
    let Some(key) = map_key(root, "schemas") else {
        return;
    };
    if let Some(Value::Array(schemas)) = root.get_mut(&key)
        && !schemas
            .iter()
            .filter_map(Value::as_str)
            .any(|s| s.eq_ignore_ascii_case(urn))
    {
        schemas.push(Value::String(urn.to_owned()));
    }
}

/// `attr` or `schema:attr`, with neither sub-attribute nor filter.
fn apply_attr(
    container: &mut Map<String, Value>,
    name: &str,
    kind: PatchKind,
    value: Option<&Value>,
) -> Result<(), ScimError> {
    match kind {
        PatchKind::Add => add_member(container, name, required(value)?, 0),
        PatchKind::Replace => replace_member(container, name, required(value)?, 0),
        PatchKind::Remove => {
            let Some(key) = map_key(container, name) else {
                return Ok(());
            };
            let listed = value.filter(|v| !v.is_null());
            let remove_whole = match (listed, container.get_mut(&key)) {
                // Entra ID and OneLogin remove group members by listing them in `value` on the
                // whole attribute: only those go.
                (Some(listed), Some(Value::Array(items))) => {
                    let listed = as_list(listed);
                    items.retain(|item| !listed.iter().any(|l| same_value(item, l)));
                    items.is_empty()
                }
                _ => true,
            };
            if remove_whole {
                container.remove(&key);
            }
            Ok(())
        }
    }
}

/// `attr.sub_attr` without a filter: on a complex attribute, its sub-attribute; on a multi-valued
/// one, the sub-attribute of every value.
fn apply_sub_attr(
    container: &mut Map<String, Value>,
    name: &str,
    sub_attr: &str,
    kind: PatchKind,
    value: Option<&Value>,
) -> Result<(), ScimError> {
    if kind == PatchKind::Remove {
        let slot = map_key(container, name).and_then(|key| container.get_mut(&key));
        match slot {
            Some(Value::Object(complex)) => remove_member(complex, sub_attr),
            Some(Value::Array(items)) => {
                for item in items.iter_mut() {
                    if let Value::Object(complex) = item {
                        remove_member(complex, sub_attr);
                    }
                }
            }
            _ => {}
        }
        return Ok(());
    }
    let value = required(value)?;
    let key = map_key(container, name).unwrap_or_else(|| name.to_owned());
    let slot = container
        .entry(key)
        .or_insert_with(|| Value::Object(Map::new()));
    if slot.is_null() {
        *slot = Value::Object(Map::new());
    }
    match slot {
        Value::Object(complex) => set_member(complex, sub_attr, kind, value),
        Value::Array(items) => {
            for item in items.iter_mut() {
                if let Value::Object(complex) = item {
                    set_member(complex, sub_attr, kind, value)?;
                }
            }
            Ok(())
        }
        _ => Err(ScimError::new(
            ScimType::InvalidPath,
            format!("{} is not a complex attribute", snippet(name)),
        )),
    }
}

/// `attr[filter]` or `attr[filter].sub_attr`.
fn apply_filtered(
    container: &mut Map<String, Value>,
    name: &str,
    kind: PatchKind,
    path: &PatchPath,
    filter: &Filter,
    value: Option<&Value>,
    case_exact: &dyn Fn(&AttrPath) -> bool,
) -> Result<(), ScimError> {
    let key = map_key(container, name).unwrap_or_else(|| name.to_owned());
    let sub_attr = path.sub_attr_after_filter.as_deref();
    let mut empty = Vec::new();
    let items = match container.get_mut(&key) {
        Some(Value::Array(items)) => items,
        None | Some(Value::Null) => &mut empty,
        Some(_) => {
            return Err(ScimError::new(
                ScimType::InvalidPath,
                format!(
                    "a value filter needs a multi-valued attribute, and {} is not one",
                    snippet(name)
                ),
            ));
        }
    };
    let matched: Vec<bool> = items
        .iter()
        .map(|item| filter.matches_value(item, &path.attr, case_exact))
        .collect();
    let any_matched = matched.contains(&true);

    match kind {
        PatchKind::Remove => {
            if !any_matched {
                return Err(no_target(&path.attr));
            }
            if let Some(sub_attr) = sub_attr {
                for (item, _) in items.iter_mut().zip(&matched).filter(|(_, m)| **m) {
                    if let Value::Object(complex) = item {
                        remove_member(complex, sub_attr);
                    }
                }
                return Ok(());
            }
            let mut flags = matched.iter();
            items.retain(|_| !flags.next().copied().unwrap_or(false));
            // RFC 7644 §3.5.2.2: with every value removed the attribute is unassigned.
            if items.is_empty() {
                container.remove(&key);
            }
            Ok(())
        }
        PatchKind::Replace => {
            if !any_matched {
                return Err(no_target(&path.attr));
            }
            let value = required(value)?;
            for (item, _) in items.iter_mut().zip(&matched).filter(|(_, m)| **m) {
                match sub_attr {
                    Some(sub_attr) => set_in_value(item, sub_attr, PatchKind::Replace, value)?,
                    None => *item = value.clone(),
                }
            }
            Ok(())
        }
        PatchKind::Add => {
            let value = required(value)?;
            if any_matched {
                for (item, _) in items.iter_mut().zip(&matched).filter(|(_, m)| **m) {
                    let Some(sub_attr) = sub_attr else {
                        match (item, value) {
                            (Value::Object(current), Value::Object(members)) => {
                                for (member, member_value) in members {
                                    add_member(current, member, member_value, 1)?;
                                }
                            }
                            (item, _) => *item = value.clone(),
                        }
                        continue;
                    };
                    set_in_value(item, sub_attr, PatchKind::Add, value)?;
                }
                return Ok(());
            }
            // RFC 7644 leaves an `add` through a filter that selects nothing open. Entra ID sends
            // `emails[type eq "work"].value` for a user with no work email yet and expects one to
            // be made, so a filter of plain equalities describes the value to create.
            let pairs = filter.equalities().ok_or_else(|| no_target(&path.attr))?;
            let mut created = Map::new();
            for (member, member_value) in pairs {
                created.insert(member.to_owned(), member_value);
            }
            match (sub_attr, value) {
                (Some(sub_attr), _) => {
                    created.insert(sub_attr.to_owned(), value.clone());
                }
                (None, Value::Object(members)) => {
                    for (member, member_value) in members {
                        created.insert(member.clone(), member_value.clone());
                    }
                }
                (None, _) => {
                    return Err(ScimError::new(
                        ScimType::InvalidValue,
                        "adding through a value filter needs an object as \"value\"",
                    ));
                }
            }
            items.push(Value::Object(created));
            if !container.contains_key(&key) || container.get(&key).is_some_and(Value::is_null) {
                container.insert(key, Value::Array(empty));
            }
            Ok(())
        }
    }
}

/// Sets a sub-attribute on one value selected by a filter. The values of a simple multi-valued
/// attribute are their own `value`.
fn set_in_value(
    item: &mut Value,
    sub_attr: &str,
    kind: PatchKind,
    value: &Value,
) -> Result<(), ScimError> {
    match item {
        Value::Object(complex) => set_member(complex, sub_attr, kind, value),
        _ if sub_attr.eq_ignore_ascii_case("value") => {
            *item = value.clone();
            Ok(())
        }
        _ => Err(ScimError::new(
            ScimType::InvalidPath,
            format!(
                "the selected values have no sub-attribute {}",
                snippet(sub_attr)
            ),
        )),
    }
}

fn set_member(
    object: &mut Map<String, Value>,
    name: &str,
    kind: PatchKind,
    value: &Value,
) -> Result<(), ScimError> {
    if kind == PatchKind::Add {
        add_member(object, name, value, 1)
    } else {
        replace_member(object, name, value, 1)
    }
}

/// RFC 7644 §3.5.2.1: a new attribute is set; values are appended to a multi-valued attribute
/// (an equal value is not added twice); the members of a complex value are added to the complex
/// attribute; a single value is replaced.
fn add_member(
    object: &mut Map<String, Value>,
    name: &str,
    value: &Value,
    depth: usize,
) -> Result<(), ScimError> {
    let Some(key) = map_key(object, name) else {
        object.insert(name.to_owned(), value.clone());
        return Ok(());
    };
    let Some(slot) = object.get_mut(&key) else {
        return Ok(());
    };
    match (slot, value) {
        (Value::Array(items), _) => {
            for new in as_list(value) {
                if !items.iter().any(|item| same_value(item, new)) {
                    items.push(new.clone());
                }
            }
        }
        (Value::Object(current), Value::Object(members)) if depth < MAX_MERGE_DEPTH => {
            for (member, member_value) in members {
                add_member(current, member, member_value, depth + 1)?;
            }
        }
        (slot, _) => *slot = value.clone(),
    }
    Ok(())
}

/// RFC 7644 §3.5.2.3: the members given for a complex attribute replace those members and leave
/// the others; anything else (a multi-valued attribute included) is replaced whole; a missing
/// attribute is added.
fn replace_member(
    object: &mut Map<String, Value>,
    name: &str,
    value: &Value,
    depth: usize,
) -> Result<(), ScimError> {
    let key = map_key(object, name).unwrap_or_else(|| name.to_owned());
    match (object.get_mut(&key), value) {
        (Some(Value::Object(current)), Value::Object(members)) if depth < MAX_MERGE_DEPTH => {
            for (member, member_value) in members {
                replace_member(current, member, member_value, depth + 1)?;
            }
        }
        (Some(slot), _) => *slot = value.clone(),
        (None, _) => {
            object.insert(key, value.clone());
        }
    }
    Ok(())
}

fn remove_member(object: &mut Map<String, Value>, name: &str) {
    if let Some(key) = map_key(object, name) {
        object.remove(&key);
    }
}

/// Whether two values of a multi-valued attribute are the same value: complex values by their
/// `value` (and `type`, when both have one), so a group member is the same member whatever its
/// `display`; anything else by JSON equality.
fn same_value(a: &Value, b: &Value) -> bool {
    fn value_of(v: &Value) -> Option<&Value> {
        v.is_object().then(|| get_ignore_case(v, "value")).flatten()
    }
    if let (Some(value_a), Some(value_b)) = (value_of(a), value_of(b)) {
        let types_differ = match (get_ignore_case(a, "type"), get_ignore_case(b, "type")) {
            (Some(Value::String(type_a)), Some(Value::String(type_b))) => {
                !type_a.eq_ignore_ascii_case(type_b)
            }
            (Some(type_a), Some(type_b)) => type_a != type_b,
            _ => false,
        };
        return value_a == value_b && !types_differ;
    }
    a == b
}

fn as_list(value: &Value) -> Vec<&Value> {
    match value {
        Value::Array(items) => items.iter().collect(),
        other => vec![other],
    }
}

/// The existing key spelled like `name` ignoring ASCII case, preferring an exact match.
fn map_key(object: &Map<String, Value>, name: &str) -> Option<String> {
    if object.contains_key(name) {
        return Some(name.to_owned());
    }
    object
        .keys()
        .find(|k| k.eq_ignore_ascii_case(name))
        .cloned()
}

fn required(value: Option<&Value>) -> Result<&Value, ScimError> {
    value.ok_or_else(|| ScimError::new(ScimType::InvalidValue, "\"value\" is missing"))
}

fn no_target(attr: &AttrPath) -> ScimError {
    ScimError::new(
        ScimType::NoTarget,
        format!(
            "no value of {} matches the filter",
            snippet(&attr.to_string())
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
    const MEMBER_EXT: &str = "urn:ietf:params:scim:schemas:extension:latchkey:2.0:Member";
    const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";

    fn user() -> Value {
        json!({
            "schemas": [USER_SCHEMA, MEMBER_EXT],
            "id": "usr_1",
            "externalId": "ext-1",
            "userName": "a@b.c",
            "active": true,
            "name": {"givenName": "A", "familyName": "Liddell"},
            "emails": [
                {"value": "a@b.c", "type": "work", "primary": true},
                {"value": "a@home.org", "type": "home"}
            ],
            MEMBER_EXT: {"role": "member"}
        })
    }

    fn group() -> Value {
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
            "id": "grp_1",
            "displayName": "Engineering",
            "members": [
                {"value": "usr_1", "display": "One"},
                {"value": "usr_2", "display": "Two"}
            ]
        })
    }

    fn body(operations: Value) -> Value {
        json!({"schemas": [PATCH_OP_SCHEMA], "Operations": operations})
    }

    /// Parses and applies a PatchOp body, as a handler would.
    fn patch(resource: &mut Value, operations: Value) -> Result<(), ScimError> {
        let ops = parse_patch(&body(operations))?;
        apply_patch(resource, &ops)
    }

    fn member_ids(group: &Value) -> Vec<&str> {
        group["members"]
            .as_array()
            .map(|m| m.iter().filter_map(|v| v["value"].as_str()).collect())
            .unwrap_or_default()
    }

    // --- parse_patch ---

    #[test]
    fn parses_operations() {
        let ops = parse_patch(&body(json!([
            {"op": "add", "path": "members", "value": [{"value": "usr_3"}]},
            {"op": "Replace", "path": "name.givenName", "value": "B"},
            {"op": "REMOVE", "path": "members[value eq \"usr_1\"]"},
            {"op": "replace", "value": {"active": false}}
        ])))
        .unwrap();
        assert_eq!(ops.len(), 4);
        assert_eq!(ops[0].op, PatchKind::Add);
        assert_eq!(ops[1].op, PatchKind::Replace);
        assert_eq!(ops[2].op, PatchKind::Remove);
        assert!(
            ops[1]
                .path
                .as_ref()
                .unwrap()
                .attr
                .is_sub("name", "givenName")
        );
        assert!(ops[2].path.as_ref().unwrap().value_filter.is_some());
        assert!(ops[2].value.is_none());
        assert!(ops[3].path.is_none());
        assert_eq!(ops[3].value, Some(json!({"active": false})));
    }

    #[test]
    fn member_names_of_the_body_ignore_case() {
        let ops = parse_patch(&json!({
            "Schemas": ["URN:IETF:PARAMS:SCIM:API:MESSAGES:2.0:PATCHOP"],
            "operations": [{"Op": "Add", "Path": "title", "Value": "x"}]
        }))
        .unwrap();
        assert_eq!(ops[0].op, PatchKind::Add);
        assert_eq!(ops[0].value, Some(json!("x")));
    }

    #[test]
    fn an_empty_path_means_the_resource() {
        let ops = parse_patch(&body(
            json!([{"op": "replace", "path": "", "value": {"a": 1}}]),
        ))
        .unwrap();
        assert!(ops[0].path.is_none());
    }

    #[test]
    fn up_to_the_operation_limit() {
        let one = json!({"op": "replace", "path": "title", "value": "x"});
        let ops = parse_patch(&body(Value::Array(vec![one.clone(); MAX_OPERATIONS]))).unwrap();
        assert_eq!(ops.len(), MAX_OPERATIONS);
        let error = parse_patch(&body(Value::Array(vec![one; MAX_OPERATIONS + 1]))).unwrap_err();
        assert_eq!(error.scim_type, ScimType::InvalidSyntax);
    }

    #[test]
    fn malformed_bodies_are_refused() {
        let cases = [
            (json!([]), ScimType::InvalidSyntax),
            (json!("x"), ScimType::InvalidSyntax),
            (
                json!({"Operations": [{"op": "add", "path": "a", "value": 1}]}),
                ScimType::InvalidSyntax,
            ),
            (
                json!({"schemas": PATCH_OP_SCHEMA, "Operations": []}),
                ScimType::InvalidSyntax,
            ),
            (
                json!({"schemas": [USER_SCHEMA], "Operations": [{"op": "add", "path": "a", "value": 1}]}),
                ScimType::InvalidSyntax,
            ),
            (
                json!({"schemas": [PATCH_OP_SCHEMA]}),
                ScimType::InvalidSyntax,
            ),
            (
                json!({"schemas": [PATCH_OP_SCHEMA], "Operations": {}}),
                ScimType::InvalidSyntax,
            ),
            (body(json!([])), ScimType::InvalidSyntax),
            (body(json!(["add"])), ScimType::InvalidSyntax),
            (
                body(json!([{"path": "a", "value": 1}])),
                ScimType::InvalidSyntax,
            ),
            (
                body(json!([{"op": 1, "path": "a", "value": 1}])),
                ScimType::InvalidSyntax,
            ),
            (
                body(json!([{"op": "move", "path": "a", "value": 1}])),
                ScimType::InvalidSyntax,
            ),
            (body(json!([{"op": "remove"}])), ScimType::NoTarget),
            (
                body(json!([{"op": "remove", "path": " "}])),
                ScimType::NoTarget,
            ),
            (
                body(json!([{"op": "add", "path": "a"}])),
                ScimType::InvalidValue,
            ),
            (body(json!([{"op": "replace"}])), ScimType::InvalidValue),
            (
                body(json!([{"op": "replace", "value": "x"}])),
                ScimType::InvalidValue,
            ),
            (
                body(json!([{"op": "add", "value": [1]}])),
                ScimType::InvalidValue,
            ),
            (
                body(json!([{"op": "add", "path": 7, "value": 1}])),
                ScimType::InvalidPath,
            ),
            (
                body(json!([{"op": "add", "path": "a b", "value": 1}])),
                ScimType::InvalidPath,
            ),
            (
                body(json!([{"op": "remove", "path": "members[value eq]"}])),
                ScimType::InvalidPath,
            ),
        ];
        for (request, scim_type) in cases {
            let error = parse_patch(&request).unwrap_err();
            assert_eq!(error.scim_type, scim_type, "{request}");
        }
    }

    #[test]
    fn errors_name_the_operation_and_quote_briefly() {
        let long = "x".repeat(3000);
        let error = parse_patch(&body(json!([
            {"op": "add", "path": "a", "value": 1},
            {"op": long, "path": "a", "value": 1}
        ])))
        .unwrap_err();
        assert!(error.detail.starts_with("operation 2:"), "{}", error.detail);
        assert!(error.detail.len() < 100, "{}", error.detail);

        let error = parse_patch(&body(json!([
            {"op": "remove", "path": format!("members[value eq \"{long}\"]x")}
        ])))
        .unwrap_err();
        assert_eq!(error.scim_type, ScimType::InvalidPath);
        assert!(error.detail.len() < 100, "{}", error.detail);
    }

    // --- Okta ---

    #[test]
    fn okta_deactivates_without_path() {
        let mut resource = user();
        patch(
            &mut resource,
            json!([{"op": "replace", "value": {"active": false}}]),
        )
        .unwrap();
        assert_eq!(resource["active"], json!(false));
        assert_eq!(resource["userName"], json!("a@b.c"));
    }

    #[test]
    fn okta_renames_a_group_and_manages_members() {
        let mut resource = group();
        patch(
            &mut resource,
            json!([{"op": "replace", "value": {"id": "grp_1", "displayName": "Platform"}}]),
        )
        .unwrap();
        assert_eq!(resource["displayName"], json!("Platform"));
        assert_eq!(member_ids(&resource), ["usr_1", "usr_2"]);

        patch(
            &mut resource,
            json!([{"op": "add", "path": "members", "value": [{"value": "usr_3", "display": "Three"}]}]),
        )
        .unwrap();
        assert_eq!(member_ids(&resource), ["usr_1", "usr_2", "usr_3"]);

        patch(
            &mut resource,
            json!([{"op": "remove", "path": "members[value eq \"usr_2\"]"}]),
        )
        .unwrap();
        assert_eq!(member_ids(&resource), ["usr_1", "usr_3"]);
    }

    #[test]
    fn okta_replaces_an_extension_object_member_by_member() {
        let mut resource = user();
        resource[ENTERPRISE] = json!({"employeeNumber": "7", "department": "R&D"});
        patch(
            &mut resource,
            json!([{"op": "replace", "value": {ENTERPRISE: {"department": "Sales"}}}]),
        )
        .unwrap();
        assert_eq!(
            resource[ENTERPRISE],
            json!({"employeeNumber": "7", "department": "Sales"})
        );
    }

    // --- Entra ID ---

    #[test]
    fn entra_replaces_active_with_a_string_left_as_is() {
        let mut resource = user();
        patch(
            &mut resource,
            json!([{"op": "Replace", "path": "active", "value": "False"}]),
        )
        .unwrap();
        assert_eq!(resource["active"], json!("False"));
    }

    #[test]
    fn entra_adds_and_removes_members_by_list() {
        let mut resource = group();
        patch(
            &mut resource,
            json!([{"op": "Add", "path": "members", "value": [{"value": "usr_3"}, {"value": "usr_1"}]}]),
        )
        .unwrap();
        assert_eq!(member_ids(&resource), ["usr_1", "usr_2", "usr_3"]);
        // The existing member keeps its display: usr_1 was not added twice.
        assert_eq!(resource["members"][0]["display"], json!("One"));

        patch(
            &mut resource,
            json!([{"op": "Remove", "path": "members", "value": [{"value": "usr_1"}, {"value": "usr_9"}]}]),
        )
        .unwrap();
        assert_eq!(member_ids(&resource), ["usr_2", "usr_3"]);

        patch(
            &mut resource,
            json!([{"op": "Remove", "path": "members", "value": [{"value": "usr_2"}, {"value": "usr_3"}]}]),
        )
        .unwrap();
        assert!(resource.get("members").is_none());
    }

    #[test]
    fn entra_adds_members_to_a_group_without_any() {
        let mut resource = json!({"displayName": "Empty"});
        patch(
            &mut resource,
            json!([{"op": "Add", "path": "members", "value": [{"value": "usr_1"}]}]),
        )
        .unwrap();
        assert_eq!(member_ids(&resource), ["usr_1"]);
    }

    #[test]
    fn entra_sends_dotted_and_urn_keys_without_path() {
        let mut resource = user();
        patch(
            &mut resource,
            json!([
                {"op": "Add", "value": {
                    "name.givenName": "Barbara",
                    "name.formatted": "Barbara Liddell",
                    "emails[type eq \"work\"].value": "barbara@b.c",
                    "displayName": "Barbara",
                    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber": "701984",
                    "urn:ietf:params:scim:schemas:extension:latchkey:2.0:Member:role": "admin"
                }},
                {"op": "Replace", "value": {"name.familyName": "Jensen", "active": "True"}}
            ]),
        )
        .unwrap();
        assert_eq!(
            resource["name"],
            json!({"givenName": "Barbara", "familyName": "Jensen", "formatted": "Barbara Liddell"})
        );
        assert_eq!(resource["emails"][0]["value"], json!("barbara@b.c"));
        assert_eq!(resource["emails"][1]["value"], json!("a@home.org"));
        assert_eq!(resource["displayName"], json!("Barbara"));
        assert_eq!(resource[ENTERPRISE]["employeeNumber"], json!("701984"));
        assert_eq!(resource[MEMBER_EXT]["role"], json!("admin"));
        assert_eq!(resource["active"], json!("True"));
        // The new extension is listed in `schemas`, the existing one not twice.
        let schemas = resource["schemas"].as_array().unwrap();
        assert_eq!(schemas.len(), 3);
        assert!(schemas.contains(&json!(ENTERPRISE)));
    }

    #[test]
    fn entra_adds_a_work_email_to_a_user_without_one() {
        let mut resource = json!({"userName": "a"});
        patch(
            &mut resource,
            json!([{"op": "Add", "path": "emails[type eq \"work\"].value", "value": "a@b.c"}]),
        )
        .unwrap();
        assert_eq!(
            resource["emails"],
            json!([{"type": "work", "value": "a@b.c"}])
        );

        // A whole value through a filter, on an attribute the user does not have yet.
        let mut resource = user();
        patch(
            &mut resource,
            json!([{"op": "Add", "path": "addresses[type eq \"work\"]", "value": {"locality": "Oslo"}}]),
        )
        .unwrap();
        assert_eq!(
            resource["addresses"],
            json!([{"type": "work", "locality": "Oslo"}])
        );
    }

    #[test]
    fn entra_sets_and_removes_the_manager() {
        let mut resource = user();
        let manager = format!("{ENTERPRISE}:manager");
        patch(
            &mut resource,
            json!([{"op": "Add", "path": manager, "value": "usr_boss"}]),
        )
        .unwrap();
        assert_eq!(resource[ENTERPRISE]["manager"], json!("usr_boss"));
        patch(&mut resource, json!([{"op": "Remove", "path": manager}])).unwrap();
        assert_eq!(resource[ENTERPRISE], json!({}));
    }

    // --- OneLogin ---

    #[test]
    fn onelogin_updates_a_user_and_group_membership() {
        let mut resource = user();
        patch(
            &mut resource,
            json!([{"op": "replace", "value": {
                "name": {"givenName": "Alice"},
                "emails": [{"value": "alice@new.example", "type": "work", "primary": true}],
                "active": true
            }}]),
        )
        .unwrap();
        // A complex attribute keeps members not given; a multi-valued one is replaced whole.
        assert_eq!(
            resource["name"],
            json!({"givenName": "Alice", "familyName": "Liddell"})
        );
        assert_eq!(resource["emails"].as_array().unwrap().len(), 1);

        let mut resource = group();
        patch(
            &mut resource,
            json!([
                {"op": "add", "path": "members", "value": [{"value": "usr_3", "display": "Three"}]},
                {"op": "remove", "path": "members", "value": [{"value": "usr_1"}]}
            ]),
        )
        .unwrap();
        assert_eq!(member_ids(&resource), ["usr_2", "usr_3"]);
    }

    // --- RFC 7644 §3.5.2 semantics ---

    #[test]
    fn add_sets_merges_and_appends() {
        let mut resource = user();
        patch(
            &mut resource,
            json!([
                {"op": "add", "path": "nickName", "value": "Al"},
                {"op": "add", "path": "userName", "value": "new@b.c"},
                {"op": "add", "path": "name", "value": {"middleName": "P"}},
                {"op": "add", "path": "emails", "value": {"value": "x@y.z", "type": "other"}},
                {"op": "add", "path": "emails", "value": [{"value": "a@b.c", "type": "work"}]}
            ]),
        )
        .unwrap();
        assert_eq!(resource["nickName"], json!("Al"));
        assert_eq!(resource["userName"], json!("new@b.c"));
        assert_eq!(
            resource["name"],
            json!({"givenName": "A", "familyName": "Liddell", "middleName": "P"})
        );
        let emails = resource["emails"].as_array().unwrap();
        assert_eq!(emails.len(), 3);
        assert_eq!(emails[2]["value"], json!("x@y.z"));
    }

    #[test]
    fn add_of_a_same_value_with_another_type_is_a_new_value() {
        let mut resource = user();
        patch(
            &mut resource,
            json!([{"op": "add", "path": "emails", "value": [{"value": "a@b.c", "type": "home"}]}]),
        )
        .unwrap();
        assert_eq!(resource["emails"].as_array().unwrap().len(), 3);
    }

    #[test]
    fn add_appends_simple_values_once() {
        let mut resource = json!({"tags": ["a"]});
        patch(
            &mut resource,
            json!([{"op": "add", "path": "tags", "value": ["a", "b"]}]),
        )
        .unwrap();
        assert_eq!(resource["tags"], json!(["a", "b"]));
    }

    #[test]
    fn add_through_a_matching_filter() {
        let mut resource = user();
        patch(
            &mut resource,
            json!([
                {"op": "add", "path": "emails[type eq \"work\"].display", "value": "Work"},
                {"op": "add", "path": "emails[type eq \"home\"]", "value": {"primary": false}}
            ]),
        )
        .unwrap();
        assert_eq!(resource["emails"][0]["display"], json!("Work"));
        assert_eq!(resource["emails"][1]["primary"], json!(false));
        assert_eq!(resource["emails"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn add_through_a_filter_that_cannot_describe_a_value_is_no_target() {
        let mut resource = user();
        let error = patch(
            &mut resource,
            json!([{"op": "add", "path": "emails[value co \"zzz\"].display", "value": "x"}]),
        )
        .unwrap_err();
        assert_eq!(error.scim_type, ScimType::NoTarget);
        let error = patch(
            &mut resource,
            json!([{"op": "add", "path": "emails[type eq \"x\"]", "value": "plain"}]),
        )
        .unwrap_err();
        assert_eq!(error.scim_type, ScimType::InvalidValue);
    }

    #[test]
    fn replace_sets_merges_and_replaces_whole_lists() {
        let mut resource = user();
        patch(
            &mut resource,
            json!([
                {"op": "replace", "path": "userName", "value": "z@b.c"},
                {"op": "replace", "path": "name", "value": {"givenName": "Z"}},
                {"op": "replace", "path": "emails", "value": [{"value": "z@b.c"}]},
                {"op": "replace", "path": "title", "value": "Boss"}
            ]),
        )
        .unwrap();
        assert_eq!(resource["userName"], json!("z@b.c"));
        assert_eq!(
            resource["name"],
            json!({"givenName": "Z", "familyName": "Liddell"})
        );
        assert_eq!(resource["emails"], json!([{"value": "z@b.c"}]));
        assert_eq!(resource["title"], json!("Boss"));
    }

    #[test]
    fn replace_a_sub_attribute_of_filtered_values() {
        let mut resource = user();
        patch(
            &mut resource,
            json!([{"op": "replace", "path": "emails[type eq \"work\"].value", "value": "w@b.c"}]),
        )
        .unwrap();
        assert_eq!(resource["emails"][0]["value"], json!("w@b.c"));
        assert_eq!(resource["emails"][0]["primary"], json!(true));
        assert_eq!(resource["emails"][1]["value"], json!("a@home.org"));
    }

    #[test]
    fn replace_filtered_values_whole() {
        let mut resource = user();
        patch(
            &mut resource,
            json!([{"op": "replace", "path": "emails[type eq \"home\"]", "value": {"value": "h@b.c", "type": "home"}}]),
        )
        .unwrap();
        assert_eq!(
            resource["emails"][1],
            json!({"value": "h@b.c", "type": "home"})
        );
    }

    #[test]
    fn replace_or_remove_through_a_filter_matching_nothing_is_no_target() {
        for operation in [
            json!({"op": "replace", "path": "emails[type eq \"other\"].value", "value": "x"}),
            json!({"op": "replace", "path": "phoneNumbers[type eq \"work\"]", "value": {"value": "1"}}),
            json!({"op": "remove", "path": "emails[type eq \"other\"]"}),
            json!({"op": "remove", "path": "emails[type eq \"other\"].display"}),
            json!({"op": "remove", "path": "members[value eq \"usr_1\"]"}),
            json!({"op": "remove", "path": "urn:ietf:params:scim:schemas:extension:other:2.0:X:list[value eq \"1\"]"}),
        ] {
            let mut resource = user();
            let error = patch(&mut resource, json!([operation])).unwrap_err();
            assert_eq!(error.scim_type, ScimType::NoTarget, "{operation}");
            assert_eq!(resource, user());
        }
    }

    #[test]
    fn a_filter_on_a_single_valued_attribute_is_invalid_path() {
        let mut resource = user();
        let error = patch(
            &mut resource,
            json!([{"op": "remove", "path": "userName[value eq \"a@b.c\"]"}]),
        )
        .unwrap_err();
        assert_eq!(error.scim_type, ScimType::InvalidPath);
    }

    #[test]
    fn remove_attributes_sub_attributes_and_values() {
        let mut resource = user();
        patch(
            &mut resource,
            json!([
                {"op": "remove", "path": "name.givenName"},
                {"op": "remove", "path": "emails[type eq \"work\"].primary"},
                {"op": "remove", "path": "externalId"},
                {"op": "remove", "path": "nosuch"},
                {"op": "remove", "path": "nosuch.sub"},
                {"op": "remove", "path": "urn:ietf:params:scim:schemas:extension:other:2.0:X:y"}
            ]),
        )
        .unwrap();
        assert_eq!(resource["name"], json!({"familyName": "Liddell"}));
        assert_eq!(
            resource["emails"][0],
            json!({"value": "a@b.c", "type": "work"})
        );
        assert!(resource.get("externalId").is_none());

        patch(
            &mut resource,
            json!([{"op": "remove", "path": "emails[type eq \"work\" or type eq \"home\"]"}]),
        )
        .unwrap();
        // Every value gone: the attribute is unassigned.
        assert!(resource.get("emails").is_none());
    }

    #[test]
    fn remove_a_whole_multi_valued_attribute() {
        let mut resource = group();
        patch(&mut resource, json!([{"op": "remove", "path": "members"}])).unwrap();
        assert!(resource.get("members").is_none());
    }

    #[test]
    fn a_sub_attribute_of_a_multi_valued_attribute_means_every_value() {
        let mut resource = user();
        patch(
            &mut resource,
            json!([{"op": "remove", "path": "emails.primary"}]),
        )
        .unwrap();
        assert!(resource["emails"][0].get("primary").is_none());
        patch(
            &mut resource,
            json!([{"op": "replace", "path": "emails.display", "value": "d"}]),
        )
        .unwrap();
        assert_eq!(resource["emails"][1]["display"], json!("d"));
    }

    #[test]
    fn member_ids_compare_case_exactly() {
        let mut resource = json!({"members": [{"value": "usr_aB"}, {"value": "usr_Ab"}]});
        patch(
            &mut resource,
            json!([{"op": "remove", "path": "members[value eq \"usr_Ab\"]"}]),
        )
        .unwrap();
        assert_eq!(resource["members"], json!([{"value": "usr_aB"}]));
        let error = patch(
            &mut resource,
            json!([{"op": "remove", "path": "members[value eq \"USR_AB\"]"}]),
        )
        .unwrap_err();
        assert_eq!(error.scim_type, ScimType::NoTarget);
    }

    #[test]
    fn other_values_in_filters_ignore_case_unless_the_caller_says() {
        let ops = parse_patch(&body(json!([
            {"op": "remove", "path": "emails[type eq \"WORK\"]"}
        ])))
        .unwrap();
        let mut resource = user();
        apply_patch(&mut resource, &ops).unwrap();
        assert_eq!(resource["emails"].as_array().unwrap().len(), 1);

        let mut resource = user();
        let error =
            apply_patch_with(&mut resource, &ops, &|p| p.is_sub("emails", "type")).unwrap_err();
        assert_eq!(error.scim_type, ScimType::NoTarget);
    }

    #[test]
    fn schema_prefixed_paths() {
        let mut resource = user();
        patch(
            &mut resource,
            json!([
                {"op": "replace", "path": "urn:ietf:params:scim:schemas:core:2.0:User:active", "value": false},
                {"op": "replace", "path": "urn:ietf:params:scim:schemas:core:2.0:User:name.givenName", "value": "Q"},
                {"op": "replace", "path": "urn:ietf:params:scim:schemas:extension:latchkey:2.0:Member:role", "value": "owner"}
            ]),
        )
        .unwrap();
        assert_eq!(resource["active"], json!(false));
        assert_eq!(resource["name"]["givenName"], json!("Q"));
        assert_eq!(resource[MEMBER_EXT], json!({"role": "owner"}));

        patch(
            &mut resource,
            json!([{"op": "remove", "path": "urn:ietf:params:scim:schemas:extension:latchkey:2.0:Member:role"}]),
        )
        .unwrap();
        assert_eq!(resource[MEMBER_EXT], json!({}));

        patch(&mut resource, json!([{"op": "remove", "path": MEMBER_EXT}])).unwrap();
        assert!(resource.get(MEMBER_EXT).is_none());
    }

    #[test]
    fn whole_extension_by_path() {
        let mut resource = user();
        patch(
            &mut resource,
            json!([{"op": "add", "path": ENTERPRISE, "value": {"department": "Ops"}}]),
        )
        .unwrap();
        assert_eq!(resource[ENTERPRISE], json!({"department": "Ops"}));
        assert!(
            resource["schemas"]
                .as_array()
                .unwrap()
                .contains(&json!(ENTERPRISE))
        );
    }

    #[test]
    fn core_schema_urn_keys_hold_core_attributes() {
        let mut resource = user();
        patch(
            &mut resource,
            json!([{"op": "replace", "value": {USER_SCHEMA: {"displayName": "X", "name.givenName": "G"}}}]),
        )
        .unwrap();
        assert_eq!(resource["displayName"], json!("X"));
        assert_eq!(resource["name"]["givenName"], json!("G"));
        assert!(resource.get(USER_SCHEMA).is_none());

        let error = patch(
            &mut resource,
            json!([{"op": "remove", "path": USER_SCHEMA}]),
        )
        .unwrap_err();
        assert_eq!(error.scim_type, ScimType::InvalidPath);
    }

    #[test]
    fn an_extension_that_is_not_an_object_is_invalid_value() {
        let mut resource = json!({MEMBER_EXT: "oops"});
        let error = patch(
            &mut resource,
            json!([{"op": "replace", "path": format!("{MEMBER_EXT}:role"), "value": "x"}]),
        )
        .unwrap_err();
        assert_eq!(error.scim_type, ScimType::InvalidValue);
    }

    #[test]
    fn attribute_names_ignore_case_and_keep_the_resource_spelling() {
        let mut resource = user();
        patch(
            &mut resource,
            json!([
                {"op": "replace", "path": "USERNAME", "value": "u@b.c"},
                {"op": "replace", "value": {"Name.GIVENNAME": "G", "ACTIVE": false}},
                {"op": "add", "path": "NickName", "value": "N"},
                {"op": "remove", "path": "EXTERNALID"}
            ]),
        )
        .unwrap();
        assert_eq!(resource["userName"], json!("u@b.c"));
        assert!(resource.get("USERNAME").is_none());
        assert_eq!(resource["name"]["givenName"], json!("G"));
        assert_eq!(resource["active"], json!(false));
        assert!(resource.get("ACTIVE").is_none());
        assert_eq!(resource["NickName"], json!("N"));
        assert!(resource.get("externalId").is_none());
    }

    #[test]
    fn a_failing_operation_leaves_the_resource_unchanged() {
        let mut resource = user();
        let error = patch(
            &mut resource,
            json!([
                {"op": "replace", "path": "userName", "value": "changed"},
                {"op": "remove", "path": "emails[type eq \"fax\"]"}
            ]),
        )
        .unwrap_err();
        assert_eq!(error.scim_type, ScimType::NoTarget);
        assert!(error.detail.starts_with("operation 2:"), "{}", error.detail);
        assert_eq!(resource, user());
    }

    #[test]
    fn hand_built_operations_are_checked_too() {
        let mut resource = user();
        let remove_all = PatchOp {
            op: PatchKind::Remove,
            path: None,
            value: None,
        };
        let error = apply_patch(&mut resource, &[remove_all]).unwrap_err();
        assert_eq!(error.scim_type, ScimType::NoTarget);

        let add_nothing = PatchOp {
            op: PatchKind::Add,
            path: Some(parse_patch_path("title").unwrap()),
            value: None,
        };
        let error = apply_patch(&mut resource, &[add_nothing]).unwrap_err();
        assert_eq!(error.scim_type, ScimType::InvalidValue);

        let bad_key = PatchOp {
            op: PatchKind::Add,
            path: None,
            value: Some(json!({"a b": 1})),
        };
        let error = apply_patch(&mut resource, &[bad_key]).unwrap_err();
        assert_eq!(error.scim_type, ScimType::InvalidPath);
        assert_eq!(resource, user());
    }

    #[test]
    fn the_resource_must_be_an_object() {
        let ops = parse_patch(&body(json!([{"op": "add", "path": "a", "value": 1}]))).unwrap();
        let mut resource = json!([1]);
        let error = apply_patch(&mut resource, &ops).unwrap_err();
        assert_eq!(error.scim_type, ScimType::InvalidValue);
    }

    #[test]
    fn a_sub_attribute_of_a_simple_value_is_invalid_path() {
        let mut resource = user();
        let error = patch(
            &mut resource,
            json!([{"op": "replace", "path": "userName.x", "value": "y"}]),
        )
        .unwrap_err();
        assert_eq!(error.scim_type, ScimType::InvalidPath);
    }

    #[test]
    fn deeply_nested_values_are_replaced_not_recursed_into() {
        let mut deep = json!(1);
        let mut current = json!(1);
        for _ in 0..50 {
            deep = json!({ "a": deep });
            current = json!({ "a": current, "keep": true });
        }
        let mut resource = json!({ "x": current });
        patch(
            &mut resource,
            json!([{"op": "replace", "path": "x", "value": deep}]),
        )
        .unwrap();
        assert_eq!(resource["x"]["keep"], json!(true));
    }

    #[test]
    fn same_value_rules() {
        assert!(same_value(
            &json!({"value": "u", "display": "x"}),
            &json!({"value": "u"})
        ));
        assert!(same_value(
            &json!({"value": "u", "type": "Work"}),
            &json!({"value": "u", "type": "work"})
        ));
        assert!(!same_value(
            &json!({"value": "u", "type": "work"}),
            &json!({"value": "u", "type": "home"})
        ));
        assert!(!same_value(&json!({"value": "u"}), &json!({"value": "U"})));
        assert!(same_value(&json!({"a": 1}), &json!({"a": 1})));
        assert!(same_value(&json!("a"), &json!("a")));
        assert!(!same_value(&json!("a"), &json!({"value": "a"})));
    }
}
