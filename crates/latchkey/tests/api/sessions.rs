use reqwest::Method;
use serde_json::json;

use crate::helpers::{PASSWORD, TestApp};

#[tokio::test]
async fn login_sets_a_session_and_a_cookie_and_logout_ends_it() {
    let app = TestApp::spawn().await;
    app.user("ada@example.com").await;
    let res = app
        .call(
            Method::POST,
            "/v1/sessions",
            None,
            Some(json!({ "email": "ada@example.com", "password": PASSWORD })),
        )
        .await
        .expect(201);
    let session = res.str("session_token");
    assert!(session.starts_with("lkses_"));
    assert!(res.body["expires_at"].is_string());
    let cookie = res.header("set-cookie").unwrap_or_default();
    assert!(cookie.contains("latchkey_session="), "{cookie}");
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax") && cookie.contains("Path=/"),
        "{cookie}"
    );

    app.get("/v1/user/tokens", &session).await.expect(200);
    app.call(Method::DELETE, "/v1/sessions/current", Some(&session), None)
        .await
        .expect(204);
    let res = app.get("/v1/user/tokens", &session).await.expect(401);
    assert_eq!(res.code(), "unauthenticated");
}

#[tokio::test]
async fn the_session_cookie_works_without_a_bearer_header() {
    let app = TestApp::spawn().await;
    let (_, session) = app.signed_in("cookie@example.com").await;
    let res = app
        .client
        .get(format!("{}/v1/user/tokens", app.url))
        .header("cookie", format!("other=1; latchkey_session={session}"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(res.status().as_u16(), 200);
}

#[tokio::test]
async fn wrong_password_and_unknown_user_answer_identically() {
    let app = TestApp::spawn().await;
    app.user("known@example.com").await;
    let wrong = app
        .call(
            Method::POST,
            "/v1/sessions",
            None,
            Some(json!({ "email": "known@example.com", "password": "not the password" })),
        )
        .await
        .expect(401);
    let unknown = app
        .call(
            Method::POST,
            "/v1/sessions",
            None,
            Some(json!({ "email": "nobody@example.com", "password": "not the password" })),
        )
        .await
        .expect(401);
    assert_eq!(wrong.text, unknown.text);
    assert_eq!(wrong.code(), "invalid_credentials");
}

#[tokio::test]
async fn management_endpoints_refuse_api_tokens() {
    let app = TestApp::spawn().await;
    let (_, session) = app.signed_in("mgmt@example.com").await;
    let (_, secret) = app.personal_token(&session, "cli").await;
    for path in ["/v1/user/tokens", "/v1/orgs", "/v1/user/events"] {
        let res = app.get(path, &secret).await.expect(403);
        assert_eq!(res.code(), "session_required", "{path}");
    }
    let res = app
        .call(Method::GET, "/v1/user/tokens", None, None)
        .await
        .expect(401);
    assert_eq!(res.code(), "unauthenticated");
}

#[tokio::test]
async fn a_session_expires_after_its_ttl() {
    let app = TestApp::spawn().await;
    let (_, session) = app.signed_in("ttl@example.com").await;
    app.clock.advance(12 * 3600 + 1);
    app.get("/v1/user/tokens", &session).await.expect(401);
}

#[tokio::test]
async fn disabling_a_user_ends_their_sessions() {
    let app = TestApp::spawn().await;
    let (_, session) = app.signed_in("gone@example.com").await;
    app.service()
        .update_user(
            &latchkey_service::Caller::operator(),
            "gone@example.com",
            Some(true),
            None,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    app.get("/v1/user/tokens", &session).await.expect(401);
    app.call(
        Method::POST,
        "/v1/sessions",
        None,
        Some(json!({ "email": "gone@example.com", "password": PASSWORD })),
    )
    .await
    .expect(401);
}
