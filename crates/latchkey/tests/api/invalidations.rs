//! `GET /v1/invalidations` (SPEC 8): every change as it commits, as server-sent events, for a
//! client with the introspect permission; resumable with `Last-Event-ID`.

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{PASSWORD, TestApp};
use crate::oauth_helpers::{Registered, cc_client_with, org};

fn basic(client: &Registered) -> String {
    use base64::Engine as _;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD
            .encode(format!("{}:{}", client.id, client.secret))
    )
}

/// An open stream, read event by event.
struct Stream {
    res: reqwest::Response,
    buffer: String,
}

#[derive(Debug)]
struct Sse {
    id: String,
    event: String,
    data: Value,
}

impl Stream {
    async fn open(app: &TestApp, auth: &str, last: Option<&str>) -> Self {
        let mut req = app
            .client
            .get(format!("{}/v1/invalidations", app.url))
            .header("authorization", auth);
        if let Some(last) = last {
            req = req.header("last-event-id", last);
        }
        let res = req.send().await.unwrap();
        assert_eq!(res.status(), 200);
        assert!(
            res.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/event-stream")
        );
        Self {
            res,
            buffer: String::new(),
        }
    }

    /// The next event (heartbeat comments skipped), within 5 s.
    async fn next(&mut self) -> Sse {
        tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                if let Some(end) = self.buffer.find("\n\n") {
                    let block: String = self.buffer.drain(..end + 2).collect();
                    let field = |name: &str| {
                        block
                            .lines()
                            .find_map(|l| l.strip_prefix(&format!("{name}:")))
                            .map(|v| v.trim().to_owned())
                    };
                    let Some(event) = field("event") else {
                        continue; // a heartbeat comment
                    };
                    return Sse {
                        id: field("id").unwrap_or_default(),
                        event,
                        data: serde_json::from_str(&field("data").unwrap_or_default())
                            .unwrap_or(Value::Null),
                    };
                }
                let chunk = self.res.chunk().await.unwrap().expect("the stream ended");
                self.buffer.push_str(&String::from_utf8_lossy(&chunk));
            }
        })
        .await
        .expect("no event within 5 s")
    }
}

#[tokio::test]
async fn a_revocation_is_streamed_as_it_commits_and_a_stream_resumes_where_it_stopped() {
    let app = crate::oauth_helpers::spawn().await;
    let org = org(&app, "Streams", "streams@example.com").await;
    let watcher = cc_client_with(&app, &org, "watcher", true).await;
    let auth = basic(&watcher);
    let (_, session, id, _) = app.user_with_token("streamed@example.com").await;
    let mut stream = Stream::open(&app, &auth, None).await;

    app.post(
        &format!("/v1/user/tokens/{id}/revoke"),
        &session,
        json!({ "password": PASSWORD }),
    )
    .await
    .expect(200);
    let event = stream.next().await;
    assert_eq!(event.event, "change");
    assert_eq!(
        event.data,
        json!({ "kind": "token", "token": id }),
        "{event:?}"
    );
    let first = event.id.clone();

    // A membership change, then reconnect from before both: they come again, in order.
    app.add_member(&org.id, "streamed@example.com", latchkey_core::Role::Member)
        .await;
    let event = stream.next().await;
    assert_eq!(event.data["kind"], "membership");
    drop(stream);
    let before: i64 = first.parse::<i64>().unwrap() - 1;
    let mut again = Stream::open(&app, &auth, Some(&before.to_string())).await;
    assert_eq!(again.next().await.id, first);
    assert_eq!(again.next().await.data["kind"], "membership");

    // A position the log does not hold: reset.
    let mut lost = Stream::open(&app, &auth, Some("999999999")).await;
    assert_eq!(lost.next().await.event, "reset");
}

#[tokio::test]
async fn only_a_client_with_the_introspect_permission_may_listen() {
    let app = crate::oauth_helpers::spawn().await;
    let org = org(&app, "Closed", "closed@example.com").await;
    let plain = cc_client_with(&app, &org, "plain", false).await;
    for auth in [
        None,
        Some(basic(&plain)),
        Some("Basic bm9wZTpub3Bl".to_owned()),
    ] {
        let mut req = app.client.get(format!("{}/v1/invalidations", app.url));
        if let Some(auth) = &auth {
            req = req.header("authorization", auth);
        }
        let res = req.send().await.unwrap();
        assert_eq!(res.status(), 401, "{auth:?}");
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["error"], "invalid_client");
    }
}
