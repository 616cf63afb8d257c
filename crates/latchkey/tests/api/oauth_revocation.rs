//! `POST /oauth2/revoke` (RFC 7009): a client revokes its own access tokens, which `/v1/me` and
//! introspection refuse from the next request on; unknown tokens and other clients' tokens get
//! the same `200` and are left alone.

use oauth2::basic::BasicRevocationErrorResponse;
use oauth2::{AccessToken, AuthType, RequestTokenError, StandardRevocableToken};
use serde_json::json;

use crate::helpers::{TestApp, assert_refused};
use crate::oauth_helpers::{
    Http, Registered, access_token, assert_oauth_error, basic, cc_client, cc_client_with, form,
    oauth_client, org, spawn,
};

/// `POST /oauth2/revoke` with this form body, as `client` by Basic authentication.
async fn revoke(app: &TestApp, client: &Registered, body: &str) -> crate::helpers::Resp {
    form(
        app,
        "/oauth2/revoke",
        Some(&basic(&client.id, &client.secret)),
        Some("application/x-www-form-urlencoded"),
        body,
    )
    .await
}

async fn introspect(app: &TestApp, rs: &Registered, token: &str) -> serde_json::Value {
    let res = form(
        app,
        "/oauth2/introspect",
        Some(&basic(&rs.id, &rs.secret)),
        Some("application/x-www-form-urlencoded"),
        &format!("token={token}"),
    )
    .await
    .expect(200);
    res.body
}

#[tokio::test]
async fn the_oauth2_crate_revokes_an_access_token_which_is_refused_at_once() {
    let app = spawn().await;
    let org = org(&app, "Acme", "admin@acme.example").await;
    let rs = cc_client_with(&app, &org, "Resource server", true).await;
    let partner = cc_client(&app, &org, "Partner").await;

    for auth in [AuthType::BasicAuth, AuthType::RequestBody] {
        let revoked = access_token(&app, &partner).await;
        let kept = access_token(&app, &partner).await;
        // Used, hence cached.
        app.me(&revoked).await.expect(200);
        app.me(&kept).await.expect(200);
        assert_eq!(introspect(&app, &rs, &revoked).await["active"], true);

        let oauth = oauth_client(&app, &partner.id, &partner.secret, auth.clone());
        let token = StandardRevocableToken::AccessToken(AccessToken::new(revoked.clone()));
        oauth
            .revoke_token(token)
            .unwrap()
            .request_async(&Http::new())
            .await
            .unwrap_or_else(|e| panic!("{auth:?}: {e:?}"));

        assert_refused(&app.me(&revoked).await, "revoked");
        assert_eq!(
            introspect(&app, &rs, &revoked).await,
            json!({ "active": false })
        );
        // Only that one: the client's other tokens and the client itself carry on.
        app.me(&kept).await.expect(200);
        assert_eq!(introspect(&app, &rs, &kept).await["active"], true);
        // Revoking it again is fine.
        revoke(&app, &partner, &format!("token={revoked}"))
            .await
            .expect(200);
    }
    access_token(&app, &partner).await;

    // It stays refused until it would have expired anyway.
    let revoked = access_token(&app, &partner).await;
    revoke(&app, &partner, &format!("token={revoked}"))
        .await
        .expect(200);
    app.clock.advance(600);
    assert_refused(&app.me(&revoked).await, "revoked");

    // The audit log says who revoked what.
    let events = app
        .get(&format!("/v1/orgs/{}/events", org.id), &org.admin)
        .await
        .expect(200);
    let revocations: Vec<_> = events
        .body
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "access_token.revoked")
        .collect();
    let mut jtis: Vec<&str> = revocations
        .iter()
        .filter_map(|e| e["details"]["jti"].as_str())
        .collect();
    jtis.sort_unstable();
    jtis.dedup();
    assert_eq!(jtis.len(), 3, "three tokens revoked: {}", events.text);
    assert!(
        revocations
            .iter()
            .all(|e| e["subject"]["id"] == partner.id.as_str()),
        "{}",
        events.text
    );
    assert!(!events.text.contains(&revoked), "a token in the audit log");
}

#[tokio::test]
async fn unknown_and_foreign_tokens_answer_200_and_stay_as_they_were() {
    let app = spawn().await;
    let org = org(&app, "Acme", "admin@acme.example").await;
    let partner = cc_client(&app, &org, "Partner").await;
    let other = cc_client(&app, &org, "Other partner").await;

    // Unknown tokens (RFC 7009 §2.2: "invalid tokens do not cause an error response").
    for body in [
        "token=garbage",
        "token=eyJhbGciOiJFUzI1NiJ9.e30.c2ln",
        "token=lkp_notatoken&token_type_hint=refresh_token",
        "token=x&token_type_hint=something_else",
    ] {
        let res = revoke(&app, &partner, body).await.expect(200);
        assert_eq!(res.header("cache-control").as_deref(), Some("no-store"));
    }

    // Another client's token is not this client's to revoke.
    let theirs = access_token(&app, &other).await;
    revoke(&app, &partner, &format!("token={theirs}"))
        .await
        .expect(200);
    app.me(&theirs).await.expect(200);

    // Nor is a personal token (this endpoint revokes OAuth tokens only).
    let (_, _, _, personal) = app.user_with_token("ada@example.com").await;
    revoke(&app, &partner, &format!("token={personal}"))
        .await
        .expect(200);
    app.me(&personal).await.expect(200);

    // A hint that does not match is only a hint.
    let mine = access_token(&app, &partner).await;
    revoke(
        &app,
        &partner,
        &format!("token={mine}&token_type_hint=refresh_token"),
    )
    .await
    .expect(200);
    assert_refused(&app.me(&mine).await, "revoked");
}

#[tokio::test]
async fn revocation_needs_an_authenticated_client_and_a_token() {
    let app = spawn().await;
    let org = org(&app, "Acme", "admin@acme.example").await;
    let partner = cc_client(&app, &org, "Partner").await;
    let other = cc_client(&app, &org, "Other").await;
    let jwt = access_token(&app, &partner).await;

    let res = form(
        &app,
        "/oauth2/revoke",
        None,
        Some("application/x-www-form-urlencoded"),
        &format!("token={jwt}"),
    )
    .await;
    assert_oauth_error(&res, 401, "invalid_client");
    let wrong = Registered {
        id: partner.id.clone(),
        secret: other.secret.clone(),
    };
    let res = revoke(&app, &wrong, &format!("token={jwt}")).await;
    assert_oauth_error(&res, 401, "invalid_client");
    assert!(
        res.header("www-authenticate")
            .is_some_and(|c| c.starts_with("Basic"))
    );
    // Through the third-party client: the error is RFC 6749's.
    let oauth = oauth_client(&app, &partner.id, &other.secret, AuthType::RequestBody);
    let token = StandardRevocableToken::AccessToken(AccessToken::new(jwt.clone()));
    let err = oauth
        .revoke_token(token)
        .unwrap()
        .request_async(&Http::new())
        .await
        .expect_err("a wrong secret cannot revoke");
    match err {
        RequestTokenError::ServerResponse(e) => {
            let e: BasicRevocationErrorResponse = e;
            assert_eq!(e.error().to_string(), "invalid_client");
        }
        other => panic!("{other:?}"),
    }
    app.me(&jwt).await.expect(200);

    // Without `token`; with two; as JSON.
    assert_oauth_error(
        &revoke(&app, &partner, "token_type_hint=access_token").await,
        400,
        "invalid_request",
    );
    assert_oauth_error(
        &revoke(&app, &partner, &format!("token={jwt}&token={jwt}")).await,
        400,
        "invalid_request",
    );
    let res = form(
        &app,
        "/oauth2/revoke",
        Some(&basic(&partner.id, &partner.secret)),
        Some("application/json"),
        &json!({ "token": jwt }).to_string(),
    )
    .await;
    assert_oauth_error(&res, 400, "invalid_request");
    app.me(&jwt).await.expect(200);
}

/// Issue 9, item 20: `200` with `application/json` and `{}` (simple-oauth2 and others cannot
/// read an answer without a content type), for a known token and an unknown one alike.
#[tokio::test]
async fn revocation_answers_an_empty_json_object() {
    let app = spawn().await;
    let org = org(&app, "Acme", "admin@acme.example").await;
    let client = cc_client(&app, &org, "Partner").await;
    let token = access_token(&app, &client).await;
    for body in [format!("token={token}"), "token=unknown".to_owned()] {
        let res = revoke(&app, &client, &body).await.expect(200);
        assert!(
            res.header("content-type")
                .is_some_and(|c| c.starts_with("application/json")),
            "{:?}",
            res.header("content-type")
        );
        assert_eq!(res.body, json!({}), "{}", res.text);
    }
}
