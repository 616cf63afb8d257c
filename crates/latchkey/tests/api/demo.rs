//! `latchkey serve --demo`: demo people and an organisation, and how to sign in, printed once.

use reqwest::Method;
use serde_json::json;

use crate::helpers::Binary;

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
