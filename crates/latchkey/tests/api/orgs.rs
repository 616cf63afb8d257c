use latchkey_core::Role;
use reqwest::Method;
use serde_json::json;

use crate::helpers::TestApp;

#[tokio::test]
async fn orgs_lists_my_organisations_with_my_role() {
    let app = TestApp::spawn().await;
    let (_, session) = app.signed_in("ada@example.com").await;
    let acme = app.org("Acme").await;
    let globex = app.org("Globex").await;
    app.add_member(&acme, "ada@example.com", Role::Admin).await;
    app.add_member(&globex, "ada@example.com", Role::Partner)
        .await;
    let res = app.get("/v1/orgs", &session).await.expect(200);
    let list = res.body.as_array().cloned().unwrap_or_default();
    assert_eq!(list.len(), 2, "{}", res.text);
    assert_eq!(list[0]["id"], acme.as_str());
    assert_eq!(list[0]["role"], "admin");
    assert_eq!(list[1]["name"], "Globex");
    assert_eq!(list[1]["role"], "partner");
}

#[tokio::test]
async fn admins_manage_members_and_others_cannot() {
    let app = TestApp::spawn().await;
    let (_, admin) = app.signed_in("admin@example.com").await;
    let (bob_id, bob) = app.signed_in("bob@example.com").await;
    let (_, outsider) = app.signed_in("eve@example.com").await;
    let org = app.org("Acme").await;
    app.add_member(&org, "admin@example.com", Role::Admin).await;
    let members = format!("/v1/orgs/{org}/members");

    let res = app
        .post(
            &members,
            &admin,
            json!({ "email": "bob@example.com", "role": "member" }),
        )
        .await
        .expect(201);
    assert_eq!(res.body["id"], bob_id.as_str());
    assert_eq!(res.body["role"], "member");

    // Members and partners: 403 on every member endpoint; outsiders: 404.
    assert_eq!(
        app.get(&members, &bob).await.expect(403).code(),
        "forbidden"
    );
    assert_eq!(
        app.post(
            &members,
            &bob,
            json!({ "email": "eve@example.com", "role": "admin" })
        )
        .await
        .expect(403)
        .code(),
        "forbidden"
    );
    assert_eq!(
        app.get(&members, &outsider).await.expect(404).code(),
        "not_found"
    );
    app.get("/v1/orgs/org_0000000000000000000000/members", &admin)
        .await
        .expect(404);
    app.get("/v1/orgs/not-an-id/members", &admin)
        .await
        .expect(404);

    let bob_path = format!("{members}/{bob_id}");
    let res = app
        .call(
            Method::PATCH,
            &bob_path,
            Some(&admin),
            Some(json!({ "role": "partner" })),
        )
        .await
        .expect(200);
    assert_eq!(res.body["role"], "partner");
    app.call(
        Method::PATCH,
        &bob_path,
        Some(&admin),
        Some(json!({ "role": "owner" })),
    )
    .await
    .expect(400);

    let list = app.get(&members, &admin).await.expect(200);
    assert_eq!(list.body.as_array().map(Vec::len), Some(2));

    app.call(Method::DELETE, &bob_path, Some(&admin), None)
        .await
        .expect(204);
    app.call(Method::DELETE, &bob_path, Some(&admin), None)
        .await
        .expect(404);
    assert_eq!(
        app.get("/v1/orgs", &bob)
            .await
            .expect(200)
            .body
            .as_array()
            .map(Vec::len),
        Some(0)
    );
}

#[tokio::test]
async fn the_last_admin_cannot_leave_or_be_demoted() {
    let app = TestApp::spawn().await;
    let (admin_id, admin) = app.signed_in("solo@example.com").await;
    let org = app.org("Solo").await;
    app.add_member(&org, "solo@example.com", Role::Admin).await;
    let me = format!("/v1/orgs/{org}/members/{admin_id}");
    assert_eq!(
        app.call(
            Method::PATCH,
            &me,
            Some(&admin),
            Some(json!({ "role": "member" }))
        )
        .await
        .expect(409)
        .code(),
        "conflict"
    );
    app.call(Method::DELETE, &me, Some(&admin), None)
        .await
        .expect(409);
    // POST on an existing member changes the role: the same guard.
    let res = app
        .post(
            &format!("/v1/orgs/{org}/members"),
            &admin,
            json!({ "email": "solo@example.com", "role": "member" }),
        )
        .await
        .expect(409);
    assert_eq!(res.code(), "conflict");
    let members = app
        .get(&format!("/v1/orgs/{org}/members"), &admin)
        .await
        .expect(200);
    assert_eq!(members.body[0]["role"], "admin", "{}", members.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_admins_demoting_each_other_at_once_leave_one_admin() {
    let app = TestApp::spawn().await;
    let (a_id, a) = app.signed_in("a@example.com").await;
    let (b_id, b) = app.signed_in("b@example.com").await;
    let org = app.org("Pair").await;
    app.add_member(&org, "a@example.com", Role::Admin).await;
    app.add_member(&org, "b@example.com", Role::Admin).await;
    for _ in 0..5 {
        let demote = |session: String, target: String| {
            let client = app.client.clone();
            let url = format!("{}/v1/orgs/{org}/members/{target}", app.url);
            tokio::spawn(async move {
                client
                    .patch(url)
                    .bearer_auth(session)
                    .json(&json!({ "role": "member" }))
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
            })
        };
        let (x, y) = (
            demote(a.clone(), b_id.clone()),
            demote(b.clone(), a_id.clone()),
        );
        let mut codes = [x.await.unwrap().unwrap(), y.await.unwrap().unwrap()];
        codes.sort_unstable();
        let members = app
            .service()
            .list_members(&a_id.parse().unwrap(), &org)
            .await;
        let admins = match members {
            Ok(m) => m.iter().filter(|m| m.role == Role::Admin).count(),
            // a was demoted: ask as b.
            Err(_) => app
                .service()
                .list_members(&b_id.parse().unwrap(), &org)
                .await
                .unwrap()
                .iter()
                .filter(|m| m.role == Role::Admin)
                .count(),
        };
        assert_eq!(admins, 1, "codes {codes:?}");
        // Promote both again for the next round.
        app.add_member(&org, "a@example.com", Role::Admin).await;
        app.add_member(&org, "b@example.com", Role::Admin).await;
    }
}

#[tokio::test]
async fn membership_changes_are_audited() {
    let app = TestApp::spawn().await;
    let (_, admin) = app.signed_in("audit@example.com").await;
    let org = app.org("Audited").await;
    app.add_member(&org, "audit@example.com", Role::Admin).await;
    let res = app.get("/v1/user/events", &admin).await.expect(200);
    let actions: Vec<String> = res
        .body
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["action"].as_str().map(str::to_owned))
        .collect();
    assert!(actions.contains(&"member.set".to_owned()), "{actions:?}");
    assert!(actions.contains(&"session.login".to_owned()), "{actions:?}");
    assert!(actions.contains(&"user.created".to_owned()), "{actions:?}");
    assert!(!res.text.contains("lkses_"), "no secret in events");
}
