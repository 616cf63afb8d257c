//! Attribute paths (`userName`, `name.givenName`, `urn:…:User:userName`) and the PATCH `path`
//! grammar of RFC 7644 §3.5.2 (`PATH = attrPath / valuePath [subAttr]`).
//!
//! Owns the syntax only: what a path designates in a resource is decided by `filter.rs` and
//! `patch.rs`. Attribute names are case-insensitive (RFC 7643 §2.1), so every comparison helper
//! here ignores ASCII case.

use std::fmt;

use serde_json::Value;

use super::filter::{Filter, MAX_FILTER_LEN, parse_value_filter};
use super::{ScimError, ScimType, snippet};

/// The schema URN prefix of the core resources (User, Group): their attributes sit at the top of
/// the JSON object, whereas an extension's sit inside an object named after the extension.
const CORE_SCHEMA_PREFIX: &str = "urn:ietf:params:scim:schemas:core:";

/// An attribute path: `[schema ":"] attr ["." sub_attr]` (RFC 7644 §3.4.2.2, `attrPath`).
///
/// A path that names a whole schema extension (`urn:…:extension:enterprise:2.0:User`) is an
/// attribute of its own: `schema` is `None` and `attr` is the full URN, because that is the key
/// the extension's object has in the resource.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AttrPath {
    /// The schema URN the attribute belongs to, when the path spelled it out.
    pub schema: Option<String>,
    /// The attribute name, as written.
    pub attr: String,
    /// The sub-attribute of a complex attribute, as written.
    pub sub_attr: Option<String>,
}

impl AttrPath {
    /// A path to a top-level attribute without schema or sub-attribute.
    pub fn new(attr: impl Into<String>) -> Self {
        Self {
            schema: None,
            attr: attr.into(),
            sub_attr: None,
        }
    }

    /// A path to a sub-attribute of a complex attribute (`name.givenName`).
    pub fn with_sub_attr(attr: impl Into<String>, sub_attr: impl Into<String>) -> Self {
        Self {
            schema: None,
            attr: attr.into(),
            sub_attr: Some(sub_attr.into()),
        }
    }

    /// Parses an `attrPath`; a malformed one is `invalidPath`.
    pub fn parse(text: &str) -> Result<Self, ScimError> {
        Self::parse_as(text, ScimType::InvalidPath)
    }

    /// Parses an `attrPath`, reporting a malformed one with the caller's error type (a filter
    /// reports `invalidFilter`, a PATCH path `invalidPath`).
    pub(crate) fn parse_as(text: &str, scim_type: ScimType) -> Result<Self, ScimError> {
        let invalid = |why: &str| {
            ScimError::new(
                scim_type,
                format!("{why} in attribute path {}", snippet(text)),
            )
        };
        if text.is_empty() {
            return Err(ScimError::new(scim_type, "empty attribute path"));
        }
        if text.len() > MAX_FILTER_LEN {
            return Err(ScimError::new(scim_type, "attribute path is too long"));
        }
        if !starts_with_ignore_case(text, "urn:") {
            let (attr, sub_attr) = split_names(text).ok_or_else(|| invalid("bad name"))?;
            return Ok(Self {
                schema: None,
                attr,
                sub_attr,
            });
        }
        let (schema, rest) = text.rsplit_once(':').ok_or_else(|| invalid("bad URN"))?;
        // "urn:" NID ":" NSS: a schema needs at least the namespace identifier and one segment.
        let urn_ok = schema.matches(':').count() >= 2
            && schema
                .chars()
                .all(|c| c.is_ascii_graphic() && !"[]()\"".contains(c))
            && !schema.split(':').any(str::is_empty);
        if !urn_ok {
            return Err(invalid("bad schema URN"));
        }
        // Schema ids end with a version and a resource type (`…:enterprise:2.0:User`); when the
        // segment before the last colon is a version, the text names the schema itself, whose
        // object is a top-level attribute of the resource.
        let last_schema_segment = schema.rsplit(':').next().unwrap_or_default();
        if is_version(last_schema_segment) {
            if !is_attr_name(rest) {
                return Err(invalid("bad schema URN"));
            }
            return Ok(Self::new(text));
        }
        let (attr, sub_attr) = split_names(rest).ok_or_else(|| invalid("bad name"))?;
        Ok(Self {
            schema: Some(schema.to_owned()),
            attr,
            sub_attr,
        })
    }

    /// True when this is the top-level attribute `name` (case-insensitive), without sub-attribute.
    /// The schema prefix is not compared: `urn:…:User:userName` is `userName`.
    pub fn is(&self, name: &str) -> bool {
        self.sub_attr.is_none() && self.attr.eq_ignore_ascii_case(name)
    }

    /// True when this is `attr.sub_attr` (case-insensitive).
    pub fn is_sub(&self, attr: &str, sub_attr: &str) -> bool {
        self.attr.eq_ignore_ascii_case(attr)
            && self
                .sub_attr
                .as_deref()
                .is_some_and(|s| s.eq_ignore_ascii_case(sub_attr))
    }

    /// True when the attribute (ignoring any sub-attribute) is `name` (case-insensitive).
    pub fn attr_is(&self, name: &str) -> bool {
        self.attr.eq_ignore_ascii_case(name)
    }

    /// True when the path names the schema `urn` explicitly (case-insensitive).
    pub fn schema_is(&self, urn: &str) -> bool {
        self.schema
            .as_deref()
            .is_some_and(|s| s.eq_ignore_ascii_case(urn))
    }

    /// When the path is `schema:attr` and the resource has that whole URN as a key (or lists it in
    /// `schemas`), the path names the extension object itself rather than an attribute in it.
    /// Catches extension ids that do not end in a version and a resource type.
    pub(crate) fn whole_extension_key(&self, resource: &Value) -> Option<String> {
        let schema = self.schema.as_deref()?;
        if self.sub_attr.is_some() {
            return None;
        }
        let full = format!("{schema}:{}", self.attr);
        let is_key = find_key(resource, &full).is_some();
        let is_listed = get_ignore_case(resource, "schemas")
            .and_then(Value::as_array)
            .is_some_and(|schemas| {
                schemas
                    .iter()
                    .filter_map(Value::as_str)
                    .any(|s| s.eq_ignore_ascii_case(&full))
            });
        (is_key || is_listed).then_some(full)
    }

    /// True when the path is a core schema URN itself (`urn:…:core:2.0:User`), which some
    /// clients use as a key holding core attributes.
    pub(crate) fn is_core_schema_itself(&self) -> bool {
        self.schema.is_none()
            && self.sub_attr.is_none()
            && starts_with_ignore_case(&self.attr, CORE_SCHEMA_PREFIX)
    }

    /// True when the explicit schema is a core one, whose attributes are top-level keys.
    pub(crate) fn has_core_schema(&self) -> bool {
        self.schema
            .as_deref()
            .is_some_and(|s| starts_with_ignore_case(s, CORE_SCHEMA_PREFIX))
    }
}

impl fmt::Display for AttrPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(schema) = &self.schema {
            write!(f, "{schema}:")?;
        }
        f.write_str(&self.attr)?;
        if let Some(sub_attr) = &self.sub_attr {
            write!(f, ".{sub_attr}")?;
        }
        Ok(())
    }
}

/// The target of a PATCH operation (RFC 7644 §3.5.2): an attribute, optionally narrowed to the
/// values of a multi-valued attribute matching `value_filter`, optionally to one sub-attribute of
/// those values (`emails[type eq "work"].value`).
#[derive(Debug, Clone, PartialEq)]
pub struct PatchPath {
    /// The attribute operated on.
    pub attr: AttrPath,
    /// Selects values of a multi-valued attribute; paths inside it are relative to each value.
    pub value_filter: Option<Filter>,
    /// The sub-attribute of the selected values (only with a `value_filter`).
    pub sub_attr_after_filter: Option<String>,
}

/// Parses a PATCH `path`; anything malformed is `invalidPath`.
pub fn parse_patch_path(text: &str) -> Result<PatchPath, ScimError> {
    let text = text.trim();
    if text.len() > MAX_FILTER_LEN {
        return Err(ScimError::new(
            ScimType::InvalidPath,
            format!("a path is at most {MAX_FILTER_LEN} bytes"),
        ));
    }
    let Some(open) = text.find('[') else {
        return Ok(PatchPath {
            attr: AttrPath::parse(text)?,
            value_filter: None,
            sub_attr_after_filter: None,
        });
    };
    let attr = AttrPath::parse(text.get(..open).unwrap_or_default())?;
    if attr.sub_attr.is_some() {
        return Err(ScimError::new(
            ScimType::InvalidPath,
            format!(
                "a value filter follows a multi-valued attribute, not a sub-attribute, in {}",
                snippet(text)
            ),
        ));
    }
    let close = closing_bracket(text, open + 1).ok_or_else(|| {
        ScimError::new(
            ScimType::InvalidPath,
            format!("unclosed '[' in path {}", snippet(text)),
        )
    })?;
    let inner = text.get(open + 1..close).unwrap_or_default();
    let value_filter = parse_value_filter(inner)
        .map_err(|error| ScimError::new(ScimType::InvalidPath, error.detail))?;
    let rest = text.get(close + 1..).unwrap_or_default();
    let sub_attr_after_filter = if rest.is_empty() {
        None
    } else {
        match rest.strip_prefix('.') {
            Some(name) if is_attr_name(name) => Some(name.to_owned()),
            _ => {
                return Err(ScimError::new(
                    ScimType::InvalidPath,
                    format!("unexpected {} after the value filter", snippet(rest)),
                ));
            }
        }
    };
    Ok(PatchPath {
        attr,
        value_filter: Some(value_filter),
        sub_attr_after_filter,
    })
}

/// The byte index of the `]` closing a value filter that starts at `from`, skipping JSON strings
/// (a compared value may contain `]`).
fn closing_bracket(text: &str, from: usize) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut in_string = false;
    let mut escaped = false;
    for (i, &b) in bytes.iter().enumerate().skip(from) {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
        } else if b == b'"' {
            in_string = true;
        } else if b == b']' {
            return Some(i);
        }
    }
    None
}

/// `ATTRNAME = ALPHA *(nameChar)` (RFC 7643 §2.1), plus a leading `$` for `$ref`.
pub(crate) fn is_attr_name(name: &str) -> bool {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '$');
    first_ok && chars.all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// `ATTRNAME *1subAttr`.
fn split_names(text: &str) -> Option<(String, Option<String>)> {
    match text.split_once('.') {
        None => is_attr_name(text).then(|| (text.to_owned(), None)),
        Some((attr, sub_attr)) => (is_attr_name(attr) && is_attr_name(sub_attr))
            .then(|| (attr.to_owned(), Some(sub_attr.to_owned()))),
    }
}

fn is_version(segment: &str) -> bool {
    segment.starts_with(|c: char| c.is_ascii_digit())
        && segment.chars().all(|c| c.is_ascii_digit() || c == '.')
}

fn starts_with_ignore_case(text: &str, prefix: &str) -> bool {
    text.get(..prefix.len())
        .is_some_and(|head| head.eq_ignore_ascii_case(prefix))
}

/// The key of `object` spelled like `name` ignoring ASCII case, preferring an exact match, so a
/// write keeps the spelling the resource already has.
pub(crate) fn find_key<'v>(object: &'v Value, name: &str) -> Option<&'v String> {
    let map = object.as_object()?;
    if let Some((key, _)) = map.get_key_value(name) {
        return Some(key);
    }
    map.keys().find(|k| k.eq_ignore_ascii_case(name))
}

/// The member `name` of `object`, ignoring ASCII case.
pub(crate) fn get_ignore_case<'v>(object: &'v Value, name: &str) -> Option<&'v Value> {
    let key = find_key(object, name)?;
    object.as_object()?.get(key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;
    use serde_json::json;

    const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
    const MEMBER_EXT: &str = "urn:ietf:params:scim:schemas:extension:latchkey:2.0:Member";

    #[rstest]
    #[case("userName", None, "userName", None)]
    #[case("name.givenName", None, "name", Some("givenName"))]
    #[case("emails.value", None, "emails", Some("value"))]
    #[case("members.$ref", None, "members", Some("$ref"))]
    #[case(
        "urn:ietf:params:scim:schemas:core:2.0:User:userName",
        Some("urn:ietf:params:scim:schemas:core:2.0:User"),
        "userName",
        None
    )]
    #[case(
        "urn:ietf:params:scim:schemas:core:2.0:User:name.familyName",
        Some("urn:ietf:params:scim:schemas:core:2.0:User"),
        "name",
        Some("familyName")
    )]
    #[case(
        "urn:ietf:params:scim:schemas:extension:latchkey:2.0:Member:role",
        Some(MEMBER_EXT),
        "role",
        None
    )]
    #[case(
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value",
        Some(ENTERPRISE),
        "manager",
        Some("value")
    )]
    #[case(ENTERPRISE, None, ENTERPRISE, None)]
    #[case(
        "URN:acme:user:employeeNumber",
        Some("URN:acme:user"),
        "employeeNumber",
        None
    )]
    fn parses_attribute_paths(
        #[case] text: &str,
        #[case] schema: Option<&str>,
        #[case] attr: &str,
        #[case] sub_attr: Option<&str>,
    ) {
        let path = AttrPath::parse(text).unwrap();
        assert_eq!(path.schema.as_deref(), schema);
        assert_eq!(path.attr, attr);
        assert_eq!(path.sub_attr.as_deref(), sub_attr);
        assert_eq!(path.to_string(), text);
    }

    #[rstest]
    #[case("")]
    #[case("1abc")]
    #[case("name.")]
    #[case(".name")]
    #[case("a.b.c")]
    #[case("name givenName")]
    #[case("na:me")]
    #[case("urn:")]
    #[case("urn:x")]
    #[case("urn:a:")]
    #[case("urn:a::b:c")]
    #[case("urn:ietf:params:scim:schemas:core:2.0:User:")]
    #[case("urn:ietf:params:scim:schemas:core:2.0:User:1x")]
    #[case("ümlaut")]
    fn rejects_malformed_attribute_paths(#[case] text: &str) {
        let error = AttrPath::parse(text).unwrap_err();
        assert_eq!(error.scim_type, ScimType::InvalidPath);
    }

    #[test]
    fn comparison_helpers_ignore_case() {
        let path = AttrPath::parse("USERNAME").unwrap();
        assert!(path.is("userName"));
        assert!(!path.is("name"));
        let sub = AttrPath::parse("Name.GivenName").unwrap();
        assert!(!sub.is("name"));
        assert!(sub.attr_is("name"));
        assert!(sub.is_sub("name", "givenname"));
        assert!(!sub.is_sub("name", "familyName"));
        let urn = AttrPath::parse("urn:ietf:params:scim:schemas:core:2.0:User:userName").unwrap();
        assert!(urn.is("username"));
        assert!(urn.schema_is("URN:IETF:PARAMS:SCIM:SCHEMAS:CORE:2.0:USER"));
        assert!(urn.has_core_schema());
        assert!(!AttrPath::parse("userName").unwrap().schema_is("x"));
        assert_eq!(AttrPath::new("active"), AttrPath::parse("active").unwrap());
        assert_eq!(
            AttrPath::with_sub_attr("name", "givenName"),
            AttrPath::parse("name.givenName").unwrap()
        );
    }

    #[test]
    fn whole_extension_is_found_by_key_or_schemas() {
        let path = AttrPath::parse("urn:acme:params:Profile").unwrap();
        assert_eq!(path.schema.as_deref(), Some("urn:acme:params"));
        let keyed = json!({"urn:acme:params:profile": {}});
        assert_eq!(
            path.whole_extension_key(&keyed).as_deref(),
            Some("urn:acme:params:Profile")
        );
        let listed = json!({"schemas": ["urn:acme:params:Profile"]});
        assert!(path.whole_extension_key(&listed).is_some());
        assert!(path.whole_extension_key(&json!({})).is_none());
    }

    #[test]
    fn plain_patch_paths() {
        let path = parse_patch_path(" name.givenName ").unwrap();
        assert_eq!(path.attr, AttrPath::with_sub_attr("name", "givenName"));
        assert!(path.value_filter.is_none());
        assert!(path.sub_attr_after_filter.is_none());

        let path = parse_patch_path("urn:ietf:params:scim:schemas:core:2.0:User:active").unwrap();
        assert!(path.attr.is("active"));
        assert!(path.attr.has_core_schema());

        let path =
            parse_patch_path("urn:ietf:params:scim:schemas:extension:latchkey:2.0:Member:role")
                .unwrap();
        assert!(path.attr.is("role"));
        assert!(path.attr.schema_is(MEMBER_EXT));
    }

    #[test]
    fn value_filter_patch_paths() {
        let path = parse_patch_path("members[value eq \"usr_1\"]").unwrap();
        assert!(path.attr.is("members"));
        let filter = path.value_filter.unwrap();
        let (attr, value) = filter.simple_equality().unwrap();
        assert!(attr.is("value"));
        assert_eq!(value, "usr_1");
        assert!(path.sub_attr_after_filter.is_none());

        let path = parse_patch_path("emails[type eq \"work\"].value").unwrap();
        assert!(path.attr.is("emails"));
        assert_eq!(path.sub_attr_after_filter.as_deref(), Some("value"));

        // A `]` inside the compared string does not close the filter.
        let path = parse_patch_path(r#"emails[value eq "a]\"b"].display"#).unwrap();
        let filter = path.value_filter.unwrap();
        assert_eq!(filter.simple_equality().unwrap().1, "a]\"b");
        assert_eq!(path.sub_attr_after_filter.as_deref(), Some("display"));

        let path = parse_patch_path(
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:emails[type eq \"x\"]",
        )
        .unwrap();
        assert!(path.attr.schema_is(ENTERPRISE));
    }

    #[rstest]
    #[case("")]
    #[case("members[")]
    #[case("members[value eq \"x\"")]
    #[case("members[value eq \"x]")]
    #[case("members[]")]
    #[case("members[value zz \"x\"]")]
    #[case("members[value eq \"x\"]value")]
    #[case("members[value eq \"x\"].")]
    #[case("members[value eq \"x\"].a.b")]
    #[case("members[value eq \"x\"][type eq \"y\"]")]
    #[case("emails[type eq \"work\" and x[y eq 1]]")]
    #[case("name.givenName[value eq \"x\"]")]
    #[case("[value eq \"x\"]")]
    fn rejects_malformed_patch_paths(#[case] text: &str) {
        let error = parse_patch_path(text).unwrap_err();
        assert_eq!(error.scim_type, ScimType::InvalidPath, "{text}");
    }

    #[test]
    fn over_long_patch_path_is_refused_briefly() {
        let text = format!("members[value eq \"{}\"]", "x".repeat(5000));
        let error = parse_patch_path(&text).unwrap_err();
        assert_eq!(error.scim_type, ScimType::InvalidPath);
        assert!(error.detail.len() < 100);
    }

    #[test]
    fn keys_are_found_ignoring_case_preferring_exact() {
        let object = json!({"userName": 1, "USERNAME": 2, "active": true});
        assert_eq!(find_key(&object, "USERNAME").unwrap(), "USERNAME");
        assert_eq!(find_key(&object, "Active").unwrap(), "active");
        assert_eq!(get_ignore_case(&object, "ACTIVE"), Some(&json!(true)));
        assert!(find_key(&json!([]), "x").is_none());
    }
}
