//! The domain half of a SCIM 2.0 server (RFC 7644): filters, attribute paths and PATCH.
//!
//! Owns the grammars a provisioning client (Okta, Entra ID, OneLogin) sends and their meaning on
//! a resource held as its SCIM JSON representation (`serde_json::Value`). Must not do I/O, know
//! about storage or HTTP, or decide mutability and value normalisation (`"active": "False"`):
//! those belong to the caller, which knows the schema. Errors carry an RFC 7644 `scimType` and a
//! detail that is safe to return to the client.

mod filter;
mod patch;
mod path;

use std::fmt;

use thiserror::Error;

pub use filter::{
    CompValue, CompareOp, Filter, MAX_FILTER_DEPTH, MAX_FILTER_LEN, default_case_exact,
    parse_filter,
};
pub use patch::{
    MAX_OPERATIONS, PATCH_OP_SCHEMA, PatchKind, PatchOp, apply_patch, apply_patch_with,
    parse_patch, patch_case_exact,
};
pub use path::{AttrPath, PatchPath, parse_patch_path};

/// The `scimType` of an error response (RFC 7644 §3.12, Table 9).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ScimType {
    /// The filter syntax was invalid or the combination is not supported.
    InvalidFilter,
    /// The filter yields more results than the server is willing to process.
    TooMany,
    /// One or more unique attribute values are in use.
    Uniqueness,
    /// The change is incompatible with an attribute's mutability.
    Mutability,
    /// The request body was malformed or did not follow the request schema.
    InvalidSyntax,
    /// The PATCH `path` was invalid or malformed.
    InvalidPath,
    /// The PATCH target could not be found (no value matched the filter, or no path on remove).
    NoTarget,
    /// A required value was missing or not compatible with the operation or attribute.
    InvalidValue,
    /// The protocol version is not supported.
    InvalidVers,
    /// The request would expose or take sensitive data in a URL.
    Sensitive,
}

impl ScimType {
    /// The keyword as it appears in the `scimType` member of an error response.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::InvalidFilter => "invalidFilter",
            Self::TooMany => "tooMany",
            Self::Uniqueness => "uniqueness",
            Self::Mutability => "mutability",
            Self::InvalidSyntax => "invalidSyntax",
            Self::InvalidPath => "invalidPath",
            Self::NoTarget => "noTarget",
            Self::InvalidValue => "invalidValue",
            Self::InvalidVers => "invalidVers",
            Self::Sensitive => "sensitive",
        }
    }
}

impl fmt::Display for ScimType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A SCIM request that cannot be honoured, as RFC 7644 §3.12 reports it (HTTP 400 for every
/// `scimType` this module produces). `detail` is meant for the client: it quotes at most a short,
/// printable fragment of the input.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{scim_type}: {detail}")]
pub struct ScimError {
    /// The RFC 7644 error keyword.
    pub scim_type: ScimType,
    /// A human-readable explanation, safe to return.
    pub detail: String,
}

impl ScimError {
    /// An error of the given type with a detail message.
    pub fn new(scim_type: ScimType, detail: impl Into<String>) -> Self {
        Self {
            scim_type,
            detail: detail.into(),
        }
    }
}

/// Characters of client input quoted in an error detail: enough to locate the problem, too few to
/// reflect a payload back.
const SNIPPET_CHARS: usize = 24;

/// A quoted, shortened and sanitised fragment of client input for an error detail. Anything but
/// printable ASCII becomes `?` so that no control or bidirectional characters reach a log or UI.
pub(crate) fn snippet(text: &str) -> String {
    let mut out = String::with_capacity(SNIPPET_CHARS + 5);
    out.push('"');
    let mut chars = text.chars();
    for c in chars.by_ref().take(SNIPPET_CHARS) {
        out.push(if c.is_ascii_graphic() || c == ' ' {
            c
        } else {
            '?'
        });
    }
    if chars.next().is_some() {
        out.push_str("...");
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scim_types_use_the_rfc_keywords() {
        let all = [
            (ScimType::InvalidFilter, "invalidFilter"),
            (ScimType::TooMany, "tooMany"),
            (ScimType::Uniqueness, "uniqueness"),
            (ScimType::Mutability, "mutability"),
            (ScimType::InvalidSyntax, "invalidSyntax"),
            (ScimType::InvalidPath, "invalidPath"),
            (ScimType::NoTarget, "noTarget"),
            (ScimType::InvalidValue, "invalidValue"),
            (ScimType::InvalidVers, "invalidVers"),
            (ScimType::Sensitive, "sensitive"),
        ];
        for (scim_type, keyword) in all {
            assert_eq!(scim_type.as_str(), keyword);
            assert_eq!(scim_type.to_string(), keyword);
        }
    }

    #[test]
    fn error_displays_type_and_detail() {
        let error = ScimError::new(ScimType::NoTarget, "nothing matched");
        assert_eq!(error.to_string(), "noTarget: nothing matched");
    }

    #[test]
    fn snippet_is_short_and_printable() {
        assert_eq!(snippet("abc"), "\"abc\"");
        assert_eq!(snippet("a\u{202e}b\nc"), "\"a?b?c\"");
        let long = "x".repeat(1000);
        let quoted = snippet(&long);
        assert!(quoted.len() < 40, "{quoted}");
        assert!(quoted.ends_with("...\""));
    }
}
