//! Governance and incident response for organisation tokens (SPEC 2.4): IP allowlists, the kill
//! switches, the expiry hint header, the operator switches, leak reports, idempotent creates.

use std::collections::BTreeSet;

use latchkey::config::LimitsConfig;
use latchkey_service::Caller;
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{PASSWORD, TestApp, assert_error, assert_refused, rfc3339};
use crate::org_helpers::{
    admin_org, create, create_token, default_token, events, get, list, no_delay, reveal,
    with_action, with_idempotency_key,
};

#[tokio::test]
async fn an_ip_allowlist_refuses_other_addresses_and_alerts_once() {
    let app = no_delay().start().await;
    let org = admin_org(&app, "Fenced", "fenced@example.com").await;
    let res = create(
        &app,
        &org,
        json!({ "name": "office", "type": "s2s", "allowed_ips": ["10.0.0.0/8"] }),
    )
    .await
    .expect(201);
    let id = res.str("id");
    let secret = res.str("secret");
    assert_eq!(res.body["allowed_ips"], json!(["10.0.0.0/8"]));

    for _ in 0..4 {
        assert_refused(&app.me(&secret).await, "ip_not_allowed");
    }
    let log = events(&app, &org).await;
    let refused = with_action(&log, "token.ip_refused");
    assert_eq!(refused.len(), 1, "one alert per new address: {log:?}");
    assert_eq!(refused[0]["subject"]["id"], id.as_str());
    assert_eq!(refused[0]["ip"], "127.0.0.1");
    assert_eq!(refused[0]["outcome"], "ip_not_allowed");
    assert_eq!(refused[0]["details"]["ip"], "127.0.0.1");

    // Allow this address: the very next request works.
    let res = app
        .call(
            Method::PATCH,
            &org.token(&id),
            Some(&org.admin),
            Some(json!({ "allowed_ips": ["127.0.0.1"] })),
        )
        .await
        .expect(200);
    assert_eq!(res.body["allowed_ips"], json!(["127.0.0.1/32"]));
    app.me(&secret).await.expect(200);
    // Back to elsewhere only: refused at once, and no second alert for a known address.
    app.call(
        Method::PATCH,
        &org.token(&id),
        Some(&org.admin),
        Some(json!({ "allowed_ips": ["10.0.0.0/8", "192.168.1.7"] })),
    )
    .await
    .expect(200);
    assert_refused(&app.me(&secret).await, "ip_not_allowed");
    assert_eq!(
        with_action(&events(&app, &org).await, "token.ip_refused").len(),
        1
    );
    // An empty list allows any address.
    let res = app
        .call(
            Method::PATCH,
            &org.token(&id),
            Some(&org.admin),
            Some(json!({ "allowed_ips": [] })),
        )
        .await
        .expect(200);
    assert_eq!(res.body["allowed_ips"], json!([]));
    app.me(&secret).await.expect(200);
    let changes = with_action(&events(&app, &org).await, "token.allowed_ips_changed").len();
    assert_eq!(changes, 3);

    // Invalid entries: 400 on create (nothing created) and on update (nothing changed).
    for bad in ["10.0.0.0/33", "not-an-ip", "", "10.0.0.1/8/8"] {
        let res = create(
            &app,
            &org,
            json!({ "name": "bad", "type": "s2s", "allowed_ips": [bad] }),
        )
        .await;
        assert_error(&res, 400, "invalid_request");
        let res = app
            .call(
                Method::PATCH,
                &org.token(&id),
                Some(&org.admin),
                Some(json!({ "allowed_ips": [bad] })),
            )
            .await;
        assert_error(&res, 400, "invalid_request");
    }
    assert_eq!(list(&app, &org).await.len(), 2);
    assert_eq!(get(&app, &org, &id).await["allowed_ips"], json!([]));
    let many: Vec<String> = (0..101).map(|i| format!("10.0.{i}.0/24")).collect();
    let res = create(
        &app,
        &org,
        json!({ "name": "many", "type": "s2s", "allowed_ips": many }),
    )
    .await;
    assert_error(&res, 400, "invalid_request");
}

#[tokio::test]
async fn the_organisation_kill_switch_revokes_by_type_or_everything() {
    let app = no_delay().start().await;
    let org = admin_org(&app, "Kill", "kill@example.com").await;
    let other = admin_org(&app, "Bystander", "bystander@example.com").await;
    let (default_id, _) = default_token(&app, &org).await;
    let jwt = reveal(&app, &org, &default_id).await;
    let (a_id, a) = create_token(&app, &org, "s2s", "a").await;
    let (b_id, b) = create_token(&app, &org, "s2s", "b").await;
    let (other_id, _) = default_token(&app, &other).await;
    let other_jwt = reveal(&app, &other, &other_id).await;
    for secret in [&jwt, &a, &b, &other_jwt] {
        app.me(secret).await.expect(200);
    }
    let kill = format!("{}/revoke-all", org.tokens());

    let res = app.post(&kill, &org.admin, json!({ "type": "nope" })).await;
    assert_error(&res, 400, "invalid_request");

    let res = app
        .post(&kill, &org.admin, json!({ "type": "s2s" }))
        .await
        .expect(200);
    assert_eq!(res.body["revoked"], 2);
    let ids: BTreeSet<String> = res.body["tokens"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect();
    assert_eq!(ids, BTreeSet::from([a_id.clone(), b_id.clone()]));
    assert_refused(&app.me(&a).await, "revoked");
    assert_refused(&app.me(&b).await, "revoked");
    app.me(&jwt).await.expect(200);

    // No body at all: everything.
    let res = app
        .call(Method::POST, &kill, Some(&org.admin), None)
        .await
        .expect(200);
    let applied = json!({ "instances": 1, "confirmed": 1 });
    assert_eq!(
        res.body,
        json!({ "revoked": 1, "tokens": [default_id], "applied": applied })
    );
    assert_refused(&app.me(&jwt).await, "revoked");
    let res = app.post(&kill, &org.admin, json!({})).await.expect(200);
    assert_eq!(
        res.body,
        json!({ "revoked": 0, "tokens": [], "applied": applied })
    );
    // Another organisation is untouched.
    app.me(&other_jwt).await.expect(200);
    assert!(
        list(&app, &org)
            .await
            .iter()
            .all(|t| t["status"] == "revoked")
    );

    let log = events(&app, &org).await;
    let kills = with_action(&log, "tokens.revoked_all");
    assert_eq!(kills.len(), 3, "{log:?}");
    // Newest first.
    assert_eq!(kills[2]["details"]["type"], "s2s");
    assert_eq!(kills[2]["details"]["count"], 2);
    assert_eq!(kills[1]["details"]["count"], 1);
    assert!(kills[1]["details"]["type"].is_null());
    assert_eq!(kills[1]["details"]["tokens"], json!([default_id]));
    assert_eq!(kills[1]["actor"], org.admin_id.as_str());
    assert_eq!(kills[1]["ip"], "127.0.0.1");
    assert_eq!(kills[1]["outcome"], "success");
    assert_eq!(kills[1]["subject"]["id"], org.id.as_str());
    // New tokens can be made afterwards: the kill switch is not a ban.
    create_token(&app, &org, "s2s", "fresh").await;
}

#[tokio::test]
async fn the_user_kill_switch_needs_the_password() {
    let app = TestApp::spawn().await;
    let (_, session, id, secret) = app.user_with_token("panic@example.com").await;
    app.me(&secret).await.expect(200);
    let path = "/v1/user/tokens/revoke-all";
    let res = app
        .post(path, &session, json!({ "password": "wrong password" }))
        .await;
    assert_error(&res, 403, "invalid_password");
    app.me(&secret).await.expect(200);
    let res = app.call(Method::POST, path, Some(&session), None).await;
    assert_eq!(res.status.as_u16(), 415, "{}", res.text);
    let res = app.post(path, &session, json!({})).await;
    assert_error(&res, 400, "invalid_request");

    let res = app
        .post(path, &session, json!({ "password": PASSWORD }))
        .await
        .expect(200);
    assert_eq!(res.body["revoked"], 1);
    assert_eq!(res.body["tokens"], json!([id]));
    assert_refused(&app.me(&secret).await, "revoked");
    let log = app.get("/v1/user/events", &session).await.expect(200);
    let kills: Vec<&Value> = log
        .body
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["action"] == "tokens.revoked_all")
        .collect();
    assert_eq!(kills.len(), 1, "{}", log.text);
    assert_eq!(kills[0]["details"]["count"], 1);
    assert_eq!(kills[0]["outcome"], "success");
}

#[tokio::test]
async fn a_token_expiring_within_30_days_carries_the_expiry_header() {
    let app = no_delay().start().await;
    let org = admin_org(&app, "Expiring", "expiring@example.com").await;
    let now = app.now();
    let res = create(
        &app,
        &org,
        json!({ "name": "soon", "type": "s2s", "expires_in_days": 10 }),
    )
    .await
    .expect(201);
    let soon = res.str("secret");
    let res = app.me(&soon).await.expect(200);
    assert_eq!(
        res.header("latchkey-token-expires"),
        Some(rfc3339(now + time::Duration::days(10)))
    );
    assert_eq!(
        res.body["token"]["expires_at"],
        rfc3339(now + time::Duration::days(10)).as_str()
    );

    let res = create(
        &app,
        &org,
        json!({ "name": "later", "type": "s2s", "expires_in_days": 40 }),
    )
    .await
    .expect(201);
    let later = res.str("secret");
    assert!(
        app.me(&later)
            .await
            .header("latchkey-token-expires")
            .is_none()
    );
    let (default_id, _) = default_token(&app, &org).await;
    let jwt = reveal(&app, &org, &default_id).await;
    assert!(
        app.me(&jwt)
            .await
            .header("latchkey-token-expires")
            .is_none()
    );
    app.clock.advance(11 * 86_400);
    assert_eq!(
        app.me(&later).await.header("latchkey-token-expires"),
        Some(rfc3339(now + time::Duration::days(40)))
    );
}

#[tokio::test]
async fn switching_an_organisations_tokens_off_refuses_them_at_once() {
    let app = no_delay().start().await;
    let org = admin_org(&app, "Switched", "switched@example.com").await;
    let (default_id, _) = default_token(&app, &org).await;
    let jwt = reveal(&app, &org, &default_id).await;
    let (s2s_id, s2s) = create_token(&app, &org, "s2s", "backend").await;
    app.me(&jwt).await.expect(200);
    app.me(&s2s).await.expect(200);
    // The admin's own personal token is not the organisation's.
    let (personal_id, personal) = app.personal_token(&org.admin, "laptop").await;
    app.me(&personal).await.expect(200);

    // `latchkey org update --api-tokens off`
    app.service()
        .update_org(&Caller::operator(), &org.id, &[], &[], Some(false))
        .await
        .unwrap();
    assert_refused(&app.me(&jwt).await, "disabled");
    assert_refused(&app.me(&s2s).await, "disabled");
    let me = app.me(&personal).await.expect(200);
    assert_eq!(
        me.body["accounts"],
        json!([]),
        "a switched-off organisation is not reached through a member's token either"
    );
    assert_eq!(get(&app, &org, &s2s_id).await["accounts"], json!([]));
    let res = create(&app, &org, json!({ "name": "more", "type": "s2s" })).await;
    assert_error(&res, 403, "tokens_disabled");
    let res = app
        .post(
            &format!("{}/rotate", org.token(&s2s_id)),
            &org.admin,
            json!({}),
        )
        .await;
    assert_error(&res, 403, "tokens_disabled");
    // The records are not revoked: switching back on restores them.
    assert!(
        list(&app, &org)
            .await
            .iter()
            .all(|t| t["status"] == "active")
    );
    app.service()
        .update_org(&Caller::operator(), &org.id, &[], &[], Some(true))
        .await
        .unwrap();
    app.me(&jwt).await.expect(200);
    app.me(&s2s).await.expect(200);

    // `latchkey user update --api-tokens off`, then `--disabled true`: personal tokens refused.
    let email = "switched@example.com";
    app.service()
        .update_user(&Caller::operator(), email, None, Some(false))
        .await
        .unwrap();
    assert_refused(&app.me(&personal).await, "disabled");
    // The organisation's tokens do not belong to the user.
    app.me(&jwt).await.expect(200);
    app.service()
        .update_user(&Caller::operator(), email, None, Some(true))
        .await
        .unwrap();
    app.me(&personal).await.expect(200);
    app.service()
        .update_user(&Caller::operator(), email, Some(true), None)
        .await
        .unwrap();
    assert_refused(&app.me(&personal).await, "disabled");
    // A disabled user's sessions end too.
    let res = app.get("/v1/user/tokens", &org.admin).await;
    assert_eq!(res.status.as_u16(), 401, "{}", res.text);
    let _ = personal_id;
}

#[tokio::test]
async fn leak_reports_revoke_live_tokens_and_say_only_how_many() {
    let app = no_delay()
        .limits(LimitsConfig {
            leak_reports_per_ip_per_hour: 4,
            ..LimitsConfig::default()
        })
        .start()
        .await;
    let org = admin_org(&app, "Leaky", "leaky@example.com").await;
    let (s2s_id, s2s) = create_token(&app, &org, "s2s", "leaked").await;
    let (dead_id, dead) = create_token(&app, &org, "s2s", "dead").await;
    app.call(Method::DELETE, &org.token(&dead_id), Some(&org.admin), None)
        .await
        .expect(200);
    let (personal_id, personal) = app.personal_token(&org.admin, "laptop").await;
    app.me(&s2s).await.expect(200);
    app.me(&personal).await.expect(200);

    // More than 1000 strings: 400, and it does not count against the address.
    let many: Vec<String> = (0..1001).map(|i| format!("lks_{i}")).collect();
    let res = app
        .call(
            Method::POST,
            "/v1/leaks",
            None,
            Some(json!({ "tokens": many })),
        )
        .await;
    assert_error(&res, 400, "invalid_request");

    // 1: no credentials needed.
    let report = json!({ "tokens": [
        s2s,
        format!("  {personal}\n"),
        "lks_garbage",
        "eyJhbGciOiJFUzI1NiJ9.e30.AAAA",
        dead,
        "",
    ]});
    let res = app
        .call(Method::POST, "/v1/leaks", None, Some(report.clone()))
        .await
        .expect(200);
    assert_eq!(res.body, json!({ "revoked": 2 }), "{}", res.text);
    assert_refused(&app.me(&s2s).await, "revoked");
    assert_refused(&app.me(&personal).await, "revoked");

    let log = events(&app, &org).await;
    let leak = with_action(&log, "token.revoked")
        .into_iter()
        .find(|e| e["subject"]["id"] == s2s_id.as_str())
        .unwrap_or_else(|| panic!("no revocation event for the leaked token: {log:?}"));
    assert_eq!(leak["details"]["reason"], "leak_report");
    assert_eq!(leak["actor"], "anonymous");
    assert_eq!(leak["ip"], "127.0.0.1");
    assert_eq!(leak["outcome"], "success");
    let mine = app.get("/v1/user/events", &org.admin).await.expect(200);
    assert!(
        mine.body
            .as_array()
            .into_iter()
            .flatten()
            .any(|e| e["action"] == "token.revoked"
                && e["subject"]["id"] == personal_id.as_str()
                && e["details"]["reason"] == "leak_report"),
        "{}",
        mine.text
    );

    // 2: the same again revokes nothing (and says nothing else).
    let res = app
        .call(Method::POST, "/v1/leaks", None, Some(report))
        .await
        .expect(200);
    assert_eq!(res.body, json!({ "revoked": 0 }));
    // 3: a JWT-format token (the Default one).
    let (default_id, _) = default_token(&app, &org).await;
    let jwt = reveal(&app, &org, &default_id).await;
    let res = app
        .call(
            Method::POST,
            "/v1/leaks",
            None,
            Some(json!({ "tokens": [jwt] })),
        )
        .await
        .expect(200);
    assert_eq!(res.body, json!({ "revoked": 1 }));
    assert_refused(&app.me(&jwt).await, "revoked");
    // 4: the last one allowed this hour; 5: 429 with Retry-After.
    app.call(
        Method::POST,
        "/v1/leaks",
        None,
        Some(json!({ "tokens": [] })),
    )
    .await
    .expect(200);
    let res = app
        .call(
            Method::POST,
            "/v1/leaks",
            None,
            Some(json!({ "tokens": [] })),
        )
        .await;
    assert_error(&res, 429, "rate_limited");
    let wait: u64 = res
        .header("retry-after")
        .unwrap_or_else(|| panic!("no Retry-After: {:?}", res.headers))
        .parse()
        .unwrap();
    assert!((1..=3_600).contains(&wait), "{wait}");
    app.clock.advance(3_600);
    app.call(
        Method::POST,
        "/v1/leaks",
        None,
        Some(json!({ "tokens": [] })),
    )
    .await
    .expect(200);
    // Unknown fields are refused like everywhere else.
    let res = app
        .call(
            Method::POST,
            "/v1/leaks",
            None,
            Some(json!({ "tokens": [], "note": "x" })),
        )
        .await;
    assert_error(&res, 400, "invalid_request");
}

#[tokio::test]
async fn a_retried_create_with_the_same_idempotency_key_makes_one_token() {
    let app = TestApp::spawn().await;
    let org = admin_org(&app, "Retry", "retry@example.com").await;
    let body = json!({ "name": "backend", "type": "s2s" });
    let first = with_idempotency_key(
        &app,
        &org.tokens(),
        &org.admin,
        "create-backend-1",
        body.clone(),
    )
    .await
    .expect(201);
    let id = first.str("id");
    assert!(first.body["secret"].is_string());
    assert!(first.header("idempotent-replayed").is_none());

    let second = with_idempotency_key(
        &app,
        &org.tokens(),
        &org.admin,
        "create-backend-1",
        body.clone(),
    )
    .await
    .expect(200);
    assert_eq!(second.str("id"), id);
    assert_eq!(second.str("name"), "backend");
    assert!(second.body.get("secret").is_none(), "{}", second.text);
    assert!(!second.text.contains(&first.str("secret")));
    assert_eq!(
        second.header("idempotent-replayed").as_deref(),
        Some("true")
    );
    let named: Vec<Value> = list(&app, &org)
        .await
        .into_iter()
        .filter(|t| t["name"] == "backend")
        .collect();
    assert_eq!(named.len(), 1, "{named:?}");
    assert_eq!(
        with_action(&events(&app, &org).await, "token.created")
            .iter()
            .filter(|e| e["details"]["name"] == "backend")
            .count(),
        1
    );

    // Another key is another token; once the type is full, a retry still gets its answer.
    with_idempotency_key(
        &app,
        &org.tokens(),
        &org.admin,
        "create-backend-2",
        body.clone(),
    )
    .await
    .expect(201);
    let res = with_idempotency_key(
        &app,
        &org.tokens(),
        &org.admin,
        "create-backend-3",
        body.clone(),
    )
    .await;
    assert_error(&res, 409, "token_limit_reached");
    let again = with_idempotency_key(
        &app,
        &org.tokens(),
        &org.admin,
        "create-backend-1",
        body.clone(),
    )
    .await
    .expect(200);
    assert_eq!(again.str("id"), id);
    // A key that is not visible ASCII: 400.
    let res = with_idempotency_key(&app, &org.tokens(), &org.admin, &"k".repeat(256), body).await;
    assert_error(&res, 400, "invalid_request");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_retries_with_one_idempotency_key_make_one_token() {
    const RACERS: usize = 10;
    let app = TestApp::spawn().await;
    let org = admin_org(&app, "Retries", "retries@example.com").await;
    let mut handles = Vec::new();
    for i in 0..RACERS {
        let client = app.client.clone();
        let url = format!("{}{}", app.url, org.tokens());
        let session = org.admin.clone();
        handles.push(tokio::spawn(async move {
            let res = client
                .post(url)
                .bearer_auth(session)
                .header("idempotency-key", "one-and-only")
                .json(&json!({ "name": "backend", "type": "s2s" }))
                .send()
                .await
                .unwrap_or_else(|e| panic!("racer {i}: {e}"));
            let status = res.status().as_u16();
            let body: Value = res.json().await.unwrap_or(Value::Null);
            (status, body)
        }));
    }
    let mut ids = BTreeSet::new();
    let mut created = 0;
    for handle in handles {
        let (status, body) = handle.await.unwrap();
        match status {
            201 => {
                created += 1;
                assert!(body["secret"].is_string());
            }
            200 => assert!(body.get("secret").is_none(), "{body}"),
            other => panic!("unexpected {other}: {body}"),
        }
        ids.insert(body["id"].as_str().unwrap_or_default().to_owned());
    }
    assert_eq!(created, 1);
    assert_eq!(ids.len(), 1, "{ids:?}");
    assert_eq!(list(&app, &org).await.len(), 2, "Default and one backend");
}

/// SPEC 7: the kill switch answers once every live instance has applied it, or after 2 s naming
/// those that have not.
#[tokio::test]
async fn the_kill_switch_says_how_many_live_instances_applied_it() {
    let app = TestApp::spawn().await;
    let org = admin_org(&app, "Instances", "instances@example.com").await;
    let kill = format!("{}/revoke-all", org.tokens());
    let res = app.post(&kill, &org.admin, json!({})).await.expect(200);
    assert_eq!(
        res.body["applied"],
        json!({ "instances": 1, "confirmed": 1 }),
        "{}",
        res.text
    );

    // Another instance that is alive but stuck: the answer waits for it, 2 s at most, and
    // names it.
    let stuck: latchkey_core::InstanceId = "ins_0000000000000000000000".parse().unwrap();
    let now = app.now();
    app.service()
        .store()
        .register_instance(&latchkey_store::Instance {
            id: stuck.clone(),
            address: "127.0.0.1:1".into(),
            version: "0.0.0".into(),
            started_at: now,
            heartbeat_at: now,
            applied_change: 0,
        })
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let res = app.post(&kill, &org.admin, json!({})).await.expect(200);
    assert!(started.elapsed() >= std::time::Duration::from_secs(2));
    assert_eq!(
        res.body["applied"],
        json!({ "instances": 2, "confirmed": 1, "unconfirmed": [stuck.to_string()] }),
        "{}",
        res.text
    );
    // Once it catches up (its beat says so), it confirms at once.
    let latest = app.service().store().latest_change().await.unwrap();
    app.service()
        .store()
        .heartbeat_instance(&stuck, now, latest + 10)
        .await
        .unwrap();
    let res = app.post(&kill, &org.admin, json!({})).await.expect(200);
    assert_eq!(
        res.body["applied"],
        json!({ "instances": 2, "confirmed": 2 })
    );
    // Not heard from for longer than the liveness window: not waited for.
    app.clock.advance(60);
    let res = app.post(&kill, &org.admin, json!({})).await.expect(200);
    assert_eq!(
        res.body["applied"],
        json!({ "instances": 1, "confirmed": 1 })
    );
}
