//! Organisation tokens (SPEC 2.1–2.3, issue 3): the `Default` token and its JWT checked offline
//! against the JWKS, admins only, reveal, rotation, deletion.

use std::collections::HashSet;

use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use latchkey_core::Role;
use latchkey_core::token_string::ParsedToken;
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{PASSWORD, TestApp, assert_error, assert_refused, rfc3339};
use crate::org_helpers::{
    admin_org, create, create_token, default_token, events, get, list, no_delay, reveal,
    with_action,
};

/// Verifies `jwt` with nothing but the published JWKS, as a resource server would: the claims.
async fn verify_offline(app: &TestApp, jwt: &str) -> Value {
    let jwks = app
        .call(Method::GET, "/.well-known/jwks.json", None, None)
        .await
        .expect(200);
    let header = jsonwebtoken::decode_header(jwt).unwrap();
    assert_eq!(header.alg, Algorithm::ES256, "ES256 by default");
    assert_eq!(header.typ.as_deref(), Some("JWT"));
    let kid = header.kid.expect("a kid in the header");
    let keys = jwks.body["keys"].as_array().cloned().unwrap_or_default();
    assert!(!keys.is_empty(), "{}", jwks.text);
    for key in &keys {
        assert!(key.get("d").is_none(), "a private part in the JWKS: {key}");
    }
    let key = keys
        .iter()
        .find(|k| k["kid"] == kid.as_str())
        .unwrap_or_else(|| panic!("the key {kid} is not published: {}", jwks.text));
    assert_eq!(key["alg"], "ES256");
    assert_eq!(key["kty"], "EC");
    let jwk: Jwk = serde_json::from_value(key.clone()).unwrap();
    let decoding = DecodingKey::from_jwk(&jwk).unwrap();
    let mut validation = Validation::new(Algorithm::ES256);
    validation.validate_exp = false;
    validation.required_spec_claims = HashSet::new();
    validation.set_audience(&[app.config.public_url()]);
    let data = jsonwebtoken::decode::<Value>(jwt, &decoding, &validation)
        .unwrap_or_else(|e| panic!("the JWT does not verify against the JWKS: {e}"));
    data.claims
}

#[tokio::test]
async fn a_new_organisation_has_a_working_default_api_token_verifiable_offline() {
    let app = TestApp::spawn().await;
    let org = admin_org(&app, "Acme", "admin@acme.example").await;
    let now = app.now();

    let tokens = list(&app, &org).await;
    assert_eq!(tokens.len(), 1, "{tokens:?}");
    let (id, token) = default_token(&app, &org).await;
    assert!(id.starts_with("tok_"), "{id}");
    assert_eq!(token["type"], "api");
    assert_eq!(token["name"], "Default");
    assert_eq!(token["status"], "active", "active at once: {token}");
    assert_eq!(token["created_at"], rfc3339(now).as_str());
    assert_eq!(token["active_from"], rfc3339(now).as_str());
    assert!(token["expires_at"].is_null(), "api tokens do not expire");
    assert!(token["revoked_at"].is_null());
    assert!(token.get("secret").is_none(), "{token}");

    // The revealed secret is a JWT that acts as the organisation.
    let jwt = reveal(&app, &org, &id).await;
    assert!(
        jwt.starts_with("eyJ") && jwt.split('.').count() == 3,
        "{jwt}"
    );
    assert_eq!(
        token["hint"],
        format!("eyJ…{}", &jwt[jwt.len() - 4..]).as_str()
    );
    let me = app.me(&jwt).await.expect(200);
    assert_eq!(me.body["principal"]["kind"], "organisation", "{}", me.text);
    assert_eq!(me.body["principal"]["id"], org.id.as_str());
    assert_eq!(me.body["principal"]["name"], "Acme");
    assert_eq!(me.body["token"]["id"], id.as_str());
    assert_eq!(me.body["token"]["type"], "api");
    assert!(me.body["token"]["expires_at"].is_null());
    assert_eq!(
        me.body["accounts"],
        json!([{ "id": org.id, "name": "Acme", "role": "organisation" }])
    );
    assert!(me.header("latchkey-token-expires").is_none());
    // The use is recorded off the request path.
    app.flush().await;
    let used = get(&app, &org, &id).await;
    assert_eq!(used["last_used_at"], rfc3339(now).as_str());
    assert_eq!(used["last_used_ip"], "127.0.0.1");

    // Offline: the published key alone verifies it, and the claims name the token and owner.
    let claims = verify_offline(&app, &jwt).await;
    assert_eq!(claims["jti"], id.as_str());
    assert_eq!(claims["sub"], org.id.as_str());
    assert_eq!(claims["iss"], app.config.public_url().as_str());
    assert_eq!(claims["aud"], app.config.public_url().as_str());
    assert_eq!(claims["nbf"], now.unix_timestamp());
    assert_eq!(claims["iat"], now.unix_timestamp());
    assert_eq!(claims["token_type"], "api");
    assert!(claims.get("exp").is_none(), "{claims}");

    // A JWT with a forged signature is refused before any look-up.
    let mut parts: Vec<String> = jwt.split('.').map(str::to_owned).collect();
    parts[2] = parts[2].chars().rev().collect();
    assert_refused(&app.me(&parts.join(".")).await, "malformed");

    // The JWKS is public and cacheable.
    let jwks = app
        .call(Method::GET, "/.well-known/jwks.json", None, None)
        .await
        .expect(200);
    assert_eq!(
        jwks.header("cache-control").as_deref(),
        Some("public, max-age=300")
    );
}

#[tokio::test]
async fn a_new_api_token_is_a_jwt_whose_nbf_is_the_end_of_the_pending_period() {
    let app = TestApp::spawn().await;
    let org = admin_org(&app, "Jwt", "jwt@example.com").await;
    let now = app.now();
    let res = create(&app, &org, json!({ "name": "ci", "type": "api" }))
        .await
        .expect(201);
    let jwt = res.str("secret");
    assert_eq!(res.str("status"), "pending");
    let claims = verify_offline(&app, &jwt).await;
    assert_eq!(claims["jti"], res.str("id").as_str());
    assert_eq!(claims["nbf"], now.unix_timestamp() + 1_800);
    // A valid signature is not enough: the token is pending.
    assert_refused(&app.me(&jwt).await, "pending");
    app.clock.advance(1_800);
    app.me(&jwt).await.expect(200);
}

#[tokio::test]
async fn only_admins_see_or_manage_organisation_tokens() {
    let app = TestApp::spawn().await;
    let org = admin_org(&app, "Acme", "admin@acme.example").await;
    let (_, member) = app.signed_in("member@acme.example").await;
    let (_, partner) = app.signed_in("partner@acme.example").await;
    app.add_member(&org.id, "member@acme.example", Role::Member)
        .await;
    app.add_member(&org.id, "partner@acme.example", Role::Partner)
        .await;
    let other = admin_org(&app, "Globex", "admin@globex.example").await;
    let (tid, _) = default_token(&app, &org).await;
    let (other_tid, _) = default_token(&app, &other).await;

    let calls = |org_id: &str, tid: &str| -> Vec<(Method, String, Option<Value>)> {
        let base = format!("/v1/orgs/{org_id}");
        vec![
            (Method::GET, format!("{base}/tokens"), None),
            (
                Method::POST,
                format!("{base}/tokens"),
                Some(json!({ "name": "mine", "type": "s2s" })),
            ),
            (Method::GET, format!("{base}/tokens/{tid}"), None),
            (
                Method::PATCH,
                format!("{base}/tokens/{tid}"),
                Some(json!({ "name": "renamed" })),
            ),
            (Method::DELETE, format!("{base}/tokens/{tid}"), None),
            (
                Method::POST,
                format!("{base}/tokens/{tid}/reveal"),
                Some(json!({ "password": PASSWORD })),
            ),
            (
                Method::POST,
                format!("{base}/tokens/{tid}/rotate"),
                Some(json!({})),
            ),
            (
                Method::POST,
                format!("{base}/tokens/revoke-all"),
                Some(json!({})),
            ),
            (Method::GET, format!("{base}/events"), None),
            (Method::GET, format!("{base}/members"), None),
            (
                Method::POST,
                format!("{base}/members"),
                Some(json!({ "email": "member@acme.example", "role": "admin" })),
            ),
        ]
    };

    // Members and partners: 403 forbidden on every one.
    for (who, session) in [("member", &member), ("partner", &partner)] {
        for (method, path, body) in calls(&org.id, &tid) {
            let res = app.call(method.clone(), &path, Some(session), body).await;
            assert_eq!(
                (res.status.as_u16(), res.code()),
                (403, "forbidden"),
                "{who}: {method} {path}: {}",
                res.text
            );
        }
    }
    // The admin of another organisation: 404, as if it did not exist.
    for (method, path, body) in calls(&org.id, &tid) {
        let res = app
            .call(method.clone(), &path, Some(&other.admin), body)
            .await;
        assert_error(&res, 404, "not_found");
    }
    // Our admin with another organisation's token id: 404, and nothing happens to it.
    for (method, path, body) in calls(&org.id, &other_tid)
        .into_iter()
        .filter(|(_, p, _)| p.contains(&other_tid))
    {
        let res = app
            .call(method.clone(), &path, Some(&org.admin), body)
            .await;
        assert_error(&res, 404, "not_found");
        assert!(!res.text.contains("eyJ"), "{method} {path}: {}", res.text);
    }

    // Nothing changed anywhere.
    let tokens = list(&app, &org).await;
    assert_eq!(tokens.len(), 1, "{tokens:?}");
    assert_eq!(tokens[0]["name"], "Default");
    assert_eq!(tokens[0]["status"], "active");
    let theirs = list(&app, &other).await;
    assert_eq!(theirs.len(), 1);
    assert_eq!(theirs[0]["name"], "Default");
    assert_eq!(theirs[0]["status"], "active");
    let roles: Vec<Value> = app
        .get(&format!("/v1/orgs/{}/members", org.id), &org.admin)
        .await
        .expect(200)
        .body
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| m["role"].clone())
        .collect();
    assert_eq!(roles.iter().filter(|r| *r == "admin").count(), 1);
}

#[tokio::test]
async fn reveal_needs_the_admins_password_and_shows_the_creation_secret() {
    let app = TestApp::spawn().await;
    let org = admin_org(&app, "Reveal", "reveal@example.com").await;
    let (id, secret) = create_token(&app, &org, "s2s", "backend").await;
    assert!(ParsedToken::parse(&secret).is_ok(), "{secret}");
    assert!(secret.starts_with("lks_"), "{secret}");
    let path = format!("{}/reveal", org.token(&id));

    let res = app
        .post(&path, &org.admin, json!({ "password": "not the password" }))
        .await;
    assert_error(&res, 403, "invalid_password");
    assert!(res.body.get("secret").is_none());
    assert!(!res.text.contains(&secret));

    let res = app
        .post(&path, &org.admin, json!({ "password": PASSWORD }))
        .await
        .expect(200);
    assert_eq!(res.str("secret"), secret);
    assert_eq!(res.str("id"), id);
    assert_eq!(res.header("cache-control").as_deref(), Some("no-store"));
    // Twice is fine, and the same.
    assert_eq!(reveal(&app, &org, &id).await, secret);
    // The reveals are audited; the failed attempt is not a reveal.
    let log = events(&app, &org).await;
    let revealed = with_action(&log, "token.revealed");
    assert_eq!(revealed.len(), 2, "{log:?}");
    assert_eq!(revealed[0]["subject"]["id"], id.as_str());
    assert_eq!(revealed[0]["actor"], org.admin_id.as_str());

    // A revoked token's secret is of no use: not shown.
    app.call(Method::DELETE, &org.token(&id), Some(&org.admin), None)
        .await
        .expect(200);
    let res = app
        .post(&path, &org.admin, json!({ "password": PASSWORD }))
        .await;
    assert_error(&res, 409, "token_not_live");
    assert!(!res.text.contains(&secret));
}

#[tokio::test]
async fn rotation_with_a_grace_period_keeps_the_old_token_until_it_ends() {
    let app = TestApp::spawn().await;
    let org = admin_org(&app, "Rotate", "rotate@example.com").await;
    let (old_id, _) = default_token(&app, &org).await;
    let old = reveal(&app, &org, &old_id).await;
    app.me(&old).await.expect(200);
    let now = app.now();

    let res = app
        .post(
            &format!("{}/rotate", org.token(&old_id)),
            &org.admin,
            json!({ "grace": "1h" }),
        )
        .await
        .expect(201);
    let new_id = res.str("id");
    let new = res.str("secret");
    assert_ne!(new_id, old_id);
    assert_ne!(new, old);
    assert_eq!(res.str("type"), "api");
    assert_eq!(res.str("name"), "Default");
    assert_eq!(res.str("rotated_from"), old_id);
    // The new token has the type's activation delay.
    assert_eq!(res.str("status"), "pending");
    assert_eq!(
        res.str("active_from"),
        rfc3339(now + time::Duration::minutes(30))
    );
    assert_eq!(
        get(&app, &org, &old_id).await["expires_at"],
        rfc3339(now + time::Duration::hours(1)).as_str()
    );

    app.me(&old).await.expect(200);
    assert_refused(&app.me(&new).await, "pending");
    app.clock.advance(1_800);
    app.me(&new).await.expect(200);
    app.me(&old).await.expect(200);
    app.clock.advance(1_799);
    app.me(&old).await.expect(200);
    app.clock.advance(2);
    // The JWT itself carries no expiry: the stored state decides.
    assert_refused(&app.me(&old).await, "expired");
    app.me(&new).await.expect(200);
    assert_eq!(get(&app, &org, &old_id).await["status"], "expired");
    assert_eq!(get(&app, &org, &new_id).await["status"], "active");

    // Bad graces are refused.
    for grace in ["8d", "soon", "-1h"] {
        let res = app
            .post(
                &format!("{}/rotate", org.token(&new_id)),
                &org.admin,
                json!({ "grace": grace }),
            )
            .await;
        assert_error(&res, 400, "invalid_request");
    }
    // An expired token cannot be rotated.
    let res = app
        .post(
            &format!("{}/rotate", org.token(&old_id)),
            &org.admin,
            json!({}),
        )
        .await;
    assert_error(&res, 409, "token_not_live");
}

#[tokio::test]
async fn rotation_ending_on_first_use_revokes_the_old_token_once_the_new_one_is_used() {
    let app = no_delay().start().await;
    let org = admin_org(&app, "FirstUse", "first@example.com").await;
    let (old_id, old) = create_token(&app, &org, "s2s", "backend").await;
    app.me(&old).await.expect(200);

    let res = app
        .post(
            &format!("{}/rotate", org.token(&old_id)),
            &org.admin,
            json!({ "grace": "first_use" }),
        )
        .await
        .expect(201);
    let new = res.str("secret");
    let new_id = res.str("id");
    assert_eq!(res.str("status"), "active");

    // Until the new token is used, the old one keeps working, flush or not.
    app.me(&old).await.expect(200);
    app.flush().await;
    app.me(&old).await.expect(200);
    assert_eq!(get(&app, &org, &old_id).await["status"], "active");

    app.me(&new).await.expect(200);
    app.flush().await;
    assert_refused(&app.me(&old).await, "revoked");
    assert_eq!(get(&app, &org, &old_id).await["status"], "revoked");
    app.me(&new).await.expect(200);
    assert_eq!(get(&app, &org, &new_id).await["status"], "active");

    let log = events(&app, &org).await;
    let revoked = with_action(&log, "token.revoked");
    assert_eq!(revoked.len(), 1, "{log:?}");
    assert_eq!(revoked[0]["subject"]["id"], old_id.as_str());
    assert_eq!(revoked[0]["details"]["reason"], "rotation_first_use");
}

#[tokio::test]
async fn rotation_is_allowed_at_max_active() {
    let app = TestApp::spawn().await;
    let org = admin_org(&app, "Full", "full@example.com").await;
    let (first, _) = create_token(&app, &org, "s2s", "one").await;
    create_token(&app, &org, "s2s", "two").await;
    let res = create(&app, &org, json!({ "name": "three", "type": "s2s" })).await;
    assert_error(&res, 409, "token_limit_reached");

    let res = app
        .post(
            &format!("{}/rotate", org.token(&first)),
            &org.admin,
            json!({}),
        )
        .await
        .expect(201);
    assert_eq!(res.str("name"), "one");
    assert_eq!(res.str("type"), "s2s");
    // Still full: the rotation did not open a slot for a create.
    let res = create(&app, &org, json!({ "name": "three", "type": "s2s" })).await;
    assert_error(&res, 409, "token_limit_reached");
    // The Default api token is of another type and counts separately.
    let (default_id, _) = default_token(&app, &org).await;
    app.post(
        &format!("{}/rotate", org.token(&default_id)),
        &org.admin,
        json!({}),
    )
    .await
    .expect(201);
}

#[tokio::test]
async fn rename_changes_the_name_only() {
    let app = TestApp::spawn().await;
    let org = admin_org(&app, "Rename", "rename@example.com").await;
    let (id, before) = default_token(&app, &org).await;
    let res = app
        .call(
            Method::PATCH,
            &org.token(&id),
            Some(&org.admin),
            Some(json!({ "name": "Production" })),
        )
        .await
        .expect(200);
    assert_eq!(res.str("name"), "Production");
    let after = get(&app, &org, &id).await;
    assert_eq!(after["name"], "Production");
    for field in ["id", "type", "status", "created_at", "hint", "active_from"] {
        assert_eq!(after[field], before[field], "{field}");
    }
    let res = app
        .call(
            Method::PATCH,
            &org.token(&id),
            Some(&org.admin),
            Some(json!({})),
        )
        .await;
    assert_error(&res, 400, "invalid_request");
    let res = app
        .call(
            Method::PATCH,
            &org.token(&id),
            Some(&org.admin),
            Some(json!({ "name": "x", "type": "s2s" })),
        )
        .await;
    assert_error(&res, 400, "invalid_request");
}

#[tokio::test]
async fn deletion_and_revocation_are_obeyed_on_the_very_next_request() {
    let app = no_delay().start().await;
    let org = admin_org(&app, "Delete", "delete@example.com").await;
    let (id, secret) = create_token(&app, &org, "s2s", "doomed").await;
    let (default_id, _) = default_token(&app, &org).await;
    let jwt = reveal(&app, &org, &default_id).await;
    // Both in the verification cache.
    app.me(&secret).await.expect(200);
    app.me(&jwt).await.expect(200);
    app.clock.advance(5);
    let now = app.now();

    let res = app
        .call(Method::DELETE, &org.token(&id), Some(&org.admin), None)
        .await
        .expect(200);
    assert_eq!(res.str("id"), id);
    assert_eq!(res.str("status"), "revoked");
    assert_eq!(res.str("revoked_at"), rfc3339(now));
    assert!(res.body.get("secret").is_none());
    assert_refused(&app.me(&secret).await, "revoked");

    app.call(
        Method::DELETE,
        &org.token(&default_id),
        Some(&org.admin),
        None,
    )
    .await
    .expect(200);
    assert_refused(&app.me(&jwt).await, "revoked");

    // The records stay, for audit; they reach nothing.
    let tokens = list(&app, &org).await;
    assert_eq!(tokens.len(), 2);
    assert!(
        tokens.iter().all(|t| t["status"] == "revoked"),
        "{tokens:?}"
    );
    let one = get(&app, &org, &id).await;
    assert_eq!(one["accounts"], json!([]));
    // Irreversible, and a second delete changes nothing.
    let again = app
        .call(Method::DELETE, &org.token(&id), Some(&org.admin), None)
        .await
        .expect(200);
    assert_eq!(again.str("revoked_at"), rfc3339(now));
    let log = events(&app, &org).await;
    let revoked = with_action(&log, "token.revoked");
    assert_eq!(revoked.len(), 2, "one event per revocation: {log:?}");
    assert!(revoked.iter().all(|e| e["details"]["reason"] == "deleted"));
    // A rotation of a deleted token is refused.
    let res = app
        .post(&format!("{}/rotate", org.token(&id)), &org.admin, json!({}))
        .await;
    assert_error(&res, 409, "token_not_live");
}

#[tokio::test]
async fn get_shows_the_effective_access_of_the_token() {
    let app = TestApp::spawn().await;
    let org = admin_org(&app, "Access", "access@example.com").await;
    let (id, _) = default_token(&app, &org).await;
    let one = get(&app, &org, &id).await;
    assert_eq!(
        one["accounts"],
        json!([{ "id": org.id, "name": "Access", "role": "organisation" }])
    );
    assert_eq!(one["type"], "api");
    assert!(one.get("secret").is_none());
    // A pending token reaches the organisation too (it will, without any other change).
    let (pending, _) = create_token(&app, &org, "s2s", "later").await;
    assert_eq!(
        get(&app, &org, &pending).await["accounts"][0]["id"],
        org.id.as_str()
    );
    // Unknown and malformed ids: 404.
    for bad in [
        "tok_0000000000000000000000",
        "nope",
        "org_0000000000000000000000",
    ] {
        let res = app.get(&org.token(bad), &org.admin).await;
        assert_error(&res, 404, "not_found");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_token_is_rotated_once_so_rotation_never_outgrows_max_active() {
    const RACERS: usize = 10;
    let app = TestApp::spawn().await;
    let org = admin_org(&app, "Twice", "twice@example.com").await;
    let (first, _) = create_token(&app, &org, "s2s", "one").await;
    create_token(&app, &org, "s2s", "two").await;

    // A double click on "rotate", many times over: one new token, not ten.
    let mut handles = Vec::new();
    for i in 0..RACERS {
        let client = app.client.clone();
        let url = format!("{}{}/rotate", app.url, org.token(&first));
        let session = org.admin.clone();
        handles.push(tokio::spawn(async move {
            let res = client
                .post(url)
                .bearer_auth(session)
                .json(&json!({ "grace": "1h" }))
                .send()
                .await
                .unwrap_or_else(|e| panic!("racer {i}: {e}"));
            let status = res.status().as_u16();
            let body: Value = res.json().await.unwrap_or(Value::Null);
            (status, body)
        }));
    }
    let mut rotated = 0;
    for handle in handles {
        let (status, body) = handle.await.unwrap();
        match status {
            201 => rotated += 1,
            409 => assert_eq!(body["error"]["code"], "conflict", "{body}"),
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!(rotated, 1, "one rotation per token");
    // Once the grace period is over, the type is back at max_active, not above it.
    app.clock.advance(3_601);
    let session = app.login("twice@example.com").await;
    let live = app
        .get(&org.tokens(), &session)
        .await
        .expect(200)
        .body
        .as_array()
        .into_iter()
        .flatten()
        .filter(|t| t["type"] == "s2s" && (t["status"] == "active" || t["status"] == "pending"))
        .count();
    assert_eq!(live, 2);
}

#[tokio::test]
async fn chained_rotation_ends_the_predecessor_still_in_grace() {
    let app = TestApp::spawn().await;
    let org = admin_org(&app, "Chain", "chain@example.com").await;
    let (first, first_secret) = create_token(&app, &org, "s2s", "one").await;
    create_token(&app, &org, "s2s", "two").await;
    app.clock.advance(31 * 60);

    // one → second (one keeps a day of grace) → third: one ends now, second keeps its grace.
    let rotate = |id: String| {
        let app = &app;
        let org = &org;
        async move {
            app.post(
                &format!("{}/rotate", org.token(&id)),
                &org.admin,
                json!({ "grace": "1d" }),
            )
            .await
            .expect(201)
        }
    };
    let second = rotate(first.clone()).await;
    let (second_id, second_secret) = (second.str("id"), second.str("secret"));
    app.clock.advance(31 * 60);
    app.me(&first_secret).await.expect(200);
    let third = rotate(second_id.clone()).await;
    let third_id = third.str("id");

    assert_refused(&app.me(&first_secret).await, "expired");
    app.me(&second_secret).await.expect(200);
    let listed = app.get(&org.tokens(), &org.admin).await.expect(200).body;
    let live: Vec<&str> = listed
        .as_array()
        .into_iter()
        .flatten()
        .filter(|t| t["type"] == "s2s" && (t["status"] == "active" || t["status"] == "pending"))
        .filter_map(|t| t["id"].as_str())
        .collect();
    assert_eq!(live.len(), 3, "max_active + 1, not more: {live:?}");
    assert!(!live.contains(&first.as_str()));
    assert!(live.contains(&third_id.as_str()));
    let ev = crate::org_helpers::events(&app, &org).await;
    let rotated = ev
        .iter()
        .find(|e| e["action"] == "token.rotated" && e["subject"]["id"] == second_id.as_str())
        .unwrap_or_else(|| panic!("no rotation event: {ev:?}"));
    assert_eq!(rotated["details"]["ended_predecessor"], first.as_str());
}
