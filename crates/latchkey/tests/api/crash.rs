//! SECURITY.md invariants 1 and 2 under `kill -9`: every acknowledged creation and revocation
//! survives a crash at an arbitrary moment, and nothing is half-written (each stored token has
//! its creation event, written in the same transaction).

use std::sync::{Arc, Mutex};

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{Binary, PASSWORD, Server};

async fn sign_in(server: &Server, email: &str) -> String {
    let res = server
        .call(
            Method::POST,
            "/v1/sessions",
            None,
            Some(json!({ "email": email, "password": PASSWORD })),
        )
        .await
        .expect(201);
    res.str("session_token")
}

#[tokio::test]
async fn a_kill_9_during_writes_loses_nothing_acknowledged() {
    let bin = Binary::fresh();
    let mut config = std::fs::read_to_string(&bin.config).unwrap_or_default();
    config
        .push_str("\n[token_types.ci]\nowner = \"user\"\nprefix = \"lkci\"\nmax_active = 100000\n");
    std::fs::write(&bin.config, config).unwrap_or_else(|e| panic!("{e}"));
    bin.create_user("crash@example.com", PASSWORD).await;
    let server = bin.serve(&[], None, None).await;
    let session = sign_in(&server, "crash@example.com").await;

    // One revocation acknowledged before the crash.
    let res = server
        .call(
            Method::POST,
            "/v1/user/tokens",
            Some(&session),
            Some(json!({ "name": "doomed", "type": "ci", "password": PASSWORD })),
        )
        .await
        .expect(201);
    let (doomed_id, doomed) = (res.str("id"), res.str("secret"));
    server
        .call(
            Method::POST,
            &format!("/v1/user/tokens/{doomed_id}/revoke"),
            Some(&session),
            Some(json!({ "password": PASSWORD })),
        )
        .await
        .expect(200);

    // Writers create tokens as fast as they can; the server is killed while they run.
    let acknowledged: Arc<Mutex<Vec<String>>> = Arc::default();
    let url = server.url.clone();
    let mut writers = Vec::new();
    for w in 0..4 {
        let (acknowledged, url, session) = (acknowledged.clone(), url.clone(), session.clone());
        writers.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            for i in 0.. {
                let res = client
                    .post(format!("{url}/v1/user/tokens"))
                    .bearer_auth(&session)
                    .json(
                        &json!({ "name": format!("w{w}-{i}"), "type": "ci", "password": PASSWORD }),
                    )
                    .send()
                    .await;
                let Ok(res) = res else { break };
                if res.status().as_u16() != 201 {
                    break;
                }
                let Ok(body) = res.json::<Value>().await else {
                    break;
                };
                if let (Some(secret), Ok(mut list)) = (body["secret"].as_str(), acknowledged.lock())
                {
                    list.push(secret.to_owned());
                }
            }
        }));
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        if acknowledged.lock().map(|l| l.len()).unwrap_or_default() >= 30 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "30 creations were not acknowledged within 60 s"
        );
    }
    let pid = server.child.id().unwrap_or_else(|| panic!("server gone"));
    let killed = std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status();
    assert!(killed.is_ok_and(|s| s.success()));
    for w in writers {
        let _ = w.await;
    }
    drop(server);
    let acknowledged = acknowledged.lock().map(|l| l.clone()).unwrap_or_default();
    assert!(acknowledged.len() >= 30);

    // Restart on the same data directory.
    let server = bin.serve(&[], None, None).await;
    for secret in &acknowledged {
        server
            .call(Method::GET, "/v1/me", Some(secret), None)
            .await
            .expect(200);
    }
    let res = server
        .call(Method::GET, "/v1/me", Some(&doomed), None)
        .await
        .expect(401);
    assert!(
        res.header("www-authenticate")
            .unwrap_or_default()
            .contains("revoked"),
        "{:?}",
        res.header("www-authenticate")
    );

    // Nothing half-written: every stored token has its creation event.
    let session = sign_in(&server, "crash@example.com").await;
    let tokens = server
        .call(Method::GET, "/v1/user/tokens", Some(&session), None)
        .await
        .expect(200);
    let stored: Vec<String> = tokens
        .body
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t["id"].as_str().map(str::to_owned))
        .collect();
    assert!(
        stored.len() > acknowledged.len(),
        "{} stored, {} acknowledged",
        stored.len(),
        acknowledged.len()
    );
    let mut created_events = Vec::new();
    let mut path = "/v1/user/events?limit=200".to_owned();
    loop {
        let page = server
            .call(Method::GET, &path, Some(&session), None)
            .await
            .expect(200);
        for e in page.body.as_array().into_iter().flatten() {
            if e["action"] == "token.created" {
                created_events.push(e["subject"]["id"].as_str().unwrap_or_default().to_owned());
            }
        }
        match page.header("link").and_then(|l| {
            l.split('>')
                .next()
                .map(|p| p.trim_start_matches('<').to_owned())
        }) {
            Some(next) => path = next,
            None => break,
        }
    }
    for id in &stored {
        assert!(
            created_events.contains(id),
            "token {id} is stored without its creation event"
        );
    }
    assert_eq!(
        created_events.len(),
        stored.len(),
        "an event without its token"
    );
    let status = server.terminate().await;
    assert!(status.success());
}
