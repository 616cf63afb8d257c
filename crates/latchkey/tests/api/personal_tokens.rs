//! Personal tokens (SPEC 2.1-2.3): create, list, get, rename, rotate, revoke, reveal, expiry,
//! limits under concurrency, and usage tracking.

use latchkey_core::policy::{Lifetime, TokenTypeConfig};
use latchkey_core::token_string::ParsedToken;
use latchkey_core::{PolicyDuration, Role};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{PASSWORD, TestApp, assert_error, assert_refused, parse_time, rfc3339};

fn is_base62(text: &str) -> bool {
    text.bytes().all(|b| b.is_ascii_alphanumeric())
}

#[tokio::test]
async fn create_returns_the_secret_once_with_no_store() {
    let app = TestApp::spawn().await;
    let (user, session) = app.signed_in("create@example.com").await;
    let res = app
        .create_token(
            &session,
            json!({ "name": "my laptop", "password": PASSWORD }),
        )
        .await
        .expect(201);
    assert_eq!(res.header("cache-control").as_deref(), Some("no-store"));

    let secret = res.str("secret");
    let body = secret
        .strip_prefix("lkp_")
        .unwrap_or_else(|| panic!("not a personal token: {secret}"));
    assert_eq!(body.len(), 43 + 6, "{secret}");
    assert!(is_base62(body), "{secret}");
    assert!(
        ParsedToken::parse(&secret).is_ok(),
        "the checksum of {secret} does not verify"
    );

    let id = res.str("id");
    assert!(id.starts_with("tok_"), "{id}");
    assert_eq!(res.str("type"), "personal");
    assert_eq!(res.str("name"), "my laptop");
    assert_eq!(res.str("status"), "active");
    assert_eq!(
        res.str("hint"),
        format!("lkp_…{}", &secret[secret.len() - 4..])
    );
    let now = app.now();
    assert_eq!(res.str("created_at"), rfc3339(now));
    assert_eq!(res.str("active_from"), rfc3339(now));
    assert_eq!(
        res.str("expires_at"),
        rfc3339(now + time::Duration::days(180))
    );
    assert!(res.body["last_used_at"].is_null());

    // The secret works at once, and acts as this user.
    let me = app.me(&secret).await.expect(200);
    assert_eq!(me.body["principal"]["id"], user.as_str());
    assert_eq!(me.body["token"]["id"], id.as_str());
}

#[tokio::test]
async fn create_with_a_wrong_password_is_refused_and_creates_nothing() {
    let app = TestApp::spawn().await;
    let (_, session) = app.signed_in("wrongpw@example.com").await;
    let res = app
        .create_token(
            &session,
            json!({ "name": "x", "password": "not the password" }),
        )
        .await;
    assert_error(&res, 403, "invalid_password");
    assert!(app.tokens(&session).await.is_empty());
}

#[tokio::test]
async fn list_shows_records_and_never_the_secret() {
    let app = TestApp::spawn().await;
    let (_, session, id, secret) = app.user_with_token("list@example.com").await;
    let res = app.get("/v1/user/tokens", &session).await.expect(200);
    assert!(
        !res.text.contains(&secret),
        "the list shows the secret: {}",
        res.text
    );
    assert!(
        !res.text.contains(&secret[4..47]),
        "the list shows the random part: {}",
        res.text
    );
    let list = res.body.as_array().cloned().unwrap_or_default();
    assert_eq!(list.len(), 1, "{}", res.text);
    let token = &list[0];
    for field in [
        "id",
        "type",
        "name",
        "status",
        "created_at",
        "active_from",
        "expires_at",
        "last_used_at",
        "last_used_ip",
        "hint",
    ] {
        assert!(token.get(field).is_some(), "no {field} in {token}");
    }
    assert!(token.get("secret").is_none(), "{token}");
    assert_eq!(token["id"], id.as_str());
    assert_eq!(token["type"], "personal");
    assert_eq!(token["name"], "laptop");
    assert_eq!(token["status"], "active");
    assert_eq!(
        token["hint"],
        format!("lkp_…{}", &secret[secret.len() - 4..]).as_str()
    );
    assert!(
        token["last_used_at"].is_null() && token["last_used_ip"].is_null(),
        "{token}"
    );

    // Another user sees none of it.
    let (_, other) = app.signed_in("other-list@example.com").await;
    assert!(app.tokens(&other).await.is_empty());
}

#[tokio::test]
async fn get_one_shows_the_organisations_it_reaches_now() {
    let app = TestApp::spawn().await;
    let (_, session, id, secret) = app.user_with_token("reach@example.com").await;
    let org_a = app.org("Acme Ads").await;
    let org_b = app.org("Bolt Publishing").await;
    app.add_member(&org_a, "reach@example.com", Role::Admin)
        .await;
    app.add_member(&org_b, "reach@example.com", Role::Partner)
        .await;

    let res = app
        .get(&format!("/v1/user/tokens/{id}"), &session)
        .await
        .expect(200);
    assert!(!res.text.contains(&secret));
    assert_eq!(res.str("id"), id);
    assert_eq!(res.str("status"), "active");
    let mut accounts = res.body["accounts"].as_array().cloned().unwrap_or_default();
    accounts.sort_by_key(|a| a["name"].as_str().map(str::to_owned));
    assert_eq!(
        Value::Array(accounts),
        json!([
            { "id": org_a, "name": "Acme Ads", "role": "admin" },
            { "id": org_b, "name": "Bolt Publishing", "role": "partner" },
        ])
    );

    app.service()
        .remove_member(
            &latchkey_service::Caller::operator(),
            &org_b,
            "reach@example.com",
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let res = app
        .get(&format!("/v1/user/tokens/{id}"), &session)
        .await
        .expect(200);
    assert_eq!(
        res.body["accounts"],
        json!([{ "id": org_a, "name": "Acme Ads", "role": "admin" }])
    );
}

#[tokio::test]
async fn rename_changes_the_name_only() {
    let app = TestApp::spawn().await;
    let (_, session, id, secret) = app.user_with_token("rename@example.com").await;
    let res = app
        .call(
            Method::PATCH,
            &format!("/v1/user/tokens/{id}"),
            Some(&session),
            Some(json!({ "name": "  ci runner  " })),
        )
        .await
        .expect(200);
    assert_eq!(res.str("name"), "ci runner");
    assert_eq!(res.str("id"), id);
    assert!(res.body.get("secret").is_none());
    assert_eq!(app.listed(&session, &id).await["name"], "ci runner");
    app.me(&secret).await.expect(200);
}

#[tokio::test]
async fn rotate_with_the_default_grace_expires_the_old_token_at_once() {
    let app = TestApp::spawn().await;
    let (_, session, old_id, old_secret) = app.user_with_token("rotate@example.com").await;
    app.me(&old_secret).await.expect(200);

    // personal has max_active = 1: rotation is allowed at the limit.
    let res = app
        .call(
            Method::POST,
            &format!("/v1/user/tokens/{old_id}/rotate"),
            Some(&session),
            Some(json!({ "password": PASSWORD })),
        )
        .await
        .expect(201);
    assert_eq!(res.header("cache-control").as_deref(), Some("no-store"));
    let new_id = res.str("id");
    let new_secret = res.str("secret");
    assert_ne!(new_id, old_id);
    assert_ne!(new_secret, old_secret);
    assert_eq!(res.str("name"), "laptop");
    assert_eq!(res.str("type"), "personal");
    assert_eq!(res.str("rotated_from"), old_id);

    assert_refused(&app.me(&old_secret).await, "expired");
    let me = app.me(&new_secret).await.expect(200);
    assert_eq!(me.body["token"]["id"], new_id.as_str());

    assert_eq!(app.listed(&session, &old_id).await["status"], "expired");
    assert_eq!(app.listed(&session, &new_id).await["status"], "active");

    // The expired one cannot be rotated again.
    let res = app
        .post(
            &format!("/v1/user/tokens/{old_id}/rotate"),
            &session,
            json!({ "password": PASSWORD }),
        )
        .await;
    assert_error(&res, 409, "token_not_live");
}

#[tokio::test]
async fn rotate_with_a_grace_period_keeps_the_old_token_until_it_ends() {
    let app = TestApp::spawn().await;
    let (_, session, old_id, old_secret) = app.user_with_token("grace@example.com").await;
    let rotated_at = app.now();
    let res = app
        .post(
            &format!("/v1/user/tokens/{old_id}/rotate"),
            &session,
            json!({ "grace": "1h", "password": PASSWORD }),
        )
        .await
        .expect(201);
    let new_secret = res.str("secret");

    app.me(&old_secret).await.expect(200);
    app.me(&new_secret).await.expect(200);
    let old = app.listed(&session, &old_id).await;
    assert_eq!(old["status"], "active");
    assert_eq!(
        old["expires_at"],
        rfc3339(rotated_at + time::Duration::hours(1)).as_str()
    );

    app.clock.advance(3_599);
    app.me(&old_secret).await.expect(200);
    app.clock.advance(2);
    assert_refused(&app.me(&old_secret).await, "expired");
    app.me(&new_secret).await.expect(200);
    assert_eq!(app.listed(&session, &old_id).await["status"], "expired");
}

#[tokio::test]
async fn rotate_refuses_a_grace_beyond_seven_days() {
    let app = TestApp::spawn().await;
    let (_, session, id, secret) = app.user_with_token("longgrace@example.com").await;
    for grace in ["8d", "169h", "soon", "-1s", ""] {
        let res = app
            .post(
                &format!("/v1/user/tokens/{id}/rotate"),
                &session,
                json!({ "grace": grace, "password": PASSWORD }),
            )
            .await;
        assert_error(&res, 400, "invalid_request");
    }
    assert_eq!(
        app.tokens(&session).await.len(),
        1,
        "a refused rotation created a token"
    );
    app.me(&secret).await.expect(200);
    // Exactly seven days is allowed.
    app.post(
        &format!("/v1/user/tokens/{id}/rotate"),
        &session,
        json!({ "grace": "7d", "password": PASSWORD }),
    )
    .await
    .expect(201);
}

#[tokio::test]
async fn rotate_ending_on_first_use_revokes_the_old_token_once_the_new_one_is_used() {
    let app = TestApp::spawn().await;
    let (_, session, old_id, old_secret) = app.user_with_token("firstuse@example.com").await;
    let res = app
        .post(
            &format!("/v1/user/tokens/{old_id}/rotate"),
            &session,
            json!({ "grace": "first_use", "password": PASSWORD }),
        )
        .await
        .expect(201);
    let new_secret = res.str("secret");

    // Until the new token is used, the old one keeps working, flush or not.
    app.me(&old_secret).await.expect(200);
    app.flush().await;
    app.me(&old_secret).await.expect(200);
    assert_eq!(app.listed(&session, &old_id).await["status"], "active");

    app.me(&new_secret).await.expect(200);
    app.flush().await;
    assert_refused(&app.me(&old_secret).await, "revoked");
    assert_eq!(app.listed(&session, &old_id).await["status"], "revoked");
    app.me(&new_secret).await.expect(200);
}

#[tokio::test]
async fn rotate_ending_on_first_use_is_capped_at_seven_days() {
    let app = TestApp::spawn().await;
    let (_, session, old_id, old_secret) = app.user_with_token("firstusecap@example.com").await;
    app.post(
        &format!("/v1/user/tokens/{old_id}/rotate"),
        &session,
        json!({ "grace": "first_use", "password": PASSWORD }),
    )
    .await
    .expect(201);
    app.clock.advance(7 * 86_400 - 1);
    app.me(&old_secret).await.expect(200);
    app.clock.advance(1);
    assert_refused(&app.me(&old_secret).await, "expired");
}

#[tokio::test]
async fn revoke_needs_the_password_and_takes_effect_on_the_next_request() {
    let app = TestApp::spawn().await;
    let (_, session, id, secret) = app.user_with_token("revoke@example.com").await;
    app.me(&secret).await.expect(200);

    let res = app
        .post(
            &format!("/v1/user/tokens/{id}/revoke"),
            &session,
            json!({ "password": "wrong password" }),
        )
        .await;
    assert_error(&res, 403, "invalid_password");
    app.me(&secret).await.expect(200);

    let res = app
        .post(&format!("/v1/user/tokens/{id}/revoke"), &session, json!({}))
        .await;
    assert_error(&res, 400, "invalid_request");
    app.me(&secret).await.expect(200);

    let res = app
        .post(
            &format!("/v1/user/tokens/{id}/revoke"),
            &session,
            json!({ "password": PASSWORD }),
        )
        .await
        .expect(200);
    assert_eq!(res.str("status"), "revoked");
    assert_eq!(res.str("revoked_at"), rfc3339(app.now()));
    let description = assert_refused(&app.me(&secret).await, "revoked");
    assert!(!description.contains(&secret));

    // The record stays, for audit; a revoked token cannot be rotated back to life.
    assert_eq!(app.listed(&session, &id).await["status"], "revoked");
    let res = app
        .post(
            &format!("/v1/user/tokens/{id}/rotate"),
            &session,
            json!({ "password": PASSWORD }),
        )
        .await;
    assert_error(&res, 409, "token_not_live");
    // The slot is free again.
    app.personal_token(&session, "replacement").await;
}

#[tokio::test]
async fn reveal_is_refused_for_personal_tokens() {
    let app = TestApp::spawn().await;
    let (_, session, id, secret) = app.user_with_token("reveal@example.com").await;
    let res = app
        .post(
            &format!("/v1/user/tokens/{id}/reveal"),
            &session,
            json!({ "password": PASSWORD }),
        )
        .await;
    assert_error(&res, 409, "not_revealable");
    assert!(!res.text.contains(&secret));
}

#[tokio::test]
async fn expires_in_days_is_bounded_by_the_lifetime() {
    let app = TestApp::spawn().await;
    let (_, session) = app.signed_in("expiry@example.com").await;
    for days in [
        json!(181),
        json!(0),
        json!(-1),
        json!(1_000_000),
        json!("30"),
    ] {
        let res = app
            .create_token(
                &session,
                json!({ "name": "x", "password": PASSWORD, "expires_in_days": days }),
            )
            .await;
        assert_error(&res, 400, "invalid_request");
    }
    assert!(app.tokens(&session).await.is_empty());

    let res = app
        .create_token(
            &session,
            json!({ "name": "month", "password": PASSWORD, "expires_in_days": 30 }),
        )
        .await
        .expect(201);
    let created = parse_time(&res.str("created_at"));
    assert_eq!(
        parse_time(&res.str("expires_at")) - created,
        time::Duration::days(30)
    );
}

#[tokio::test]
async fn the_full_lifetime_of_180_days_is_allowed() {
    let app = TestApp::spawn().await;
    let (_, session) = app.signed_in("fulllife@example.com").await;
    let res = app
        .create_token(
            &session,
            json!({ "name": "long", "password": PASSWORD, "expires_in_days": 180 }),
        )
        .await
        .expect(201);
    assert_eq!(
        res.str("expires_at"),
        rfc3339(app.now() + time::Duration::days(180))
    );
}

#[tokio::test]
async fn a_token_past_its_lifetime_is_refused_and_listed_as_expired() {
    let app = TestApp::builder()
        .token_type(
            "personal",
            TokenTypeConfig {
                lifetime: Some(Lifetime(Some(PolicyDuration::from_secs(60)))),
                ..Default::default()
            },
        )
        .start()
        .await;
    let (_, session, id, secret) = app.user_with_token("shortlived@example.com").await;
    assert_eq!(
        app.listed(&session, &id).await["expires_at"],
        rfc3339(app.now() + time::Duration::seconds(60)).as_str()
    );
    app.me(&secret).await.expect(200);
    app.clock.advance(59);
    app.me(&secret).await.expect(200);
    app.clock.advance(2);
    assert_refused(&app.me(&secret).await, "expired");
    assert_eq!(app.listed(&session, &id).await["status"], "expired");

    // An expired token no longer counts against max_active.
    let (_, fresh) = app.personal_token(&session, "next").await;
    app.me(&fresh).await.expect(200);
}

#[tokio::test]
async fn one_personal_token_at_a_time() {
    let app = TestApp::spawn().await;
    let (_, session, _, secret) = app.user_with_token("limit@example.com").await;
    let res = app
        .create_token(&session, json!({ "name": "second", "password": PASSWORD }))
        .await;
    assert_error(&res, 409, "token_limit_reached");
    assert_eq!(app.tokens(&session).await.len(), 1);
    app.me(&secret).await.expect(200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_creates_admit_exactly_max_active() {
    const MAX: usize = 3;
    const RACERS: usize = 20;
    let app = TestApp::builder()
        .token_type(
            "personal",
            TokenTypeConfig {
                max_active: Some(MAX as u32),
                ..Default::default()
            },
        )
        .start()
        .await;
    let (_, session) = app.signed_in("race@example.com").await;

    let mut handles = Vec::new();
    for i in 0..RACERS {
        let client = app.client.clone();
        let url = format!("{}/v1/user/tokens", app.url);
        let session = session.clone();
        handles.push(tokio::spawn(async move {
            let res = client
                .post(url)
                .bearer_auth(session)
                .json(&json!({ "name": format!("racer {i}"), "password": PASSWORD }))
                .send()
                .await
                .unwrap_or_else(|e| panic!("racer {i}: {e}"));
            let status = res.status();
            let body: Value = res.json().await.unwrap_or(Value::Null);
            (status, body)
        }));
    }
    let mut created = 0;
    let mut refused = 0;
    for handle in handles {
        let (status, body) = handle.await.unwrap_or_else(|e| panic!("join: {e}"));
        match status {
            StatusCode::CREATED => created += 1,
            StatusCode::CONFLICT => {
                assert_eq!(body["error"]["code"], "token_limit_reached", "{body}");
                refused += 1;
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!(created, MAX, "exactly max_active creations must win");
    assert_eq!(refused, RACERS - MAX);
    let live: Vec<Value> = app
        .tokens(&session)
        .await
        .into_iter()
        .filter(|t| t["status"] == "active")
        .collect();
    assert_eq!(live.len(), MAX);
}

#[tokio::test]
async fn another_users_token_is_not_found() {
    let app = TestApp::spawn().await;
    let (_, _, id, secret) = app.user_with_token("owner@example.com").await;
    let (_, intruder) = app.signed_in("intruder@example.com").await;
    let not_found = |res: crate::helpers::Resp| assert_error(&res, 404, "not_found");

    not_found(app.get(&format!("/v1/user/tokens/{id}"), &intruder).await);
    not_found(
        app.call(
            Method::PATCH,
            &format!("/v1/user/tokens/{id}"),
            Some(&intruder),
            Some(json!({ "name": "mine" })),
        )
        .await,
    );
    not_found(
        app.post(
            &format!("/v1/user/tokens/{id}/rotate"),
            &intruder,
            json!({ "password": PASSWORD }),
        )
        .await,
    );
    not_found(
        app.post(
            &format!("/v1/user/tokens/{id}/revoke"),
            &intruder,
            json!({ "password": PASSWORD }),
        )
        .await,
    );
    not_found(
        app.post(
            &format!("/v1/user/tokens/{id}/reveal"),
            &intruder,
            json!({ "password": PASSWORD }),
        )
        .await,
    );
    // Ids that do not exist, or are not token ids at all, answer the same.
    not_found(
        app.get("/v1/user/tokens/tok_0000000000000000000000", &intruder)
            .await,
    );
    not_found(
        app.get("/v1/user/tokens/usr_0000000000000000000000", &intruder)
            .await,
    );
    not_found(app.get("/v1/user/tokens/nonsense", &intruder).await);

    // Nothing changed for the owner.
    let me = app.me(&secret).await.expect(200);
    assert_eq!(me.body["token"]["id"], id.as_str());
}

#[tokio::test]
async fn last_use_is_recorded_off_the_request_path() {
    let app = TestApp::spawn().await;
    let (_, session, id, secret) = app.user_with_token("usage@example.com").await;
    app.flush().await;
    let token = app.listed(&session, &id).await;
    assert!(
        token["last_used_at"].is_null() && token["last_used_ip"].is_null(),
        "{token}"
    );

    let first_use = app.now();
    app.me(&secret).await.expect(200);
    app.flush().await;
    let token = app.listed(&session, &id).await;
    assert_eq!(
        token["last_used_at"],
        rfc3339(first_use).as_str(),
        "{token}"
    );
    assert_eq!(token["last_used_ip"], "127.0.0.1", "{token}");

    app.clock.advance(3_600);
    app.me(&secret).await.expect(200);
    app.flush().await;
    assert_eq!(
        app.listed(&session, &id).await["last_used_at"],
        rfc3339(first_use + time::Duration::hours(1)).as_str()
    );
}

#[tokio::test]
async fn a_graceful_stop_writes_the_uses_still_pending() {
    let mut app = TestApp::spawn().await;
    let (_, _, id, secret) = app.user_with_token("stop@example.com").await;
    let used_at = app.now();
    app.me(&secret).await.expect(200);
    app.stop().await;

    // Reopen the same database: the use was written on the way out.
    assert!(app.data_dir().starts_with(app.dir.path()));
    let service = latchkey::app::build_service(&app.config, app.clock.clone())
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    let tokens = service
        .list_tokens(None, None, 10)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let token = tokens
        .iter()
        .find(|t| t.id.to_string() == id)
        .unwrap_or_else(|| panic!("{id} is gone"));
    assert_eq!(token.last_used_at, Some(used_at));
    assert_eq!(token.last_used_ip.as_deref(), Some("127.0.0.1"));
}

#[tokio::test]
async fn rotate_needs_the_password_like_create() {
    let app = TestApp::spawn().await;
    let (_, session, id, secret) = app.user_with_token("rotatepw@example.com").await;
    let url = format!("/v1/user/tokens/{id}/rotate");
    let res = app.post(&url, &session, json!({ "grace": "1h" })).await;
    assert_error(&res, 400, "invalid_request");
    let res = app
        .post(&url, &session, json!({ "password": "not my password" }))
        .await;
    assert_error(&res, 403, "invalid_password");
    // Nothing was rotated by the refused attempts.
    app.me(&secret).await.expect(200);
    assert_eq!(app.listed(&session, &id).await["status"], "active");
    app.post(&url, &session, json!({ "password": PASSWORD }))
        .await
        .expect(201);
}
