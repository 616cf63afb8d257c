//! A real SMTP server for the notification tests: Debian's `python3-aiosmtpd` writing every
//! message it accepts to a Maildir, which the tests read. Missing aiosmtpd fails the test with
//! instructions; it never skips.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine as _;
use tempfile::TempDir;

use crate::helpers::TestApp;

const PYTHON: &str = "/usr/bin/python3";
/// The longest a test waits for the background sender.
pub const MAIL_DEADLINE: Duration = Duration::from_secs(10);

/// An SMTP server on 127.0.0.1; killed when dropped.
pub struct SmtpSink {
    pub port: u16,
    pub dir: PathBuf,
    child: Option<Child>,
    _tmp: Option<TempDir>,
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("bind: {e}"));
    listener
        .local_addr()
        .unwrap_or_else(|e| panic!("local_addr: {e}"))
        .port()
}

fn require_aiosmtpd() {
    let ok = Command::new(PYTHON)
        .args(["-c", "import aiosmtpd"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "the notification tests need a real SMTP server: {PYTHON} cannot import aiosmtpd. \
         Install it with `apt-get install -y python3-aiosmtpd`."
    );
}

impl SmtpSink {
    /// A new server on a free port with a fresh Maildir.
    pub async fn start() -> Self {
        let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let dir = tmp.path().join("maildir");
        let mut sink = Self::start_at(free_port(), &dir).await;
        sink._tmp = Some(tmp);
        sink
    }

    /// A server on `port` writing to `dir` (a restart after an outage uses the same ones).
    pub async fn start_at(port: u16, dir: &Path) -> Self {
        require_aiosmtpd();
        let child = Command::new(PYTHON)
            .args(["-m", "aiosmtpd", "-n", "-l"])
            .arg(format!("127.0.0.1:{port}"))
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start aiosmtpd: {e}"));
        let mut sink = Self {
            port,
            dir: dir.to_owned(),
            child: Some(child),
            _tmp: None,
        };
        sink.wait_until_listening().await;
        sink
    }

    async fn wait_until_listening(&mut self) {
        let deadline = tokio::time::Instant::now() + MAIL_DEADLINE;
        loop {
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_ok()
            {
                return;
            }
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!("aiosmtpd exited at start ({status}) on port {}", self.port);
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "aiosmtpd did not listen on port {} within {MAIL_DEADLINE:?}",
                self.port
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// Kills the server (an SMTP outage); the Maildir stays.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Every message received so far, oldest file first.
    pub fn mails(&self) -> Vec<Mail> {
        read_mails(&self.dir.join("new"))
    }

    /// For an app without workers: sends what the outbox has due, then every message received,
    /// which must be exactly `n` (no waiting, and one too many fails too).
    pub async fn delivered(&self, app: &TestApp, n: usize) -> Vec<Mail> {
        app.drive_outbox().await;
        let mails = self.mails();
        assert_eq!(
            mails.len(),
            n,
            "mails received: {:#?}",
            mails.iter().map(|m| &m.subject).collect::<Vec<_>>()
        );
        mails
    }

    /// Waits (≤ 10 s) until at least `n` messages arrived; returns them all.
    pub async fn wait_for(&self, n: usize) -> Vec<Mail> {
        let deadline = tokio::time::Instant::now() + MAIL_DEADLINE;
        loop {
            let mails = self.mails();
            if mails.len() >= n {
                return mails;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "expected {n} mails within {MAIL_DEADLINE:?}, got {}: {:#?}",
                mails.len(),
                mails.iter().map(|m| &m.subject).collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One received message, headers unfolded and body decoded.
#[derive(Debug, Clone)]
pub struct Mail {
    pub headers: BTreeMap<String, String>,
    pub subject: String,
    pub message_id: String,
    /// `X-RcptTo` (set by aiosmtpd from the SMTP envelope), else `To`.
    pub to: String,
    pub body: String,
    pub raw: String,
}

impl Mail {
    pub fn parse(raw: &str) -> Self {
        let raw_norm = raw.replace("\r\n", "\n");
        let (head, body) = raw_norm.split_once("\n\n").unwrap_or((&raw_norm, ""));
        let mut headers = BTreeMap::new();
        let mut current: Option<(String, String)> = None;
        for line in head.lines() {
            if line.starts_with([' ', '\t']) {
                if let Some((_, value)) = current.as_mut() {
                    value.push_str(line);
                }
                continue;
            }
            if let Some((k, v)) = current.take() {
                headers.insert(k, v);
            }
            if let Some((k, v)) = line.split_once(':') {
                current = Some((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
            }
        }
        if let Some((k, v)) = current.take() {
            headers.insert(k, v);
        }
        let get = |k: &str| headers.get(k).cloned().unwrap_or_default();
        let body = match get("content-transfer-encoding")
            .to_ascii_lowercase()
            .as_str()
        {
            "quoted-printable" => decode_quoted_printable(body),
            "base64" => {
                let compact: String = body.chars().filter(|c| !c.is_whitespace()).collect();
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(compact)
                    .unwrap_or_else(|e| panic!("base64 body: {e}"));
                String::from_utf8_lossy(&bytes).into_owned()
            }
            _ => body.to_owned(),
        };
        let to = headers
            .get("x-rcptto")
            .cloned()
            .unwrap_or_else(|| get("to"));
        Self {
            subject: get("subject"),
            message_id: get("message-id"),
            to,
            body,
            raw: raw.to_owned(),
            headers,
        }
    }

    /// The first link in the body that starts with `prefix`.
    pub fn link(&self, prefix: &str) -> Option<String> {
        let start = self.body.find(prefix)?;
        let rest = &self.body[start..];
        let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        Some(rest[..end].to_owned())
    }

    /// Panics if any of `secrets` appears in the message, raw or decoded.
    #[track_caller]
    pub fn assert_free_of(&self, secrets: &[&str]) {
        for secret in secrets {
            assert!(
                !self.raw.contains(secret) && !self.body.contains(secret),
                "a secret leaked into the mail {:?}",
                self.subject
            );
        }
    }
}

fn decode_quoted_printable(text: &str) -> String {
    let mut bytes = Vec::with_capacity(text.len());
    let input = text.as_bytes();
    let mut i = 0;
    while i < input.len() {
        match input[i] {
            b'=' if input.get(i + 1) == Some(&b'\n') => i += 2,
            b'=' if i + 2 < input.len() => {
                let hex = std::str::from_utf8(&input[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        bytes.push(b);
                        i += 3;
                    }
                    Err(_) => {
                        bytes.push(b'=');
                        i += 1;
                    }
                }
            }
            b => {
                bytes.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

pub fn read_mails(dir: &Path) -> Vec<Mail> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<(std::time::SystemTime, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .map(|e| {
            let modified = e
                .metadata()
                .and_then(|m| m.modified())
                .unwrap_or(std::time::UNIX_EPOCH);
            (modified, e.path())
        })
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|(_, path)| {
            let raw = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
            Mail::parse(&raw)
        })
        .collect()
}

/// Mails to `address`.
pub fn to<'a>(mails: &'a [Mail], address: &str) -> Vec<&'a Mail> {
    mails.iter().filter(|m| m.to.contains(address)).collect()
}

/// The one mail whose subject contains `needle`, to `address`.
#[track_caller]
pub fn one<'a>(mails: &'a [Mail], address: &str, needle: &str) -> &'a Mail {
    let found: Vec<&Mail> = to(mails, address)
        .into_iter()
        .filter(|m| m.subject.contains(needle))
        .collect();
    assert_eq!(
        found.len(),
        1,
        "expected one mail to {address} about {needle:?}; all: {:#?}",
        mails
            .iter()
            .map(|m| (&m.to, &m.subject))
            .collect::<Vec<_>>()
    );
    found[0]
}

impl TestApp {
    /// Runs the sender once now (as the worker does every second).
    pub async fn deliver_mails(&self) -> usize {
        self.service()
            .deliver_mails()
            .await
            .unwrap_or_else(|e| panic!("deliver mails: {e}"))
    }

    /// With the workers off: sends every mail that is due, and returns once the SMTP server
    /// has taken them all (its `250` to each), so the test can look at once.
    pub async fn drive_outbox(&self) -> usize {
        let mut sent = 0;
        loop {
            let n = self.deliver_mails().await;
            if n == 0 {
                return sent;
            }
            sent += n;
        }
    }

    /// Waits (≤ 10 s) until every mail in the outbox is marked sent.
    pub async fn wait_outbox_empty(&self) {
        let deadline = tokio::time::Instant::now() + MAIL_DEADLINE;
        loop {
            let unsent = self.unsent_mails().await;
            if unsent == 0 {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{unsent} mails still unsent after {MAIL_DEADLINE:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn unsent_mails(&self) -> u64 {
        self.service()
            .unsent_mails()
            .await
            .unwrap_or_else(|e| panic!("unsent mails: {e}"))
    }
}
