//! The organisation audit log (issue 3, item 9): every change with actor, IP and outcome,
//! newest first, paginated; and a sweep over every response of a full scenario proving that no
//! secret and no hash of one leaves the server outside the create, rotate and reveal answers.

use base64::Engine as _;
use latchkey_core::{Role, TokenSecret};
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{PASSWORD, Resp, TestApp, assert_error, rfc3339};
use crate::org_helpers::{AdminOrg, admin_org, default_token, events, with_idempotency_key};

#[tokio::test]
async fn every_change_is_in_the_organisation_log_with_actor_ip_and_outcome() {
    let app = TestApp::spawn().await;
    let org = admin_org(&app, "Audited", "audited@example.com").await;
    let (bob_id, _) = app.signed_in("bob@example.com").await;
    let (default_id, _) = default_token(&app, &org).await;

    let res = app
        .post(
            &org.tokens(),
            &org.admin,
            json!({ "name": "backend", "type": "s2s" }),
        )
        .await
        .expect(201);
    let s2s = res.str("id");
    app.call(
        Method::PATCH,
        &org.token(&s2s),
        Some(&org.admin),
        Some(json!({ "name": "backend v2" })),
    )
    .await
    .expect(200);
    app.post(
        &format!("{}/reveal", org.token(&s2s)),
        &org.admin,
        json!({ "password": PASSWORD }),
    )
    .await
    .expect(200);
    let rotated = app
        .post(
            &format!("{}/rotate", org.token(&s2s)),
            &org.admin,
            json!({}),
        )
        .await
        .expect(201)
        .str("id");
    app.call(Method::DELETE, &org.token(&rotated), Some(&org.admin), None)
        .await
        .expect(200);
    let killed = app
        .post(
            &format!("{}/tokens/revoke-all", org_path(&org)),
            &org.admin,
            json!({}),
        )
        .await
        .expect(200);
    assert_eq!(killed.body["revoked"], 2, "{}", killed.text);
    let members = format!("{}/members", org_path(&org));
    app.post(
        &members,
        &org.admin,
        json!({ "email": "bob@example.com", "role": "member" }),
    )
    .await
    .expect(201);
    app.call(
        Method::PATCH,
        &format!("{members}/{bob_id}"),
        Some(&org.admin),
        Some(json!({ "role": "partner" })),
    )
    .await
    .expect(200);
    app.call(
        Method::DELETE,
        &format!("{members}/{bob_id}"),
        Some(&org.admin),
        None,
    )
    .await
    .expect(204);

    let log = events(&app, &org).await;
    let actions: Vec<&str> = log.iter().filter_map(|e| e["action"].as_str()).collect();
    assert_eq!(
        actions,
        [
            "member.removed",
            "member.set",
            "member.set",
            "tokens.revoked_all",
            "token.revoked",
            "token.rotated",
            "token.revealed",
            "token.renamed",
            "token.created",
            // The operator's set-up: the organisation, its Default token, its first admin.
            "member.set",
            "token.created",
            "org.created",
        ],
        "newest first: {log:?}"
    );
    let now = rfc3339(app.now());
    for e in &log {
        assert!(
            e["id"].as_str().is_some_and(|id| id.starts_with("evt_")),
            "{e}"
        );
        assert_eq!(e["org_id"], org.id.as_str(), "{e}");
        assert_eq!(e["outcome"], "success", "{e}");
        assert_eq!(e["at"], now.as_str(), "{e}");
    }
    // Made through the API: the admin, from their address.
    for e in &log[..9] {
        assert_eq!(e["actor"], org.admin_id.as_str(), "{e}");
        assert_eq!(e["ip"], "127.0.0.1", "{e}");
    }
    // Made by the operator CLI: no address.
    for e in &log[9..] {
        assert_eq!(e["actor"], "operator", "{e}");
        assert!(e["ip"].is_null(), "{e}");
    }
    // Subjects and details name what changed.
    assert_eq!(log[0]["subject"], json!({ "kind": "user", "id": bob_id }));
    assert_eq!(log[1]["details"]["role"], "partner");
    assert_eq!(log[2]["details"]["role"], "member");
    assert_eq!(
        log[3]["subject"],
        json!({ "kind": "organisation", "id": org.id })
    );
    let mut killed_ids: Vec<String> = log[3]["details"]["tokens"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect();
    killed_ids.sort();
    let mut expected = vec![default_id.clone(), s2s.clone()];
    expected.sort();
    assert_eq!(killed_ids, expected);
    assert_eq!(log[4]["subject"]["id"], rotated.as_str());
    assert_eq!(log[4]["details"]["reason"], "deleted");
    assert_eq!(log[5]["subject"]["id"], s2s.as_str());
    assert_eq!(log[5]["details"]["new_token"], rotated.as_str());
    assert_eq!(log[5]["details"]["grace"], "0s");
    assert_eq!(log[6]["subject"], json!({ "kind": "token", "id": s2s }));
    assert_eq!(
        log[7]["details"],
        json!({ "from": "backend", "to": "backend v2" })
    );
    assert_eq!(log[8]["details"]["name"], "backend");
    assert_eq!(log[8]["details"]["type"], "s2s");
    assert_eq!(log[10]["subject"]["id"], default_id.as_str());
    assert_eq!(log[10]["details"]["name"], "Default");
}

fn org_path(org: &AdminOrg) -> String {
    format!("/v1/orgs/{}", org.id)
}

/// The target of a `Link: <…>; rel="next"` header.
fn next_link(res: &Resp) -> Option<String> {
    let link = res.header("link")?;
    assert!(link.ends_with("; rel=\"next\""), "{link}");
    let start = link.find('<')? + 1;
    let end = link.find('>')?;
    Some(link[start..end].to_owned())
}

#[tokio::test]
async fn the_log_is_paginated_newest_first_with_a_link_to_older_events() {
    let app = TestApp::spawn().await;
    let org = admin_org(&app, "Paged", "paged@example.com").await;
    let (id, _) = default_token(&app, &org).await;
    for i in 0..4 {
        app.clock.advance(60);
        app.call(
            Method::PATCH,
            &org.token(&id),
            Some(&org.admin),
            Some(json!({ "name": format!("name {i}") })),
        )
        .await
        .expect(200);
    }
    let all = events(&app, &org).await;
    assert_eq!(all.len(), 7, "{all:?}");
    let times: Vec<&str> = all.iter().filter_map(|e| e["at"].as_str()).collect();
    let mut sorted = times.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(times, sorted, "newest first");

    let mut pages = 0;
    let mut seen: Vec<Value> = Vec::new();
    let mut next = Some(format!("{}?limit=2", org.events()));
    while let Some(path) = next {
        let res = app.get(&path, &org.admin).await.expect(200);
        let page = res.body.as_array().cloned().unwrap_or_default();
        assert!(page.len() <= 2, "{}", res.text);
        seen.extend(page);
        next = next_link(&res);
        if let Some(link) = &next {
            assert!(
                link.starts_with(&format!("/v1/orgs/{}/events?before=", org.id)),
                "{link}"
            );
            assert!(link.ends_with("&limit=2"), "{link}");
        }
        pages += 1;
        assert!(pages <= 10, "the links do not end");
    }
    assert!(pages >= 4, "{pages}");
    assert_eq!(seen, all, "the pages together are the whole log, in order");
    // The newest event is the latest rename.
    assert_eq!(all[0]["details"]["to"], "name 3");

    // A page smaller than the limit has no link.
    let res = app
        .get(&format!("{}?limit=50", org.events()), &org.admin)
        .await
        .expect(200);
    assert!(res.header("link").is_none());
    // Bad paging parameters: 400 in the error envelope.
    for query in ["limit=abc", "before=x", "color=red"] {
        let res = app
            .get(&format!("{}?{query}", org.events()), &org.admin)
            .await;
        assert_error(&res, 400, "invalid_request");
    }
}

/// One response seen by the sweep.
struct Seen {
    what: String,
    /// A create, rotate or reveal answer (or a sign-in, for session tokens).
    may_show: bool,
    text: String,
}

/// Every call of the scenario goes through here and is recorded, headers included.
struct Sweep<'a> {
    app: &'a TestApp,
    seen: Vec<Seen>,
    secrets: Vec<String>,
}

impl Sweep<'_> {
    fn record(&mut self, what: String, may_show: bool, res: &Resp) {
        let mut text = res.text.clone();
        for (name, value) in &res.headers {
            text.push_str(&format!(
                "\n{name}: {}",
                String::from_utf8_lossy(value.as_bytes())
            ));
        }
        self.seen.push(Seen {
            what,
            may_show,
            text,
        });
        if may_show {
            for field in ["secret", "session_token"] {
                if let Some(s) = res.body[field].as_str() {
                    self.secrets.push(s.to_owned());
                }
            }
        }
    }

    async fn call(
        &mut self,
        method: Method,
        path: &str,
        auth: Option<&str>,
        body: Option<Value>,
    ) -> Resp {
        let res = self.app.call(method.clone(), path, auth, body).await;
        let may_show = res.status.is_success()
            && (path.ends_with("/reveal")
                || path.ends_with("/rotate")
                || path == "/v1/sessions"
                || (method == Method::POST && path.ends_with("/tokens")));
        self.record(format!("{method} {path} -> {}", res.status), may_show, &res);
        res
    }

    async fn get(&mut self, path: &str, auth: &str) -> Resp {
        self.call(Method::GET, path, Some(auth), None).await
    }

    async fn post(&mut self, path: &str, auth: &str, body: Value) -> Resp {
        self.call(Method::POST, path, Some(auth), Some(body)).await
    }
}

/// Every form a secret could leak in: itself, its random part, and its SHA-256 in hex and base64.
fn forms(secret: &str) -> Vec<String> {
    let hash = TokenSecret::hash_of(secret);
    let bytes = hash.as_bytes();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let mut forms = vec![
        secret.to_owned(),
        hex.to_uppercase(),
        hex,
        base64::engine::general_purpose::STANDARD.encode(bytes),
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes),
    ];
    if secret.starts_with("eyJ") {
        // The signature alone would let nobody forge anything, but it is unique to the secret.
        forms.extend(secret.rsplit('.').next().map(str::to_owned));
    } else if let Some((_, random)) = secret.split_once('_') {
        forms.push(random.to_owned());
    }
    forms
}

#[tokio::test]
async fn no_secret_or_hash_appears_outside_the_create_rotate_and_reveal_answers() {
    let app = TestApp::spawn().await;
    let (_, _) = app.signed_in("sweep@example.com").await;
    app.user("bob@example.com").await;
    let org_id = app.org("Swept").await;
    app.add_member(&org_id, "sweep@example.com", Role::Admin)
        .await;
    let mut s = Sweep {
        app: &app,
        seen: Vec::new(),
        secrets: Vec::new(),
    };

    // Sign in (the session token is a secret too).
    let session = s
        .call(
            Method::POST,
            "/v1/sessions",
            None,
            Some(json!({ "email": "sweep@example.com", "password": PASSWORD })),
        )
        .await
        .expect(201)
        .str("session_token");
    let org = format!("/v1/orgs/{org_id}");
    let tokens = format!("{org}/tokens");

    s.get("/v1/orgs", &session).await.expect(200);
    let list = s.get(&tokens, &session).await.expect(200);
    let default_id = list.body[0]["id"].as_str().unwrap().to_owned();
    s.get(&format!("{tokens}/{default_id}"), &session)
        .await
        .expect(200);
    s.post(
        &format!("{tokens}/{default_id}/reveal"),
        &session,
        json!({ "password": "wrong password" }),
    )
    .await
    .expect(403);
    let jwt = s
        .post(
            &format!("{tokens}/{default_id}/reveal"),
            &session,
            json!({ "password": PASSWORD }),
        )
        .await
        .expect(200)
        .str("secret");
    s.get("/v1/me", &jwt).await.expect(200);
    s.call(Method::GET, "/.well-known/jwks.json", None, None)
        .await
        .expect(200);

    // Organisation tokens: create (one with an idempotency key, retried), rename, fence, use.
    let res = with_idempotency_key(
        &app,
        &tokens,
        &session,
        "sweep-1",
        json!({ "name": "backend", "type": "s2s" }),
    )
    .await
    .expect(201);
    s.record("POST tokens (idempotent) -> 201".into(), true, &res);
    let s2s_id = res.str("id");
    let s2s = res.str("secret");
    let res = with_idempotency_key(
        &app,
        &tokens,
        &session,
        "sweep-1",
        json!({ "name": "backend", "type": "s2s" }),
    )
    .await
    .expect(200);
    s.record("POST tokens (replayed) -> 200".into(), false, &res);
    let api = s
        .post(&tokens, &session, json!({ "name": "ci", "type": "api" }))
        .await
        .expect(201);
    let api_id = api.str("id");
    let api_jwt = api.str("secret");
    s.post(&tokens, &session, json!({ "name": "third", "type": "api" }))
        .await
        .expect(409);
    s.post(&tokens, &session, json!({ "name": "l", "type": "links" }))
        .await
        .expect(403);
    s.call(
        Method::PATCH,
        &format!("{tokens}/{s2s_id}"),
        Some(&session),
        Some(json!({ "name": "backend v2", "allowed_ips": ["10.0.0.0/8"] })),
    )
    .await
    .expect(200);
    s.get("/v1/me", &s2s).await.expect(401);
    s.get("/v1/me", &api_jwt).await.expect(401);
    s.call(
        Method::PATCH,
        &format!("{tokens}/{s2s_id}"),
        Some(&session),
        Some(json!({ "allowed_ips": [] })),
    )
    .await
    .expect(200);
    app.clock.advance(1_800);
    s.get("/v1/me", &s2s).await.expect(200);
    s.get("/v1/me", &api_jwt).await.expect(200);
    app.flush().await;
    s.get(&format!("{tokens}/{s2s_id}"), &session)
        .await
        .expect(200);
    s.post(
        &format!("{tokens}/{api_id}/reveal"),
        &session,
        json!({ "password": PASSWORD }),
    )
    .await
    .expect(200);

    // Rotations, with a fixed grace and ending on first use.
    let rotated = s
        .post(
            &format!("{tokens}/{s2s_id}/rotate"),
            &session,
            json!({ "grace": "1h" }),
        )
        .await
        .expect(201);
    let rotated_id = rotated.str("id");
    let rotated_secret = rotated.str("secret");
    let res = s
        .post(
            &format!("{tokens}/{default_id}/rotate"),
            &session,
            json!({ "grace": "first_use" }),
        )
        .await
        .expect(201);
    let new_default = res.str("secret");
    app.clock.advance(1_800);
    s.get("/v1/me", &rotated_secret).await.expect(200);
    s.get("/v1/me", &new_default).await.expect(200);
    app.flush().await;
    s.get("/v1/me", &jwt).await.expect(401);

    // Personal tokens.
    let personal = s
        .post(
            "/v1/user/tokens",
            &session,
            json!({ "name": "laptop", "password": PASSWORD }),
        )
        .await
        .expect(201);
    let personal_id = personal.str("id");
    let personal_secret = personal.str("secret");
    s.get("/v1/me", &personal_secret).await.expect(200);
    s.get("/v1/user/tokens", &session).await.expect(200);
    s.get(&format!("/v1/user/tokens/{personal_id}"), &session)
        .await
        .expect(200);
    s.post(
        &format!("/v1/user/tokens/{personal_id}/reveal"),
        &session,
        json!({ "password": PASSWORD }),
    )
    .await
    .expect(409);
    s.post(
        &format!("/v1/user/tokens/{personal_id}/rotate"),
        &session,
        json!({ "password": PASSWORD }),
    )
    .await
    .expect(201);
    // An API token where a session is needed.
    s.get(&tokens, &personal_secret).await.expect(403);

    // Members.
    s.post(
        &format!("{org}/members"),
        &session,
        json!({ "email": "bob@example.com", "role": "member" }),
    )
    .await
    .expect(201);
    s.get(&format!("{org}/members"), &session).await.expect(200);

    // Incident response: a leak report, a deletion, the kill switches.
    s.call(
        Method::POST,
        "/v1/leaks",
        None,
        Some(json!({ "tokens": [rotated_secret, "lks_nonsense"] })),
    )
    .await
    .expect(200);
    s.get("/v1/me", &rotated_secret).await.expect(401);
    s.call(
        Method::DELETE,
        &format!("{tokens}/{api_id}"),
        Some(&session),
        None,
    )
    .await
    .expect(200);
    s.get("/v1/me", &api_jwt).await.expect(401);
    s.post(
        &format!("{tokens}/revoke-all"),
        &session,
        json!({ "type": "s2s" }),
    )
    .await
    .expect(200);
    s.post(&format!("{tokens}/revoke-all"), &session, json!({}))
        .await
        .expect(200);
    s.post(
        "/v1/user/tokens/revoke-all",
        &session,
        json!({ "password": PASSWORD }),
    )
    .await
    .expect(200);
    s.get("/v1/me", &personal_secret).await.expect(401);
    s.get("/v1/me", &s2s).await.expect(401);

    // Everything, read back at the end: lists, records, both audit logs (every page).
    s.get(&tokens, &session).await.expect(200);
    for id in [&default_id, &s2s_id, &api_id, &rotated_id] {
        s.get(&format!("{tokens}/{id}"), &session).await.expect(200);
    }
    s.get("/v1/user/tokens", &session).await.expect(200);
    for base in [format!("{org}/events"), "/v1/user/events".to_owned()] {
        let mut next = Some(format!("{base}?limit=5"));
        while let Some(path) = next {
            let res = s.get(&path, &session).await.expect(200);
            next = next_link(&res);
        }
    }
    s.call(Method::DELETE, "/v1/sessions/current", Some(&session), None)
        .await;

    let secrets = s.secrets.clone();
    // Every kind of secret was seen: sessions, opaque, JWT, personal.
    assert!(secrets.len() >= 8, "{}", secrets.len());
    for prefix in ["lkses", "lks_", "lkp_", "eyJ"] {
        assert!(
            secrets.iter().any(|x| x.starts_with(prefix)),
            "no {prefix} secret seen"
        );
    }
    // The search works on what was recorded: each secret is in the answer that showed it.
    for secret in &secrets {
        assert!(
            s.seen
                .iter()
                .any(|r| r.may_show && r.text.contains(secret.as_str())),
            "a secret is in no recorded answer"
        );
    }
    let checked = s.seen.iter().filter(|r| !r.may_show).count();
    assert!(checked >= 40, "{checked}");
    for secret in &secrets {
        for (i, form) in forms(secret).iter().enumerate() {
            for r in &s.seen {
                // A create, rotate or reveal answer shows a secret, never a hash.
                if r.may_show && i == 0 {
                    continue;
                }
                if r.may_show && i == forms(secret).len() - 1 {
                    continue;
                }
                assert!(
                    !r.text.contains(form.as_str()),
                    "{} shows a secret (form {i}): {}",
                    r.what,
                    r.text
                );
            }
        }
    }
}

/// The log narrowed by the action's start, the subject and the actor, each kept in the next
/// page's link (the console's Activity filters, through the API).
#[tokio::test]
async fn the_log_is_narrowed_by_action_subject_and_actor() {
    let app = TestApp::spawn().await;
    let (me, session) = app.signed_in("narrow@example.com").await;
    let (laptop, _) = app.personal_token(&session, "laptop").await;
    for i in 1..=3 {
        app.call(
            Method::PATCH,
            &format!("/v1/user/tokens/{laptop}"),
            Some(&session),
            Some(json!({ "name": format!("laptop {i}") })),
        )
        .await
        .expect(200);
    }

    let res = app
        .get("/v1/user/events?action=token.&limit=2", &session)
        .await
        .expect(200);
    let actions: Vec<&str> = res
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions.len(), 2);
    assert!(
        actions.iter().all(|a| a.starts_with("token.")),
        "{actions:?}"
    );
    let next = next_link(&res).expect("more than one page");
    assert!(
        next.contains("action=token.") && next.contains("before="),
        "{next}"
    );
    let rest = app.get(&next, &session).await.expect(200);
    assert!(
        rest.body
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["action"].as_str().unwrap().starts_with("token."))
    );

    let about = app
        .get(&format!("/v1/user/events?subject={laptop}"), &session)
        .await
        .expect(200);
    let about: Vec<&Value> = about.body.as_array().unwrap().iter().collect();
    assert_eq!(about.len(), 4, "created and renamed three times: {about:?}");
    assert!(about.iter().all(|e| e["subject"]["id"] == laptop.as_str()));

    let by_me = app
        .get(
            &format!("/v1/user/events?actor={me}&action=session."),
            &session,
        )
        .await
        .expect(200);
    assert!(!by_me.body.as_array().unwrap().is_empty());
    let by_operator = app
        .get("/v1/user/events?actor=operator&action=token.", &session)
        .await
        .expect(200);
    assert_eq!(by_operator.body, json!([]));
    let res = app.get("/v1/user/events?action=", &session).await;
    assert_eq!(res.status, 400);
    assert_eq!(res.code(), "invalid_request");
}
