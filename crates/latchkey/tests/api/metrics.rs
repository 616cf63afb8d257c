//! `GET /metrics`: Prometheus counters that move with the traffic and never show a secret.

use reqwest::Method;

use crate::helpers::TestApp;

fn value(text: &str, series: &str) -> u64 {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no series {series} in:\n{text}"))
}

#[tokio::test]
async fn counters_follow_verifications_and_sign_ins_without_secrets() {
    let app = TestApp::spawn().await;
    let (_, session) = app.signed_in("m@example.com").await;
    let (_, secret) = app.personal_token(&session, "m").await;
    app.get("/v1/me", &secret).await.expect(200);
    app.get("/v1/me", &secret).await.expect(200);
    app.get("/v1/me", "lkp_nope").await.expect(401);
    let res = app
        .call(Method::GET, "/metrics", None, None)
        .await
        .expect(200);
    assert!(
        res.header("content-type")
            .unwrap_or_default()
            .starts_with("text/plain")
    );
    assert_eq!(
        value(
            &res.text,
            "latchkey_verifications_total{result=\"accepted\"}"
        ),
        2
    );
    assert_eq!(
        value(
            &res.text,
            "latchkey_verifications_total{result=\"refused\",reason=\"malformed\"}"
        ),
        1
    );
    assert_eq!(
        value(&res.text, "latchkey_logins_total{result=\"success\"}"),
        1
    );
    // The token verified above is cached (its owner's snapshot with it); the start-up
    // warm-up of this empty database has finished.
    assert!(value(&res.text, "latchkey_verify_cache_answers") >= 1);
    assert!(value(&res.text, "latchkey_verify_cache_owners") >= 1);
    assert_eq!(value(&res.text, "latchkey_verify_cache_warming"), 0);
    assert!(
        !res.text.contains(&secret)
            && !res.text.contains(&session)
            && !res.text.contains("m@example.com")
    );
}
