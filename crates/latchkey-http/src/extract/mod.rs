//! Typed input and credentials, extracted once per request.
//!
//! [`JsonBody`] insists on `application/json`, refuses unknown fields and maps every rejection
//! to our error envelope. [`SignedIn`] is the management endpoints' requirement: a session
//! (bearer session token, or cookie from our own origin); any API credential there is `403
//! session_required`.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use bytes::Bytes;
use latchkey_core::Refusal;
use latchkey_service::sessions::{SessionUser, looks_like_session};
use latchkey_service::{Caller, ErrorCode, ServiceError};
use serde::de::DeserializeOwned;

use crate::AppState;
use crate::cookies::{SESSION_COOKIE, cookie};
use crate::error::ApiError;

pub mod page;

/// Request bodies above this are refused with `413` (SECURITY.md).
pub(crate) const MAX_BODY: usize = 256 * 1024;

/// The address the request came from: the TCP peer, unless the peer is one of
/// `trusted_proxies` (SPEC 7), in which case the nearest address in `X-Forwarded-For` (or, without
/// it, `Forwarded: for=`) that is not itself a trusted proxy. From anyone else those headers are
/// ignored: a client cannot choose its own address for allowlists, limits or the audit log.
pub fn peer_ip(parts: &Parts, trusted: &[ipnet::IpNet]) -> IpAddr {
    client_ip(connected_peer(&parts.extensions), &parts.headers, trusted)
}

/// The TCP peer the accept loop recorded for a routed request.
pub fn connected_peer(extensions: &axum::http::Extensions) -> IpAddr {
    extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::from([127, 0, 0, 1]), |c| c.0.ip())
}

/// [`peer_ip`] for a request whose TCP peer is known (the doors get it from the accept loop).
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[ipnet::IpNet]) -> IpAddr {
    if trusted.is_empty() || !trusted.iter().any(|net| net.contains(&peer)) {
        return peer;
    }
    let mut hops: Vec<IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(parse_hop)
        .collect();
    if hops.is_empty() {
        hops = headers
            .get_all(header::FORWARDED)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .flat_map(|element| element.split(';'))
            .filter_map(|pair| {
                let (key, value) = pair.trim().split_once('=')?;
                key.eq_ignore_ascii_case("for").then_some(value)
            })
            .filter_map(parse_hop)
            .collect();
    }
    // The rightmost hops were added by our own proxies; the first one that is not is the client.
    hops.iter()
        .rev()
        .find(|ip| !trusted.iter().any(|net| net.contains(*ip)))
        .or(hops.first())
        .copied()
        .unwrap_or(peer)
}

/// One hop of `X-Forwarded-For` or `Forwarded: for=`: `1.2.3.4`, `1.2.3.4:80`, `2001:db8::1`,
/// `"[2001:db8::1]:443"`. Obfuscated identifiers (`unknown`, `_hidden`) are not addresses.
fn parse_hop(text: &str) -> Option<IpAddr> {
    let text = text.trim().trim_matches('"');
    if let Ok(ip) = text.parse() {
        return Some(ip);
    }
    if let Some(rest) = text.strip_prefix('[') {
        return rest.split_once(']')?.0.parse().ok();
    }
    text.parse::<SocketAddr>().ok().map(|a| a.ip())
}

/// What an `Authorization` header holds for a bearer-protected resource.
pub enum Bearer<'a> {
    /// No header, another scheme, or nothing after `Bearer`: no credential at all.
    Absent,
    /// The credential of `Authorization: Bearer <token>`.
    Token(&'a str),
    /// A `Bearer` credential that is not header text (bytes outside visible ASCII): a bad
    /// credential, refused as malformed, never mistaken for an absent one.
    Unreadable,
}

/// The credential of an `Authorization: Bearer` header (scheme case-insensitive, RFC 6750
/// §2.1). Never read from the query string.
pub fn bearer(headers: &HeaderMap) -> Bearer<'_> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Bearer::Absent;
    };
    let Ok(text) = value.to_str() else {
        let bytes = value.as_bytes();
        let is_bearer = bytes
            .get(..7)
            .is_some_and(|scheme| scheme.eq_ignore_ascii_case(b"bearer "));
        return if is_bearer {
            Bearer::Unreadable
        } else {
            Bearer::Absent
        };
    };
    match text.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => {
            let token = token.trim();
            if token.is_empty() {
                Bearer::Absent
            } else {
                Bearer::Token(token)
            }
        }
        _ => Bearer::Absent,
    }
}

/// A JSON request body of type `T`.
pub struct JsonBody<T>(pub T);

fn is_json(req: &Request) -> bool {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"))
}

async fn read_body(req: Request) -> Result<Bytes, ApiError> {
    body_bytes(req.into_body(), MAX_BODY)
        .await
        .map_err(|e| match e {
            BodyError::TooLarge => {
                ApiError::client(ErrorCode::PayloadTooLarge, "the request body is too large")
            }
            BodyError::Unreadable => ApiError::client(
                ErrorCode::InvalidRequest,
                "the request body could not be read",
            ),
        })
}

/// Why a request body could not be had.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum BodyError {
    /// It is longer than the limit.
    TooLarge,
    /// The connection failed or stalled (the body timeout) before it ended.
    Unreadable,
}

/// The whole request body, at most `limit` bytes: the one reader of every handler that takes a
/// body as bytes, behind the router or at a door (`doors.rs`), so the limits are the same
/// either way. A body that did not arrive whole in time ([`DeadlineBody`], wrapped around
/// every body by `doors::Server::handle`) is unreadable.
pub(crate) async fn body_bytes(body: axum::body::Body, limit: usize) -> Result<Bytes, BodyError> {
    use axum::body::HttpBody as _;
    use http_body_util::BodyExt as _;
    let mut body = http_body_util::Limited::new(body, limit);
    let mut bytes = bytes::BytesMut::new();
    loop {
        match body.frame().await {
            None => return Ok(bytes.freeze()),
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    // The first piece is usually the whole body: kept, not copied.
                    if bytes.is_empty() && body.is_end_stream() {
                        return Ok(data);
                    }
                    bytes.extend_from_slice(&data);
                }
            }
            Some(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
                return Err(BodyError::TooLarge);
            }
            Some(Err(_)) => return Err(BodyError::Unreadable),
        }
    }
}

/// A request body that must arrive whole within `body_read_timeout` of the first moment it
/// kept its reader waiting. A timeout between pieces never cuts a client that trickles a byte every few
/// seconds (measured: `PARTS=faults scripts/bench`, docs/RELIABILITY.md); this one does. The
/// timer is made only at that first wait: a body that came with the request head (a form, a
/// JSON document) pays nothing.
pub(crate) struct DeadlineBody {
    inner: axum::body::Body,
    limit: std::time::Duration,
    deadline: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
}

/// The error a [`DeadlineBody`] ends with when its time is up.
#[derive(Debug)]
struct BodyTooSlow;

impl std::fmt::Display for BodyTooSlow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the request body did not arrive in time")
    }
}

impl std::error::Error for BodyTooSlow {}

impl DeadlineBody {
    pub(crate) fn wrap(inner: axum::body::Body, limit: std::time::Duration) -> axum::body::Body {
        axum::body::Body::new(Self {
            inner,
            limit,
            deadline: None,
        })
    }
}

impl axum::body::HttpBody for DeadlineBody {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        use std::future::Future as _;
        use std::task::Poll;
        let this = &mut *self;
        if let Poll::Ready(frame) = std::pin::Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|r| r.map_err(axum::BoxError::from)));
        }
        let limit = this.limit;
        let deadline = this
            .deadline
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyTooSlow)))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| {
        let what = match e.classify() {
            serde_json::error::Category::Data => without_values(&e.to_string()),
            // serde_json's syntax messages are fixed sentences ("expected value", "EOF while
            // parsing an object"): they name no input.
            _ => syntax_message(&e),
        };
        let message = format!(
            "invalid JSON body: {what} (line {}, column {})",
            e.line(),
            e.column()
        );
        ApiError::client(ErrorCode::InvalidRequest, message)
    })
}

/// serde_json's syntax message without its position (we add our own).
fn syntax_message(e: &serde_json::Error) -> String {
    let text = e.to_string();
    match text.rfind(" at line ") {
        Some(end) => text[..end].to_owned(),
        None => text,
    }
}

/// A serde data error in words that never repeat what the client sent (SECURITY.md: no
/// submitted value in any answer; a misplaced secret must not come back in an error body).
/// serde's messages quote the offending value (`invalid type: string "lkp_…"`), an unknown
/// variant or an unknown key; only the parts that come from our own types are kept: the
/// field a message is about when it is one of ours, and what was expected.
fn without_values(message: &str) -> String {
    // What was expected is written by our types' `expecting`, after the last ", expected "
    // (a submitted value comes before it, even one that contains those words itself).
    let expected = |text: &str| {
        text.rfind(", expected ")
            .map(|i| text[i + ", expected ".len()..].to_owned())
            .map(|e| match e.rfind(" at line ") {
                Some(end) => e[..end].to_owned(),
                None => e,
            })
    };
    let ours_quoted = |rest: &str| rest.split('`').next().unwrap_or_default().to_owned();
    if let Some(rest) = message.strip_prefix("missing field `") {
        return format!("missing field `{}`", ours_quoted(rest));
    }
    if let Some(rest) = message.strip_prefix("duplicate field `") {
        return format!("duplicate field `{}`", ours_quoted(rest));
    }
    let (sentence, tail) = if message.starts_with("unknown field `") {
        ("an unknown field", expected(message))
    } else if message.starts_with("invalid type: ") {
        ("a value of the wrong type", expected(message))
    } else if message.starts_with("invalid length ") {
        ("a list or text of the wrong length", expected(message))
    } else if message.starts_with("invalid value: ") || message.starts_with("unknown variant `") {
        ("a value that is not allowed", expected(message))
    } else {
        // A type's own message may quote the value: say only that one did not fit.
        ("a value that is not allowed", None)
    };
    match tail {
        Some(tail) => format!("{sentence}, expected {tail}"),
        None => sentence.to_owned(),
    }
}
fn not_json() -> ApiError {
    ApiError::client(
        ErrorCode::UnsupportedMediaType,
        "the request body must be JSON (Content-Type: application/json)",
    )
}

impl<T: DeserializeOwned> FromRequest<AppState> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &AppState) -> Result<Self, Self::Rejection> {
        if !is_json(&req) {
            return Err(not_json());
        }
        let bytes = read_body(req).await?;
        parse_json(&bytes).map(JsonBody)
    }
}

/// A JSON body whose every field is optional: no body at all means `T::default()`. Any byte of
/// body, even a space, must come as `application/json`: a cross-site "simple" request
/// (`text/plain`) never gets past this extractor by sending something blank.
pub struct JsonOrEmpty<T>(pub T);

impl<T: DeserializeOwned + Default> FromRequest<AppState> for JsonOrEmpty<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &AppState) -> Result<Self, Self::Rejection> {
        let json = is_json(&req);
        let bytes = read_body(req).await?;
        if bytes.is_empty() {
            return Ok(Self(T::default()));
        }
        if !json {
            return Err(not_json());
        }
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self(T::default()));
        }
        parse_json(&bytes).map(JsonOrEmpty)
    }
}

/// Query-string parameters of type `T`: a query string that does not fit is `400
/// invalid_request` in the error envelope (axum's own rejection is plain text).
pub struct QueryParams<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for QueryParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| Self(q.0))
            .map_err(|e| {
                let text = e.body_text();
                let detail = text
                    .strip_prefix("Failed to deserialize query string: ")
                    .unwrap_or(&text);
                let message = format!("invalid query string: {}", without_values(detail));
                ApiError::client(ErrorCode::InvalidRequest, message)
            })
    }
}

/// Path parameters of type `T`, for every route (API and console alike; `clippy.toml` bans
/// axum's own `Path`): a segment that does not fit, such as percent-encoded bytes that are not
/// UTF-8 (`/v1/orgs/%FF/tokens`), is `400 invalid_request` in the error envelope, not axum's
/// plain-text answer, and the message repeats nothing of the path.
pub struct Path<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        use axum::extract::path::ErrorKind;
        use axum::extract::rejection::PathRejection;
        #[expect(
            clippy::disallowed_types,
            reason = "the one place that wraps axum's Path"
        )]
        let extracted = axum::extract::Path::<T>::from_request_parts(parts, state).await;
        extracted
            .map(|p| Self(p.0))
            .map_err(|rejection| match rejection {
                PathRejection::FailedToDeserializePathParams(e) => {
                    let message = match e.kind() {
                        ErrorKind::InvalidUtf8InPathParam { .. } => {
                            "the address has a path segment that is not UTF-8 text"
                        }
                        _ => "the address has a path segment of the wrong form",
                    };
                    ApiError::client(ErrorCode::InvalidRequest, message)
                }
                // A route whose pattern and handler disagree: our bug, not the client's.
                other => ApiError(ServiceError::Internal(format!(
                    "path parameters: {}",
                    other.body_text()
                ))),
            })
    }
}

/// A signed-in user and the caller context for audit events.
pub struct SignedIn {
    pub session: SessionUser,
    pub caller: Caller,
}

impl FromRequestParts<AppState> for SignedIn {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let ip = peer_ip(parts, &state.trusted_proxies);
        let credential = match bearer(&parts.headers) {
            Bearer::Token(token) if looks_like_session(token) => token,
            Bearer::Token(token) => {
                if state.service.is_api_credential(token) {
                    return Err(ApiError::client(
                        ErrorCode::SessionRequired,
                        "this endpoint needs a session (sign in with POST /v1/sessions), not an API token",
                    ));
                }
                return Err(ApiError::client(
                    ErrorCode::Unauthenticated,
                    "sign in first: the credential is not a session",
                ));
            }
            Bearer::Unreadable => return Err(ApiError(ServiceError::Refused(Refusal::Malformed))),
            Bearer::Absent => {
                let token = cookie(&parts.headers, SESSION_COOKIE).ok_or_else(|| {
                    ApiError::client(
                        ErrorCode::Unauthenticated,
                        "sign in first (POST /v1/sessions)",
                    )
                })?;
                check_cookie_origin(state, parts)?;
                token
            }
        };
        let session = state.service.authenticate_session(credential).await?;
        let caller = session.caller(Some(ip));
        Ok(Self { session, caller })
    }
}

/// The CSRF check of the JSON API (SPEC 4): a browser attaches the cookie to requests any site
/// makes, so a state-changing request carrying it must come from our own origin: its `Origin`,
/// or without one its `Referer`, is `public_url`'s. `SameSite=Lax` alone does not do: a sibling
/// subdomain is the same site.
///
/// Safe methods are let through without either header: they change nothing, `/v1` sends no
/// CORS headers for credentials so another site cannot read the answer, and browsers leave
/// `Origin` off same-origin GETs.
fn check_cookie_origin(state: &AppState, parts: &Parts) -> Result<(), ApiError> {
    if parts.method.is_safe() {
        return Ok(());
    }
    let header_origin = |name| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(|text| url::Url::parse(text).map(|u| u.origin()).ok())
    };
    // An `Origin` present but unparsable (`null`) is a refusal, not a reason to look at `Referer`.
    let presented = header_origin(header::ORIGIN).or_else(|| header_origin(header::REFERER));
    let ours = url::Url::parse(&state.service.settings().public_url).map(|u| u.origin());
    match (presented, ours) {
        (Some(Some(theirs)), Ok(ours)) if theirs.is_tuple() && theirs == ours => Ok(()),
        _ => Err(ApiError::client(
            ErrorCode::CsrfFailed,
            "a request with the session cookie must come from the console's own origin \
             (Origin or Referer); scripts and tools send the session as a bearer token",
        )),
    }
}

/// The client's address (see [`peer_ip`]), for handlers that need it without a session.
pub struct ClientIp(pub IpAddr);

impl FromRequestParts<AppState> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        Ok(Self(peer_ip(parts, &state.trusted_proxies)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(peer: &str, headers: &[(&str, &str)]) -> Parts {
        let mut request = axum::http::Request::builder();
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        let (mut parts, ()) = request.body(()).unwrap_or_default().into_parts();
        let peer: SocketAddr = format!("{peer}:40000")
            .parse()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        parts.extensions.insert(ConnectInfo(peer));
        parts
    }

    #[test]
    fn forwarded_addresses_are_believed_only_from_trusted_proxies() {
        let trusted: Vec<ipnet::IpNet> =
            vec!["10.0.0.0/8".parse().unwrap_or_else(|_| unreachable!())];
        let ip = |s: &str| s.parse::<IpAddr>().unwrap_or_else(|_| unreachable!());
        // From an untrusted peer the header is ignored.
        let p = parts("203.0.113.9", &[("x-forwarded-for", "198.51.100.1")]);
        assert_eq!(peer_ip(&p, &trusted), ip("203.0.113.9"));
        // From a trusted one, the nearest untrusted hop.
        let p = parts(
            "10.0.0.2",
            &[("x-forwarded-for", "1.1.1.1, 198.51.100.1, 10.0.0.3")],
        );
        assert_eq!(peer_ip(&p, &trusted), ip("198.51.100.1"));
        let p = parts(
            "10.0.0.2",
            &[("forwarded", "for=\"[2001:db8::1]:443\";proto=https")],
        );
        assert_eq!(peer_ip(&p, &trusted), ip("2001:db8::1"));
        let p = parts("10.0.0.2", &[("x-forwarded-for", "garbage")]);
        assert_eq!(peer_ip(&p, &trusted), ip("10.0.0.2"));
        // Without trusted proxies, never.
        let p = parts("10.0.0.2", &[("x-forwarded-for", "198.51.100.1")]);
        assert_eq!(peer_ip(&p, &[]), ip("10.0.0.2"));
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[expect(dead_code, reason = "only deserialised")]
    struct Body {
        tokens: Vec<String>,
        role: Option<latchkey_core::Role>,
        days: Option<u32>,
    }

    fn message_of(json: &str) -> String {
        match parse_json::<Body>(json.as_bytes()) {
            Ok(body) => panic!("accepted: {body:?}"),
            Err(ApiError(e)) => e.to_string(),
        }
    }

    #[test]
    fn json_errors_say_what_was_expected_and_never_what_was_sent() {
        for (json, says) in [
            (r#"{"tokens": "SECRET"}"#, "wrong type, expected a sequence"),
            (
                r#"{"tokens": [], "SECRET": 1}"#,
                "unknown field, expected one of",
            ),
            (
                r#"{"tokens": [], "role": "SECRET"}"#,
                "not allowed, expected one of",
            ),
            (
                r#"{"tokens": [], "days": "SECRET"}"#,
                "wrong type, expected u32",
            ),
            (r#"{"tokens": [], "days": -1}"#, "not allowed, expected u32"),
            (r#"{"role": null}"#, "missing field `tokens`"),
            (
                r#"{"tokens": [], "tokens": []}"#,
                "duplicate field `tokens`",
            ),
            (r#"{"tokens": ["a"], "SECRET"#, "EOF while parsing"),
            (
                r#"{"tokens": "SECRET, expected a trick"}"#,
                "expected a sequence (line 1",
            ),
        ] {
            let message = message_of(json);
            assert!(!message.contains("SECRET"), "{json} -> {message}");
            assert!(message.contains(says), "{json} -> {message}");
            assert!(message.contains("(line 1, column"), "{message}");
        }
    }
}
