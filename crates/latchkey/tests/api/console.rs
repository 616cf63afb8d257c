//! The web console, walked in a real headless Chromium as a person would (SPEC 5, issue 5),
//! plus the HTTP-level checks a browser cannot show: CSRF and `Origin` refusals, headers,
//! cookie flags, escaping and error pages.

use latchkey_core::Role;
use reqwest::{Method, header};
use serde_json::json;

use crate::browser::Browser;
use crate::helpers::{PASSWORD, TestApp, hidden};

/// A user who is admin of a fresh organisation: (org id, session token).
async fn admin_of(app: &TestApp, email: &str, org_name: &str) -> (String, String) {
    app.user(email).await;
    let org = app.org(org_name).await;
    app.add_member(&org, email, Role::Admin).await;
    (org, app.login(email).await)
}

#[tokio::test]
async fn sign_in_shows_the_organisations_and_sign_out_ends_the_session() {
    let app = TestApp::spawn().await;
    let (org, _) = admin_of(&app, "ada@example.com", "Acme <Labs>").await;
    app.user("bob@example.com").await;
    app.add_member(&org, "bob@example.com", Role::Member).await;
    let b = Browser::start(&app.url).await;

    // Not signed in: every page leads to the login form.
    b.goto("/credentials").await;
    assert_eq!(b.path().await, "/login?next=%2Fcredentials");
    b.screenshot("login").await;

    // Unknown email and wrong password get the same answer.
    b.sign_in("nobody@example.com", PASSWORD).await;
    let unknown = b.text(".error").await;
    b.sign_in("ada@example.com", "wrong password entirely")
        .await;
    let wrong = b.text(".error").await;
    assert_eq!(unknown, wrong);
    assert_eq!(wrong, "The email or password is not correct.");

    b.sign_in("ada@example.com", PASSWORD).await;
    assert_eq!(b.path().await, "/credentials");
    b.click_in_place("#org-switcher summary").await;
    let nav = b.text("header.top").await;
    assert!(nav.contains("Acme <Labs>"), "{nav}");
    assert!(nav.contains("ada@example.com"), "{nav}");
    assert_eq!(b.count(&format!("a[href='/orgs/{org}/tokens']")).await, 1);

    b.click(".logout button").await;
    assert_eq!(b.path().await, "/login");
    b.goto("/credentials").await;
    assert!(
        b.path().await.starts_with("/login"),
        "the session must be gone"
    );
    b.close().await;

    // A member sees the organisation but not its Tokens, Apps or Activity links.
    let b = Browser::start(&app.url).await;
    b.sign_in("bob@example.com", PASSWORD).await;
    b.click_in_place("#org-switcher summary").await;
    assert!(b.text("header.top").await.contains("Acme <Labs>"));
    assert_eq!(b.count(&format!("a[href^='/orgs/{org}/']")).await, 0);
    b.goto(&format!("/orgs/{org}/tokens")).await;
    assert!(
        b.body()
            .await
            .contains("Only an admin of this organisation may do this.")
    );
    b.close().await;
}

#[tokio::test]
async fn a_person_generates_rotates_and_revokes_their_api_token() {
    let app = TestApp::spawn().await;
    app.user("ada@example.com").await;
    let b = Browser::start(&app.url).await;
    b.sign_in("ada@example.com", PASSWORD).await;
    b.screenshot("credentials-empty").await;

    // Generate, behind the password: a wrong one is refused on the same page.
    b.fill("#new-name", "laptop <cli>").await;
    b.fill("#new-password", "not my password").await;
    b.click("#new button[type=submit]").await;
    assert!(b.text(".error").await.to_lowercase().contains("password"));
    assert_eq!(
        b.value("#new-name").await,
        "laptop <cli>",
        "the form keeps what was typed"
    );

    b.fill("#new-password", PASSWORD).await;
    b.click("#new button[type=submit]").await;
    let secret = b.value("#secret").await;
    assert!(secret.starts_with("lkp_"), "{secret}");
    let dialog = b.text("[role=dialog]").await;
    assert!(
        dialog.contains("you will not see this again") || dialog.contains("reveal it again"),
        "{dialog}"
    );
    assert!(b.count("button[data-copy=secret]").await == 1);
    b.click_in_place("button[data-copy=secret]").await;
    b.screenshot("token-created").await;
    app.me(&secret).await.expect(200);

    // The list: status, expiry, last use (with the address once used).
    b.click("a.button").await;
    assert_eq!(b.path().await, "/credentials");
    let row = b.text("tbody tr").await;
    assert!(
        row.contains("laptop <cli>") && row.contains("active"),
        "{row}"
    );
    app.flush().await;
    b.goto("/credentials").await;
    let row = b.text("tbody tr").await;
    assert!(row.contains("127.0.0.1"), "last used address: {row}");
    assert!(
        !b.body().await.contains(&secret),
        "the secret is shown only once"
    );
    b.screenshot("credentials").await;
    // The one-token limit is said before anyone fills the form.
    let option = b.text("#new-type option[value=personal]").await;
    assert!(
        option.contains("1 of 1 live: revoke or rotate one to make another"),
        "{option}"
    );

    // Rotate: a replacement, shown once; the old one ends now.
    let id = b.find("tbody tr").await.attr("id").await.unwrap().unwrap();
    b.select(&format!("#{id} select[name=grace]"), "0s").await;
    b.fill(
        &format!("#{id} form[action$='/rotate'] input[name=password]"),
        PASSWORD,
    )
    .await;
    b.click(&format!("#{id} form[action$='/rotate'] button"))
        .await;
    let replacement = b.value("#secret").await;
    assert_ne!(replacement, secret);
    app.me(&replacement).await.expect(200);
    app.me(&secret).await.expect(401);

    // Revoke, behind the password.
    b.goto("/credentials").await;
    let live = b.find("tbody tr:has(form[action$='/revoke'])").await;
    let live_id = live.attr("id").await.unwrap().unwrap();
    b.fill(
        &format!("#{live_id} form[action$='/revoke'] input[name=password]"),
        PASSWORD,
    )
    .await;
    b.click(&format!("#{live_id} form[action$='/revoke'] button"))
        .await;
    assert_eq!(b.text(".notice").await, "The token is revoked.");
    // Ended tokens are listed apart, behind their own heading, after the live ones.
    assert_eq!(b.count(&format!("#ended-tokens #{live_id}")).await, 1);
    assert_eq!(b.count("table:not(#ended-tokens table) tbody tr").await, 0);
    b.click_in_place("#ended-tokens summary").await;
    assert!(b.text(&format!("#{live_id}")).await.contains("revoked"));
    assert!(
        b.text("#ended-tokens summary")
            .await
            .contains("Revoked and expired (2)"),
        "the rotated one and the revoked one"
    );
    app.me(&replacement).await.expect(401);

    // On a phone the table becomes cards and nothing needs sideways scrolling.
    b.client.set_window_size(390, 844).await.unwrap();
    b.goto("/credentials").await;
    let scroll: serde_json::Value = b
        .client
        .execute(
            "return document.documentElement.scrollWidth <= window.innerWidth + 1;",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(scroll, json!(true), "the page scrolls sideways on a phone");
    b.screenshot("credentials-phone").await;
    b.close().await;
}

#[tokio::test]
async fn an_admin_manages_the_organisation_tokens() {
    let app = TestApp::spawn().await;
    let (org, _) = admin_of(&app, "ada@example.com", "Acme").await;
    let b = Browser::start(&app.url).await;
    b.sign_in("ada@example.com", PASSWORD).await;
    b.open_org(&org).await;
    assert_eq!(b.path().await, format!("/orgs/{org}/tokens"));

    // A type whose feature the organisation lacks is shown, disabled, with the reason.
    let links = b.find("#new-type option[value=links]").await;
    assert!(links.attr("disabled").await.unwrap().is_some());
    assert!(
        links
            .text()
            .await
            .unwrap()
            .contains("needs the organisation feature “links”, which an operator turns on: latchkey org update --org")
    );

    // Create: `api` has an activation delay, so the token is pending with its start time.
    b.fill("#new-name", "billing").await;
    b.select("#new-type", "api").await;
    b.click("#new button[type=submit]").await;
    let first = b.value("#secret").await;
    assert!(
        b.text("[role=dialog]")
            .await
            .contains("reveal it again later with your password")
    );
    assert!(b.text("[role=dialog]").await.contains("starts working at"));
    b.click("a.button").await;
    let row = b.find("tbody tr:has(input[value='billing'])").await;
    let id = row.attr("id").await.unwrap().unwrap();
    let text = row.text().await.unwrap();
    assert!(
        text.contains("pending") && text.contains("active from"),
        "{text}"
    );
    b.screenshot("org-tokens").await;

    // Rename inline.
    b.fill(&format!("#name-{}", &id["token-".len()..]), "billing v2")
        .await;
    b.click(&format!("#{id} form[action$='/rename'] button"))
        .await;
    assert_eq!(b.text(".notice").await, "The token is renamed.");
    assert!(b.count("input[value='billing v2']").await == 1);

    // Reveal behind the password shows the same secret again.
    b.fill(
        &format!("#{id} form[action$='/reveal'] input[name=password]"),
        "nope nope nope",
    )
    .await;
    b.click(&format!("#{id} form[action$='/reveal'] button"))
        .await;
    assert!(b.text(".error").await.to_lowercase().contains("password"));
    b.fill(
        &format!("#{id} form[action$='/reveal'] input[name=password]"),
        PASSWORD,
    )
    .await;
    b.click(&format!("#{id} form[action$='/reveal'] button"))
        .await;
    assert_eq!(b.value("#secret").await, first);

    // Rotate with a grace period of one day: both work once active.
    b.goto(&format!("/orgs/{org}/tokens")).await;
    b.select(&format!("#{id} select[name=grace]"), "1d").await;
    b.click(&format!("#{id} form[action$='/rotate'] button"))
        .await;
    let second = b.value("#secret").await;
    assert_ne!(second, first);
    app.clock.advance(31 * 60);
    app.me(&first).await.expect(200);
    app.me(&second).await.expect(200);

    // The two are linked: the old says what replaces it and when it ends, and is not offered
    // another rotation; the new says what it replaces.
    b.goto(&format!("/orgs/{org}/tokens")).await;
    let old_row = b.text(&format!("#{id}")).await;
    assert!(
        old_row.contains("Being replaced by") && old_row.contains("ends 20"),
        "{old_row}"
    );
    assert_eq!(b.count(&format!("#{id} form[action$='/rotate']")).await, 0);
    assert!(old_row.contains("Already being replaced."), "{old_row}");
    let new_row = b
        .text("tbody tr:has(.rotation):not(:has(.not-rotatable))")
        .await;
    assert!(
        new_row.contains("Replaces") && new_row.contains("billing v2"),
        "{new_row}"
    );

    // Delete only after typing the phrase: the browser will not send anything else.
    b.click(&format!("#{id} a[href$='/delete']")).await;
    b.fill("#confirm", "delete token").await;
    // The browser holds the form back: it is invalid with anything but the phrase (asked of
    // the browser itself, rather than waiting and seeing that nothing happened).
    let valid = b
        .client
        .execute(
            "return document.querySelector('form button.danger').form.checkValidity();",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(
        valid,
        serde_json::json!(false),
        "a wrong phrase must not delete"
    );
    b.click_in_place("form button.danger").await;
    assert!(
        b.path().await.ends_with("/delete"),
        "a wrong phrase must not delete"
    );
    app.me(&first).await.expect(200);
    b.screenshot("delete-token").await;
    b.fill("#confirm", "Delete token").await;
    b.click("form button.danger").await;
    assert_eq!(b.text(".notice").await, "The token is deleted.");
    b.click_in_place("#ended-tokens summary").await;
    assert!(
        b.text(&format!("#ended-tokens #{id}"))
            .await
            .contains("revoked")
    );
    app.me(&first).await.expect(401);
    b.close().await;
}

#[tokio::test]
async fn an_admin_manages_apps_and_their_secrets() {
    let app = TestApp::spawn().await;
    let (org, _) = admin_of(&app, "ada@example.com", "Acme").await;
    // SPEC 3: a client's scopes are those of the organisation's types and features.
    app.service()
        .update_org(
            &latchkey_service::Caller::operator(),
            &org,
            &["links".into()],
            &[],
            None,
        )
        .await
        .unwrap();
    let b = Browser::start(&app.url).await;
    b.sign_in("ada@example.com", PASSWORD).await;
    b.open_org(&org).await;
    b.org_page(&org, "apps").await;

    b.fill("#app-name", "Partner <b>sync</b>").await;
    b.fill("#app-scopes", "api links").await;
    b.click("form[action$='/apps'] button[type=submit]").await;
    let secret = b.value("#secret").await;
    let subject = b.text("[role=dialog] p").await;
    let client_id = subject.rsplit(' ').next().unwrap().to_owned();
    assert!(
        subject.contains("Partner <b>sync</b>"),
        "escaped, shown as typed: {subject}"
    );
    let token = |secret: String| {
        let app_url = app.url.clone();
        let client_id = client_id.clone();
        async move {
            reqwest::Client::new()
                .post(format!("{app_url}/oauth2/token"))
                .basic_auth(&client_id, Some(&secret))
                .form(&[("grant_type", "client_credentials"), ("scope", "api")])
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(token(secret.clone()).await, 200);

    // Edit redirect URIs and scopes.
    b.click("a.button").await;
    b.fill("#app-uris", "https://partner.example/callback")
        .await;
    b.fill("#app-scopes", "api").await;
    b.click("section[aria-labelledby=edit-title] button").await;
    b.screenshot("app").await;
    assert_eq!(b.text(".notice").await, "The changes are saved.");
    assert_eq!(
        b.value("#app-uris").await,
        "https://partner.example/callback"
    );
    assert_eq!(b.value("#app-scopes").await, "api");

    // How to get tokens: the endpoint and a ready command, without the secret.
    assert_eq!(
        b.text("#token-endpoint").await,
        format!("{}/oauth2/token", app.url)
    );
    let curl = b.text("#curl-line").await;
    assert!(
        curl.contains(&format!("-u '{client_id}:'\"$CLIENT_SECRET\""))
            && curl.contains("grant_type=client_credentials")
            && curl.contains("scope=api")
            && !curl.contains(&secret),
        "{curl}"
    );
    // And it works as written, in a shell, with the real curl.
    assert!(
        std::path::Path::new("/usr/bin/curl").exists(),
        "/usr/bin/curl is missing: install Debian's `curl` package (scripts/test does)"
    );
    // (tokio's: the server answering it runs on this test's runtime.)
    let ran = tokio::process::Command::new("/bin/sh")
        .arg("-c")
        .arg(&curl)
        .env("CLIENT_SECRET", &secret)
        .output()
        .await
        .unwrap();
    let answer: serde_json::Value = serde_json::from_slice(&ran.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&ran.stdout)));
    assert_eq!(answer["token_type"], "Bearer", "{answer}");
    assert!(
        answer["access_token"]
            .as_str()
            .is_some_and(|t| t.starts_with("ey"))
    );

    // A second secret, shown once; each secret says when it was last used.
    b.click("form[action$='/secrets'] button").await;
    let second = b.value("#secret").await;
    assert_ne!(second, secret);
    app.flush().await;
    b.click("a.button").await;
    let remove = "a[href*='/secrets/'][href$='/revoke']";
    assert_eq!(b.count(remove).await, 2);
    let uses = b.text("section[aria-labelledby=secrets-title] ul").await;
    assert!(
        uses.contains("last used 20") && uses.contains("never used"),
        "{uses}"
    );
    // Removing asks first, with the secret's last use; the first one goes.
    b.click(remove).await;
    assert!(b.text("main").await.contains("It was last used 20"));
    assert_eq!(b.count("#only-secret").await, 0);
    b.click("main form button.danger").await;
    assert_eq!(b.text(".notice").await, "The secret is removed.");
    assert_eq!(b.count(remove).await, 1);
    let still = [token(secret.clone()).await, token(second.clone()).await];
    assert_eq!(still, [401, 200]);
    // The only one left: the confirmation warns, and Cancel changes nothing.
    b.click(remove).await;
    assert!(b.text("#only-secret").await.contains("only secret"));
    b.click("main a.button.secondary").await;
    assert_eq!(b.count(remove).await, 1);
    assert_eq!(token(second.clone()).await, 200);

    // Delete after typing the app's name.
    b.fill("#confirm", "Partner <b>sync</b>").await;
    b.click("form[action$='/delete'] button").await;
    assert_eq!(b.text(".notice").await, "The app is deleted.");
    b.screenshot("apps").await;
    assert_eq!(token(second).await, 401);
    b.close().await;
}

#[tokio::test]
async fn activity_shows_the_audit_log_of_the_person_and_the_organisation() {
    let app = TestApp::spawn().await;
    let (org, session) = admin_of(&app, "ada@example.com", "Acme").await;
    app.user("bob@example.com").await;
    let (laptop, _) = app.personal_token(&session, "laptop").await;
    // 55 renames: more than a page of 50.
    for i in 1..=55 {
        app.call(
            Method::PATCH,
            &format!("/v1/user/tokens/{laptop}"),
            Some(&session),
            Some(json!({ "name": format!("laptop {i}") })),
        )
        .await
        .expect(200);
    }
    let worker = app
        .post(
            &format!("/v1/orgs/{org}/tokens"),
            &session,
            json!({ "name": "billing worker", "type": "api" }),
        )
        .await
        .expect(201)
        .str("id");
    app.post(
        &format!("/v1/orgs/{org}/members"),
        &session,
        json!({ "email": "bob@example.com", "role": "member" }),
    )
    .await
    .expect(201);

    let b = Browser::start(&app.url).await;
    b.sign_in("ada@example.com", PASSWORD).await;
    b.click("a[href='/activity']").await;
    // In words, with names, not ids or codes; newest first, 50 to a page.
    let rows = b.text("#events tbody").await;
    assert!(rows.contains("You signed in"), "{rows}");
    assert!(
        rows.contains("You renamed the token “laptop 54” to “laptop 55”"),
        "{rows}"
    );
    assert!(
        !rows.contains("usr_") && !rows.contains("token.renamed"),
        "{rows}"
    );
    assert_eq!(b.count("#events tbody tr").await, 50);
    assert!(
        !b.overflows_sideways().await,
        "activity overflows at 1280 px"
    );
    b.screenshot("activity").await;
    b.click("#older").await;
    assert!(
        b.text("#events tbody")
            .await
            .contains("You created the token “laptop”")
    );
    // Narrowed to sign-ins: only those.
    b.goto("/activity").await;
    b.select("#f-kind", "sign-ins").await;
    b.click("#filters button").await;
    let rows = b.text("#events tbody").await;
    assert!(
        rows.lines().all(|l| l.contains("signed in")
            || l.contains("UTC")
            || l.contains("127.0.0.1")
            || l.trim().is_empty()),
        "{rows}"
    );
    assert!(b.path().await.contains("kind=sign-ins"));

    // The organisation's: its token, its people, each a filter.
    b.open_org(&org).await;
    b.org_page(&org, "activity").await;
    let theirs = b.text("#events tbody").await;
    assert!(
        theirs.contains("You created the token “billing worker”"),
        "{theirs}"
    );
    assert!(
        theirs.contains("You made bob@example.com member"),
        "{theirs}"
    );
    assert!(
        theirs.contains("You created the organisation")
            || theirs.contains("An operator created the organisation"),
        "{theirs}"
    );
    b.select("#f-token", &worker).await;
    b.click("#filters button").await;
    let rows = b.text("#events tbody").await;
    assert!(
        rows.contains("billing worker") && !rows.contains("bob@example.com"),
        "{rows}"
    );
    b.click("#filters a").await;
    let bob = app
        .service()
        .find_user_by_email("bob@example.com")
        .await
        .unwrap();
    b.select("#f-person", bob.id.as_str()).await;
    b.click("#filters button").await;
    assert!(b.text("main").await.contains("Nothing matches."));

    // A phone: the rows become cards, nothing overflows.
    b.client.set_window_size(390, 844).await.unwrap();
    b.goto(&format!("/orgs/{org}/activity")).await;
    assert!(
        !b.overflows_sideways().await,
        "activity overflows at 390 px"
    );
    b.screenshot("activity-phone").await;
    b.close().await;
}

// ---- HTTP-level checks ----

/// A session cookie and the page's CSRF token for `email`.
async fn console_session(app: &TestApp, email: &str) -> (String, String) {
    let session = app.login(email).await;
    let cookie = format!("latchkey_session={session}");
    let html = reqwest::Client::new()
        .get(format!("{}/credentials", app.url))
        .header(header::COOKIE, &cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let csrf = hidden(&html, "csrf_token");
    (cookie, csrf)
}

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

#[tokio::test]
async fn pages_carry_the_security_headers_and_cookies_their_flags() {
    let app = TestApp::spawn().await;
    app.user("ada@example.com").await;
    let res = no_redirects()
        .get(format!("{}/login", app.url))
        .send()
        .await
        .unwrap();
    let h = res.headers();
    let csp = h[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
    assert!(
        csp.contains("frame-ancestors 'none'") && csp.contains("default-src 'none'"),
        "{csp}"
    );
    assert_eq!(h[header::X_FRAME_OPTIONS], "DENY");
    assert_eq!(h[header::CACHE_CONTROL], "no-store");
    assert_eq!(h[header::REFERRER_POLICY], "same-origin");
    // Every page names its icon, which is served.
    let icon = no_redirects()
        .get(format!("{}/favicon.ico", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(icon.status(), 200);
    assert_eq!(icon.headers()[header::CONTENT_TYPE], "image/svg+xml");
    let login_cookie = h[header::SET_COOKIE].to_str().unwrap().to_owned();
    assert!(login_cookie.contains("HttpOnly") && login_cookie.contains("SameSite=Strict"));
    let html = res.text().await.unwrap();
    let csrf = hidden(&html, "csrf_token");
    let seed = login_cookie.split(';').next().unwrap();

    let res = no_redirects()
        .post(format!("{}/login", app.url))
        .header(header::COOKIE, seed)
        .form(&[
            ("email", "ada@example.com"),
            ("password", PASSWORD),
            ("csrf_token", &csrf),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    let session_cookie = res.headers()[header::SET_COOKIE].to_str().unwrap();
    assert!(session_cookie.starts_with("latchkey_session="));
    assert!(session_cookie.contains("HttpOnly") && session_cookie.contains("SameSite=Lax"));
    assert!(session_cookie.contains("Path=/"));

    // The login form without its CSRF token is refused (login CSRF).
    let res = no_redirects()
        .post(format!("{}/login", app.url))
        .form(&[("email", "ada@example.com"), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    assert!(
        res.headers()
            .get(header::SET_COOKIE)
            .is_none_or(|c| !c.to_str().unwrap().starts_with("latchkey_session="))
    );

    // Pages need a session.
    let res = no_redirects()
        .get(format!("{}/credentials", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    assert_eq!(
        res.headers()[header::LOCATION],
        "/login?next=%2Fcredentials"
    );
}

/// A page's status, content type, CSP and text.
async fn page_of(res: reqwest::Response) -> (u16, String, String, String) {
    let status = res.status().as_u16();
    let h = res.headers();
    let kind = h
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let csp = h
        .get(header::CONTENT_SECURITY_POLICY)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, kind, csp, res.text().await.unwrap())
}

#[tokio::test]
async fn unknown_addresses_and_reloads_of_forms_answer_pages_not_json() {
    let app = TestApp::spawn().await;
    let (org, _) = admin_of(&app, "ada@example.com", "Acme").await;
    let (cookie, _) = console_session(&app, "ada@example.com").await;
    let http = no_redirects();

    // Unknown addresses under the console's roots: a 404 page in the console's look, with
    // the person's navigation when signed in, and without it otherwise.
    let res = http
        .get(format!("{}/orgs/{org}/nope", app.url))
        .header(header::COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    let (status, kind, csp, html) = page_of(res).await;
    assert_eq!(status, 404);
    assert!(kind.starts_with("text/html"), "{kind}");
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert!(html.contains("Page not found"), "{html}");
    assert!(html.contains("ada@example.com"), "the navigation: {html}");
    assert!(html.contains("Acme"), "the navigation: {html}");
    assert!(!html.contains("\"error\""), "{html}");
    let res = http
        .get(format!("{}/credentials/x/y", app.url))
        .send()
        .await
        .unwrap();
    let (status, kind, _, html) = page_of(res).await;
    assert_eq!(status, 404);
    assert!(kind.starts_with("text/html") && html.contains("Page not found"));

    // A malformed address of a page (a segment that is not UTF-8 text): a page too.
    let res = http
        .get(format!("{}/orgs/%FF/tokens", app.url))
        .header(header::COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    let (status, kind, _, html) = page_of(res).await;
    assert_eq!(status, 400);
    assert!(
        kind.starts_with("text/html") && html.contains("not UTF-8"),
        "{kind} {html}"
    );

    // A browser anywhere outside the API gets a page; an API client gets JSON.
    let res = http
        .get(format!("{}/nope", app.url))
        .header(header::ACCEPT, "text/html,application/xhtml+xml,*/*;q=0.8")
        .send()
        .await
        .unwrap();
    let (status, kind, _, _) = page_of(res).await;
    assert_eq!((status, kind.starts_with("text/html")), (404, true));
    let res = http.get(format!("{}/nope", app.url)).send().await.unwrap();
    let (status, kind, _, _) = page_of(res).await;
    assert_eq!((status, kind.as_str()), (404, "application/json"));
    let res = http
        .get(format!("{}/v1/nope", app.url))
        .header(header::ACCEPT, "text/html")
        .send()
        .await
        .unwrap();
    let (status, kind, _, _) = page_of(res).await;
    assert_eq!((status, kind.as_str()), (404, "application/json"));

    // A reload of a form's address (a GET where only POST is taken) goes back to its page.
    for (path, page) in [
        ("/credentials/tokens".to_owned(), "/credentials".to_owned()),
        ("/account/password".to_owned(), "/account".to_owned()),
        (
            format!("/orgs/{org}/tokens/tok_x/rotate"),
            format!("/orgs/{org}/tokens"),
        ),
    ] {
        let res = http
            .get(format!("{}{path}", app.url))
            .header(header::COOKIE, &cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 303, "{path}");
        assert_eq!(res.headers()[header::LOCATION], page.as_str(), "{path}");
    }
    // Another method the address does not take: a 405 page.
    let res = http
        .put(format!("{}/credentials", app.url))
        .header(header::COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    let (status, kind, _, html) = page_of(res).await;
    assert_eq!(status, 405);
    assert!(
        kind.starts_with("text/html") && html.contains("Not possible here"),
        "{html}"
    );
}

#[tokio::test]
async fn an_ended_session_says_so_and_comes_back_where_the_person_was() {
    let app = TestApp::spawn().await;
    let (org, _) = admin_of(&app, "ada@example.com", "Acme").await;
    let (cookie, csrf) = console_session(&app, "ada@example.com").await;
    let session = cookie.trim_start_matches("latchkey_session=").to_owned();
    app.call(Method::DELETE, "/v1/sessions/current", Some(&session), None)
        .await
        .expect(204);
    let http = no_redirects();

    // A page opened with the ended session: back to it after signing in, told why, and the
    // dead cookie cleared.
    let res = http
        .get(format!("{}/orgs/{org}/tokens?done=saved", app.url))
        .header(header::COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    let to = res.headers()[header::LOCATION].to_str().unwrap().to_owned();
    assert_eq!(
        to,
        format!("/login?next=%2Forgs%2F{org}%2Ftokens%3Fdone%3Dsaved&why=expired")
    );
    let cleared = res.headers()[header::SET_COOKIE].to_str().unwrap();
    assert!(
        cleared.starts_with("latchkey_session=;") && cleared.contains("Max-Age=0"),
        "{cleared}"
    );
    let page = http
        .get(format!("{}{to}", app.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("Your session ended"), "{page}");
    assert_eq!(
        hidden(&page, "next"),
        format!("/orgs/{org}/tokens?done=saved")
    );

    // A form sent with it: back to the page the form belongs to (an action's fields are not
    // kept: they may hold a password).
    let res = http
        .post(format!("{}/orgs/{org}/tokens/tok_x/rotate", app.url))
        .header(header::COOKIE, &cookie)
        .form(&[("csrf_token", csrf.as_str()), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    assert_eq!(
        res.headers()[header::LOCATION],
        format!("/login?next=%2Forgs%2F{org}%2Ftokens&why=expired").as_str()
    );

    // A creation form sent with it: what was typed comes back after signing in, filled in
    // again; never the password.
    let res = http
        .post(format!("{}/credentials/tokens", app.url))
        .header(header::COOKIE, &cookie)
        .form(&[
            ("csrf_token", csrf.as_str()),
            ("name", "laptop <cli>"),
            ("token_type", "personal"),
            ("expires_in_days", "30"),
            ("password", PASSWORD),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    let to = res.headers()[header::LOCATION].to_str().unwrap().to_owned();
    assert!(
        to.ends_with("&why=expired") && !to.contains(PASSWORD),
        "{to}"
    );
    let login = http
        .get(format!("{}{to}", app.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    // (As the browser reads the attribute.)
    let next = hidden(&login, "next").replace("&#38;", "&");
    assert_eq!(
        next,
        "/credentials/new?name=laptop+%3Ccli%3E&token_type=personal&expires_in_days=30"
    );
    let (again, _) = console_session(&app, "ada@example.com").await;
    let form = http
        .get(format!("{}{next}", app.url))
        .header(header::COOKIE, &again)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        form.contains("value=\"laptop &#60;cli&#62;\"")
            || form.contains("value=\"laptop &lt;cli&gt;\""),
        "the name typed, escaped: {form}"
    );
    assert!(form.contains("value=\"30\""), "{form}");
    // The member form too.
    let res = http
        .post(format!("{}/orgs/{org}/members", app.url))
        .header(header::COOKIE, &cookie)
        .form(&[
            ("csrf_token", csrf.as_str()),
            ("email", "bob@example.com"),
            ("role", "admin"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.headers()[header::LOCATION],
        format!(
            "/login?next=%2Forgs%2F{org}%2Fmembers%3Femail%3Dbob%2540example.com%26role%3Dadmin&why=expired"
        )
        .as_str()
    );

    // Never signed in: no "ended", no cookie to clear.
    let res = http
        .post(format!("{}/credentials/tokens", app.url))
        .form(&[("name", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    assert_eq!(
        res.headers()[header::LOCATION],
        "/login?next=%2Fcredentials"
    );
    assert!(res.headers().get(header::SET_COOKIE).is_none());
    let page = http
        .get(format!("{}/login?next=%2Fcredentials", app.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!page.contains("Your session ended"), "{page}");
}

#[tokio::test]
async fn forms_without_the_csrf_token_or_from_another_origin_are_refused() {
    let app = TestApp::spawn().await;
    app.user("ada@example.com").await;
    let (cookie, csrf) = console_session(&app, "ada@example.com").await;
    let post = |form: Vec<(&'static str, String)>, origin: Option<String>| {
        let mut req = no_redirects()
            .post(format!("{}/credentials/tokens", app.url))
            .header(header::COOKIE, &cookie)
            .form(&form);
        if let Some(o) = origin {
            req = req.header(header::ORIGIN, o);
        }
        req.send()
    };
    let fields = |csrf: &str| {
        vec![
            ("name", "laptop".to_owned()),
            ("password", PASSWORD.to_owned()),
            ("csrf_token", csrf.to_owned()),
        ]
    };
    assert_eq!(post(fields(""), None).await.unwrap().status(), 403);
    assert_eq!(
        post(fields("0123456789abcdef"), None)
            .await
            .unwrap()
            .status(),
        403
    );
    assert_eq!(
        post(fields(&csrf), Some("https://evil.example".to_owned()))
            .await
            .unwrap()
            .status(),
        403
    );
    assert!(
        app.tokens(&app.login("ada@example.com").await)
            .await
            .is_empty(),
        "nothing created"
    );

    // With both, the token is created and shown on a page that is never cached or referred.
    let res = post(fields(&csrf), Some(app.url.clone())).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()[header::CACHE_CONTROL], "no-store");
    assert_eq!(res.headers()[header::REFERRER_POLICY], "no-referrer");
    let html = res.text().await.unwrap();
    assert!(html.contains("you will not see this again"), "{html}");
    assert!(
        html.contains("value=\"lkp_"),
        "the secret is on the page once"
    );

    // A malformed form is a clear 400 page, not a 500.
    let res = no_redirects()
        .post(format!("{}/credentials/tokens", app.url))
        .header(header::COOKIE, &cookie)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(format!("csrf_token={csrf}&expires_in_days=%ZZ"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
}

#[tokio::test]
async fn names_are_escaped_and_outsiders_get_no_organisation_pages() {
    let app = TestApp::spawn().await;
    let (org, session) = admin_of(&app, "ada@example.com", "Acme").await;
    app.personal_token(&session, "<script>alert(1)</script>")
        .await;
    app.user("eve@example.com").await;
    app.user("bob@example.com").await;
    app.add_member(&org, "bob@example.com", Role::Member).await;

    let (cookie, _) = console_session(&app, "ada@example.com").await;
    let html = no_redirects()
        .get(format!("{}/credentials", app.url))
        .header(header::COOKIE, &cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!html.contains("<script>alert(1)</script>"));
    assert!(html.contains("&#60;script&#62;alert(1)&#60;"), "escaped");

    for (email, status) in [("bob@example.com", 403), ("eve@example.com", 404)] {
        let (cookie, _) = console_session(&app, email).await;
        for page in ["tokens", "apps", "activity"] {
            let res = no_redirects()
                .get(format!("{}/orgs/{org}/{page}", app.url))
                .header(header::COOKIE, &cookie)
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), status, "{email} {page}");
        }
    }
}

#[tokio::test]
async fn deleting_needs_the_typed_phrase_on_the_server_too() {
    let app = TestApp::spawn().await;
    let (org, _) = admin_of(&app, "ada@example.com", "Acme").await;
    let (cookie, csrf) = console_session(&app, "ada@example.com").await;
    let session = app.login("ada@example.com").await;
    let listed = app
        .get(&format!("/v1/orgs/{org}/tokens"), &session)
        .await
        .expect(200);
    let id = listed.body[0]["id"].as_str().unwrap().to_owned();
    let delete = |confirm: &'static str| {
        no_redirects()
            .post(format!("{}/orgs/{org}/tokens/{id}/delete", app.url))
            .header(header::COOKIE, &cookie)
            .form(&[("csrf_token", csrf.as_str()), ("confirm", confirm)])
            .send()
    };
    assert_eq!(delete("yes").await.unwrap().status(), 400);
    let token = app
        .get(&format!("/v1/orgs/{org}/tokens/{id}"), &session)
        .await
        .expect(200);
    assert_ne!(token.str("status"), "revoked");
    assert_eq!(delete("Delete token").await.unwrap().status(), 303);
    let token = app
        .get(&format!("/v1/orgs/{org}/tokens/{id}"), &session)
        .await
        .expect(200);
    assert_eq!(token.str("status"), "revoked");
}

#[tokio::test]
async fn the_expiry_notice_link_opens_the_form_pre_filled() {
    let app = TestApp::spawn().await;
    let (org, _) = admin_of(&app, "ada@example.com", "Acme").await;
    let (cookie, _) = console_session(&app, "ada@example.com").await;
    for path in [
        "/credentials/new?name=deploy%20%3Cbot%3E&type=personal".to_owned(),
        format!("/orgs/{org}/tokens/new?name=deploy%20%3Cbot%3E&type=api"),
    ] {
        let html = no_redirects()
            .get(format!("{}{path}", app.url))
            .header(header::COOKIE, &cookie)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(html.contains("value=\"deploy &#60;bot&#62;\""), "{path}");
    }
}

#[tokio::test]
async fn the_keyboard_alone_signs_in_and_generates_a_token() {
    use fantoccini::key::Key;
    let app = TestApp::spawn().await;
    app.user("ada@example.com").await;
    let b = Browser::start(&app.url).await;
    b.goto("/login").await;
    // The email field has focus on arrival; Tab moves to the password, Enter submits.
    let tab: char = Key::Tab.into();
    let enter: char = Key::Enter.into();
    let active = b.client.active_element().await.unwrap();
    active
        .send_keys(&format!("ada@example.com{tab}{PASSWORD}{enter}"))
        .await
        .unwrap();
    b.find(".logout").await;
    assert_eq!(b.path().await, "/credentials");
    // The skip link is the first stop, and leads to the content.
    let body = b.find("body").await;
    body.send_keys(&tab.to_string()).await.unwrap();
    let focused = b.client.active_element().await.unwrap();
    assert_eq!(focused.text().await.unwrap(), "Skip to content");
    b.click("#new-name").await;
    let active = b.client.active_element().await.unwrap();
    // Name, Tab to the type, Tab to the expiry, Tab to the password, Enter.
    active
        .send_keys(&format!("keyboard{tab}{tab}{tab}{PASSWORD}{enter}"))
        .await
        .unwrap();
    assert!(b.value("#secret").await.starts_with("lkp_"));
    b.close().await;
}

#[tokio::test]
async fn a_partner_app_gets_consent_through_the_console_look() {
    use oauth2::PkceCodeChallenge;
    let app = crate::oauth_helpers::spawn().await;
    let org = crate::oauth_helpers::org(&app, "Acme", "ada@example.com").await;
    let redirect = "http://127.0.0.1:9/callback";
    let client = crate::oauth_helpers::create_client(
        &app,
        &org,
        json!({
            "name": "Zapier <Automation>",
            "grant_types": ["authorization_code"],
            "redirect_uris": [redirect],
            "scopes": ["api"],
            "confidential": false,
        }),
    )
    .await
    .expect(201)
    .str("id");
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let mut authorize = reqwest::Url::parse(&format!("{}/oauth2/authorize", app.url)).unwrap();
    authorize.query_pairs_mut().extend_pairs([
        ("response_type", "code"),
        ("client_id", client.as_str()),
        ("redirect_uri", redirect),
        ("scope", "api"),
        ("state", "xyz"),
        ("code_challenge", challenge.as_str()),
        ("code_challenge_method", "S256"),
    ]);
    let query = authorize.query().unwrap().to_owned();
    let b = Browser::start(&app.url).await;
    b.goto(&format!("/oauth2/authorize?{query}")).await;
    assert_eq!(b.text("h1").await, "Sign in to continue");
    b.fill("#email", "ada@example.com").await;
    b.fill("#password", PASSWORD).await;
    b.click("form button[type=submit]").await;
    assert!(b.text("h1").await.contains("Zapier <Automation>"));
    b.screenshot("consent").await;
    b.click("button[value=approve]").await;
    // The browser goes on to the partner's redirect URI (nothing listens there).
    let mut landed = String::new();
    for _ in 0..50 {
        landed = b.client.current_url().await.unwrap().to_string();
        if landed.starts_with(redirect) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(landed.starts_with(redirect), "{landed}");
    let url = reqwest::Url::parse(&landed).unwrap();
    let pairs: std::collections::HashMap<_, _> = url.query_pairs().into_owned().collect();
    assert_eq!(pairs["state"], "xyz");
    let res = reqwest::Client::new()
        .post(format!("{}/oauth2/token", app.url))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", pairs["code"].as_str()),
            ("redirect_uri", redirect),
            ("client_id", client.as_str()),
            ("code_verifier", verifier.secret().as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    b.close().await;
}

#[tokio::test]
async fn the_console_sign_in_has_the_same_back_off_and_answers_as_the_api() {
    let app = TestApp::spawn().await;
    app.user("ada@example.com").await;
    let client = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let html = client
        .get(format!("{}/login", app.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let csrf = hidden(&html, "csrf_token");
    let attempt = |email: &'static str, password: &'static str| {
        client
            .post(format!("{}/login", app.url))
            .form(&[
                ("email", email),
                ("password", password),
                ("csrf_token", &csrf),
            ])
            .send()
    };
    let error_of = |html: &str| {
        html.split("role=\"alert\">")
            .nth(1)
            .and_then(|r| r.split('<').next())
            .unwrap_or_default()
            .to_owned()
    };
    let unknown = attempt("ghost@example.com", "wrong password!")
        .await
        .unwrap();
    assert_eq!(unknown.status(), 401);
    let unknown = error_of(&unknown.text().await.unwrap());
    for _ in 0..5 {
        let wrong = attempt("ada@example.com", "wrong password!").await.unwrap();
        assert_eq!(wrong.status(), 401);
        assert_eq!(error_of(&wrong.text().await.unwrap()), unknown);
    }
    attempt("ada@example.com", "wrong password!").await.unwrap();
    let waiting = attempt("ada@example.com", PASSWORD).await.unwrap();
    assert_eq!(waiting.status(), 429, "even the right password waits");
    let wait = waiting.headers()[header::RETRY_AFTER]
        .to_str()
        .unwrap()
        .to_owned();
    // The page says how long, as the header does.
    let page = waiting.text().await.unwrap();
    assert!(
        page.contains(&format!("Try again in {wait} second")),
        "Retry-After {wait}: {page}"
    );
    app.clock.advance(1);
    let ok = attempt("ada@example.com", PASSWORD).await.unwrap();
    assert_eq!(ok.status(), 303);
}

/// The path and query of a link in a mail, to open in the browser.
fn path_of(link: &str, app: &TestApp) -> String {
    link.strip_prefix(&app.url)
        .unwrap_or_else(|| panic!("{link} does not start with the public URL"))
        .to_owned()
}

#[tokio::test]
async fn links_in_mails_open_the_console_a_cancel_link_and_an_expiry_notice() {
    use crate::mail_helpers::{SmtpSink, one};
    let sink = SmtpSink::start().await;
    let app = TestApp::builder()
        .smtp_url(&sink.url())
        .without_workers()
        .start()
        .await;
    let (org, _) = admin_of(&app, "ada@example.com", "Acme").await;
    let b = Browser::start(&app.url).await;
    b.sign_in("ada@example.com", PASSWORD).await;

    // An s2s token waits 30 minutes before it works; its creation mail carries a cancel link.
    b.goto(&format!("/orgs/{org}/tokens")).await;
    b.fill("#new-name", "backend").await;
    b.select("#new-type", "s2s").await;
    b.click("#new button[type=submit]").await;
    let secret = b.value("#secret").await;
    let mails = sink.delivered(&app, 1).await;
    let created = one(&mails, "ada@example.com", "\"backend\" created");
    created.assert_free_of(&[&secret]);
    let link = created
        .link(&format!("{}/cancel?code=", app.url))
        .unwrap_or_else(|| panic!("no cancel link in {}", created.body));

    // Opening the link changes nothing (mail scanners open links); the button cancels.
    b.goto(&path_of(&link, &app)).await;
    assert_eq!(b.text("h1").await, "Cancel “backend”?");
    b.screenshot("cancel").await;
    b.click("form button.danger").await;
    assert_eq!(b.text("h1").await, "Token cancelled");
    app.clock.advance(31 * 60);
    app.me(&secret).await.expect(401);
    // Single use.
    b.goto(&path_of(&link, &app)).await;
    assert_eq!(b.text("h1").await, "This link cannot be used");

    // An expiry notice's link opens the creation form with the same name and type.
    b.goto("/credentials").await;
    b.fill("#new-name", "ci deploy").await;
    b.fill("#new-days", "10").await;
    b.fill("#new-password", PASSWORD).await;
    b.click("#new button[type=submit]").await;
    app.clock.advance(9 * 86_400 + 3_600);
    app.service().send_expiry_notices().await.unwrap();
    let mails = sink.delivered(&app, 4).await;
    let notice = one(&mails, "ada@example.com", "\"ci deploy\" expires in");
    let link = notice
        .link(&format!("{}/credentials/new?", app.url))
        .unwrap_or_else(|| panic!("no renewal link in {}", notice.body));
    // Nine days on, the session has long ended: the link leads through the sign-in, then on.
    b.goto(&path_of(&link, &app)).await;
    assert!(b.path().await.starts_with("/login?next="));
    b.fill("#email", "ada@example.com").await;
    b.fill("#password", PASSWORD).await;
    b.click("form button[type=submit]").await;
    assert!(b.path().await.starts_with("/credentials/new?"));
    assert_eq!(b.value("#new-name").await, "ci deploy");
    assert_eq!(b.value("#new-type").await, "personal");
    b.close().await;
}

#[tokio::test]
async fn the_oauth_sign_in_form_needs_its_csrf_token_too() {
    let app = TestApp::spawn().await;
    app.user("ada@example.com").await;
    let res = no_redirects()
        .post(format!("{}/oauth2/login", app.url))
        .header(header::ORIGIN, "https://evil.example")
        .form(&[("email", "ada@example.com"), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    let cookies: Vec<_> = res.headers().get_all(header::SET_COOKIE).iter().collect();
    assert!(
        cookies
            .iter()
            .all(|c| !c.to_str().unwrap().starts_with("latchkey_session=")),
        "no session for a forged sign-in: {cookies:?}"
    );
}

#[tokio::test]
async fn password_prompts_in_a_session_back_off_like_the_sign_in() {
    let app = TestApp::spawn().await;
    app.user("ada@example.com").await;
    let session = app.login("ada@example.com").await;
    let (id, _) = app.personal_token(&session, "laptop").await;
    let (cookie, csrf) = console_session(&app, "ada@example.com").await;
    let revoke = |password: &'static str| {
        no_redirects()
            .post(format!("{}/credentials/tokens/{id}/revoke", app.url))
            .header(header::COOKIE, &cookie)
            .form(&[("csrf_token", csrf.as_str()), ("password", password)])
            .send()
    };
    for _ in 0..5 {
        assert_eq!(revoke("wrong password!").await.unwrap().status(), 403);
    }
    // Even the right password waits now: a stolen session cannot guess at will.
    assert_eq!(revoke(PASSWORD).await.unwrap().status(), 429);
    app.clock.advance(1);
    assert_eq!(revoke(PASSWORD).await.unwrap().status(), 303);
}

#[tokio::test]
async fn malformed_queries_and_cancel_forms_get_a_page_not_a_crash() {
    let app = TestApp::spawn().await;
    app.user("ada@example.com").await;
    let (cookie, _) = console_session(&app, "ada@example.com").await;
    for path in [
        "/activity?before=abc",
        "/activity?before=1&before=2",
        "/credentials/new?name=a&name=b",
    ] {
        let res = no_redirects()
            .get(format!("{}{path}", app.url))
            .header(header::COOKIE, &cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 400, "{path}");
        assert!(res.headers().contains_key(header::CONTENT_SECURITY_POLICY));
        assert!(res.text().await.unwrap().contains("malformed query string"));
    }
    let res = no_redirects()
        .post(format!("{}/cancel", app.url))
        .json(&json!({ "code": "x" }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    // A sign-in that comes back only to paths on this site.
    let html = no_redirects()
        .get(format!("{}/login?next=/../..//evil.example", app.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!html.contains("evil.example"));
}

/// SPEC 9 in the console: `/account` lists the sessions (this one marked) and ends another;
/// its forms need the CSRF token; changing the password keeps this browser signed in with a
/// new session cookie and ends the others.
#[tokio::test]
async fn the_account_page_changes_the_password_and_ends_sessions() {
    let app = TestApp::spawn().await;
    app.user("ada@example.com").await;
    let phone = app.login("ada@example.com").await;
    let (cookie, csrf) = console_session(&app, "ada@example.com").await;
    let get = |cookie: String| {
        let app_url = app.url.clone();
        async move {
            let res = no_redirects()
                .get(format!("{app_url}/account"))
                .header(header::COOKIE, cookie)
                .send()
                .await
                .unwrap();
            (res.status().as_u16(), res.text().await.unwrap())
        }
    };
    let (status, html) = get(cookie.clone()).await;
    assert_eq!(status, 200, "{html}");
    assert!(
        html.contains("(this one)") && html.contains("No app may act for you"),
        "{html}"
    );
    assert_eq!(
        html.matches("/end\"").count(),
        2,
        "two sessions listed: {html}"
    );

    // Without the CSRF token: refused, nothing ends.
    let sessions = app.get("/v1/user/sessions", &phone).await.expect(200);
    let phone_id = sessions
        .body
        .as_array()
        .and_then(|l| l.iter().find(|s| s["current"] == true))
        .and_then(|s| s["id"].as_str())
        .unwrap_or_default()
        .to_owned();
    let end = |csrf: String| {
        no_redirects()
            .post(format!("{}/account/sessions/{phone_id}/end", app.url))
            .header(header::COOKIE, &cookie)
            .form(&[("csrf_token", csrf)])
            .send()
    };
    assert_eq!(end(String::new()).await.unwrap().status(), 403);
    app.get("/v1/user/tokens", &phone).await.expect(200);
    assert_eq!(end(csrf.clone()).await.unwrap().status(), 303);
    assert_eq!(
        app.get("/v1/user/tokens", &phone).await.status.as_u16(),
        401
    );

    // The password: a wrong current one is shown on the page; the right one re-signs this
    // browser in with a new cookie.
    let change = |current: &str| {
        no_redirects()
            .post(format!("{}/account/password", app.url))
            .header(header::COOKIE, &cookie)
            .form(&[
                ("csrf_token", csrf.clone()),
                ("current_password", current.to_owned()),
                ("new_password", "a-n3w-and-l0nger-passphrase".to_owned()),
            ])
            .send()
    };
    let res = change("wrong-password").await.unwrap();
    assert_eq!(res.status(), 403);
    assert!(res.text().await.unwrap().contains("not correct"));
    let res = change(PASSWORD).await.unwrap();
    assert_eq!(res.status(), 303);
    let fresh = res
        .headers()
        .get(header::SET_COOKIE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .unwrap_or_default()
        .to_owned();
    assert!(fresh.starts_with("latchkey_session=lkses_"), "{fresh}");
    let (status, _) = get(cookie.clone()).await;
    assert_eq!(status, 303, "the old session cookie still works");
    let (status, html) = get(fresh).await;
    assert_eq!(status, 200);
    assert!(html.contains("(this one)"));
}

/// SPEC 9 walked in Chromium: a forgotten password (the sign-in page's link, the mail from a
/// real SMTP server, the link's page), then `/account`: a wrong current password shown on the
/// page, the change, the sessions with this one marked.
#[tokio::test]
async fn a_person_resets_a_forgotten_password_and_changes_it_on_the_account_page() {
    use crate::mail_helpers::{SmtpSink, one};
    let sink = SmtpSink::start().await;
    let app = TestApp::builder()
        .smtp_url(&sink.url())
        .without_workers()
        .start()
        .await;
    app.user("ada@example.com").await;
    let b = Browser::start(&app.url).await;

    b.goto("/login").await;
    b.click("a[href='/forgot-password']").await;
    assert_eq!(b.path().await, "/forgot-password");
    b.fill("#email", "ada@example.com").await;
    b.click("button[type=submit]").await;
    assert!(b.body().await.contains("Check your mail"));
    let mails = sink.delivered(&app, 1).await;
    let link = one(&mails, "ada@example.com", "reset your password")
        .link(&format!("{}/reset-password?code=", app.url))
        .unwrap_or_else(|| panic!("no reset link"));
    let path = link.trim_start_matches(app.url.as_str()).to_owned();
    b.goto(&path).await;
    b.fill("#password", "a-n3w-and-l0nger-passphrase").await;
    b.click("button[type=submit]").await;
    assert!(b.body().await.contains("Password changed"));
    b.screenshot("password-reset").await;

    b.sign_in("ada@example.com", "a-n3w-and-l0nger-passphrase")
        .await;
    b.click("a[href='/account']").await;
    assert_eq!(b.path().await, "/account");
    b.fill("#current_password", "not my password").await;
    b.fill("#new_password", "the-th1rd-passphrase").await;
    b.click("form[action='/account/password'] button").await;
    assert!(b.text(".error").await.to_lowercase().contains("password"));
    b.fill("#current_password", "a-n3w-and-l0nger-passphrase")
        .await;
    b.fill("#new_password", "the-th1rd-passphrase").await;
    b.click("form[action='/account/password'] button").await;
    assert!(b.text(".notice").await.contains("password is changed"));
    assert!(b.text("tbody").await.contains("(this one)"));
    b.screenshot("account").await;
    b.close().await;
    app.call(
        reqwest::Method::POST,
        "/v1/sessions",
        None,
        Some(json!({ "email": "ada@example.com", "password": "the-th1rd-passphrase" })),
    )
    .await
    .expect(201);
}
