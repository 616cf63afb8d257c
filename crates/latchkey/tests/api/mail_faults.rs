//! Mail faults (issue 14, docs/RELIABILITY.md): an SMTP server that refuses, drops the
//! connection in the middle of a message, answers a message with a temporary failure, or says
//! nothing at all (until the SMTP timeout). Nothing is lost, nothing is sent twice, and a
//! SIGTERM is not held by a server that says nothing. The server here is a small one of the test's own (the faults are
//! its point); `mail_helpers::SmtpSink` is the well-behaved one the other tests use.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

use crate::helpers::{Binary, PASSWORD, TestApp};

const ACCEPT: u8 = 0;
/// `421` at the greeting: the server cannot take mail now.
const REFUSE: u8 = 1;
/// The connection closed after a line of the message.
const DROP_MID_MESSAGE: u8 = 2;
/// `451` once the whole message is sent: a temporary failure about this message.
const REJECT_MESSAGE: u8 = 3;
/// Accepts the connection and never says a word.
const STALL: u8 = 4;

struct FakeSmtp {
    port: u16,
    mode: Arc<AtomicU8>,
    /// The Message-ID of every message taken (answered `250`).
    taken: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeSmtp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeSmtp {
    async fn start(mode: u8) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let mode = Arc::new(AtomicU8::new(mode));
        let taken: Arc<Mutex<Vec<String>>> = Arc::default();
        let (m, t) = (mode.clone(), taken.clone());
        let task = tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let (m, t) = (m.clone(), t.clone());
                tokio::spawn(async move {
                    let _ = session(socket, m.load(Ordering::SeqCst), t).await;
                });
            }
        });
        Self {
            port,
            mode,
            taken,
            task,
        }
    }

    fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    fn set(&self, mode: u8) {
        self.mode.store(mode, Ordering::SeqCst);
    }

    fn taken(&self) -> Vec<String> {
        self.taken.lock().map(|t| t.clone()).unwrap_or_default()
    }
}

/// One SMTP conversation in the given mode.
async fn session(
    socket: tokio::net::TcpStream,
    mode: u8,
    taken: Arc<Mutex<Vec<String>>>,
) -> std::io::Result<()> {
    let (read, mut write) = socket.into_split();
    let mut lines = BufReader::new(read).lines();
    match mode {
        STALL => {
            tokio::time::sleep(Duration::from_secs(120)).await;
            return Ok(());
        }
        REFUSE => {
            write
                .write_all(b"421 fake.test busy, try later\r\n")
                .await?;
            return Ok(());
        }
        _ => write.write_all(b"220 fake.test ESMTP\r\n").await?,
    }
    while let Some(line) = lines.next_line().await? {
        let verb = line.get(..4).unwrap_or_default().to_ascii_uppercase();
        match verb.as_str() {
            "EHLO" | "HELO" => write.write_all(b"250 fake.test\r\n").await?,
            "MAIL" | "RCPT" | "RSET" | "NOOP" => write.write_all(b"250 ok\r\n").await?,
            "QUIT" => {
                write.write_all(b"221 bye\r\n").await?;
                return Ok(());
            }
            "DATA" => {
                write.write_all(b"354 go on\r\n").await?;
                let mut message_id = String::new();
                while let Some(data) = lines.next_line().await? {
                    if mode == DROP_MID_MESSAGE {
                        return Ok(()); // closed after the first line of the message
                    }
                    if data == "." {
                        break;
                    }
                    if let Some(id) = data
                        .split_once(':')
                        .filter(|(k, _)| k.eq_ignore_ascii_case("message-id"))
                    {
                        message_id = id.1.trim().to_owned();
                    }
                }
                if mode == REJECT_MESSAGE {
                    write.write_all(b"451 4.3.0 try this one later\r\n").await?;
                } else {
                    if let Ok(mut t) = taken.lock() {
                        t.push(message_id);
                    }
                    write.write_all(b"250 taken\r\n").await?;
                }
            }
            _ => write.write_all(b"502 not here\r\n").await?,
        }
    }
    Ok(())
}

/// `latchkey_mails_total{result=…}` of the in-process server.
async fn mails(app: &TestApp, result: &str) -> u64 {
    let text = app
        .client
        .get(format!("{}/metrics", app.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let prefix = format!("latchkey_mails_total{{result=\"{result}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn a_refusing_dropping_rejecting_or_silent_smtp_server_loses_no_mail_and_gets_none_twice() {
    let smtp = FakeSmtp::start(REFUSE).await;
    // The workers off: each try is driven here, the clock moved past each back-off; the SMTP
    // timeout (15 s by default) lowered so the silent server costs a second, not fifteen.
    let app = TestApp::builder()
        .smtp_url(&smtp.url())
        .configure(|c| c.smtp_timeout = latchkey_core::PolicyDuration::from_secs(1))
        .without_workers()
        .start()
        .await;
    let (_, session) = app.signed_in("ada@example.com").await;
    app.create_token(&session, json!({"name": "laptop", "password": PASSWORD}))
        .await
        .expect(201);

    // Refused at the greeting, dropped mid-message, rejected for now, not a word until the
    // timeout: a failure each, the mail kept for its next try.
    for (mode, failed) in [
        (REFUSE, 1),
        (DROP_MID_MESSAGE, 2),
        (REJECT_MESSAGE, 3),
        (STALL, 4),
    ] {
        smtp.set(mode);
        app.clock.advance(3_600);
        let started = Instant::now();
        assert_eq!(app.drive_outbox().await, 0, "mode {mode}");
        let took = started.elapsed();
        assert_eq!(mails(&app, "failed").await, failed, "mode {mode}");
        assert_eq!(app.unsent_mails().await, 1, "mode {mode}");
        if mode == STALL {
            assert!(
                took >= Duration::from_millis(900) && took < Duration::from_secs(5),
                "a silent server was given up after {took:?} (smtp_timeout 1 s)"
            );
        }
    }
    assert!(smtp.taken().is_empty());

    // Back to normal: the mail goes, once, and stays sent.
    smtp.set(ACCEPT);
    app.clock.advance(3_600);
    assert_eq!(app.drive_outbox().await, 1);
    for _ in 0..3 {
        app.clock.advance(3_600);
        assert_eq!(app.drive_outbox().await, 0);
    }
    let taken = smtp.taken();
    assert_eq!(taken.len(), 1, "{taken:?}");
    assert!(taken[0].ends_with("@latchkey>"), "{taken:?}");
    assert_eq!(mails(&app, "sent").await, 1);
    assert_eq!(app.unsent_mails().await, 0);
}

#[tokio::test]
async fn a_silent_smtp_server_does_not_hold_a_sigterm_and_its_mail_goes_after_the_restart() {
    let smtp = FakeSmtp::start(STALL).await;
    let bin = Binary::fresh();
    bin.create_user("ada@example.com", PASSWORD).await;
    let url = smtp.url();
    let env = [("LATCHKEY_SMTP_URL", url.as_str())];
    let server = bin.serve(&env, None, None).await;
    let session = server.login("ada@example.com").await;
    server
        .call(
            Method::POST,
            "/v1/user/tokens",
            Some(&session),
            Some(json!({"name": "laptop", "password": PASSWORD})),
        )
        .await
        .expect(201);
    // The worker is now waiting on a server that says nothing (its timeout is 15 s).
    tokio::time::sleep(Duration::from_millis(700)).await;
    let asked = Instant::now();
    let status = server.terminate().await;
    let took = asked.elapsed();
    assert!(status.success(), "{status:?}");
    assert!(
        took < Duration::from_secs(11),
        "a SIGTERM took {took:?} with the SMTP server silent: the bound is 10 s"
    );

    // The mail was handed back, not lost: it goes once the server talks again.
    smtp.set(ACCEPT);
    let server = bin.serve(&env, None, None).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while smtp.taken().is_empty() {
        assert!(
            Instant::now() < deadline,
            "the mail did not go after the restart"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(smtp.taken().len(), 1, "{:?}", smtp.taken());
    let status = server.terminate().await;
    assert!(status.success());
}
