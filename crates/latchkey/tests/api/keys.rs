//! Signing keys: published before use, old keys kept while something they signed lives.

use latchkey_core::Role;
use latchkey_service::Caller;
use serde_json::{Value, json};

use crate::helpers::{PASSWORD, TestApp};

fn kids(jwks: &Value) -> Vec<String> {
    jwks["keys"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|k| k["kid"].as_str().map(str::to_owned))
        .collect()
}

fn kid_of(jwt: &str) -> String {
    use base64::Engine as _;
    let head = jwt.split('.').next().unwrap_or_default();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(head)
        .unwrap_or_default();
    let header: Value = serde_json::from_slice(&bytes).unwrap_or_default();
    header["kid"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn a_rotated_key_is_published_before_it_signs_and_the_old_one_stays_while_needed() {
    let app = TestApp::spawn().await;
    let (_, session) = app.signed_in("keys@example.com").await;
    let org = app.org("Keys").await;
    app.add_member(&org, "keys@example.com", Role::Admin).await;

    let jwks = app
        .call(reqwest::Method::GET, "/.well-known/jwks.json", None, None)
        .await
        .expect(200);
    let first = kids(&jwks.body);
    assert_eq!(first.len(), 1, "{}", jwks.text);
    assert!(
        jwks.body["keys"][0].get("d").is_none(),
        "no private key material"
    );
    assert_eq!(jwks.body["keys"][0]["alg"], "ES256");

    // The Default token was signed by the first key.
    let list = app
        .get(&format!("/v1/orgs/{org}/tokens"), &session)
        .await
        .expect(200);
    let default_id = list.body[0]["id"].as_str().unwrap_or_default().to_owned();
    let reveal = app
        .post(
            &format!("/v1/orgs/{org}/tokens/{default_id}/reveal"),
            &session,
            json!({ "password": PASSWORD }),
        )
        .await
        .expect(200);
    let old_jwt = reveal.str("secret");
    assert_eq!(kid_of(&old_jwt), first[0]);

    let new_kid = app
        .service()
        .rotate_signing_key(&Caller::operator())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let jwks = app
        .call(reqwest::Method::GET, "/.well-known/jwks.json", None, None)
        .await
        .expect(200);
    let both = kids(&jwks.body);
    assert!(
        both.contains(&new_kid) && both.contains(&first[0]),
        "new key published at once: {both:?}"
    );

    // Before `key_publish_ahead` (10 minutes) passes, new tokens are still signed by the old key.
    let created = app
        .post(
            &format!("/v1/orgs/{org}/tokens"),
            &session,
            json!({ "name": "early", "type": "api" }),
        )
        .await
        .expect(201);
    assert_eq!(kid_of(&created.str("secret")), first[0]);
    app.clock.advance(601);
    let created = app
        .post(
            &format!("/v1/orgs/{org}/tokens/{default_id}/rotate"),
            &session,
            json!({ "grace": "0s" }),
        )
        .await
        .expect(201);
    assert_eq!(
        kid_of(&created.str("secret")),
        new_kid,
        "the new key signs after the publish delay"
    );

    // The old key stays published while a live token it signed exists ("early", pending), and
    // while access tokens it signed may still be valid.
    let jwks = app
        .call(reqwest::Method::GET, "/.well-known/jwks.json", None, None)
        .await
        .expect(200);
    assert!(kids(&jwks.body).contains(&first[0]));
    // Revoke everything the old key signed and wait out the access-token lifetime: it goes.
    app.post(
        &format!("/v1/orgs/{org}/tokens/revoke-all"),
        &session,
        json!({}),
    )
    .await
    .expect(200);
    app.clock.advance(901);
    let jwks = app
        .call(reqwest::Method::GET, "/.well-known/jwks.json", None, None)
        .await
        .expect(200);
    assert_eq!(kids(&jwks.body), vec![new_kid], "{}", jwks.text);
    // Its tokens were refused anyway; the old JWT is now unknown to the key ring's JWKS but
    // still refused by /v1/me as revoked.
    let me = app.get("/v1/me", &old_jwt).await.expect(401);
    assert_eq!(me.code(), "invalid_token");
}
