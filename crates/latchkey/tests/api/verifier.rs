//! The `latchkey-verifier` crate against the real server (SPEC 8, issue 12 item 4): answers
//! served from its cache, kept exact by `/v1/invalidations` (a revocation obeyed within a
//! second: p50/p99 printed), JWTs refused offline when forged, fail-closed when the stream is
//! cut (through a TCP relay the test controls), and the tower layer in an axum server.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use latchkey_verifier::{Config, Identity, Metrics, Refusal, Verifier};
use reqwest::Method;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

use crate::helpers::TestApp;
use crate::oauth_helpers::{Registered, access_token, cc_client_with, org};

/// A server on the real clock (the verifier checks JWT expiry on it), an organisation with an
/// admin, and a client with the `introspect` permission.
async fn setup() -> (TestApp, crate::oauth_helpers::Org, Registered) {
    let app = crate::oauth_helpers::spawn().await;
    app.set_clock_to_real_time();
    let org = org(&app, "Resource servers", "rs-admin@example.com").await;
    let rs = cc_client_with(&app, &org, "Orders API", true).await;
    (app, org, rs)
}

/// A verifier following the stream, once connected.
async fn started(config: Config) -> Verifier {
    let verifier = Verifier::new(config).unwrap_or_else(|e| panic!("{e}"));
    verifier.start();
    until_up(&verifier).await;
    verifier
}

async fn until_up(verifier: &Verifier) {
    let started = Instant::now();
    while !verifier.metrics().stream_up {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the stream did not connect"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Verifies `token` until it is refused (each try a cache hit until the invalidation lands):
/// how long that took.
async fn until_refused(verifier: &Verifier, token: &str) -> Duration {
    let started = Instant::now();
    loop {
        match verifier.verify(token).await {
            Err(Refusal::Inactive | Refusal::Malformed) => return started.elapsed(),
            other => assert!(
                started.elapsed() < Duration::from_secs(5),
                "still {other:?} after 5 s"
            ),
        }
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((sorted.len() as f64) * p).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_come_from_the_cache_and_a_revocation_is_obeyed_within_a_second() {
    let (app, org, rs) = setup().await;
    let verifier = started(Config::new(&app.url, &rs.id, &rs.secret)).await;

    let (user, session) = app.signed_in("reader@example.com").await;
    app.add_member(&org.id, "reader@example.com", latchkey_core::Role::Member)
        .await;
    let mut delays = Vec::new();
    for i in 0..20 {
        let (id, secret) = app.personal_token(&session, &format!("t{i}")).await;
        let identity: Identity = verifier
            .verify(&secret)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(identity.principal, user);
        assert_eq!(identity.kind, "user");
        assert_eq!(identity.token_id, id);
        assert_eq!(identity.role_in(&org.id), Some("member"));
        // Asked once, then from memory.
        let before: Metrics = verifier.metrics();
        for _ in 0..50 {
            verifier
                .verify(&secret)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
        }
        let after = verifier.metrics();
        assert_eq!(after.latchkey_requests, before.latchkey_requests);
        assert_eq!(after.cache_hits, before.cache_hits + 50);
        app.revoke_personal_token(&session, &id).await;
        delays.push(until_refused(&verifier, &secret).await);
    }

    // A membership change reaches the user's cached answer too.
    let (_, secret) = app.personal_token(&session, "member").await;
    assert!(verifier.verify(&secret).await.is_ok());
    app.service()
        .set_member(
            &latchkey_service::Caller::operator(),
            &org.id,
            "reader@example.com",
            latchkey_core::Role::Admin,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let started = Instant::now();
    loop {
        let identity = verifier
            .verify(&secret)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        if identity.role_in(&org.id) == Some("admin") {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(1), "role not seen");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    delays.push(started.elapsed());

    delays.sort();
    let p99 = percentile(&delays, 0.99);
    println!(
        "verifier: revocation to refusal over {} changes: p50 {:.2} ms, p99 {:.2} ms",
        delays.len(),
        percentile(&delays, 0.5).as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3
    );
    assert!(p99 < Duration::from_secs(1), "p99 {p99:?}");
    assert_eq!(verifier.metrics().stream_drops, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_access_tokens_are_checked_offline_and_their_revocation_obeyed() {
    let (app, org, rs) = setup().await;
    let verifier = started(Config::new(&app.url, &rs.id, &rs.secret)).await;
    let partner = cc_client_with(&app, &org, "Partner", false).await;
    let jwt = access_token(&app, &partner).await;
    let identity = verifier
        .verify(&jwt)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(identity.client_id.as_deref(), Some(partner.id.as_str()));
    assert!(identity.has_scope("api"), "{identity:?}");

    // Forged: another signature, another issuer's key id, garbage. Refused in the process,
    // without asking Latchkey.
    let asked = verifier.metrics().latchkey_requests;
    let (head, sig) = jwt.rsplit_once('.').unwrap_or_default();
    let flipped = if sig.starts_with('A') { "B" } else { "A" };
    let forged = format!("{head}.{flipped}{}", &sig[1..]);
    assert_eq!(verifier.verify(&forged).await, Err(Refusal::Malformed));
    assert_eq!(
        verifier.verify("eyJhbGciOiJFUzI1NiJ9.e30.AAAA").await,
        Err(Refusal::Malformed)
    );
    assert_eq!(verifier.verify("").await, Err(Refusal::Missing));
    assert_eq!(verifier.metrics().latchkey_requests, asked);

    // Revoked by its client: the deny-list moves, the cached answer goes.
    let res = crate::oauth_helpers::form(
        &app,
        "/oauth2/revoke",
        Some(&crate::oauth_helpers::basic(&partner.id, &partner.secret)),
        Some("application/x-www-form-urlencoded"),
        &format!("token={jwt}"),
    )
    .await;
    assert_eq!(res.status, 200, "{}", res.text);
    until_refused(&verifier, &jwt).await;
}

/// A TCP relay to the server that the test can cut: it drops every open invalidation stream
/// and, while `block` is set, refuses new ones (other requests pass).
struct Relay {
    url: String,
    block: Arc<AtomicBool>,
    cut: Arc<tokio::sync::Notify>,
}

async fn relay(upstream: String) -> Relay {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("bind: {e}"));
    let url = format!(
        "http://{}",
        listener.local_addr().unwrap_or_else(|e| panic!("{e}"))
    );
    let block = Arc::new(AtomicBool::new(false));
    let cut = Arc::new(tokio::sync::Notify::new());
    let (b, c) = (block.clone(), cut.clone());
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let (block, cut, upstream) = (b.clone(), c.clone(), upstream.clone());
            tokio::spawn(async move {
                let mut first = vec![0u8; 65536];
                let Ok(n) = client.read(&mut first).await else {
                    return;
                };
                let stream = first[..n].starts_with(b"GET /v1/invalidations");
                if stream && block.load(Ordering::Acquire) {
                    return;
                }
                let Ok(mut server) = TcpStream::connect(&upstream).await else {
                    return;
                };
                if server.write_all(&first[..n]).await.is_err() {
                    return;
                }
                let copy = tokio::io::copy_bidirectional(&mut client, &mut server);
                if stream {
                    tokio::select! {
                        _ = copy => {}
                        () = cut.notified() => {}
                    }
                } else {
                    let _ = copy.await;
                }
            });
        }
    });
    Relay { url, block, cut }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_stream_cut_nothing_is_served_from_memory() {
    let (app, _org, rs) = setup().await;
    let relay = relay(app.url.trim_start_matches("http://").to_owned()).await;
    let mut config = Config::new(&relay.url, &rs.id, &rs.secret);
    config.issuer = Some(app.url.clone());
    let verifier = started(config).await;
    let (_, session) = app.signed_in("cut@example.com").await;
    let (id, secret) = app.personal_token(&session, "laptop").await;
    assert!(verifier.verify(&secret).await.is_ok());
    assert!(verifier.verify(&secret).await.is_ok());
    assert_eq!(verifier.metrics().cached, 1);

    // The stream is cut and cannot come back: the cache is dropped, every request asks.
    relay.block.store(true, Ordering::Release);
    relay.cut.notify_waiters();
    let started = Instant::now();
    while verifier.metrics().stream_up {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "cut not noticed"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let down = verifier.metrics();
    assert_eq!(down.stream_drops, 1);
    assert_eq!(down.cached, 0);
    for _ in 0..3 {
        assert!(verifier.verify(&secret).await.is_ok());
    }
    assert_eq!(
        verifier.metrics().latchkey_requests,
        down.latchkey_requests + 3,
        "every request asked Latchkey"
    );
    // A revocation made while the stream is down (its event never arrives) is obeyed at once.
    app.revoke_personal_token(&session, &id).await;
    assert_eq!(verifier.verify(&secret).await, Err(Refusal::Inactive));

    // Back: it reconnects by itself and serves from memory again.
    relay.block.store(false, Ordering::Release);
    until_up(&verifier).await;
    let (_, other) = app.personal_token(&session, "desktop").await;
    assert!(verifier.verify(&other).await.is_ok());
    let before = verifier.metrics().latchkey_requests;
    assert!(verifier.verify(&other).await.is_ok());
    assert_eq!(verifier.metrics().latchkey_requests, before);

    // Latchkey unreachable and the cache empty: refused as unavailable, never let through.
    relay.block.store(true, Ordering::Release);
    relay.cut.notify_waiters();
    let mut stopped = app;
    stopped.stop().await;
    let started = Instant::now();
    while verifier.metrics().stream_up {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "cut not noticed"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(matches!(
        verifier.verify(&other).await,
        Err(Refusal::Unavailable(_))
    ));
}

/// The example resource server (`crates/latchkey-verifier/examples/resource_server.rs`), its
/// routes compiled in here and served over HTTP.
#[allow(dead_code, reason = "the example's main is not called here")]
#[path = "../../../latchkey-verifier/examples/resource_server.rs"]
mod example;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_resource_server_gets_the_identity_from_the_layer() {
    let (app, org, rs) = setup().await;
    let verifier = started(Config::new(&app.url, &rs.id, &rs.secret)).await;
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("bind: {e}"));
    let base = format!(
        "http://{}",
        listener.local_addr().unwrap_or_else(|e| panic!("{e}"))
    );
    tokio::spawn(async move { axum::serve(listener, example::app(verifier)).await });
    let http = reqwest::Client::new();
    let get = |path: &str, token: Option<&str>| {
        let mut req = http.request(Method::GET, format!("{base}{path}"));
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        async move {
            let res = req.send().await.unwrap_or_else(|e| panic!("{e}"));
            let status = res.status().as_u16();
            let challenge = res
                .headers()
                .get("www-authenticate")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let body: serde_json::Value = res.json().await.unwrap_or_default();
            (status, challenge, body)
        }
    };

    let (member, session) = app.signed_in("example@example.com").await;
    app.add_member(&org.id, "example@example.com", latchkey_core::Role::Member)
        .await;
    let (id, secret) = app.personal_token(&session, "laptop").await;
    let (status, _, body) = get("/orders", Some(&secret)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["orders_for"], member.as_str());
    assert_eq!(body["kind"], "user");
    // A member is not an admin of the organisation; the organisation's admin is.
    let (status, _, _) = get(&format!("/admin/{}", org.id), Some(&secret)).await;
    assert_eq!(status, 403);
    let (_, admin_token) = app.personal_token(&org.admin, "admin laptop").await;
    let (status, _, body) = get(&format!("/admin/{}", org.id), Some(&admin_token)).await;
    assert_eq!(status, 200, "{body}");

    let (status, challenge, _) = get("/orders", None).await;
    assert_eq!(
        (status, challenge.as_deref()),
        (401, Some("Bearer realm=\"latchkey\""))
    );
    let (status, challenge, _) = get("/orders", Some("lkp_not_a_real_token")).await;
    assert_eq!(status, 401);
    assert!(challenge.is_some_and(|c| c.contains("invalid_token")));
    let (status, _, _) = get("/public/orders", None).await;
    assert_eq!(status, 200);

    // Revoked at Latchkey: the example refuses it on its next request once the event is in.
    app.revoke_personal_token(&session, &id).await;
    let started = Instant::now();
    while get("/orders", Some(&secret)).await.0 != 401 {
        assert!(started.elapsed() < Duration::from_secs(1), "still served");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let (_, _, metrics) = get("/metrics", None).await;
    assert_eq!(metrics["stream_up"], true, "{metrics}");
    assert!(
        metrics["cache_hits"].as_u64().is_some_and(|n| n > 0),
        "{metrics}"
    );
}
