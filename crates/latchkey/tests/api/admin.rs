//! The operator API (SPEC 9, docs/IDENTITY.md): `/v1/admin`, for the platform's back office,
//! authenticated by an operator credential, doing what `latchkey user|org|token` do through
//! the same service functions: in force on the very next request, in the audit log with the
//! credential as the actor.

use latchkey_service::Caller;
use latchkey_store::CredentialKind;
use reqwest::Method;
use serde_json::json;

use crate::helpers::{PASSWORD, TestApp, assert_error};

async fn operator_key(app: &TestApp) -> (String, String) {
    let (credential, secret) = app
        .service()
        .create_platform_credential(&Caller::operator(), CredentialKind::Operator, "Back office")
        .await
        .unwrap_or_else(|e| panic!("operator credential: {e}"));
    (credential.id, secret.expose().to_owned())
}

#[tokio::test]
async fn the_back_office_manages_people_organisations_and_tokens_in_force_at_once() {
    let app = TestApp::spawn().await;
    let (key_id, key) = operator_key(&app).await;

    // A person, found by email and by id; no password in any answer.
    let made = app
        .post(
            "/v1/admin/users",
            &key,
            json!({ "email": "ada@example.com", "password": PASSWORD }),
        )
        .await
        .expect(201);
    let ada = made.str("id");
    assert_eq!(made.body["operator"], false);
    assert!(!made.text.contains(PASSWORD));
    let found = app
        .get("/v1/admin/users?email=ADA@example.com", &key)
        .await
        .expect(200);
    assert_eq!(found.str("id"), ada);
    app.get(&format!("/v1/admin/users/{ada}"), &key)
        .await
        .expect(200);

    // An organisation with Ada in it: her token reaches it on the next request.
    let org = app
        .post(
            "/v1/admin/orgs",
            &key,
            json!({ "name": "Acme", "features": ["links"] }),
        )
        .await
        .expect(201)
        .str("id");
    let session = app.login("ada@example.com").await;
    let (token_id, token) = app.personal_token(&session, "laptop").await;
    let members = app
        .post(
            &format!("/v1/admin/orgs/{org}/members"),
            &key,
            json!({ "email": "ada@example.com", "role": "admin" }),
        )
        .await
        .expect(200);
    assert_eq!(members.body[0]["role"], "admin");
    let me = app.me(&token).await.expect(200);
    assert_eq!(me.body["accounts"][0]["id"], json!(org));
    app.call(
        Method::DELETE,
        &format!("/v1/admin/orgs/{org}/members/{ada}"),
        Some(&key),
        None,
    )
    .await
    .expect(204);
    let me = app.me(&token).await.expect(200);
    assert_eq!(me.body["accounts"], json!([]));

    // Tokens listed (never a secret), and one revoked: refused at once.
    let listed = app
        .get(&format!("/v1/admin/tokens?user={ada}"), &key)
        .await
        .expect(200);
    assert_eq!(
        listed.body.as_array().map(Vec::len),
        Some(1),
        "{}",
        listed.text
    );
    assert!(!listed.text.contains(&token));
    app.post(
        &format!("/v1/admin/tokens/{token_id}/revoke"),
        &key,
        json!({}),
    )
    .await
    .expect(200);
    assert_eq!(app.me(&token).await.status.as_u16(), 401);

    // Disabling Ada: her new token is refused at once, her session ends.
    let session = app.login("ada@example.com").await;
    let (_, token) = app.personal_token(&session, "desk").await;
    let res = app
        .call(
            Method::PATCH,
            &format!("/v1/admin/users/{ada}"),
            Some(&key),
            Some(json!({ "disabled": true })),
        )
        .await
        .expect(200);
    assert_eq!(res.body["disabled"], true);
    assert_eq!(app.me(&token).await.status.as_u16(), 401);
    assert_eq!(
        app.get("/v1/user/tokens", &session).await.status.as_u16(),
        401
    );

    // The organisation switched off, then its kill switch.
    let res = app
        .call(
            Method::PATCH,
            &format!("/v1/admin/orgs/{org}"),
            Some(&key),
            Some(json!({ "api_tokens_enabled": false, "remove_features": ["links"] })),
        )
        .await
        .expect(200);
    assert_eq!(res.body["api_tokens_enabled"], false);
    assert_eq!(res.body["features"], json!([]));
    let killed = app
        .post(&format!("/v1/admin/orgs/{org}/revoke-all"), &key, json!({}))
        .await
        .expect(200);
    assert!(killed.body["revoked"].as_u64().is_some(), "{}", killed.text);
    let orgs = app.get("/v1/admin/orgs", &key).await.expect(200);
    assert!(orgs.text.contains(&org));

    // Each change is the credential's in the audit log.
    let events = crate::helpers::all_events(&app).await;
    let actor = format!("operator:{key_id}");
    for action in [
        "user.created",
        "org.created",
        "member.set",
        "member.removed",
        "user.updated",
        "org.updated",
    ] {
        assert!(
            events
                .iter()
                .any(|e| e.action == action && e.actor == actor),
            "no {action} by {actor}: {events:?}"
        );
    }
    for e in &events {
        assert!(
            !format!("{e:?}").contains(&key),
            "the operator credential in {e:?}"
        );
    }
}

#[tokio::test]
async fn only_a_live_operator_credential_opens_the_operator_api() {
    let app = TestApp::spawn().await;
    let (key_id, key) = operator_key(&app).await;
    app.get("/v1/admin/orgs", &key).await.expect(200);

    // No credential, a wrong one, a provisioning credential, a session or an API token (even
    // an operator's): 401 in the API's envelope.
    let (_, provisioning) = app
        .service()
        .create_platform_credential(&Caller::operator(), CredentialKind::Provisioning, "Okta")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    app.service()
        .create_user(
            &Caller::operator(),
            "root@example.com",
            &secrecy::SecretString::from(PASSWORD),
            true,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let root_session = app.login("root@example.com").await;
    let (_, root_token) = app.personal_token(&root_session, "cli").await;
    for bad in [
        None,
        Some("lkop_nope"),
        Some(provisioning.expose()),
        Some(root_session.as_str()),
        Some(root_token.as_str()),
    ] {
        let res = app.call(Method::GET, "/v1/admin/orgs", bad, None).await;
        assert_error(&res, 401, "unauthenticated");
    }
    // An operator credential does not open SCIM either.
    let res = app
        .call(Method::GET, "/scim/v2/Users", Some(&key), None)
        .await;
    assert_eq!(res.status.as_u16(), 401, "{}", res.text);

    // Bad input: the documented 4xx.
    let res = app
        .post("/v1/admin/users", &key, json!({ "email": "x@example.com" }))
        .await;
    assert_error(&res, 400, "invalid_request");
    let res = app
        .post(
            "/v1/admin/users",
            &key,
            json!({ "email": "not-an-email", "password": PASSWORD }),
        )
        .await;
    assert_error(&res, 400, "invalid_request");
    let res = app
        .post(
            "/v1/admin/orgs/org_nope/members",
            &key,
            json!({ "email": "x@example.com", "role": "king" }),
        )
        .await;
    assert_eq!(res.status.as_u16(), 400, "{}", res.text);
    let res = app.get("/v1/admin/users/usr_nope", &key).await;
    assert_error(&res, 404, "not_found");
    let res = app.get("/v1/admin/tokens?user=usr_a&org=org_b", &key).await;
    assert_error(&res, 400, "invalid_request");

    app.service()
        .revoke_platform_credential(&Caller::operator(), CredentialKind::Operator, &key_id)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let res = app.get("/v1/admin/orgs", &key).await;
    assert_error(&res, 401, "unauthenticated");
}
