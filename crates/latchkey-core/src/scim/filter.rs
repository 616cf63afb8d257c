//! SCIM filters (RFC 7644 §3.4.2.2): the grammar parsed into a [`Filter`], and its meaning on a
//! resource's JSON representation.
//!
//! Owns the whole filter language: attribute paths with schema URNs, the ten operators, `and`
//! binding tighter than `or`, `not ( … )`, grouping and value paths (`emails[type eq "work"]`).
//! Must not know storage: a caller that can answer a filter from an index asks
//! [`Filter::simple_equality`] or walks the public tree, and scans with [`Filter::matches`]
//! otherwise. Input is bounded ([`MAX_FILTER_LEN`], [`MAX_FILTER_DEPTH`]) because filters arrive
//! in query strings from any client.

use std::borrow::Cow;
use std::cmp::Ordering;

use serde_json::{Number, Value};

use super::path::{AttrPath, get_ignore_case};
use super::{ScimError, ScimType, snippet};

/// The longest filter text accepted, in bytes. Real provisioning filters are a few dozen bytes;
/// the bound keeps the token list and the error path cheap.
pub const MAX_FILTER_LEN: usize = 4096;

/// The deepest nesting of parentheses, `not ( … )` and value paths accepted: the parser recurses
/// once per level, so this bounds its stack use.
pub const MAX_FILTER_DEPTH: usize = 32;

/// Evaluation recurses over the tree; a tree from the parser is at most about three levels per
/// nesting level, so anything deeper was built by hand and is refused rather than risk the stack.
const MAX_EVAL_DEPTH: usize = 4 * MAX_FILTER_DEPTH + 8;

/// A parsed SCIM filter.
///
/// Attribute paths inside a [`Filter::ValuePath`] are relative to each value of the multi-valued
/// attribute (`type` in `emails[type eq "work"]`).
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    /// `attrPath compareOp compValue`.
    Compare {
        /// The attribute compared.
        path: AttrPath,
        /// The operator.
        op: CompareOp,
        /// The literal compared against.
        value: CompValue,
    },
    /// `attrPath pr`: the attribute has a non-empty value.
    Present(AttrPath),
    /// Every term matches (two or more terms).
    And(Vec<Filter>),
    /// Some term matches (two or more terms).
    Or(Vec<Filter>),
    /// `not ( filter )`.
    Not(Box<Filter>),
    /// `attrPath [ filter ]`: some value of the multi-valued attribute matches the inner filter.
    ValuePath {
        /// The multi-valued attribute.
        path: AttrPath,
        /// The filter each value is tested against.
        filter: Box<Filter>,
    },
}

/// A comparison operator (RFC 7644 Table 3), `pr` being [`Filter::Present`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CompareOp {
    /// Equal.
    Eq,
    /// Not equal.
    Ne,
    /// Contains (strings).
    Co,
    /// Starts with (strings).
    Sw,
    /// Ends with (strings).
    Ew,
    /// Greater than (strings, numbers).
    Gt,
    /// Greater than or equal.
    Ge,
    /// Less than.
    Lt,
    /// Less than or equal.
    Le,
}

impl CompareOp {
    /// The operator's keyword, lowercase.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Eq => "eq",
            Self::Ne => "ne",
            Self::Co => "co",
            Self::Sw => "sw",
            Self::Ew => "ew",
            Self::Gt => "gt",
            Self::Ge => "ge",
            Self::Lt => "lt",
            Self::Le => "le",
        }
    }

    fn from_keyword(word: &str) -> Option<Self> {
        [
            Self::Eq,
            Self::Ne,
            Self::Co,
            Self::Sw,
            Self::Ew,
            Self::Gt,
            Self::Ge,
            Self::Lt,
            Self::Le,
        ]
        .into_iter()
        .find(|op| op.as_str().eq_ignore_ascii_case(word))
    }
}

/// A literal in a filter (`compValue`).
#[derive(Debug, Clone, PartialEq)]
pub enum CompValue {
    /// `null`.
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// A JSON number.
    Number(Number),
    /// A JSON string, escapes decoded.
    String(String),
}

impl CompValue {
    fn to_json(&self) -> Value {
        match self {
            Self::Null => Value::Null,
            Self::Bool(b) => Value::Bool(*b),
            Self::Number(n) => Value::Number(n.clone()),
            Self::String(s) => Value::String(s.clone()),
        }
    }
}

/// Parses a filter (the `filter` query parameter, or a `filter` in a search request).
///
/// Keywords (`eq`, `and`, `not`, `pr`, `true`, …) and attribute names are case-insensitive. Any
/// syntax error, an input over [`MAX_FILTER_LEN`] bytes or nested deeper than
/// [`MAX_FILTER_DEPTH`] is `invalidFilter`.
pub fn parse_filter(text: &str) -> Result<Filter, ScimError> {
    parse(text, false)
}

/// Parses the inside of a value path's brackets (`valFilter`), where value paths cannot nest.
pub(crate) fn parse_value_filter(text: &str) -> Result<Filter, ScimError> {
    parse(text, true)
}

fn parse(text: &str, in_brackets: bool) -> Result<Filter, ScimError> {
    if text.len() > MAX_FILTER_LEN {
        return Err(invalid(format!(
            "a filter is at most {MAX_FILTER_LEN} bytes"
        )));
    }
    let tokens = lex(text)?;
    let mut parser = Parser {
        text,
        tokens,
        pos: 0,
        depth: usize::from(in_brackets),
    };
    let filter = parser.or(in_brackets)?;
    if parser.pos < parser.tokens.len() {
        return Err(invalid(format!(
            "unexpected {} after the filter",
            parser.here()
        )));
    }
    Ok(filter)
}

fn invalid(detail: impl Into<String>) -> ScimError {
    ScimError::new(ScimType::InvalidFilter, detail)
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    LParen,
    RParen,
    LBracket,
    RBracket,
    /// An attribute path or a keyword: which one depends on where it stands.
    Word(String),
    Str(String),
    Num(Number),
}

#[derive(Debug)]
struct Token {
    tok: Tok,
    /// Byte offset in the filter text, to quote the place of an error.
    at: usize,
}

fn lex(text: &str) -> Result<Vec<Token>, ScimError> {
    let mut tokens = Vec::new();
    let mut at = 0;
    while let Some(rest) = text.get(at..) {
        let Some(first) = rest.bytes().next() else {
            break;
        };
        let (tok, len) = match first {
            // RFC 7644 asks for exactly one SP between tokens; clients are lax, and any amount
            // of white space changes no meaning.
            b' ' | b'\t' | b'\r' | b'\n' => {
                at += 1;
                continue;
            }
            b'(' => (Tok::LParen, 1),
            b')' => (Tok::RParen, 1),
            b'[' => (Tok::LBracket, 1),
            b']' => (Tok::RBracket, 1),
            b'"' => {
                let len = string_len(rest)
                    .ok_or_else(|| invalid(format!("unterminated string at {}", snippet(rest))))?;
                let raw = rest.get(..len).unwrap_or_default();
                // serde_json decodes every JSON escape, surrogate pairs included, and refuses
                // raw control characters, exactly the `string` of RFC 7159 the grammar cites.
                let decoded: String = serde_json::from_str(raw)
                    .map_err(|_| invalid(format!("malformed string {}", snippet(raw))))?;
                (Tok::Str(decoded), len)
            }
            b'-' | b'0'..=b'9' => {
                let len = rest
                    .bytes()
                    .take_while(|b| b.is_ascii_digit() || b"+-.eE".contains(b))
                    .count();
                let raw = rest.get(..len).unwrap_or_default();
                let number: Number = serde_json::from_str(raw)
                    .map_err(|_| invalid(format!("malformed number {}", snippet(raw))))?;
                (Tok::Num(number), len)
            }
            b if b.is_ascii_alphabetic() || b == b'$' => {
                let len = rest
                    .bytes()
                    .take_while(|b| b.is_ascii_alphanumeric() || b"-_.:$".contains(b))
                    .count();
                (
                    Tok::Word(rest.get(..len).unwrap_or_default().to_owned()),
                    len,
                )
            }
            _ => {
                return Err(invalid(format!(
                    "unexpected character at {}",
                    snippet(rest)
                )));
            }
        };
        tokens.push(Token { tok, at });
        at += len;
    }
    Ok(tokens)
}

/// The length of the JSON string at the start of `rest` (which begins with `"`), closing quote
/// included; `None` when it is not closed.
fn string_len(rest: &str) -> Option<usize> {
    let mut escaped = false;
    for (i, b) in rest.bytes().enumerate().skip(1) {
        if escaped {
            escaped = false;
        } else if b == b'\\' {
            escaped = true;
        } else if b == b'"' {
            return Some(i + 1);
        }
    }
    None
}

/// A recursive-descent parser: `or := and ("or" and)*`, `and := term ("and" term)*`,
/// `term := "(" or ")" | "not" "(" or ")" | attrPath "[" or "]" | attrPath "pr" |
/// attrPath op value`. Chains of `and`/`or` are loops, so only nesting costs stack.
struct Parser<'t> {
    text: &'t str,
    tokens: Vec<Token>,
    pos: usize,
    depth: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Tok> {
        self.peek_at(0)
    }

    fn peek_at(&self, ahead: usize) -> Option<&Tok> {
        self.tokens.get(self.pos + ahead).map(|t| &t.tok)
    }

    fn peek_keyword(&self, keyword: &str) -> bool {
        matches!(self.peek(), Some(Tok::Word(w)) if w.eq_ignore_ascii_case(keyword))
    }

    /// The input from the current token on, quoted briefly for an error.
    fn here(&self) -> String {
        match self.tokens.get(self.pos) {
            Some(token) => snippet(self.text.get(token.at..).unwrap_or_default()),
            None => "end of filter".to_owned(),
        }
    }

    fn expect(&mut self, tok: &Tok, what: &str) -> Result<(), ScimError> {
        if self.peek() == Some(tok) {
            self.pos += 1;
            Ok(())
        } else {
            Err(invalid(format!("expected {what} at {}", self.here())))
        }
    }

    fn enter(&mut self) -> Result<(), ScimError> {
        self.depth += 1;
        if self.depth > MAX_FILTER_DEPTH {
            return Err(invalid(format!(
                "a filter nests at most {MAX_FILTER_DEPTH} levels"
            )));
        }
        Ok(())
    }

    fn leave(&mut self) {
        self.depth = self.depth.saturating_sub(1);
    }

    fn or(&mut self, in_brackets: bool) -> Result<Filter, ScimError> {
        let mut terms = vec![self.and(in_brackets)?];
        while self.peek_keyword("or") {
            self.pos += 1;
            terms.push(self.and(in_brackets)?);
        }
        Ok(join(terms, Filter::Or))
    }

    fn and(&mut self, in_brackets: bool) -> Result<Filter, ScimError> {
        let mut terms = vec![self.term(in_brackets)?];
        while self.peek_keyword("and") {
            self.pos += 1;
            terms.push(self.term(in_brackets)?);
        }
        Ok(join(terms, Filter::And))
    }

    fn term(&mut self, in_brackets: bool) -> Result<Filter, ScimError> {
        match self.peek() {
            Some(Tok::LParen) => {
                self.pos += 1;
                self.group(in_brackets, &Tok::RParen, "')'")
            }
            // `not` is a keyword only before "(": an attribute may be called `not`.
            Some(Tok::Word(w))
                if w.eq_ignore_ascii_case("not") && self.peek_at(1) == Some(&Tok::LParen) =>
            {
                self.pos += 2;
                let inner = self.group(in_brackets, &Tok::RParen, "')'")?;
                Ok(Filter::Not(Box::new(inner)))
            }
            Some(Tok::Word(_)) => self.attr_expression(in_brackets),
            Some(_) => Err(invalid(format!("expected an attribute at {}", self.here()))),
            None => Err(invalid("the filter ends where an expression was expected")),
        }
    }

    /// The inside of a group whose opening token was consumed, up to its closing token.
    fn group(&mut self, in_brackets: bool, close: &Tok, what: &str) -> Result<Filter, ScimError> {
        self.enter()?;
        let inner = self.or(in_brackets)?;
        self.expect(close, what)?;
        self.leave();
        Ok(inner)
    }

    fn attr_expression(&mut self, in_brackets: bool) -> Result<Filter, ScimError> {
        let Some(Tok::Word(word)) = self.peek().cloned() else {
            return Err(invalid(format!("expected an attribute at {}", self.here())));
        };
        let path = AttrPath::parse_as(&word, ScimType::InvalidFilter)?;
        self.pos += 1;
        if self.peek() == Some(&Tok::LBracket) {
            if in_brackets {
                return Err(invalid("value filters cannot be nested"));
            }
            if path.sub_attr.is_some() {
                return Err(invalid(format!(
                    "a value filter follows a multi-valued attribute, not a sub-attribute: {}",
                    snippet(&word)
                )));
            }
            self.pos += 1;
            let inner = self.group(true, &Tok::RBracket, "']'")?;
            return Ok(Filter::ValuePath {
                path,
                filter: Box::new(inner),
            });
        }
        let op = match self.peek() {
            Some(Tok::Word(op)) if op.eq_ignore_ascii_case("pr") => {
                self.pos += 1;
                return Ok(Filter::Present(path));
            }
            Some(Tok::Word(op)) => CompareOp::from_keyword(op)
                .ok_or_else(|| invalid(format!("unknown operator {}", snippet(op))))?,
            _ => {
                return Err(invalid(format!("expected an operator at {}", self.here())));
            }
        };
        self.pos += 1;
        let value = match self.peek() {
            Some(Tok::Str(s)) => CompValue::String(s.clone()),
            Some(Tok::Num(n)) => CompValue::Number(n.clone()),
            Some(Tok::Word(w)) if w.eq_ignore_ascii_case("true") => CompValue::Bool(true),
            Some(Tok::Word(w)) if w.eq_ignore_ascii_case("false") => CompValue::Bool(false),
            Some(Tok::Word(w)) if w.eq_ignore_ascii_case("null") => CompValue::Null,
            _ => {
                return Err(invalid(format!(
                    "expected a string, number, true, false or null at {}",
                    self.here()
                )));
            }
        };
        self.pos += 1;
        Ok(Filter::Compare { path, op, value })
    }
}

fn join(mut terms: Vec<Filter>, combine: fn(Vec<Filter>) -> Filter) -> Filter {
    if terms.len() == 1
        && let Some(only) = terms.pop()
    {
        return only;
    }
    combine(terms)
}

/// The attributes [`Filter::matches`] compares case-exactly: `id` and `externalId`, which RFC
/// 7643 §3.1 declares `caseExact`. Every other string compares ignoring case, the default of
/// RFC 7643 §2.3.1.
pub fn default_case_exact(path: &AttrPath) -> bool {
    path.is("id") || path.is("externalId")
}

impl Filter {
    /// Whether the resource matches, comparing strings case-exactly only for `id` and
    /// `externalId` ([`default_case_exact`]).
    pub fn matches(&self, resource: &Value) -> bool {
        self.matches_with(resource, &default_case_exact)
    }

    /// Whether the resource matches, comparing strings case-exactly for the attributes
    /// `case_exact` accepts. Inside a value path the callback sees the full path
    /// (`emails.value` for `emails[value eq "…"]`).
    ///
    /// Semantics (RFC 7644 §3.4.2.2): a multi-valued attribute matches when any value does; a
    /// complex value without a sub-attribute stands for its `value` sub-attribute; `pr` needs a
    /// value that is not null, `""`, `[]` or `{}`; `eq null` is the opposite of `pr`; `ne` is
    /// "no value is equal", so an absent attribute is `ne` anything; `gt`/`ge`/`lt`/`le` order
    /// strings lexicographically (so ISO 8601 timestamps by time) and numbers numerically, and
    /// never match booleans; a value of another type than the literal never matches.
    pub fn matches_with(&self, resource: &Value, case_exact: &dyn Fn(&AttrPath) -> bool) -> bool {
        Eval { case_exact }.filter(self, resource, None, 0)
    }

    /// Whether one value of the multi-valued attribute `parent` matches this value filter.
    pub(crate) fn matches_value(
        &self,
        value: &Value,
        parent: &AttrPath,
        case_exact: &dyn Fn(&AttrPath) -> bool,
    ) -> bool {
        Eval { case_exact }.filter(self, value, Some(parent), 0)
    }

    /// The attribute and string when the filter is exactly `attr eq "string"`, so a caller can
    /// answer it from an index (`userName`, `externalId`) instead of a scan.
    pub fn simple_equality(&self) -> Option<(&AttrPath, &str)> {
        match self {
            Self::Compare {
                path,
                op: CompareOp::Eq,
                value: CompValue::String(s),
            } => Some((path, s)),
            _ => None,
        }
    }

    /// The `(attribute, value)` pairs of a value filter made only of `eq` on plain attributes
    /// (`type eq "work"`, or such terms joined by `and`): enough to build the value it selects.
    pub(crate) fn equalities(&self) -> Option<Vec<(&str, Value)>> {
        fn pair(filter: &Filter) -> Option<(&str, Value)> {
            match filter {
                Filter::Compare {
                    path,
                    op: CompareOp::Eq,
                    value,
                } if path.schema.is_none()
                    && path.sub_attr.is_none()
                    && *value != CompValue::Null =>
                {
                    Some((path.attr.as_str(), value.to_json()))
                }
                _ => None,
            }
        }
        match self {
            Self::And(terms) => terms.iter().map(pair).collect(),
            other => pair(other).map(|p| vec![p]),
        }
    }
}

struct Eval<'c> {
    case_exact: &'c dyn Fn(&AttrPath) -> bool,
}

impl Eval<'_> {
    /// At the top `node` is the resource and `parent` is `None`; inside a value path `node` is
    /// one value of the multi-valued attribute `parent`.
    fn filter(
        &self,
        filter: &Filter,
        node: &Value,
        parent: Option<&AttrPath>,
        depth: usize,
    ) -> bool {
        if depth > MAX_EVAL_DEPTH {
            return false;
        }
        match filter {
            Filter::And(terms) => terms
                .iter()
                .all(|t| self.filter(t, node, parent, depth + 1)),
            Filter::Or(terms) => terms
                .iter()
                .any(|t| self.filter(t, node, parent, depth + 1)),
            Filter::Not(inner) => !self.filter(inner, node, parent, depth + 1),
            Filter::Present(path) => designated(node, path, parent)
                .into_iter()
                .any(is_present_value),
            Filter::Compare { path, op, value } => {
                let values = designated(node, path, parent);
                let exact = self.is_case_exact(path, parent);
                let equal = || {
                    if *value == CompValue::Null {
                        // RFC 7643 §2.5: null, absent and empty are the same state.
                        !values.iter().copied().any(is_present_value)
                    } else {
                        values
                            .iter()
                            .any(|v| compare(v, CompareOp::Eq, value, exact))
                    }
                };
                match op {
                    CompareOp::Eq => equal(),
                    CompareOp::Ne => !equal(),
                    _ => values.iter().any(|v| compare(v, *op, value, exact)),
                }
            }
            Filter::ValuePath {
                path,
                filter: inner,
            } => designated(node, path, parent)
                .into_iter()
                .any(|v| self.filter(inner, v, Some(path), depth + 1)),
        }
    }

    fn is_case_exact(&self, path: &AttrPath, parent: Option<&AttrPath>) -> bool {
        match parent {
            None => (self.case_exact)(path),
            Some(parent) => (self.case_exact)(&AttrPath {
                schema: parent.schema.clone(),
                attr: parent.attr.clone(),
                sub_attr: Some(path.attr.clone()),
            }),
        }
    }
}

/// The values `path` designates on `node`, multi-valued attributes flattened into their values.
fn designated<'v>(node: &'v Value, path: &AttrPath, parent: Option<&AttrPath>) -> Vec<&'v Value> {
    let base = match parent {
        None => resource_member(node, path),
        Some(_) => value_member(node, &path.attr),
    };
    let mut out = Vec::new();
    let Some(base) = base else {
        return out;
    };
    match &path.sub_attr {
        None => flatten_into(base, &mut out),
        Some(sub_attr) => {
            let mut items = Vec::new();
            flatten_into(base, &mut items);
            for item in items {
                if let Some(v) = get_ignore_case(item, sub_attr) {
                    flatten_into(v, &mut out);
                }
            }
        }
    }
    out
}

fn flatten_into<'v>(value: &'v Value, out: &mut Vec<&'v Value>) {
    match value {
        Value::Array(items) => out.extend(items),
        other => out.push(other),
    }
}

/// The attribute `path` names in the resource: a core schema's attributes are top-level keys, an
/// extension's live inside the object keyed by the extension's URN.
fn resource_member<'v>(resource: &'v Value, path: &AttrPath) -> Option<&'v Value> {
    let Some(schema) = &path.schema else {
        return get_ignore_case(resource, &path.attr);
    };
    if let Some(key) = path.whole_extension_key(resource) {
        return get_ignore_case(resource, &key);
    }
    match get_ignore_case(resource, schema) {
        Some(extension @ Value::Object(_)) => get_ignore_case(extension, &path.attr),
        _ if path.has_core_schema() => get_ignore_case(resource, &path.attr),
        _ => None,
    }
}

/// A sub-attribute of one value of a multi-valued attribute. The values of a simple multi-valued
/// attribute (`["a", "b"]`) are their own `value` (RFC 7644 §3.4.2.2, `emails[value …]` style).
fn value_member<'v>(value: &'v Value, name: &str) -> Option<&'v Value> {
    if value.is_object() {
        get_ignore_case(value, name)
    } else if name.eq_ignore_ascii_case("value") {
        Some(value)
    } else {
        None
    }
}

fn is_present_value(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::String(s) => !s.is_empty(),
        Value::Array(items) => !items.is_empty(),
        Value::Object(members) => !members.is_empty(),
        Value::Bool(_) | Value::Number(_) => true,
    }
}

fn compare(actual: &Value, op: CompareOp, expected: &CompValue, case_exact: bool) -> bool {
    // A complex value compared without a sub-attribute stands for its `value` sub-attribute.
    let actual = match actual {
        Value::Object(_) => match get_ignore_case(actual, "value") {
            Some(v) => v,
            None => return false,
        },
        other => other,
    };
    match (actual, expected) {
        (Value::String(a), CompValue::String(e)) => {
            let (a, e): (Cow<'_, str>, Cow<'_, str>) = if case_exact {
                (Cow::Borrowed(a), Cow::Borrowed(e))
            } else {
                (Cow::Owned(a.to_lowercase()), Cow::Owned(e.to_lowercase()))
            };
            match op {
                CompareOp::Eq | CompareOp::Ne => a == e,
                CompareOp::Co => a.contains(e.as_ref()),
                CompareOp::Sw => a.starts_with(e.as_ref()),
                CompareOp::Ew => a.ends_with(e.as_ref()),
                CompareOp::Gt => a > e,
                CompareOp::Ge => a >= e,
                CompareOp::Lt => a < e,
                CompareOp::Le => a <= e,
            }
        }
        (Value::Number(a), CompValue::Number(e)) => {
            let Some(order) = number_order(a, e) else {
                return false;
            };
            match op {
                CompareOp::Eq | CompareOp::Ne => order == Ordering::Equal,
                CompareOp::Gt => order == Ordering::Greater,
                CompareOp::Ge => order != Ordering::Less,
                CompareOp::Lt => order == Ordering::Less,
                CompareOp::Le => order != Ordering::Greater,
                CompareOp::Co | CompareOp::Sw | CompareOp::Ew => false,
            }
        }
        (Value::Bool(a), CompValue::Bool(e)) => {
            matches!(op, CompareOp::Eq | CompareOp::Ne) && a == e
        }
        _ => false,
    }
}

/// Integers compare exactly (an `f64` loses precision past 2^53); anything else as `f64`.
fn number_order(a: &Number, b: &Number) -> Option<Ordering> {
    if let (Some(x), Some(y)) = (a.as_i64(), b.as_i64()) {
        return Some(x.cmp(&y));
    }
    if let (Some(x), Some(y)) = (a.as_u64(), b.as_u64()) {
        return Some(x.cmp(&y));
    }
    a.as_f64()?.partial_cmp(&b.as_f64()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rstest::rstest;
    use serde_json::json;

    const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
    const MEMBER_EXT: &str = "urn:ietf:params:scim:schemas:extension:latchkey:2.0:Member";

    fn user() -> Value {
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", ENTERPRISE, MEMBER_EXT],
            "id": "usr_AbC",
            "externalId": "Ext-1",
            "userName": "Alice@Example.com",
            "displayName": "Alice Liddell",
            "active": true,
            "loginCount": 42,
            "score": 2.5,
            "nickName": "",
            "title": null,
            "name": {"givenName": "Alice", "familyName": "Liddell"},
            "emails": [
                {"value": "alice@example.com", "type": "work", "primary": true},
                {"value": "al@home.org", "type": "home"}
            ],
            "phoneNumbers": [],
            "tags": ["Red", "blue"],
            "meta": {"created": "2024-01-15T10:00:00Z", "lastModified": "2024-06-01T08:30:00Z"},
            ENTERPRISE: {"employeeNumber": "701984", "manager": {"value": "usr_Boss"}},
            MEMBER_EXT: {"role": "admin"}
        })
    }

    fn matches(filter: &str) -> bool {
        parse_filter(filter).unwrap().matches(&user())
    }

    #[rstest]
    // eq / ne, strings compared ignoring case
    #[case(r#"userName eq "alice@example.com""#, true)]
    #[case(r#"userName eq "bob@example.com""#, false)]
    #[case(r#"userName ne "bob@example.com""#, true)]
    #[case(r#"userName ne "ALICE@example.COM""#, false)]
    // co / sw / ew
    #[case(r#"displayName co "LIDD""#, true)]
    #[case(r#"displayName co "xyz""#, false)]
    #[case(r#"displayName sw "ali""#, true)]
    #[case(r#"displayName sw "Liddell""#, false)]
    #[case(r#"displayName ew "DELL""#, true)]
    #[case(r#"displayName ew "Alice""#, false)]
    // gt / ge / lt / le on strings (ISO timestamps) ...
    #[case(r#"meta.lastModified gt "2024-05-01T00:00:00Z""#, true)]
    #[case(r#"meta.lastModified gt "2024-06-01T08:30:00Z""#, false)]
    #[case(r#"meta.lastModified ge "2024-06-01T08:30:00Z""#, true)]
    #[case(r#"meta.lastModified lt "2024-06-01T08:30:00Z""#, false)]
    #[case(r#"meta.lastModified le "2024-06-01T08:30:00Z""#, true)]
    #[case(r#"meta.created lt "2024-02-01T00:00:00Z""#, true)]
    // ... and on numbers
    #[case("loginCount gt 41", true)]
    #[case("loginCount gt 42", false)]
    #[case("loginCount ge 42", true)]
    #[case("loginCount lt 42", false)]
    #[case("loginCount le 42", true)]
    #[case("loginCount lt 1e3", true)]
    #[case("loginCount eq 42", true)]
    #[case("loginCount eq 42.0", true)]
    #[case("loginCount ne 41", true)]
    #[case("loginCount gt -1", true)]
    #[case("score gt 2", true)]
    #[case("score lt 2.6", true)]
    #[case("loginCount co 4", false)]
    #[case("loginCount sw 4", false)]
    // booleans: equality only
    #[case("active eq true", true)]
    #[case("active eq false", false)]
    #[case("active ne false", true)]
    #[case("active gt false", false)]
    #[case("active le true", false)]
    // a literal of another type never matches
    #[case("userName eq 42", false)]
    #[case(r#"active eq "true""#, false)]
    #[case(r#"loginCount eq "42""#, false)]
    // pr
    #[case("userName pr", true)]
    #[case("emails pr", true)]
    #[case("name pr", true)]
    #[case("name.givenName pr", true)]
    #[case("emails.primary pr", true)]
    #[case("title pr", false)]
    #[case("nickName pr", false)]
    #[case("phoneNumbers pr", false)]
    #[case("nosuch pr", false)]
    #[case("name.middleName pr", false)]
    // null
    #[case("title eq null", true)]
    #[case("nosuch eq null", true)]
    #[case("nickName eq null", true)]
    #[case("userName eq null", false)]
    #[case("userName ne null", true)]
    #[case("title ne null", false)]
    // id and externalId compare case-exactly
    #[case(r#"id eq "usr_AbC""#, true)]
    #[case(r#"id eq "usr_abc""#, false)]
    #[case(r#"externalId eq "Ext-1""#, true)]
    #[case(r#"externalId eq "ext-1""#, false)]
    #[case(r#"externalId sw "EXT""#, false)]
    // attribute names and keywords ignore case
    #[case(r#"USERNAME EQ "alice@example.com""#, true)]
    #[case(r#"Name.GivenName Eq "ALICE""#, true)]
    #[case("ACTIVE eq TRUE", true)]
    #[case("title EQ NULL", true)]
    #[case("UserName PR", true)]
    // sub-attributes
    #[case(r#"name.givenName eq "alice""#, true)]
    #[case(r#"name.familyName ne "Liddell""#, false)]
    // multi-valued: any value matches
    #[case(r#"emails.value ew "home.org""#, true)]
    #[case(r#"emails.type eq "work""#, true)]
    #[case(r#"emails.type eq "other""#, false)]
    #[case(r#"emails.value ne "al@home.org""#, false)]
    #[case("emails.primary eq true", true)]
    // a complex multi-valued attribute without sub-attribute stands for its values
    #[case(r#"emails co "HOME""#, true)]
    #[case(r#"emails eq "al@home.org""#, true)]
    #[case(r#"emails eq "work""#, false)]
    #[case(r#"name eq "Alice""#, false)]
    // a simple multi-valued attribute
    #[case(r#"tags eq "red""#, true)]
    #[case(r#"tags sw "BL""#, true)]
    #[case(r#"tags eq "green""#, false)]
    // value paths: one value must satisfy the whole inner filter
    #[case(r#"emails[type eq "work"]"#, true)]
    #[case(r#"emails[type eq "work" and value co "@example.com"]"#, true)]
    #[case(r#"emails[type eq "home" and value co "@example.com"]"#, false)]
    #[case(r#"emails[type eq "home" or value co "@example.com"]"#, true)]
    #[case(r#"emails[not (type eq "work")]"#, true)]
    #[case(r#"emails[primary eq true and type eq "home"]"#, false)]
    #[case(r#"emails[primary pr]"#, true)]
    #[case(r#"emails[type eq "work"] and userName sw "alice""#, true)]
    #[case(r#"phoneNumbers[type eq "work"]"#, false)]
    #[case(r#"nosuch[type eq "work"]"#, false)]
    #[case(r#"tags[value eq "BLUE"]"#, true)]
    #[case(r#"tags[type eq "BLUE"]"#, false)]
    #[case(r#"name[givenName eq "alice"]"#, true)]
    // schema URN prefixes
    #[case(
        r#"urn:ietf:params:scim:schemas:core:2.0:User:userName sw "alice""#,
        true
    )]
    #[case(
        r#"URN:IETF:PARAMS:SCIM:SCHEMAS:CORE:2.0:USER:name.familyName eq "liddell""#,
        true
    )]
    #[case(
        r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber eq "701984""#,
        true
    )]
    #[case(
        r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value eq "usr_boss""#,
        true
    )]
    #[case(
        r#"urn:ietf:params:scim:schemas:extension:latchkey:2.0:Member:role eq "ADMIN""#,
        true
    )]
    #[case(
        r#"urn:ietf:params:scim:schemas:extension:latchkey:2.0:Member:userName pr"#,
        false
    )]
    #[case(
        r#"urn:ietf:params:scim:schemas:extension:other:2.0:Thing:role eq "admin""#,
        false
    )]
    #[case("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User pr", true)]
    // not, and, or, grouping
    #[case("not (active eq false)", true)]
    #[case("NOT (userName pr)", false)]
    #[case("not(userName pr)", false)]
    #[case("not (not (userName pr))", true)]
    #[case(r#"active eq true and userName sw "alice""#, true)]
    #[case(r#"active eq false and userName sw "alice""#, false)]
    #[case(r#"active eq false or userName sw "alice""#, true)]
    #[case(r#"active eq false OR userName sw "bob""#, false)]
    #[case(r#"(active eq false or loginCount gt 1) and (title eq null)"#, true)]
    #[case(r#"userName eq "Alice@Example.com"and active eq true"#, true)]
    fn evaluates(#[case] filter: &str, #[case] expected: bool) {
        assert_eq!(matches(filter), expected, "{filter}");
    }

    #[test]
    fn and_binds_tighter_than_or() {
        let filter = parse_filter(r#"a eq "1" or b eq "2" and c eq "3""#).unwrap();
        let Filter::Or(terms) = &filter else {
            panic!("expected or at the top: {filter:?}");
        };
        assert_eq!(terms.len(), 2);
        assert!(matches!(&terms[0], Filter::Compare { path, .. } if path.is("a")));
        assert!(matches!(&terms[1], Filter::And(inner) if inner.len() == 2));

        let resource = json!({"a": "1", "b": "x", "c": "x"});
        assert!(filter.matches(&resource));
        let grouped = parse_filter(r#"(a eq "1" or b eq "2") and c eq "3""#).unwrap();
        assert!(!grouped.matches(&resource));

        let resource = json!({"a": "x", "b": "2", "c": "3"});
        assert!(filter.matches(&resource));
        let resource = json!({"a": "x", "b": "2", "c": "x"});
        assert!(!filter.matches(&resource));
    }

    #[test]
    fn chains_are_flat() {
        let filter = parse_filter("a pr and b pr and c pr or d pr or e pr").unwrap();
        let Filter::Or(terms) = filter else {
            panic!("expected or");
        };
        assert_eq!(terms.len(), 3);
        assert!(matches!(&terms[0], Filter::And(inner) if inner.len() == 3));
    }

    #[test]
    fn parses_the_tree() {
        let filter = parse_filter(r#"emails[type eq "work" and not (value ew ".org")]"#).unwrap();
        let expected = Filter::ValuePath {
            path: AttrPath::new("emails"),
            filter: Box::new(Filter::And(vec![
                Filter::Compare {
                    path: AttrPath::new("type"),
                    op: CompareOp::Eq,
                    value: CompValue::String("work".into()),
                },
                Filter::Not(Box::new(Filter::Compare {
                    path: AttrPath::new("value"),
                    op: CompareOp::Ew,
                    value: CompValue::String(".org".into()),
                })),
            ])),
        };
        assert_eq!(filter, expected);
        assert_eq!(
            parse_filter("x eq null").unwrap(),
            Filter::Compare {
                path: AttrPath::new("x"),
                op: CompareOp::Eq,
                value: CompValue::Null
            }
        );
        assert_eq!(
            parse_filter("x pr").unwrap(),
            Filter::Present(AttrPath::new("x"))
        );
    }

    #[test]
    fn every_operator_keyword_parses() {
        for op in [
            CompareOp::Eq,
            CompareOp::Ne,
            CompareOp::Co,
            CompareOp::Sw,
            CompareOp::Ew,
            CompareOp::Gt,
            CompareOp::Ge,
            CompareOp::Lt,
            CompareOp::Le,
        ] {
            let text = format!("x {} \"y\"", op.as_str().to_uppercase());
            let Filter::Compare { op: parsed, .. } = parse_filter(&text).unwrap() else {
                panic!("{text}");
            };
            assert_eq!(parsed, op);
        }
    }

    #[test]
    fn decodes_json_string_escapes() {
        let filter = parse_filter(r#"displayName eq "A \"q\" \u00e9\n\\ \ud83d\ude00""#).unwrap();
        assert_eq!(filter.simple_equality().unwrap().1, "A \"q\" é\n\\ 😀");
        let resource = json!({"displayName": "a \"Q\" É\n\\ 😀"});
        assert!(filter.matches(&resource));
    }

    #[test]
    fn simple_equality_is_only_attr_eq_string() {
        let filter = parse_filter(r#"USERNAME EQ "Alice""#).unwrap();
        let (path, value) = filter.simple_equality().unwrap();
        assert!(path.is("userName"));
        assert_eq!(value, "Alice");

        let filter = parse_filter(r#"externalId eq "x-1""#).unwrap();
        assert!(filter.simple_equality().unwrap().0.is("externalId"));

        for text in [
            r#"userName ne "x""#,
            r#"userName co "x""#,
            r#"userName eq "x" and active eq true"#,
            r#"(userName eq "x") or userName eq "y""#,
            r#"not (userName eq "x")"#,
            r#"emails[value eq "x"]"#,
            "loginCount eq 1",
            "active eq true",
            "userName eq null",
            "userName pr",
        ] {
            assert!(
                parse_filter(text).unwrap().simple_equality().is_none(),
                "{text}"
            );
        }
        // Redundant parentheses are still a simple equality.
        let filter = parse_filter(r#"((userName eq "x"))"#).unwrap();
        assert!(filter.simple_equality().is_some());
    }

    #[test]
    fn case_exactness_is_the_callers_choice() {
        let filter = parse_filter(r#"userName eq "alice@example.com""#).unwrap();
        assert!(filter.matches(&user()));
        assert!(!filter.matches_with(&user(), &|p| p.is("userName")));

        // Inside a value path the callback sees the full path.
        let filter = parse_filter(r#"emails[value eq "ALICE@example.com"]"#).unwrap();
        assert!(filter.matches(&user()));
        assert!(!filter.matches_with(&user(), &|p| p.is_sub("emails", "value")));

        let filter = parse_filter(r#"id eq "USR_ABC""#).unwrap();
        assert!(filter.matches_with(&user(), &|_| false));
    }

    #[test]
    fn default_case_exact_is_id_and_external_id() {
        assert!(default_case_exact(&AttrPath::new("id")));
        assert!(default_case_exact(&AttrPath::new("EXTERNALID")));
        assert!(!default_case_exact(&AttrPath::new("userName")));
        assert!(!default_case_exact(&AttrPath::with_sub_attr("id", "x")));
    }

    #[test]
    fn matches_on_non_objects_is_false_not_a_panic() {
        let filter = parse_filter(r#"userName eq "x" or emails[value pr]"#).unwrap();
        for resource in [json!(null), json!(1), json!("x"), json!([1, 2]), json!({})] {
            assert!(!filter.matches(&resource));
        }
    }

    #[test]
    fn equalities_of_value_filters() {
        let filter = parse_value_filter(r#"type eq "work" and primary eq true"#).unwrap();
        assert_eq!(
            filter.equalities().unwrap(),
            vec![("type", json!("work")), ("primary", json!(true))]
        );
        for text in [
            r#"type ne "work""#,
            r#"type eq "work" or primary eq true"#,
            "type eq null",
            r#"name.x eq "y""#,
            "type pr",
        ] {
            assert!(
                parse_value_filter(text).unwrap().equalities().is_none(),
                "{text}"
            );
        }
    }

    #[rstest]
    #[case("")]
    #[case("   ")]
    #[case("()")]
    #[case(r#"(userName eq "x""#)]
    #[case(r#"userName eq "x")"#)]
    #[case(r#"((userName eq "x")"#)]
    #[case("userName eq")]
    #[case("userName")]
    #[case(r#"userName zz "x""#)]
    #[case(r#"userName equals "x""#)]
    #[case(r#"userName "x""#)]
    #[case(r#"userName eq "x" garbage"#)]
    #[case(r#"userName eq "x" "y""#)]
    #[case(r#"userName eq "x" and"#)]
    #[case(r#"userName eq "x" or or userName eq "y""#)]
    #[case(r#"and userName eq "x""#)]
    #[case(r#""x" eq userName"#)]
    #[case(r#"userName eq "unterminated"#)]
    #[case("userName eq 'x'")]
    #[case("userName eq x")]
    #[case("userName eq (1)")]
    #[case(r#"userName eq "bad \q escape""#)]
    #[case(r#"userName eq "\ud800""#)]
    #[case("userName eq \"raw\ncontrol\"")]
    #[case("loginCount eq 1.2.3")]
    #[case("loginCount eq -")]
    #[case("loginCount eq 01")]
    #[case("loginCount eq 1e999")]
    #[case("userName pr pr")]
    #[case(r#"not userName eq "x""#)]
    #[case(r#"not (userName eq "x""#)]
    #[case(r#"emails[type eq "work""#)]
    #[case(r#"emails[type eq "work"]]"#)]
    #[case(r#"emails[type eq "work")"#)]
    #[case(r#"emails[types[x eq "1"]]"#)]
    #[case(r#"emails[type eq "work"].value eq "x""#)]
    #[case(r#"name.givenName[value eq "x"]"#)]
    #[case("emails[]")]
    #[case(r#"1abc eq "x""#)]
    #[case(r#"a.b.c eq "x""#)]
    #[case(r#"urn: eq "x""#)]
    #[case(r#"userName eq "x" & active eq true"#)]
    #[case(r#"userName == "x""#)]
    #[case("userName eq \"x\" \u{0}")]
    fn rejects_malformed_filters(#[case] text: &str) {
        let error = parse_filter(text).unwrap_err();
        assert_eq!(error.scim_type, ScimType::InvalidFilter, "{text}");
        assert!(error.detail.len() < 120, "{}", error.detail);
    }

    #[test]
    fn over_long_filter_is_refused() {
        let text = format!(r#"userName eq "{}""#, "x".repeat(MAX_FILTER_LEN));
        let error = parse_filter(&text).unwrap_err();
        assert_eq!(error.scim_type, ScimType::InvalidFilter);
        assert!(!error.detail.contains("xxxx"));

        let just_fits = format!(r#"userName eq "{}""#, "x".repeat(MAX_FILTER_LEN - 14));
        assert_eq!(just_fits.len(), MAX_FILTER_LEN);
        assert!(parse_filter(&just_fits).is_ok());
    }

    #[test]
    fn nesting_is_bounded() {
        let nested =
            |levels: usize| format!("{}userName pr{}", "(".repeat(levels), ")".repeat(levels));
        assert!(parse_filter(&nested(MAX_FILTER_DEPTH)).is_ok());
        let error = parse_filter(&nested(MAX_FILTER_DEPTH + 1)).unwrap_err();
        assert_eq!(error.scim_type, ScimType::InvalidFilter);
        assert!(error.detail.contains("nests"));

        let nots = format!("{}x pr{}", "not (".repeat(40), ")".repeat(40));
        assert_eq!(
            parse_filter(&nots).unwrap_err().scim_type,
            ScimType::InvalidFilter
        );

        // As deep as the length allows, and unbalanced: an error, never a stack overflow.
        let deep = "(".repeat(MAX_FILTER_LEN);
        assert!(parse_filter(&deep).is_err());
        let deep_brackets = format!("a[{}", "(".repeat(MAX_FILTER_LEN - 2));
        assert!(parse_filter(&deep_brackets).is_err());
    }

    #[test]
    fn long_flat_chains_are_fine() {
        let text = vec!["a pr"; 400].join(" and ");
        let filter = parse_filter(&text).unwrap();
        assert!(filter.matches(&json!({"a": 1})));
        assert!(!filter.matches(&json!({"b": 1})));
    }

    #[test]
    fn hand_built_deep_trees_do_not_overflow_evaluation() {
        let mut filter = Filter::Present(AttrPath::new("a"));
        for _ in 0..(MAX_EVAL_DEPTH + 10) {
            filter = Filter::Not(Box::new(filter));
        }
        // Too deep to evaluate: refused (false) rather than recursing without bound.
        let _ = filter.matches(&json!({"a": 1}));
    }

    #[test]
    fn errors_quote_only_a_short_printable_fragment() {
        let text = format!("userName eq \"x\" \u{202e}{}", "y".repeat(500));
        let error = parse_filter(&text).unwrap_err();
        assert!(error.detail.len() < 80, "{}", error.detail);
        assert!(error.detail.is_ascii());
    }

    proptest! {
        #[test]
        fn parse_filter_never_panics(text in any::<String>()) {
            if let Ok(filter) = parse_filter(&text) {
                let _ = filter.matches(&user());
            }
        }

        #[test]
        fn parse_filter_never_panics_on_filter_like_text(
            text in r#"([a-zA-Z.:$_-]{1,6}|[ ()\[\]"\\]|eq|and|or|not|pr|true|null|-?[0-9.eE+]{1,4}){0,40}"#
        ) {
            if let Ok(filter) = parse_filter(&text) {
                let _ = filter.matches(&user());
                let _ = filter.simple_equality();
            }
        }

        #[test]
        fn string_literals_round_trip(value in any::<String>()) {
            let literal = serde_json::to_string(&value).unwrap();
            let text = format!("displayName eq {literal}");
            prop_assume!(text.len() <= MAX_FILTER_LEN);
            let filter = parse_filter(&text).unwrap();
            prop_assert_eq!(filter.simple_equality().map(|(_, v)| v), Some(value.as_str()));
        }
    }
}
