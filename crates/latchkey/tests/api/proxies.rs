//! `/v1/forward-auth` behind the real proxies: Debian's nginx (`auth_request`), Caddy
//! (`forward_auth`) and HAProxy (its Lua action), each started here as a child process with the
//! configuration of `docs/resource-servers/` (the files `docs/RESOURCE-SERVERS.md` shows, filled
//! in), in front of a small upstream that records the headers of every request it gets. One test
//! body, run once per proxy. `scripts/test` installs the proxies; a missing one fails here, never
//! skips.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use reqwest::Method;
use serde_json::{Value, json};
use tempfile::TempDir;

use crate::helpers::{PASSWORD, TestApp};

const NGINX_SITE: &str = include_str!("../../../../docs/resource-servers/nginx.conf");
const CADDY_SITE: &str = include_str!("../../../../docs/resource-servers/Caddyfile");
const HAPROXY_CFG: &str = include_str!("../../../../docs/resource-servers/haproxy.cfg");
const HAPROXY_LUA: &str = include_str!("../../../../docs/resource-servers/latchkey.lua");
const GUIDE: &str = include_str!("../../../../docs/RESOURCE-SERVERS.md");

/// The headers forward auth adds; the proxies must replace whatever a client sends under them.
const IDENTITY: [&str; 6] = [
    "latchkey-principal",
    "latchkey-principal-kind",
    "latchkey-token-id",
    "latchkey-accounts",
    "latchkey-scopes",
    "latchkey-token-expires",
];

/// The test client's own address: another loopback address than the proxy's (127.0.0.1, the
/// one trusted proxy), so that Latchkey can only learn it from `X-Forwarded-For`.
const CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

#[derive(Clone, Copy, Debug)]
enum Kind {
    Nginx,
    Caddy,
    Haproxy,
}

impl Kind {
    fn binary(self) -> &'static str {
        match self {
            Self::Nginx => "/usr/sbin/nginx",
            Self::Caddy => "/usr/bin/caddy",
            Self::Haproxy => "/usr/sbin/haproxy",
        }
    }
    /// Caddy and HAProxy drop every `Latchkey-*` header a client sends; stock nginx can only
    /// replace the six it is told about (documented).
    fn strips_every_latchkey_header(self) -> bool {
        !matches!(self, Self::Nginx)
    }
    /// What the client gets when Latchkey does not answer (documented).
    fn status_when_latchkey_is_down(self) -> u16 {
        match self {
            Self::Nginx => 500,
            Self::Caddy => 502,
            Self::Haproxy => 503,
        }
    }
    fn package(self) -> &'static str {
        match self {
            Self::Nginx => "nginx",
            Self::Caddy => "caddy",
            Self::Haproxy => "haproxy",
        }
    }
}

/// What the upstream saw: every request's headers, in order.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<HeaderMap>>>);

impl Seen {
    fn count(&self) -> usize {
        self.0.lock().map(|s| s.len()).unwrap_or(0)
    }
    fn last(&self) -> HeaderMap {
        self.0
            .lock()
            .ok()
            .and_then(|s| s.last().cloned())
            .unwrap_or_else(|| panic!("the upstream saw no request"))
    }
}

/// The API behind the proxy: answers every request `200` with the headers it got, as JSON.
async fn upstream() -> (SocketAddr, Seen) {
    let seen = Seen::default();
    let record = seen.clone();
    let app = axum::Router::new().fallback(move |headers: HeaderMap| {
        let record = record.clone();
        async move {
            let echo: Vec<Value> = headers
                .iter()
                .map(|(k, v)| json!([k.as_str(), String::from_utf8_lossy(v.as_bytes())]))
                .collect();
            if let Ok(mut seen) = record.0.lock() {
                seen.push(headers);
            }
            axum::Json(json!({ "upstream": true, "headers": echo }))
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("bind the upstream: {e}"));
    let addr = listener
        .local_addr()
        .unwrap_or_else(|e| panic!("upstream address: {e}"));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (addr, seen)
}

/// A port nobody listens on at the moment.
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap_or_else(|e| panic!("bind a free port: {e}"));
    listener
        .local_addr()
        .unwrap_or_else(|e| panic!("free port: {e}"))
        .port()
}

/// Fills a template's `{{NAME}}` placeholders; every one must be filled.
fn fill(template: &str, values: &[(&str, &str)]) -> String {
    let mut text = template.to_owned();
    for (name, value) in values {
        text = text.replace(&format!("{{{{{name}}}}}"), value);
    }
    assert!(!text.contains("{{"), "a placeholder is left in:\n{text}");
    text
}

/// A proxy running as a child process, killed when dropped.
struct Proxy {
    kind: Kind,
    url: String,
    child: Child,
    dir: TempDir,
}

impl Proxy {
    async fn start(kind: Kind, latchkey: &str, upstream: SocketAddr) -> Self {
        let binary = kind.binary();
        assert!(
            Path::new(binary).exists(),
            "{binary} is missing: apt-get install -y {} (scripts/test installs it)",
            kind.package()
        );
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let prefix = dir.path().to_string_lossy().into_owned();
        let listen = format!("127.0.0.1:{}", free_port());
        let upstream = upstream.to_string();
        let lua = dir
            .path()
            .join("latchkey.lua")
            .to_string_lossy()
            .into_owned();
        let values = [
            ("LUA", lua.as_str()),
            ("LISTEN", listen.as_str()),
            ("LATCHKEY", latchkey),
            ("UPSTREAM", upstream.as_str()),
        ];
        let log = std::fs::File::create(dir.path().join("stderr"))
            .unwrap_or_else(|e| panic!("log file: {e}"));
        let mut command = Command::new(binary);
        match kind {
            Kind::Nginx => {
                // The documented file is for the http block; this is the rest of an nginx.conf
                // for an unprivileged nginx in the foreground with every path in the tempdir.
                write(&dir.path().join("site.conf"), &fill(NGINX_SITE, &values));
                let main = format!(
                    "daemon off;\nmaster_process off;\nworker_processes 1;\n\
                     pid {prefix}/nginx.pid;\nerror_log {prefix}/error.log info;\n\
                     events {{}}\nhttp {{\n    access_log off;\n\
                     \x20   client_body_temp_path {prefix}/client_body;\n\
                     \x20   proxy_temp_path {prefix}/proxy;\n\
                     \x20   fastcgi_temp_path {prefix}/fastcgi;\n\
                     \x20   uwsgi_temp_path {prefix}/uwsgi;\n\
                     \x20   scgi_temp_path {prefix}/scgi;\n\
                     \x20   include {prefix}/site.conf;\n}}\n"
                );
                write(&dir.path().join("nginx.conf"), &main);
                command
                    .arg("-p")
                    .arg(&prefix)
                    .arg("-c")
                    .arg(dir.path().join("nginx.conf"))
                    .arg("-e")
                    .arg(dir.path().join("error.log"));
            }
            Kind::Caddy => {
                // The documented file is a site block; the global options keep this Caddy off
                // its admin port, away from certificates and with its storage in the tempdir.
                write(&dir.path().join("site.caddy"), &fill(CADDY_SITE, &values));
                let main = format!(
                    "{{\n\tadmin off\n\tauto_https off\n\tstorage file_system {prefix}/storage\n}}\n\n\
                     import {prefix}/site.caddy\n"
                );
                write(&dir.path().join("Caddyfile"), &main);
                command
                    .arg("run")
                    .arg("--config")
                    .arg(dir.path().join("Caddyfile"))
                    .arg("--adapter")
                    .arg("caddyfile")
                    .env("HOME", dir.path())
                    .env("XDG_DATA_HOME", dir.path().join("data"))
                    .env("XDG_CONFIG_HOME", dir.path().join("config"));
            }
            Kind::Haproxy => {
                // The documented configuration whole, in the foreground (-db).
                write(&dir.path().join("latchkey.lua"), HAPROXY_LUA);
                write(&dir.path().join("haproxy.cfg"), &fill(HAPROXY_CFG, &values));
                command
                    .arg("-db")
                    .arg("-f")
                    .arg(dir.path().join("haproxy.cfg"));
            }
        }
        let err = log.try_clone().unwrap_or_else(|e| panic!("log file: {e}"));
        let child = command
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("start {binary}: {e}"));
        let mut proxy = Self {
            kind,
            url: format!("http://{listen}"),
            child,
            dir,
        };
        proxy.wait_until_it_answers().await;
        proxy
    }

    /// Polls until the proxy answers HTTP at all (a 401: no token), for at most 10 s.
    async fn wait_until_it_answers(&mut self) {
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("{:?} exited ({status}):\n{}", self.kind, self.logs());
            }
            if client.get(&self.url).send().await.is_ok() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{:?} did not answer within 10 s:\n{}",
                self.kind,
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn logs(&self) -> String {
        ["stderr", "error.log"]
            .iter()
            .map(|name| std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// One request through the proxy, from the client's own address.
struct Client {
    http: reqwest::Client,
    base: String,
}

struct Answer {
    status: u16,
    challenge: String,
    body: String,
}

impl Client {
    async fn send(&self, path: &str, token: Option<&str>, headers: &[(&str, &str)]) -> Answer {
        let mut req = self
            .http
            .request(Method::GET, format!("{}{path}", self.base));
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        let res = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path} through the proxy: {e}"));
        let status = res.status().as_u16();
        let challenge = res
            .headers()
            .get_all("www-authenticate")
            .iter()
            .map(|v| v.to_str().unwrap_or("").to_owned())
            .collect::<Vec<_>>()
            .join(" | ");
        let body = res.text().await.unwrap_or_default();
        Answer {
            status,
            challenge,
            body,
        }
    }
}

/// A signed-in user with a personal token (optionally fenced to `allowed_ips`):
/// (user id, session, token id, secret).
async fn user_token(
    app: &TestApp,
    email: &str,
    allowed_ips: Option<&str>,
) -> (String, String, String, String) {
    let (user, session) = app.signed_in(email).await;
    let mut body = json!({ "name": "through a proxy", "password": PASSWORD });
    if let Some(net) = allowed_ips {
        body["allowed_ips"] = json!([net]);
    }
    let res = app
        .post("/v1/user/tokens", &session, body)
        .await
        .expect(201);
    (user, session, res.str("id"), res.str("secret"))
}

fn values(headers: &HeaderMap, name: &str) -> Vec<String> {
    headers
        .get_all(name)
        .iter()
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .collect()
}

/// The whole story, for one proxy.
async fn forward_auth_behind(kind: Kind) {
    let mut app = TestApp::builder()
        .configure(|c| c.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()])
        .start()
        .await;
    let (upstream, seen) = upstream().await;
    let latchkey = app.url.trim_start_matches("http://").to_owned();
    let started = Instant::now();
    let proxy = Proxy::start(kind, &latchkey, upstream).await;
    eprintln!("{kind:?} answered after {:?}", started.elapsed());
    let client = Client {
        http: reqwest::Client::builder()
            .local_address(CLIENT)
            .build()
            .unwrap_or_else(|e| panic!("client: {e}")),
        base: proxy.url.clone(),
    };
    let what = |case: &str| format!("{kind:?}, {case}");

    // A valid personal token: the upstream sees who is calling.
    let (user, session, token_id, secret) = user_token(&app, "valid@example.com", None).await;
    let org = app.org("Acme").await;
    app.add_member(&org, "valid@example.com", latchkey_core::Role::Member)
        .await;
    let accounts = format!("{org}:member");
    let before = seen.count();
    let res = client.send("/orders/42", Some(&secret), &[]).await;
    assert_eq!(res.status, 200, "{}: {}", what("valid"), res.body);
    assert!(res.body.contains("\"upstream\":true"), "{}", res.body);
    assert_eq!(seen.count(), before + 1);
    let got = seen.last();
    assert_eq!(values(&got, "latchkey-principal"), [user.as_str()]);
    assert_eq!(values(&got, "latchkey-principal-kind"), ["user"]);
    assert_eq!(values(&got, "latchkey-token-id"), [token_id.as_str()]);
    assert_eq!(values(&got, "latchkey-accounts"), [accounts.as_str()]);
    assert_eq!(values(&got, "latchkey-scopes"), ["api"]);
    // The client's query string is the API's, not requirements for Latchkey.
    let res = client
        .send("/orders/42?page=2&scope=billing", Some(&secret), &[])
        .await;
    assert_eq!(res.status, 200, "{}: {}", what("a query"), res.body);
    let res = client
        .send("/billing/invoices?page=2", Some(&secret), &[])
        .await;
    assert_eq!(res.status, 403, "{}: {}", what("a query"), res.body);

    // No token: the challenge reaches the client, the upstream is never asked.
    let before = seen.count();
    let res = client.send("/orders/42", None, &[]).await;
    assert_eq!(res.status, 401, "{}: {}", what("no token"), res.body);
    assert!(res.challenge.starts_with("Bearer"), "{}", res.challenge);
    // A malformed token.
    let res = client.send("/orders/42", Some("lkp_nope"), &[]).await;
    assert_eq!(res.status, 401, "{}: {}", what("malformed"), res.body);
    assert!(
        res.challenge.contains("error=\"invalid_token\""),
        "{}",
        res.challenge
    );
    assert_eq!(
        seen.count(),
        before,
        "{}: the upstream was called",
        what("401")
    );

    // A requirement of the route that the token does not meet.
    let res = client.send("/billing/invoices", Some(&secret), &[]).await;
    assert_eq!(res.status, 403, "{}: {}", what("scope=billing"), res.body);
    assert!(
        res.challenge.contains("error=\"insufficient_scope\"")
            && res.challenge.contains("scope=\"billing\""),
        "{}: {}",
        what("scope=billing"),
        res.challenge
    );
    assert_eq!(
        seen.count(),
        before,
        "{}: the upstream was called",
        what("403")
    );

    // Forged identity headers: refused without a token, replaced with one.
    let forged: Vec<(&str, &str)> = vec![
        ("Latchkey-Principal", "usr_forged"),
        ("Latchkey-Principal-Kind", "organisation"),
        ("Latchkey-Token-Id", "tok_forged"),
        ("Latchkey-Accounts", "org_forged:admin"),
        ("Latchkey-Scopes", "api billing admin"),
        ("Latchkey-Token-Expires", "2099-01-01T00:00:00Z"),
        ("Latchkey-Role", "admin"),
    ];
    let res = client.send("/orders/42", None, &forged).await;
    assert_eq!(
        res.status,
        401,
        "{}: {}",
        what("forged, no token"),
        res.body
    );
    let res = client.send("/billing/x", None, &forged).await;
    assert_eq!(
        res.status,
        401,
        "{}: {}",
        what("forged, no token"),
        res.body
    );
    assert_eq!(
        seen.count(),
        before,
        "{}: the upstream was called",
        what("forged")
    );
    let res = client.send("/orders/42", Some(&secret), &forged).await;
    assert_eq!(res.status, 200, "{}: {}", what("forged, token"), res.body);
    let got = seen.last();
    assert_eq!(values(&got, "latchkey-principal"), [user.as_str()]);
    assert_eq!(values(&got, "latchkey-principal-kind"), ["user"]);
    assert_eq!(values(&got, "latchkey-token-id"), [token_id.as_str()]);
    assert_eq!(values(&got, "latchkey-scopes"), ["api"]);
    for name in IDENTITY {
        for value in values(&got, name) {
            assert!(
                !value.contains("forged") && !value.contains("2099") && !value.contains("billing"),
                "{}: the upstream got {name}: {value}",
                what("forged, token")
            );
        }
    }
    assert_eq!(values(&got, "latchkey-accounts"), [accounts.as_str()]);
    if kind.strips_every_latchkey_header() {
        assert!(
            values(&got, "latchkey-role").is_empty(),
            "{}: a forged Latchkey-Role reached the upstream",
            what("forged, token")
        );
    }
    // Latchkey sent no expiry (180 days left): the forged one is gone, not passed on.
    assert!(
        values(&got, "latchkey-token-expires")
            .iter()
            .all(String::is_empty),
        "{}: {:?}",
        what("forged, token"),
        values(&got, "latchkey-token-expires")
    );

    // Revoked through the API: refused on the very next request.
    app.post(
        &format!("/v1/user/tokens/{token_id}/revoke"),
        &session,
        json!({ "password": PASSWORD }),
    )
    .await
    .expect(200);
    let before = seen.count();
    let res = client.send("/orders/42", Some(&secret), &[]).await;
    assert_eq!(res.status, 401, "{}: {}", what("revoked"), res.body);
    assert!(
        res.challenge.contains("revoked"),
        "{}: {}",
        what("revoked"),
        res.challenge
    );
    assert_eq!(
        seen.count(),
        before,
        "{}: the upstream was called",
        what("revoked")
    );

    // The client's address reaches Latchkey through X-Forwarded-For: the client's own address
    // is allowed, the proxy's is not the client's, and an address the client claims is not
    // believed.
    let (_, _, _, mine) = user_token(&app, "mine@example.com", Some("127.0.0.2/32")).await;
    let res = client.send("/orders/1", Some(&mine), &[]).await;
    assert_eq!(
        res.status,
        200,
        "{}: {}",
        what("allowlist 127.0.0.2"),
        res.body
    );
    let (_, _, _, proxys) = user_token(&app, "proxy@example.com", Some("127.0.0.1/32")).await;
    let res = client.send("/orders/1", Some(&proxys), &[]).await;
    assert_eq!(
        res.status,
        401,
        "{}: {}",
        what("allowlist 127.0.0.1"),
        res.body
    );
    assert!(
        res.challenge.contains("ip_not_allowed"),
        "{}",
        res.challenge
    );
    let (_, _, _, elsewhere) =
        user_token(&app, "elsewhere@example.com", Some("198.51.100.0/24")).await;
    for claimed in [&[][..], &[("X-Forwarded-For", "198.51.100.7")][..]] {
        let res = client.send("/orders/1", Some(&elsewhere), claimed).await;
        assert_eq!(
            res.status,
            401,
            "{}: {}",
            what("allowlist 198.51.100.0/24"),
            res.body
        );
        assert!(
            res.challenge.contains("ip_not_allowed"),
            "{}",
            res.challenge
        );
    }

    // Close to its expiry, the token's expiry reaches the upstream too.
    app.clock.advance(160 * 86_400);
    let res = client.send("/orders/1", Some(&mine), &[]).await;
    assert_eq!(res.status, 200, "{}: {}", what("expiring"), res.body);
    let expires = values(&seen.last(), "latchkey-token-expires");
    assert!(
        expires.len() == 1 && expires[0].starts_with("2026-") && expires[0].ends_with('Z'),
        "{}: {expires:?}",
        what("expiring")
    );

    // Latchkey down: the request fails, it is never let through.
    app.stop().await;
    let before = seen.count();
    let res = client.send("/orders/1", Some(&mine), &[]).await;
    assert_eq!(
        res.status,
        kind.status_when_latchkey_is_down(),
        "{}: {}",
        what("Latchkey down"),
        res.body
    );
    assert_eq!(
        seen.count(),
        before,
        "{}: the upstream was called",
        what("down")
    );
    drop(proxy);
}

#[tokio::test]
async fn nginx_auth_request_in_front_of_an_api() {
    forward_auth_behind(Kind::Nginx).await;
}

#[tokio::test]
async fn caddy_forward_auth_in_front_of_an_api() {
    forward_auth_behind(Kind::Caddy).await;
}

#[tokio::test]
async fn haproxy_with_its_lua_action_in_front_of_an_api() {
    forward_auth_behind(Kind::Haproxy).await;
}

/// The guide shows the files the tests run, character for character.
#[test]
fn the_guide_shows_the_tested_configurations_verbatim() {
    for (name, text) in [
        ("nginx.conf", NGINX_SITE),
        ("Caddyfile", CADDY_SITE),
        ("haproxy.cfg", HAPROXY_CFG),
        ("latchkey.lua", HAPROXY_LUA),
    ] {
        assert!(
            GUIDE.contains(text),
            "docs/RESOURCE-SERVERS.md does not contain docs/resource-servers/{name} as it is: \
             copy the file into its code block again"
        );
    }
}
