//! `GET /openapi.json` and `GET /docs` (SPEC 4).

use reqwest::Method;

use crate::helpers::TestApp;

#[tokio::test]
async fn the_openapi_document_describes_the_routes_and_names_this_server() {
    let app = TestApp::spawn().await;
    let res = app
        .call(Method::GET, "/openapi.json", None, None)
        .await
        .expect(200);
    assert_eq!(
        res.header("content-type").as_deref(),
        Some("application/json")
    );
    let doc = res.body;
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(doc["servers"][0]["url"], app.url.as_str());
    for (path, method) in [
        ("/v1/me", "get"),
        ("/v1/user/tokens", "post"),
        ("/v1/orgs/{org}/tokens/{id}", "delete"),
        ("/oauth2/token", "post"),
        ("/openapi.json", "get"),
    ] {
        assert!(
            doc["paths"][path][method]["summary"].is_string(),
            "{method} {path}"
        );
    }
    assert_eq!(
        doc["paths"]["/v1/me"]["get"]["security"][0]["bearer"],
        serde_json::json!([])
    );
}

#[tokio::test]
async fn the_reference_page_works_offline() {
    let app = TestApp::spawn().await;
    let res = app.call(Method::GET, "/docs", None, None).await;
    assert_eq!(res.status, 200);
    assert!(res.text.contains("<code>/v1/me</code>"), "{}", res.text);
    // Nothing from elsewhere: the page loads only this server's stylesheet.
    assert!(!res.text.contains("https://"));
    let csp = res.header("content-security-policy").unwrap_or_default();
    assert!(csp.contains("default-src 'none'"), "{csp}");
}
