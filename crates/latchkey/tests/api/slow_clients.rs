//! Slow clients (SECURITY.md): a connection that never finishes its headers is closed, and a
//! body that stalls or trickles in is cut off with a 4xx, so idle sockets cannot pile up.

use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::helpers::TestApp;

async fn connect(app: &TestApp) -> TcpStream {
    let addr = app.url.trim_start_matches("http://").to_owned();
    TcpStream::connect(addr).await.unwrap()
}

/// Reads until the server closes the connection; what it sent.
async fn read_to_close(stream: &mut TcpStream, within: Duration) -> String {
    let mut out = Vec::new();
    tokio::time::timeout(within, stream.read_to_end(&mut out))
        .await
        .expect("the server kept a stalled connection open")
        .unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn unfinished_headers_are_cut_off() {
    // The header-read timeout (10 s by default) set to 1 s: the cut comes from it, not from
    // the idle timeout (30 s here), and the test does not wait 10 s of real time.
    let app = TestApp::builder()
        .configure(|c| c.header_read_timeout = latchkey_core::PolicyDuration::from_secs(1))
        .start()
        .await;
    let mut stream = connect(&app).await;
    stream
        .write_all(b"GET /login HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    read_to_close(&mut stream, Duration::from_secs(5)).await;
}

#[tokio::test]
async fn a_stalled_or_trickling_body_is_answered_and_closed() {
    // The body deadline (15 s by default) set to 1 s, so the test does not wait 15 s of real
    // time; the idle timeout (30 s) and the header timeout cannot be what cuts.
    let app = TestApp::builder()
        .configure(|c| c.body_read_timeout = latchkey_core::PolicyDuration::from_secs(1))
        .start()
        .await;
    // Behind the router, and at the doors that read a body (the token endpoint, introspection).
    let starts = [
        ("/v1/sessions", "application/json", "{\"email\":"),
        (
            "/oauth2/token",
            "application/x-www-form-urlencoded",
            "grant_type=",
        ),
        (
            "/oauth2/introspect",
            "application/x-www-form-urlencoded",
            "token=",
        ),
    ];
    let mut answers = Vec::new();
    for (path, content_type, start) in starts {
        // Stalled: nothing after the start. Trickling: a byte every 200 ms, which a timeout
        // between pieces would never cut.
        for trickle in [false, true] {
            let mut stream = connect(&app).await;
            let head = format!(
                "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\nContent-Length: 1000\r\n\r\n{start}"
            );
            stream.write_all(head.as_bytes()).await.unwrap();
            answers.push(tokio::spawn(async move {
                let started = std::time::Instant::now();
                let (mut read, mut write) = stream.into_split();
                // Holds the write half open either way (dropping it would end the body).
                let trickler = tokio::spawn(async move {
                    while !trickle || write.write_all(b"a").await.is_ok() {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                });
                let mut out = Vec::new();
                let read =
                    tokio::time::timeout(Duration::from_secs(10), read.read_to_end(&mut out)).await;
                trickler.abort();
                assert!(
                    read.is_ok(),
                    "{path} (trickle {trickle}): not closed within 10 s"
                );
                (
                    path,
                    trickle,
                    started.elapsed(),
                    String::from_utf8_lossy(&out).into_owned(),
                )
            }));
        }
    }
    for answer in answers {
        let (path, trickle, took, answer) = answer.await.unwrap();
        let status = answer.split(' ').nth(1).unwrap_or_default();
        assert!(
            status.starts_with('4'),
            "{path} (trickle {trickle}): {answer}"
        );
        assert!(
            took >= Duration::from_millis(900) && took < Duration::from_secs(5),
            "{path} (trickle {trickle}): cut after {took:?}: {}",
            answer.rsplit("\r\n").next().unwrap_or_default()
        );
    }
}

async fn app_with(idle_secs: u64, max_connections: usize) -> TestApp {
    TestApp::builder()
        .configure(move |c| {
            c.connection_idle_timeout = latchkey_core::PolicyDuration::from_secs(idle_secs);
            c.max_connections = max_connections;
        })
        .start()
        .await
}

#[tokio::test]
async fn a_connection_that_sends_nothing_is_closed_after_the_idle_timeout() {
    let app = app_with(1, 100).await;
    let mut silent = connect(&app).await;
    let answer = read_to_close(&mut silent, Duration::from_secs(10)).await;
    assert!(answer.is_empty(), "{answer}");
}

#[tokio::test]
async fn an_http2_preface_alone_does_not_hold_a_connection() {
    let app = app_with(1, 100).await;
    let mut stream = connect(&app).await;
    stream
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .unwrap();
    // The server's SETTINGS come back, then nothing moves and the connection goes.
    read_to_close(&mut stream, Duration::from_secs(10)).await;
}

#[tokio::test]
async fn a_busy_keep_alive_connection_is_not_cut() {
    let app = app_with(1, 100).await;
    let mut stream = connect(&app).await;
    // Requests 400 ms apart for well over the idle timeout, on one connection.
    for _ in 0..8 {
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 1024];
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
}

#[tokio::test]
async fn connections_past_the_cap_are_closed_at_once_and_the_rest_are_served() {
    let app = app_with(30, 2).await;
    let _first = connect(&app).await;
    let _second = connect(&app).await;
    // Give the accept loop the two connections before the third arrives.
    let mut third = connect(&app).await;
    third
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(10), third.read_to_end(&mut out)).await;
    match closed {
        // Closed without an answer (or reset).
        Ok(Ok(_)) | Ok(Err(_)) => assert!(out.is_empty(), "{}", String::from_utf8_lossy(&out)),
        Err(_) => panic!("the connection past the cap was held open"),
    }
    drop(_first);
    // Once one closes, a new connection is served again.
    let mut served = false;
    for _ in 0..50 {
        if let Ok(res) = app.client.get(format!("{}/healthz", app.url)).send().await {
            served = res.status() == 200;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(served);
}
