//! Latchkey's own requests to other servers (the SSO provider's discovery, keys and token
//! endpoint): HTTPS to public addresses only unless the operator allows private ones, no
//! redirects followed, bounded in time and size (SECURITY.md, "Outbound requests").
//!
//! The address check runs where the name is resolved, so a name that resolves to a private
//! address (or is re-pointed there between two requests) is refused like a private literal.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use latchkey_core::outbound::is_public;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use serde::de::DeserializeOwned;

use crate::error::{ServiceError, ServiceResult};

#[derive(Debug, Clone, Copy)]
pub struct OutboundSettings {
    /// Private, loopback and link-local targets, and plain `http://`, are allowed (a provider
    /// on the internal network, or the tests' provider on loopback).
    pub allow_private: bool,
    /// The whole request, connection to last byte.
    pub timeout: Duration,
}

impl Default for OutboundSettings {
    fn default() -> Self {
        Self {
            allow_private: false,
            timeout: Duration::from_secs(10),
        }
    }
}

/// The largest answer read (discovery documents and key sets are a few kilobytes).
const MAX_BODY: usize = 256 * 1024;

/// Resolves a name and keeps only its public addresses.
struct PublicOnly;

impl Resolve for PublicOnly {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|a| is_public(a.ip()))
                .collect();
            if found.is_empty() {
                return Err(format!("{host} has no public address").into());
            }
            let addrs: Addrs = Box::new(found.into_iter());
            Ok(addrs)
        })
    }
}

pub struct Outbound {
    client: reqwest::Client,
    settings: OutboundSettings,
}

fn unavailable(what: &str, detail: impl std::fmt::Display) -> ServiceError {
    ServiceError::Unavailable(format!("{what}: {detail}"))
}

impl Outbound {
    pub fn new(settings: OutboundSettings) -> ServiceResult<Self> {
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout)
            .no_proxy()
            .user_agent(concat!("latchkey/", env!("CARGO_PKG_VERSION")));
        if !settings.allow_private {
            builder = builder.dns_resolver(Arc::new(PublicOnly));
        }
        let client = builder
            .build()
            .map_err(|e| ServiceError::Internal(format!("outbound HTTP client: {e}")))?;
        Ok(Self { client, settings })
    }

    /// Refuses a URL Latchkey must not call: not HTTPS, or an address literal that is not
    /// public (names are checked when resolved).
    pub fn check_url(&self, url: &str) -> ServiceResult<url::Url> {
        let parsed = url::Url::parse(url).map_err(|e| unavailable(url, e))?;
        if self.settings.allow_private {
            return match parsed.scheme() {
                "https" | "http" => Ok(parsed),
                _ => Err(unavailable(url, "only http and https URLs are called")),
            };
        }
        if parsed.scheme() != "https" {
            return Err(unavailable(url, "only https URLs are called"));
        }
        let literal = match parsed.host() {
            Some(url::Host::Ipv4(ip)) => Some(std::net::IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => Some(std::net::IpAddr::V6(ip)),
            Some(url::Host::Domain(_)) => None,
            None => return Err(unavailable(url, "no host")),
        };
        if literal.is_some_and(|ip| !is_public(ip)) {
            return Err(unavailable(
                url,
                "a private address ([outbound] allow_private is off)",
            ));
        }
        Ok(parsed)
    }

    /// `GET url` answered `200` with JSON.
    pub async fn get_json<T: DeserializeOwned>(&self, url: &str) -> ServiceResult<T> {
        let parsed = self.check_url(url)?;
        let request = self
            .client
            .get(parsed)
            .header(reqwest::header::ACCEPT, "application/json");
        self.json_answer(url, request).await
    }

    /// `POST url` with a form body and HTTP Basic client authentication (RFC 6749 §2.3.1:
    /// the id and secret form-encoded first), answered `200` with JSON.
    pub async fn post_form<T: DeserializeOwned>(
        &self,
        url: &str,
        form: &[(&str, &str)],
        basic: (&str, &str),
    ) -> ServiceResult<T> {
        let parsed = self.check_url(url)?;
        let encode =
            |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        let request = self
            .client
            .post(parsed)
            .header(reqwest::header::ACCEPT, "application/json")
            .basic_auth(encode(basic.0), Some(encode(basic.1)))
            .form(form);
        self.json_answer(url, request).await
    }

    async fn json_answer<T: DeserializeOwned>(
        &self,
        url: &str,
        request: reqwest::RequestBuilder,
    ) -> ServiceResult<T> {
        let response = request.send().await.map_err(|e| unavailable(url, e))?;
        let status = response.status();
        let mut body = Vec::new();
        let mut stream = response.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| unavailable(url, e))?;
            if body.len() + chunk.len() > MAX_BODY {
                return Err(unavailable(url, "the answer is too large"));
            }
            body.extend_from_slice(&chunk);
        }
        if status.is_client_error() {
            // The provider refused this request (an OAuth `invalid_grant`: a used or made-up
            // code): a refusal, not an outage. Only its error code is kept.
            let code = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v.get("error")?.as_str().map(str::to_owned))
                .filter(|c| c.len() <= 40 && c.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'))
                .unwrap_or_else(|| status.as_u16().to_string());
            return Err(ServiceError::client(
                crate::error::ErrorCode::InvalidRequest,
                format!("the sign-in provider refused this sign-in ({code}): start again"),
            ));
        }
        if !status.is_success() {
            return Err(unavailable(url, format!("answered {status}")));
        }
        serde_json::from_slice(&body)
            .map_err(|e| unavailable(url, format!("not the JSON expected: {e}")))
    }
}
