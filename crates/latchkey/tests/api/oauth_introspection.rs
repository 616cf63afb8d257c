//! `POST /oauth2/introspect` (RFC 7662): for resource servers, authenticated by a client with
//! the `introspect` permission, for every kind of Latchkey token (personal, organisation, OAuth
//! access token), with `accounts` as they are now; anything not live is `{"active": false}`.

use latchkey_core::policy::TokenTypeConfig;
use latchkey_core::{PolicyDuration, Prefix, Role, TokenSecret};
use oauth2::{AccessToken, AuthType, TokenIntrospectionResponse};
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{PASSWORD, Resp, TestApp};
use crate::oauth_helpers::{
    Http, Registered, access_token, assert_oauth_error, basic, cc_client, cc_client_with, form,
    oauth_client, org, spawn, start,
};

/// A server whose `s2s` tokens work at once.
async fn app() -> TestApp {
    start(TestApp::builder().token_type(
        "s2s",
        TokenTypeConfig {
            activation_delay: Some(PolicyDuration::ZERO),
            ..Default::default()
        },
    ))
    .await
}

/// Introspects `token` as `client` (Basic authentication).
async fn introspect(app: &TestApp, client: &Registered, token: &str) -> Resp {
    let body = format!("token={}", urlencode(token));
    form(
        app,
        "/oauth2/introspect",
        Some(&basic(&client.id, &client.secret)),
        Some("application/x-www-form-urlencoded"),
        &body,
    )
    .await
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Asserts an active answer and returns it.
#[track_caller]
fn active(res: Resp) -> Value {
    let res = res.expect(200);
    assert_eq!(res.body["active"], true, "{}", res.text);
    assert_eq!(res.header("cache-control").as_deref(), Some("no-store"));
    res.body
}

/// Asserts the one answer for anything that is not a live token: `{"active": false}` and
/// nothing else (RFC 7662 §2.2).
#[track_caller]
fn inactive(res: Resp) {
    let res = res.expect(200);
    assert_eq!(res.body, json!({ "active": false }), "{}", res.text);
    assert_eq!(res.header("cache-control").as_deref(), Some("no-store"));
}

#[tokio::test]
async fn every_kind_of_token_introspects_with_scope_subject_expiry_and_accounts() {
    let app = app().await;
    let org = org(&app, "Acme", "admin@acme.example").await;
    let resource_server = cc_client_with(&app, &org, "Resource server", true).await;

    // A personal token of a member of the organisation.
    let (user_id, session) = app.signed_in("ada@example.com").await;
    app.add_member(&org.id, "ada@example.com", Role::Member)
        .await;
    let (token_id, personal) = app.personal_token(&session, "laptop").await;
    let body = active(introspect(&app, &resource_server, &personal).await);
    assert_eq!(body["sub"], user_id.as_str());
    assert_eq!(body["scope"], "api");
    assert_eq!(body["jti"], token_id.as_str());
    assert_eq!(body["iss"], app.url.as_str());
    // The OAuth token type (RFC 7662 §2.2 after RFC 6749 §7.1); Latchkey's own type beside it,
    // as `/v1/me` shows it.
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["token"]["type"], "personal");
    assert_eq!(body["token"]["id"], token_id.as_str());
    assert_eq!(body["principal"]["kind"], "user");
    let created = app.now().unix_timestamp();
    assert_eq!(body["iat"], created);
    assert_eq!(body["exp"], created + 180 * 86_400);
    assert_eq!(
        body["accounts"],
        json!([{ "id": org.id, "name": "Acme", "role": "member" }])
    );
    // `accounts` is what the token reaches now, not when it was made.
    app.add_member(&org.id, "ada@example.com", Role::Admin)
        .await;
    let body = active(introspect(&app, &resource_server, &personal).await);
    assert_eq!(body["accounts"][0]["role"], "admin", "{body}");

    // An organisation token (s2s, no lifetime).
    let res = app
        .post(
            &format!("/v1/orgs/{}/tokens", org.id),
            &org.admin,
            json!({ "name": "backend", "type": "s2s" }),
        )
        .await
        .expect(201);
    let (s2s_id, s2s) = (res.str("id"), res.str("secret"));
    let body = active(introspect(&app, &resource_server, &s2s).await);
    assert_eq!(body["sub"], org.id.as_str());
    assert_eq!(body["jti"], s2s_id.as_str());
    assert_eq!(body["scope"], "api");
    assert!(
        body.get("exp").is_none(),
        "an s2s token never expires: {body}"
    );
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["token"]["type"], "s2s");
    assert_eq!(body["principal"]["kind"], "organisation");
    assert_eq!(
        body["accounts"],
        json!([{ "id": org.id, "name": "Acme", "role": "organisation" }])
    );

    // An OAuth access token of another client.
    let partner = cc_client(&app, &org, "Partner").await;
    let jwt = access_token(&app, &partner).await;
    let body = active(introspect(&app, &resource_server, &jwt).await);
    assert_eq!(body["sub"], partner.id.as_str());
    assert_eq!(body["client_id"], partner.id.as_str());
    assert_eq!(body["scope"], "api reports:read");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["token"]["type"], "access_token");
    assert_eq!(body["principal"]["kind"], "client");
    assert_eq!(body["iss"], app.url.as_str());
    assert_eq!(body["aud"], app.url.as_str());
    assert_eq!(body["exp"], app.now().unix_timestamp() + 900);
    assert_eq!(
        body["accounts"],
        json!([{ "id": org.id, "name": "Acme", "role": "organisation" }])
    );
}

#[tokio::test]
async fn the_oauth2_crate_introspects_with_either_authentication_method() {
    let app = spawn().await;
    let org = org(&app, "Acme", "admin@acme.example").await;
    let resource_server = cc_client_with(&app, &org, "Resource server", true).await;
    let partner = cc_client(&app, &org, "Partner").await;
    let jwt = access_token(&app, &partner).await;

    for auth in [AuthType::BasicAuth, AuthType::RequestBody] {
        let oauth = oauth_client(&app, &resource_server.id, &resource_server.secret, auth);
        let token = AccessToken::new(jwt.clone());
        let answer = oauth
            .introspect(&token)
            .request_async(&Http::new())
            .await
            .unwrap_or_else(|e| panic!("introspection failed: {e:?}"));
        assert!(answer.active());
        assert_eq!(answer.sub(), Some(partner.id.as_str()));
        assert_eq!(
            answer.client_id().map(|c| c.as_str()),
            Some(partner.id.as_str())
        );
        let scopes: Vec<String> = answer
            .scopes()
            .map(|s| s.iter().map(|s| s.to_string()).collect())
            .unwrap_or_default();
        assert_eq!(scopes, ["api", "reports:read"]);
        let exp = answer.exp().expect("exp").timestamp();
        assert_eq!(exp, app.now().unix_timestamp() + 900);
        assert_eq!(answer.iss(), Some(app.url.as_str()));

        let garbage = AccessToken::new("garbage".to_owned());
        let answer = oauth
            .introspect(&garbage)
            .request_async(&Http::new())
            .await
            .unwrap();
        assert!(!answer.active());
    }
}

#[tokio::test]
async fn anything_not_live_is_just_inactive() {
    let app = app().await;
    let org = org(&app, "Acme", "admin@acme.example").await;
    let rs = cc_client_with(&app, &org, "Resource server", true).await;
    let partner = cc_client(&app, &org, "Partner").await;

    let (_, session) = app.signed_in("ada@example.com").await;
    let (personal_id, personal) = app.personal_token(&session, "laptop").await;
    let jwt = access_token(&app, &partner).await;
    active(introspect(&app, &rs, &personal).await);
    active(introspect(&app, &rs, &jwt).await);

    // Garbage, a bad checksum, a well-formed token never issued, a forged JWT, a session.
    let mut bad_checksum = personal.clone();
    let last = bad_checksum.pop().unwrap();
    bad_checksum.push(if last == 'A' { 'B' } else { 'A' });
    let never_issued = TokenSecret::generate(&Prefix::parse("lkp").unwrap(), [9; 32])
        .expose()
        .to_owned();
    let mut forged = jwt.clone();
    let last = forged.pop().unwrap();
    forged.push(if last == 'A' { 'B' } else { 'A' });
    for token in [
        "garbage",
        "x",
        &bad_checksum,
        &never_issued,
        &forged,
        "eyJhbGciOiJub25lIiwidHlwIjoiYXQrand0In0.eyJzdWIiOiJ4In0.",
        &session,
        &rs.secret,
    ] {
        inactive(introspect(&app, &rs, token).await);
    }

    // Revoked: the personal token by its owner.
    app.post(
        &format!("/v1/user/tokens/{personal_id}/revoke"),
        &session,
        json!({ "password": PASSWORD }),
    )
    .await
    .expect(200);
    inactive(introspect(&app, &rs, &personal).await);

    // Expired: the access token after its 900 s (the resource server itself lives on).
    app.clock.advance(901);
    inactive(introspect(&app, &rs, &jwt).await);

    // A token of a switched-off organisation.
    let res = app
        .post(
            &format!("/v1/orgs/{}/tokens", org.id),
            &org.admin,
            json!({ "name": "backend", "type": "s2s" }),
        )
        .await
        .expect(201);
    let s2s = res.str("secret");
    active(introspect(&app, &rs, &s2s).await);
    let other_org = self::org(&app, "Other", "admin@other.example").await;
    let other_rs = cc_client_with(&app, &other_org, "Other RS", true).await;
    app.service()
        .update_org(
            &latchkey_service::Caller::operator(),
            &org.id,
            &[],
            &[],
            Some(false),
        )
        .await
        .unwrap();
    inactive(introspect(&app, &other_rs, &s2s).await);
}

#[tokio::test]
async fn only_clients_with_the_introspect_permission_may_introspect() {
    let app = spawn().await;
    let org = org(&app, "Acme", "admin@acme.example").await;
    let partner = cc_client(&app, &org, "Partner").await;
    let jwt = access_token(&app, &partner).await;

    // A client without the permission, by Basic and by form fields.
    let res = introspect(&app, &partner, &jwt).await;
    assert_oauth_error(&res, 401, "invalid_client");
    assert!(
        res.header("www-authenticate")
            .is_some_and(|c| c.starts_with("Basic"))
    );
    let res = form(
        &app,
        "/oauth2/introspect",
        None,
        Some("application/x-www-form-urlencoded"),
        &format!(
            "token={jwt}&client_id={}&client_secret={}",
            partner.id, partner.secret
        ),
    )
    .await;
    assert_oauth_error(&res, 401, "invalid_client");
    assert!(res.header("www-authenticate").is_none());

    // No client authentication, a wrong secret.
    let res = form(
        &app,
        "/oauth2/introspect",
        None,
        Some("application/x-www-form-urlencoded"),
        &format!("token={jwt}"),
    )
    .await;
    assert_oauth_error(&res, 401, "invalid_client");
    let rs = cc_client_with(&app, &org, "Resource server", true).await;
    let wrong = Registered {
        id: rs.id.clone(),
        secret: partner.secret.clone(),
    };
    assert_oauth_error(&introspect(&app, &wrong, &jwt).await, 401, "invalid_client");

    // An admin cannot give the permission (an operator does, SPEC 3) ...
    let res = app
        .call(
            Method::PATCH,
            &org.client(&partner.id),
            Some(&org.admin),
            Some(json!({ "introspect": true })),
        )
        .await;
    crate::helpers::assert_error(&res, 403, "forbidden");
    assert_oauth_error(
        &introspect(&app, &partner, &jwt).await,
        401,
        "invalid_client",
    );
    // ... but may take it away, and then the client can no longer introspect, at once.
    active(introspect(&app, &rs, &jwt).await);
    app.call(
        Method::PATCH,
        &org.client(&rs.id),
        Some(&org.admin),
        Some(json!({ "introspect": false })),
    )
    .await
    .expect(200);
    assert_oauth_error(&introspect(&app, &rs, &jwt).await, 401, "invalid_client");
    let rs = cc_client_with(&app, &org, "Resource server 2", true).await;

    // A request without `token`, or with a JSON body.
    let res = form(
        &app,
        "/oauth2/introspect",
        Some(&basic(&rs.id, &rs.secret)),
        Some("application/x-www-form-urlencoded"),
        "token_type_hint=access_token",
    )
    .await;
    assert_oauth_error(&res, 400, "invalid_request");
    let res = form(
        &app,
        "/oauth2/introspect",
        Some(&basic(&rs.id, &rs.secret)),
        Some("application/json"),
        &json!({ "token": jwt }).to_string(),
    )
    .await;
    assert_oauth_error(&res, 400, "invalid_request");
    let res = form(
        &app,
        "/oauth2/introspect",
        Some(&basic(&rs.id, &rs.secret)),
        Some("application/x-www-form-urlencoded"),
        &format!("token={jwt}&token={jwt}"),
    )
    .await;
    assert_oauth_error(&res, 400, "invalid_request");
}
