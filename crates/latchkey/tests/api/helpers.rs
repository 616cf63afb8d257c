//! `TestApp`: the real server, a fresh database, a controllable clock, and HTTP helpers.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use latchkey::app::Running;
use latchkey::config::Config;
use latchkey_core::policy::TokenTypeConfig;
use latchkey_core::{Clock, Role, Timestamp};
use latchkey_service::{Caller, Service};
use reqwest::{Method, StatusCode};
use secrecy::SecretString;
use serde_json::{Value, json};
use tempfile::TempDir;

pub const PASSWORD: &str = "correct horse battery staple";

/// Where the suite runs: `TEST_BACKEND=postgres` (set by `scripts/test` for its second run) puts
/// each test's server on a fresh database of the PostgreSQL server `TEST_POSTGRES_URL` names;
/// otherwise each has a fresh SQLite file in its data directory.
pub fn on_postgres() -> bool {
    #[expect(
        clippy::disallowed_methods,
        reason = "the test harness learns which backend scripts/test asked for"
    )]
    let backend = std::env::var("TEST_BACKEND").unwrap_or_default();
    match backend.as_str() {
        "" | "sqlite" => false,
        "postgres" => true,
        other => panic!("TEST_BACKEND is sqlite or postgres, not {other:?}"),
    }
}

/// A fresh PostgreSQL database's URL when the suite runs on PostgreSQL (`None`: SQLite).
pub async fn fresh_database() -> Option<String> {
    if !on_postgres() {
        return None;
    }
    Some(fresh_postgres_database().await)
}

/// A fresh database on the PostgreSQL server `TEST_POSTGRES_URL` names, whatever backend the
/// run is on (for what is about PostgreSQL itself: several instances, `db copy`). Fails loudly
/// without one.
pub async fn fresh_postgres_database() -> String {
    #[expect(
        clippy::disallowed_methods,
        reason = "the test harness learns where scripts/test started PostgreSQL"
    )]
    let server = std::env::var("TEST_POSTGRES_URL").unwrap_or_default();
    assert!(
        !server.is_empty(),
        "TEST_BACKEND=postgres needs TEST_POSTGRES_URL (run ./scripts/test, which starts one)"
    );
    let bytes: [u8; 8] = rand_bytes();
    let name = format!(
        "lk_api_{}",
        bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
    );
    let admin = sqlx::PgPool::connect(&server)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to TEST_POSTGRES_URL: {e}"));
    // `lk_api_` and hex digits: nothing to escape.
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&admin)
        .await
        .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
    admin.close().await;
    let (base, _) = server.rsplit_once('/').unwrap_or((server.as_str(), ""));
    format!("{base}/{name}")
}

fn rand_bytes() -> [u8; 8] {
    use std::hash::{BuildHasher, Hasher};
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    // RandomState is seeded per process: with a counter, unique across tests and test runs.
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
    h.finish().to_le_bytes()
}

/// A clock that only moves when the test says so.
pub struct TestClock(Mutex<Timestamp>);

impl TestClock {
    pub fn advance(&self, secs: i64) {
        if let Ok(mut now) = self.0.lock() {
            *now += time::Duration::seconds(secs);
        }
    }
}

impl Clock for TestClock {
    fn now(&self) -> Timestamp {
        self.0
            .lock()
            .map(|t| *t)
            .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
    }
}

pub struct TestApp {
    pub url: String,
    pub clock: Arc<TestClock>,
    pub client: reqwest::Client,
    pub dir: TempDir,
    pub config: Config,
    running: Option<Running>,
}

/// A change to the configuration before start.
type Tweak = Box<dyn FnOnce(&mut Config) + Send>;

/// Builder: token type overrides before start.
#[derive(Default)]
pub struct TestAppBuilder {
    types: BTreeMap<String, TokenTypeConfig>,
    limits: Option<latchkey::config::LimitsConfig>,
    smtp_url: Option<String>,
    tweak: Option<Tweak>,
    without_workers: bool,
}

impl TestAppBuilder {
    pub fn limits(mut self, limits: latchkey::config::LimitsConfig) -> Self {
        self.limits = Some(limits);
        self
    }

    /// Changes any other setting before start.
    pub fn configure(mut self, tweak: impl FnOnce(&mut Config) + Send + 'static) -> Self {
        self.tweak = Some(Box::new(tweak));
        self
    }

    /// Sends notifications to this SMTP server (see `mail_helpers::SmtpSink`).
    pub fn smtp_url(mut self, url: &str) -> Self {
        self.smtp_url = Some(url.to_owned());
        self
    }

    /// No background work (usage flush, change poll, outbox sender, cache warming): the test
    /// drives each with [`TestApp::drive_outbox`] and [`TestApp::flush`] and asserts on what
    /// happened, without polling. (Without the workers, an instance on PostgreSQL does not
    /// listen for the others' changes, so its cache stays off: nothing to poll for.)
    pub fn without_workers(mut self) -> Self {
        self.without_workers = true;
        self
    }

    pub fn token_type(mut self, name: &str, config: TokenTypeConfig) -> Self {
        self.types.insert(name.to_owned(), config);
        self
    }

    pub async fn start(self) -> TestApp {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let config = Config {
            listen: "127.0.0.1:0"
                .parse()
                .unwrap_or_else(|e| panic!("addr: {e}")),
            data_dir: dir.path().join("data"),
            token_types: self.types,
            limits: self.limits.unwrap_or_default(),
            password_hash_concurrency: Some(2),
            smtp_url: self.smtp_url,
            ..Config::default()
        };
        let mut config = config;
        config.database_url = fresh_database().await;
        if let Some(tweak) = self.tweak {
            tweak(&mut config);
        }
        let start_at = time::macros::datetime!(2026-06-01 12:00:00 UTC);
        let clock = Arc::new(TestClock(Mutex::new(start_at)));
        let workers = if self.without_workers {
            latchkey::app::Workers::Off
        } else {
            latchkey::app::Workers::Run
        };
        let running = latchkey::app::start_with(&config, clock.clone(), workers)
            .await
            .unwrap_or_else(|e| panic!("start: {e:#}"));
        let url = format!("http://{}", running.addr);
        // The server's issuer is the address it bound.
        let config = Config {
            public_url: Some(url.clone()),
            ..config
        };
        TestApp {
            url,
            clock,
            client: reqwest::Client::new(),
            dir,
            config,
            running: Some(running),
        }
    }
}

pub struct Resp {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Resp {
    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    }
    #[track_caller]
    pub fn expect(self, status: u16) -> Self {
        assert_eq!(
            self.status.as_u16(),
            status,
            "unexpected status; body: {}",
            self.text
        );
        self
    }
    pub fn str(&self, field: &str) -> String {
        self.body[field]
            .as_str()
            .unwrap_or_else(|| panic!("no string field {field} in {}", self.text))
            .to_owned()
    }
}

impl TestApp {
    pub async fn spawn() -> Self {
        TestAppBuilder::default().start().await
    }

    pub fn builder() -> TestAppBuilder {
        TestAppBuilder::default()
    }

    pub fn service(&self) -> &Arc<Service> {
        match &self.running {
            Some(r) => &r.service,
            None => panic!("the app is stopped"),
        }
    }

    /// With the workers off: writes the usage recorded so far (last use, address), as the
    /// worker does every second.
    pub async fn flush(&self) {
        self.service().flush_usage().await;
    }

    pub fn data_dir(&self) -> PathBuf {
        self.config.data_dir.clone()
    }

    pub async fn stop(&mut self) {
        if let Some(r) = self.running.take() {
            r.shutdown()
                .await
                .unwrap_or_else(|e| panic!("shutdown: {e:#}"));
        }
    }

    /// Any request; `auth` is a bearer credential.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        auth: Option<&str>,
        body: Option<Value>,
    ) -> Resp {
        let mut req = self.client.request(method, format!("{}{}", self.url, path));
        if let Some(auth) = auth {
            req = req.bearer_auth(auth);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        let res = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("request to {path}: {e}"));
        Self::read(res).await
    }

    pub async fn read(res: reqwest::Response) -> Resp {
        let status = res.status();
        let headers = res.headers().clone();
        let text = res.text().await.unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Resp {
            status,
            headers,
            body,
            text,
        }
    }

    pub async fn get(&self, path: &str, auth: &str) -> Resp {
        self.call(Method::GET, path, Some(auth), None).await
    }
    pub async fn post(&self, path: &str, auth: &str, body: Value) -> Resp {
        self.call(Method::POST, path, Some(auth), Some(body)).await
    }

    /// Creates a user directly through the service (as the operator CLI does).
    pub async fn user(&self, email: &str) -> String {
        let user = self
            .service()
            .create_user(
                &Caller::operator(),
                email,
                &SecretString::from(PASSWORD),
                false,
            )
            .await
            .unwrap_or_else(|e| panic!("create user: {e}"));
        user.id.to_string()
    }

    pub async fn org(&self, name: &str) -> String {
        let org = self
            .service()
            .create_org(&Caller::operator(), name, &[])
            .await
            .unwrap_or_else(|e| panic!("create org: {e}"));
        org.id.to_string()
    }

    pub async fn add_member(&self, org: &str, email: &str, role: Role) {
        self.service()
            .set_member(&Caller::operator(), org, email, role)
            .await
            .unwrap_or_else(|e| panic!("add member: {e}"));
    }

    /// Signs in and returns the session token.
    pub async fn login(&self, email: &str) -> String {
        let res = self
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

    /// A user with a session: (user id, session token).
    pub async fn signed_in(&self, email: &str) -> (String, String) {
        let id = self.user(email).await;
        let session = self.login(email).await;
        (id, session)
    }

    /// Revokes a personal token (the password confirms it).
    pub async fn revoke_personal_token(&self, session: &str, id: &str) {
        self.post(
            &format!("/v1/user/tokens/{id}/revoke"),
            session,
            json!({ "password": PASSWORD }),
        )
        .await
        .expect(200);
    }

    /// Creates a personal token: (token id, secret).
    pub async fn personal_token(&self, session: &str, name: &str) -> (String, String) {
        let res = self
            .post(
                "/v1/user/tokens",
                session,
                json!({ "name": name, "password": PASSWORD }),
            )
            .await
            .expect(201);
        (res.str("id"), res.str("secret"))
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(r) = self.running.take() {
            let _ = r.shutdown_handle().send(true);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Additions for the token, /v1/me, error, CLI and log suites.

/// RFC 3339 with whole seconds, as the API writes timestamps.
pub fn rfc3339(t: Timestamp) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|e| panic!("format: {e}"))
}

/// Parses an RFC 3339 timestamp the API wrote.
pub fn parse_time(text: &str) -> Timestamp {
    Timestamp::parse(text, &time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|e| panic!("not RFC 3339: {text:?}: {e}"))
}

/// Asserts the RFC 6750 refusal: `401 invalid_token`, the envelope, and a `WWW-Authenticate`
/// challenge whose `error_description` starts with `reason`. Returns the description.
#[track_caller]
pub fn assert_refused(res: &Resp, reason: &str) -> String {
    assert_eq!(
        res.status.as_u16(),
        401,
        "expected a refusal ({reason}); body: {}",
        res.text
    );
    assert_eq!(res.code(), "invalid_token", "{}", res.text);
    assert!(res.body["error"]["message"].is_string(), "{}", res.text);
    let challenge = res
        .header("www-authenticate")
        .unwrap_or_else(|| panic!("no WWW-Authenticate on a refusal: {}", res.text));
    assert!(challenge.starts_with("Bearer "), "{challenge}");
    assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
    let marker = "error_description=\"";
    let start = challenge
        .find(marker)
        .unwrap_or_else(|| panic!("no error_description in {challenge}"))
        + marker.len();
    let description = challenge[start..].trim_end_matches('"').to_owned();
    assert!(
        description.starts_with(reason),
        "expected the reason {reason:?} in {challenge}"
    );
    description
}

/// Asserts the error envelope `{"error": {"code", "message"}}` with this status and code.
#[track_caller]
pub fn assert_error(res: &Resp, status: u16, code: &str) {
    assert_eq!(res.status.as_u16(), status, "body: {}", res.text);
    assert_eq!(res.code(), code, "body: {}", res.text);
    let message = res.body["error"]["message"]
        .as_str()
        .unwrap_or_else(|| panic!("no message in {}", res.text));
    assert!(!message.is_empty());
}

impl TestApp {
    /// Moves the test clock to the real time, for a server that must agree with processes on
    /// the real clock (another `latchkey serve`, the verifier checking JWT expiry).
    pub fn set_clock_to_real_time(&self) {
        #[expect(
            clippy::disallowed_methods,
            reason = "a server that talks with processes on the real clock must agree with them"
        )]
        let real = time::OffsetDateTime::now_utc();
        self.clock.advance((real - self.now()).whole_seconds());
    }

    /// The clock's current time (whole seconds, as the server stores it).
    pub fn now(&self) -> Timestamp {
        latchkey_core::clock::to_second(self.clock.now())
    }

    /// `GET /v1/me` with a bearer token.
    pub async fn me(&self, token: &str) -> Resp {
        self.get("/v1/me", token).await
    }

    /// Any request with raw header values and a raw body (no JSON encoding, no content type
    /// unless given).
    pub async fn raw(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, Vec<u8>)],
        body: Option<Vec<u8>>,
    ) -> Resp {
        let mut req = self.client.request(method, format!("{}{}", self.url, path));
        for (name, value) in headers {
            let value = reqwest::header::HeaderValue::from_bytes(value)
                .unwrap_or_else(|e| panic!("header {name}: {e}"));
            req = req.header(*name, value);
        }
        if let Some(body) = body {
            req = req.body(body);
        }
        let res = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("request to {path}: {e}"));
        Self::read(res).await
    }

    /// Sends `request` as-is over a fresh TCP connection and returns the status code of the
    /// answer (for bytes no HTTP client would send, such as NUL in a header), or 0 when the
    /// server hangs up without answering.
    pub async fn raw_tcp(&self, request: &[u8]) -> u16 {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let addr = self.url.trim_start_matches("http://");
        let mut stream = tokio::net::TcpStream::connect(addr)
            .await
            .unwrap_or_else(|e| panic!("connect: {e}"));
        stream
            .write_all(request)
            .await
            .unwrap_or_else(|e| panic!("write: {e}"));
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        while !head.windows(2).any(|w| w == b"\r\n") {
            let read =
                tokio::time::timeout(std::time::Duration::from_secs(10), stream.read(&mut buf))
                    .await
                    .unwrap_or_else(|_| {
                        panic!("no answer to {:?}", String::from_utf8_lossy(request))
                    });
            match read {
                Ok(0) | Err(_) => break,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
        if head.is_empty() {
            return 0;
        }
        let line = String::from_utf8_lossy(&head).into_owned();
        line.split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                panic!(
                    "not an HTTP answer: {line:?} to {:?}",
                    String::from_utf8_lossy(request)
                )
            })
    }

    /// Creates a personal token with extra fields in the request: the whole response.
    pub async fn create_token(&self, session: &str, body: Value) -> Resp {
        self.post("/v1/user/tokens", session, body).await
    }

    /// A signed-in user with one personal token: (user id, session, token id, secret).
    pub async fn user_with_token(&self, email: &str) -> (String, String, String, String) {
        let (user, session) = self.signed_in(email).await;
        let (id, secret) = self.personal_token(&session, "laptop").await;
        (user, session, id, secret)
    }

    /// The signed-in user's tokens, by id.
    pub async fn tokens(&self, session: &str) -> Vec<Value> {
        let res = self.get("/v1/user/tokens", session).await.expect(200);
        res.body
            .as_array()
            .cloned()
            .unwrap_or_else(|| panic!("not a list: {}", res.text))
    }

    /// One of the signed-in user's tokens, from the list.
    pub async fn listed(&self, session: &str, id: &str) -> Value {
        self.tokens(session)
            .await
            .into_iter()
            .find(|t| t["id"] == id)
            .unwrap_or_else(|| panic!("token {id} is not listed"))
    }
}

/// The real `latchkey` binary, with a configuration file pointing at its own data directory.
pub struct Binary {
    pub dir: TempDir,
    pub config: PathBuf,
}

/// What a finished command printed.
pub struct Ran {
    pub status: std::process::ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Ran {
    #[track_caller]
    pub fn ok(self) -> Self {
        assert!(
            self.status.success(),
            "command failed ({}): stdout {:?} stderr {:?}",
            self.status,
            self.stdout,
            self.stderr
        );
        assert!(!self.stderr.contains("panicked"), "{}", self.stderr);
        self
    }

    /// A refused command: non-zero, a message on stderr, no panic.
    #[track_caller]
    pub fn fails_with(self, needle: &str) -> Self {
        assert!(
            !self.status.success(),
            "the command should have failed: stdout {:?}",
            self.stdout
        );
        assert_ne!(
            self.status.code(),
            Some(101),
            "exit code 101 is a panic: {}",
            self.stderr
        );
        assert!(!self.stderr.contains("panicked"), "{}", self.stderr);
        assert!(
            self.stderr.contains(needle),
            "expected {needle:?} on stderr, got {:?}",
            self.stderr
        );
        self
    }
}

pub const BINARY: &str = env!("CARGO_BIN_EXE_latchkey");

impl Binary {
    /// A fresh data directory and a configuration file pointing at it (on a fresh PostgreSQL
    /// database when the run is on PostgreSQL).
    pub fn fresh() -> Self {
        // Made on a thread of its own: this is not async.
        let database = std::thread::spawn(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap_or_else(|e| panic!("runtime: {e}"))
                .block_on(fresh_database())
        })
        .join()
        .unwrap_or_else(|_| panic!("creating the test database failed"));
        Self::with_config(database.as_deref(), None)
    }

    /// A fresh data directory on the database at `url` (`sqlite://…` or `postgres://…`), with
    /// the master key of `master_key_file` if given (another instance's: one key per cluster).
    pub fn on_database(url: &str, master_key_file: Option<&std::path::Path>) -> Self {
        Self::with_config(Some(url), master_key_file)
    }

    fn with_config(url: Option<&str>, master_key_file: Option<&std::path::Path>) -> Self {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let config = dir.path().join("latchkey.toml");
        let data_dir = dir.path().join("data");
        let mut text = format!(
            "data_dir = {:?}\npassword_hash_concurrency = 2\n",
            data_dir.display().to_string()
        );
        if let Some(url) = url {
            text.push_str(&format!("database_url = {url:?}\n"));
        }
        if let Some(key) = master_key_file {
            text.push_str(&format!(
                "master_key_file = {:?}\n",
                key.display().to_string()
            ));
        }
        std::fs::write(&config, text).unwrap_or_else(|e| panic!("write config: {e}"));
        Self { dir, config }
    }

    /// Appends `text` to the configuration file.
    pub fn append_config(&self, text: &str) {
        use std::io::Write as _;
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&self.config)
            .unwrap_or_else(|e| panic!("open config: {e}"));
        file.write_all(text.as_bytes())
            .unwrap_or_else(|e| panic!("write config: {e}"));
    }

    /// The data directory's master key file (made by the first `serve` or command).
    pub fn master_key_file(&self) -> std::path::PathBuf {
        self.dir.path().join("data").join("master.key")
    }

    /// A command with `--config` set and no `LATCHKEY_*` surprises from the environment.
    pub fn command(&self) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(BINARY);
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("LATCHKEY_") {
                cmd.env_remove(key);
            }
        }
        cmd.arg("--config").arg(&self.config);
        cmd.kill_on_drop(true);
        cmd
    }

    /// Runs `latchkey --config FILE ARGS…` with `stdin` on standard input.
    pub async fn run(&self, args: &[&str], stdin: Option<&str>) -> Ran {
        use tokio::io::AsyncWriteExt as _;
        let mut cmd = self.command();
        cmd.args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {BINARY}: {e}"));
        if let Some(mut pipe) = child.stdin.take() {
            if let Some(text) = stdin {
                pipe.write_all(text.as_bytes())
                    .await
                    .unwrap_or_else(|e| panic!("stdin: {e}"));
            }
            drop(pipe);
        }
        let out =
            tokio::time::timeout(std::time::Duration::from_secs(60), child.wait_with_output())
                .await
                .unwrap_or_else(|_| panic!("latchkey {args:?} did not finish in 60 s"))
                .unwrap_or_else(|e| panic!("wait: {e}"));
        Ran {
            status: out.status,
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// `org create` and `org add-member … --role admin`: the new organisation's id.
    pub async fn org_with_admin(&self, name: &str, admin: &str) -> String {
        let org = self
            .run(&["org", "create", "--name", name], None)
            .await
            .ok()
            .stdout
            .trim()
            .to_owned();
        self.run(
            &[
                "org",
                "add-member",
                "--org",
                &org,
                "--email",
                admin,
                "--role",
                "admin",
            ],
            None,
        )
        .await
        .ok();
        org
    }

    /// `--json client create --org ORG --name NAME` and `more` (grants, scopes, flags): the
    /// client as the CLI printed it (`client_id`, and `client_secret` unless public).
    pub async fn create_client(&self, org: &str, name: &str, more: &[&str]) -> serde_json::Value {
        let mut args = vec!["--json", "client", "create", "--org", org, "--name", name];
        args.extend_from_slice(more);
        let ran = self.run(&args, None).await.ok();
        serde_json::from_str(&ran.stdout)
            .unwrap_or_else(|e| panic!("client create printed no JSON ({e}): {}", ran.stdout))
    }

    /// `user create` with the password on standard input: the new user's id.
    pub async fn create_user(&self, email: &str, password: &str) -> String {
        let ran = self
            .run(
                &["user", "create", "--email", email, "--password-stdin"],
                Some(&format!("{password}\n")),
            )
            .await
            .ok();
        ran.stdout.trim().to_owned()
    }

    /// Starts `latchkey serve` on a port it picks itself (`--listen 127.0.0.1:0`: no race for
    /// a free port), with extra environment variables, standard output written to `stdout`
    /// (or a file of the data directory's) and standard error to `stderr` (or discarded);
    /// learns the address from the "listening on" line and waits until `/healthz` answers.
    pub async fn serve(
        &self,
        env: &[(&str, &str)],
        stdout: Option<&std::path::Path>,
        stderr: Option<std::fs::File>,
    ) -> Server {
        self.serve_with(&[], env, stdout, stderr).await
    }

    /// [`Binary::serve`] with extra arguments after `serve` (like `--demo`).
    pub async fn serve_with(
        &self,
        extra: &[&str],
        env: &[(&str, &str)],
        stdout: Option<&std::path::Path>,
        stderr: Option<std::fs::File>,
    ) -> Server {
        static STARTS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let own = self.dir.path().join(format!(
            "serve-{}.stdout",
            STARTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let out_path = stdout.unwrap_or(&own).to_path_buf();
        let out = std::fs::File::create(&out_path)
            .unwrap_or_else(|e| panic!("{}: {e}", out_path.display()));
        let mut cmd = self.command();
        cmd.args(["serve", "--listen", "127.0.0.1:0"])
            .args(extra)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::from(out))
            .stderr(stderr.map_or_else(std::process::Stdio::null, std::process::Stdio::from));
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {BINARY} serve: {e}"));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let url = loop {
            let printed = std::fs::read_to_string(&out_path).unwrap_or_default();
            if let Some(url) = printed
                .lines()
                .find_map(|l| l.strip_prefix("listening on "))
            {
                break url.trim().to_owned();
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("latchkey serve exited ({status}) before listening: {printed}");
            }
            assert!(
                std::time::Instant::now() < deadline,
                "latchkey serve printed no \"listening on\" line within 30 s: {printed}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        };
        let server = Server {
            url,
            child,
            client: reqwest::Client::new(),
        };
        loop {
            let health = server
                .client
                .get(format!("{}/healthz", server.url))
                .send()
                .await;
            if health.is_ok_and(|res| res.status().is_success()) {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "latchkey serve did not answer /healthz within 30 s"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        server
    }
}

/// A `latchkey serve` child process; killed if the test ends without stopping it.
pub struct Server {
    pub url: String,
    pub child: tokio::process::Child,
    pub client: reqwest::Client,
}

impl Server {
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        auth: Option<&str>,
        body: Option<Value>,
    ) -> Resp {
        let mut req = self.client.request(method, format!("{}{}", self.url, path));
        if let Some(auth) = auth {
            req = req.bearer_auth(auth);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        let res = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("request to {path}: {e}"));
        TestApp::read(res).await
    }

    /// Signs in with the test password: the session token.
    pub async fn login(&self, email: &str) -> String {
        self.call(
            Method::POST,
            "/v1/sessions",
            None,
            Some(json!({ "email": email, "password": PASSWORD })),
        )
        .await
        .expect(201)
        .str("session_token")
    }

    /// Creates a personal token: (id, secret).
    pub async fn personal_token(&self, session: &str, name: &str) -> (String, String) {
        let res = self
            .call(
                Method::POST,
                "/v1/user/tokens",
                Some(session),
                Some(json!({ "name": name, "password": PASSWORD })),
            )
            .await
            .expect(201);
        (res.str("id"), res.str("secret"))
    }

    /// Revokes a personal token (the password confirms it).
    pub async fn revoke_personal_token(&self, session: &str, id: &str) {
        self.call(
            Method::POST,
            &format!("/v1/user/tokens/{id}/revoke"),
            Some(session),
            Some(json!({ "password": PASSWORD })),
        )
        .await
        .expect(200);
    }

    /// Sends SIGTERM and returns the exit status (within 20 s).
    pub async fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self
            .child
            .id()
            .unwrap_or_else(|| panic!("the server has exited already"));
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .unwrap_or_else(|e| panic!("kill: {e}"));
        assert!(status.success(), "kill -TERM {pid} failed");
        tokio::time::timeout(std::time::Duration::from_secs(20), self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("the server did not stop within 20 s of SIGTERM"))
            .unwrap_or_else(|e| panic!("wait: {e}"))
    }
}

// ---------------------------------------------------------------------------------------------
// Additions for the OAuth2 suites.

impl TestAppBuilder {
    /// The server's issuer is the address it bound, so the plain start serves the OAuth2
    /// suites too; kept as a name for them.
    pub async fn start_on_free_port(self) -> TestApp {
        self.start().await
    }
}

/// The value of a form's field `name` in a page (the first one: a CSRF token comes first).
pub fn hidden(html: &str, name: &str) -> String {
    let needle = format!("name=\"{name}\" value=\"");
    let start = html
        .find(&needle)
        .map(|i| i + needle.len())
        .unwrap_or_else(|| panic!("no {name} in page"));
    html[start..]
        .split('"')
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// The whole audit log, newest first (the operator's view; at most 200 events).
pub async fn all_events(app: &TestApp) -> Vec<latchkey_store::Event> {
    app.service()
        .list_events(&latchkey_store::EventFilter {
            scope: latchkey_store::EventScope::All,
            before_seq: None,
            limit: 200,
            matching: latchkey_store::EventMatch::default(),
        })
        .await
        .unwrap_or_else(|e| panic!("events: {e}"))
}
