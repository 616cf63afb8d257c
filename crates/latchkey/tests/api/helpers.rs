//! `TestApp`: the real server, a fresh database, a controllable clock, and HTTP helpers.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use latchkey::app::{Running, start};
use latchkey::config::Config;
use latchkey_core::policy::TokenTypeConfig;
use latchkey_core::{Clock, Role, Timestamp};
use latchkey_service::{Caller, Service};
use reqwest::{Method, StatusCode};
use secrecy::SecretString;
use serde_json::{Value, json};
use tempfile::TempDir;

pub const PASSWORD: &str = "correct horse battery staple";

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
        self.0.lock().map(|t| *t).unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
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

/// Builder: token type overrides before start.
#[derive(Default)]
pub struct TestAppBuilder {
    types: BTreeMap<String, TokenTypeConfig>,
}

impl TestAppBuilder {
    pub fn token_type(mut self, name: &str, config: TokenTypeConfig) -> Self {
        self.types.insert(name.to_owned(), config);
        self
    }

    pub async fn start(self) -> TestApp {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let config = Config {
            listen: "127.0.0.1:0".parse().unwrap_or_else(|e| panic!("addr: {e}")),
            data_dir: dir.path().join("data"),
            token_types: self.types,
            password_hash_concurrency: Some(2),
            ..Config::default()
        };
        let start_at = time::macros::datetime!(2026-06-01 12:00:00 UTC);
        let clock = Arc::new(TestClock(Mutex::new(start_at)));
        let running = start(&config, clock.clone()).await.unwrap_or_else(|e| panic!("start: {e:#}"));
        let url = format!("http://{}", running.addr);
        TestApp { url, clock, client: reqwest::Client::new(), dir, config, running: Some(running) }
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
        self.headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
    }
    #[track_caller]
    pub fn expect(self, status: u16) -> Self {
        assert_eq!(self.status.as_u16(), status, "unexpected status; body: {}", self.text);
        self
    }
    pub fn str(&self, field: &str) -> String {
        self.body[field].as_str().unwrap_or_else(|| panic!("no string field {field} in {}", self.text)).to_owned()
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

    pub fn data_dir(&self) -> PathBuf {
        self.config.data_dir.clone()
    }

    pub async fn stop(&mut self) {
        if let Some(r) = self.running.take() {
            r.shutdown().await.unwrap_or_else(|e| panic!("shutdown: {e:#}"));
        }
    }

    /// Any request; `auth` is a bearer credential.
    pub async fn call(&self, method: Method, path: &str, auth: Option<&str>, body: Option<Value>) -> Resp {
        let mut req = self.client.request(method, format!("{}{}", self.url, path));
        if let Some(auth) = auth {
            req = req.bearer_auth(auth);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        let res = req.send().await.unwrap_or_else(|e| panic!("request to {path}: {e}"));
        Self::read(res).await
    }

    pub async fn read(res: reqwest::Response) -> Resp {
        let status = res.status();
        let headers = res.headers().clone();
        let text = res.text().await.unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Resp { status, headers, body, text }
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
            .create_user(&Caller::operator(), email, &SecretString::from(PASSWORD), false)
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
            .call(Method::POST, "/v1/sessions", None, Some(json!({ "email": email, "password": PASSWORD })))
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

    /// Creates a personal token: (token id, secret).
    pub async fn personal_token(&self, session: &str, name: &str) -> (String, String) {
        let res = self
            .post("/v1/user/tokens", session, json!({ "name": name, "password": PASSWORD }))
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
