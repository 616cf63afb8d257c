use reqwest::Method;
use serde_json::json;

use crate::helpers::{PASSWORD, TestApp, assert_error};

#[tokio::test]
async fn login_sets_a_session_and_a_cookie_and_logout_ends_it() {
    let app = TestApp::spawn().await;
    app.user("ada@example.com").await;
    let res = app
        .call(
            Method::POST,
            "/v1/sessions",
            None,
            Some(json!({ "email": "ada@example.com", "password": PASSWORD })),
        )
        .await
        .expect(201);
    let session = res.str("session_token");
    assert!(session.starts_with("lkses_"));
    assert!(res.body["expires_at"].is_string());
    let cookie = res.header("set-cookie").unwrap_or_default();
    assert!(cookie.contains("latchkey_session="), "{cookie}");
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax") && cookie.contains("Path=/"),
        "{cookie}"
    );

    app.get("/v1/user/tokens", &session).await.expect(200);
    app.call(Method::DELETE, "/v1/sessions/current", Some(&session), None)
        .await
        .expect(204);
    let res = app.get("/v1/user/tokens", &session).await.expect(401);
    assert_eq!(res.code(), "unauthenticated");
}

#[tokio::test]
async fn the_session_cookie_works_without_a_bearer_header() {
    let app = TestApp::spawn().await;
    let (_, session) = app.signed_in("cookie@example.com").await;
    let res = app
        .client
        .get(format!("{}/v1/user/tokens", app.url))
        .header("cookie", format!("other=1; latchkey_session={session}"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(res.status().as_u16(), 200);
}

#[tokio::test]
async fn wrong_password_and_unknown_user_answer_identically() {
    let app = TestApp::spawn().await;
    app.user("known@example.com").await;
    let wrong = app
        .call(
            Method::POST,
            "/v1/sessions",
            None,
            Some(json!({ "email": "known@example.com", "password": "not the password" })),
        )
        .await
        .expect(401);
    let unknown = app
        .call(
            Method::POST,
            "/v1/sessions",
            None,
            Some(json!({ "email": "nobody@example.com", "password": "not the password" })),
        )
        .await
        .expect(401);
    assert_eq!(wrong.text, unknown.text);
    assert_eq!(wrong.code(), "invalid_credentials");
}

#[tokio::test]
async fn management_endpoints_refuse_api_tokens() {
    let app = TestApp::spawn().await;
    let (_, session) = app.signed_in("mgmt@example.com").await;
    let (_, secret) = app.personal_token(&session, "cli").await;
    for path in ["/v1/user/tokens", "/v1/orgs", "/v1/user/events"] {
        let res = app.get(path, &secret).await.expect(403);
        assert_eq!(res.code(), "session_required", "{path}");
    }
    let res = app
        .call(Method::GET, "/v1/user/tokens", None, None)
        .await
        .expect(401);
    assert_eq!(res.code(), "unauthenticated");
}

#[tokio::test]
async fn a_session_expires_after_its_ttl() {
    let app = TestApp::spawn().await;
    let (_, session) = app.signed_in("ttl@example.com").await;
    app.clock.advance(12 * 3600 + 1);
    app.get("/v1/user/tokens", &session).await.expect(401);
}

#[tokio::test]
async fn disabling_a_user_ends_their_sessions() {
    let app = TestApp::spawn().await;
    let (_, session) = app.signed_in("gone@example.com").await;
    app.service()
        .update_user(
            &latchkey_service::Caller::operator(),
            "gone@example.com",
            Some(true),
            None,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    app.get("/v1/user/tokens", &session).await.expect(401);
    app.call(
        Method::POST,
        "/v1/sessions",
        None,
        Some(json!({ "email": "gone@example.com", "password": PASSWORD })),
    )
    .await
    .expect(401);
}

// ---------------------------------------------------------------------------------------------
// CSRF on the JSON API (SPEC 4): the console's cookie is a credential a browser attaches by
// itself, so `/v1` believes it only from our own origin.

/// A request carrying the session as the browser's cookie only, with these extra headers.
async fn with_cookie(
    app: &TestApp,
    method: Method,
    path: &str,
    session: &str,
    headers: &[(&str, String)],
    body: Option<(&str, &str)>,
) -> crate::helpers::Resp {
    let mut req = app
        .client
        .request(method, format!("{}{path}", app.url))
        .header("cookie", format!("latchkey_session={session}"));
    for (name, value) in headers {
        req = req.header(*name, value);
    }
    if let Some((content_type, body)) = body {
        req = req
            .header("content-type", content_type)
            .body(body.to_owned());
    }
    let res = req.send().await.unwrap_or_else(|e| panic!("{path}: {e}"));
    TestApp::read(res).await
}

async fn org_with_token(app: &TestApp) -> (crate::org_helpers::AdminOrg, String) {
    let org = crate::org_helpers::admin_org(app, "Acme", "admin@acme.example").await;
    let (id, _) = crate::org_helpers::create_token(app, &org, "api", "ci").await;
    (org, id)
}

async fn is_live(app: &TestApp, org: &crate::org_helpers::AdminOrg, id: &str) -> bool {
    crate::org_helpers::get(app, org, id).await["revoked_at"].is_null()
}

#[tokio::test]
async fn a_cross_site_post_with_the_cookie_is_refused_and_revokes_nothing() {
    let app = TestApp::spawn().await;
    let (org, id) = org_with_token(&app).await;
    let path = format!("/v1/orgs/{}/tokens/revoke-all", org.id);
    // The exact attack: a text/plain "simple" request with an empty body from another site.
    let res = with_cookie(
        &app,
        Method::POST,
        &path,
        &org.admin,
        &[("origin", "http://evil.example".into())],
        Some(("text/plain", "")),
    )
    .await;
    assert_error(&res, 403, "csrf_failed");
    // Neither Origin nor Referer: refused too.
    let res = with_cookie(&app, Method::POST, &path, &org.admin, &[], None).await;
    assert_error(&res, 403, "csrf_failed");
    // `Origin: null` (a sandboxed frame, a privacy redirect) and a foreign Referer.
    let res = with_cookie(
        &app,
        Method::POST,
        &path,
        &org.admin,
        &[("origin", "null".into())],
        None,
    )
    .await;
    assert_error(&res, 403, "csrf_failed");
    let res = with_cookie(
        &app,
        Method::POST,
        &path,
        &org.admin,
        &[("referer", format!("http://evil.example/{}", app.url))],
        None,
    )
    .await;
    assert_error(&res, 403, "csrf_failed");
    // A look-alike origin (our host as a prefix of another) is not ours.
    let res = with_cookie(
        &app,
        Method::POST,
        &path,
        &org.admin,
        &[("origin", format!("{}.evil.example", app.url))],
        None,
    )
    .await;
    assert_error(&res, 403, "csrf_failed");
    assert!(is_live(&app, &org, &id).await, "nothing may be revoked");
}

#[tokio::test]
async fn the_cookie_works_from_our_own_origin_or_referer() {
    let app = TestApp::spawn().await;
    let (org, id) = org_with_token(&app).await;
    let path = format!("/v1/orgs/{}/tokens/{id}", org.id);
    // Our Origin: a JSON body is accepted.
    with_cookie(
        &app,
        Method::PATCH,
        &path,
        &org.admin,
        &[("origin", app.url.clone())],
        Some(("application/json", r#"{"name":"renamed"}"#)),
    )
    .await
    .expect(200);
    // No Origin but our Referer (a page of the console).
    with_cookie(
        &app,
        Method::PATCH,
        &path,
        &org.admin,
        &[("referer", format!("{}/orgs/{}/tokens", app.url, org.id))],
        Some(("application/json", r#"{"name":"again"}"#)),
    )
    .await
    .expect(200);
    // Our origin with a body that is not JSON: 415, even where an empty body is allowed.
    let res = with_cookie(
        &app,
        Method::POST,
        &format!("/v1/orgs/{}/tokens/revoke-all", org.id),
        &org.admin,
        &[("origin", app.url.clone())],
        Some(("text/plain", " ")),
    )
    .await;
    assert_error(&res, 415, "unsupported_media_type");
    assert!(is_live(&app, &org, &id).await);
    // Our origin, empty body: the kill switch works.
    let res = with_cookie(
        &app,
        Method::POST,
        &format!("/v1/orgs/{}/tokens/revoke-all", org.id),
        &org.admin,
        &[("origin", app.url.clone())],
        None,
    )
    .await
    .expect(200);
    assert!(
        res.body["revoked"].as_u64().is_some_and(|n| n >= 1),
        "{}",
        res.text
    );
    assert!(!is_live(&app, &org, &id).await);
}

#[tokio::test]
async fn reads_with_the_cookie_need_no_origin_and_bearer_sessions_need_none_at_all() {
    let app = TestApp::spawn().await;
    let (org, id) = org_with_token(&app).await;
    // A safe method changes nothing, and without CORS another site cannot read the answer.
    with_cookie(&app, Method::GET, &org.tokens(), &org.admin, &[], None)
        .await
        .expect(200);
    // A bearer session is no ambient credential: no Origin needed, and a foreign one is moot.
    let res = app
        .client
        .post(format!("{}/v1/orgs/{}/tokens/revoke-all", app.url, org.id))
        .bearer_auth(&org.admin)
        .header("origin", "http://evil.example")
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(res.status().as_u16(), 200);
    assert!(!is_live(&app, &org, &id).await);
}

/// The whole audit log, as the operator sees it.
async fn all_events(app: &TestApp) -> Vec<latchkey_store::Event> {
    app.service()
        .list_events(&latchkey_store::EventFilter {
            scope: latchkey_store::EventScope::All,
            before_seq: None,
            limit: 100,
            matching: latchkey_store::EventMatch::default(),
        })
        .await
        .unwrap_or_else(|e| panic!("events: {e}"))
}

#[tokio::test]
async fn every_refused_sign_in_does_the_same_work_an_unknown_email_is_audited_too() {
    let app = TestApp::spawn().await;
    let known = app.user("known@example.com").await;
    for email in ["known@example.com", "nobody@example.com"] {
        app.call(
            Method::POST,
            "/v1/sessions",
            None,
            Some(json!({ "email": email, "password": "not the password" })),
        )
        .await
        .expect(401);
    }
    let refused: Vec<_> = all_events(&app)
        .await
        .into_iter()
        .filter(|e| e.action == "session.login" && e.outcome != "success")
        .collect();
    // One audit write before each answer, for the registered email and the unknown one alike.
    assert_eq!(refused.len(), 2, "{refused:?}");
    let outcomes: Vec<_> = refused.iter().map(|e| e.outcome.as_str()).collect();
    assert!(outcomes.contains(&"invalid_password"), "{outcomes:?}");
    assert!(outcomes.contains(&"unknown_user"), "{outcomes:?}");
    let unknown = refused
        .iter()
        .find(|e| e.outcome == "unknown_user")
        .unwrap_or_else(|| panic!("{refused:?}"));
    // The submitted email is not recorded: people type passwords into that field.
    assert!(
        !format!("{unknown:?}").contains("nobody"),
        "the unknown event must not hold the submitted email: {unknown:?}"
    );
    assert!(unknown.ip.is_some());
    let wrong = refused
        .iter()
        .find(|e| e.outcome == "invalid_password")
        .unwrap_or_else(|| panic!("{refused:?}"));
    assert_eq!(wrong.subject_id, known);
}

#[tokio::test]
async fn every_kind_of_api_credential_on_a_management_endpoint_is_session_required() {
    let app = crate::oauth_helpers::start(crate::org_helpers::no_delay()).await;
    let org = crate::org_helpers::admin_org(&app, "Acme", "admin@acme.example").await;
    let (_, personal) = app.personal_token(&org.admin, "laptop").await;
    let (_, jwt) = crate::org_helpers::create_token(&app, &org, "api", "ci").await;
    let (_, opaque) = crate::org_helpers::create_token(&app, &org, "s2s", "svc").await;
    assert!(jwt.starts_with("eyJ"), "the api type is a JWT: {jwt}");
    let oauth_org = crate::oauth_helpers::Org {
        id: org.id.clone(),
        admin: org.admin.clone(),
    };
    let client = crate::oauth_helpers::cc_client(&app, &oauth_org, "robot").await;
    let access = crate::oauth_helpers::access_token(&app, &client).await;
    for (what, credential) in [
        ("personal", &personal),
        ("api JWT", &jwt),
        ("s2s", &opaque),
        ("OAuth access token", &access),
    ] {
        // Each one is a working API credential…
        app.me(credential).await.expect(200);
        // …and no session.
        for path in ["/v1/user/tokens", "/v1/orgs", &org.tokens()] {
            let res = app.get(path, credential).await;
            assert_error(&res, 403, "session_required");
            assert!(res.text.len() < 400, "{what}: {}", res.text);
        }
        let res = app
            .post(
                &format!("/v1/orgs/{}/tokens/revoke-all", org.id),
                credential,
                json!({}),
            )
            .await;
        assert_error(&res, 403, "session_required");
    }
    assert_eq!(crate::org_helpers::list(&app, &org).await.len(), 3);
}

#[tokio::test]
async fn a_bearer_that_is_not_header_text_is_an_invalid_token_not_an_absent_one() {
    let app = TestApp::spawn().await;
    let (_, session) = app.signed_in("bytes@example.com").await;
    let mut value = format!("Bearer {session}").into_bytes();
    value.extend_from_slice(&[0xC3, 0xA9, 0xFF]);
    for path in ["/v1/user/tokens", "/v1/me"] {
        let res = app
            .raw(Method::GET, path, &[("authorization", value.clone())], None)
            .await;
        let description = crate::helpers::assert_refused(&res, "malformed");
        assert!(!description.contains(&session), "{description}");
        assert!(!res.text.contains(&session), "{}", res.text);
    }
    // Even with a good cookie beside it: the bad header is not ignored.
    let mut headers = vec![("authorization", value)];
    headers.push(("cookie", format!("latchkey_session={session}").into_bytes()));
    let res = app
        .raw(Method::GET, "/v1/user/tokens", &headers, None)
        .await;
    assert_error(&res, 401, "invalid_token");
}

/// The default `session_idle_timeout`.
const IDLE: i64 = 2 * 3600;

#[tokio::test]
async fn a_session_unused_for_the_idle_timeout_ends_and_use_extends_it() {
    let app = TestApp::spawn().await;
    let (_, session) = app.signed_in("idle@example.com").await;
    // Used just before the idle timeout each time: it lives on past the first timeout.
    for _ in 0..3 {
        app.clock.advance(IDLE - 1);
        app.get("/v1/user/tokens", &session).await.expect(200);
    }
    // Then left alone for the whole timeout: over, for the API and the console alike.
    app.clock.advance(IDLE);
    let res = app.get("/v1/user/tokens", &session).await;
    assert_error(&res, 401, "unauthenticated");
    let res = app
        .client
        .get(format!("{}/credentials", app.url))
        .header("cookie", format!("latchkey_session={session}"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        res.url().path().starts_with("/login") || res.status().is_redirection(),
        "the console sends an idle session to the sign-in page: {} {}",
        res.status(),
        res.url()
    );
    // The absolute lifetime still holds however busy the session is.
    let (_, busy) = app.signed_in("busy@example.com").await;
    for _ in 0..11 {
        app.clock.advance(3600);
        app.get("/v1/user/tokens", &busy).await.expect(200);
    }
    app.clock.advance(3599);
    app.get("/v1/user/tokens", &busy).await.expect(200);
    app.clock.advance(1);
    app.get("/v1/user/tokens", &busy).await.expect(401);
}

#[tokio::test]
async fn last_use_is_written_at_most_once_a_minute() {
    let app = TestApp::spawn().await;
    let (_, session) = app.signed_in("seen@example.com").await;
    // A use 30 s after the sign-in is not written (the last write is under a minute old)…
    app.clock.advance(30);
    app.get("/v1/user/tokens", &session).await.expect(200);
    // …so the idle time still counts from the sign-in.
    app.clock.advance(IDLE - 30);
    app.get("/v1/user/tokens", &session).await.expect(401);

    let (_, other) = app.signed_in("seen2@example.com").await;
    // A use a minute later is written, and counts.
    app.clock.advance(60);
    app.get("/v1/user/tokens", &other).await.expect(200);
    app.clock.advance(IDLE - 1);
    app.get("/v1/user/tokens", &other).await.expect(200);
}

/// The stored PHC string of a user's password.
async fn stored_hash(app: &TestApp, email: &str) -> String {
    app.service()
        .find_user_by_email(email)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .password_hash
}

#[tokio::test]
async fn a_hash_weaker_than_todays_parameters_is_replaced_at_sign_in() {
    use argon2::PasswordHasher as _;
    let app = TestApp::spawn().await;
    let id = app.user("old@example.com").await;
    let user_id: latchkey_core::UserId = id.parse().unwrap_or_else(|e| panic!("{e:?}"));
    // A hash from an older, cheaper configuration: 8 MiB, one pass.
    let weak_params = argon2::Params::new(8 * 1024, 1, 1, None).unwrap_or_else(|e| panic!("{e}"));
    let weak = argon2::Argon2::new(
        argon2::Algorithm::Argon2id,
        argon2::Version::V0x13,
        weak_params,
    )
    .hash_password(PASSWORD.as_bytes())
    .unwrap_or_else(|e| panic!("{e}"))
    .to_string();
    let current = stored_hash(&app, "old@example.com").await;
    assert!(current.contains("m=19456,t=2,p=1"), "{current}");
    let replaced = app
        .service()
        .store()
        .rehash_password(&user_id, &current, &weak)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(replaced);
    let earlier = app.login("old@example.com").await;
    // The first sign-in with the weak hash replaced it with one of today's parameters…
    let rehashed = stored_hash(&app, "old@example.com").await;
    assert_ne!(rehashed, weak);
    assert!(rehashed.starts_with("$argon2id$v=19$"), "{rehashed}");
    assert!(rehashed.contains("m=19456,t=2,p=1"), "{rehashed}");
    // …of the same password, ending no session.
    app.get("/v1/user/tokens", &earlier).await.expect(200);
    app.login("old@example.com").await;
    // A hash already at today's parameters is left alone.
    assert_eq!(stored_hash(&app, "old@example.com").await, rehashed);
}

/// SPEC 9: a person lists their sessions (the one asking is `current`) and ends one; another
/// person's session is not theirs to end.
#[tokio::test]
async fn a_person_lists_and_ends_their_own_sessions() {
    let app = TestApp::spawn().await;
    app.user("ada@example.com").await;
    app.user("bob@example.com").await;
    let laptop = app.login("ada@example.com").await;
    let phone = app.login("ada@example.com").await;
    let bob = app.login("bob@example.com").await;

    let list = app.get("/v1/user/sessions", &laptop).await.expect(200);
    let sessions = list.body.as_array().cloned().unwrap_or_default();
    assert_eq!(sessions.len(), 2, "{}", list.text);
    assert_eq!(sessions.iter().filter(|s| s["current"] == true).count(), 1);
    assert!(
        !list.text.contains(&laptop) && !list.text.contains(&phone),
        "a session secret listed"
    );
    let other = sessions
        .iter()
        .find(|s| s["current"] == false)
        .and_then(|s| s["id"].as_str())
        .unwrap_or_default()
        .to_owned();

    // Bob cannot end Ada's session.
    let res = app
        .call(
            Method::DELETE,
            &format!("/v1/user/sessions/{other}"),
            Some(&bob),
            None,
        )
        .await;
    assert_error(&res, 404, "not_found");
    app.get("/v1/user/tokens", &phone).await.expect(200);

    app.call(
        Method::DELETE,
        &format!("/v1/user/sessions/{other}"),
        Some(&laptop),
        None,
    )
    .await
    .expect(204);
    assert_error(
        &app.get("/v1/user/tokens", &phone).await,
        401,
        "unauthenticated",
    );
    app.get("/v1/user/tokens", &laptop).await.expect(200);
}

/// SPEC 9: changing one's password needs the current one, keeps the password rules, ends every
/// session (the one asking included) and answers a new one.
#[tokio::test]
async fn changing_ones_password_ends_every_session_and_answers_a_new_one() {
    let app = TestApp::spawn().await;
    app.user("ada@example.com").await;
    let laptop = app.login("ada@example.com").await;
    let phone = app.login("ada@example.com").await;
    let new = "a-n3w-and-l0nger-passphrase";

    let res = app
        .post(
            "/v1/user/password",
            &laptop,
            json!({ "current_password": "not-the-password", "new_password": new }),
        )
        .await;
    assert_error(&res, 403, "invalid_password");
    let res = app
        .post(
            "/v1/user/password",
            &laptop,
            json!({ "current_password": PASSWORD, "new_password": "short" }),
        )
        .await;
    assert_error(&res, 400, "invalid_request");
    app.get("/v1/user/tokens", &phone).await.expect(200);

    let res = app
        .post(
            "/v1/user/password",
            &laptop,
            json!({ "current_password": PASSWORD, "new_password": new }),
        )
        .await
        .expect(200);
    let fresh = res.str("session_token");
    assert!(res.header("set-cookie").is_some());
    for old in [&laptop, &phone] {
        assert_error(
            &app.get("/v1/user/tokens", old).await,
            401,
            "unauthenticated",
        );
    }
    app.get("/v1/user/tokens", &fresh).await.expect(200);
    let res = app
        .call(
            Method::POST,
            "/v1/sessions",
            None,
            Some(json!({ "email": "ada@example.com", "password": PASSWORD })),
        )
        .await;
    assert_error(&res, 401, "invalid_credentials");
    app.call(
        Method::POST,
        "/v1/sessions",
        None,
        Some(json!({ "email": "ada@example.com", "password": new })),
    )
    .await
    .expect(201);
}

/// SPEC 9: a forgotten password, reset by mail (a real SMTP server): the same answer for a
/// known and an unknown address (only the known one gets a mail), a link that works once and
/// ends every session, a weak new password refused without using the link up, and an expired
/// link refused.
#[tokio::test]
async fn a_forgotten_password_is_reset_by_a_mailed_single_use_link() {
    use crate::mail_helpers::{SmtpSink, one};
    let sink = SmtpSink::start().await;
    let app = TestApp::builder()
        .smtp_url(&sink.url())
        .without_workers()
        .start()
        .await;
    app.user("ada@example.com").await;
    let session = app.login("ada@example.com").await;

    let known = app
        .call(
            Method::POST,
            "/v1/password-resets",
            None,
            Some(json!({ "email": "ada@example.com" })),
        )
        .await
        .expect(202);
    let unknown = app
        .call(
            Method::POST,
            "/v1/password-resets",
            None,
            Some(json!({ "email": "nobody@example.com" })),
        )
        .await
        .expect(202);
    assert_eq!(known.body, unknown.body);
    let mails = sink.delivered(&app, 1).await;
    let mail = one(&mails, "ada@example.com", "reset your password");
    let link = mail
        .link(&format!("{}/reset-password?code=", app.url))
        .unwrap_or_else(|| panic!("no reset link in {}", mail.body));
    let code = link
        .split_once("code=")
        .map(|(_, c)| c.to_owned())
        .unwrap_or_default();
    app.deliver_mails().await;
    assert_eq!(sink.mails().len(), 1, "a mail went to an unknown address");

    // The console's page for the link names nothing and changes nothing.
    let page = app
        .raw(
            Method::GET,
            &format!("/reset-password?code={code}"),
            &[],
            None,
        )
        .await;
    assert_eq!(page.status.as_u16(), 200);
    assert_eq!(
        page.header("referrer-policy").as_deref(),
        Some("no-referrer")
    );
    app.get("/v1/user/tokens", &session).await.expect(200);

    // A weak password is refused and uses nothing up.
    let res = app
        .call(
            Method::POST,
            "/v1/password-resets/complete",
            None,
            Some(json!({ "code": code, "new_password": "short" })),
        )
        .await;
    assert_error(&res, 400, "invalid_request");
    let new = "a-n3w-and-l0nger-passphrase";
    app.call(
        Method::POST,
        "/v1/password-resets/complete",
        None,
        Some(json!({ "code": code, "new_password": new })),
    )
    .await
    .expect(204);
    assert_error(
        &app.get("/v1/user/tokens", &session).await,
        401,
        "unauthenticated",
    );
    app.call(
        Method::POST,
        "/v1/sessions",
        None,
        Some(json!({ "email": "ada@example.com", "password": new })),
    )
    .await
    .expect(201);
    // Once only.
    let res = app
        .call(
            Method::POST,
            "/v1/password-resets/complete",
            None,
            Some(json!({ "code": code, "new_password": "yet-an0ther-passphrase" })),
        )
        .await;
    assert_error(&res, 400, "invalid_request");

    // An expired link, through the console's form.
    app.call(
        Method::POST,
        "/v1/password-resets",
        None,
        Some(json!({ "email": "ada@example.com" })),
    )
    .await
    .expect(202);
    let mails = sink.delivered(&app, 2).await;
    let second = mails
        .iter()
        .filter_map(|m| m.link(&format!("{}/reset-password?code=", app.url)))
        .find(|l| !l.ends_with(&code))
        .unwrap_or_else(|| panic!("no second link"));
    let second = second
        .split_once("code=")
        .map(|(_, c)| c.to_owned())
        .unwrap_or_default();
    app.clock.advance(1_801);
    let res = app
        .raw(
            Method::POST,
            "/reset-password",
            &[(
                "content-type",
                b"application/x-www-form-urlencoded".to_vec(),
            )],
            Some(format!("code={second}&password=yet-an0ther-passphrase").into_bytes()),
        )
        .await;
    assert_eq!(res.status.as_u16(), 400, "{}", res.text);
    assert!(res.text.contains("expired"), "{}", res.text);
}

/// Review findings: a reset link dies with a password changed another way; the console's
/// reset form shows a weak password's refusal on the form and leaves the link usable.
#[tokio::test]
async fn a_reset_link_dies_with_the_password_and_a_weak_one_keeps_the_form() {
    use crate::mail_helpers::{SmtpSink, one};
    let sink = SmtpSink::start().await;
    let app = TestApp::builder()
        .smtp_url(&sink.url())
        .without_workers()
        .start()
        .await;
    app.user("ada@example.com").await;
    let ask = || {
        app.call(
            Method::POST,
            "/v1/password-resets",
            None,
            Some(json!({ "email": "ada@example.com" })),
        )
    };
    let code_of = |mails: &[crate::mail_helpers::Mail], n: usize| {
        let links: Vec<String> = mails
            .iter()
            .filter_map(|m| m.link(&format!("{}/reset-password?code=", app.url)))
            .collect();
        links[n]
            .split_once("code=")
            .map(|(_, c)| c.to_owned())
            .unwrap_or_default()
    };
    ask().await.expect(202);
    let mails = sink.delivered(&app, 1).await;
    let _ = one(&mails, "ada@example.com", "reset your password");
    let first = code_of(&mails, 0);

    // The console form: a weak password is shown on the form, the link stays good.
    let content_type = [(
        "content-type",
        b"application/x-www-form-urlencoded".to_vec(),
    )];
    let form = |code: &str, password: &str| {
        let body = format!("code={code}&password={password}").into_bytes();
        app.raw(Method::POST, "/reset-password", &content_type, Some(body))
    };
    let res = form(&first, "short").await;
    assert_eq!(res.status.as_u16(), 400, "{}", res.text);
    assert!(
        res.text.contains("Choose a new password") && res.text.contains("8 to 1024"),
        "{}",
        res.text
    );

    // The password changed with the current one: the link no longer works.
    let session = app.login("ada@example.com").await;
    app.post(
        "/v1/user/password",
        &session,
        json!({ "current_password": PASSWORD, "new_password": "a-n3w-and-l0nger-passphrase" }),
    )
    .await
    .expect(200);
    let res = form(&first, "yet-an0ther-passphrase").await;
    assert_eq!(res.status.as_u16(), 400, "{}", res.text);
    assert!(res.text.contains("cannot be used"), "{}", res.text);
    app.call(
        Method::POST,
        "/v1/sessions",
        None,
        Some(json!({ "email": "ada@example.com", "password": "a-n3w-and-l0nger-passphrase" })),
    )
    .await
    .expect(201);
}
