//! `latchkey db copy --to URL` (SPEC 7): a SQLite deployment moved into an empty PostgreSQL
//! database keeps every token, key, client and event, checked by serving on the copy with the
//! same master key. Needs a PostgreSQL server (`TEST_POSTGRES_URL`, started by `scripts/test`)
//! whatever `TEST_BACKEND` says: the source is always SQLite.

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{Binary, PASSWORD, Ran, Server, fresh_postgres_database};

/// The issuer of both deployments: a moved deployment keeps its public URL (JWTs name it).
const PUBLIC_URL: &str = "http://latchkey.example.com";

/// A binary on SQLite in its own data directory, even when the suite runs on PostgreSQL.
fn on_sqlite() -> Binary {
    let bin = Binary::fresh();
    let data_dir = bin.dir.path().join("data");
    let url = format!("sqlite://{}", data_dir.join("latchkey.db").display());
    std::fs::write(
        &bin.config,
        format!(
            "data_dir = {:?}\npassword_hash_concurrency = 2\ndatabase_url = {url:?}\npublic_url = {PUBLIC_URL:?}\n",
            data_dir.display().to_string()
        ),
    )
    .unwrap();
    bin
}

async fn sign_in(server: &Server, email: &str) -> String {
    server.login(email).await
}

/// A client-credentials access token (a JWT) for the client.
async fn client_credentials(server: &Server, id: &str, secret: &str) -> String {
    let res = server
        .client
        .post(format!("{}/oauth2/token", server.url))
        .basic_auth(id, Some(secret))
        .form(&[("grant_type", "client_credentials"), ("scope", "api")])
        .send()
        .await
        .unwrap();
    let res = crate::helpers::TestApp::read(res).await.expect(200);
    res.str("access_token")
}

async fn kids(server: &Server) -> Vec<String> {
    let jwks = server
        .call(Method::GET, "/.well-known/jwks.json", None, None)
        .await
        .expect(200);
    let mut kids: Vec<String> = jwks.body["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect();
    kids.sort();
    kids
}

async fn reveal(server: &Server, session: &str, org: &str, id: &str) -> String {
    server
        .call(
            Method::POST,
            &format!("/v1/orgs/{org}/tokens/{id}/reveal"),
            Some(session),
            Some(json!({ "password": PASSWORD })),
        )
        .await
        .expect(200)
        .str("secret")
}

/// Row counts of every table of a PostgreSQL database (but sqlx's own).
async fn pg_counts(url: &str) -> Vec<(String, i64)> {
    let pool = sqlx::PgPool::connect(url).await.unwrap();
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::TEXT FROM information_schema.tables
         WHERE table_schema = current_schema() AND table_name <> '_sqlx_migrations' ORDER BY 1",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let mut counts = Vec::new();
    for t in tables {
        let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {t}")))
            .fetch_one(&pool)
            .await
            .unwrap();
        counts.push((t, n));
    }
    pool.close().await;
    counts
}

/// Every event of `before` is in `after`, whole and in the same order (the server may have
/// written more before it stopped: a first use from a new address is recorded after the answer).
#[track_caller]
fn in_order(before: &Value, after: &Value) {
    let before = before.as_array().unwrap();
    let after = after.as_array().unwrap();
    assert!(!before.is_empty());
    let mut rest = after.iter();
    for e in before {
        assert!(rest.any(|a| a == e), "{e} is not in {after:?} in order");
    }
}

fn rows(copied: &Value, table: &str) -> (i64, i64) {
    let t = copied["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["table"] == table)
        .unwrap_or_else(|| panic!("no {table} in {copied}"));
    (t["source"].as_i64().unwrap(), t["target"].as_i64().unwrap())
}

#[tokio::test]
async fn a_sqlite_deployment_copied_to_postgresql_keeps_its_tokens_keys_clients_and_events() {
    let source = on_sqlite();
    source.create_user("alice@example.com", PASSWORD).await;
    source.create_user("bob@example.com", PASSWORD).await;
    let org = source
        .run(
            &["org", "create", "--name", "Acme", "--feature", "links"],
            None,
        )
        .await
        .ok()
        .stdout
        .trim()
        .to_owned();
    for (email, role) in [
        ("alice@example.com", "admin"),
        ("bob@example.com", "member"),
    ] {
        source
            .run(
                &[
                    "org",
                    "add-member",
                    "--org",
                    &org,
                    "--email",
                    email,
                    "--role",
                    role,
                ],
                None,
            )
            .await
            .ok();
    }
    let client = source
        .create_client(
            &org,
            "Worker",
            &["--grant", "client_credentials", "--scope", "api"],
        )
        .await;
    let (client_id, client_secret) = (
        client["client_id"].as_str().unwrap().to_owned(),
        client["client_secret"].as_str().unwrap().to_owned(),
    );

    // Through the API: personal tokens (one revoked), organisation tokens (the revealable JWT
    // `Default` api token made with the organisation, an s2s token whose activation delay
    // mails a cancel link to the outbox), a client-credentials grant, the audit log.
    let server = source.serve(&[], None, None).await;
    let session = sign_in(&server, "alice@example.com").await;
    // One live personal token at a time (max_active 1): the old one is revoked first.
    let mut personal: Vec<(String, String)> = Vec::new();
    for name in ["old laptop", "laptop"] {
        if let Some((id, _)) = personal.last() {
            server.revoke_personal_token(&session, id.as_str()).await;
        }
        let res = server
            .call(
                Method::POST,
                "/v1/user/tokens",
                Some(&session),
                Some(json!({ "name": name, "password": PASSWORD })),
            )
            .await
            .expect(201);
        personal.push((res.str("id"), res.str("secret")));
    }
    let (_, revoked) = personal[0].clone();
    let (_, live) = personal[1].clone();
    let list = server
        .call(
            Method::GET,
            &format!("/v1/orgs/{org}/tokens"),
            Some(&session),
            None,
        )
        .await
        .expect(200);
    let default_id = list.body[0]["id"].as_str().unwrap().to_owned();
    let jwt = reveal(&server, &session, &org, &default_id).await;
    let s2s = server
        .call(
            Method::POST,
            &format!("/v1/orgs/{org}/tokens"),
            Some(&session),
            Some(json!({ "name": "billing", "type": "s2s" })),
        )
        .await
        .expect(201)
        .str("id");
    // A client-credentials access token, revoked: it goes on the deny-list.
    let denied = client_credentials(&server, &client_id, &client_secret).await;
    server
        .call(Method::GET, "/v1/me", Some(&denied), None)
        .await
        .expect(200);
    let revoke = server
        .client
        .post(format!("{}/oauth2/revoke", server.url))
        .basic_auth(&client_id, Some(&client_secret))
        .form(&[("token", denied.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(revoke.status().as_u16(), 200);
    server
        .call(Method::GET, "/v1/me", Some(&live), None)
        .await
        .expect(200);
    server
        .call(Method::GET, "/v1/me", Some(&jwt), None)
        .await
        .expect(200);
    // The identity provider's provisioning credential, and a person it made.
    let made = source
        .run(
            &["--json", "provisioning", "create", "--name", "Okta"],
            None,
        )
        .await
        .ok();
    let scim_secret = serde_json::from_str::<Value>(made.stdout.trim()).unwrap()["secret"]
        .as_str()
        .unwrap()
        .to_owned();
    let provisioned = server
        .call(
            Method::POST,
            "/scim/v2/Users",
            Some(&scim_secret),
            Some(serde_json::json!({ "userName": "scim@example.com", "externalId": "00u9" })),
        )
        .await
        .expect(201)
        .str("id");
    let kids_before = kids(&server).await;
    let user_events = server
        .call(
            Method::GET,
            "/v1/user/events?limit=200",
            Some(&session),
            None,
        )
        .await
        .expect(200)
        .body;
    let org_events = server
        .call(
            Method::GET,
            &format!("/v1/orgs/{org}/events?limit=200"),
            Some(&session),
            None,
        )
        .await
        .expect(200)
        .body;
    let actions: Vec<&str> = org_events
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    assert!(
        actions.contains(&"token.revealed") && actions.contains(&"member.set"),
        "{actions:?}"
    );
    // Stop the server first (docs): nothing is written after the copy's snapshot.
    assert!(server.terminate().await.success());

    let target = fresh_postgres_database().await;
    let ran = source
        .run(&["--json", "db", "copy", "--to", &target], None)
        .await
        .ok();
    let copied: Value = serde_json::from_str(&ran.stdout).unwrap();
    assert_eq!(copied["copied"], true, "{copied}");
    for table in [
        "users",
        "orgs",
        "org_features",
        "memberships",
        "sessions",
        "tokens",
        "events",
        "signing_keys",
        "oauth_clients",
        "client_secrets",
        "revoked_access_tokens",
        "outbox",
        "cancel_links",
        "provisioning_credentials",
    ] {
        let (from, to) = rows(&copied, table);
        assert!(from > 0, "{table} should have rows to copy: {copied}");
        assert_eq!(from, to, "{table}: {copied}");
    }
    assert_eq!(rows(&copied, "users"), (3, 3));
    assert_eq!(rows(&copied, "memberships"), (2, 2));
    // Alice's 2 personal tokens, the Default api token and the s2s token.
    assert_eq!(rows(&copied, "tokens"), (4, 4));
    for sum in copied["checksums"].as_array().unwrap() {
        assert_eq!(sum["source"], sum["target"], "{sum}");
    }
    let tables: Vec<&str> = copied["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["table"].as_str().unwrap())
        .collect();
    assert!(
        !tables.contains(&"instances") && !tables.contains(&"changes"),
        "{tables:?}"
    );

    // The same deployment served from PostgreSQL, with the same master key.
    let moved = Binary::on_database(&target, Some(&source.master_key_file()));
    let config = std::fs::read_to_string(&moved.config).unwrap();
    std::fs::write(
        &moved.config,
        format!("{config}public_url = {PUBLIC_URL:?}\n"),
    )
    .unwrap();
    let server = moved.serve(&[], None, None).await;
    server
        .call(Method::GET, "/v1/me", Some(&live), None)
        .await
        .expect(200);
    let me = server
        .call(Method::GET, "/v1/me", Some(&revoked), None)
        .await;
    assert_eq!(
        me.status, 401,
        "the revoked token stays revoked: {}",
        me.text
    );
    // The provisioning credential still opens SCIM, and finds its person by external id.
    let found = server
        .call(
            Method::GET,
            "/scim/v2/Users?filter=externalId%20eq%20%2200u9%22",
            Some(&scim_secret),
            None,
        )
        .await
        .expect(200);
    assert_eq!(found.body["Resources"][0]["id"], Value::String(provisioned));
    // The JWT was signed by the copied signing key, sealed under the master key.
    server
        .call(Method::GET, "/v1/me", Some(&jwt), None)
        .await
        .expect(200);
    assert_eq!(kids(&server).await, kids_before);
    // The old session still signs in; the audit log is the same, then grows on top.
    let after = server
        .call(
            Method::GET,
            "/v1/user/events?limit=200",
            Some(&session),
            None,
        )
        .await
        .expect(200)
        .body;
    in_order(&user_events, &after);
    let org_after = server
        .call(
            Method::GET,
            &format!("/v1/orgs/{org}/events?limit=200"),
            Some(&session),
            None,
        )
        .await
        .expect(200)
        .body;
    in_order(&org_events, &org_after);
    assert_eq!(reveal(&server, &session, &org, &default_id).await, jwt);
    let access = client_credentials(&server, &client_id, &client_secret).await;
    server
        .call(Method::GET, "/v1/me", Some(&access), None)
        .await
        .expect(200);
    let me = server
        .call(Method::GET, "/v1/me", Some(&denied), None)
        .await;
    assert_eq!(me.status, 401, "the deny-list moved too: {}", me.text);
    let listed = server
        .call(
            Method::GET,
            &format!("/v1/orgs/{org}/tokens/{s2s}"),
            Some(&session),
            None,
        )
        .await
        .expect(200);
    assert_eq!(listed.body["name"], "billing", "{}", listed.text);
    // New rows get fresh ids past the copied ones (the sequences were moved on): a new token's
    // creation is the newest event of the organisation's log.
    let fresh = server
        .call(
            Method::POST,
            &format!("/v1/orgs/{org}/tokens"),
            Some(&session),
            Some(json!({ "name": "after the move", "type": "s2s" })),
        )
        .await
        .expect(201)
        .str("id");
    let newest = server
        .call(
            Method::GET,
            &format!("/v1/orgs/{org}/events?limit=1"),
            Some(&session),
            None,
        )
        .await
        .expect(200)
        .body;
    assert!(newest.to_string().contains(&fresh), "{newest}");
    // Passwords moved too.
    sign_in(&server, "bob@example.com").await;
    assert!(server.terminate().await.success());
}

#[tokio::test]
async fn copying_into_a_database_that_is_not_empty_is_refused_and_changes_nothing() {
    let source = on_sqlite();
    source.create_user("carol@example.com", PASSWORD).await;
    let target = fresh_postgres_database().await;
    let other = Binary::on_database(&target, None);
    other.create_user("dave@example.com", PASSWORD).await;
    let before = pg_counts(&target).await;
    assert!(
        before.iter().any(|(t, n)| t == "users" && *n == 1),
        "{before:?}"
    );

    let ran: Ran = source
        .run(&["db", "copy", "--to", &target], None)
        .await
        .fails_with("the target database is not empty");
    assert!(ran.stderr.contains("users: 1"), "{}", ran.stderr);
    assert_eq!(pg_counts(&target).await, before);
    // The first copy into an empty database succeeds, and a second one is refused.
    let empty = fresh_postgres_database().await;
    source.run(&["db", "copy", "--to", &empty], None).await.ok();
    let copied = pg_counts(&empty).await;
    source
        .run(&["db", "copy", "--to", &empty], None)
        .await
        .fails_with("not empty");
    assert_eq!(pg_counts(&empty).await, copied);
}

#[tokio::test]
async fn the_target_must_be_postgresql_and_the_source_sqlite() {
    let source = on_sqlite();
    source.create_user("erin@example.com", PASSWORD).await;
    let elsewhere = source.dir.path().join("other.db");
    for to in [
        format!("sqlite://{}", elsewhere.display()),
        "mysql://root:hunter2@localhost/latchkey".to_owned(),
    ] {
        let ran = source
            .run(&["db", "copy", "--to", &to], None)
            .await
            .fails_with("--to must be a PostgreSQL database URL");
        assert!(!ran.stderr.contains("hunter2"), "{}", ran.stderr);
    }
    assert!(!elsewhere.exists());
    // A deployment already on PostgreSQL has nothing to copy from.
    let pg = fresh_postgres_database().await;
    let on_pg = Binary::on_database(&pg, None);
    let empty = fresh_postgres_database().await;
    on_pg
        .run(&["db", "copy", "--to", &empty], None)
        .await
        .fails_with("db copy copies from SQLite");
}
