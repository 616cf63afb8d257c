//! `GET /.well-known/oauth-authorization-server` (RFC 8414): it names the issuer and the
//! endpoints, says only what works today, and every endpoint it names answers.

use reqwest::Method;
use serde_json::Value;

use crate::oauth_helpers::{access_token, cc_client, org, spawn, verify_offline};

fn strings(value: &Value) -> Vec<&str> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {value}"))
        .iter()
        .map(|v| v.as_str().unwrap_or_else(|| panic!("not a string: {v}")))
        .collect()
}

#[tokio::test]
async fn the_metadata_names_the_issuer_and_endpoints_that_all_answer() {
    let app = spawn().await;
    let res = app
        .call(
            Method::GET,
            "/.well-known/oauth-authorization-server",
            None,
            None,
        )
        .await
        .expect(200);
    assert!(
        res.header("content-type")
            .is_some_and(|c| c.starts_with("application/json"))
    );
    let meta = res.body;

    // RFC 8414 §3.3: the issuer is the URL the document was fetched under, without the
    // well-known suffix; https or a plain loopback URL, no query or fragment.
    assert_eq!(meta["issuer"], app.url.as_str());
    let issuer = meta["issuer"].as_str().unwrap();
    assert!(
        !issuer.ends_with('/') && !issuer.contains(['?', '#']),
        "{issuer}"
    );
    assert_eq!(meta["token_endpoint"], format!("{issuer}/oauth2/token"));
    assert_eq!(meta["jwks_uri"], format!("{issuer}/.well-known/jwks.json"));
    assert_eq!(
        meta["introspection_endpoint"],
        format!("{issuer}/oauth2/introspect")
    );
    assert_eq!(
        meta["revocation_endpoint"],
        format!("{issuer}/oauth2/revoke")
    );

    // What it says is supported.
    let grants = strings(&meta["grant_types_supported"]);
    assert!(grants.contains(&"client_credentials"), "{grants:?}");
    for field in [
        "token_endpoint_auth_methods_supported",
        "introspection_endpoint_auth_methods_supported",
        "revocation_endpoint_auth_methods_supported",
    ] {
        let methods = strings(&meta[field]);
        assert!(
            methods.contains(&"client_secret_basic") && methods.contains(&"client_secret_post"),
            "{field}: {methods:?}"
        );
        assert!(
            !methods.contains(&"private_key_jwt"),
            "{field}: {methods:?}"
        );
    }
    assert!(strings(&meta["scopes_supported"]).contains(&"api"));
    assert_eq!(
        strings(&meta["access_token_signing_alg_values_supported"]),
        ["ES256"]
    );
    // The authorization endpoint is named exactly when the code grant is offered.
    let has_code = grants.contains(&"authorization_code");
    assert_eq!(
        meta.get("authorization_endpoint").is_some(),
        has_code,
        "{meta}"
    );
    if !has_code {
        assert!(!grants.contains(&"refresh_token"), "{grants:?}");
        assert_eq!(meta["response_types_supported"], serde_json::json!([]));
    }

    // Every URL it names answers on this server, as its RFC says: the JWKS to GET, the
    // OAuth endpoints to a POST (here without credentials: an RFC 6749 error, never 404).
    let urls: Vec<(&str, &str)> = meta
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| k.ends_with("_endpoint") || k.ends_with("_uri"))
        .map(|(k, v)| (k.as_str(), v.as_str().unwrap()))
        .collect();
    assert!(urls.len() >= 4, "{urls:?}");
    for (field, url) in urls {
        assert!(
            url.starts_with(issuer),
            "{field}: {url} is not under the issuer"
        );
        if field == "jwks_uri" {
            let res = app.client.get(url).send().await.unwrap();
            assert_eq!(res.status().as_u16(), 200, "{field}");
            let jwks: Value = res.json().await.unwrap();
            assert!(
                jwks["keys"].as_array().is_some_and(|keys| !keys.is_empty()),
                "{jwks}"
            );
        } else if field == "authorization_endpoint" {
            let res = app.client.get(url).send().await.unwrap();
            assert_ne!(res.status().as_u16(), 404, "{field}");
        } else {
            let res = app
                .client
                .post(url)
                .header("content-type", "application/x-www-form-urlencoded")
                .body("")
                .send()
                .await
                .unwrap();
            let status = res.status().as_u16();
            let body: Value = res.json().await.unwrap_or(Value::Null);
            assert!(matches!(status, 400 | 401), "{field}: {status} {body}");
            assert!(body["error"].is_string(), "{field}: {body}");
        }
    }
}

#[tokio::test]
async fn a_client_configured_from_the_metadata_alone_gets_a_verifiable_token() {
    let app = spawn().await;
    let org = org(&app, "Acme", "admin@acme.example").await;
    let client = cc_client(&app, &org, "Partner").await;
    let meta: Value = app
        .client
        .get(format!(
            "{}/.well-known/oauth-authorization-server",
            app.url
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let res = app
        .client
        .post(meta["token_endpoint"].as_str().unwrap())
        .basic_auth(&client.id, Some(&client.secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
    let body: Value = res.json().await.unwrap();
    let jwt = body["access_token"].as_str().unwrap();
    let (_, claims) = verify_offline(&app, jwt).await;
    assert_eq!(claims["iss"], meta["issuer"]);
    // And the JWKS named there holds the key.
    let kid = jsonwebtoken::decode_header(jwt).unwrap().kid.unwrap();
    let jwks: Value = app
        .client
        .get(meta["jwks_uri"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k["kid"] == kid.as_str()),
        "{jwks}"
    );
    access_token(&app, &client).await;
}
