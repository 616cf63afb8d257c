//! `POST /oauth2/token` with the client credentials grant (SPEC 3, RFC 6749 §4.4), driven by a
//! real third-party client (the `oauth2` crate) and by raw requests for every applicable error
//! row of RFC 6749 §5.2; the RFC 9068 access tokens it issues, verified offline with the JWKS
//! and by `/v1/me`, until they expire or their client or organisation goes away.

use latchkey_core::{Prefix, TokenSecret};
use latchkey_service::Caller;
use oauth2::basic::{BasicErrorResponseType, BasicTokenType};
use oauth2::{AuthType, TokenResponse};
use reqwest::Method;
use serde_json::json;

use crate::helpers::{Resp, assert_refused};
use crate::oauth_helpers::{
    access_token, assert_oauth_error, basic, cc_client, client_credentials, create_client, form,
    oauth_client, org, server_error, spawn, token_form, verify_offline,
};

const CC: &str = "grant_type=client_credentials";

#[tokio::test]
async fn the_oauth2_crate_gets_tokens_with_basic_and_form_authentication_that_me_accepts() {
    let app = spawn().await;
    let org = org(&app, "Acme", "admin@acme.example").await;
    let client = cc_client(&app, &org, "Reporting partner").await;

    for auth in [AuthType::BasicAuth, AuthType::RequestBody] {
        let oauth = oauth_client(&app, &client.id, &client.secret, auth.clone());
        let token = client_credentials(&oauth, &["api"])
            .await
            .unwrap_or_else(|e| panic!("{auth:?}: {e:?}"));
        assert_eq!(*token.token_type(), BasicTokenType::Bearer);
        assert_eq!(
            token.expires_in(),
            Some(std::time::Duration::from_secs(900))
        );
        let scopes: Vec<&str> = token
            .scopes()
            .map(|s| s.iter().map(|s| s.as_str()).collect())
            .unwrap_or_default();
        assert_eq!(scopes, ["api"], "{auth:?}");
        assert!(token.refresh_token().is_none(), "no refresh token here");

        let jwt = token.access_token().secret();
        let me = app.me(jwt).await.expect(200);
        assert_eq!(me.body["principal"]["kind"], "client", "{}", me.text);
        assert_eq!(me.body["principal"]["id"], client.id.as_str());
        assert_eq!(me.body["principal"]["organisation"], org.id.as_str());
        assert_eq!(me.body["token"]["type"], "access_token");
        assert_eq!(
            me.body["accounts"],
            json!([{ "id": org.id, "name": "Acme", "role": "organisation" }])
        );
        assert_eq!(me.body["scopes"], json!(["api"]));
    }

    // Without `scope`, the token gets every scope the client is allowed.
    let oauth = oauth_client(&app, &client.id, &client.secret, AuthType::BasicAuth);
    let token = client_credentials(&oauth, &[]).await.unwrap();
    let me = app.me(token.access_token().secret()).await.expect(200);
    assert_eq!(me.body["scopes"], json!(["api", "reports:read"]));
}

#[tokio::test]
async fn an_access_token_is_an_rfc_9068_jwt_that_verifies_offline_with_the_jwks() {
    let app = spawn().await;
    let org = org(&app, "Acme", "admin@acme.example").await;
    let client = cc_client(&app, &org, "Partner").await;
    let oauth = oauth_client(&app, &client.id, &client.secret, AuthType::RequestBody);
    let token = client_credentials(&oauth, &["api", "reports:read"])
        .await
        .unwrap();
    let jwt = token.access_token().secret();

    let (header, claims) = verify_offline(&app, jwt).await;
    assert_eq!(header.typ.as_deref(), Some("at+jwt"));
    assert_eq!(header.alg, jsonwebtoken::Algorithm::ES256);
    assert!(header.jku.is_none() && header.jwk.is_none() && header.x5u.is_none());
    let now = app.now().unix_timestamp();
    assert_eq!(claims["iss"], app.url.as_str());
    assert_eq!(claims["aud"], app.url.as_str());
    assert_eq!(claims["sub"], client.id.as_str());
    assert_eq!(claims["client_id"], client.id.as_str());
    assert_eq!(claims["iat"], now);
    assert_eq!(claims["exp"], now + 900);
    assert_eq!(claims["scope"], "api reports:read");
    let jti = claims["jti"].as_str().expect("a jti");
    assert!(jti.len() >= 16, "{jti}");
    // The subject of a client can never be taken for a user's.
    assert!(
        claims["sub"]
            .as_str()
            .is_some_and(|s| s.starts_with("cli_"))
    );

    // Any number may be live at once: each has its own id and each works.
    let mut jtis = vec![jti.to_owned()];
    let mut jwts = vec![jwt.clone()];
    for _ in 0..4 {
        let jwt = access_token(&app, &client).await;
        let (_, claims) = verify_offline(&app, &jwt).await;
        jtis.push(claims["jti"].as_str().unwrap().to_owned());
        jwts.push(jwt);
    }
    jtis.sort();
    jtis.dedup();
    assert_eq!(jtis.len(), 5, "every access token has its own jti");
    for jwt in &jwts {
        app.me(jwt).await.expect(200);
    }

    // A token whose claims were changed no longer matches its signature.
    let parts: Vec<&str> = jwt.split('.').collect();
    let payload =
        base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, parts[1])
            .unwrap();
    let payload = String::from_utf8(payload)
        .unwrap()
        .replace("\"api reports:read\"", "\"api reports:read admin\"");
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, payload),
        parts[2]
    );
    assert_refused(&app.me(&forged).await, "malformed");
}

#[tokio::test]
async fn the_token_response_is_rfc_6749_json_and_never_cached() {
    let app = spawn().await;
    let org = org(&app, "Acme", "admin@acme.example").await;
    let client = cc_client(&app, &org, "Partner").await;

    let by_basic = token_form(&app, Some(&basic(&client.id, &client.secret)), CC).await;
    let by_form = token_form(
        &app,
        None,
        &format!(
            "grant_type=client_credentials&client_id={}&client_secret={}&scope=reports%3Aread",
            client.id, client.secret
        ),
    )
    .await;
    for res in [by_basic, by_form] {
        let res = res.expect(200);
        assert_eq!(res.header("cache-control").as_deref(), Some("no-store"));
        assert_eq!(res.header("pragma").as_deref(), Some("no-cache"));
        assert!(
            res.header("content-type")
                .is_some_and(|c| c.starts_with("application/json"))
        );
        assert_eq!(res.body["token_type"], "Bearer");
        assert_eq!(res.body["expires_in"], 900);
        assert!(res.body["access_token"].is_string());
        assert!(res.body.get("refresh_token").is_none(), "{}", res.text);
    }

    // A charset parameter on the content type is fine; the form's client_id may repeat the
    // Basic one; an empty parameter counts as absent.
    let res = form(
        &app,
        "/oauth2/token",
        Some(&basic(&client.id, &client.secret)),
        Some("application/x-www-form-urlencoded; charset=UTF-8"),
        &format!(
            "grant_type=client_credentials&client_id={}&scope=",
            client.id
        ),
    )
    .await
    .expect(200);
    assert_eq!(res.body["scope"], "api reports:read");
}

#[tokio::test]
async fn malformed_requests_are_invalid_request() {
    let app = spawn().await;
    let org = org(&app, "Acme", "admin@acme.example").await;
    let client = cc_client(&app, &org, "Partner").await;
    let auth = basic(&client.id, &client.secret);

    // No grant_type (or an empty one).
    for body in ["", "scope=api", "grant_type="] {
        let res = token_form(&app, Some(&auth), body).await;
        assert_oauth_error(&res, 400, "invalid_request");
    }

    // Repeated parameters (RFC 6749 §3.2), whatever the values.
    for body in [
        "grant_type=client_credentials&grant_type=client_credentials",
        "grant_type=client_credentials&scope=api&scope=api",
        "grant_type=client_credentials&scope=api&scope=reports%3Aread",
    ] {
        let res = token_form(&app, Some(&auth), body).await;
        assert_oauth_error(&res, 400, "invalid_request");
    }
    let repeated_client = format!(
        "grant_type=client_credentials&client_id={0}&client_id={0}&client_secret={1}",
        client.id, client.secret
    );
    assert_oauth_error(
        &token_form(&app, None, &repeated_client).await,
        400,
        "invalid_request",
    );

    // Only application/x-www-form-urlencoded: JSON, text or no content type at all is refused.
    let json_body = json!({ "grant_type": "client_credentials" }).to_string();
    for content_type in [
        Some("application/json"),
        Some("text/plain"),
        Some("multipart/form-data; boundary=x"),
        None,
    ] {
        let res = form(&app, "/oauth2/token", Some(&auth), content_type, CC).await;
        assert_oauth_error(&res, 400, "invalid_request");
        let res = form(&app, "/oauth2/token", Some(&auth), content_type, &json_body).await;
        assert_oauth_error(&res, 400, "invalid_request");
    }

    // Bytes that are not form encoding.
    assert_oauth_error(
        &token_form(&app, Some(&auth), "grant_type=client_credentials&scope=%zz").await,
        400,
        "invalid_request",
    );
    // A body over the 64 KiB the OAuth endpoints take.
    let big = format!("{CC}&pad={}", "a".repeat(70 * 1024));
    assert_oauth_error(
        &token_form(&app, Some(&auth), &big).await,
        400,
        "invalid_request",
    );
    // And over the 256 KiB any endpoint takes: still the OAuth error, the rest unread.
    let huge = format!("{CC}&pad={}", "a".repeat(300 * 1024));
    assert_oauth_error(
        &token_form(&app, Some(&auth), &huge).await,
        400,
        "invalid_request",
    );

    // Only POST.
    let res = app.raw(Method::GET, "/oauth2/token", &[], None).await;
    assert_eq!(res.status.as_u16(), 405, "{}", res.text);
}

#[tokio::test]
async fn an_unknown_grant_type_is_unsupported_grant_type() {
    let app = spawn().await;
    let org = org(&app, "Acme", "admin@acme.example").await;
    let client = cc_client(&app, &org, "Partner").await;
    let auth = basic(&client.id, &client.secret);
    for grant in [
        "password",
        "implicit",
        "urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer",
        "CLIENT_CREDENTIALS",
        "bogus",
    ] {
        let res = token_form(&app, Some(&auth), &format!("grant_type={grant}")).await;
        assert_oauth_error(&res, 400, "unsupported_grant_type");
    }
}

#[tokio::test]
async fn failed_client_authentication_is_invalid_client_and_the_same_for_every_cause() {
    let app = spawn().await;
    let org = org(&app, "Acme", "admin@acme.example").await;
    let client = cc_client(&app, &org, "Partner").await;
    let other = cc_client(&app, &org, "Other partner").await;
    // A secret of this client that its admin deleted.
    let revoked = {
        let res = app
            .post(&org.secrets(&client.id), &org.admin, json!({}))
            .await
            .expect(201);
        let path = format!("{}/{}", org.secrets(&client.id), res.str("id"));
        app.call(Method::DELETE, &path, Some(&org.admin), None)
            .await
            .expect(204);
        res.str("secret")
    };
    // A well-formed secret (prefix, checksum) that was never issued.
    let never_issued = TokenSecret::generate(&Prefix::parse("lkcs").unwrap(), [7; 32])
        .expose()
        .to_owned();

    let causes = [
        (
            "another client's secret",
            client.id.clone(),
            other.secret.clone(),
        ),
        ("revoked secret", client.id.clone(), revoked),
        ("never issued", client.id.clone(), never_issued),
        (
            "malformed secret",
            client.id.clone(),
            "not-a-secret".to_owned(),
        ),
        (
            "unknown client",
            "cli_0000000000000000000000".to_owned(),
            client.secret.clone(),
        ),
        ("unknown id", "nobody".to_owned(), "x".to_owned()),
    ];
    let mut basic_bodies = Vec::new();
    let mut form_bodies = Vec::new();
    for (why, id, secret) in &causes {
        let res = token_form(&app, Some(&basic(id, secret)), CC).await;
        assert_oauth_error(&res, 401, "invalid_client");
        let challenge = res
            .header("www-authenticate")
            .unwrap_or_else(|| panic!("{why}: no WWW-Authenticate after Basic"));
        assert!(challenge.starts_with("Basic"), "{why}: {challenge}");
        basic_bodies.push(res.text);

        let body = format!("{CC}&client_id={id}&client_secret={secret}");
        let res = token_form(&app, None, &body).await;
        assert_oauth_error(&res, 401, "invalid_client");
        assert!(
            res.header("www-authenticate").is_none(),
            "{why}: a Basic challenge for a request that did not use Basic"
        );
        form_bodies.push(res.text);
    }
    // Nothing in the answer tells an unknown client from a wrong secret.
    basic_bodies.dedup();
    form_bodies.dedup();
    assert_eq!(basic_bodies.len(), 1, "{basic_bodies:#?}");
    assert_eq!(form_bodies, basic_bodies);

    // Through the third-party client, both ways (for the other client: ten failures for one
    // client in a minute are all that it may have before it is slowed down).
    for auth in [AuthType::BasicAuth, AuthType::RequestBody] {
        let oauth = oauth_client(&app, &other.id, &client.secret, auth);
        assert_eq!(
            server_error(client_credentials(&oauth, &[]).await),
            BasicErrorResponseType::InvalidClient
        );
    }

    // No client authentication at all, or a confidential client's id without its secret.
    assert_oauth_error(&token_form(&app, None, CC).await, 401, "invalid_client");
    let res = token_form(&app, None, &format!("{CC}&client_id={}", client.id)).await;
    assert_oauth_error(&res, 401, "invalid_client");
    // A Basic header that does not decode.
    let res = token_form(&app, Some("Basic !!!not-base64"), CC).await;
    assert_oauth_error(&res, 401, "invalid_client");
    assert!(res.header("www-authenticate").is_some());

    // The real client still works.
    access_token(&app, &client).await;
}

#[tokio::test]
async fn two_authentication_methods_at_once_are_invalid_request() {
    let app = spawn().await;
    let org = org(&app, "Acme", "admin@acme.example").await;
    let client = cc_client(&app, &org, "Partner").await;
    let auth = basic(&client.id, &client.secret);

    // Basic plus client_secret in the body, even the right one.
    let res = token_form(
        &app,
        Some(&auth),
        &format!("{CC}&client_secret={}", client.secret),
    )
    .await;
    assert_oauth_error(&res, 400, "invalid_request");
    let res = token_form(
        &app,
        Some(&auth),
        &format!(
            "{CC}&client_id={}&client_secret={}",
            client.id, client.secret
        ),
    )
    .await;
    assert_oauth_error(&res, 400, "invalid_request");
    // Basic for one client, client_id of another in the body.
    let other = cc_client(&app, &org, "Other").await;
    let res = token_form(&app, Some(&auth), &format!("{CC}&client_id={}", other.id)).await;
    assert_oauth_error(&res, 400, "invalid_request");
    // A secret without an id.
    let res = token_form(&app, None, &format!("{CC}&client_secret={}", client.secret)).await;
    assert_eq!(res.status.as_u16(), 400, "{}", res.text);
}

#[tokio::test]
async fn a_client_without_the_grant_is_unauthorized_client_and_scopes_are_bounded() {
    let app = spawn().await;
    let org = org(&app, "Acme", "admin@acme.example").await;

    // A confidential client registered for the authorization code grant only.
    let res = create_client(
        &app,
        &org,
        json!({
            "name": "Web app",
            "grant_types": ["authorization_code"],
            "redirect_uris": ["https://app.example/callback"],
            "scopes": ["api"],
        }),
    )
    .await
    .expect(201);
    let (id, secret) = (res.str("id"), res.str("client_secret"));
    let res = token_form(&app, Some(&basic(&id, &secret)), CC).await;
    assert_oauth_error(&res, 400, "unauthorized_client");
    let oauth = oauth_client(&app, &id, &secret, AuthType::RequestBody);
    assert_eq!(
        server_error(client_credentials(&oauth, &[]).await),
        BasicErrorResponseType::UnauthorizedClient
    );

    // A scope outside the client's, alone or with allowed ones; a malformed scope.
    let client = cc_client(&app, &org, "Partner").await;
    let auth = basic(&client.id, &client.secret);
    for scope in [
        "admin",
        "api%20admin",
        "API",
        "api%20reports%3Aread%20links",
        "a%22b",
    ] {
        let res = token_form(&app, Some(&auth), &format!("{CC}&scope={scope}")).await;
        assert_oauth_error(&res, 400, "invalid_scope");
    }
    let oauth = oauth_client(&app, &client.id, &client.secret, AuthType::BasicAuth);
    assert_eq!(
        server_error(client_credentials(&oauth, &["api", "admin"]).await),
        BasicErrorResponseType::InvalidScope
    );
    // A subset, in any order, with repeated spaces, is fine and answered as asked.
    let res = token_form(
        &app,
        Some(&auth),
        &format!("{CC}&scope=reports%3Aread++api"),
    )
    .await
    .expect(200);
    assert_eq!(res.body["scope"], "reports:read api");

    // The scopes an admin takes away stop being grantable at once.
    app.call(
        Method::PATCH,
        &org.client(&client.id),
        Some(&org.admin),
        Some(json!({ "scopes": ["api"] })),
    )
    .await
    .expect(200);
    let res = token_form(&app, Some(&auth), &format!("{CC}&scope=reports%3Aread")).await;
    assert_oauth_error(&res, 400, "invalid_scope");
    let res = token_form(&app, Some(&auth), CC).await.expect(200);
    assert_eq!(res.body["scope"], "api");
}

#[tokio::test]
async fn repeated_wrong_secrets_slow_one_client_down_but_never_lock_out_the_right_secret() {
    let app = spawn().await;
    let org = org(&app, "Acme", "admin@acme.example").await;
    let client = cc_client(&app, &org, "Partner").await;
    let bystander = cc_client(&app, &org, "Bystander").await;
    let wrong = basic(&client.id, &bystander.secret);

    for attempt in 1..=10 {
        let res = token_form(&app, Some(&wrong), CC).await;
        assert_eq!(res.status.as_u16(), 401, "attempt {attempt}: {}", res.text);
    }
    // The 11th within the minute (and the ones after) wait.
    for _ in 0..3 {
        let res = token_form(&app, Some(&wrong), CC).await;
        assert_eq!(res.status.as_u16(), 429, "{}", res.text);
        let wait: u64 = res
            .header("retry-after")
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no Retry-After in seconds: {:?}", res.headers));
        assert!((1..=60).contains(&wait), "{wait}");
        assert_eq!(res.header("cache-control").as_deref(), Some("no-store"));
        // Form authentication is counted for the same client.
        let res = token_form(
            &app,
            None,
            &format!(
                "{CC}&client_id={}&client_secret={}",
                client.id, bystander.secret
            ),
        )
        .await;
        assert_eq!(res.status.as_u16(), 429, "{}", res.text);
    }

    // Meanwhile the right secret works, both ways, and so does every other client.
    access_token(&app, &client).await;
    let res = token_form(
        &app,
        None,
        &format!(
            "{CC}&client_id={}&client_secret={}",
            client.id, client.secret
        ),
    )
    .await;
    res.expect(200);
    access_token(&app, &bystander).await;
    let res = token_form(&app, Some(&basic(&bystander.id, &client.secret)), CC).await;
    assert_oauth_error(&res, 401, "invalid_client");

    // After the back-off, a wrong secret is a plain 401 again.
    app.clock.advance(61);
    let res = token_form(&app, Some(&wrong), CC).await;
    assert_oauth_error(&res, 401, "invalid_client");
}

#[tokio::test]
async fn an_access_token_lives_900_seconds() {
    let app = spawn().await;
    let org = org(&app, "Acme", "admin@acme.example").await;
    let client = cc_client(&app, &org, "Partner").await;
    let jwt = access_token(&app, &client).await;
    let me = app.me(&jwt).await.expect(200);
    let expires_at = me.body["token"]["expires_at"].as_str().unwrap().to_owned();
    assert_eq!(
        crate::helpers::parse_time(&expires_at),
        app.now() + time::Duration::seconds(900)
    );
    // Like every token that expires within 30 days (SPEC 2.4).
    assert_eq!(me.header("latchkey-token-expires"), Some(expires_at));

    app.clock.advance(899);
    app.me(&jwt).await.expect(200);
    // RFC 7519 §4.1.4: not accepted "on or after" `exp`.
    app.clock.advance(1);
    let res: Resp = app.me(&jwt).await;
    assert_refused(&res, "expired");
    // A fresh one works.
    let jwt = access_token(&app, &client).await;
    app.me(&jwt).await.expect(200);
}

#[tokio::test]
async fn deleting_the_client_or_switching_the_org_off_refuses_its_tokens_at_once() {
    let app = spawn().await;
    let org = org(&app, "Acme", "admin@acme.example").await;
    let doomed = cc_client(&app, &org, "Doomed").await;
    let kept = cc_client(&app, &org, "Kept").await;
    let doomed_jwts = [
        access_token(&app, &doomed).await,
        access_token(&app, &doomed).await,
    ];
    let kept_jwt = access_token(&app, &kept).await;
    for jwt in doomed_jwts.iter().chain([&kept_jwt]) {
        // Used, hence cached.
        app.me(jwt).await.expect(200);
    }

    app.call(
        Method::DELETE,
        &org.client(&doomed.id),
        Some(&org.admin),
        None,
    )
    .await
    .expect(204);
    for jwt in &doomed_jwts {
        assert_refused(&app.me(jwt).await, "revoked");
    }
    assert_oauth_error(
        &token_form(&app, Some(&basic(&doomed.id, &doomed.secret)), CC).await,
        401,
        "invalid_client",
    );
    app.me(&kept_jwt).await.expect(200);

    // The organisation's switch: every token of every client stops, and no new one is issued.
    app.service()
        .update_org(&Caller::operator(), &org.id, &[], &[], Some(false))
        .await
        .unwrap();
    assert_refused(&app.me(&kept_jwt).await, "disabled");
    let res = token_form(&app, Some(&basic(&kept.id, &kept.secret)), CC).await;
    assert_eq!(res.status.as_u16(), 400, "{}", res.text);
    assert_oauth_error(&res, 400, "unauthorized_client");

    // Switched on again, the client gets tokens again.
    app.service()
        .update_org(&Caller::operator(), &org.id, &[], &[], Some(true))
        .await
        .unwrap();
    let jwt = access_token(&app, &kept).await;
    app.me(&jwt).await.expect(200);
}

/// Issue 9, item 12: `error_description` keeps to RFC 6749 §5.2's characters, for our own
/// messages (`the grant type "password" ...` had quotes) and for anything echoed from a request.
#[tokio::test]
async fn error_descriptions_never_hold_quotes_or_backslashes() {
    let app = spawn().await;
    let org = org(&app, "Acme", "admin@acme.example").await;
    let client = cc_client(&app, &org, "Partner").await;
    let auth = basic(&client.id, &client.secret);
    let res = token_form(&app, Some(&auth), "grant_type=password").await;
    assert_oauth_error(&res, 400, "unsupported_grant_type");
    let description = res.body["error_description"].as_str().unwrap_or_default();
    assert!(description.contains("password"), "{description}");
    for body in [
        "grant_type=%22%5C%C3%A9%0A",
        "grant_type=client_credentials&scope=%22%5Cx",
        "grant_type=client_credentials&scope=api%20%22evil%22",
        "grant_type=client_credentials&scope=api&scope=api",
    ] {
        let res = token_form(&app, Some(&auth), body).await;
        assert_eq!(res.status.as_u16(), 400, "{body}: {}", res.text);
        // assert_oauth_error checks the character set of error_description.
        let error = res.body["error"].as_str().unwrap_or_default().to_owned();
        assert_oauth_error(&res, 400, &error);
    }
}

/// Issue 9, item 13: a `Basic` header with nothing (or nothing decodable) after the scheme is
/// `invalid_client` with `WWW-Authenticate: Basic`.
#[tokio::test]
async fn an_empty_or_undecodable_basic_header_gets_www_authenticate() {
    let app = spawn().await;
    for header in ["Basic", "Basic ", "basic    ", "Basic %%%", "Basic Zm9v"] {
        let res = token_form(&app, Some(header), "grant_type=client_credentials").await;
        assert_oauth_error(&res, 401, "invalid_client");
        assert!(
            res.header("www-authenticate")
                .is_some_and(|v| v.to_ascii_lowercase().starts_with("basic")),
            "{header:?}: {:?}",
            res.header("www-authenticate")
        );
    }
}

/// Issue 9, item 14: Basic with an empty password identifies a public client only; for a
/// confidential client it is a failed authentication.
#[tokio::test]
async fn a_confidential_client_with_an_empty_basic_password_is_invalid_client() {
    let app = spawn().await;
    let org = org(&app, "Acme", "admin@acme.example").await;
    let client = cc_client(&app, &org, "Partner").await;
    let res = token_form(
        &app,
        Some(&basic(&client.id, "")),
        "grant_type=client_credentials",
    )
    .await;
    assert_oauth_error(&res, 401, "invalid_client");
    assert!(res.header("www-authenticate").is_some());
}
