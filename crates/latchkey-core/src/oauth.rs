//! OAuth2 rules that need no I/O: the RFC 6749 §5.2 error codes and their statuses, grant types,
//! scope lists, redirect URIs, and the duplicate-free reading of a form body.

use std::collections::BTreeMap;
use std::fmt;

use crate::policy::{OwnerKind, TokenTypes};

/// RFC 6749 §5.2 (and RFC 7009 §2.2.1) error codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OAuthErrorCode {
    InvalidRequest,
    InvalidClient,
    InvalidGrant,
    UnauthorizedClient,
    UnsupportedGrantType,
    InvalidScope,
    UnsupportedTokenType,
    UnsupportedResponseType,
    AccessDenied,
}

impl OAuthErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidRequest => "invalid_request",
            Self::InvalidClient => "invalid_client",
            Self::InvalidGrant => "invalid_grant",
            Self::UnauthorizedClient => "unauthorized_client",
            Self::UnsupportedGrantType => "unsupported_grant_type",
            Self::InvalidScope => "invalid_scope",
            Self::UnsupportedTokenType => "unsupported_token_type",
            Self::UnsupportedResponseType => "unsupported_response_type",
            Self::AccessDenied => "access_denied",
        }
    }
    /// 401 for a failed client authentication, 400 for everything else (§5.2).
    pub fn status(self) -> u16 {
        match self {
            Self::InvalidClient => 401,
            _ => 400,
        }
    }
}

impl fmt::Display for OAuthErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An OAuth error with a description for the developer (never a secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthError {
    pub code: OAuthErrorCode,
    pub description: String,
}

impl OAuthError {
    pub fn new(code: OAuthErrorCode, description: impl Into<String>) -> Self {
        Self {
            code,
            description: description.into(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum GrantType {
    ClientCredentials,
    AuthorizationCode,
    RefreshToken,
}

impl GrantType {
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "client_credentials" => Some(Self::ClientCredentials),
            "authorization_code" => Some(Self::AuthorizationCode),
            "refresh_token" => Some(Self::RefreshToken),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ClientCredentials => "client_credentials",
            Self::AuthorizationCode => "authorization_code",
            Self::RefreshToken => "refresh_token",
        }
    }
}

/// A scope token (RFC 6749 §3.3): printable ASCII without space, `"` or `\`.
pub fn is_scope_token(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 128
        && text
            .bytes()
            .all(|b| b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b))
}

/// Whether a byte may appear in `error_description` (RFC 6749 §5.2:
/// `%x20-21 / %x23-5B / %x5D-7E`).
fn is_description_byte(b: u8) -> bool {
    matches!(b, 0x20..=0x21 | 0x23..=0x5B | 0x5D..=0x7E)
}

/// `text` made fit for `error_description`: `"` becomes `'`, `\` becomes `/`, any other
/// character outside RFC 6749 §5.2's set becomes `?`. Applied where OAuth errors are written
/// out, so no message (nor an echoed parameter in one) can break a client's parser.
pub fn error_description_text(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '"' => '\'',
            '\\' => '/',
            c if u8::try_from(c).is_ok_and(is_description_byte) => c,
            _ => '?',
        })
        .collect()
}

/// A space-separated scope list, deduplicated, in first-seen order.
pub fn parse_scope_list(text: &str) -> Result<Vec<String>, String> {
    let mut out: Vec<String> = Vec::new();
    for s in text.split(' ').filter(|s| !s.is_empty()) {
        if !is_scope_token(s) {
            return Err(format!("'{s}' is not a valid scope"));
        }
        if !out.iter().any(|o| o == s) {
            out.push(s.to_owned());
        }
    }
    Ok(out)
}

/// What an organisation may do with one scope it wants to give an OAuth client (SPEC 3
/// "Scopes are bounded by the organisation").
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrgScope {
    /// Some organisation-owned type lists it and needs no feature the organisation lacks.
    Allowed,
    /// Only feature-gated types list it, and the organisation has none of their features.
    NeedsFeature(String),
    /// No organisation-owned type lists it.
    Unknown,
}

/// Reads `scope` against the organisation-owned token types and the organisation's features:
/// a client's authority can never reach further than a token the admin could create.
pub fn org_scope(types: &TokenTypes, features: &[String], scope: &str) -> OrgScope {
    let mut missing = None;
    for policy in types
        .iter()
        .filter(|p| p.owner == OwnerKind::Organisation && p.scopes.iter().any(|s| s == scope))
    {
        match &policy.requires_feature {
            Some(feature) if !features.contains(feature) => {
                missing.get_or_insert_with(|| feature.clone());
            }
            _ => return OrgScope::Allowed,
        }
    }
    missing.map_or(OrgScope::Unknown, OrgScope::NeedsFeature)
}

/// A redirect URI a client may register: absolute, `https` (or `http` on loopback), no fragment
/// (RFC 6749 §3.1.2). Compared later by exact string equality.
pub fn check_redirect_uri(text: &str) -> Result<(), String> {
    let bad = |why: &str| Err(format!("redirect URI {text:?}: {why}"));
    if text.len() > 2_000 || text.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return bad("must be a URL without spaces, at most 2000 characters");
    }
    if text.contains('#') {
        return bad("must not contain a fragment");
    }
    // User-info would make `http://127.0.0.1:80@evil.example/` look like a loopback URI to a
    // naive host reading while browsers go to evil.example (SPEC 3): refuse any.
    let authority = text.split_once("://").map_or("", |(_, rest)| {
        rest.split(['/', '?']).next().unwrap_or_default()
    });
    if authority.contains('@') {
        return bad("must not contain user information (user@host)");
    }
    let rest = if let Some(rest) = text.strip_prefix("https://") {
        rest
    } else if let Some(rest) = text.strip_prefix("http://") {
        let host = rest.split(['/', '?']).next().unwrap_or_default();
        let host = host.rsplit_once(':').map_or(host, |(h, _)| h);
        if !matches!(host, "localhost" | "127.0.0.1" | "[::1]") {
            return bad("plain http is allowed only for localhost");
        }
        rest
    } else {
        return bad("must start with https:// (or http://localhost)");
    };
    if rest.split(['/', '?']).next().unwrap_or_default().is_empty() {
        return bad("has no host");
    }
    Ok(())
}

/// The web origin (RFC 6454) of a URL or of an `Origin` header: `scheme://host[:port]`, in
/// lower case, without the scheme's default port; `None` unless `http` or `https` with a host.
/// Used for CORS: a browser app may call the token endpoint from where its redirect URI is.
pub fn web_origin(text: &str) -> Option<String> {
    let (scheme, rest) = text.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.is_empty() || authority.contains('@') {
        return None;
    }
    let authority = authority.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "https" => ":443",
        "http" => ":80",
        _ => return None,
    };
    let authority = authority.strip_suffix(default_port).unwrap_or(&authority);
    Some(format!("{scheme}://{authority}"))
}

/// Reads an `application/x-www-form-urlencoded` body. Parameters sent twice are refused
/// (RFC 6749 §3.2: "parameters MUST NOT be included more than once"); empty values count as
/// absent.
pub fn parse_form(body: &[u8]) -> Result<BTreeMap<String, String>, OAuthError> {
    let mut map = BTreeMap::new();
    for (k, v) in form_pairs(body)? {
        if map.contains_key(&k) {
            return Err(OAuthError::new(
                OAuthErrorCode::InvalidRequest,
                format!("the parameter '{k}' is repeated"),
            ));
        }
        map.insert(k, v);
    }
    map.retain(|_, v| !v.is_empty());
    Ok(map)
}

fn form_pairs(body: &[u8]) -> Result<Vec<(String, String)>, OAuthError> {
    let text = std::str::from_utf8(body)
        .map_err(|_| OAuthError::new(OAuthErrorCode::InvalidRequest, "the body is not UTF-8"))?;
    text.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            Ok((percent_decode(k)?, percent_decode(v)?))
        })
        .collect()
}

/// One `application/x-www-form-urlencoded` value decoded (`+` is a space, `%XX` a byte, the
/// result UTF-8): a form field, or a part of HTTP Basic client credentials (RFC 6749 §2.3.1).
pub fn decode_form_value(text: &str) -> Result<String, OAuthError> {
    percent_decode(text)
}

fn percent_decode(text: &str) -> Result<String, OAuthError> {
    let bad = || {
        OAuthError::new(
            OAuthErrorCode::InvalidRequest,
            "the body is not valid form encoding",
        )
    };
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes.get(i + 1..i + 3).ok_or_else(bad)?;
                let hex = std::str::from_utf8(hex).map_err(|_| bad())?;
                out.push(u8::from_str_radix(hex, 16).map_err(|_| bad())?);
                i += 2;
            }
            _ => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| bad())
}

/// A PKCE code verifier (RFC 7636 §4.1): 43 to 128 characters of `[A-Za-z0-9-._~]`.
pub fn is_code_verifier(text: &str) -> bool {
    (43..=128).contains(&text.len())
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// The `S256` challenge of a verifier: `BASE64URL(SHA256(verifier))` (RFC 7636 §4.2).
pub fn pkce_s256(verifier: &str) -> String {
    use base64::Engine as _;
    use sha2::{Digest, Sha256};
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// Checks a verifier against a stored `S256` challenge, in constant time.
pub fn pkce_matches(verifier: &str, challenge: &str) -> bool {
    use subtle::ConstantTimeEq;
    is_code_verifier(verifier)
        && bool::from(pkce_s256(verifier).as_bytes().ct_eq(challenge.as_bytes()))
}

/// Percent-encodes a query parameter value (`application/x-www-form-urlencoded`).
pub fn form_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `redirect_uri` with `params` appended to its query (RFC 6749 §4.1.2).
pub fn redirect_with(redirect_uri: &str, params: &[(&str, &str)]) -> String {
    let mut url = redirect_uri.to_owned();
    let mut sep = if url.contains('?') { '&' } else { '?' };
    for (k, v) in params {
        url.push(sep);
        url.push_str(&form_encode(k));
        url.push('=');
        url.push_str(&form_encode(v));
        sep = '&';
    }
    url
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rstest::rstest;

    #[rstest]
    #[case("cli_abc", Some("cli_abc"))]
    #[case("a%3Ab+c", Some("a:b c"))]
    #[case("s%26e%3Dcret", Some("s&e=cret"))]
    #[case("100%", None)]
    #[case("%zz", None)]
    #[case("%ff", None)]
    fn a_basic_credential_part_is_one_form_value(#[case] text: &str, #[case] want: Option<&str>) {
        assert_eq!(decode_form_value(text).ok().as_deref(), want);
    }

    #[test]
    fn forms_decode_and_refuse_duplicates() {
        let form =
            parse_form(b"grant_type=client_credentials&scope=a+b%20c&empty=").unwrap_or_default();
        assert_eq!(
            form.get("grant_type").map(String::as_str),
            Some("client_credentials")
        );
        assert_eq!(form.get("scope").map(String::as_str), Some("a b c"));
        assert!(!form.contains_key("empty"), "empty parameters are absent");
        let dup = parse_form(b"a=1&a=2");
        assert_eq!(dup.map_err(|e| e.code), Err(OAuthErrorCode::InvalidRequest));
        assert!(parse_form(b"a=%zz").is_err());
        assert!(parse_form(b"a=%f").is_err());
        assert!(parse_form(&[0xff, b'=', b'1']).is_err());
    }

    #[rstest]
    #[case("https://app.example/cb", true)]
    #[case("https://app.example/cb?x=1", true)]
    #[case("http://localhost:8080/cb", true)]
    #[case("http://127.0.0.1/cb", true)]
    #[case("http://app.example/cb", false)]
    #[case("https://app.example/cb#frag", false)]
    #[case("ftp://x/y", false)]
    #[case("https:///nohost", false)]
    #[case("https://a b", false)]
    fn redirect_uris(#[case] uri: &str, #[case] ok: bool) {
        assert_eq!(check_redirect_uri(uri).is_ok(), ok, "{uri}");
    }

    #[rstest]
    #[case("http://127.0.0.1:80@evil.example/cb")]
    #[case("http://localhost@evil.example/cb")]
    #[case("https://user:pass@app.example/cb")]
    #[case("https://app.example@evil.example")]
    #[case("http://[::1]:8080@evil.example/?x=1")]
    fn redirect_uris_with_user_info_are_refused(#[case] uri: &str) {
        assert!(check_redirect_uri(uri).is_err(), "{uri}");
    }

    #[test]
    fn an_at_sign_after_the_authority_is_not_user_info() {
        assert!(check_redirect_uri("https://app.example/cb?email=a@b.example").is_ok());
        assert!(check_redirect_uri("http://127.0.0.1:8080/u/@me").is_ok());
    }

    #[rstest]
    #[case(
        "the grant type \"password\" is not supported",
        "the grant type 'password' is not supported"
    )]
    #[case("a\\b", "a/b")]
    #[case("caf\u{e9}\n\u{7f}", "caf???")]
    #[case("plain text: fine!", "plain text: fine!")]
    fn error_descriptions_keep_to_rfc_6749(#[case] text: &str, #[case] expected: &str) {
        assert_eq!(error_description_text(text), expected);
    }

    #[test]
    fn client_scopes_are_bounded_by_organisation_types_and_features() {
        let types = TokenTypes::defaults();
        let none: Vec<String> = Vec::new();
        let links = vec!["links".to_owned()];
        assert_eq!(org_scope(&types, &none, "api"), OrgScope::Allowed);
        assert_eq!(
            org_scope(&types, &none, "links"),
            OrgScope::NeedsFeature("links".to_owned())
        );
        assert_eq!(org_scope(&types, &links, "links"), OrgScope::Allowed);
        assert_eq!(
            org_scope(&types, &links, "admin:everything"),
            OrgScope::Unknown
        );
    }

    #[rstest]
    #[case("https://App.Example/cb?x=1", Some("https://app.example"))]
    #[case("https://app.example:443/cb", Some("https://app.example"))]
    #[case("https://app.example:8443", Some("https://app.example:8443"))]
    #[case("http://localhost:8080/cb", Some("http://localhost:8080"))]
    #[case("http://127.0.0.1:80/cb", Some("http://127.0.0.1"))]
    #[case("http://[::1]:3000", Some("http://[::1]:3000"))]
    #[case("null", None)]
    #[case("ftp://x.example/y", None)]
    #[case("https://", None)]
    #[case("http://127.0.0.1:80@evil.example/cb", None)]
    fn web_origins(#[case] text: &str, #[case] origin: Option<&str>) {
        assert_eq!(web_origin(text).as_deref(), origin, "{text}");
    }

    #[test]
    fn scopes() {
        assert_eq!(
            parse_scope_list("read  write read"),
            Ok(vec!["read".to_owned(), "write".to_owned()])
        );
        assert!(parse_scope_list("bad\"quote").is_err());
        assert_eq!(parse_scope_list(""), Ok(vec![]));
    }

    #[test]
    fn pkce_s256_matches_the_rfc_7636_example() {
        // RFC 7636, Appendix B.
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        assert_eq!(
            pkce_s256(verifier),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
        assert!(pkce_matches(
            verifier,
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        ));
        assert!(!pkce_matches("short", &pkce_s256("short")));
        assert!(!pkce_matches(
            verifier,
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cN"
        ));
    }

    #[test]
    fn redirects_keep_existing_queries_and_encode_values() {
        assert_eq!(
            redirect_with("https://a.example/cb", &[("code", "x y"), ("state", "s&t")]),
            "https://a.example/cb?code=x%20y&state=s%26t"
        );
        assert_eq!(
            redirect_with("https://a.example/cb?x=1", &[("error", "access_denied")]),
            "https://a.example/cb?x=1&error=access_denied"
        );
    }

    #[test]
    fn statuses_follow_rfc_6749() {
        assert_eq!(OAuthErrorCode::InvalidClient.status(), 401);
        assert_eq!(OAuthErrorCode::InvalidGrant.status(), 400);
        assert_eq!(GrantType::parse("password"), None);
    }

    proptest! {
        #[test]
        fn error_descriptions_never_hold_a_forbidden_byte(text in any::<String>()) {
            let clean = error_description_text(&text);
            prop_assert!(clean.bytes().all(is_description_byte), "{clean:?}");
            prop_assert_eq!(clean.chars().count(), text.chars().count());
        }

        #[test]
        fn form_parsing_never_panics(body in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = parse_form(&body);
        }
    }
}
