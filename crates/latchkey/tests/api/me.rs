//! `GET /v1/me`: the bearer-protected resource (SPEC 2.3, 2.4, 4): what a token reaches, how it
//! is refused, and that every change is obeyed on the very next request.

use latchkey_core::policy::{OwnerKind, TokenTypeConfig};
use latchkey_core::{PolicyDuration, Prefix, Role, TokenSecret};
use latchkey_service::Caller;
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{PASSWORD, TestApp, assert_error, assert_refused, rfc3339};

/// The accounts of a `/v1/me` answer, sorted by name.
fn accounts(body: &Value) -> Value {
    let mut list = body["accounts"]
        .as_array()
        .cloned()
        .unwrap_or_else(|| panic!("no accounts in {body}"));
    list.sort_by_key(|a| a["name"].as_str().map(str::to_owned));
    Value::Array(list)
}

#[tokio::test]
async fn me_describes_the_user_their_token_and_their_organisations() {
    let app = TestApp::spawn().await;
    let (user, session, id, secret) = app.user_with_token("me@example.com").await;
    let org = app.org("Acme Ads").await;
    app.add_member(&org, "me@example.com", Role::Member).await;
    let expires_at = app.listed(&session, &id).await["expires_at"].clone();

    let res = app.me(&secret).await.expect(200);
    assert_eq!(
        res.body,
        json!({
            "principal": { "kind": "user", "id": user, "email": "me@example.com" },
            "token": { "id": id, "type": "personal", "expires_at": expires_at },
            "accounts": [{ "id": org, "name": "Acme Ads", "role": "member" }],
            "scopes": ["api"],
        })
    );
    assert!(
        res.header("content-type")
            .unwrap_or_default()
            .starts_with("application/json")
    );
    // A 180-day token is far from expiry: no hint header.
    assert_eq!(res.header("latchkey-token-expires"), None);
    assert!(!res.text.contains(&secret));
}

#[tokio::test]
async fn no_credentials_get_a_bearer_challenge() {
    let app = TestApp::spawn().await;
    let res = app.call(Method::GET, "/v1/me", None, None).await;
    assert_error(&res, 401, "unauthenticated");
    let challenge = res.header("www-authenticate").unwrap_or_default();
    assert!(challenge.starts_with("Bearer realm="), "{challenge}");

    // Another scheme, or an empty bearer, is no credential either.
    for value in [
        "Basic dXNlcjpwYXNz",
        "Bearer",
        "Bearer    ",
        "Token abc",
        "bearer",
    ] {
        let res = app
            .raw(
                Method::GET,
                "/v1/me",
                &[("authorization", value.as_bytes().to_vec())],
                None,
            )
            .await;
        assert_error(&res, 401, "unauthenticated");
        assert!(
            res.header("www-authenticate")
                .unwrap_or_default()
                .starts_with("Bearer realm="),
            "{value}"
        );
    }
}

#[tokio::test]
async fn bad_tokens_are_refused_with_the_reason() {
    let app = TestApp::spawn().await;
    let (_, session, _, secret) = app.user_with_token("bad@example.com").await;

    for malformed in [
        "hello",
        "lkp_short",
        "lkp_",
        "_abc",
        format!("{secret}x").as_str(),
        &secret[..secret.len() - 1],
        format!("lkp_{}", "!".repeat(49)).as_str(),
        format!("lkp_{}", "z".repeat(49)).as_str(),
    ] {
        assert_refused(&app.me(malformed).await, "malformed");
    }

    // One character changed: the checksum catches it before any look-up.
    let mut wrong = secret.clone().into_bytes();
    let last = wrong.len() - 1;
    wrong[last] = if wrong[last] == b'A' { b'B' } else { b'A' };
    let wrong = String::from_utf8(wrong).unwrap_or_else(|e| panic!("{e}"));
    assert_refused(&app.me(&wrong).await, "malformed");
    let mut middle = secret.clone().into_bytes();
    middle[10] = if middle[10] == b'a' { b'b' } else { b'a' };
    let middle = String::from_utf8(middle).unwrap_or_else(|e| panic!("{e}"));
    assert_refused(&app.me(&middle).await, "malformed");

    // Well-formed, with a valid checksum, but never issued.
    let prefix = Prefix::parse("lkp").unwrap_or_else(|e| panic!("{e}"));
    let unknown = TokenSecret::generate(&prefix, [7; 32]);
    assert_refused(&app.me(unknown.expose()).await, "unknown");
    // Well-formed with a prefix no type uses.
    let other = TokenSecret::generate(
        &Prefix::parse("lkzz").unwrap_or_else(|e| panic!("{e}")),
        [7; 32],
    );
    assert_refused(&app.me(other.expose()).await, "unknown");
    // A session token is not an API token.
    assert_refused(&app.me(&session).await, "unknown");

    // The real one still works.
    app.me(&secret).await.expect(200);
}

#[tokio::test]
async fn the_scheme_is_case_insensitive() {
    let app = TestApp::spawn().await;
    let (_, _, _, secret) = app.user_with_token("scheme@example.com").await;
    for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
        let value = format!("{scheme} {secret}");
        app.raw(
            Method::GET,
            "/v1/me",
            &[("authorization", value.into_bytes())],
            None,
        )
        .await
        .expect(200);
    }
}

#[tokio::test]
async fn a_token_in_the_query_string_is_not_accepted() {
    let app = TestApp::spawn().await;
    let (_, _, _, secret) = app.user_with_token("query@example.com").await;
    for param in ["access_token", "token", "bearer"] {
        let res = app
            .call(Method::GET, &format!("/v1/me?{param}={secret}"), None, None)
            .await;
        assert_error(&res, 401, "unauthenticated");
    }
}

#[tokio::test]
async fn membership_changes_are_seen_on_the_very_next_request() {
    let app = TestApp::spawn().await;
    let (_, _, _, secret) = app.user_with_token("member@example.com").await;
    let operator = Caller::operator();
    let acme = app.org("Acme Ads").await;
    let bolt = app.org("Bolt Publishing").await;

    // Warm the cache first: every change below must get through it.
    assert_eq!(accounts(&app.me(&secret).await.expect(200).body), json!([]));

    app.add_member(&acme, "member@example.com", Role::Member)
        .await;
    assert_eq!(
        accounts(&app.me(&secret).await.expect(200).body),
        json!([{ "id": acme, "name": "Acme Ads", "role": "member" }])
    );

    app.add_member(&acme, "member@example.com", Role::Admin)
        .await;
    app.add_member(&bolt, "member@example.com", Role::Partner)
        .await;
    assert_eq!(
        accounts(&app.me(&secret).await.expect(200).body),
        json!([
            { "id": acme, "name": "Acme Ads", "role": "admin" },
            { "id": bolt, "name": "Bolt Publishing", "role": "partner" },
        ])
    );

    app.service()
        .remove_member(&operator, &acme, "member@example.com")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        accounts(&app.me(&secret).await.expect(200).body),
        json!([{ "id": bolt, "name": "Bolt Publishing", "role": "partner" }])
    );

    // An organisation with its API tokens switched off is not reached.
    app.service()
        .update_org(&operator, &bolt, &[], &[], Some(false))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(accounts(&app.me(&secret).await.expect(200).body), json!([]));
    app.service()
        .update_org(&operator, &bolt, &[], &[], Some(true))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        accounts(&app.me(&secret).await.expect(200).body),
        json!([{ "id": bolt, "name": "Bolt Publishing", "role": "partner" }])
    );
}

#[tokio::test]
async fn switching_a_users_tokens_off_refuses_them_on_the_next_request() {
    let app = TestApp::spawn().await;
    let (_, _, _, secret) = app.user_with_token("switch@example.com").await;
    let operator = Caller::operator();
    app.me(&secret).await.expect(200);

    app.service()
        .update_user(&operator, "switch@example.com", None, Some(false))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_refused(&app.me(&secret).await, "disabled");

    app.service()
        .update_user(&operator, "switch@example.com", None, Some(true))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    app.me(&secret).await.expect(200);
}

#[tokio::test]
async fn disabling_a_user_refuses_their_tokens_on_the_next_request() {
    let app = TestApp::spawn().await;
    let (_, _, _, secret) = app.user_with_token("disable@example.com").await;
    app.me(&secret).await.expect(200);
    app.service()
        .update_user(&Caller::operator(), "disable@example.com", Some(true), None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_refused(&app.me(&secret).await, "disabled");
}

#[tokio::test]
async fn tokens_close_to_expiry_carry_a_hint_header() {
    let app = TestApp::spawn().await;
    let (_, session) = app.signed_in("soon@example.com").await;
    let res = app
        .create_token(
            &session,
            json!({ "name": "short", "password": PASSWORD, "expires_in_days": 10 }),
        )
        .await
        .expect(201);
    let secret = res.str("secret");
    let expires_at = res.str("expires_at");
    assert_eq!(expires_at, rfc3339(app.now() + time::Duration::days(10)));
    let me = app.me(&secret).await.expect(200);
    assert_eq!(me.header("latchkey-token-expires"), Some(expires_at));

    // 180 days: no header, until the last 30 days.
    let (_, long_session) = app.signed_in("later@example.com").await;
    let (_, long) = app.personal_token(&long_session, "long").await;
    assert_eq!(
        app.me(&long)
            .await
            .expect(200)
            .header("latchkey-token-expires"),
        None
    );
    app.clock.advance(150 * 86_400 + 1);
    assert!(
        app.me(&long)
            .await
            .expect(200)
            .header("latchkey-token-expires")
            .is_some()
    );
}

#[tokio::test]
async fn a_pending_token_says_when_it_becomes_active() {
    let ci = TokenTypeConfig {
        owner: Some(OwnerKind::User),
        prefix: Some("lkci".into()),
        activation_delay: Some(PolicyDuration::from_secs(600)),
        ..Default::default()
    };
    let app = TestApp::builder().token_type("ci", ci).start().await;
    let (_, session) = app.signed_in("pending@example.com").await;
    let res = app
        .create_token(
            &session,
            json!({ "name": "runner", "type": "ci", "password": PASSWORD }),
        )
        .await
        .expect(201);
    let secret = res.str("secret");
    let id = res.str("id");
    assert!(
        secret.starts_with("lkci_") && secret.len() == 5 + 43 + 6,
        "{secret}"
    );
    assert_eq!(res.str("type"), "ci");
    assert_eq!(res.str("status"), "pending");
    let active_from = rfc3339(app.now() + time::Duration::minutes(10));
    assert_eq!(res.str("active_from"), active_from);

    let description = assert_refused(&app.me(&secret).await, "pending");
    assert!(description.contains(&active_from), "{description}");

    app.clock.advance(599);
    assert_refused(&app.me(&secret).await, "pending");
    assert_eq!(app.listed(&session, &id).await["status"], "pending");
    app.clock.advance(1);
    let me = app.me(&secret).await.expect(200);
    assert_eq!(me.body["token"]["type"], "ci");
    assert_eq!(app.listed(&session, &id).await["status"], "active");
}
