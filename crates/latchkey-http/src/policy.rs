//! What every answer keeps, through the router or at a door (`doors.rs`): the request id, the
//! headers every response carries, the header-size limit and a panic answered with a `500`.
//! Both the router and the doors use these; neither imports the other for them.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::http::{HeaderValue, Request, header};
use axum::response::{IntoResponse as _, Response};
use latchkey_service::ErrorCode;
use tower_http::request_id::{MakeRequestId, RequestId};

use crate::error::error_response;

/// The request id header, echoed on every response (set when the client sent none).
pub(crate) const REQUEST_ID: &str = "x-request-id";

/// The headers every answer carries (SECURITY.md): no sniffing, and no caching unless the
/// handler said otherwise; and an HTML answer (a page) or a redirect (a page's, after a form)
/// the pages' policy as well, unless the page set its own (a page showing a secret sends no
/// `Referer` at all). Applied here, once, for every route: no page can forget it.
pub(crate) fn response_policies(headers: &mut axum::http::HeaderMap) {
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    let html = headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/html"));
    if html || headers.contains_key(header::LOCATION) {
        page_policies(headers);
    }
}

/// The pages' security headers: a strict CSP (only our own script and stylesheet, no framing,
/// no `<base>`), `X-Frame-Options` for older browsers, and `Referrer-Policy: same-origin`.
fn page_policies(headers: &mut axum::http::HeaderMap) {
    let defaults = [
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self'; \
             frame-ancestors 'none'; base-uri 'none'",
        ),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "same-origin"),
    ];
    for (name, value) in defaults {
        if !headers.contains_key(&name) {
            headers.insert(name, HeaderValue::from_static(value));
        }
    }
}

/// Request headers above this are refused with `431` (SECURITY.md).
const MAX_HEADERS: usize = 16 * 1024;

/// Refuses requests whose headers exceed [`MAX_HEADERS`]: a plain service, so the request is
/// handed on without boxing a future (as `axum::middleware::from_fn` would, every request).
#[derive(Clone)]
pub(crate) struct HeaderSizeLimit<S> {
    pub(crate) inner: S,
}

impl<S> tower::Service<Request<axum::body::Body>> for HeaderSizeLimit<S>
where
    S: tower::Service<Request<axum::body::Body>, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future =
        futures_util::future::Either<std::future::Ready<Result<Response, S::Error>>, S::Future>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<axum::body::Body>) -> Self::Future {
        match headers_too_large(request.headers()) {
            Some(refusal) => futures_util::future::Either::Left(std::future::ready(Ok(refusal))),
            None => futures_util::future::Either::Right(self.inner.call(request)),
        }
    }
}

/// The `431` answer when the request headers exceed [`MAX_HEADERS`].
pub(crate) fn headers_too_large(headers: &axum::http::HeaderMap) -> Option<Response> {
    let size: usize = headers
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 4)
        .sum();
    (size > MAX_HEADERS).then(|| {
        error_response(
            ErrorCode::HeadersTooLarge,
            "the request headers are too large (at most 16 KiB)",
        )
    })
}

/// A panic in a handler becomes a generic `500`; the server keeps serving.
pub(crate) fn panic_response(_panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("a request handler panicked");
    error_response(ErrorCode::InternalError, "an internal error occurred").into_response()
}

/// Request ids: a per-process random prefix and a counter (cheaper than a UUID per request).
#[derive(Clone)]
pub(crate) struct CountingRequestId {
    prefix: Arc<str>,
    next: Arc<AtomicU64>,
}

impl Default for CountingRequestId {
    fn default() -> Self {
        let mut seed = [0u8; 4];
        let _ = getrandom_fill(&mut seed);
        Self {
            prefix: format!("{:08x}", u32::from_be_bytes(seed)).into(),
            next: Arc::new(AtomicU64::new(1)),
        }
    }
}

fn getrandom_fill(buf: &mut [u8]) -> Result<(), ()> {
    latchkey_service::crypto::random_bytes::<4>()
        .map(|b| buf.copy_from_slice(&b[..buf.len().min(4)]))
        .map_err(|_| ())
}

impl CountingRequestId {
    pub(crate) fn next_id(&self) -> Option<HeaderValue> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        // Written into one buffer that becomes the header value as it is (`format!` and its
        // formatting machinery cost 1.5 % of a `/v1/me` request, docs/BENCHMARKS.md).
        let mut digits = itoa::Buffer::new();
        let digits = digits.format(n);
        let mut id = bytes::BytesMut::with_capacity(self.prefix.len() + 1 + digits.len());
        id.extend_from_slice(self.prefix.as_bytes());
        id.extend_from_slice(b"-");
        id.extend_from_slice(digits.as_bytes());
        HeaderValue::from_maybe_shared(id.freeze()).ok()
    }
}

impl MakeRequestId for CountingRequestId {
    fn make_request_id<B>(&mut self, _request: &Request<B>) -> Option<RequestId> {
        self.next_id().map(RequestId::new)
    }
}
