//! The error contract (SPEC 4, SECURITY.md): one JSON envelope everywhere, the right status for
//! each kind of bad input, and never a 5xx for anything a client can send.

use reqwest::Method;
use serde_json::json;

use crate::helpers::{PASSWORD, Resp, TestApp, assert_error};

const JSON: &str = "application/json";

fn ct(value: &str) -> Vec<(&'static str, Vec<u8>)> {
    vec![("content-type", value.as_bytes().to_vec())]
}

fn with_auth(session: &str, content_type: Option<&str>) -> Vec<(&'static str, Vec<u8>)> {
    let mut headers = vec![("authorization", format!("Bearer {session}").into_bytes())];
    if let Some(value) = content_type {
        headers.push(("content-type", value.as_bytes().to_vec()));
    }
    headers
}

/// A 4xx answer in the envelope (or a success): anything but a 5xx or a body of another shape.
#[track_caller]
fn no_server_error(res: &Resp, what: &str) {
    let status = res.status.as_u16();
    assert!(status < 500, "{what}: {status} {}", res.text);
    if status >= 400 {
        let code = res.code();
        assert!(
            !code.is_empty() && code.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
            "{what}: {status} {}",
            res.text
        );
        assert!(
            res.body["error"]["message"].is_string(),
            "{what}: {}",
            res.text
        );
    }
}

#[tokio::test]
async fn unknown_routes_are_404_in_the_envelope() {
    let app = TestApp::spawn().await;
    for path in [
        "/v1",
        "/v1/nope",
        "/v1/user/tokens/a/b",
        "/v2/me",
        "/v1/me/",
        "/%00",
        "/v1/%ff",
    ] {
        let res = app.call(Method::GET, path, None, None).await;
        assert_error(&res, 404, "not_found");
    }
    let res = app.call(Method::POST, "/nope", None, Some(json!({}))).await;
    assert_error(&res, 404, "not_found");
}

#[tokio::test]
async fn a_wrong_method_is_405_in_the_envelope() {
    let app = TestApp::spawn().await;
    for (method, path) in [
        (Method::DELETE, "/v1/me"),
        (Method::POST, "/v1/me"),
        (Method::PUT, "/v1/user/tokens"),
        (Method::GET, "/v1/sessions"),
        (
            Method::GET,
            "/v1/user/tokens/tok_0000000000000000000000/rotate",
        ),
        (Method::POST, "/healthz"),
    ] {
        let res = app.call(method.clone(), path, None, None).await;
        assert_error(&res, 405, "method_not_allowed");
    }
}

#[tokio::test]
async fn a_body_that_is_not_json_is_415() {
    let app = TestApp::spawn().await;
    let body = json!({ "email": "a@example.com", "password": PASSWORD })
        .to_string()
        .into_bytes();
    for content_type in [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("application/jsonx"),
        Some(""),
    ] {
        let headers = content_type.map(ct).unwrap_or_default();
        let res = app
            .raw(Method::POST, "/v1/sessions", &headers, Some(body.clone()))
            .await;
        assert_error(&res, 415, "unsupported_media_type");
    }
    // Parameters and case do not matter.
    app.user("a@example.com").await;
    for content_type in ["application/json; charset=utf-8", "Application/JSON"] {
        app.raw(
            Method::POST,
            "/v1/sessions",
            &ct(content_type),
            Some(body.clone()),
        )
        .await
        .expect(201);
    }

    // Behind a session too.
    let session = app.login("a@example.com").await;
    let token = json!({ "name": "x", "password": PASSWORD })
        .to_string()
        .into_bytes();
    let res = app
        .raw(
            Method::POST,
            "/v1/user/tokens",
            &with_auth(&session, Some("text/plain")),
            Some(token.clone()),
        )
        .await;
    assert_error(&res, 415, "unsupported_media_type");
    let res = app
        .raw(
            Method::POST,
            "/v1/user/tokens",
            &with_auth(&session, None),
            Some(token),
        )
        .await;
    assert_error(&res, 415, "unsupported_media_type");
    assert!(app.tokens(&session).await.is_empty());
}

#[tokio::test]
async fn invalid_json_is_400_invalid_request() {
    let app = TestApp::spawn().await;
    let (_, session) = app.signed_in("json@example.com").await;
    let bodies: Vec<&[u8]> = vec![
        b"{",
        b"",
        b"not json",
        b"null",
        b"[]",
        b"{\"name\": \"x\"}",
        b"{\"password\": \"correct horse battery staple\"}",
        b"{\"name\": \"x\", \"password\": \"correct horse battery staple\", \"owner\": \"usr_x\"}",
        b"{\"name\": \"x\", \"password\": \"correct horse battery staple\", \"hash\": \"00\"}",
        b"{\"name\": 5, \"password\": \"correct horse battery staple\"}",
        b"{\"name\": \"x\", \"password\": 12345678}",
        b"{\"name\": \"x\", \"password\": \"correct horse battery staple\", \"expires_in_days\": \"30\"}",
        b"{\"name\": \"x\", \"password\": \"correct horse battery staple\", \"expires_in_days\": -1}",
        b"{\"name\": \"a\", \"name\": \"b\", \"password\": \"correct horse battery staple\"}",
    ];
    for body in bodies {
        let res = app
            .raw(
                Method::POST,
                "/v1/user/tokens",
                &with_auth(&session, Some(JSON)),
                Some(body.to_vec()),
            )
            .await;
        assert_error(&res, 400, "invalid_request");
    }
    for body in [
        json!({ "email": "x@example.com" }),
        json!({ "email": "x@example.com", "password": "p", "remember": true }),
        json!({ "email": 1, "password": "p" }),
    ] {
        let res = app
            .call(Method::POST, "/v1/sessions", None, Some(body))
            .await;
        assert_error(&res, 400, "invalid_request");
    }
    assert!(app.tokens(&session).await.is_empty());
}

#[tokio::test]
async fn a_body_over_256_kib_is_413() {
    let app = TestApp::spawn().await;
    app.user("big@example.com").await;
    let limit = 256 * 1024;

    // Exactly at the limit: read and judged on its content.
    let head = format!("{{\"email\": \"big@example.com\", \"password\": \"{PASSWORD}\"}}");
    let mut at_limit = head.clone().into_bytes();
    at_limit.resize(limit, b' ');
    app.raw(Method::POST, "/v1/sessions", &ct(JSON), Some(at_limit))
        .await
        .expect(201);

    let mut over = head.into_bytes();
    over.resize(limit + 1, b' ');
    let res = app
        .raw(Method::POST, "/v1/sessions", &ct(JSON), Some(over))
        .await;
    assert_error(&res, 413, "payload_too_large");

    let huge = json!({ "email": "big@example.com", "password": "x".repeat(1024 * 1024) });
    let res = app
        .call(Method::POST, "/v1/sessions", None, Some(huge))
        .await;
    assert_error(&res, 413, "payload_too_large");
}

#[tokio::test]
async fn names_are_1_to_200_printable_characters() {
    let app = TestApp::spawn().await;
    let (_, session, id, _) = app.user_with_token("names@example.com").await;
    let path = format!("/v1/user/tokens/{id}");
    for bad in [
        "",
        "   ",
        "n".repeat(201).as_str(),
        "é".repeat(201).as_str(),
        "bell\u{7}",
        "line\nbreak",
        "nul\u{0}",
    ] {
        let res = app
            .call(
                Method::PATCH,
                &path,
                Some(&session),
                Some(json!({ "name": bad })),
            )
            .await;
        assert_error(&res, 400, "invalid_request");
    }
    for good in ["n".repeat(200), "é".repeat(200), "🔑 deploy key".to_owned()] {
        let res = app
            .call(
                Method::PATCH,
                &path,
                Some(&session),
                Some(json!({ "name": good })),
            )
            .await
            .expect(200);
        assert_eq!(res.str("name"), good);
    }

    // The same rules on create (checked before the limit).
    let (_, other) = app.signed_in("names2@example.com").await;
    for bad in ["", "n".repeat(201).as_str()] {
        let res = app
            .create_token(&other, json!({ "name": bad, "password": PASSWORD }))
            .await;
        assert_error(&res, 400, "invalid_request");
    }
    app.create_token(
        &other,
        json!({ "name": "n".repeat(200), "password": PASSWORD }),
    )
    .await
    .expect(201);
}

#[tokio::test]
async fn health_and_readiness_answer() {
    let app = TestApp::spawn().await;
    let res = app
        .call(Method::GET, "/healthz", None, None)
        .await
        .expect(200);
    assert_eq!(res.body, json!({ "status": "ok" }));
    let res = app
        .call(Method::GET, "/readyz", None, None)
        .await
        .expect(200);
    assert_eq!(res.body, json!({ "status": "ready" }));
}

#[tokio::test]
async fn hostile_input_never_gets_a_server_error() {
    let app = TestApp::spawn().await;
    let (_, session, id, secret) = app.user_with_token("hostile@example.com").await;
    let pw = PASSWORD;

    let mut bodies: Vec<Vec<u8>> = [
        "".to_owned(),
        "{".to_owned(),
        "}".to_owned(),
        "null".to_owned(),
        "[]".to_owned(),
        "\"string\"".to_owned(),
        "123".to_owned(),
        "{}".to_owned(),
        format!(r#"{{"name": null, "password": "{pw}"}}"#),
        r#"{"name": "x", "password": null}"#.to_owned(),
        format!(r#"{{"name": "x\u0000y", "password": "{pw}"}}"#),
        format!(r#"{{"name": "{}", "password": "{pw}"}}"#, "🔑".repeat(201)),
        format!(r#"{{"name": "🔑 key \u202eevil", "password": "{pw}"}}"#),
        "[".repeat(100_000),
        format!("{}1{}", "{\"a\":".repeat(5_000), "}".repeat(5_000)),
        format!(r#"{{"name": "x", "password": "{pw}", "expires_in_days": "10"}}"#),
        format!(r#"{{"name": "x", "password": "{pw}", "expires_in_days": -5}}"#),
        format!(r#"{{"name": "x", "password": "{pw}", "expires_in_days": 1.5}}"#),
        format!(r#"{{"name": "x", "password": "{pw}", "expires_in_days": 1e400}}"#),
        format!(r#"{{"name": "x", "password": "{pw}", "expires_in_days": 18446744073709551616}}"#),
        format!(r#"{{"name": "x", "password": "{pw}", "expires_in_days": 4294967295}}"#),
        format!(r#"{{"name": "x", "password": "{pw}", "expires_in_days": true}}"#),
        format!(r#"{{"name": "x", "password": "{pw}", "type": "api"}}"#),
        format!(r#"{{"name": "x", "password": "{pw}", "type": "nope"}}"#),
        format!(r#"{{"name": "x", "password": "{pw}", "type": ""}}"#),
        format!(
            r#"{{"name": "x", "password": "{pw}", "type": "{}"}}"#,
            "t".repeat(10_000)
        ),
        format!(r#"{{"name": "x", "password": "{pw}", "owner": "usr_0000000000000000000000"}}"#),
        format!(r#"{{"name": "x", "password": "{pw}", "__proto__": {{}}}}"#),
        format!(r#"{{"name": {{"$ne": null}}, "password": "{pw}"}}"#),
        format!(r#"{{"name": ["x"], "password": "{pw}"}}"#),
        format!(r#"{{"name": "x", "password": "{}"}}"#, "p".repeat(200_000)),
        r#"{"name": "x", "password": ""}"#.to_owned(),
        format!(r#"{{"name": "\ud800", "password": "{pw}"}}"#),
        format!("\u{feff}{{\"name\": \"x\", \"password\": \"{pw}\"}}"),
        format!(r#"{{"name": "a\nb", "password": "{pw}"}}"#),
        format!(r#"{{"name": "' OR 1=1 --", "password": "{pw}", "grace": "1h"}}"#),
        r#"{"grace": "first_use\u0000"}"#.to_owned(),
        r#"{"grace": "18446744073709551615s"}"#.to_owned(),
        r#"{"grace": "99999999999d"}"#.to_owned(),
        r#"{"grace": 3600}"#.to_owned(),
        r#"{"grace": null}"#.to_owned(),
        r#"{"email": "' OR 1=1 --", "password": "x"}"#.to_owned(),
        format!(
            r#"{{"email": "{}@example.com", "password": "{pw}"}}"#,
            "e".repeat(100_000)
        ),
        r#"{"email": "nul\u0000@example.com", "password": "xxxxxxxxxx"}"#.to_owned(),
        r#"{"email": "🔑@example.com", "password": "xxxxxxxxxx"}"#.to_owned(),
    ]
    .into_iter()
    .map(String::into_bytes)
    .collect();
    // Bytes that are not even UTF-8, and a raw NUL inside a string.
    bodies.push(b"{\"name\": \"\xff\xfe\", \"password\": \"x\"}".to_vec());
    bodies.push(b"{\"name\": \"a\0b\", \"password\": \"correct horse battery staple\"}".to_vec());
    bodies.push(vec![0; 1024]);
    assert!(bodies.len() >= 40);

    let targets = [
        (Method::POST, "/v1/user/tokens".to_owned()),
        (Method::PATCH, format!("/v1/user/tokens/{id}")),
        (Method::POST, format!("/v1/user/tokens/{id}/rotate")),
        (Method::POST, format!("/v1/user/tokens/{id}/revoke")),
        (Method::POST, format!("/v1/user/tokens/{id}/reveal")),
        (Method::POST, "/v1/sessions".to_owned()),
    ];
    // Keep the token alive: the rotate and revoke targets are refused before they act, or
    // act on bodies that are refused for the wrong password; those that succeed are tolerated.
    for body in &bodies {
        for (method, path) in &targets {
            let res = app
                .raw(
                    method.clone(),
                    path,
                    &with_auth(&session, Some(JSON)),
                    Some(body.clone()),
                )
                .await;
            no_server_error(
                &res,
                &format!(
                    "{method} {path} with {:?}",
                    String::from_utf8_lossy(&body[..body.len().min(80)])
                ),
            );
        }
    }

    let mut authorizations: Vec<Vec<u8>> = [
        format!("Bearer {}", "a".repeat(15_000)),
        format!("Bearer lkp_{}", "A".repeat(200)),
        format!("Bearer lkp_{}", "é".repeat(49)),
        "Bearer lkp_\t\tabc".to_owned(),
        "Bearer  two  spaces".to_owned(),
        format!("Bearer lkses_{}", "0".repeat(49)),
        "Bearer ../../etc/passwd".to_owned(),
        "Bearer ' OR 1=1 --".to_owned(),
        "Bearer null".to_owned(),
        "Bearer {\"a\":1}".to_owned(),
        format!("Bearer lkp_{}", "0".repeat(49)),
        format!("Bearer {secret} {secret}"),
        format!("Bearer {secret},{secret}"),
        format!("Bearer {}", secret.to_uppercase()),
        format!("Basic {secret}"),
        "Bearer 🔑".to_owned(),
        "Bearer".to_owned(),
        " ".to_owned(),
        "=".repeat(8_000),
    ]
    .into_iter()
    .map(String::into_bytes)
    .collect();
    authorizations.push(b"Bearer \xff\xfe\xfd".to_vec());
    authorizations.push(b"Bearer lkp_\x80\x81".to_vec());
    for value in &authorizations {
        for (method, path) in [
            (Method::GET, "/v1/me"),
            (Method::GET, "/v1/user/tokens"),
            (Method::DELETE, "/v1/sessions/current"),
        ] {
            let res = app
                .raw(
                    method.clone(),
                    path,
                    &[("authorization", value.clone())],
                    None,
                )
                .await;
            no_server_error(
                &res,
                &format!(
                    "{method} {path} with {:?}",
                    String::from_utf8_lossy(&value[..value.len().min(80)])
                ),
            );
            assert!(
                res.status.as_u16() >= 400,
                "{path} accepted {:?}",
                String::from_utf8_lossy(value)
            );
        }
    }

    // Bytes no HTTP client would send: the server answers (or hangs up) without a 5xx.
    let raw: Vec<Vec<u8>> = vec![
        b"GET /v1/me HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer a\0b\r\nConnection: close\r\n\r\n".to_vec(),
        b"GET /v1/me HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer lkp_x\rInjected: 1\r\nConnection: close\r\n\r\n".to_vec(),
        [b"GET /v1/me HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ".as_slice(), &vec![b'a'; 100_000], b"\r\nConnection: close\r\n\r\n"].concat(),
        b"POST /v1/sessions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: -1\r\nConnection: close\r\n\r\n{}".to_vec(),
        b"POST /v1/sessions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 99999999999999999999\r\nConnection: close\r\n\r\n{}".to_vec(),
        b"GET /v1/me\0 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_vec(),
        b"\0\0\0\0\r\n\r\n".to_vec(),
    ];
    for request in &raw {
        let status = app.raw_tcp(request).await;
        assert!(
            status < 500,
            "{status} for {:?}",
            String::from_utf8_lossy(&request[..request.len().min(80)])
        );
    }

    // And the server still serves.
    app.call(Method::GET, "/healthz", None, None)
        .await
        .expect(200);
    app.get("/v1/user/tokens", &session).await.expect(200);
}

#[tokio::test]
async fn no_submitted_value_is_echoed_in_an_error() {
    let app = TestApp::spawn().await;
    let (_, session, id, _) = app.user_with_token("echo@example.com").await;
    let org = app.org("Acme").await;
    app.add_member(&org, "echo@example.com", latchkey_core::Role::Admin)
        .await;
    // A value that looks like a leaked secret, and one that is plainly a marker.
    let secret = "lkp_SeCrEtCaNaRy0123456789abcdefghijklmnopqrstuvw";
    let cases: Vec<(Method, String, String)> = vec![
        (
            Method::POST,
            "/v1/leaks".into(),
            format!(r#"{{"tokens": "{secret}"}}"#),
        ),
        (
            Method::POST,
            "/v1/leaks".into(),
            format!(r#"{{"tokens": {{"{secret}": 1}}}}"#),
        ),
        (
            Method::POST,
            "/v1/leaks".into(),
            format!(r#"{{"tokens": ["{secret}"], "{secret}": 1}}"#),
        ),
        (
            Method::POST,
            "/v1/sessions".into(),
            format!(r#"{{"email": "a@example.com", "password": ["{secret}"]}}"#),
        ),
        (
            Method::POST,
            "/v1/sessions".into(),
            format!(r#"{{"email": "a@example.com", "password": "x", "{secret}": true}}"#),
        ),
        (
            Method::POST,
            "/v1/user/tokens".into(),
            format!(r#"{{"name": "x", "password": {{"p": "{secret}"}}}}"#),
        ),
        (
            Method::POST,
            "/v1/user/tokens".into(),
            format!(r#"{{"name": "x", "password": "{PASSWORD}", "expires_in_days": "{secret}"}}"#),
        ),
        (
            Method::POST,
            format!("/v1/user/tokens/{id}/rotate"),
            format!(r#"{{"grace": "{secret}"}}"#),
        ),
        (
            Method::POST,
            format!("/v1/orgs/{org}/members"),
            format!(r#"{{"email": "b@example.com", "role": "{secret}"}}"#),
        ),
        (
            Method::POST,
            "/v1/user/tokens".into(),
            format!(r#"{{"name": "x", "password": "{PASSWORD}", "type": "{secret}"}}"#),
        ),
        (
            Method::PATCH,
            format!("/v1/user/tokens/{id}"),
            format!(r#"{{"allowed_ips": ["{secret}"]}}"#),
        ),
        (
            Method::POST,
            format!("/v1/orgs/{org}/tokens"),
            format!(r#"{{"name": "x", "type": "{secret}"}}"#),
        ),
        (
            Method::POST,
            format!("/v1/orgs/{org}/clients"),
            format!(r#"{{"name": "x", "grant_types": ["{secret}"]}}"#),
        ),
        (
            Method::POST,
            format!("/v1/orgs/{org}/clients"),
            format!(
                r#"{{"name": "x", "grant_types": ["client_credentials"], "scopes": ["{secret}"]}}"#
            ),
        ),
        (
            Method::POST,
            format!("/v1/orgs/{org}/clients"),
            format!(
                r#"{{"name": "x", "grant_types": ["client_credentials"], "scopes": ["{secret} x"]}}"#
            ),
        ),
        (
            Method::GET,
            format!("/v1/user/events?limit={secret}"),
            String::new(),
        ),
        (
            Method::GET,
            format!("/v1/user/events?{secret}=1"),
            String::new(),
        ),
    ];
    for (method, path, body) in cases {
        let body = (!body.is_empty()).then(|| body.into_bytes());
        let res = app
            .raw(
                method.clone(),
                &path,
                &with_auth(&session, Some(JSON)),
                body,
            )
            .await;
        assert_error(&res, 400, "invalid_request");
        for needle in ["SeCrEt", "CaNaRy"] {
            assert!(
                !res.text.contains(needle),
                "{method} {path} echoed the submitted value: {}",
                res.text
            );
        }
    }
}

#[tokio::test]
async fn a_path_segment_that_is_not_utf8_is_400_on_every_route() {
    let app = TestApp::spawn().await;
    let (_, session) = app.signed_in("utf8@example.com").await;
    let org = app.org("Acme").await;
    app.add_member(&org, "utf8@example.com", latchkey_core::Role::Admin)
        .await;
    for (method, path) in [
        (Method::GET, "/v1/orgs/%FF/tokens".to_owned()),
        (Method::GET, "/v1/orgs/%FF/events".to_owned()),
        (Method::GET, "/v1/orgs/%C3%28/members".to_owned()),
        (Method::PATCH, format!("/v1/orgs/{org}/members/%FF")),
        (Method::GET, "/v1/user/tokens/%FF".to_owned()),
        (Method::POST, "/v1/user/tokens/%FF%FE/rotate".to_owned()),
        (Method::POST, format!("/v1/orgs/{org}/tokens/%80/reveal")),
        (
            Method::DELETE,
            format!("/v1/orgs/{org}/clients/cli_x/secrets/%FF"),
        ),
    ] {
        let res = app
            .raw(
                method.clone(),
                &path,
                &with_auth(&session, Some(JSON)),
                Some(b"{}".to_vec()),
            )
            .await;
        assert_error(&res, 400, "invalid_request");
        assert!(
            res.header("content-type")
                .is_some_and(|v| v.starts_with("application/json")),
            "{method} {path}: {:?}",
            res.headers
        );
    }
    // The console's pages share the one extractor, and say it on a page (`PagePath`).
    let res = app
        .raw(
            Method::GET,
            "/orgs/%FF/tokens",
            &[("cookie", format!("latchkey_session={session}").into_bytes())],
            None,
        )
        .await;
    assert_eq!(res.status.as_u16(), 400, "{}", res.text);
    assert!(
        res.header("content-type")
            .is_some_and(|v| v.starts_with("text/html")),
        "{:?}",
        res.headers
    );
    assert!(res.text.contains("not UTF-8 text"), "{}", res.text);
}

/// What the middleware promises every answer (SECURITY.md), kept too by the doors answered
/// before the router (`doors.rs`): a request id (the caller's, or a new one), `nosniff`, no
/// caching unless said otherwise, and `431` for headers over 16 KiB.
/// A request to send as-is: method, path, headers, body.
type Call<'a> = (Method, &'a str, Vec<(&'a str, Vec<u8>)>, Option<&'a [u8]>);

#[tokio::test]
async fn the_doors_keep_the_request_id_the_response_policies_and_the_header_limit() {
    let app = TestApp::spawn().await;
    let (_, _, _, secret) = app.user_with_token("doors@example.com").await;
    let bearer = format!("Bearer {secret}").into_bytes();
    let form = "application/x-www-form-urlencoded".as_bytes().to_vec();
    let calls: [Call; 5] = [
        (
            Method::GET,
            "/v1/me",
            vec![("authorization", bearer.clone())],
            None,
        ),
        (
            Method::GET,
            "/v1/forward-auth/x",
            vec![("authorization", bearer)],
            None,
        ),
        (
            Method::POST,
            "/oauth2/introspect",
            vec![("content-type", form.clone())],
            Some(b"token=x"),
        ),
        (
            Method::POST,
            "/oauth2/token",
            vec![("content-type", form)],
            Some(b"grant_type=client_credentials"),
        ),
        // Behind the router, for comparison.
        (Method::GET, "/healthz", vec![], None),
    ];
    for (method, path, headers, body) in calls {
        let res = app
            .raw(method.clone(), path, &headers, body.map(<[u8]>::to_vec))
            .await;
        assert!(res.status.as_u16() < 500, "{path}: {}", res.text);
        let id = res.header("x-request-id").unwrap_or_default();
        assert!(id.len() > 8, "{path}: request id {id:?}");
        assert_eq!(
            res.header("x-content-type-options").as_deref(),
            Some("nosniff"),
            "{path}"
        );
        assert!(res.header("cache-control").is_some(), "{path}");

        let mut given = headers.clone();
        given.push(("x-request-id", b"caller-chosen-42".to_vec()));
        let res = app
            .raw(method.clone(), path, &given, body.map(<[u8]>::to_vec))
            .await;
        assert_eq!(
            res.header("x-request-id").as_deref(),
            Some("caller-chosen-42"),
            "{path}"
        );
        let first = app
            .raw(method.clone(), path, &headers, body.map(<[u8]>::to_vec))
            .await
            .header("x-request-id");
        assert_ne!(first.as_deref(), Some(id.as_str()), "{path}: ids repeat");

        let mut big = headers.clone();
        big.push(("x-padding", vec![b'a'; 17 * 1024]));
        let res = app.raw(method, path, &big, body.map(<[u8]>::to_vec)).await;
        assert_error(&res, 431, "headers_too_large");
        assert_eq!(
            res.header("x-content-type-options").as_deref(),
            Some("nosniff"),
            "{path}"
        );
    }
}
