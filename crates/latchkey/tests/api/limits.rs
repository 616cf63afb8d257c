//! The abuse limits of SECURITY.md, with the clock moved by hand.

use latchkey::config::LimitsConfig;
use reqwest::Method;
use serde_json::json;

use crate::helpers::{PASSWORD, TestApp};

async fn login(app: &TestApp, email: &str, password: &str) -> crate::helpers::Resp {
    app.call(
        Method::POST,
        "/v1/sessions",
        None,
        Some(json!({ "email": email, "password": password })),
    )
    .await
}

#[tokio::test]
async fn failed_sign_ins_back_off_per_account_and_never_lock_for_good() {
    let app = TestApp::spawn().await;
    app.user("ada@example.com").await;
    for _ in 0..5 {
        login(&app, "ada@example.com", "wrong password!")
            .await
            .expect(401);
    }
    // The fifth failure spent the allowance and started a 1 s wait: even the right password
    // waits.
    let res = login(&app, "ada@example.com", PASSWORD).await.expect(429);
    assert_eq!(res.code(), "rate_limited");
    assert_eq!(res.header("retry-after").as_deref(), Some("1"));
    // Another account is not affected.
    app.user("bob@example.com").await;
    login(&app, "bob@example.com", PASSWORD).await.expect(201);
    app.clock.advance(1);
    login(&app, "ada@example.com", PASSWORD).await.expect(201);
    // Success clears the account.
    login(&app, "ada@example.com", "wrong password!")
        .await
        .expect(401);
}

#[tokio::test]
async fn the_back_off_is_the_same_for_unknown_accounts() {
    let app = TestApp::spawn().await;
    for _ in 0..5 {
        login(&app, "ghost@example.com", "wrong password!")
            .await
            .expect(401);
    }
    login(&app, "ghost@example.com", "wrong password!")
        .await
        .expect(429);
}

#[tokio::test]
async fn sign_ins_are_limited_per_address() {
    let limits = LimitsConfig {
        login_per_ip_per_minute: 3,
        ..LimitsConfig::default()
    };
    let app = TestApp::builder().limits(limits).start().await;
    app.user("ip@example.com").await;
    for _ in 0..3 {
        login(&app, "ip@example.com", PASSWORD).await.expect(201);
    }
    let res = login(&app, "ip@example.com", PASSWORD).await.expect(429);
    assert!(res.header("retry-after").is_some());
    app.clock.advance(60);
    login(&app, "ip@example.com", PASSWORD).await.expect(201);
}

#[tokio::test]
async fn an_address_sending_bad_tokens_is_blocked_for_a_while() {
    let limits = LimitsConfig {
        invalid_tokens_per_ip_per_minute: 5,
        ..LimitsConfig::default()
    };
    let app = TestApp::builder().limits(limits).start().await;
    let (_, session) = app.signed_in("bad@example.com").await;
    let (_, good) = app.personal_token(&session, "good").await;
    for _ in 0..6 {
        app.get("/v1/me", "lkp_not-a-token").await.expect(401);
    }
    let res = app.get("/v1/me", "lkp_not-a-token").await.expect(429);
    assert_eq!(res.header("retry-after").as_deref(), Some("300"));
    // While blocked, even a good token from that address waits.
    app.get("/v1/me", &good).await.expect(429);
    app.clock.advance(300);
    app.get("/v1/me", &good).await.expect(200);
}

/// Sends `n` requests at once and counts the answers by status.
async fn burst<F, Fut>(n: usize, send: F) -> std::collections::BTreeMap<u16, usize>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = crate::helpers::Resp> + Send + 'static,
{
    let tasks: Vec<_> = (0..n).map(|_| tokio::spawn(send())).collect();
    let mut counts = std::collections::BTreeMap::new();
    for task in tasks {
        let res = task.await.unwrap_or_else(|e| panic!("task: {e}"));
        if res.status.as_u16() == 429 {
            assert_eq!(res.code(), "rate_limited", "{}", res.text);
            assert!(res.header("retry-after").is_some(), "{}", res.text);
        }
        *counts.entry(res.status.as_u16()).or_insert(0) += 1;
    }
    counts
}

#[tokio::test]
async fn parallel_wrong_passwords_get_no_more_checks_than_the_allowance() {
    let app = std::sync::Arc::new(TestApp::spawn().await);
    app.user("ada@example.com").await;
    let counts = burst(24, || {
        let app = app.clone();
        async move { login(&app, "ada@example.com", "wrong password!").await }
    })
    .await;
    assert_eq!(
        counts,
        [(401, 5), (429, 19)].into_iter().collect(),
        "exactly the five free checks, the rest refused before hashing"
    );
    // The right password, still inside the burst's instant, waits like the rest.
    login(&app, "ada@example.com", PASSWORD).await.expect(429);
    app.clock.advance(1);
    login(&app, "ada@example.com", PASSWORD).await.expect(201);
}

#[tokio::test]
async fn parallel_password_prompts_in_a_session_get_no_more_checks_either() {
    let app = std::sync::Arc::new(TestApp::spawn().await);
    let (_, session) = app.signed_in("ada@example.com").await;
    let session = std::sync::Arc::new(session);
    let counts = burst(24, || {
        let (app, session) = (app.clone(), session.clone());
        async move {
            app.post(
                "/v1/user/tokens",
                &session,
                json!({ "name": "guess", "password": "wrong password!" }),
            )
            .await
        }
    })
    .await;
    assert_eq!(counts, [(403, 5), (429, 19)].into_iter().collect());
    let res = app
        .post(
            "/v1/user/tokens",
            &session,
            json!({ "name": "mine", "password": PASSWORD }),
        )
        .await
        .expect(429);
    assert_eq!(res.code(), "rate_limited");
    assert!(app.tokens(&session).await.is_empty());
}

#[tokio::test]
async fn parallel_right_passwords_all_get_in() {
    let app = std::sync::Arc::new(TestApp::spawn().await);
    app.user("ada@example.com").await;
    // More than the allowance at once: those beyond it queue behind the checks in flight, and
    // each success clears the way, so none is refused.
    let counts = burst(12, || {
        let app = app.clone();
        async move { login(&app, "ada@example.com", PASSWORD).await }
    })
    .await;
    assert_eq!(counts, [(201, 12)].into_iter().collect());
}
