//! The console for a person in many organisations and for an organisation's admins: the
//! organisation switcher and each organisation's own navigation, and the Members page (issue
//! 15, items 4 and 7), walked in headless Chromium, desktop and phone.

use latchkey_core::Role;
use reqwest::header;

use crate::browser::Browser;
use crate::helpers::{PASSWORD, TestApp, hidden};

#[tokio::test]
async fn the_switcher_keeps_the_header_one_line_for_a_person_in_many_organisations() {
    let app = TestApp::spawn().await;
    app.user("ada@example.com").await;
    let mut orgs = Vec::new();
    for i in 1..=12 {
        let org = app.org(&format!("Organisation number {i:02}")).await;
        app.add_member(&org, "ada@example.com", Role::Admin).await;
        orgs.push(org);
    }
    let visiting = app.org("Visitors").await;
    app.add_member(&visiting, "ada@example.com", Role::Member)
        .await;

    let b = Browser::start(&app.url).await;
    b.sign_in("ada@example.com", PASSWORD).await;
    assert_eq!(b.path().await, "/credentials");
    // Thirteen organisations, one header line at 1280 px (about 65 px; a second line would
    // make it over 100, and one line per organisation was how it grew before).
    let tall = b.height("header.top").await;
    assert!(tall < 80.0, "the header is {tall} px tall at 1280 px");
    assert_eq!(b.count("#org-switcher li").await, 13);
    assert_eq!(b.text("#org-switcher summary").await, "Organisations");
    // A member has no organisation pages: listed, not linked.
    assert_eq!(
        b.count(&format!("#org-switcher a[href^='/orgs/{visiting}/']"))
            .await,
        0
    );
    b.click_in_place("#org-switcher summary").await;
    let listed = b.text("#org-switcher ul").await;
    let listed = listed.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(listed.contains("Visitors member"), "{listed}");
    assert!(listed.contains("Organisation number 12 admin"), "{listed}");
    b.screenshot("org-switcher").await;

    // Choosing one opens its Tokens page with its own navigation; the switcher names it.
    b.goto("/credentials").await;
    b.open_org(&orgs[6]).await;
    assert_eq!(b.path().await, format!("/orgs/{}/tokens", orgs[6]));
    assert_eq!(b.text("nav.sub .sub-org").await, "Organisation number 07");
    assert_eq!(
        b.find("nav.sub a[aria-current='page']")
            .await
            .text()
            .await
            .unwrap(),
        "Tokens"
    );
    assert!(
        b.text("#org-switcher summary")
            .await
            .ends_with("Organisation number 07")
    );
    for page in ["apps", "members", "activity", "tokens"] {
        b.org_page(&orgs[6], page).await;
        assert_eq!(b.path().await, format!("/orgs/{}/{page}", orgs[6]));
        assert!(!b.overflows_sideways().await, "{page} overflows at 1280 px");
    }

    // On a phone the header stays short and nothing overflows sideways.
    b.client.set_window_size(390, 844).await.unwrap();
    b.goto(&format!("/orgs/{}/members", orgs[6])).await;
    b.screenshot("members-phone").await;
    let tall = b.height("header.top").await;
    assert!(tall < 110.0, "the header is {tall} px tall at 390 px");
    assert!(!b.overflows_sideways().await, "members overflows at 390 px");
    b.close().await;
}

#[tokio::test]
async fn an_admin_adds_changes_and_removes_members_and_the_last_admin_rule_is_said_first() {
    let app = TestApp::spawn().await;
    app.user("ada@example.com").await;
    app.user("bob@example.com").await;
    let org = app.org("Acme").await;
    app.add_member(&org, "ada@example.com", Role::Admin).await;
    let ada = app.login("ada@example.com").await;

    let b = Browser::start(&app.url).await;
    b.sign_in("ada@example.com", PASSWORD).await;
    b.open_org(&org).await;
    b.org_page(&org, "members").await;
    // Alone, Ada is the last admin: the rule is said before anyone tries, and her row offers
    // neither a role change nor a removal.
    assert!(
        b.text("#last-admin-rule")
            .await
            .contains("at least one admin")
    );
    let row = b.text("#members tbody tr").await;
    assert!(
        row.contains("ada@example.com (you)") && row.contains("The last admin"),
        "{row}"
    );
    assert_eq!(b.count("#members select").await, 0);
    assert_eq!(b.count("#members a[href$='/remove']").await, 0);

    // Someone without an account cannot be added, and the page says why; what was typed stays.
    b.fill("#add-email", "nobody@example.com").await;
    b.click("#add button[type=submit]").await;
    assert!(
        b.text(".error")
            .await
            .contains("No one has an account with the address nobody@example.com"),
        "{}",
        b.body().await
    );
    assert_eq!(b.value("#add-email").await, "nobody@example.com");

    // Bob is added as a member, then made admin; then Ada is no longer the last admin.
    b.fill("#add-email", "bob@example.com").await;
    b.click("#add input[name=role][value=member]").await;
    b.click("#add button[type=submit]").await;
    assert_eq!(b.text(".notice").await, "The person is added.");
    assert!(b.text("#members").await.contains("bob@example.com"));
    let bob = app
        .service()
        .find_user_by_email("bob@example.com")
        .await
        .unwrap();
    b.select(&format!("#role-{}", bob.id), "admin").await;
    b.click(&format!("form[action$='/members/{}/role'] button", bob.id))
        .await;
    assert_eq!(b.text(".notice").await, "The role is changed.");
    assert_eq!(b.count("#members select").await, 2);
    b.screenshot("members").await;

    // Removing asks first, and says what it does.
    b.click(&format!("a[href='/orgs/{org}/members/{}/remove']", bob.id))
        .await;
    assert_eq!(b.text("h1").await, "Remove bob@example.com from Acme?");
    b.click("main form button.danger").await;
    assert_eq!(
        b.text(".notice").await,
        "The person is removed from the organisation."
    );
    assert!(!b.text("#members").await.contains("bob@example.com"));
    b.close().await;

    // The API sees the same members (one service function for both).
    let members = app
        .get(&format!("/v1/orgs/{org}/members"), &ada)
        .await
        .expect(200)
        .body;
    let emails: Vec<&str> = members
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["email"].as_str())
        .collect();
    assert_eq!(emails, vec!["ada@example.com"]);
}

#[tokio::test]
async fn members_forms_keep_the_rules_over_plain_http() {
    let app = TestApp::spawn().await;
    app.user("ada@example.com").await;
    app.user("bob@example.com").await;
    let org = app.org("Acme").await;
    app.add_member(&org, "ada@example.com", Role::Admin).await;
    app.add_member(&org, "bob@example.com", Role::Member).await;
    let ada = app
        .service()
        .find_user_by_email("ada@example.com")
        .await
        .unwrap();
    let session = app.login("ada@example.com").await;
    let cookie = format!("latchkey_session={session}");
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let page = client
        .get(format!("{}/orgs/{org}/members", app.url))
        .header(header::COOKIE, &cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let csrf = hidden(&page, "csrf_token");

    // The last admin cannot demote herself even with a hand-made form: the page says why.
    let res = client
        .post(format!("{}/orgs/{org}/members/{}/role", app.url, ada.id))
        .header(header::COOKIE, &cookie)
        .form(&[("csrf_token", csrf.as_str()), ("role", "member")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 409);
    let body = res.text().await.unwrap();
    assert!(body.contains("admin"), "{body}");
    assert!(
        body.contains("Members of Acme"),
        "the members page again: {body}"
    );

    // A role that does not exist is a 400 with the roles named, not a crash.
    let res = client
        .post(format!("{}/orgs/{org}/members", app.url))
        .header(header::COOKIE, &cookie)
        .form(&[
            ("csrf_token", csrf.as_str()),
            ("email", "bob@example.com"),
            ("role", "owner"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    assert!(
        res.text()
            .await
            .unwrap()
            .contains("A role is admin, member or partner.")
    );

    // Without the form's token nothing changes.
    let res = client
        .post(format!("{}/orgs/{org}/members", app.url))
        .header(header::COOKIE, &cookie)
        .form(&[("email", "bob@example.com"), ("role", "admin")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);

    // A member gets no members page; an outsider's organisation does not exist for them.
    let bob = app.login("bob@example.com").await;
    let res = client
        .get(format!("{}/orgs/{org}/members", app.url))
        .header(header::COOKIE, format!("latchkey_session={bob}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    let other = app.org("Elsewhere").await;
    let res = client
        .get(format!("{}/orgs/{other}/members", app.url))
        .header(header::COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    let members = app
        .get(&format!("/v1/orgs/{org}/members"), &session)
        .await
        .expect(200)
        .body;
    assert_eq!(
        members.as_array().unwrap().len(),
        2,
        "nothing changed: {members}"
    );
}

/// A refused page keeps the person's frame: the header, the switcher and, under an
/// organisation's address, its own navigation; the sentence says why.
#[tokio::test]
async fn refusals_are_pages_with_the_navigation() {
    let app = TestApp::spawn().await;
    app.user("ada@example.com").await;
    app.user("bob@example.com").await;
    let org = app.org("Acme").await;
    app.add_member(&org, "ada@example.com", Role::Admin).await;
    app.add_member(&org, "bob@example.com", Role::Member).await;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let open = |session: String, path: String| {
        let client = client.clone();
        let url = format!("{}{path}", app.url);
        async move {
            let res = client
                .get(url)
                .header(header::COOKIE, format!("latchkey_session={session}"))
                .header(header::ACCEPT, "text/html")
                .send()
                .await
                .unwrap();
            (res.status().as_u16(), res.text().await.unwrap())
        }
    };

    // A member opening an admin's page: 403, in the frame, the switcher there.
    let bob = app.login("bob@example.com").await;
    let (status, page) = open(bob.clone(), format!("/orgs/{org}/members")).await;
    assert_eq!(status, 403);
    assert!(
        page.contains("Only an admin of this organisation may do this."),
        "{page}"
    );
    assert!(
        page.contains("id=\"org-switcher\"") && page.contains("Sign out"),
        "{page}"
    );
    assert!(
        !page.contains("class=\"sub\""),
        "no admin navigation for a member: {page}"
    );

    // An admin opening a token that does not exist: 404 with the organisation's navigation.
    let ada = app.login("ada@example.com").await;
    let (status, page) = open(
        ada.clone(),
        format!("/orgs/{org}/tokens/tok_0000000000000000000000/delete"),
    )
    .await;
    assert_eq!(status, 404);
    assert!(
        page.contains("class=\"sub\"") && page.contains("Members"),
        "{page}"
    );
    assert!(page.contains("No such token."), "{page}");

    // Not signed in, the same address leads to the sign-in (nothing to frame).
    let res = client
        .get(format!("{}/orgs/{org}/members", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
}

/// A token's allowlist is shown on its row; a token without one says it works from anywhere.
#[tokio::test]
async fn token_rows_say_where_a_token_may_be_used_from() {
    let app = TestApp::spawn().await;
    app.user("ada@example.com").await;
    let org = app.org("Acme").await;
    app.add_member(&org, "ada@example.com", Role::Admin).await;
    let ada = app.login("ada@example.com").await;
    app.post(
        &format!("/v1/orgs/{org}/tokens"),
        &ada,
        serde_json::json!({
            "name": "office only", "type": "api",
            "allowed_ips": ["10.0.0.0/8", "192.0.2.7/32"],
        }),
    )
    .await
    .expect(201);
    let page = reqwest::Client::new()
        .get(format!("{}/orgs/{org}/tokens", app.url))
        .header(header::COOKIE, format!("latchkey_session={ada}"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("Only from 10.0.0.0/8, 192.0.2.7/32"),
        "{page}"
    );
    assert!(
        page.contains("From any address"),
        "the Default token: {page}"
    );
}
