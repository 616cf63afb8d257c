//! `/v1/forward-auth` (SPEC 8) over HTTP: identity headers, RFC 6750 challenges, requirements
//! in the query, and the client address from trusted proxies only. The same endpoint behind
//! real proxies is in `proxies.rs`.

use reqwest::Method;
use serde_json::json;

use crate::helpers::{PASSWORD, Resp, TestApp, assert_refused};
use crate::org_helpers::{admin_org, create_token, no_delay};

async fn forward(app: &TestApp, method: Method, path: &str, token: Option<&str>) -> Resp {
    app.call(method, path, token, None).await
}

fn header(res: &Resp, name: &str) -> String {
    res.header(name)
        .unwrap_or_else(|| panic!("no {name} in {:?}", res.headers))
}

#[tokio::test]
async fn a_valid_token_gets_its_identity_as_headers_with_any_method_and_path() {
    let app = no_delay().start().await;
    let org = admin_org(&app, "Forward", "forward@example.com").await;
    let (user_id, session) = app.signed_in("member@example.com").await;
    app.add_member(&org.id, "member@example.com", latchkey_core::Role::Member)
        .await;
    let (token_id, secret) = app.personal_token(&session, "cli").await;
    for (method, path) in [
        (Method::GET, "/v1/forward-auth"),
        (Method::POST, "/v1/forward-auth/orders/42"),
        (Method::DELETE, "/v1/forward-auth/a/b/c"),
        (Method::PUT, "/v1/forward-auth/"),
    ] {
        let res = forward(&app, method.clone(), path, Some(&secret))
            .await
            .expect(200);
        assert!(res.text.is_empty(), "{method} {path}: an empty body");
        assert_eq!(header(&res, "latchkey-principal"), user_id);
        assert_eq!(header(&res, "latchkey-principal-kind"), "user");
        assert_eq!(header(&res, "latchkey-token-id"), token_id);
        assert_eq!(
            header(&res, "latchkey-accounts"),
            format!("{}:member", org.id)
        );
        assert_eq!(header(&res, "latchkey-scopes"), "api");
        assert!(
            res.header("latchkey-token-expires").is_none(),
            "180 days left"
        );
    }
    // An organisation token acts as the organisation.
    let (org_token, org_secret) = create_token(&app, &org, "s2s", "worker").await;
    let res = forward(&app, Method::GET, "/v1/forward-auth", Some(&org_secret))
        .await
        .expect(200);
    assert_eq!(header(&res, "latchkey-principal"), org.id);
    assert_eq!(header(&res, "latchkey-principal-kind"), "organisation");
    assert_eq!(header(&res, "latchkey-token-id"), org_token);
    assert_eq!(
        header(&res, "latchkey-accounts"),
        format!("{}:organisation", org.id)
    );
    // Close to its expiry, the token says when.
    app.clock.advance(160 * 86_400);
    let res = forward(&app, Method::GET, "/v1/forward-auth", Some(&secret))
        .await
        .expect(200);
    assert!(header(&res, "latchkey-token-expires").ends_with('Z'));
}

#[tokio::test]
async fn missing_bad_and_revoked_tokens_get_the_rfc_6750_challenge() {
    let app = TestApp::spawn().await;
    let res = forward(&app, Method::GET, "/v1/forward-auth", None)
        .await
        .expect(401);
    assert!(header(&res, "www-authenticate").starts_with("Bearer"));
    let res = forward(&app, Method::GET, "/v1/forward-auth", Some("lkp_nope"))
        .await
        .expect(401);
    assert_refused(&res, "malformed");
    let (_, session, id, secret) = app.user_with_token("revoked@example.com").await;
    forward(&app, Method::GET, "/v1/forward-auth", Some(&secret))
        .await
        .expect(200);
    app.post(
        &format!("/v1/user/tokens/{id}/revoke"),
        &session,
        json!({ "password": PASSWORD }),
    )
    .await
    .expect(200);
    // On the very next request.
    let res = forward(&app, Method::GET, "/v1/forward-auth/x", Some(&secret))
        .await
        .expect(401);
    assert_refused(&res, "revoked");
}

#[tokio::test]
async fn requirements_in_the_query_are_all_needed() {
    let app = no_delay().start().await;
    let org = admin_org(&app, "Needs", "needs@example.com").await;
    let (_, session) = app.signed_in("partner@example.com").await;
    app.add_member(&org.id, "partner@example.com", latchkey_core::Role::Partner)
        .await;
    let (_, secret) = app.personal_token(&session, "p").await;
    let ok = [
        "scope=api".to_owned(),
        format!("account={}", org.id),
        format!("account={}&role=partner", org.id),
        "kind=user".to_owned(),
    ];
    for query in ok {
        forward(
            &app,
            Method::GET,
            &format!("/v1/forward-auth?{query}"),
            Some(&secret),
        )
        .await
        .expect(200);
    }
    let refused = [
        "scope=api&scope=billing".to_owned(),
        "account=org_0000000000000000000000".to_owned(),
        format!("account={}&role=member", org.id),
        "role=admin".to_owned(),
        "kind=client".to_owned(),
    ];
    for query in refused {
        let res = forward(
            &app,
            Method::GET,
            &format!("/v1/forward-auth?{query}"),
            Some(&secret),
        )
        .await
        .expect(403);
        let challenge = header(&res, "www-authenticate");
        assert!(
            challenge.contains("error=\"insufficient_scope\""),
            "{query}: {challenge}"
        );
        assert!(res.header("latchkey-principal").is_none());
    }
    let res = forward(
        &app,
        Method::GET,
        "/v1/forward-auth?scope=billing",
        Some(&secret),
    )
    .await
    .expect(403);
    assert!(header(&res, "www-authenticate").contains("scope=\"billing\""));
    // A typo in a proxy's configuration is not "no requirement".
    for query in ["scopes=api", "role=owner", "kind=robot", "scope=a%22b"] {
        let res = forward(
            &app,
            Method::GET,
            &format!("/v1/forward-auth?{query}"),
            Some(&secret),
        )
        .await
        .expect(400);
        assert_eq!(res.code(), "invalid_request", "{query}");
    }
}

#[tokio::test]
async fn forwarded_addresses_count_only_from_trusted_proxies() {
    // A token that may be used from 198.51.100.0/24 only.
    for (trusted, from_proxy) in [(false, 401), (true, 200)] {
        let app = no_delay()
            .configure(move |c| {
                if trusted {
                    c.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
                }
            })
            .start()
            .await;
        let (_, session) = app.signed_in("proxied@example.com").await;
        let res = app
            .post(
                "/v1/user/tokens",
                &session,
                json!({ "name": "fenced", "password": PASSWORD, "allowed_ips": ["198.51.100.0/24"] }),
            )
            .await
            .expect(201);
        let secret = res.str("secret");
        let auth = format!("Bearer {secret}");
        let headers = [
            ("authorization", auth.as_bytes().to_vec()),
            ("x-forwarded-for", b"198.51.100.7".to_vec()),
        ];
        let res = app
            .raw(Method::GET, "/v1/forward-auth", &headers, None)
            .await;
        assert_eq!(
            res.status.as_u16(),
            from_proxy,
            "trusted {trusted}: {}",
            res.text
        );
        if !trusted {
            assert_refused(&res, "ip_not_allowed");
        }
    }
}
