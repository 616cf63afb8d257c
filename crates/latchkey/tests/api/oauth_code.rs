//! The authorization code grant with PKCE, the consent page and rotating refresh tokens, driven
//! by a real third-party OAuth2 client library (`oauth2`) and a cookie-keeping HTTP client in
//! the browser's place.

use latchkey_core::Role;
use latchkey_service::Caller;
use latchkey_service::oauth::clients::ClientSpec;
use oauth2::basic::BasicClient;
use oauth2::{
    AuthUrl, AuthorizationCode, ClientId, CsrfToken, PkceCodeChallenge, RedirectUrl, RefreshToken,
    Scope, TokenResponse, TokenUrl,
};
use reqwest::redirect::Policy;
use serde_json::{Value, json};

use crate::helpers::{PASSWORD, TestApp, hidden};

const REDIRECT: &str = "http://localhost:9/cb";

/// Sends an `oauth2` crate request with reqwest (no redirects followed, as RFC 6749 wants).
async fn send(
    http: &reqwest::Client,
    req: oauth2::HttpRequest,
) -> Result<oauth2::HttpResponse, reqwest::Error> {
    let (parts, body) = req.into_parts();
    let res = http
        .request(parts.method, parts.uri.to_string())
        .headers(parts.headers)
        .body(body)
        .send()
        .await?;
    let status = res.status();
    let headers = res.headers().clone();
    let bytes = res.bytes().await?;
    let mut out = oauth2::HttpResponse::new(bytes.to_vec());
    *out.status_mut() = status;
    *out.headers_mut() = headers;
    Ok(out)
}

struct Setup {
    app: TestApp,
    client_id: String,
    org: String,
}

async fn setup() -> Setup {
    setup_on(TestApp::spawn().await).await
}

async fn setup_on(app: TestApp) -> Setup {
    app.user("ada@example.com").await;
    let org = app.org("Acme").await;
    app.add_member(&org, "ada@example.com", Role::Member).await;
    let org_record = app.service().find_org(&org).await.unwrap();
    let spec = ClientSpec {
        name: "Zapier <Automation>".into(),
        grant_types: vec!["authorization_code".into(), "refresh_token".into()],
        redirect_uris: vec![REDIRECT.into()],
        scopes: vec!["api".into()],
        confidential: false,
        can_introspect: false,
    };
    let created = app
        .service()
        .create_client(&Caller::operator(), &org_record, spec)
        .await
        .unwrap();
    Setup {
        app,
        client_id: created.client.id,
        org,
    }
}

fn oauth_client(
    app: &TestApp,
    client_id: &str,
) -> oauth2::Client<
    oauth2::basic::BasicErrorResponse,
    oauth2::basic::BasicTokenResponse,
    oauth2::basic::BasicTokenIntrospectionResponse,
    oauth2::StandardRevocableToken,
    oauth2::basic::BasicRevocationErrorResponse,
    oauth2::EndpointSet,
    oauth2::EndpointNotSet,
    oauth2::EndpointNotSet,
    oauth2::EndpointNotSet,
    oauth2::EndpointSet,
> {
    BasicClient::new(ClientId::new(client_id.to_owned()))
        .set_auth_uri(AuthUrl::new(format!("{}/oauth2/authorize", app.url)).unwrap())
        .set_token_uri(TokenUrl::new(format!("{}/oauth2/token", app.url)).unwrap())
        .set_redirect_uri(RedirectUrl::new(REDIRECT.into()).unwrap())
        .set_auth_type(oauth2::AuthType::RequestBody)
}

/// An API client that does not follow redirects (as RFC 6749 wants of OAuth clients).
fn api_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(Policy::none())
        .build()
        .unwrap()
}

/// The whole flow (authorize, sign in, consent, exchange with PKCE): (access, refresh) token.
async fn consented_tokens(s: &Setup, http: &reqwest::Client) -> (String, String) {
    let client = oauth_client(&s.app, &s.client_id);
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, _) = client
        .authorize_url(CsrfToken::new_random)
        .set_pkce_challenge(challenge)
        .url();
    let back = consent(&s.app, &browser(), url.as_str(), true).await;
    let token = client
        .exchange_code(AuthorizationCode::new(query_param(&back, "code").unwrap()))
        .set_pkce_verifier(verifier)
        .request_async(&|req| send(http, req))
        .await
        .unwrap();
    (
        token.access_token().secret().clone(),
        token.refresh_token().unwrap().secret().clone(),
    )
}

/// A browser: keeps cookies, does not follow redirects.
fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(Policy::none())
        .build()
        .unwrap()
}

fn location(res: &reqwest::Response) -> String {
    res.headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

fn query_param(url: &str, name: &str) -> Option<String> {
    let url = reqwest::Url::parse(url).ok()?;
    url.query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// Signs in through the login page and approves (or denies) on the consent page; returns the
/// redirect back to the client.
async fn consent(
    app: &TestApp,
    browser: &reqwest::Client,
    authorize_url: &str,
    approve: bool,
) -> String {
    let page = browser.get(authorize_url).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("Sign in"), "{html}");
    let mut form: Vec<(String, String)> = reqwest::Url::parse(authorize_url)
        .unwrap()
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    form.push(("email".into(), "ada@example.com".into()));
    form.push(("password".into(), PASSWORD.into()));
    form.push(("csrf_token".into(), hidden(&html, "csrf_token")));
    let res = browser
        .post(format!("{}/oauth2/login", app.url))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    let back = location(&res);
    assert!(back.starts_with("/oauth2/authorize?"), "{back}");
    let page = browser
        .get(format!("{}{back}", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    assert_eq!(
        page.headers()
            .get("x-frame-options")
            .and_then(|v| v.to_str().ok()),
        Some("DENY")
    );
    let html = page.text().await.unwrap();
    assert!(
        html.contains("Zapier &#60;Automation&#62;"),
        "the app name, escaped: {html}"
    );
    assert!(!html.contains("<Automation>"));
    assert!(
        html.contains("<code>api</code>") && html.contains("Acme"),
        "{html}"
    );
    let csrf = hidden(&html, "csrf_token");
    let mut decision: Vec<(String, String)> = form
        .into_iter()
        .filter(|(k, _)| k != "email" && k != "password")
        .collect();
    decision.push(("csrf_token".into(), csrf));
    decision.push((
        "decision".into(),
        if approve { "approve" } else { "deny" }.into(),
    ));
    let res = browser
        .post(format!("{}/oauth2/authorize", app.url))
        .form(&decision)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    location(&res)
}

#[tokio::test]
async fn authorization_code_with_pkce_then_rotating_refresh_tokens() {
    let s = setup().await;
    let http = api_client();
    let client = oauth_client(&s.app, &s.client_id);
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, state) = client
        .authorize_url(CsrfToken::new_random)
        .add_scope(Scope::new("api".into()))
        .set_pkce_challenge(challenge)
        .url();
    let back = consent(&s.app, &browser(), url.as_str(), true).await;
    assert!(back.starts_with(REDIRECT), "{back}");
    assert_eq!(
        query_param(&back, "state").as_deref(),
        Some(state.secret().as_str())
    );
    let code = query_param(&back, "code").unwrap();

    let token = client
        .exchange_code(AuthorizationCode::new(code.clone()))
        .set_pkce_verifier(verifier)
        .request_async(&|req| send(&http, req))
        .await
        .unwrap();
    let access = token.access_token().secret().clone();
    let refresh = token.refresh_token().unwrap().secret().clone();
    assert_eq!(token.expires_in().map(|d| d.as_secs()), Some(900));

    // The access token acts as the user who consented, for that client.
    let me = s.app.get("/v1/me", &access).await.expect(200);
    assert_eq!(me.body["principal"]["kind"], "user");
    assert_eq!(me.body["principal"]["email"], "ada@example.com");
    assert_eq!(me.body["principal"]["client_id"], s.client_id.as_str());
    assert_eq!(me.body["accounts"][0]["id"], s.org.as_str());
    assert_eq!(me.body["scopes"], serde_json::json!(["api"]));

    // Refresh rotates: a new pair, the old refresh token is spent.
    let refreshed = client
        .exchange_refresh_token(&RefreshToken::new(refresh.clone()))
        .request_async(&|req| send(&http, req))
        .await
        .unwrap();
    let access2 = refreshed.access_token().secret().clone();
    let refresh2 = refreshed.refresh_token().unwrap().secret().clone();
    assert_ne!(refresh, refresh2);
    s.app.get("/v1/me", &access2).await.expect(200);

    // Replaying the spent refresh token revokes the whole family, access tokens included.
    let replay = client
        .exchange_refresh_token(&RefreshToken::new(refresh))
        .request_async(&|req| send(&http, req))
        .await;
    assert!(
        matches!(replay, Err(oauth2::RequestTokenError::ServerResponse(ref e)) if e.error().as_ref() == "invalid_grant"),
        "{replay:?}"
    );
    s.app.get("/v1/me", &access).await.expect(401);
    s.app.get("/v1/me", &access2).await.expect(401);
    let again = client
        .exchange_refresh_token(&RefreshToken::new(refresh2))
        .request_async(&|req| send(&http, req))
        .await;
    assert!(again.is_err(), "the family is revoked");

    // The code was single-use.
    let reuse = client
        .exchange_code(AuthorizationCode::new(code))
        .request_async(&|req| send(&http, req))
        .await;
    assert!(
        matches!(reuse, Err(oauth2::RequestTokenError::ServerResponse(ref e)) if e.error().as_ref() == "invalid_grant")
    );
}

#[tokio::test]
async fn a_replayed_code_revokes_what_it_produced() {
    let s = setup().await;
    let http = api_client();
    let client = oauth_client(&s.app, &s.client_id);
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, _) = client
        .authorize_url(CsrfToken::new_random)
        .set_pkce_challenge(challenge)
        .url();
    let back = consent(&s.app, &browser(), url.as_str(), true).await;
    let code = query_param(&back, "code").unwrap();
    let verifier_text = verifier.secret().clone();
    let token = client
        .exchange_code(AuthorizationCode::new(code.clone()))
        .set_pkce_verifier(verifier)
        .request_async(&|req| send(&http, req))
        .await
        .unwrap();
    let access = token.access_token().secret().clone();
    s.app.get("/v1/me", &access).await.expect(200);
    let replay = client
        .exchange_code(AuthorizationCode::new(code))
        .set_pkce_verifier(oauth2::PkceCodeVerifier::new(verifier_text))
        .request_async(&|req| send(&http, req))
        .await;
    assert!(replay.is_err());
    let me = s.app.get("/v1/me", &access).await.expect(401);
    assert!(
        me.header("www-authenticate")
            .unwrap_or_default()
            .contains("revoked")
    );
}

#[tokio::test]
async fn codes_are_bound_to_the_verifier_the_redirect_uri_and_sixty_seconds() {
    let s = setup().await;
    let http = api_client();
    let client = oauth_client(&s.app, &s.client_id);
    let token_url = format!("{}/oauth2/token", s.app.url);
    let post = |form: Vec<(&'static str, String)>| {
        let http = http.clone();
        let token_url = token_url.clone();
        async move {
            let res = http.post(token_url).form(&form).send().await.unwrap();
            let status = res.status().as_u16();
            let body: Value = res.json().await.unwrap_or_default();
            (
                status,
                body["error"].as_str().unwrap_or_default().to_owned(),
            )
        }
    };
    for case in ["wrong verifier", "wrong redirect", "no verifier", "expired"] {
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let (url, _) = client
            .authorize_url(CsrfToken::new_random)
            .set_pkce_challenge(challenge)
            .url();
        let back = consent(&s.app, &browser(), url.as_str(), true).await;
        let code = query_param(&back, "code").unwrap();
        let mut form = vec![
            ("grant_type", "authorization_code".to_owned()),
            ("client_id", s.client_id.clone()),
            ("code", code),
            ("redirect_uri", REDIRECT.to_owned()),
            ("code_verifier", verifier.secret().clone()),
        ];
        match case {
            "wrong verifier" => form[4].1 = "x".repeat(43),
            "wrong redirect" => form[3].1 = "http://localhost:9/other".to_owned(),
            "no verifier" => {
                form.pop();
            }
            _ => s.app.clock.advance(61),
        }
        assert_eq!(
            post(form).await,
            (400, "invalid_grant".to_owned()),
            "{case}"
        );
    }
}

#[tokio::test]
async fn deny_unknown_clients_bad_redirects_and_forged_forms() {
    let s = setup().await;
    let client = oauth_client(&s.app, &s.client_id);
    let (challenge, _) = PkceCodeChallenge::new_random_sha256();
    let (url, state) = client
        .authorize_url(CsrfToken::new_random)
        .set_pkce_challenge(challenge)
        .url();
    let back = consent(&s.app, &browser(), url.as_str(), false).await;
    assert!(back.starts_with(REDIRECT));
    assert_eq!(
        query_param(&back, "error").as_deref(),
        Some("access_denied")
    );
    assert_eq!(
        query_param(&back, "state").as_deref(),
        Some(state.secret().as_str())
    );

    // Unknown client and unregistered redirect URI: an error page, never a redirect.
    let b = browser();
    for query in [
        "client_id=cli_000000000000000000000A&redirect_uri=http%3A%2F%2Flocalhost%3A9%2Fcb&response_type=code".to_owned(),
        format!("client_id={}&redirect_uri=https%3A%2F%2Fevil.example%2Fcb&response_type=code", s.client_id),
    ] {
        let res = b.get(format!("{}/oauth2/authorize?{query}", s.app.url)).send().await.unwrap();
        assert_eq!(res.status(), 400);
        assert!(res.headers().get("location").is_none());
    }
    // A public client without PKCE: the error goes back to the (registered) redirect URI.
    let res = b
        .get(format!("{}/oauth2/authorize?client_id={}&redirect_uri=http%3A%2F%2Flocalhost%3A9%2Fcb&response_type=code&state=s1", s.app.url, s.client_id))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    let to = location(&res);
    assert_eq!(
        query_param(&to, "error").as_deref(),
        Some("invalid_request")
    );
    assert_eq!(query_param(&to, "state").as_deref(), Some("s1"));

    // A signed-in browser posting a decision without the CSRF token, or from another origin.
    let session = s.app.login("ada@example.com").await;
    let (challenge, _) = PkceCodeChallenge::new_random_sha256();
    let (url, _) = client
        .authorize_url(CsrfToken::new_random)
        .set_pkce_challenge(challenge)
        .url();
    let mut form: Vec<(String, String)> = url
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    form.push(("decision".into(), "approve".into()));
    let plain = reqwest::Client::builder()
        .redirect(Policy::none())
        .build()
        .unwrap();
    let res = plain
        .post(format!("{}/oauth2/authorize", s.app.url))
        .header("cookie", format!("latchkey_session={session}"))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403, "no CSRF token");
    let csrf = latchkey_service::sessions::csrf_token_for(&session);
    form.push(("csrf_token".into(), csrf));
    let res = plain
        .post(format!("{}/oauth2/authorize", s.app.url))
        .header("cookie", format!("latchkey_session={session}"))
        .header("origin", "https://evil.example")
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403, "foreign Origin");
    let res = plain
        .post(format!("{}/oauth2/authorize", s.app.url))
        .header("cookie", format!("latchkey_session={session}"))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        303,
        "the same form with the token and no foreign Origin is accepted"
    );
    assert!(query_param(&location(&res), "code").is_some());
}

#[tokio::test]
async fn revoking_a_refresh_token_ends_its_grant() {
    let s = setup().await;
    let http = api_client();
    let client = oauth_client(&s.app, &s.client_id);
    let (access, refresh) = consented_tokens(&s, &http).await;
    s.app.get("/v1/me", &access).await.expect(200);
    // RFC 7009 with a public client identifying itself by client_id.
    let res = http
        .post(format!("{}/oauth2/revoke", s.app.url))
        .form(&[
            ("token", refresh.as_str()),
            ("client_id", s.client_id.as_str()),
            ("token_type_hint", "refresh_token"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let again = client
        .exchange_refresh_token(&RefreshToken::new(refresh))
        .request_async(&|req| send(&http, req))
        .await;
    assert!(again.is_err(), "a revoked refresh token cannot be used");
    s.app.get("/v1/me", &access).await.expect(401);
}

#[tokio::test]
async fn the_kill_switch_reaches_oauth_grants_and_access_tokens() {
    let s = setup().await;
    let http = api_client();
    let client = oauth_client(&s.app, &s.client_id);
    let (access, refresh) = consented_tokens(&s, &http).await;
    s.app.get("/v1/me", &access).await.expect(200);

    // The user's kill switch: personal tokens and every OAuth grant they gave.
    let session = s.app.login("ada@example.com").await;
    s.app
        .post(
            "/v1/user/tokens/revoke-all",
            &session,
            serde_json::json!({ "password": PASSWORD }),
        )
        .await
        .expect(200);
    s.app.get("/v1/me", &access).await.expect(401);
    let again = client
        .exchange_refresh_token(&RefreshToken::new(refresh))
        .request_async(&|req| send(&http, req))
        .await;
    assert!(again.is_err());
    // Tokens and grants end in one transaction, recorded by one event.
    let events = s.app.get("/v1/user/events", &session).await.expect(200);
    let kill = events
        .body
        .as_array()
        .into_iter()
        .flatten()
        .find(|e| e["action"] == "tokens.revoked_all")
        .unwrap_or_else(|| panic!("no kill-switch event: {}", events.text));
    assert_eq!(kill["details"]["oauth_grants"], 1, "{kill}");

    // The organisation's kill switch: its clients' client-credentials tokens too.
    let org = s.app.service().find_org(&s.org).await.unwrap();
    let spec = ClientSpec {
        name: "worker".into(),
        grant_types: vec!["client_credentials".into()],
        scopes: vec!["api".into()],
        confidential: true,
        ..ClientSpec::default()
    };
    let worker = s
        .app
        .service()
        .create_client(&Caller::operator(), &org, spec)
        .await
        .unwrap();
    let secret = worker.secret.as_ref().unwrap().1.expose().to_owned();
    let res = http
        .post(format!("{}/oauth2/token", s.app.url))
        .basic_auth(&worker.client.id, Some(&secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    let body: Value = res.json().await.unwrap();
    let cc_token = body["access_token"].as_str().unwrap().to_owned();
    s.app.get("/v1/me", &cc_token).await.expect(200);
    s.app
        .service()
        .revoke_all_org_tokens_as_operator(&Caller::operator(), &s.org, None)
        .await
        .unwrap();
    s.app.get("/v1/me", &cc_token).await.expect(401);
    // New tokens issued later work again.
    s.app.clock.advance(1);
    let res = http
        .post(format!("{}/oauth2/token", s.app.url))
        .basic_auth(&worker.client.id, Some(&secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    let body: Value = res.json().await.unwrap();
    s.app
        .get("/v1/me", body["access_token"].as_str().unwrap())
        .await
        .expect(200);
}

/// Another public client of the same organisation, with the same redirect URI.
async fn other_public_client(s: &Setup) -> String {
    let org = s.app.service().find_org(&s.org).await.unwrap();
    let spec = ClientSpec {
        name: "Other".into(),
        grant_types: vec!["authorization_code".into(), "refresh_token".into()],
        redirect_uris: vec![REDIRECT.into()],
        scopes: vec!["api".into()],
        confidential: false,
        can_introspect: false,
    };
    s.app
        .service()
        .create_client(&Caller::operator(), &org, spec)
        .await
        .unwrap()
        .client
        .id
}

/// `POST /oauth2/token` with a form (and optional `Authorization`): (status, body).
async fn token_post(
    s: &Setup,
    authorization: Option<&str>,
    form: &[(&str, &str)],
) -> (u16, Value, reqwest::header::HeaderMap) {
    token_post_to(&s.app.url, authorization, form).await
}

async fn token_post_to(
    base: &str,
    authorization: Option<&str>,
    form: &[(&str, &str)],
) -> (u16, Value, reqwest::header::HeaderMap) {
    let mut req = api_client().post(format!("{base}/oauth2/token")).form(form);
    if let Some(a) = authorization {
        req = req.header("authorization", a);
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    (status, res.json().await.unwrap_or_default(), headers)
}

/// A consented code for `s.client_id` (PKCE): (code, verifier).
async fn consented_code(s: &Setup) -> (String, String) {
    let client = oauth_client(&s.app, &s.client_id);
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, _) = client
        .authorize_url(CsrfToken::new_random)
        .set_pkce_challenge(challenge)
        .url();
    let back = consent(&s.app, &browser(), url.as_str(), true).await;
    (
        query_param(&back, "code").unwrap(),
        verifier.secret().clone(),
    )
}

/// Issue 9, item 2: a refresh that asks a wider scope is refused without using the token up, so
/// the right refresh afterwards works and is not taken for a replay.
#[tokio::test]
async fn a_refused_refresh_consumes_nothing() {
    let s = setup().await;
    let http = api_client();
    let (access, refresh) = consented_tokens(&s, &http).await;
    let wider = [
        ("grant_type", "refresh_token"),
        ("client_id", s.client_id.as_str()),
        ("refresh_token", refresh.as_str()),
        ("scope", "api links"),
    ];
    let (status, body, _) = token_post(&s, None, &wider).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_scope")),
        "{body}"
    );
    let (status, body, _) = token_post(&s, None, &wider[..3]).await;
    assert_eq!(status, 200, "the right refresh still works: {body}");
    assert!(body["refresh_token"].as_str().is_some_and(|r| r != refresh));
    s.app.get("/v1/me", &access).await.expect(200);
}

/// Issue 9, item 2: another client presenting the refresh token gets `invalid_grant`, and the
/// rightful client keeps its grant (no family revocation, nothing used up).
#[tokio::test]
async fn another_client_cannot_spend_or_burn_a_refresh_token() {
    let s = setup().await;
    let http = api_client();
    let other = other_public_client(&s).await;
    let (access, refresh) = consented_tokens(&s, &http).await;
    let form = |client_id: &str| {
        vec![
            ("grant_type", "refresh_token".to_owned()),
            ("client_id", client_id.to_owned()),
            ("refresh_token", refresh.clone()),
        ]
    };
    // Twice: a second presentation by the wrong client is not a replay of the grant either.
    for _ in 0..2 {
        let f = form(&other);
        let pairs: Vec<(&str, &str)> = f.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (status, body, _) = token_post(&s, None, &pairs).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("invalid_grant")),
            "{body}"
        );
    }
    s.app.get("/v1/me", &access).await.expect(200);
    let f = form(&s.client_id);
    let pairs: Vec<(&str, &str)> = f.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (status, body, _) = token_post(&s, None, &pairs).await;
    assert_eq!(
        status, 200,
        "the rightful client's refresh still works: {body}"
    );
    s.app.get("/v1/me", &access).await.expect(200);
}

/// Issue 9, item 2: a code request refused for a wrong redirect URI, a wrong verifier or the
/// wrong client leaves the code to the right request, which then succeeds.
#[tokio::test]
async fn a_refused_code_request_leaves_the_code_to_the_right_one() {
    let s = setup().await;
    let other = other_public_client(&s).await;
    for case in ["wrong redirect", "wrong verifier", "wrong client"] {
        let (code, verifier) = consented_code(&s).await;
        let wrong_verifier = "x".repeat(43);
        let (mut client_id, mut redirect, mut verifier_sent) =
            (s.client_id.as_str(), REDIRECT, verifier.as_str());
        match case {
            "wrong redirect" => redirect = "http://localhost:9/other",
            "wrong verifier" => verifier_sent = wrong_verifier.as_str(),
            _ => client_id = other.as_str(),
        }
        let refused = [
            ("grant_type", "authorization_code"),
            ("client_id", client_id),
            ("code", code.as_str()),
            ("redirect_uri", redirect),
            ("code_verifier", verifier_sent),
        ];
        let (status, body, _) = token_post(&s, None, &refused).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("invalid_grant")),
            "{case}: {body}"
        );
        let right = [
            ("grant_type", "authorization_code"),
            ("client_id", s.client_id.as_str()),
            ("code", code.as_str()),
            ("redirect_uri", REDIRECT),
            ("code_verifier", verifier.as_str()),
        ];
        let (status, body, _) = token_post(&s, None, &right).await;
        assert_eq!(status, 200, "{case}: the right request afterwards: {body}");
        let access = body["access_token"].as_str().unwrap().to_owned();
        assert!(body["refresh_token"].is_string(), "{case}: {body}");
        s.app.get("/v1/me", &access).await.expect(200);
    }
}

/// Issue 9, item 14: a public client may identify itself by HTTP Basic with an empty password
/// (requests-oauthlib's default).
#[tokio::test]
async fn a_public_client_may_use_basic_with_an_empty_password() {
    use base64::Engine as _;
    let s = setup().await;
    let (code, verifier) = consented_code(&s).await;
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{}:", s.client_id))
    );
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", REDIRECT),
        ("code_verifier", verifier.as_str()),
    ];
    let (status, body, _) = token_post(&s, Some(&basic), &form).await;
    assert_eq!(status, 200, "{body}");
    let refresh = body["refresh_token"].as_str().unwrap().to_owned();
    let form = [
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh.as_str()),
    ];
    let (status, body, _) = token_post(&s, Some(&basic), &form).await;
    assert_eq!(status, 200, "{body}");
}

/// Issue 9, item 15: with one registered redirect URI, `redirect_uri` may be left out of the
/// authorization request, and then of the token request too; if sent there, it must match.
#[tokio::test]
async fn redirect_uri_may_be_left_out_with_one_registered_uri() {
    let s = setup().await;
    let mut codes = Vec::new();
    for _ in 0..3 {
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let url = format!(
            "{}/oauth2/authorize?client_id={}&response_type=code&state=s1&code_challenge={}&code_challenge_method=S256",
            s.app.url,
            s.client_id,
            challenge.as_str()
        );
        let back = consent(&s.app, &browser(), &url, true).await;
        assert!(back.starts_with(REDIRECT), "{back}");
        assert_eq!(query_param(&back, "state").as_deref(), Some("s1"));
        codes.push((
            query_param(&back, "code").unwrap(),
            verifier.secret().clone(),
        ));
    }
    let exchange = |code: &str, verifier: &str, redirect: Option<&str>| {
        let mut form = vec![
            ("grant_type", "authorization_code".to_owned()),
            ("client_id", s.client_id.clone()),
            ("code", code.to_owned()),
            ("code_verifier", verifier.to_owned()),
        ];
        if let Some(r) = redirect {
            form.push(("redirect_uri", r.to_owned()));
        }
        form
    };
    let cases = [
        (None, 200),
        (Some(REDIRECT), 200),
        (Some("http://localhost:9/other"), 400),
    ];
    for ((code, verifier), (redirect, expected)) in codes.iter().zip(cases) {
        let form = exchange(code, verifier, redirect);
        let pairs: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (status, body, _) = token_post(&s, None, &pairs).await;
        assert_eq!(status, expected, "{redirect:?}: {body}");
    }
    // A code whose request named the URI still needs it at the token endpoint.
    let (code, verifier) = consented_code(&s).await;
    let form = exchange(&code, &verifier, None);
    let pairs: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (status, body, _) = token_post(&s, None, &pairs).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_request")),
        "{body}"
    );
}

/// Issue 9, item 21: introspecting a refresh token answers `active: false` (introspection is
/// for access tokens and Latchkey's own tokens; PARTNERS.md says so).
#[tokio::test]
async fn introspecting_a_refresh_token_answers_inactive() {
    let s = setup().await;
    let http = api_client();
    let (access, refresh) = consented_tokens(&s, &http).await;
    let org = s.app.service().find_org(&s.org).await.unwrap();
    let spec = ClientSpec {
        name: "Resource server".into(),
        grant_types: vec!["client_credentials".into()],
        scopes: vec!["api".into()],
        confidential: true,
        can_introspect: true,
        ..ClientSpec::default()
    };
    let rs = s
        .app
        .service()
        .create_client(&Caller::operator(), &org, spec)
        .await
        .unwrap();
    let secret = rs.secret.as_ref().unwrap().1.expose().to_owned();
    let introspect = |token: String| {
        let http = http.clone();
        let url = format!("{}/oauth2/introspect", s.app.url);
        let id = rs.client.id.clone();
        let secret = secret.clone();
        async move {
            let res = http
                .post(url)
                .basic_auth(id, Some(secret))
                .form(&[("token", token)])
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), 200);
            res.json::<Value>().await.unwrap()
        }
    };
    assert_eq!(introspect(access).await["active"], true);
    assert_eq!(
        introspect(refresh).await,
        serde_json::json!({ "active": false })
    );
}

/// `method path` with these headers: (status, headers).
async fn cors_call(
    s: &Setup,
    method: reqwest::Method,
    path: &str,
    headers: &[(&str, &str)],
    form: Option<&[(&str, &str)]>,
) -> (u16, reqwest::header::HeaderMap) {
    let mut req = api_client().request(method, format!("{}{path}", s.app.url));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    if let Some(form) = form {
        req = req.form(form);
    }
    let res = req.send().await.unwrap();
    (res.status().as_u16(), res.headers().clone())
}

fn acao(headers: &reqwest::header::HeaderMap) -> Option<String> {
    headers
        .get("access-control-allow-origin")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// Issue 9, item 16: a browser app may call the token and revocation endpoints from the origin
/// of its redirect URI (preflight and answer), not from elsewhere; the JWKS and the metadata
/// are public to any origin; no other route allows cross-origin use.
#[tokio::test]
async fn cors_lets_a_browser_app_use_the_token_endpoint_from_its_origin_only() {
    let s = setup().await;
    let app_origin = "http://localhost:9";
    // Another live client whose redirect URI is elsewhere.
    let org = s.app.service().find_org(&s.org).await.unwrap();
    let spec = ClientSpec {
        name: "Elsewhere".into(),
        grant_types: vec!["authorization_code".into()],
        redirect_uris: vec!["https://other.example/cb".into()],
        scopes: vec!["api".into()],
        confidential: false,
        can_introspect: false,
    };
    s.app
        .service()
        .create_client(&Caller::operator(), &org, spec)
        .await
        .unwrap();

    for path in ["/oauth2/token", "/oauth2/revoke"] {
        for (origin, allowed) in [
            (app_origin, true),
            ("https://other.example", true),
            ("https://evil.example", false),
        ] {
            let (status, headers) = cors_call(
                &s,
                reqwest::Method::OPTIONS,
                path,
                &[
                    ("origin", origin),
                    ("access-control-request-method", "POST"),
                    ("access-control-request-headers", "content-type"),
                ],
                None,
            )
            .await;
            assert!((200..300).contains(&status), "{path} {origin}: {status}");
            let expected = allowed.then(|| origin.to_owned());
            assert_eq!(acao(&headers), expected, "{path} preflight from {origin}");
            if allowed {
                let methods = headers
                    .get("access-control-allow-methods")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default();
                assert!(methods.contains("POST"), "{methods}");
            }
        }
    }

    // The answer itself: readable from the client's own redirect-URI origin only.
    let (code, verifier) = consented_code(&s).await;
    let exchange = [
        ("grant_type", "authorization_code"),
        ("client_id", s.client_id.as_str()),
        ("code", code.as_str()),
        ("redirect_uri", REDIRECT),
        ("code_verifier", verifier.as_str()),
    ];
    let res = api_client()
        .post(format!("{}/oauth2/token", s.app.url))
        .header("origin", app_origin)
        .form(&exchange)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(acao(res.headers()).as_deref(), Some(app_origin));
    let vary = res
        .headers()
        .get_all("vary")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect::<Vec<_>>()
        .join(",");
    assert!(vary.to_ascii_lowercase().contains("origin"), "{vary}");
    let body: Value = res.json().await.unwrap();
    let refresh = body["refresh_token"].as_str().unwrap().to_owned();
    let refresh_form = [
        ("grant_type", "refresh_token"),
        ("client_id", s.client_id.as_str()),
        ("refresh_token", refresh.as_str()),
    ];
    // Another client's origin may send (its preflight passed) but not read this client's answer.
    let (status, headers) = cors_call(
        &s,
        reqwest::Method::POST,
        "/oauth2/token",
        &[("origin", "https://other.example")],
        Some(&refresh_form),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(acao(&headers), None);
    let (_, headers) = cors_call(
        &s,
        reqwest::Method::POST,
        "/oauth2/revoke",
        &[("origin", app_origin)],
        Some(&[("client_id", s.client_id.as_str()), ("token", "unknown")]),
    )
    .await;
    assert_eq!(acao(&headers).as_deref(), Some(app_origin));

    // Public documents: any origin.
    for path in [
        "/.well-known/jwks.json",
        "/.well-known/oauth-authorization-server",
    ] {
        let (status, headers) = cors_call(
            &s,
            reqwest::Method::GET,
            path,
            &[("origin", "https://anyone.example")],
            None,
        )
        .await;
        assert_eq!(status, 200, "{path}");
        assert_eq!(acao(&headers).as_deref(), Some("*"), "{path}");
        let (_, headers) = cors_call(
            &s,
            reqwest::Method::OPTIONS,
            path,
            &[
                ("origin", "https://anyone.example"),
                ("access-control-request-method", "GET"),
            ],
            None,
        )
        .await;
        assert_eq!(acao(&headers).as_deref(), Some("*"), "{path} preflight");
    }

    // Nothing else.
    let (access, _) = consented_tokens(&s, &api_client()).await;
    let bearer = format!("Bearer {access}");
    let (status, headers) = cors_call(
        &s,
        reqwest::Method::GET,
        "/v1/me",
        &[("origin", app_origin), ("authorization", &bearer)],
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(acao(&headers), None, "/v1/me");
    for path in ["/v1/me", "/oauth2/introspect", "/v1/sessions"] {
        let (_, headers) = cors_call(
            &s,
            reqwest::Method::OPTIONS,
            path,
            &[
                ("origin", app_origin),
                ("access-control-request-method", "POST"),
            ],
            None,
        )
        .await;
        assert_eq!(acao(&headers), None, "{path} preflight");
    }
}

/// Issue 9, item 2: of two requests racing with one refresh token exactly one wins; the other
/// is a replay (SECURITY.md: single-use things are used once) and revokes the family.
#[tokio::test]
async fn two_parallel_refreshes_with_one_token_are_one_success_and_a_replay() {
    let s = setup().await;
    let (_, refresh) = consented_tokens(&s, &api_client()).await;
    let form = [
        ("grant_type", "refresh_token"),
        ("client_id", s.client_id.as_str()),
        ("refresh_token", refresh.as_str()),
    ];
    let (a, b) = tokio::join!(token_post(&s, None, &form), token_post(&s, None, &form));
    let mut statuses = [a.0, b.0];
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 400], "{} / {}", a.1, b.1);
    let loser = if a.0 == 400 { &a.1 } else { &b.1 };
    assert_eq!(loser["error"], "invalid_grant", "{loser}");
    let winner = if a.0 == 200 { &a.1 } else { &b.1 };
    let access = winner["access_token"].as_str().unwrap();
    s.app.get("/v1/me", access).await.expect(401);
}

/// Issue 9, item 2: the same for a code: one exchange wins, the other is a replay that revokes
/// what the code produced.
#[tokio::test]
async fn two_parallel_exchanges_of_one_code_are_one_success_and_a_replay() {
    let s = setup().await;
    let (code, verifier) = consented_code(&s).await;
    let form = [
        ("grant_type", "authorization_code"),
        ("client_id", s.client_id.as_str()),
        ("code", code.as_str()),
        ("redirect_uri", REDIRECT),
        ("code_verifier", verifier.as_str()),
    ];
    let (a, b) = tokio::join!(token_post(&s, None, &form), token_post(&s, None, &form));
    let mut statuses = [a.0, b.0];
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 400], "{} / {}", a.1, b.1);
    let winner = if a.0 == 200 { &a.1 } else { &b.1 };
    let access = winner["access_token"].as_str().unwrap();
    s.app.get("/v1/me", access).await.expect(401);
}

/// Issue 9, item 1: a scope whose feature the organisation lost is not offered any more at the
/// authorization endpoint either.
#[tokio::test]
async fn a_removed_feature_s_scope_cannot_be_asked_for_at_authorize() {
    let s = setup().await;
    let operator = Caller::operator();
    let service = s.app.service();
    service
        .update_org(&operator, &s.org, &["links".into()], &[], None)
        .await
        .unwrap();
    let org = service.find_org(&s.org).await.unwrap();
    let spec = ClientSpec {
        name: "Linker".into(),
        grant_types: vec!["authorization_code".into()],
        redirect_uris: vec![REDIRECT.into()],
        scopes: vec!["api".into(), "links".into()],
        confidential: false,
        can_introspect: false,
    };
    let client = service
        .create_client(&operator, &org, spec)
        .await
        .unwrap()
        .client
        .id;
    let (challenge, _) = PkceCodeChallenge::new_random_sha256();
    let url = |scope: &str| {
        format!(
            "{}/oauth2/authorize?client_id={client}&response_type=code&scope={scope}&code_challenge={}&code_challenge_method=S256",
            s.app.url,
            challenge.as_str()
        )
    };
    let b = browser();
    let res = b.get(url("links")).send().await.unwrap();
    assert_eq!(res.status(), 200, "offered while the feature is on");
    service
        .update_org(&operator, &s.org, &[], &["links".into()], None)
        .await
        .unwrap();
    let res = b.get(url("links")).send().await.unwrap();
    assert_eq!(res.status(), 303);
    assert_eq!(
        query_param(&location(&res), "error").as_deref(),
        Some("invalid_scope")
    );
    let res = b.get(url("api")).send().await.unwrap();
    assert_eq!(res.status(), 200);
}

/// Issue 10, item 6: the same races split over two servers on one PostgreSQL database: this
/// test's server and a `latchkey serve` process beside it (the same master key and public URL,
/// as behind a balancer). Always on PostgreSQL; the suite's PostgreSQL pass skips `cluster::`.
mod cluster {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::helpers::{Binary, Server, fresh_postgres_database};

    async fn two_servers() -> (Setup, Server, Binary) {
        let url = fresh_postgres_database().await;
        let db = url.clone();
        let app = TestApp::builder()
            .configure(move |c| c.database_url = Some(db))
            .start()
            .await;
        // The other server runs on the real clock: codes made here must not be expired there.
        app.set_clock_to_real_time();
        let other = Binary::on_database(&url, Some(&app.data_dir().join("master.key")));
        other.append_config(&format!("public_url = {:?}\n", app.url));
        let server = other.serve(&[], None, None).await;
        (setup_on(app).await, server, other)
    }

    /// Refused on the first server within a second (the replay was perhaps on the other).
    async fn refused_soon(s: &Setup, access: &str) {
        let started = Instant::now();
        while s.app.get("/v1/me", access).await.status != 401 {
            assert!(started.elapsed() < Duration::from_secs(1), "still accepted");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_code_exchanged_on_two_servers_at_once_is_one_success_and_a_replay() {
        let (s, other, _bin) = two_servers().await;
        for _ in 0..5 {
            let (code, verifier) = consented_code(&s).await;
            let form = [
                ("grant_type", "authorization_code"),
                ("client_id", s.client_id.as_str()),
                ("code", code.as_str()),
                ("redirect_uri", REDIRECT),
                ("code_verifier", verifier.as_str()),
            ];
            let (a, b) = tokio::join!(
                token_post_to(&s.app.url, None, &form),
                token_post_to(&other.url, None, &form)
            );
            let mut statuses = [a.0, b.0];
            statuses.sort_unstable();
            assert_eq!(statuses, [200, 400], "{} / {}", a.1, b.1);
            let winner = if a.0 == 200 { &a.1 } else { &b.1 };
            refused_soon(&s, winner["access_token"].as_str().unwrap()).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_refresh_token_used_on_two_servers_at_once_is_one_success_and_a_replay() {
        let (s, other, _bin) = two_servers().await;
        for _ in 0..5 {
            let (_, refresh) = consented_tokens(&s, &api_client()).await;
            let form = [
                ("grant_type", "refresh_token"),
                ("client_id", s.client_id.as_str()),
                ("refresh_token", refresh.as_str()),
            ];
            let (a, b) = tokio::join!(
                token_post_to(&s.app.url, None, &form),
                token_post_to(&other.url, None, &form)
            );
            let mut statuses = [a.0, b.0];
            statuses.sort_unstable();
            assert_eq!(statuses, [200, 400], "{} / {}", a.1, b.1);
            let loser = if a.0 == 400 { &a.1 } else { &b.1 };
            assert_eq!(loser["error"], "invalid_grant", "{loser}");
            let winner = if a.0 == 200 { &a.1 } else { &b.1 };
            refused_soon(&s, winner["access_token"].as_str().unwrap()).await;
        }
    }
}

/// SPEC 9: a person sees the apps they consented to and withdraws one: its access and refresh
/// tokens stop at once; another person's app is not found.
#[tokio::test]
async fn a_person_sees_and_revokes_the_apps_they_consented_to() {
    let s = setup().await;
    let http = api_client();
    let (access, refresh) = consented_tokens(&s, &http).await;
    s.app.me(&access).await.expect(200);

    let session = s.app.login("ada@example.com").await;
    let apps = s.app.get("/v1/user/apps", &session).await.expect(200);
    assert_eq!(apps.body.as_array().map(Vec::len), Some(1), "{}", apps.text);
    assert_eq!(apps.body[0]["client_id"], json!(s.client_id));
    assert_eq!(apps.body[0]["name"], "Zapier <Automation>");
    assert_eq!(apps.body[0]["scopes"], json!(["api"]));

    // Someone else has no such app to revoke.
    s.app.user("bob@example.com").await;
    let bob = s.app.login("bob@example.com").await;
    let res = s
        .app
        .call(
            reqwest::Method::DELETE,
            &format!("/v1/user/apps/{}", s.client_id),
            Some(&bob),
            None,
        )
        .await;
    crate::helpers::assert_error(&res, 404, "not_found");
    s.app.me(&access).await.expect(200);

    s.app
        .call(
            reqwest::Method::DELETE,
            &format!("/v1/user/apps/{}", s.client_id),
            Some(&session),
            None,
        )
        .await
        .expect(204);
    assert_eq!(s.app.me(&access).await.status.as_u16(), 401);
    let events = s.app.get("/v1/user/events", &session).await.expect(200);
    assert!(
        events.text.contains("oauth.grant_revoked"),
        "{}",
        events.text
    );
    let (status, body, _) = token_post(
        &s,
        None,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &refresh),
            ("client_id", &s.client_id),
        ],
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "invalid_grant");
    let apps = s.app.get("/v1/user/apps", &session).await.expect(200);
    assert_eq!(apps.body, json!([]));
}
