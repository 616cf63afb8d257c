//! Single sign-on (SPEC 9) end to end: a real headless Chromium, Latchkey as the relying party
//! and a real OpenID provider (panva's `oidc-provider` on Node.js, `tests/sso/provider`, which
//! `scripts/test` installs and names in `SSO_PROVIDER_JS`). The provider's login form takes any
//! password; the login typed is the person's `sub` and address.

use std::process::Stdio;
use std::time::Duration;

use latchkey::config::SsoConfig;
use secrecy::SecretString;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::browser::Browser;
use crate::helpers::{TestApp, all_events, assert_error};

const CLIENT_ID: &str = "latchkey-test";
const CLIENT_SECRET: &str = "sso-test-client-secret";

/// The provider, stopped when dropped.
struct Provider {
    _child: Child,
}

fn provider_script() -> String {
    #[expect(
        clippy::disallowed_methods,
        reason = "the test harness learns where scripts/test installed the OpenID provider"
    )]
    let js = std::env::var("SSO_PROVIDER_JS")
        .ok()
        .filter(|v| !v.is_empty());
    js.unwrap_or_else(|| {
        panic!(
            "SSO_PROVIDER_JS is not set: run ./scripts/test, which installs the OpenID provider \
             (tests/sso/provider, npm oidc-provider) and names its server.js"
        )
    })
}

async fn free_port() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap().port()
}

impl Provider {
    /// Starts the provider on `port`, with Latchkey at `app_url` as its one client.
    async fn start(port: u16, app_url: &str) -> Self {
        let mut child = Command::new("node")
            .arg(provider_script())
            .env("PORT", port.to_string())
            .env("CLIENT_ID", CLIENT_ID)
            .env("CLIENT_SECRET", CLIENT_SECRET)
            .env("REDIRECT_URI", format!("{app_url}/sso/callback"))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("start node (Debian's nodejs): {e}"));
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let first = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .unwrap_or_else(|_| panic!("the OpenID provider did not start within 30 s"))
            .unwrap();
        let expected = format!("listening on http://127.0.0.1:{port}");
        assert_eq!(first.as_deref(), Some(expected.as_str()));
        Self { _child: child }
    }
}

/// Latchkey with single sign-on at a provider on `port` (started afterwards: Latchkey reads
/// its discovery document on first use), loopback allowed.
async fn app_with_sso(port: u16, tweak: impl FnOnce(&mut SsoConfig) + Send + 'static) -> TestApp {
    let app = TestApp::builder()
        .configure(move |c| {
            c.sso = SsoConfig {
                issuer: Some(format!("http://127.0.0.1:{port}")),
                client_id: CLIENT_ID.to_owned(),
                client_secret: SecretString::from(CLIENT_SECRET),
                display_name: "Test IdP".to_owned(),
                ..SsoConfig::default()
            };
            tweak(&mut c.sso);
            c.outbound.allow_private = true;
        })
        .start()
        .await;
    // ID tokens carry the provider's real times.
    app.set_clock_to_real_time();
    app
}

/// Signs in at the provider's login form, shown now.
async fn provider_login(b: &Browser, login: &str) {
    b.fill("input[name=login]", login).await;
    b.fill("input[name=password]", "any password").await;
    b.click("button[type=submit]").await;
}

/// Where a redirect goes, without following it.
async fn location_of(res: reqwest::Response) -> (String, Option<String>) {
    assert!(res.status().is_redirection(), "{}", res.status());
    let location = res
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap()
        .to_owned();
    let flow = res
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|c| c.strip_prefix("latchkey_sso="))
        .map(|c| c.split(';').next().unwrap_or_default().to_owned());
    (location, flow)
}

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// Replaces (or, with `None`, removes) one parameter of a URL's query.
fn with_param(url: &str, name: &str, value: Option<&str>) -> String {
    let mut parsed = url::Url::parse(url).unwrap();
    let pairs: Vec<(String, String)> = parsed
        .query_pairs()
        .filter(|(k, _)| k != name)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    {
        let mut query = parsed.query_pairs_mut();
        query.clear();
        for (k, v) in &pairs {
            query.append_pair(k, v);
        }
        if let Some(value) = value {
            query.append_pair(name, value);
        }
    }
    parsed.to_string()
}

#[tokio::test]
async fn a_person_signs_in_at_the_provider_and_confirms_there_before_a_token() {
    let port = free_port().await;
    let app = app_with_sso(port, |s| s.create_users = true).await;
    let _provider = Provider::start(port, &app.url).await;
    let b = Browser::start(&app.url).await;

    // The console's sign-in offers the provider beside the password.
    b.goto("/credentials").await;
    assert_eq!(b.text("#sso-login").await, "Sign in with Test IdP");
    assert_eq!(b.count("#password").await, 1, "password sign-in stays");
    b.click("#sso-login").await;
    assert!(
        b.url()
            .await
            .starts_with(&format!("http://127.0.0.1:{port}/interaction/"))
    );
    provider_login(&b, "ada@example.test").await;

    // Back, signed in as a new person (create_users), where the sign-in started.
    assert_eq!(b.path().await, "/credentials");
    assert!(b.text("header.top").await.contains("ada@example.test"));
    b.screenshot("sso-signed-in").await;

    // Someone who signs in at the provider confirms there: no password fields.
    assert_eq!(b.count("#new-password").await, 0);
    assert!(
        b.text("#reauth-state")
            .await
            .contains("sign in again at Test IdP")
    );
    b.fill("#new-name", "laptop").await;
    b.click("#new button[type=submit]").await;
    assert!(
        b.text(".error")
            .await
            .contains("Confirm who you are at your sign-in provider first"),
        "refused until confirmed"
    );

    // The API says the same to the same session.
    let session = b.cookie("latchkey_session").await.unwrap();
    let res = app
        .create_token(&session, json!({"name": "api", "type": "personal"}))
        .await;
    assert_error(&res, 403, "reauthentication_required");

    // Confirm: the provider asks again (max_age=0, prompt=login) even with its own session.
    b.click("#reauth-button").await;
    assert!(b.url().await.contains("/interaction/"), "{}", b.url().await);
    provider_login(&b, "ada@example.test").await;
    assert_eq!(b.path().await, "/credentials");
    assert!(
        b.text("#reauth-state")
            .await
            .contains("Confirmed at Test IdP")
    );

    // Within the window the session may: the API (a token made and revoked) and the console.
    let res = app
        .create_token(&session, json!({"name": "api", "type": "personal"}))
        .await;
    assert_eq!(res.status, 201, "{:?}", res.body);
    let made = res.str("id");
    let res = app
        .post(
            &format!("/v1/user/tokens/{made}/revoke"),
            &session,
            json!({}),
        )
        .await;
    assert_eq!(res.status, 200, "{:?}", res.body);
    b.fill("#new-name", "laptop").await;
    b.click("#new button[type=submit]").await;
    let secret = b.value("#secret").await;
    assert_eq!(app.me(&secret).await.status, 200);

    // After it, no more.
    app.clock.advance(301);
    let id = app.tokens(&session).await[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let res = app
        .post(&format!("/v1/user/tokens/{id}/revoke"), &session, json!({}))
        .await;
    assert_error(&res, 403, "reauthentication_required");
    assert_eq!(app.me(&secret).await.status, 200);

    // The account page says where the password lives.
    b.goto("/account").await;
    assert!(b.text("#sso-password").await.contains("single sign-on"));

    let events = all_events(&app).await;
    let actions: Vec<(&str, &str)> = events
        .iter()
        .map(|e| (e.action.as_str(), e.outcome.as_str()))
        .collect();
    for expected in [
        ("user.created", "success"),
        ("user.sso_linked", "success"),
        ("session.login", "success"),
        ("session.reauthenticated", "success"),
        ("token.create", "reauthentication_required"),
    ] {
        assert!(actions.contains(&expected), "{expected:?} in {actions:?}");
    }
    b.close().await;
}

#[tokio::test]
async fn a_wrong_state_a_wrong_nonce_and_a_stale_auth_time_are_refused() {
    let port = free_port().await;
    // Single sign-on only: everyone confirms at the provider.
    let app = app_with_sso(port, |s| s.password_login = false).await;
    let _provider = Provider::start(port, &app.url).await;
    // Not made on first sign-in here (no create_users): the person exists and is matched by
    // their verified address.
    app.user("grace@example.test").await;
    let b = Browser::start(&app.url).await;

    // A wrong state: the flow's cookie is set, the answer is not for it.
    b.goto("/sso/start").await;
    assert!(b.url().await.contains("/interaction/"));
    b.goto("/sso/callback?code=made-up&state=not-the-state")
        .await;
    assert!(b.body().await.contains("start again"), "{}", b.body().await);
    assert!(b.cookie("latchkey_session").await.is_none());

    // The right state with a made-up code: the provider refuses it, and so does Latchkey (a
    // 400 in its words, not an outage).
    let (to_provider, flow) = location_of(
        no_redirects()
            .get(format!("{}/sso/start", app.url))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let state = url::Url::parse(&to_provider)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "state")
        .map(|(_, v)| v.into_owned())
        .unwrap();
    let res = no_redirects()
        .get(format!(
            "{}/sso/callback?code=made-up&state={state}",
            app.url
        ))
        .header("cookie", format!("latchkey_sso={}", flow.unwrap()))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let page = res.text().await.unwrap();
    assert!(
        page.contains("refused this sign-in (invalid_grant)"),
        "{page}"
    );

    // Someone the platform has but Latchkey has not, without create_users: refused.
    b.goto("/sso/start").await;
    provider_login(&b, "mallory@example.test").await;
    assert!(
        b.body().await.contains("no Latchkey account"),
        "{}",
        b.body().await
    );
    assert!(b.cookie("latchkey_session").await.is_none());

    // A wrong nonce: the browser keeps this flow's cookie but is sent to the provider with
    // another nonce (as a token minted for another sign-in would carry).
    let (to_provider, flow) = location_of(
        no_redirects()
            .get(format!("{}/sso/start", app.url))
            .send()
            .await
            .unwrap(),
    )
    .await;
    b.goto("/login").await;
    b.add_cookie("latchkey_sso", &flow.unwrap(), "/sso").await;
    let other_nonce = with_param(&to_provider, "nonce", Some("someone-elses-nonce"));
    b.goto_url(&with_param(&other_nonce, "prompt", Some("login")))
        .await;
    provider_login(&b, "grace@example.test").await;
    assert!(b.body().await.contains("nonce"), "{}", b.body().await);
    assert!(b.cookie("latchkey_session").await.is_none());

    // The right flow signs Grace in (matched by her verified address, and linked).
    b.goto("/sso/start").await;
    if b.url().await.contains("/interaction/") {
        provider_login(&b, "grace@example.test").await;
    }
    assert_eq!(b.path().await, "/credentials", "{}", b.body().await);
    let session = b.cookie("latchkey_session").await.unwrap();
    assert_eq!(b.count("#new-password").await, 0);
    assert_eq!(b.count("#reauth-button").await, 1);

    // A stale auth_time: a confirmation whose provider answers from its old session (the
    // request's max_age=0 and prompt=login dropped) is refused.
    app.clock.advance(120);
    let csrf = b.value("input[name=csrf_token]").await;
    let res = no_redirects()
        .post(format!("{}/sso/reauth", app.url))
        .header("cookie", format!("latchkey_session={session}"))
        .header("origin", &app.url)
        .form(&[("csrf_token", csrf.as_str()), ("next", "/credentials")])
        .send()
        .await
        .unwrap();
    let (to_provider, flow) = location_of(res).await;
    assert!(to_provider.contains("max_age=0") && to_provider.contains("prompt=login"));
    let silent = with_param(&with_param(&to_provider, "max_age", None), "prompt", None);
    b.add_cookie("latchkey_sso", &flow.unwrap(), "/sso").await;
    b.goto_url(&silent).await;
    assert!(
        b.body().await.contains("did not sign in again"),
        "{}",
        b.body().await
    );

    let events = all_events(&app).await;
    let refusals: Vec<String> = events
        .iter()
        .filter(|e| e.outcome == "sso_refused")
        .map(|e| e.details.clone().unwrap_or_default())
        .collect();
    assert!(refusals.iter().any(|r| r.contains("nonce")), "{refusals:?}");
    assert!(
        refusals.iter().any(|r| r.contains("no such person")),
        "{refusals:?}"
    );
    assert!(
        refusals.iter().any(|r| r.contains("auth_time")),
        "{refusals:?}"
    );
    b.close().await;
}

#[tokio::test]
async fn password_sign_in_can_be_switched_off() {
    // No provider is started: nothing here reaches it.
    let app = app_with_sso(free_port().await, |s| s.password_login = false).await;
    app.user("ada@example.com").await;
    let res = app
        .client
        .get(format!("{}/login", app.url))
        .send()
        .await
        .unwrap();
    let page = res.text().await.unwrap();
    assert!(page.contains("Sign in with Test IdP"), "{page}");
    assert!(!page.contains("type=\"password\""), "{page}");
    assert!(!page.contains("/forgot-password"), "{page}");
    let res = app
        .call(
            reqwest::Method::POST,
            "/v1/sessions",
            None,
            Some(json!({"email": "ada@example.com", "password": crate::helpers::PASSWORD})),
        )
        .await;
    assert_error(&res, 403, "forbidden");
    let res = app
        .call(
            reqwest::Method::POST,
            "/v1/password-resets",
            None,
            Some(json!({"email": "ada@example.com"})),
        )
        .await;
    assert_error(&res, 403, "forbidden");
}

#[tokio::test]
async fn the_provider_is_never_called_on_a_private_address_unless_allowed() {
    for issuer in [
        "https://127.0.0.1:9",
        "https://localhost:9",
        "https://10.0.0.1",
    ] {
        let app = TestApp::builder()
            .configure(move |c| {
                c.sso = SsoConfig {
                    issuer: Some(issuer.to_owned()),
                    client_id: CLIENT_ID.to_owned(),
                    client_secret: SecretString::from(CLIENT_SECRET),
                    ..SsoConfig::default()
                };
            })
            .start()
            .await;
        let res = no_redirects()
            .get(format!("{}/sso/start", app.url))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 503, "{issuer}");
        let page = res.text().await.unwrap();
        assert!(page.contains("cannot be reached"), "{issuer}: {page}");
    }
}

#[tokio::test]
async fn without_single_sign_on_its_pages_are_not_there() {
    let app = TestApp::spawn().await;
    let res = no_redirects()
        .get(format!("{}/sso/start", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    let page = app
        .client
        .get(format!("{}/login", app.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!page.contains("sso-login"), "{page}");
}

#[tokio::test]
async fn the_oauth_sign_in_page_signs_in_at_the_provider_and_comes_back_to_consent() {
    let port = free_port().await;
    let app = app_with_sso(port, |s| {
        s.create_users = true;
        s.password_login = false;
    })
    .await;
    let _provider = Provider::start(port, &app.url).await;
    app.user("owner@example.com").await;
    let org = app.org("Acme").await;
    let org_record = app.service().find_org(&org).await.unwrap();
    let spec = latchkey_service::oauth::clients::ClientSpec {
        name: "Partner app".into(),
        grant_types: vec!["authorization_code".into()],
        redirect_uris: vec!["http://localhost:9/cb".into()],
        scopes: vec!["api".into()],
        confidential: false,
        can_introspect: false,
    };
    let client = app
        .service()
        .create_client(&latchkey_service::Caller::operator(), &org_record, spec)
        .await
        .unwrap()
        .client
        .id;
    let challenge =
        latchkey_core::oauth::pkce_s256("a-verifier-of-at-least-forty-three-characters-long");
    let authorize = format!(
        "/oauth2/authorize?client_id={client}&response_type=code&state=s1&code_challenge={challenge}&code_challenge_method=S256"
    );
    let b = Browser::start(&app.url).await;
    b.goto(&authorize).await;
    assert_eq!(b.count("#password").await, 0, "password sign-in is off");
    b.click("#sso-login").await;
    provider_login(&b, "ada@example.test").await;
    // Back at the authorization request, signed in: its consent page.
    assert!(
        b.path().await.starts_with("/oauth2/authorize?"),
        "{}",
        b.path().await
    );
    let body = b.body().await;
    assert!(body.contains("Partner app"), "{body}");
    assert!(body.contains("ada@example.test"), "{body}");
    b.close().await;
}
