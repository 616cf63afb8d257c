//! Token type policies for organisations (SPEC 2.1): `max_active` under a race, the activation
//! delay, lifetime and `expires_in_days`, `requires feature`, and types from configuration.

use latchkey_core::policy::{Lifetime, OwnerKind, TokenTypeConfig};
use latchkey_core::token_string::ParsedToken;
use latchkey_core::{PolicyDuration, Role};
use latchkey_service::Caller;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{PASSWORD, TestApp, assert_error, assert_refused, rfc3339};
use crate::org_helpers::{AdminOrg, create, create_token, get, list};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_parallel_creates_admit_exactly_the_free_slots() {
    const MAX: usize = 3;
    const RACERS: usize = 50;
    let app = TestApp::builder()
        .token_type(
            "s2s",
            TokenTypeConfig {
                max_active: Some(MAX as u32),
                activation_delay: Some(PolicyDuration::ZERO),
                ..Default::default()
            },
        )
        .start()
        .await;
    let org = crate::org_helpers::admin_org(&app, "Race", "race@example.com").await;
    // One slot is taken already; a revoked token frees its slot.
    create_token(&app, &org, "s2s", "existing").await;
    let (gone, _) = create_token(&app, &org, "s2s", "gone").await;
    app.call(
        reqwest::Method::DELETE,
        &org.token(&gone),
        Some(&org.admin),
        None,
    )
    .await
    .expect(200);
    let free = MAX - 1;

    let mut handles = Vec::new();
    for i in 0..RACERS {
        let client = app.client.clone();
        let url = format!("{}{}", app.url, org.tokens());
        let session = org.admin.clone();
        handles.push(tokio::spawn(async move {
            let res = client
                .post(url)
                .bearer_auth(session)
                .json(&json!({ "name": format!("racer {i}"), "type": "s2s" }))
                .send()
                .await
                .unwrap_or_else(|e| panic!("racer {i}: {e}"));
            let status = res.status();
            let body: Value = res.json().await.unwrap_or(Value::Null);
            (status, body)
        }));
    }
    let mut created = Vec::new();
    let mut refused = 0;
    for handle in handles {
        let (status, body) = handle.await.unwrap();
        match status {
            StatusCode::CREATED => {
                assert!(
                    body["secret"]
                        .as_str()
                        .is_some_and(|s| s.starts_with("lks_"))
                );
                created.push(body["id"].as_str().unwrap_or_default().to_owned());
            }
            StatusCode::CONFLICT => {
                assert_eq!(body["error"]["code"], "token_limit_reached", "{body}");
                refused += 1;
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!(created.len(), free, "exactly the free slots must win");
    assert_eq!(refused, RACERS - free);
    let live: Vec<Value> = list(&app, &org)
        .await
        .into_iter()
        .filter(|t| t["type"] == "s2s" && t["status"] == "active")
        .collect();
    assert_eq!(live.len(), MAX);
    // The other types' limits are their own: the api type still has a free slot.
    create(&app, &org, json!({ "name": "second api", "type": "api" }))
        .await
        .expect(201);
}

#[tokio::test]
async fn a_new_token_is_pending_for_the_activation_delay() {
    let app = TestApp::spawn().await;
    let org = crate::org_helpers::admin_org(&app, "Pending", "pending@example.com").await;
    let now = app.now();
    let res = create(&app, &org, json!({ "name": "backend", "type": "s2s" }))
        .await
        .expect(201);
    let id = res.str("id");
    let secret = res.str("secret");
    let active_from = now + time::Duration::minutes(30);
    assert_eq!(res.str("status"), "pending");
    assert_eq!(res.str("created_at"), rfc3339(now));
    assert_eq!(res.str("active_from"), rfc3339(active_from));
    assert!(res.body["expires_at"].is_null());

    let description = assert_refused(&app.me(&secret).await, "pending");
    assert!(
        description.contains(&rfc3339(active_from)),
        "the description must name the time: {description}"
    );
    assert!(description.contains("1800s"), "{description}");
    assert_eq!(get(&app, &org, &id).await["status"], "pending");

    app.clock.advance(1_799);
    let description = assert_refused(&app.me(&secret).await, "pending");
    assert!(description.contains("1s"), "{description}");
    app.clock.advance(1);
    let me = app.me(&secret).await.expect(200);
    assert_eq!(me.body["principal"]["kind"], "organisation");
    assert_eq!(me.body["token"]["id"], id.as_str());
    assert_eq!(get(&app, &org, &id).await["status"], "active");
}

#[tokio::test]
async fn expires_in_days_and_the_lifetime_bound_the_expiry() {
    let app = TestApp::builder()
        .token_type(
            "s2s",
            TokenTypeConfig {
                activation_delay: Some(PolicyDuration::ZERO),
                lifetime: Some(Lifetime(Some(PolicyDuration::from_days(30)))),
                max_active: Some(10),
                ..Default::default()
            },
        )
        .start()
        .await;
    let mut org = crate::org_helpers::admin_org(&app, "Life", "life@example.com").await;
    let now = app.now();

    // The type's lifetime is the default expiry.
    let res = create(&app, &org, json!({ "name": "default", "type": "s2s" }))
        .await
        .expect(201);
    assert_eq!(
        res.str("expires_at"),
        rfc3339(now + time::Duration::days(30))
    );

    // Shorter on request; never longer; never zero.
    let res = create(
        &app,
        &org,
        json!({ "name": "short", "type": "s2s", "expires_in_days": 2 }),
    )
    .await
    .expect(201);
    let short = res.str("secret");
    let short_id = res.str("id");
    assert_eq!(
        res.str("expires_at"),
        rfc3339(now + time::Duration::days(2))
    );
    for days in [0, 31, 100_000] {
        let res = create(
            &app,
            &org,
            json!({ "name": "bad", "type": "s2s", "expires_in_days": days }),
        )
        .await;
        assert_error(&res, 400, "invalid_request");
    }
    create(
        &app,
        &org,
        json!({ "name": "bad", "type": "s2s", "expires_in_days": -1 }),
    )
    .await
    .expect(400);

    // A type with no lifetime takes any expiry up to ten years.
    let res = create(
        &app,
        &org,
        json!({ "name": "api", "type": "api", "expires_in_days": 3650 }),
    )
    .await
    .expect(201);
    assert_eq!(
        res.str("expires_at"),
        rfc3339(now + time::Duration::days(3650))
    );
    let res = create(
        &app,
        &org,
        json!({ "name": "api", "type": "api", "expires_in_days": 3651 }),
    )
    .await;
    assert_error(&res, 400, "invalid_request");

    // Expired: refused, and the record stays as `expired`.
    app.me(&short).await.expect(200);
    app.clock.advance(2 * 86_400 - 1);
    app.me(&short).await.expect(200);
    app.clock.advance(1);
    assert_refused(&app.me(&short).await, "expired");
    // (Sessions last 12 hours: sign in again.)
    org.admin = app.login("life@example.com").await;
    assert_eq!(get(&app, &org, &short_id).await["status"], "expired");
    assert_eq!(get(&app, &org, &short_id).await["accounts"], json!([]));
}

#[tokio::test]
async fn links_tokens_need_the_links_feature() {
    let app = TestApp::spawn().await;
    let plain = crate::org_helpers::admin_org(&app, "Plain", "plain@example.com").await;
    let res = create(&app, &plain, json!({ "name": "links", "type": "links" })).await;
    assert_error(&res, 403, "feature_not_enabled");
    assert_eq!(list(&app, &plain).await.len(), 1, "only the Default token");

    let (admin_id, admin) = app.signed_in("links@example.com").await;
    let org = app
        .service()
        .create_org(&Caller::operator(), "Linked", &["links".into()])
        .await
        .unwrap();
    let org_id = org.id.to_string();
    app.add_member(&org_id, "links@example.com", Role::Admin)
        .await;
    let org = AdminOrg {
        id: org_id,
        admin_id,
        admin,
    };
    let res = create(&app, &org, json!({ "name": "links", "type": "links" }))
        .await
        .expect(201);
    let id = res.str("id");
    let secret = res.str("secret");
    assert!(secret.starts_with("lkl_"), "{secret}");
    assert!(ParsedToken::parse(&secret).is_ok());
    assert_eq!(res.str("type"), "links");
    assert_eq!(res.body["scopes"], json!(["links"]));
    assert_eq!(res.str("status"), "pending");
    app.clock.advance(1_800);
    let me = app.me(&secret).await.expect(200);
    assert_eq!(me.body["principal"]["id"], org.id.as_str());
    assert_eq!(me.body["scopes"], json!(["links"]));

    // The feature removed: the token is refused at once, and reaches nothing.
    app.service()
        .update_org(&Caller::operator(), &org.id, &[], &["links".into()], None)
        .await
        .unwrap();
    assert_refused(&app.me(&secret).await, "disabled");
    assert_eq!(get(&app, &org, &id).await["accounts"], json!([]));
    let res = create(&app, &org, json!({ "name": "again", "type": "links" })).await;
    assert_error(&res, 403, "feature_not_enabled");
    // The organisation's other tokens are not affected.
    let (default_id, _) = crate::org_helpers::default_token(&app, &org).await;
    let jwt = crate::org_helpers::reveal(&app, &org, &default_id).await;
    app.me(&jwt).await.expect(200);

    // Back on: the token (never revoked) works again.
    app.service()
        .update_org(&Caller::operator(), &org.id, &["links".into()], &[], None)
        .await
        .unwrap();
    app.me(&secret).await.expect(200);
}

#[tokio::test]
async fn types_defined_in_configuration_work_for_organisations() {
    let app = TestApp::builder()
        .token_type(
            "deploy",
            TokenTypeConfig {
                owner: Some(OwnerKind::Organisation),
                prefix: Some("lkd".into()),
                max_active: Some(1),
                scopes: Some(vec!["deploy".into()]),
                ..Default::default()
            },
        )
        .start()
        .await;
    let org = crate::org_helpers::admin_org(&app, "Deployer", "deploy@example.com").await;
    let res = create(&app, &org, json!({ "name": "ci", "type": "deploy" }))
        .await
        .expect(201);
    let id = res.str("id");
    let secret = res.str("secret");
    assert!(secret.starts_with("lkd_") && ParsedToken::parse(&secret).is_ok());
    // A new type starts conservative: no delay, shown once.
    assert_eq!(res.str("status"), "active");
    let me = app.me(&secret).await.expect(200);
    assert_eq!(me.body["principal"]["kind"], "organisation");
    assert_eq!(me.body["token"]["type"], "deploy");
    assert_eq!(me.body["scopes"], json!(["deploy"]));
    let res = app
        .post(
            &format!("{}/reveal", org.token(&id)),
            &org.admin,
            json!({ "password": PASSWORD }),
        )
        .await;
    assert_error(&res, 409, "not_revealable");
    let res = create(&app, &org, json!({ "name": "ci 2", "type": "deploy" })).await;
    assert_error(&res, 409, "token_limit_reached");

    // Types that do not exist, or belong to users: 400.
    for t in ["nope", "personal"] {
        let res = create(&app, &org, json!({ "name": "x", "type": t })).await;
        assert_error(&res, 400, "invalid_request");
    }
    // And an organisation type is not a personal one.
    let res = app
        .create_token(
            &org.admin,
            json!({ "name": "x", "type": "deploy", "password": PASSWORD }),
        )
        .await;
    assert_error(&res, 400, "invalid_request");
}
