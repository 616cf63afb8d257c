//! Shared set-up for the OAuth2 suites (`oauth_token`, `oauth_introspection`,
//! `oauth_revocation`, `oauth_clients`, `oauth_metadata`): a server whose issuer is its real
//! address, an organisation with an admin, its clients, a third-party OAuth2 client (the
//! `oauth2` crate) over reqwest, raw form requests for what no well-behaved client sends, and
//! offline verification of access tokens against the published JWKS.

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;

use base64::Engine as _;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use latchkey_core::Role;
use latchkey_core::policy::{OwnerKind, TokenTypeConfig};
use latchkey_service::Caller;
use latchkey_service::oauth::clients::ClientSpec;
use oauth2::basic::{BasicClient, BasicErrorResponseType, BasicTokenResponse};
use oauth2::{
    AuthType, ClientId, ClientSecret, EndpointNotSet, EndpointSet, IntrospectionUrl,
    RequestTokenError, RevocationUrl, Scope, TokenUrl,
};
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{Resp, TestApp, TestAppBuilder};

/// A server on a known port, so that its issuer (`public_url`) is the URL the tests call.
pub async fn spawn() -> TestApp {
    start(TestApp::builder()).await
}

/// The same, with token-type overrides. Either has an organisation type `reports` with the
/// scope `reports:read`, so that clients may be given a second scope (SPEC 3: a client's scopes
/// are those of organisation token types).
pub async fn start(builder: TestAppBuilder) -> TestApp {
    builder
        .token_type(
            "reports",
            TokenTypeConfig {
                owner: Some(OwnerKind::Organisation),
                prefix: Some("lkrep".into()),
                scopes: Some(vec!["reports:read".into()]),
                ..Default::default()
            },
        )
        .start_on_free_port()
        .await
}

/// An organisation and one of its admins, signed in.
pub struct Org {
    pub id: String,
    pub admin: String,
}

impl Org {
    pub fn clients(&self) -> String {
        format!("/v1/orgs/{}/clients", self.id)
    }
    pub fn client(&self, id: &str) -> String {
        format!("/v1/orgs/{}/clients/{id}", self.id)
    }
    pub fn secrets(&self, id: &str) -> String {
        format!("/v1/orgs/{}/clients/{id}/secrets", self.id)
    }
}

/// A new organisation with `email` signed in as its admin.
pub async fn org(app: &TestApp, name: &str, email: &str) -> Org {
    let (_, admin) = app.signed_in(email).await;
    let id = app.org(name).await;
    app.add_member(&id, email, Role::Admin).await;
    Org { id, admin }
}

/// A confidential client registered by the admin: (client id, its first secret).
pub struct Registered {
    pub id: String,
    pub secret: String,
}

/// `POST /v1/orgs/{org}/clients` with this body: the whole answer.
pub async fn create_client(app: &TestApp, org: &Org, body: Value) -> Resp {
    app.post(&org.clients(), &org.admin, body).await
}

/// A confidential client-credentials client with the scopes `api` and `reports:read`.
pub async fn cc_client(app: &TestApp, org: &Org, name: &str) -> Registered {
    cc_client_with(app, org, name, false).await
}

/// A confidential client-credentials client; `introspect` gives it the introspection
/// permission, which only an operator grants (SPEC 3): such a client is made as the CLI makes
/// it, through the service.
pub async fn cc_client_with(app: &TestApp, org: &Org, name: &str, introspect: bool) -> Registered {
    if introspect {
        let record = app.service().find_org(&org.id).await.unwrap();
        let spec = ClientSpec {
            name: name.to_owned(),
            grant_types: vec!["client_credentials".into()],
            scopes: vec!["api".into(), "reports:read".into()],
            confidential: true,
            can_introspect: true,
            ..ClientSpec::default()
        };
        let created = app
            .service()
            .create_client(&Caller::operator(), &record, spec)
            .await
            .unwrap_or_else(|e| panic!("operator client: {e}"));
        let secret = created.secret.map(|(_, s)| s.expose().to_owned());
        return Registered {
            id: created.client.id,
            secret: secret.unwrap_or_default(),
        };
    }
    let res = create_client(
        app,
        org,
        json!({
            "name": name,
            "grant_types": ["client_credentials"],
            "scopes": ["api", "reports:read"],
        }),
    )
    .await
    .expect(201);
    Registered {
        id: res.str("id"),
        secret: res.str("client_secret"),
    }
}

/// `Authorization: Basic` for a client (RFC 6749 §2.3.1: each part form-encoded first; our
/// ids and secrets need no encoding).
pub fn basic(id: &str, secret: &str) -> String {
    let pair = format!("{id}:{secret}");
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    )
}

/// A form POST with raw control of the headers and body, for the requests that a real OAuth2
/// client library would never send.
pub async fn form(
    app: &TestApp,
    path: &str,
    authorization: Option<&str>,
    content_type: Option<&str>,
    body: &str,
) -> Resp {
    let mut headers: Vec<(&str, Vec<u8>)> = Vec::new();
    if let Some(value) = authorization {
        headers.push(("authorization", value.as_bytes().to_vec()));
    }
    if let Some(value) = content_type {
        headers.push(("content-type", value.as_bytes().to_vec()));
    }
    app.raw(Method::POST, path, &headers, Some(body.as_bytes().to_vec()))
        .await
}

/// `POST /oauth2/token` as `application/x-www-form-urlencoded`.
pub async fn token_form(app: &TestApp, authorization: Option<&str>, body: &str) -> Resp {
    form(
        app,
        "/oauth2/token",
        authorization,
        Some("application/x-www-form-urlencoded"),
        body,
    )
    .await
}

/// An access token for a registered client, by client credentials with Basic authentication.
pub async fn access_token(app: &TestApp, client: &Registered) -> String {
    let res = token_form(
        app,
        Some(&basic(&client.id, &client.secret)),
        "grant_type=client_credentials",
    )
    .await
    .expect(200);
    res.str("access_token")
}

/// Asserts an RFC 6749 §5.2 error: status, `error`, a description, `no-store`, and nothing
/// else in the body.
#[track_caller]
pub fn assert_oauth_error(res: &Resp, status: u16, error: &str) {
    assert_eq!(res.status.as_u16(), status, "body: {}", res.text);
    assert_eq!(res.body["error"], error, "body: {}", res.text);
    assert!(
        res.body["error_description"]
            .as_str()
            .is_some_and(|d| !d.is_empty()),
        "{}",
        res.text
    );
    // RFC 6749 §5.2: %x20-21 / %x23-5B / %x5D-7E only (no `"`, no `\`).
    let description = res.body["error_description"].as_str().unwrap_or_default();
    assert!(
        description
            .bytes()
            .all(|b| matches!(b, 0x20..=0x21 | 0x23..=0x5B | 0x5D..=0x7E)),
        "error_description outside RFC 6749 §5.2's characters: {description:?}"
    );
    let object = res
        .body
        .as_object()
        .unwrap_or_else(|| panic!("not a JSON object: {}", res.text));
    assert!(
        object
            .keys()
            .all(|k| k == "error" || k == "error_description" || k == "error_uri"),
        "unexpected fields in an RFC 6749 error: {}",
        res.text
    );
    assert_eq!(
        res.header("cache-control").as_deref(),
        Some("no-store"),
        "{}",
        res.text
    );
    assert!(
        res.header("content-type")
            .is_some_and(|c| c.starts_with("application/json")),
        "{:?}",
        res.header("content-type")
    );
}

// ---------------------------------------------------------------------------------------------
// A real third-party OAuth2 client: the `oauth2` crate, over the reqwest the suite already uses.

/// The `oauth2` crate's HTTP interface over reqwest. Redirects are not followed (the crate's
/// advice: a token endpoint that redirects could send the credentials elsewhere).
pub struct Http(reqwest::Client);

impl Http {
    pub fn new() -> Self {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_else(|e| panic!("reqwest client: {e}"));
        Self(client)
    }
}

async fn send(
    client: reqwest::Client,
    request: oauth2::HttpRequest,
) -> Result<oauth2::HttpResponse, reqwest::Error> {
    let (parts, body) = request.into_parts();
    // The crate insists on an https revocation endpoint (RFC 7009 §2); the test server speaks
    // plain HTTP on the loopback, as it would behind a TLS-terminating proxy.
    let uri = parts.uri.to_string();
    let uri = match uri.strip_prefix("https://127.0.0.1:") {
        Some(rest) => format!("http://127.0.0.1:{rest}"),
        None => uri,
    };
    let res = client
        .request(parts.method, uri)
        .headers(parts.headers)
        .body(body)
        .send()
        .await?;
    let status = res.status();
    let headers = res.headers().clone();
    let body = res.bytes().await?.to_vec();
    let mut response = oauth2::HttpResponse::new(body);
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    Ok(response)
}

impl<'c> oauth2::AsyncHttpClient<'c> for Http {
    type Error = reqwest::Error;
    type Future =
        Pin<Box<dyn Future<Output = Result<oauth2::HttpResponse, Self::Error>> + Send + 'c>>;

    fn call(&'c self, request: oauth2::HttpRequest) -> Self::Future {
        Box::pin(send(self.0.clone(), request))
    }
}

/// An `oauth2` client with the token, introspection and revocation endpoints set (the
/// revocation endpoint as `https:`, which [`Http`] maps back to the test server).
pub type OAuthClient =
    BasicClient<EndpointNotSet, EndpointNotSet, EndpointSet, EndpointSet, EndpointSet>;

/// The `oauth2` crate's error for a token request made through [`Http`].
pub type TokenError =
    RequestTokenError<reqwest::Error, oauth2::StandardErrorResponse<BasicErrorResponseType>>;

/// A configured `oauth2` client for `id`/`secret`, authenticating as `auth` says.
pub fn oauth_client(app: &TestApp, id: &str, secret: &str, auth: AuthType) -> OAuthClient {
    BasicClient::new(ClientId::new(id.to_owned()))
        .set_client_secret(ClientSecret::new(secret.to_owned()))
        .set_auth_type(auth)
        .set_token_uri(TokenUrl::new(format!("{}/oauth2/token", app.url)).unwrap())
        .set_introspection_url(
            IntrospectionUrl::new(format!("{}/oauth2/introspect", app.url)).unwrap(),
        )
        .set_revocation_url(
            RevocationUrl::new(format!(
                "{}/oauth2/revoke",
                app.url.replacen("http:", "https:", 1)
            ))
            .unwrap(),
        )
}

/// The client credentials grant through the `oauth2` crate.
pub async fn client_credentials(
    client: &OAuthClient,
    scopes: &[&str],
) -> Result<BasicTokenResponse, TokenError> {
    let mut request = client.exchange_client_credentials();
    for scope in scopes {
        request = request.add_scope(Scope::new((*scope).to_owned()));
    }
    let http = Http::new();
    request.request_async(&http).await
}

/// The RFC 6749 error code of a refused request made through the `oauth2` crate.
#[track_caller]
pub fn server_error(result: Result<BasicTokenResponse, TokenError>) -> BasicErrorResponseType {
    match result {
        Ok(_) => panic!("the token request should have been refused"),
        Err(RequestTokenError::ServerResponse(e)) => e.error().clone(),
        Err(other) => panic!("not an RFC 6749 error response: {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Offline verification, as a resource server would do it.

/// The header and claims of an access token verified with nothing but the published JWKS:
/// ES256 fixed by the verifier (never taken from the token), `kid` looked up in the JWKS,
/// issuer and audience required to be the server's URL. `exp` is checked by the caller against
/// the test clock: the wall clock is not the server's here.
pub async fn verify_offline(app: &TestApp, jwt: &str) -> (jsonwebtoken::Header, Value) {
    let header = jsonwebtoken::decode_header(jwt).unwrap();
    let kid = header.kid.clone().expect("an access token names its key");
    let jwks = app.client.get(format!("{}/.well-known/jwks.json", app.url));
    let jwks: Value = jwks.send().await.unwrap().json().await.unwrap();
    let key = jwks["keys"]
        .as_array()
        .and_then(|keys| keys.iter().find(|k| k["kid"] == kid.as_str()))
        .unwrap_or_else(|| panic!("the key {kid} is not published: {jwks}"));
    assert!(key.get("d").is_none(), "a private part in the JWKS: {key}");
    let jwk: Jwk = serde_json::from_value(key.clone()).unwrap();
    let decoding = DecodingKey::from_jwk(&jwk).unwrap();
    let mut validation = Validation::new(Algorithm::ES256);
    validation.validate_exp = false;
    validation.required_spec_claims = HashSet::new();
    validation.set_audience(&[app.url.as_str()]);
    validation.set_issuer(&[app.url.as_str()]);
    let data = jsonwebtoken::decode::<Value>(jwt, &decoding, &validation)
        .unwrap_or_else(|e| panic!("the access token does not verify against the JWKS: {e}"));
    (data.header, data.claims)
}
