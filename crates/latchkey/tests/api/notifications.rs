//! Notifications (SPEC 6 and 2.4) against a real SMTP server (aiosmtpd writing a Maildir):
//! which change mails whom, with which subject and links; never a secret; the outbox keeps
//! mails through an SMTP outage and sends each exactly once; `.eml` files without SMTP; expiry
//! notices once per threshold; cancel links that work once and only while the token is pending.

use std::collections::BTreeMap;

use latchkey_core::Role;
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{Binary, PASSWORD, Server, TestApp, assert_refused};
use crate::mail_helpers::{MAIL_DEADLINE, Mail, SmtpSink, one, read_mails, to};
use crate::org_helpers::{self, admin_org, create, get, no_delay};

/// Every mail carries the outbox id as its Message-ID.
#[track_caller]
fn assert_message_ids_unique(mails: &[Mail]) {
    let mut seen = BTreeMap::new();
    for m in mails {
        assert!(
            m.message_id.starts_with("<mail_") && m.message_id.ends_with("@latchkey>"),
            "Message-ID {:?}",
            m.message_id
        );
        *seen.entry(m.message_id.clone()).or_insert(0) += 1;
    }
    let repeated: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(repeated.is_empty(), "sent twice: {repeated:?}");
}

async fn user_events(app: &TestApp, session: &str) -> Vec<Value> {
    let res = app
        .get("/v1/user/events?limit=100", session)
        .await
        .expect(200);
    res.body.as_array().cloned().unwrap_or_default()
}

#[tokio::test]
async fn personal_token_changes_are_mailed_to_the_owner_without_secrets() {
    let sink = SmtpSink::start().await;
    let app = TestApp::builder()
        .smtp_url(&sink.url())
        .without_workers()
        .start()
        .await;
    let email = "alice@example.com";
    let (_, session) = app.signed_in(email).await;

    // Created.
    let (id, secret) = app.personal_token(&session, "laptop").await;
    let mails = sink.delivered(&app, 1).await;
    let created = one(&mails, email, "personal token \"laptop\" created");
    assert!(created.body.contains(&id), "{}", created.body);
    assert!(created.body.contains("lkp_"), "the hint: {}", created.body);
    assert!(
        !created.body.contains("/cancel?"),
        "no cancel link without an activation delay: {}",
        created.body
    );
    // When it expires, who made it from where, and links to the console and the audit log.
    for line in [
        "  Expires: 20".to_owned(),
        format!("  By:      {email} from 127.0.0.1"),
        format!("In the console:\n  {}/credentials", app.url),
        format!("check the audit log:\n  {}/activity", app.url),
    ] {
        assert!(created.body.contains(&line), "{line:?} in {}", created.body);
    }
    assert!(created.headers["from"].contains("latchkey@localhost"));

    // The first use, written by the usage flush (never the request path), is told as a first
    // use, not a "new address"; the same address again is not news.
    app.me(&secret).await.expect(200);
    app.flush().await;
    let mails = sink.delivered(&app, 2).await;
    let alert = one(
        &mails,
        email,
        "personal token \"laptop\" used for the first time",
    );
    assert!(alert.body.contains("127.0.0.1"), "{}", alert.body);
    app.clock.advance(120);
    app.me(&secret).await.expect(200);
    app.flush().await;
    let events = user_events(&app, &session).await;
    let new_address: Vec<_> = events
        .iter()
        .filter(|e| e["action"] == "token.new_address")
        .collect();
    assert_eq!(new_address.len(), 1, "{events:?}");
    assert_eq!(new_address[0]["details"]["ip"], "127.0.0.1");

    // Revoked by the owner.
    app.post(
        &format!("/v1/user/tokens/{id}/revoke"),
        &session,
        json!({ "password": PASSWORD }),
    )
    .await
    .expect(200);
    let mails = sink.delivered(&app, 3).await;
    let revoked = one(&mails, email, "personal token \"laptop\" revoked");
    assert!(
        revoked.body.contains("revoked by its owner"),
        "{}",
        revoked.body
    );

    // Revoked by a leak report.
    let (_, leaked) = app.personal_token(&session, "ci").await;
    app.call(
        Method::POST,
        "/v1/leaks",
        None,
        Some(json!({ "tokens": [leaked] })),
    )
    .await
    .expect(200);
    let mails = sink.delivered(&app, 5).await;
    one(&mails, email, "personal token \"ci\" created");
    let leak = one(&mails, email, "leaked personal token \"ci\" revoked");
    assert!(leak.body.contains("reported as leaked"), "{}", leak.body);

    // A rotation that ends on first use tells the owner when it ends.
    let (old_id, old) = app.personal_token(&session, "deploy").await;
    let res = app
        .post(
            &format!("/v1/user/tokens/{old_id}/rotate"),
            &session,
            json!({ "grace": "first_use", "password": PASSWORD }),
        )
        .await
        .expect(201);
    let new = res.str("secret");
    app.me(&new).await.expect(200);
    app.flush().await;
    // The rotation told the owner about the replacement: what it replaces and when that ends.
    let mails = sink.delivered(&app, 9).await;
    one(&mails, email, "personal token \"deploy\" created");
    let rotated = one(&mails, email, "personal token \"deploy\" rotated");
    assert!(
        rotated.body.contains("a new token replaces \"deploy\"")
            && rotated.body.contains(&old_id)
            && rotated
                .body
                .contains("stops working when the new token is first used"),
        "{}",
        rotated.body
    );
    let ended = one(&mails, email, "personal token \"deploy\" revoked");
    assert!(
        ended.body.contains("replacement has now been used"),
        "{}",
        ended.body
    );
    assert!(ended.body.contains(&old_id));
    one(
        &mails,
        email,
        "personal token \"deploy\" used for the first time",
    );

    assert_eq!(mails.len(), 9, "{mails:#?}");
    assert_message_ids_unique(&mails);
    for m in &mails {
        assert_eq!(m.to, email);
        m.assert_free_of(&[&secret, &leaked, &old, &new]);
    }
}

#[tokio::test]
async fn organisation_changes_are_mailed_to_every_admin_and_no_one_else() {
    let sink = SmtpSink::start().await;
    let app = no_delay()
        .smtp_url(&sink.url())
        .without_workers()
        .start()
        .await;
    let (boss, second, member) = (
        "boss@example.com",
        "second@example.com",
        "member@example.com",
    );
    let org = admin_org(&app, "Acme", boss).await;
    app.signed_in(second).await;
    app.add_member(&org.id, second, Role::Admin).await;
    app.signed_in(member).await;
    app.add_member(&org.id, member, Role::Member).await;

    // Created, then deleted.
    let (id, secret) = org_helpers::create_token(&app, &org, "s2s", "backend").await;
    let mails = sink.delivered(&app, 2).await;
    for admin in [boss, second] {
        let m = one(&mails, admin, "organisation token \"backend\" created");
        assert!(m.body.contains("Acme"), "{}", m.body);
        assert!(m.body.contains(&id));
    }
    app.call(Method::DELETE, &org.token(&id), Some(&org.admin), None)
        .await
        .expect(200);
    let mails = sink.delivered(&app, 4).await;
    for admin in [boss, second] {
        one(&mails, admin, "organisation token \"backend\" deleted");
    }

    // A leaked organisation token.
    let (_, leaky) = org_helpers::create_token(&app, &org, "s2s", "leaky").await;
    app.call(
        Method::POST,
        "/v1/leaks",
        None,
        Some(json!({ "tokens": [leaky] })),
    )
    .await
    .expect(200);
    let mails = sink.delivered(&app, 8).await;
    for admin in [boss, second] {
        one(&mails, admin, "leaked organisation token \"leaky\" revoked");
    }

    // New OAuth client secrets: at creation, and when one is added.
    let res = app
        .post(
            &format!("/v1/orgs/{}/clients", org.id),
            &org.admin,
            json!({ "name": "billing", "grant_types": ["client_credentials"], "scopes": ["api"] }),
        )
        .await
        .expect(201);
    let client_id = res.str("id");
    let client_secret = res.str("client_secret");
    let res = app
        .post(
            &format!("/v1/orgs/{}/clients/{client_id}/secrets", org.id),
            &org.admin,
            json!({}),
        )
        .await
        .expect(201);
    let second_secret = res.str("secret");
    let mails = sink.delivered(&app, 12).await;
    for admin in [boss, second] {
        let found: Vec<_> = to(&mails, admin)
            .into_iter()
            .filter(|m| m.subject.contains("new secret for the app \"billing\""))
            .collect();
        assert_eq!(found.len(), 2, "{mails:#?}");
        assert!(found[0].body.contains(&client_id));
    }

    assert!(to(&mails, member).is_empty(), "a member got mail");
    assert_eq!(mails.len(), 12, "{mails:#?}");
    assert_message_ids_unique(&mails);
    for m in &mails {
        m.assert_free_of(&[&secret, &leaky, &client_secret, &second_secret]);
    }
}

async fn revoke(app: &TestApp, session: &str, id: &str) {
    app.post(
        &format!("/v1/user/tokens/{id}/revoke"),
        session,
        json!({ "password": PASSWORD }),
    )
    .await
    .expect(200);
}

#[tokio::test]
async fn an_smtp_outage_loses_no_mail_and_sends_none_twice() {
    let mut sink = SmtpSink::start().await;
    let (port, dir) = (sink.port, sink.dir.clone());
    let app = TestApp::builder().smtp_url(&sink.url()).start().await;
    let email = "carol@example.com";
    let (_, session) = app.signed_in(email).await;
    let (first, _) = app.personal_token(&session, "one").await;
    sink.wait_for(1).await;
    app.wait_outbox_empty().await;

    sink.stop();
    revoke(&app, &session, &first).await;
    let (second, _) = app.personal_token(&session, "two").await;
    revoke(&app, &session, &second).await;
    app.personal_token(&session, "three").await;

    // The worker tried (or this call does) and failed: nothing arrived, all wait.
    assert_eq!(app.deliver_mails().await, 0);
    assert_eq!(app.unsent_mails().await, 4);
    assert_eq!(read_mails(&dir.join("new")).len(), 1);
    let deadline = tokio::time::Instant::now() + MAIL_DEADLINE;
    loop {
        let metrics = app
            .call(Method::GET, "/metrics", None, None)
            .await
            .expect(200);
        if !metrics
            .text
            .contains("latchkey_mails_total{result=\"failed\"} 0\n")
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no failure counted: {}",
            metrics.text
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    // The server is back on the same port; past the back-off, every mail arrives once.
    let back = SmtpSink::start_at(port, &dir).await;
    app.clock.advance(600);
    let mails = back.wait_for(5).await;
    app.wait_outbox_empty().await;
    assert_eq!(app.deliver_mails().await, 0);
    let mails_after = back.mails();
    assert_eq!(mails_after.len(), 5, "{mails:#?}");
    assert_message_ids_unique(&mails_after);
    for subject in [
        "\"one\" created",
        "\"one\" revoked",
        "\"two\" created",
        "\"two\" revoked",
        "\"three\" created",
    ] {
        one(&mails_after, email, subject);
    }
}

#[tokio::test]
async fn without_smtp_mails_are_written_as_eml_files() {
    let app = TestApp::spawn().await;
    let (_, session) = app.signed_in("dave@example.com").await;
    let (id, secret) = app.personal_token(&session, "laptop").await;
    let dir = app.data_dir().join("mail");
    let deadline = tokio::time::Instant::now() + MAIL_DEADLINE;
    let mails = loop {
        let mails = read_mails(&dir);
        if !mails.is_empty() {
            break mails;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no .eml file in {}",
            dir.display()
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(mails.len(), 1);
    let mail = &mails[0];
    assert_eq!(mail.subject, "Latchkey: personal token \"laptop\" created");
    assert!(mail.to.contains("dave@example.com"));
    assert_eq!(mail.headers["mime-version"], "1.0");
    assert!(
        mail.headers["content-type"].starts_with("text/plain"),
        "{:?}",
        mail.headers
    );
    assert_eq!(
        mail.headers["date"], "Mon, 01 Jun 2026 12:00:00 +0000",
        "the service clock"
    );
    assert!(mail.body.contains(&id));
    mail.assert_free_of(&[&secret]);
    let names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names.len(), 1, "no temporary file is left: {names:?}");
    let id_in_header = mail
        .message_id
        .trim_start_matches('<')
        .trim_end_matches("@latchkey>");
    assert_eq!(names[0], format!("{id_in_header}.eml"));
    app.wait_outbox_empty().await;
}

#[tokio::test]
async fn expiry_notices_come_30_7_and_1_days_before_each_once() {
    let sink = SmtpSink::start().await;
    let app = no_delay()
        .smtp_url(&sink.url())
        .without_workers()
        .start()
        .await;
    let org = admin_org(&app, "Expiring", "admin@example.com").await;
    let owner = "owner@example.com";
    let (_, session) = app.signed_in(owner).await;
    app.personal_token(&session, "laptop").await; // personal: 180 days
    create(
        &app,
        &org,
        json!({ "name": "nightly job", "type": "s2s", "expires_in_days": 180 }),
    )
    .await
    .expect(201);
    sink.delivered(&app, 2).await;
    assert_eq!(
        app.service().send_expiry_notices().await.unwrap(),
        0,
        "nothing is due yet"
    );

    let personal_link = format!(
        "{}/credentials/new?name=laptop&type=personal&scopes=api",
        app.url
    );
    let org_link = format!(
        "{}/orgs/{}/tokens/new?name=nightly%20job&type=s2s&scopes=api",
        app.url, org.id
    );
    let mut expected = 2;
    for (advance_days, days) in [(150, "30 days"), (23, "7 days"), (6, "1 day")] {
        app.clock.advance(advance_days * 86_400);
        app.service().send_expiry_notices().await.unwrap();
        expected += 2;
        let mails = sink.delivered(&app, expected).await;
        let personal = one(
            &mails,
            owner,
            &format!("personal token \"laptop\" expires in {days}"),
        );
        assert_eq!(
            personal.link(&personal_link).as_deref(),
            Some(personal_link.as_str())
        );
        let org_mail = one(
            &mails,
            "admin@example.com",
            &format!("organisation token \"nightly job\" expires in {days}"),
        );
        assert_eq!(org_mail.link(&org_link).as_deref(), Some(org_link.as_str()));
        // A second sweep sends nothing again.
        assert_eq!(app.service().send_expiry_notices().await.unwrap(), 0);
        app.wait_outbox_empty().await;
        assert_eq!(app.deliver_mails().await, 0);
        assert_eq!(sink.mails().len(), expected);
    }
    let mails = sink.mails();
    assert_eq!(
        mails
            .iter()
            .filter(|m| m.subject.contains("expires in"))
            .count(),
        6
    );
    assert_message_ids_unique(&mails);
}

#[tokio::test]
async fn a_token_shorter_lived_than_a_notice_gets_only_the_notices_that_fit() {
    let sink = SmtpSink::start().await;
    let app = TestApp::builder()
        .smtp_url(&sink.url())
        .without_workers()
        .start()
        .await;
    let owner = "short@example.com";
    let (_, session) = app.signed_in(owner).await;
    app.create_token(
        &session,
        json!({ "name": "week", "password": PASSWORD, "expires_in_days": 5 }),
    )
    .await
    .expect(201);
    sink.delivered(&app, 1).await;
    // Four days left: inside the 30- and 7-day windows, but the token never had 7 days.
    app.clock.advance(86_400);
    assert_eq!(app.service().send_expiry_notices().await.unwrap(), 0);
    app.wait_outbox_empty().await;
    assert_eq!(sink.mails().len(), 1, "{:#?}", sink.mails());
    app.clock.advance(3 * 86_400);
    assert_eq!(app.service().send_expiry_notices().await.unwrap(), 1);
    let mails = sink.delivered(&app, 2).await;
    one(&mails, owner, "personal token \"week\" expires in 1 day");
    assert_eq!(app.service().send_expiry_notices().await.unwrap(), 0);
    app.wait_outbox_empty().await;
    assert_eq!(sink.mails().len(), 2);
}

/// The cancel link's code, from a creation mail.
fn cancel_code(mail: &Mail, app: &TestApp) -> String {
    let link = mail
        .link(&format!("{}/cancel?code=", app.url))
        .unwrap_or_else(|| panic!("no cancel link in {}", mail.body));
    link.split_once("code=").unwrap().1.to_owned()
}

async fn cancel(app: &TestApp, code: &str) -> crate::helpers::Resp {
    app.call(
        Method::POST,
        "/v1/token-cancellations",
        None,
        Some(json!({ "code": code })),
    )
    .await
}

#[tokio::test]
async fn a_cancel_code_is_never_stored_in_clear() {
    let sink = SmtpSink::start().await;
    let app = TestApp::builder()
        .smtp_url(&sink.url())
        .without_workers()
        .start()
        .await;
    let admin = "sealed@example.com";
    let org = admin_org(&app, "Sealed", admin).await;
    create(&app, &org, json!({ "name": "backend", "type": "s2s" }))
        .await
        .expect(201);
    let mails = sink.delivered(&app, 1).await;
    let code = cancel_code(one(&mails, admin, "\"backend\" created"), &app);
    if let Some(url) = &app.config.database_url {
        // PostgreSQL: no row of the outbox holds it (its files are the server's).
        let pool = sqlx::PgPool::connect(url).await.unwrap();
        let rows: Vec<(String, Option<Vec<u8>>)> =
            sqlx::query_as("SELECT body, sealed FROM outbox")
                .fetch_all(&pool)
                .await
                .unwrap();
        assert!(!rows.is_empty());
        for (body, sealed) in rows {
            assert!(
                !body.contains(&code),
                "the cancel code is in the outbox in clear"
            );
            let sealed = sealed.unwrap_or_default();
            assert!(!sealed.windows(code.len()).any(|w| w == code.as_bytes()));
        }
        cancel(&app, &code).await.expect(200);
        return;
    }
    // Not in the database file nor its write-ahead log, before or after the mail went out.
    let data = &app.config.data_dir;
    let mut checked = 0;
    for entry in std::fs::read_dir(data).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("latchkey.db") {
            let bytes = std::fs::read(entry.path()).unwrap();
            assert!(
                !bytes.windows(code.len()).any(|w| w == code.as_bytes()),
                "the cancel code is in {name} in clear"
            );
            checked += 1;
        }
    }
    assert!(checked >= 2, "the database and its WAL were read");
    // And the link works.
    cancel(&app, &code).await.expect(200);
}

#[tokio::test]
async fn a_cancel_link_cancels_a_pending_token_once() {
    let sink = SmtpSink::start().await;
    // s2s keeps its default activation delay (30 minutes).
    let app = TestApp::builder()
        .smtp_url(&sink.url())
        .without_workers()
        .start()
        .await;
    let admin = "admin@example.com";
    let org = admin_org(&app, "Careful", admin).await;
    let res = create(&app, &org, json!({ "name": "backend", "type": "s2s" }))
        .await
        .expect(201);
    assert_eq!(res.str("status"), "pending");
    let (id, secret) = (res.str("id"), res.str("secret"));
    let mails = sink.delivered(&app, 1).await;
    let created = one(&mails, admin, "organisation token \"backend\" created");
    created.assert_free_of(&[&secret]);
    let code = cancel_code(created, &app);
    assert_eq!(code.len(), 43, "256 bits in base62");

    // What the console shows before the click.
    let token = app.service().cancel_link_token(&code).await.unwrap();
    assert_eq!(token.id.to_string(), id);

    assert_eq!(
        cancel(&app, &"0".repeat(43)).await.expect(404).code(),
        "not_found"
    );
    let res = cancel(&app, &code).await.expect(200);
    assert_eq!(res.body, json!({ "token_id": id, "status": "revoked" }));
    assert_eq!(get(&app, &org, &id).await["status"], "revoked");
    assert_eq!(cancel(&app, &code).await.expect(404).code(), "not_found");
    assert!(app.service().cancel_link_token(&code).await.is_err());
    app.clock.advance(1_800);
    assert_refused(&app.me(&secret).await, "revoked");

    let mails = sink.delivered(&app, 2).await;
    one(&mails, admin, "organisation token \"backend\" cancelled");
    let events = org_helpers::events(&app, &org).await;
    assert_eq!(
        org_helpers::with_action(&events, "token.cancelled").len(),
        1,
        "{events:?}"
    );

    // A link used once its token is active is refused, and the token keeps working.
    let res = create(&app, &org, json!({ "name": "later", "type": "s2s" }))
        .await
        .expect(201);
    let (later_id, later) = (res.str("id"), res.str("secret"));
    let mails = sink.delivered(&app, 3).await;
    let code = cancel_code(one(&mails, admin, "\"later\" created"), &app);
    app.clock.advance(1_800);
    assert_eq!(cancel(&app, &code).await.expect(404).code(), "not_found");
    assert!(app.service().cancel_link_token(&code).await.is_err());
    assert_eq!(get(&app, &org, &later_id).await["status"], "active");
    app.me(&later).await.expect(200);
}

#[tokio::test]
async fn a_use_from_outside_the_allowlist_is_mailed_once_per_address() {
    let sink = SmtpSink::start().await;
    let app = TestApp::builder()
        .smtp_url(&sink.url())
        .without_workers()
        .start()
        .await;
    let email = "erin@example.com";
    let (_, session) = app.signed_in(email).await;
    let res = app
        .create_token(
            &session,
            json!({ "name": "fenced", "password": PASSWORD, "allowed_ips": ["10.0.0.0/8"] }),
        )
        .await
        .expect(201);
    let secret = res.str("secret");
    sink.delivered(&app, 1).await;
    assert_refused(&app.me(&secret).await, "ip_not_allowed");
    assert_refused(&app.me(&secret).await, "ip_not_allowed");
    let mails = sink.delivered(&app, 2).await;
    let refused = one(
        &mails,
        email,
        "personal token \"fenced\" refused from address 127.0.0.1",
    );
    refused.assert_free_of(&[&secret]);
    app.wait_outbox_empty().await;
    assert_eq!(sink.mails().len(), 2, "once per address");
}

/// `latchkey_mails_total{result="sent"|"failed"}` of a running binary.
async fn mails_counted(server: &Server, result: &str) -> u64 {
    let res = server
        .call(Method::GET, "/metrics", None, None)
        .await
        .expect(200);
    let prefix = format!("latchkey_mails_total{{result=\"{result}\"}} ");
    res.text
        .lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {result} mail counter in {}", res.text))
}

#[tokio::test]
async fn a_kill_9_with_mails_waiting_loses_none_and_repeats_none() {
    let mut sink = SmtpSink::start().await;
    let (port, dir) = (sink.port, sink.dir.clone());
    let bin = Binary::fresh();
    let email = "frank@example.com";
    bin.create_user(email, PASSWORD).await;
    let smtp_url = sink.url();
    let env = [("LATCHKEY_SMTP_URL", smtp_url.as_str())];
    let server = bin.serve(&env, None, None).await;
    let session = server
        .call(
            Method::POST,
            "/v1/sessions",
            None,
            Some(json!({ "email": email, "password": PASSWORD })),
        )
        .await
        .expect(201)
        .str("session_token");
    let create = |name: &'static str| {
        let (server, session) = (&server, &session);
        async move {
            server
                .call(
                    Method::POST,
                    "/v1/user/tokens",
                    Some(session),
                    Some(json!({ "name": name, "password": PASSWORD })),
                )
                .await
                .expect(201)
                .str("id")
        }
    };
    let revoke = |id: String| {
        let (server, session) = (&server, &session);
        async move {
            server
                .call(
                    Method::POST,
                    &format!("/v1/user/tokens/{id}/revoke"),
                    Some(session),
                    Some(json!({ "password": PASSWORD })),
                )
                .await
                .expect(200);
        }
    };
    let before = create("before").await;
    sink.wait_for(1).await;
    // Delivered and recorded as sent: the sink holds the message a moment before the server
    // has the SMTP server's answer, and a mail whose answer is lost is sent again (SMTP is at
    // least once; the Message-ID lets a reader drop the repeat).
    let deadline = tokio::time::Instant::now() + MAIL_DEADLINE;
    while mails_counted(&server, "sent").await < 1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the first mail is not recorded as sent"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }

    // SMTP goes down; four acknowledged changes wait in the outbox; the server dies.
    sink.stop();
    revoke(before).await;
    let a = create("a").await;
    revoke(a).await;
    create("b").await;
    // Killed while the four wait for their next try, not in the middle of one: a mail leased
    // by a dead worker would wait for its lease (minutes) to end, by design.
    let deadline = tokio::time::Instant::now() + MAIL_DEADLINE;
    while mails_counted(&server, "failed").await < 4 {
        assert!(tokio::time::Instant::now() < deadline, "no tries failed");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let mut server = server;
    let pid = server.child.id().unwrap_or_else(|| panic!("server gone"));
    let killed = std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status();
    assert!(killed.is_ok_and(|s| s.success()));
    let _ = server.child.wait().await;
    assert_eq!(read_mails(&dir.join("new")).len(), 1);

    // Both back: every mail arrives, once. The real clock runs here, so the wait covers the
    // back-off the failed tries scheduled (seconds), not just the worker's tick.
    let back = SmtpSink::start_at(port, &dir).await;
    let server = bin.serve(&env, None, None).await;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(45);
    while mails_counted(&server, "sent").await < 4 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the outbox did not drain after the restart: {:#?}",
            back.mails().iter().map(|m| &m.subject).collect::<Vec<_>>()
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let mails = back.mails();
    assert_eq!(mails.len(), 5, "{mails:#?}");
    assert_message_ids_unique(&mails);
    for subject in [
        "\"before\" created",
        "\"before\" revoked",
        "\"a\" created",
        "\"a\" revoked",
        "\"b\" created",
    ] {
        one(&mails, email, subject);
    }
    assert_eq!(mails_counted(&server, "sent").await, 4);
}

#[tokio::test]
async fn a_rotation_mails_its_cancel_link_and_the_replaced_token_gets_no_expiry_notice() {
    let sink = SmtpSink::start().await;
    // s2s keeps its default activation delay (30 minutes).
    let app = TestApp::builder()
        .smtp_url(&sink.url())
        .without_workers()
        .start()
        .await;
    let admin = "admin@example.com";
    let org = admin_org(&app, "Rotating", admin).await;
    let res = create(
        &app,
        &org,
        json!({ "name": "backend", "type": "s2s", "expires_in_days": 30 }),
    )
    .await
    .expect(201);
    let id = res.str("id");
    sink.delivered(&app, 1).await;
    app.clock.advance(1_800);
    let res = app
        .post(
            &format!("/v1/orgs/{}/tokens/{id}/rotate", org.id),
            &org.admin,
            json!({ "grace": "7d" }),
        )
        .await
        .expect(201);
    let (new_id, new_secret) = (res.str("id"), res.str("secret"));
    let mails = sink.delivered(&app, 2).await;
    let created: Vec<_> = to(&mails, admin)
        .into_iter()
        .filter(|m| {
            m.subject.contains("\"backend\" created") || m.subject.contains("\"backend\" rotated")
        })
        .collect();
    assert_eq!(created.len(), 2, "{mails:#?}");
    let replacement = created
        .iter()
        .find(|m| m.body.contains(&new_id))
        .unwrap_or_else(|| panic!("no mail names {new_id}"));
    replacement.assert_free_of(&[&new_secret]);
    let code = cancel_code(replacement, &app);
    assert_eq!(
        app.service()
            .cancel_link_token(&code)
            .await
            .unwrap()
            .id
            .to_string(),
        new_id
    );
    // The old token now ends within 7 days, but it has its replacement: no "expires" notice.
    assert_eq!(app.service().send_expiry_notices().await.unwrap(), 0);
}

#[tokio::test]
async fn every_new_address_in_one_flush_is_told_not_only_the_latest() {
    let sink = SmtpSink::start().await;
    let app = TestApp::builder()
        .smtp_url(&sink.url())
        .without_workers()
        .start()
        .await;
    let email = "owner@example.com";
    let (_, session) = app.signed_in(email).await;
    let (_, secret) = app.personal_token(&session, "ci").await;
    sink.delivered(&app, 1).await;
    // A stolen token used once from one address, then by its owner from another, within the
    // same flush window: both addresses are news.
    let stolen: std::net::IpAddr = "203.0.113.7".parse().unwrap();
    let owner: std::net::IpAddr = "198.51.100.2".parse().unwrap();
    app.service().verify_bearer(&secret, stolen).await.unwrap();
    app.service().verify_bearer(&secret, owner).await.unwrap();
    app.flush().await;
    let mails = sink.delivered(&app, 3).await;
    // (The very first is told as a first use.)
    let alerts: Vec<_> = to(&mails, email)
        .into_iter()
        .filter(|m| {
            m.subject.contains("used from a new address")
                || m.subject.contains("used for the first time")
        })
        .collect();
    assert_eq!(alerts.len(), 2, "{mails:#?}");
    assert!(alerts.iter().any(|m| m.body.contains("203.0.113.7")));
    assert!(alerts.iter().any(|m| m.body.contains("198.51.100.2")));
}

#[tokio::test]
async fn new_address_mails_are_bounded_per_token_and_every_address_is_audited() {
    let sink = SmtpSink::start().await;
    let app = TestApp::builder()
        .smtp_url(&sink.url())
        .without_workers()
        .start()
        .await;
    let email = "flooded@example.com";
    let (_, session) = app.signed_in(email).await;
    let (id, secret) = app.personal_token(&session, "ci").await;
    sink.delivered(&app, 1).await;
    // A leaked token used from many addresses at once.
    for i in 1..=8 {
        let ip: std::net::IpAddr = format!("203.0.113.{i}").parse().unwrap();
        app.service().verify_bearer(&secret, ip).await.unwrap();
    }
    app.flush().await;
    let mails = sink.delivered(&app, 6).await;
    // (The very first is told as a first use.)
    let alerts: Vec<_> = to(&mails, email)
        .into_iter()
        .filter(|m| {
            m.subject.contains("used from a new address")
                || m.subject.contains("used for the first time")
        })
        .collect();
    assert_eq!(alerts.len(), 5, "{mails:#?}");
    assert_eq!(
        alerts
            .iter()
            .filter(|m| m.body.contains("audit log only"))
            .count(),
        1
    );
    let events = app
        .get("/v1/user/events?limit=100", &session)
        .await
        .expect(200);
    let news: Vec<&Value> = events
        .body
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["action"] == "token.new_address" && e["subject"]["id"] == id.as_str())
        .collect();
    assert_eq!(news.len(), 8, "every address is audited");
    assert_eq!(
        news.iter()
            .filter(|e| e["details"]["mailed"] == false)
            .count(),
        3
    );
    // A day later the owner hears of new addresses again.
    app.clock.advance(86_401);
    let ip: std::net::IpAddr = "198.51.100.9".parse().unwrap();
    app.service().verify_bearer(&secret, ip).await.unwrap();
    app.flush().await;
    let mails = sink.delivered(&app, 7).await;
    assert!(
        mails.iter().any(|m| m.body.contains("198.51.100.9")),
        "{mails:#?}"
    );
}
