//! OAuth clients of an organisation (SPEC 3, 4): `GET|POST /v1/orgs/{org}/clients`,
//! `PATCH|DELETE …/clients/{id}`, `POST …/secrets`, `DELETE …/secrets/{secret_id}`, for admins
//! only; secrets shown once, at most two active, rotation without downtime; the audit trail;
//! and `latchkey client create` run as the real binary.

use std::time::Duration;

use latchkey_core::Role;
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{Binary, PASSWORD, Resp, TestApp, assert_error};
use crate::oauth_helpers::{
    Org, access_token, assert_oauth_error, basic, cc_client, create_client, org, spawn, token_form,
};

const CC: &str = "grant_type=client_credentials";

async fn list(app: &TestApp, org: &Org) -> Resp {
    app.get(&org.clients(), &org.admin).await.expect(200)
}

async fn delete(app: &TestApp, path: &str, session: &str) -> Resp {
    app.call(Method::DELETE, path, Some(session), None).await
}

async fn patch(app: &TestApp, path: &str, session: &str, body: Value) -> Resp {
    app.call(Method::PATCH, path, Some(session), Some(body))
        .await
}

/// True when this client's secret gets an access token.
async fn works(app: &TestApp, id: &str, secret: &str) -> bool {
    let res = token_form(app, Some(&basic(id, secret)), CC).await;
    match res.status.as_u16() {
        200 => true,
        401 => {
            assert_oauth_error(&res, 401, "invalid_client");
            false
        }
        other => panic!("unexpected {other}: {}", res.text),
    }
}

#[tokio::test]
async fn an_admin_creates_a_client_whose_secret_is_shown_once() {
    let app = spawn().await;
    let org = org(&app, "Acme", "admin@acme.example").await;

    let res = create_client(
        &app,
        &org,
        json!({
            "name": "Reporting partner",
            "grant_types": ["client_credentials"],
            "scopes": ["api", "reports:read"],
        }),
    )
    .await
    .expect(201);
    assert_eq!(res.header("cache-control").as_deref(), Some("no-store"));
    let id = res.str("id");
    let secret = res.str("client_secret");
    assert!(id.starts_with("cli_"), "{id}");
    assert!(secret.starts_with("lkcs_") && secret.len() > 40, "{secret}");
    assert_eq!(res.body["name"], "Reporting partner");
    assert_eq!(res.body["grant_types"], json!(["client_credentials"]));
    assert_eq!(res.body["scopes"], json!(["api", "reports:read"]));
    assert_eq!(res.body["redirect_uris"], json!([]));
    assert_eq!(res.body["confidential"], true);
    assert_eq!(res.body["introspect"], false);
    let secrets = res.body["secrets"].as_array().unwrap();
    assert_eq!(secrets.len(), 1, "{}", res.text);
    let hint = secrets[0]["hint"].as_str().unwrap();
    assert!(hint.ends_with(&secret[secret.len() - 4..]), "{hint}");
    assert!(works(&app, &id, &secret).await);

    // Listed, with the hint but never the secret.
    let listed = list(&app, &org).await;
    assert!(!listed.text.contains(&secret), "a secret in the list");
    let clients = listed.body.as_array().unwrap();
    assert_eq!(clients.len(), 1);
    assert_eq!(clients[0]["id"], id.as_str());
    assert!(clients[0].get("client_secret").is_none());
    assert_eq!(clients[0]["secrets"][0]["hint"], hint);

    // Renamed and changed; a deleted client leaves the list.
    let res = patch(
        &app,
        &org.client(&id),
        &org.admin,
        json!({ "name": "Reporting v2", "introspect": false }),
    )
    .await
    .expect(200);
    assert_eq!(res.body["name"], "Reporting v2");
    assert_eq!(res.body["introspect"], false);
    assert_eq!(res.body["scopes"], json!(["api", "reports:read"]));
    assert!(!res.text.contains(&secret));
    delete(&app, &org.client(&id), &org.admin).await.expect(204);
    assert_eq!(list(&app, &org).await.body, json!([]));
    assert!(!works(&app, &id, &secret).await);
    assert_error(
        &delete(&app, &org.client(&id), &org.admin).await,
        404,
        "not_found",
    );
    assert_error(
        &patch(&app, &org.client(&id), &org.admin, json!({ "name": "x" })).await,
        404,
        "not_found",
    );
}

#[tokio::test]
async fn only_admins_manage_clients() {
    let app = spawn().await;
    let org = org(&app, "Acme", "admin@acme.example").await;
    let client = cc_client(&app, &org, "Partner").await;
    let secret_id = list(&app, &org).await.body[0]["secrets"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let (_, member) = app.signed_in("member@acme.example").await;
    app.add_member(&org.id, "member@acme.example", Role::Member)
        .await;
    let (_, partner) = app.signed_in("partner@acme.example").await;
    app.add_member(&org.id, "partner@acme.example", Role::Partner)
        .await;
    let (_, outsider) = app.signed_in("eve@elsewhere.example").await;
    // An admin of another organisation is an outsider here.
    let other = self::org(&app, "Other", "admin@other.example").await;
    let body = json!({ "name": "x", "grant_types": ["client_credentials"] });
    let secret_path = format!("{}/{secret_id}", org.secrets(&client.id));

    for (who, session, status, code) in [
        ("member", &member, 403, "forbidden"),
        ("partner", &partner, 403, "forbidden"),
        ("outsider", &outsider, 404, "not_found"),
        ("other admin", &other.admin, 404, "not_found"),
    ] {
        let attempts = [
            app.get(&org.clients(), session).await,
            app.post(&org.clients(), session, body.clone()).await,
            patch(
                &app,
                &org.client(&client.id),
                session,
                json!({ "name": "y" }),
            )
            .await,
            app.post(&org.secrets(&client.id), session, json!({})).await,
            delete(&app, &secret_path, session).await,
            delete(&app, &org.client(&client.id), session).await,
        ];
        for res in attempts {
            assert_eq!(res.status.as_u16(), status, "{who}: {}", res.text);
            assert_eq!(res.code(), code, "{who}: {}", res.text);
            assert!(!res.text.contains("lkcs_"), "{who}: {}", res.text);
        }
    }
    // The other organisation's admin cannot reach the client through their own org either.
    let foreign = [
        patch(
            &app,
            &other.client(&client.id),
            &other.admin,
            json!({ "name": "y" }),
        )
        .await,
        app.post(&other.secrets(&client.id), &other.admin, json!({}))
            .await,
        delete(
            &app,
            &format!("{}/{secret_id}", other.secrets(&client.id)),
            &other.admin,
        )
        .await,
        delete(&app, &other.client(&client.id), &other.admin).await,
    ];
    for res in foreign {
        assert_error(&res, 404, "not_found");
    }
    assert_eq!(list(&app, &other).await.body, json!([]));

    // An API token is not a session, even an admin's.
    let (_, token) = app.personal_token(&org.admin, "laptop").await;
    assert_error(
        &app.get(&org.clients(), &token).await,
        403,
        "session_required",
    );
    // No credentials at all.
    let res = app.call(Method::GET, &org.clients(), None, None).await;
    assert_eq!(res.status.as_u16(), 401, "{}", res.text);

    // Nothing changed.
    assert!(works(&app, &client.id, &client.secret).await);
    let listed = list(&app, &org).await;
    assert_eq!(listed.body[0]["name"], "Partner");
    assert_eq!(listed.body[0]["secrets"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn secrets_rotate_with_two_active_and_a_deleted_one_fails_at_once() {
    let app = spawn().await;
    let org = org(&app, "Acme", "admin@acme.example").await;
    let client = cc_client(&app, &org, "Partner").await;
    let first_id = list(&app, &org).await.body[0]["secrets"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // The first secret is in use (and so in the server's cache).
    access_token(&app, &client).await;

    // A second secret: shown once, both work.
    let res = app
        .post(&org.secrets(&client.id), &org.admin, json!({}))
        .await
        .expect(201);
    assert_eq!(res.header("cache-control").as_deref(), Some("no-store"));
    let (second_id, second) = (res.str("id"), res.str("secret"));
    assert!(second.starts_with("lkcs_") && second != client.secret);
    assert_ne!(second_id, first_id);
    assert!(res.body["hint"].is_string() && res.body["created_at"].is_string());
    // Each secret's last use: the first was used, the new one not yet.
    app.flush().await;
    let used = |listed: &Resp| -> Vec<bool> {
        listed.body[0]["secrets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["last_used_at"].is_string())
            .collect()
    };
    assert_eq!(used(&list(&app, &org).await), vec![true, false]);
    assert!(works(&app, &client.id, &client.secret).await);
    assert!(works(&app, &client.id, &second).await);
    app.flush().await;
    let listed = list(&app, &org).await;
    assert!(!listed.text.contains(&second) && !listed.text.contains(&client.secret));
    assert_eq!(listed.body[0]["secrets"].as_array().unwrap().len(), 2);
    assert_eq!(used(&listed), vec![true, true]);

    // A third while two are active is a conflict.
    let res = app
        .post(&org.secrets(&client.id), &org.admin, json!({}))
        .await;
    assert_error(&res, 409, "conflict");
    assert!(!res.text.contains("lkcs_"));

    // Deleting the first: it fails at once, the second carries on.
    let first_path = format!("{}/{first_id}", org.secrets(&client.id));
    delete(&app, &first_path, &org.admin).await.expect(204);
    assert!(!works(&app, &client.id, &client.secret).await);
    assert!(works(&app, &client.id, &second).await);
    assert_error(
        &delete(&app, &first_path, &org.admin).await,
        404,
        "not_found",
    );
    let listed = list(&app, &org).await;
    let secrets = listed.body[0]["secrets"].as_array().unwrap();
    assert_eq!(secrets.len(), 1);
    assert_eq!(secrets[0]["id"], second_id.as_str());

    // Room for a new one again.
    let res = app
        .post(&org.secrets(&client.id), &org.admin, json!({}))
        .await
        .expect(201);
    assert!(works(&app, &client.id, &res.str("secret")).await);

    // A secret id of another client is not found under this one.
    let other = cc_client(&app, &org, "Other").await;
    let other_secret_id = list(&app, &org).await.body[1]["secrets"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let res = delete(
        &app,
        &format!("{}/{other_secret_id}", org.secrets(&client.id)),
        &org.admin,
    )
    .await;
    assert_error(&res, 404, "not_found");
    assert!(works(&app, &other.id, &other.secret).await);

    // Tokens already issued under a deleted secret live on (the secret authenticates the
    // client; it does not own the tokens): deleting the client is the kill switch.
    let jwt = access_token(&app, &other).await;
    let other_path = format!("{}/{other_secret_id}", org.secrets(&other.id));
    delete(&app, &other_path, &org.admin).await.expect(204);
    app.me(&jwt).await.expect(200);
}

/// A creation refused as `400 invalid_request`, with no secret in the answer.
async fn invalid(app: &TestApp, org: &Org, body: Value) {
    let res = create_client(app, org, body.clone()).await;
    assert_eq!(res.status.as_u16(), 400, "{body}: {}", res.text);
    assert_error(&res, 400, "invalid_request");
    assert!(!res.text.contains("lkcs_"), "{body}: {}", res.text);
}

#[tokio::test]
async fn client_settings_are_validated() {
    let app = spawn().await;
    let org = org(&app, "Acme", "admin@acme.example").await;
    // Redirect URIs: https, or http on the loopback only; no fragment; absolute.
    for uri in [
        "http://app.example/callback",
        "http://10.0.0.1/callback",
        "https://app.example/callback#fragment",
        "/callback",
        "app.example/callback",
        "javascript:alert(1)",
        "https://",
        "https://app.example/with space",
        // User-info (issue 9, item 6): browsers would go to evil.example.
        "http://127.0.0.1:80@evil.example/cb",
        "http://localhost@evil.example/cb",
        "https://user:pw@app.example/cb",
    ] {
        invalid(
            &app,
            &org,
            json!({
                "name": "Web", "grant_types": ["authorization_code"], "redirect_uris": [uri],
            }),
        )
        .await;
    }
    for uri in [
        "https://app.example/callback",
        "http://localhost:8080/callback",
        "http://127.0.0.1/cb",
        "https://app.example/cb?x=1",
    ] {
        let res = create_client(
            &app,
            &org,
            json!({ "name": "Web", "grant_types": ["authorization_code"], "redirect_uris": [uri] }),
        )
        .await
        .expect(201);
        assert_eq!(res.body["redirect_uris"], json!([uri]));
    }

    // A public client has no secret and cannot use client credentials.
    invalid(
        &app,
        &org,
        json!({
            "name": "SPA", "grant_types": ["client_credentials"], "confidential": false,
        }),
    )
    .await;
    invalid(
        &app,
        &org,
        json!({
            "name": "SPA", "grant_types": ["authorization_code", "client_credentials"],
            "redirect_uris": ["https://spa.example/cb"], "confidential": false,
        }),
    )
    .await;
    let res = create_client(
        &app,
        &org,
        json!({
            "name": "SPA", "grant_types": ["authorization_code"],
            "redirect_uris": ["https://spa.example/cb"], "confidential": false,
        }),
    )
    .await
    .expect(201);
    assert!(res.body.get("client_secret").is_none(), "{}", res.text);
    assert_eq!(res.body["secrets"], json!([]));
    assert_eq!(res.body["confidential"], false);
    let spa = res.str("id");
    assert_error(
        &app.post(&org.secrets(&spa), &org.admin, json!({})).await,
        409,
        "conflict",
    );
    assert_error(
        &patch(
            &app,
            &org.client(&spa),
            &org.admin,
            json!({ "grant_types": ["client_credentials"] }),
        )
        .await,
        400,
        "invalid_request",
    );

    // The authorization code grant needs a redirect URI; grant types must be known; a name.
    invalid(
        &app,
        &org,
        json!({ "name": "Web", "grant_types": ["authorization_code"] }),
    )
    .await;
    invalid(&app, &org, json!({ "name": "x", "grant_types": [] })).await;
    invalid(
        &app,
        &org,
        json!({ "name": "x", "grant_types": ["password"] }),
    )
    .await;
    invalid(
        &app,
        &org,
        json!({ "name": "x", "grant_types": ["implicit"] }),
    )
    .await;
    invalid(
        &app,
        &org,
        json!({ "name": "", "grant_types": ["client_credentials"] }),
    )
    .await;
    invalid(
        &app,
        &org,
        json!({ "name": "x".repeat(201), "grant_types": ["client_credentials"] }),
    )
    .await;
    invalid(
        &app,
        &org,
        json!({ "name": "x", "grant_types": ["client_credentials"], "scopes": ["a b"] }),
    )
    .await;
    invalid(
        &app,
        &org,
        json!({ "name": "x", "grant_types": ["client_credentials"], "scopes": ["a\"b"] }),
    )
    .await;
    invalid(
        &app,
        &org,
        json!({ "name": "x", "grant_types": ["client_credentials"], "scopes": [""] }),
    )
    .await;
    // Unknown or unbindable fields.
    invalid(
        &app,
        &org,
        json!({ "name": "x", "grant_types": ["client_credentials"], "org_id": "org_x" }),
    )
    .await;
    invalid(
        &app,
        &org,
        json!({ "name": "x", "grant_types": ["client_credentials"], "client_secret": "lkcs_mine" }),
    )
    .await;
    invalid(&app, &org, json!({ "grant_types": ["client_credentials"] })).await;

    // PATCH keeps the same rules.
    let client = cc_client(&app, &org, "Partner").await;
    for body in [
        json!({ "scopes": ["api reports:read"] }),
        json!({ "grant_types": ["authorization_code"] }),
        json!({ "redirect_uris": ["http://app.example/cb"] }),
        json!({ "grant_types": [] }),
        json!({ "secret": "x" }),
        json!({ "confidential": false }),
    ] {
        let res = patch(&app, &org.client(&client.id), &org.admin, body.clone()).await;
        assert_eq!(res.status.as_u16(), 400, "{body}: {}", res.text);
    }
    // Taking client_credentials away stops the grant at once.
    let res = patch(
        &app,
        &org.client(&client.id),
        &org.admin,
        json!({ "grant_types": ["authorization_code"], "redirect_uris": ["https://p.example/cb"] }),
    )
    .await
    .expect(200);
    assert_eq!(res.body["grant_types"], json!(["authorization_code"]));
    let res = token_form(&app, Some(&basic(&client.id, &client.secret)), CC).await;
    assert_oauth_error(&res, 400, "unauthorized_client");
}

#[tokio::test]
async fn every_change_to_a_client_is_in_the_audit_log_without_secrets() {
    let app = spawn().await;
    let org = org(&app, "Acme", "admin@acme.example").await;
    let client = cc_client(&app, &org, "Partner").await;
    patch(
        &app,
        &org.client(&client.id),
        &org.admin,
        json!({ "name": "Partner 2" }),
    )
    .await
    .expect(200);
    let res = app
        .post(&org.secrets(&client.id), &org.admin, json!({}))
        .await
        .expect(201);
    let (secret_id, secret) = (res.str("id"), res.str("secret"));
    delete(
        &app,
        &format!("{}/{secret_id}", org.secrets(&client.id)),
        &org.admin,
    )
    .await
    .expect(204);
    delete(&app, &org.client(&client.id), &org.admin)
        .await
        .expect(204);

    let events = app
        .get(&format!("/v1/orgs/{}/events", org.id), &org.admin)
        .await
        .expect(200);
    let ours: Vec<&Value> = events
        .body
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["subject"]["id"] == client.id.as_str())
        .collect();
    let actions: Vec<&str> = ours.iter().filter_map(|e| e["action"].as_str()).collect();
    // Newest first.
    assert_eq!(
        actions,
        [
            "client.deleted",
            "client_secret.revoked",
            "client_secret.created",
            "client.updated",
            "client.created",
        ],
        "{}",
        events.text
    );
    for event in &ours {
        assert_eq!(event["subject"]["kind"], "client");
        assert_eq!(event["org_id"], org.id.as_str());
        assert_eq!(event["outcome"], "success");
        assert!(
            event["actor"]
                .as_str()
                .is_some_and(|a| a.starts_with("usr_")),
            "{event}"
        );
    }
    assert_eq!(ours[1]["details"]["secret_id"], secret_id.as_str());
    assert_eq!(ours[4]["details"]["name"], "Partner");
    for secret in [&client.secret, &secret] {
        assert!(
            !events.text.contains(secret.as_str()),
            "a secret in the log"
        );
        assert!(!events.text.contains(&secret[5..]), "a secret in the log");
    }
}

/// `latchkey client create --json` against its own data directory, then the real server
/// issues tokens to that client; a revocation survives a restart of the server.
#[tokio::test]
async fn the_cli_creates_a_client_that_the_server_accepts() {
    let bin = Binary::fresh();
    bin.create_user("admin@acme.example", PASSWORD).await;
    let ran = bin
        .run(&["org", "create", "--name", "Acme"], None)
        .await
        .ok();
    let org = ran.stdout.trim().to_owned();

    let ran = bin
        .run(
            &[
                "--json",
                "client",
                "create",
                "--org",
                &org,
                "--name",
                "Reporting partner",
                "--grant",
                "client_credentials",
                "--scope",
                "api",
                "--introspect",
            ],
            None,
        )
        .await
        .ok();
    let out: Value = serde_json::from_str(ran.stdout.trim())
        .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", ran.stdout));
    let id = out["client_id"].as_str().unwrap().to_owned();
    let secret = out["client_secret"].as_str().unwrap().to_owned();
    assert!(
        id.starts_with("cli_") && secret.starts_with("lkcs_"),
        "{out}"
    );
    assert_eq!(out.as_object().unwrap().len(), 2, "{out}");

    // Plain text, a public client, and refusals.
    let ran = bin
        .run(
            &[
                "client",
                "create",
                "--org",
                &org,
                "--name",
                "SPA",
                "--grant",
                "authorization_code",
                "--redirect-uri",
                "https://spa.example/cb",
                "--public",
            ],
            None,
        )
        .await
        .ok();
    assert!(
        ran.stdout.contains("cli_") && !ran.stdout.contains("lkcs_"),
        "{}",
        ran.stdout
    );
    bin.run(
        &[
            "client",
            "create",
            "--org",
            &org,
            "--name",
            "x",
            "--grant",
            "client_credentials",
            "--public",
        ],
        None,
    )
    .await
    .fails_with("client_credentials");
    // Scopes bound the CLI too (issue 9, item 1): `links` needs the organisation feature.
    bin.run(
        &[
            "client",
            "create",
            "--org",
            &org,
            "--name",
            "x",
            "--grant",
            "client_credentials",
            "--scope",
            "links",
        ],
        None,
    )
    .await
    .fails_with("links");
    bin.run(
        &[
            "client",
            "create",
            "--org",
            &org,
            "--name",
            "x",
            "--grant",
            "authorization_code",
            "--redirect-uri",
            "http://app.example/cb",
        ],
        None,
    )
    .await
    .fails_with("redirect");
    bin.run(
        &[
            "client",
            "create",
            "--org",
            "org_missing",
            "--name",
            "x",
            "--grant",
            "client_credentials",
        ],
        None,
    )
    .await
    .fails_with("org");

    let server = bin.serve(&[], None, None).await;
    let token = |server: &crate::helpers::Server| {
        server
            .client
            .post(format!("{}/oauth2/token", server.url))
            .basic_auth(&id, Some(&secret))
            .form(&[("grant_type", "client_credentials"), ("scope", "api")])
            .send()
    };
    let res = TestApp::read(token(&server).await.unwrap())
        .await
        .expect(200);
    let jwt = res.str("access_token");
    assert_eq!(res.body["scope"], "api");
    let me = server
        .call(Method::GET, "/v1/me", Some(&jwt), None)
        .await
        .expect(200);
    assert_eq!(me.body["principal"]["kind"], "client");
    assert_eq!(me.body["principal"]["id"], id.as_str());
    assert_eq!(me.body["accounts"][0]["id"], org.as_str());

    // Revoked, then the server restarts: the deny-list is durable.
    let revoke = server
        .client
        .post(format!("{}/oauth2/revoke", server.url))
        .basic_auth(&id, Some(&secret))
        .form(&[("token", jwt.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(revoke.status().as_u16(), 200);
    let refused = server.call(Method::GET, "/v1/me", Some(&jwt), None).await;
    assert_eq!(refused.status.as_u16(), 401, "{}", refused.text);
    let status = server.terminate().await;
    assert!(status.success(), "{status}");

    let server = bin.serve(&[], None, None).await;
    let refused = server.call(Method::GET, "/v1/me", Some(&jwt), None).await;
    assert_eq!(refused.status.as_u16(), 401, "{}", refused.text);
    // The client and its secret survived too.
    let res = TestApp::read(token(&server).await.unwrap())
        .await
        .expect(200);
    server
        .call(Method::GET, "/v1/me", Some(&res.str("access_token")), None)
        .await
        .expect(200);
    tokio::time::timeout(Duration::from_secs(20), server.terminate())
        .await
        .unwrap();
}

/// Issue 9, item 1: the exact attack. An organisation without the `links` feature may not give
/// a client `links`, nor a scope no organisation type has.
#[tokio::test]
async fn a_client_gets_only_scopes_its_organisation_may_give() {
    let app = spawn().await;
    let org = org(&app, "Acme", "admin@acme.example").await;
    let attack = json!({
        "name": "x",
        "grant_types": ["client_credentials"],
        "scopes": ["links", "admin:everything"],
    });
    assert_error(
        &create_client(&app, &org, attack).await,
        403,
        "feature_not_enabled",
    );
    let unknown = json!({
        "name": "x", "grant_types": ["client_credentials"], "scopes": ["api", "admin:everything"],
    });
    assert_error(
        &create_client(&app, &org, unknown).await,
        400,
        "invalid_request",
    );
    assert_eq!(list(&app, &org).await.body, json!([]), "nothing was made");

    // Nor by a change, and not by the operator CLI either (one service function).
    let client = cc_client(&app, &org, "Partner").await;
    for (scopes, status, code) in [
        (json!(["links"]), 403, "feature_not_enabled"),
        (json!(["admin:everything"]), 400, "invalid_request"),
    ] {
        let res = patch(
            &app,
            &org.client(&client.id),
            &org.admin,
            json!({ "scopes": scopes }),
        )
        .await;
        assert_error(&res, status, code);
    }
    let record = app.service().find_org(&org.id).await.unwrap();
    let spec = latchkey_service::oauth::clients::ClientSpec {
        name: "cli".into(),
        grant_types: vec!["client_credentials".into()],
        scopes: vec!["links".into()],
        confidential: true,
        ..Default::default()
    };
    let refused = app
        .service()
        .create_client(&latchkey_service::Caller::operator(), &record, spec)
        .await;
    assert!(refused.is_err(), "the CLI path checks scopes too");
    let token = access_token(&app, &client).await;
    let me = app.me(&token).await.expect(200);
    assert_eq!(me.body["scopes"], json!(["api", "reports:read"]));
}

/// Issue 9, item 1: removing a feature takes its scopes out of live access tokens on the next
/// request, in `/v1/me` and in introspection, and out of tokens issued later.
#[tokio::test]
async fn removing_a_feature_takes_its_scopes_out_of_live_access_tokens() {
    let app = spawn().await;
    let org = org(&app, "Acme", "admin@acme.example").await;
    let operator = latchkey_service::Caller::operator();
    app.service()
        .update_org(&operator, &org.id, &["links".into()], &[], None)
        .await
        .unwrap();
    let res = create_client(
        &app,
        &org,
        json!({ "name": "Linker", "grant_types": ["client_credentials"], "scopes": ["api", "links"] }),
    )
    .await
    .expect(201);
    let client = crate::oauth_helpers::Registered {
        id: res.str("id"),
        secret: res.str("client_secret"),
    };
    let rs = crate::oauth_helpers::cc_client_with(&app, &org, "Resource server", true).await;
    let token = access_token(&app, &client).await;
    let introspect = |token: String| {
        let app = &app;
        let rs = &rs;
        async move {
            crate::oauth_helpers::form(
                app,
                "/oauth2/introspect",
                Some(&basic(&rs.id, &rs.secret)),
                Some("application/x-www-form-urlencoded"),
                &format!("token={token}"),
            )
            .await
            .expect(200)
        }
    };
    assert_eq!(
        app.me(&token).await.expect(200).body["scopes"],
        json!(["api", "links"])
    );
    assert_eq!(introspect(token.clone()).await.body["scope"], "api links");

    app.service()
        .update_org(&operator, &org.id, &[], &["links".into()], None)
        .await
        .unwrap();
    assert_eq!(
        app.me(&token).await.expect(200).body["scopes"],
        json!(["api"])
    );
    let body = introspect(token.clone()).await.body;
    assert_eq!(body["active"], true);
    assert_eq!(body["scope"], "api");
    let res = token_form(&app, Some(&basic(&client.id, &client.secret)), CC)
        .await
        .expect(200);
    assert_eq!(res.body["scope"], "api");
    let res = token_form(
        &app,
        Some(&basic(&client.id, &client.secret)),
        "grant_type=client_credentials&scope=links",
    )
    .await;
    assert_oauth_error(&res, 400, "invalid_scope");
}

/// Issue 9, item 1: the `introspect` permission is an operator's to give, never an admin's.
#[tokio::test]
async fn an_admin_cannot_grant_the_introspect_permission() {
    let app = spawn().await;
    let org = org(&app, "Acme", "admin@acme.example").await;
    let res = create_client(
        &app,
        &org,
        json!({ "name": "x", "grant_types": ["client_credentials"], "scopes": ["api"], "introspect": true }),
    )
    .await;
    assert_error(&res, 403, "forbidden");
    let client = cc_client(&app, &org, "Partner").await;
    let res = patch(
        &app,
        &org.client(&client.id),
        &org.admin,
        json!({ "introspect": true }),
    )
    .await;
    assert_error(&res, 403, "forbidden");
    let listed = list(&app, &org).await;
    assert_eq!(listed.body[0]["introspect"], false);
    let introspected = crate::oauth_helpers::form(
        &app,
        "/oauth2/introspect",
        Some(&basic(&client.id, &client.secret)),
        Some("application/x-www-form-urlencoded"),
        "token=x",
    )
    .await;
    assert_oauth_error(&introspected, 401, "invalid_client");

    // An operator's client has it, and its admin may read it and take it away.
    let rs = crate::oauth_helpers::cc_client_with(&app, &org, "Resource server", true).await;
    let listed = list(&app, &org).await;
    let entry = listed
        .body
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == rs.id.as_str());
    assert_eq!(entry.map(|c| c["introspect"].clone()), Some(json!(true)));
    let res = patch(
        &app,
        &org.client(&rs.id),
        &org.admin,
        json!({ "introspect": false }),
    )
    .await
    .expect(200);
    assert_eq!(res.body["introspect"], false);
}
