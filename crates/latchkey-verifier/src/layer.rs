//! A `tower` layer: every request's bearer token verified before the inner service sees it,
//! the [`Identity`] put in the request's extensions (axum: `Extension<Identity>`). A request
//! without a valid token is answered here: `401` with an RFC 6750 challenge, or `503` with
//! `Retry-After` when Latchkey cannot be asked (fail closed).

use std::task::{Context, Poll};

use futures_util::future::BoxFuture;
use http::{HeaderValue, Request, Response, StatusCode, header};

use crate::{Identity, Refusal, Verifier};

/// Wraps a service so that only verified requests reach it.
#[derive(Clone)]
pub struct VerifyLayer {
    verifier: Verifier,
}

impl VerifyLayer {
    pub fn new(verifier: Verifier) -> Self {
        Self { verifier }
    }
}

impl<S> tower::Layer<S> for VerifyLayer {
    type Service = VerifyService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        VerifyService {
            inner,
            verifier: self.verifier.clone(),
        }
    }
}

/// See [`VerifyLayer`].
#[derive(Clone)]
pub struct VerifyService<S> {
    inner: S,
    verifier: Verifier,
}

/// The token of an `Authorization: Bearer …` header: `None` without one.
fn bearer<B>(req: &Request<B>) -> Option<&str> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

fn refused<B: Default>(refusal: &Refusal) -> Response<B> {
    let (status, challenge) = match refusal {
        Refusal::Missing => (StatusCode::UNAUTHORIZED, "Bearer realm=\"latchkey\""),
        Refusal::Malformed | Refusal::Inactive => (
            StatusCode::UNAUTHORIZED,
            "Bearer realm=\"latchkey\", error=\"invalid_token\"",
        ),
        Refusal::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, ""),
    };
    let mut res = Response::new(B::default());
    *res.status_mut() = status;
    if challenge.is_empty() {
        res.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    } else {
        res.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static(challenge),
        );
    }
    res
}

impl<S, ReqBody, ResBody> tower::Service<Request<ReqBody>> for VerifyService<S>
where
    S: tower::Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: Default + Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        // The service that was made ready is the one called; a fresh clone stays behind.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let verifier = self.verifier.clone();
        Box::pin(async move {
            let verified: Result<Identity, Refusal> = match bearer(&req) {
                Some(token) => verifier.verify(token).await,
                None => Err(Refusal::Missing),
            };
            match verified {
                Ok(identity) => {
                    req.extensions_mut().insert(identity);
                    inner.call(req).await
                }
                Err(refusal) => Ok(refused(&refusal)),
            }
        })
    }
}
