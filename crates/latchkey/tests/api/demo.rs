//! `latchkey serve --demo`: demo people and an organisation, and how to sign in, printed once;
//! and a fresh installation without it, which says how to make the first operator.

use reqwest::Method;
use serde_json::json;

use crate::helpers::{Binary, PASSWORD};

#[tokio::test]
async fn serve_demo_prints_working_credentials_once() {
    let bin = Binary::fresh();
    let out_path = bin.dir.path().join("demo-out.txt");
    let server = bin
        .serve_with(&["--demo"], &[], Some(&out_path), None)
        .await;
    // The demo data is created just after the server starts listening.
    let mut printed = String::new();
    for _ in 0..100 {
        printed = std::fs::read_to_string(&out_path).unwrap_or_default();
        if printed.contains("user:") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let line = printed
        .lines()
        .find(|l| l.trim_start().starts_with("user:"))
        .unwrap_or_else(|| panic!("{printed}"));
    let mut words = line.split_whitespace();
    let email = words.nth(1).unwrap().to_owned();
    let password = words.nth(1).unwrap().to_owned();
    let res = server
        .call(
            Method::POST,
            "/v1/sessions",
            None,
            Some(json!({ "email": email, "password": password })),
        )
        .await
        .expect(201);
    let session = res.str("session_token");
    let orgs = server
        .call(Method::GET, "/v1/orgs", Some(&session), None)
        .await
        .expect(200);
    assert_eq!(orgs.body[0]["role"], "member", "{}", orgs.text);
    let created = server
        .call(
            Method::POST,
            "/v1/user/tokens",
            Some(&session),
            Some(json!({ "name": "demo", "password": password })),
        )
        .await
        .expect(201);
    server
        .call(Method::GET, "/v1/me", Some(&created.str("secret")), None)
        .await
        .expect(200);
    assert!(server.terminate().await.success());

    // A second start finds the demo data and prints no password again.
    let out_path2 = bin.dir.path().join("demo-out-2.txt");
    let server = bin
        .serve_with(&["--demo"], &[], Some(&out_path2), None)
        .await;
    let mut again = String::new();
    for _ in 0..100 {
        again = std::fs::read_to_string(&out_path2).unwrap_or_default();
        if again.contains("Demo data exists") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(again.contains("Demo data exists"), "{again}");
    assert!(!again.contains(&password));
    assert!(server.terminate().await.success());
}

#[tokio::test]
async fn a_fresh_installation_says_how_to_make_the_first_operator() {
    let bin = Binary::fresh();
    let out_path = bin.dir.path().join("first-run.txt");
    let server = bin.serve(&[], Some(&out_path), None).await;
    let command = "latchkey user create --email you@example.com --password-stdin --operator";

    // On standard output, once the server listens (and in the log).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let out = loop {
        let out = std::fs::read_to_string(&out_path).unwrap_or_default();
        if out.contains("No one can sign in yet") {
            break out;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no first-run hint on standard output: {out}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert!(out.contains(command), "{out}");
    assert!(out.contains(&format!("{}/login", server.url)), "{out}");

    // On the sign-in page, until someone exists.
    let login = |url: String| async move {
        reqwest::get(format!("{url}/login"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };
    let page = login(server.url.clone()).await;
    assert!(
        page.contains("id=\"first-run\"") && page.contains(command),
        "{page}"
    );
    bin.create_user("first@example.com", PASSWORD).await;
    let page = login(server.url.clone()).await;
    assert!(!page.contains("first-run"), "{page}");
    assert!(server.terminate().await.success());

    // The next start has nothing to say.
    let again = bin.dir.path().join("second-run.txt");
    let server = bin.serve(&[], Some(&again), None).await;
    let page = login(server.url.clone()).await;
    assert!(!page.contains("first-run"), "{page}");
    assert!(server.terminate().await.success());
    let out = std::fs::read_to_string(&again).unwrap_or_default();
    assert!(!out.contains("No one can sign in yet"), "{out}");
}
