//! The verification cache warmed at start: live tokens only, and never a stale "yes".

use serde_json::json;

use crate::helpers::{PASSWORD, TestApp};

#[tokio::test]
async fn warming_loads_live_tokens_only_and_revocation_still_wins() {
    let app = TestApp::spawn().await;
    let (_, session) = app.signed_in("warm@example.com").await;
    let (id, secret) = app.personal_token(&session, "first").await;
    app.post(
        &format!("/v1/user/tokens/{id}/revoke"),
        &session,
        json!({ "password": PASSWORD }),
    )
    .await
    .expect(200);
    let (id2, secret2) = app.personal_token(&session, "second").await;
    let org = app.org("Warm").await;
    let _ = org;

    // The revoked token is not loaded; the live personal token and the org's Default are.
    let warmed = app.service().warm_cache(100).await.unwrap();
    assert_eq!(warmed, 2);
    app.get("/v1/me", &secret2).await.expect(200);
    app.get("/v1/me", &secret).await.expect(401);

    // Warmed entries obey a later revocation on the very next request.
    app.service().warm_cache(100).await.unwrap();
    app.post(
        &format!("/v1/user/tokens/{id2}/revoke"),
        &session,
        json!({ "password": PASSWORD }),
    )
    .await
    .expect(200);
    let res = app.get("/v1/me", &secret2).await.expect(401);
    assert!(
        res.header("www-authenticate")
            .unwrap_or_default()
            .contains("revoked")
    );
    assert_eq!(
        app.service().warm_cache(0).await.unwrap(),
        0,
        "0 turns warming off"
    );
}

/// Many pages, read one after another and built at once: every live token goes in once, the
/// limit holds across pages, and each seeded secret is answered from the cache as stored.
#[tokio::test]
async fn warming_many_pages_loads_each_token_once_and_keeps_the_limit() {
    let app = TestApp::spawn().await;
    let (_, _session) = app.signed_in("pages@example.com").await;
    let user = app
        .service()
        .find_user_by_email("pages@example.com")
        .await
        .unwrap();
    let secrets = app
        .service()
        .seed_tokens_for_benchmark(&user, "personal", 6_500)
        .await
        .unwrap();

    assert_eq!(
        app.service().warm_cache(4_500).await.unwrap(),
        4_500,
        "a limit inside the third page"
    );
    assert_eq!(app.service().warm_cache(100_000).await.unwrap(), 6_500);
    for secret in secrets.iter().step_by(650) {
        let me = app.get("/v1/me", secret.expose()).await.expect(200).body;
        assert_eq!(me["principal"]["email"], "pages@example.com");
    }
}
