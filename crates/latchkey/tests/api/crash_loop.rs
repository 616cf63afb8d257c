//! The crash loop (issue 14, docs/RELIABILITY.md): the real binary under a mixed write load,
//! killed with `SIGKILL` at random moments many times and started again on the same database,
//! then every invariant checked against what the clients were told:
//!
//! - every acknowledged creation is stored and, unless its deletion was acknowledged too, works;
//! - every acknowledged deletion, rotation (the old token) and kill switch holds (refused);
//! - no type ever has more live tokens than its `max_active`;
//! - audit events match changes one to one (each stored token has one `token.created`, no
//!   event names a token that is not stored, each deleted token has one `token.deleted`);
//! - every mail of a committed change is in the outbox, and each is either sent (found at the
//!   SMTP server, by its Message-ID) or still pending; none is found that the outbox lacks;
//!   then, the killed workers' leases given up, one more life sends every pending one, and
//!   every mail of the outbox has been received (twice only when a kill fell between the SMTP
//!   server's answer and the mark: at least once, with one Message-ID to tell the copies);
//! - OAuth (a fourth writer: `client_credentials` grants, revocations of those access tokens,
//!   refreshes of rotating refresh tokens, new grants through the authorization code flow):
//!   every acknowledged access token works unless its revocation was acknowledged; every
//!   grant's newest refresh token works and the one its last acknowledged rotation replaced is
//!   refused; a refresh whose answer a kill took is either undone (the old token still works)
//!   or done (the old token is a replay, which ends the grant), never half.
//!
//! `CRASH_LOOP_KILLS` sets the number of kills (50 by default; `CRASH_LOOP_KILLS=500 cargo test
//! -p latchkey --test api crash_loop` by hand). It prints the counts.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{Binary, PASSWORD, Server, fresh_database};
use crate::mail_helpers::SmtpSink;

const ADMIN: &str = "loop@example.com";
/// The capped type's `max_active`.
const CAP: usize = 3;

fn kills() -> usize {
    #[expect(
        clippy::disallowed_methods,
        reason = "the long variant of the crash loop is chosen by whoever runs it"
    )]
    std::env::var("CRASH_LOOP_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50)
}

/// A small deterministic generator (xorshift): each run's choices follow from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// What the clients were told.
#[derive(Default)]
struct Told {
    /// id → (type, name, secret, life) of every acknowledged creation.
    created: BTreeMap<String, (String, String, String, usize)>,
    /// Lives in which a kill switch went unanswered: it may have revoked any svc token made
    /// in that life, acknowledged before or after the writer noticed.
    doubtful_lives: BTreeSet<usize>,
    /// Acknowledged deletions.
    deleted: BTreeSet<String>,
    /// Deletions sent (acknowledged or not: a kill may take the answer): such a token may be
    /// either live or deleted, but not half of each.
    attempted: BTreeSet<String>,
    /// `409 token_limit_reached` answers of the capped type.
    refused_at_cap: usize,
    /// Answers that break the contract (a 5xx from a live server, an unexpected status).
    violations: Vec<String>,
}

/// One writer against one life of the server, until the connection fails (the kill): creates
/// tokens of both types, deletes, rotates (`grace` 0) and now and then pulls the kill switch
/// of the svc type.
async fn writer(
    url: String,
    org: String,
    session: String,
    told: Arc<Mutex<Told>>,
    seed: u64,
    life: usize,
) {
    let client = reqwest::Client::new();
    let mut rng = Rng(seed | 1);
    for i in 0u32.. {
        let roll = rng.below(100);
        let (method, path, body) = if (65..75).contains(&roll) {
            // Rotate a live svc token, the old one ending at once.
            let old = {
                let Ok(mut t) = told.lock() else { return };
                let live: Vec<String> = t
                    .created
                    .iter()
                    .filter(|(id, c)| {
                        c.0 == "svc" && !t.deleted.contains(*id) && !t.attempted.contains(*id)
                    })
                    .map(|(id, _)| id.clone())
                    .collect();
                if live.is_empty() {
                    continue;
                }
                let old = live[usize::try_from(rng.below(live.len() as u64)).unwrap_or(0)].clone();
                t.attempted.insert(old.clone());
                old
            };
            (
                Method::POST,
                format!("/v1/orgs/{org}/tokens/{old}/rotate"),
                Some(json!({ "grace": "0s" })),
            )
        } else if roll == 75 || roll == 76 {
            // The kill switch, for one type: every live svc token at once.
            {
                let Ok(mut t) = told.lock() else { return };
                let live: Vec<String> = t
                    .created
                    .iter()
                    .filter(|(id, c)| c.0 == "svc" && !t.deleted.contains(*id))
                    .map(|(id, _)| id.clone())
                    .collect();
                t.attempted.extend(live);
            }
            (
                Method::POST,
                format!("/v1/orgs/{org}/tokens/revoke-all"),
                Some(json!({ "type": "svc" })),
            )
        } else if roll < 40 {
            let name = format!("svc-{seed:x}-{i}");
            (
                Method::POST,
                format!("/v1/orgs/{org}/tokens"),
                Some(json!({ "name": name, "type": "svc" })),
            )
        } else if roll < 65 {
            let name = format!("cap-{seed:x}-{i}");
            (
                Method::POST,
                format!("/v1/orgs/{org}/tokens"),
                Some(json!({ "name": name, "type": "capped" })),
            )
        } else {
            // Delete one live token, a capped one first (so the cap keeps being reached).
            let victim = {
                let Ok(mut t) = told.lock() else { return };
                let live: Vec<&String> = t
                    .created
                    .iter()
                    .filter(|(id, _)| !t.deleted.contains(*id))
                    .map(|(id, _)| id)
                    .collect();
                let capped: Vec<&&String> = live
                    .iter()
                    .filter(|id| t.created.get(**id).is_some_and(|c| c.0 == "capped"))
                    .collect();
                let pool: Vec<String> = if capped.is_empty() {
                    live.iter().map(|s| (*s).clone()).collect()
                } else {
                    capped.iter().map(|s| (**s).clone()).collect()
                };
                if pool.is_empty() {
                    continue;
                }
                let victim =
                    pool[usize::try_from(rng.below(pool.len() as u64)).unwrap_or(0)].clone();
                t.attempted.insert(victim.clone());
                victim
            };
            (
                Method::DELETE,
                format!("/v1/orgs/{org}/tokens/{victim}"),
                None,
            )
        };
        let mut req = client
            .request(method.clone(), format!("{url}{path}"))
            .bearer_auth(&session);
        if let Some(body) = &body {
            req = req.json(body);
        }
        let kill_switch = path.ends_with("/revoke-all");
        // A kill switch without an answer may have revoked any svc token of this life.
        let in_doubt = || {
            if let (true, Ok(mut t)) = (kill_switch, told.lock()) {
                t.doubtful_lives.insert(life);
                let of_this_life: Vec<String> = t
                    .created
                    .iter()
                    .filter(|(_, c)| c.0 == "svc" && c.3 == life)
                    .map(|(id, _)| id.clone())
                    .collect();
                t.attempted.extend(of_this_life);
            }
        };
        let Ok(res) = req.send().await else {
            in_doubt();
            return;
        };
        let status = res.status().as_u16();
        let Ok(text) = res.text().await else {
            in_doubt();
            return;
        };
        let answer: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        let Ok(mut t) = told.lock() else { return };
        let rotation = path.ends_with("/rotate");
        match (method.as_str(), status) {
            ("POST", 200) if path.ends_with("/revoke-all") => {
                for id in answer["tokens"].as_array().into_iter().flatten() {
                    if let Some(id) = id.as_str() {
                        t.deleted.insert(id.to_owned());
                    }
                }
            }
            ("POST", 201) => {
                let kind = if rotation {
                    "svc".to_owned()
                } else {
                    body.as_ref()
                        .and_then(|b| b["type"].as_str())
                        .unwrap_or_default()
                        .to_owned()
                };
                if rotation {
                    // The old one ended with the answer: it counts as deleted.
                    if let Some(old) = path.split('/').rev().nth(1) {
                        t.deleted.insert(old.to_owned());
                    }
                }
                let name = answer["name"].as_str().unwrap_or_default().to_owned();
                let (Some(id), Some(secret)) = (answer["id"].as_str(), answer["secret"].as_str())
                else {
                    t.violations
                        .push(format!("201 without id or secret: {text}"));
                    continue;
                };
                if kind == "svc" && t.doubtful_lives.contains(&life) {
                    t.attempted.insert(id.to_owned());
                }
                t.created
                    .insert(id.to_owned(), (kind, name, secret.to_owned(), life));
            }
            ("POST", 409) if answer["error"]["code"] == "token_limit_reached" => {
                t.refused_at_cap += 1;
            }
            ("DELETE", 200) => {
                if let Some(id) = path.rsplit('/').next() {
                    t.deleted.insert(id.to_owned());
                }
            }
            // Two writers ending the same token: the second finds it gone.
            ("DELETE", 409 | 404) => {}
            ("POST", 409) if rotation => {}
            _ => t
                .violations
                .push(format!("{method} {path}: {status} {text}")),
        }
    }
}

async fn kill_9(server: &mut Server) {
    let pid = server.child.id().unwrap_or_else(|| panic!("server gone"));
    let killed = std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status();
    assert!(killed.is_ok_and(|s| s.success()), "kill -KILL {pid}");
    let _ = server.child.wait().await;
}

/// Every page of an organisation's audit log.
async fn org_events(server: &Server, session: &str, org: &str) -> Vec<Value> {
    let mut events = Vec::new();
    let mut path = format!("/v1/orgs/{org}/events?limit=200");
    loop {
        let page = server
            .call(Method::GET, &path, Some(session), None)
            .await
            .expect(200);
        events.extend(page.body.as_array().into_iter().flatten().cloned());
        match page.header("link").and_then(|l| {
            l.split('>')
                .next()
                .map(|p| p.trim_start_matches('<').to_owned())
        }) {
            Some(next) => path = next,
            None => break,
        }
    }
    events
}

/// Rows of three columns (text, text, boolean) read straight from the database, after the
/// server has stopped: the outbox (id, subject, sent) and the tokens (id, type, revoked).
async fn rows(database_url: &str, sql: &'static str) -> Vec<(String, String, bool)> {
    if database_url.starts_with("postgres") {
        let pool = sqlx::PgPool::connect(database_url).await.unwrap();
        let rows: Vec<(String, String, bool)> = sqlx::query_as(sql).fetch_all(&pool).await.unwrap();
        pool.close().await;
        rows
    } else {
        let pool = sqlx::SqlitePool::connect(database_url).await.unwrap();
        let rows: Vec<(String, String, bool)> = sqlx::query_as(sql).fetch_all(&pool).await.unwrap();
        pool.close().await;
        rows
    }
}

#[tokio::test]
async fn killed_at_random_moments_nothing_acknowledged_is_lost() {
    let kills = kills();
    let sink = SmtpSink::start().await;
    let database = fresh_database().await;
    let bin = match &database {
        Some(url) => Binary::on_database(url, None),
        None => Binary::fresh(),
    };
    let database_url = database.clone().unwrap_or_else(|| {
        format!(
            "sqlite://{}",
            bin.dir.path().join("data").join("latchkey.db").display()
        )
    });
    bin.append_config(&format!(
        "\n[token_types.svc]\nowner = \"organisation\"\nprefix = \"lksv\"\nmax_active = 100000\n\
         [token_types.capped]\nowner = \"organisation\"\nprefix = \"lkcp\"\nmax_active = {CAP}\n\
         [limits]\ninvalid_tokens_per_ip_per_minute = 1000000\n\
         [oauth]\naccess_token_ttl = \"1h\"\n"
    ));
    bin.create_user(ADMIN, PASSWORD).await;
    let org = bin.org_with_admin("Crash Loop", ADMIN).await;
    let clients = oauth_clients(&bin, &org).await;
    let smtp = sink.url();
    // One issuer for every life (each listens on a port of its own): the JWT access tokens of
    // one life must verify in the next, as they do for an instance restarted at its address.
    let env = [
        ("LATCHKEY_SMTP_URL", smtp.as_str()),
        ("LATCHKEY_PUBLIC_URL", PUBLIC_URL),
    ];

    let told: Arc<Mutex<Told>> = Arc::default();
    let oauth_told: Arc<Mutex<OAuthTold>> = Arc::default();
    let mut session = String::new();
    let started = std::time::Instant::now();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for life in 0..kills {
        let mut server = bin.serve(&env, None, None).await;
        if session.is_empty() {
            session = server.login(ADMIN).await;
            // The first grants, before any kill.
            let http = reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap();
            let mut first = Vec::new();
            for _ in 0..4 {
                let (access, refresh) = code_grant(&http, &server.url, &session, &clients.app_id)
                    .await
                    .expect("the server is up")
                    .unwrap();
                first.push((access, refresh));
            }
            let mut t = oauth_told.lock().unwrap();
            for (i, (access, refresh)) in first.into_iter().enumerate() {
                t.chains.push(Chain {
                    refresh,
                    previous: None,
                    doubtful: false,
                    dead: false,
                });
                t.access.push((access, Some(i), false, false));
            }
        }
        let mut writers = Vec::new();
        for w in 0..3u64 {
            writers.push(tokio::spawn(writer(
                server.url.clone(),
                org.clone(),
                session.clone(),
                told.clone(),
                rng.next() ^ (w << 56) ^ (life as u64),
                life,
            )));
        }
        writers.push(tokio::spawn(oauth_writer(
            server.url.clone(),
            session.clone(),
            clients.clone(),
            oauth_told.clone(),
            rng.next() ^ (life as u64),
        )));
        // A random moment: from a few milliseconds into the load to half a second.
        tokio::time::sleep(Duration::from_millis(5 + rng.below(500))).await;
        kill_9(&mut server).await;
        for w in writers {
            let _ = tokio::time::timeout(Duration::from_secs(30), w).await;
        }
    }
    let loop_time = started.elapsed();

    // Up once more: the checks, then a graceful stop that leaves the outbox as it is.
    let server = bin.serve(&env, None, None).await;
    let (created, deleted, attempted, refused_at_cap, mut violations) = {
        let t = told.lock().unwrap();
        (
            t.created.clone(),
            t.deleted.clone(),
            t.attempted.clone(),
            t.refused_at_cap,
            t.violations.clone(),
        )
    };

    // Acknowledged creations and deletions hold.
    for (id, (_, name, secret, _)) in &created {
        let res = server.call(Method::GET, "/v1/me", Some(secret), None).await;
        let ok = if deleted.contains(id) {
            res.status == 401
        } else if attempted.contains(id) {
            res.status == 401 || res.status == 200
        } else {
            res.status == 200
        };
        if !ok {
            violations.push(format!("token {id} ({name}): /v1/me {}", res.status));
        }
    }
    let events = org_events(&server, &session, &org).await;
    let acknowledged_deletions_checked = deleted.len();
    let oauth = check_oauth(&server, &clients, &oauth_told, &mut violations).await;

    // Mails: give the outbox a moment to send what is due, stop, and compare.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let status = server.terminate().await;
    assert!(status.success());
    // Stored tokens (straight from the database: the API lists an owner's newest 1,000)
    // against what clients were told, the cap and the audit log.
    let stored: BTreeMap<String, (String, bool)> = rows(
        &database_url,
        "SELECT id, token_type, revoked_at IS NOT NULL AS revoked FROM tokens",
    )
    .await
    .into_iter()
    .filter(|(_, kind, _)| kind == "svc" || kind == "capped")
    .map(|(id, kind, revoked)| (id, (kind, revoked)))
    .collect();
    for id in created.keys() {
        if !stored.contains_key(id) {
            violations.push(format!("acknowledged token {id} is not stored"));
        }
    }
    let live_capped = stored
        .values()
        .filter(|(kind, revoked)| kind == "capped" && !revoked)
        .count();
    if live_capped > CAP {
        violations.push(format!(
            "{live_capped} live capped tokens, max_active {CAP}"
        ));
    }
    // Per token: how it was made (`token.created`, or `token.rotated` naming it as the new
    // token) and ended (`token.deleted`/`token.revoked`, or a kill switch listing it).
    let mut per_token: BTreeMap<(String, String), usize> = BTreeMap::new();
    let (mut rotations, mut kill_switches) = (0, 0);
    for e in &events {
        let action = e["action"].as_str().unwrap_or_default();
        let subject = e["subject"]["id"].as_str().unwrap_or_default();
        let mut noted: Vec<(String, &str)> = Vec::new();
        match action {
            "token.created" => noted.push((subject.to_owned(), "made")),
            "token.rotated" => {
                rotations += 1;
                let new = e["details"]["new_token"].as_str().unwrap_or_default();
                noted.push((new.to_owned(), "made"));
            }
            "token.deleted" | "token.revoked" => noted.push((subject.to_owned(), "ended")),
            "tokens.revoked_all" => {
                kill_switches += 1;
                for id in e["details"]["tokens"].as_array().into_iter().flatten() {
                    noted.push((id.as_str().unwrap_or_default().to_owned(), "ended"));
                }
            }
            _ => {}
        }
        for (id, what) in noted {
            *per_token.entry((id, what.to_owned())).or_default() += 1;
        }
    }
    let count = |id: &str, action: &str| {
        per_token
            .get(&(id.to_owned(), action.to_owned()))
            .copied()
            .unwrap_or(0)
    };
    for (id, (_, revoked)) in &stored {
        let made = count(id, "made");
        if made != 1 {
            violations.push(format!("token {id}: made by {made} events"));
        }
        let gone = count(id, "ended");
        if *revoked != (gone == 1) || gone > 1 {
            violations.push(format!(
                "token {id}: revoked {revoked}, {gone} deletion events"
            ));
        }
    }
    for (id, what) in per_token.keys() {
        if !stored.contains_key(id) && id.starts_with("tok_") {
            // The organisation's Default token (made by `org create`) is of neither type.
            let default_token = events.iter().any(|e| {
                e["action"] == "token.created"
                    && e["subject"]["id"] == id.as_str()
                    && e["details"]["type"] != "svc"
                    && e["details"]["type"] != "capped"
            });
            if !default_token {
                violations.push(format!("an event says {what} {id}, which is not stored"));
            }
        }
    }

    let outbox = rows(
        &database_url,
        "SELECT id, subject, sent_at IS NOT NULL AS sent FROM outbox",
    )
    .await;
    let at_server = received(&sink);
    let (mut sent, mut pending, mut repeated) = (0, 0, 0);
    let outbox_ids: BTreeSet<&String> = outbox.iter().map(|(id, _, _)| id).collect();
    for (id, subject, is_sent) in &outbox {
        let copies = at_server.get(id).copied().unwrap_or(0);
        if *is_sent {
            sent += 1;
            if copies == 0 {
                violations.push(format!("mail {id} ({subject}) marked sent, never received"));
            }
        } else {
            pending += 1;
        }
        repeated += copies.saturating_sub(1);
    }
    for id in at_server.keys() {
        if !outbox_ids.contains(id) {
            violations.push(format!("a mail {id} the outbox does not have"));
        }
    }
    for (kind, name, _, _) in created.values() {
        // A rotation's new token is told as a rotation.
        let subjects = [
            format!("organisation token \"{name}\" created"),
            format!("organisation token \"{name}\" rotated"),
        ];
        if !outbox
            .iter()
            .any(|(_, s, _)| subjects.iter().any(|subject| s.contains(subject)))
        {
            violations.push(format!("no mail for the {kind} token {name}'s creation"));
        }
    }

    // The leases the killed workers held last minutes: given up here (as if they had passed),
    // one more life sends every pending mail, and then each must have been received.
    execute(
        &database_url,
        "UPDATE outbox SET locked_until = NULL WHERE sent_at IS NULL",
    )
    .await;
    let server = bin.serve(&env, None, None).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let unsent = rows(
            &database_url,
            "SELECT id, subject, sent_at IS NOT NULL AS sent FROM outbox WHERE sent_at IS NULL",
        )
        .await
        .len();
        if unsent == 0 {
            break;
        }
        if std::time::Instant::now() > deadline {
            violations.push(format!("{unsent} mails unsent 120 s after the last start"));
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(server.terminate().await.success());
    let drained = rows(
        &database_url,
        "SELECT id, subject, sent_at IS NOT NULL AS sent FROM outbox",
    )
    .await;
    let at_server = received(&sink);
    let mut repeated_in_all = 0;
    for (id, subject, is_sent) in &drained {
        let copies = at_server.get(id).copied().unwrap_or(0);
        if !is_sent || copies == 0 {
            violations.push(format!(
                "mail {id} ({subject}): marked sent {is_sent}, received {copies} times"
            ));
        }
        repeated_in_all += copies.saturating_sub(1);
    }
    let outbox_ids: BTreeSet<&String> = drained.iter().map(|(id, _, _)| id).collect();
    for id in at_server.keys() {
        if !outbox_ids.contains(id) {
            violations.push(format!("a mail {id} the outbox does not have"));
        }
    }

    println!(
        "crash loop: {kills} kills in {:.1} s; acknowledged writes checked: {} creations, \
         {acknowledged_deletions_checked} deletions (the ends of {rotations} rotations and \
         {kill_switches} kill switches among them), {refused_at_cap} refusals at the cap; \
         {} audit events; mails: {sent} sent ({repeated} repeated by a kill between the \
         server's answer and the mark), {pending} pending at the last kill, then all {} \
         received ({repeated_in_all} twice in all); OAuth: {oauth}; violations: {}",
        loop_time.as_secs_f64(),
        created.len(),
        events.len(),
        drained.len(),
        violations.len()
    );
    assert!(violations.is_empty(), "{violations:#?}");
    assert!(
        created.len() >= kills,
        "too little load: {} creations",
        created.len()
    );
    assert!(refused_at_cap > 0, "the cap was never reached");
    let grants = oauth_told.lock().map(|t| (t.grants, t.refreshes)).unwrap();
    assert!(
        grants.0 > 0 && grants.1 > 0,
        "{} client_credentials grants, {} refreshes",
        grants.0,
        grants.1
    );
    assert!(
        rotations > 0 && kill_switches > 0,
        "{rotations} rotations, {kill_switches} kill switches"
    );
}

/// The OAuth clients of the crash loop: a confidential one for `client_credentials` and a
/// public one for the authorization code grant with rotating refresh tokens.
#[derive(Clone)]
struct OAuthClients {
    cc_id: String,
    cc_secret: String,
    app_id: String,
}

const REDIRECT: &str = "http://localhost:9/cb";
const PUBLIC_URL: &str = "http://latchkey.test";

/// A refresh-token chain (one grant): the newest refresh token the client was given.
struct Chain {
    refresh: String,
    /// The one before it (refused once the rotation that replaced it was acknowledged).
    previous: Option<String>,
    /// A refresh was sent and its answer lost to a kill: the server may or may not have
    /// rotated. The next try with `refresh` either works (it had not) or is refused as a
    /// replay, which ends the grant (it had): both are consistent, nothing in between.
    doubtful: bool,
    /// Ended by such a replay.
    dead: bool,
}

/// What the OAuth client was told.
#[derive(Default)]
struct OAuthTold {
    chains: Vec<Chain>,
    /// (access token, chain it came from, revocation acknowledged, revocation sent).
    access: Vec<(String, Option<usize>, bool, bool)>,
    grants: usize,
    codes: usize,
    refreshes: usize,
    revocations: usize,
    replays_after_a_kill: usize,
    violations: Vec<String>,
}

fn form_value(html: &str, name: &str) -> Option<String> {
    let needle = format!("name=\"{name}\" value=\"");
    let start = html.find(&needle)? + needle.len();
    html[start..].split('"').next().map(str::to_owned)
}

/// The whole authorization code flow as a signed-in person's browser and the app do it:
/// the consent page (the session as its cookie), the approval, the code exchanged with PKCE.
/// `None` when any step fails (a kill).
async fn code_grant(
    http: &reqwest::Client,
    url: &str,
    session: &str,
    app_id: &str,
) -> Option<Result<(String, String), String>> {
    let (challenge, verifier) = oauth2::PkceCodeChallenge::new_random_sha256();
    let query = [
        ("response_type", "code"),
        ("client_id", app_id),
        ("redirect_uri", REDIRECT),
        ("scope", "api"),
        ("state", "crash-loop"),
        ("code_challenge", challenge.as_str()),
        ("code_challenge_method", "S256"),
    ];
    let cookie = format!("latchkey_session={session}");
    let authorize = url::Url::parse_with_params(&format!("{url}/oauth2/authorize"), query).ok()?;
    let page = http
        .get(authorize)
        .header("cookie", &cookie)
        .send()
        .await
        .ok()?;
    if page.status() != 200 {
        return Some(Err(format!("consent page: {}", page.status())));
    }
    let html = page.text().await.ok()?;
    let csrf = form_value(&html, "csrf_token")?;
    let mut decision: Vec<(&str, &str)> = query.to_vec();
    decision.push(("csrf_token", &csrf));
    decision.push(("decision", "approve"));
    let approved = http
        .post(format!("{url}/oauth2/authorize"))
        .header("cookie", &cookie)
        .header("origin", PUBLIC_URL)
        .form(&decision)
        .send()
        .await
        .ok()?;
    let back = approved
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let Some(code) = reqwest::Url::parse(&back).ok().and_then(|u| {
        u.query_pairs()
            .find(|(k, _)| k == "code")
            .map(|(_, v)| v.into_owned())
    }) else {
        return Some(Err(format!("approval: {} to {back}", approved.status())));
    };
    let res = http
        .post(format!("{url}/oauth2/token"))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", REDIRECT),
            ("client_id", app_id),
            ("code_verifier", verifier.secret().as_str()),
        ])
        .send()
        .await
        .ok()?;
    let status = res.status().as_u16();
    let body: Value = res.json().await.ok()?;
    match (
        body["access_token"].as_str(),
        body["refresh_token"].as_str(),
    ) {
        (Some(a), Some(r)) if status == 200 => Some(Ok((a.to_owned(), r.to_owned()))),
        _ => Some(Err(format!("code exchange: {status} {body}"))),
    }
}

/// `POST /oauth2/token` with a form (and Basic for the confidential client): status and body,
/// `None` when the answer was lost.
async fn token_call(
    http: &reqwest::Client,
    url: &str,
    path: &str,
    basic: Option<(&str, &str)>,
    form: &[(&str, &str)],
) -> Option<(u16, Value)> {
    let mut req = http.post(format!("{url}{path}")).form(form);
    if let Some((id, secret)) = basic {
        req = req.basic_auth(id, Some(secret));
    }
    let res = req.send().await.ok()?;
    let status = res.status().as_u16();
    let text = res.text().await.ok()?;
    Some((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
}

/// One OAuth client against one life of the server, until the connection fails (the kill):
/// `client_credentials` grants, revocations of those access tokens, refreshes of the chains,
/// and now and then a new chain through the authorization code flow.
async fn oauth_writer(
    url: String,
    session: String,
    clients: OAuthClients,
    told: Arc<Mutex<OAuthTold>>,
    seed: u64,
) {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap_or_default();
    let basic = Some((clients.cc_id.as_str(), clients.cc_secret.as_str()));
    let mut rng = Rng(seed | 1);
    loop {
        let roll = rng.below(100);
        if roll < 35 {
            let Some((status, body)) = token_call(
                &http,
                &url,
                "/oauth2/token",
                basic,
                &[("grant_type", "client_credentials"), ("scope", "api")],
            )
            .await
            else {
                return;
            };
            let Ok(mut t) = told.lock() else { return };
            match body["access_token"].as_str() {
                Some(token) if status == 200 => {
                    t.grants += 1;
                    t.access.push((token.to_owned(), None, false, false));
                }
                _ => t
                    .violations
                    .push(format!("client_credentials: {status} {body}")),
            }
        } else if roll < 50 {
            let victim = {
                let Ok(mut t) = told.lock() else { return };
                let live: Vec<usize> = (0..t.access.len())
                    .filter(|i| t.access[*i].1.is_none() && !t.access[*i].3)
                    .collect();
                if live.is_empty() {
                    continue;
                }
                let i = live[usize::try_from(rng.below(live.len() as u64)).unwrap_or(0)];
                t.access[i].3 = true;
                i
            };
            let token = told
                .lock()
                .map(|t| t.access[victim].0.clone())
                .unwrap_or_default();
            let Some((status, body)) = token_call(
                &http,
                &url,
                "/oauth2/revoke",
                basic,
                &[("token", token.as_str())],
            )
            .await
            else {
                return;
            };
            let Ok(mut t) = told.lock() else { return };
            if status == 200 {
                t.revocations += 1;
                t.access[victim].2 = true;
            } else {
                t.violations.push(format!("revoke: {status} {body}"));
            }
        } else if roll < 95 {
            let picked = {
                let Ok(t) = told.lock() else { return };
                let live: Vec<usize> = (0..t.chains.len()).filter(|i| !t.chains[*i].dead).collect();
                if live.is_empty() {
                    None
                } else {
                    let i = live[usize::try_from(rng.below(live.len() as u64)).unwrap_or(0)];
                    Some((i, t.chains[i].refresh.clone()))
                }
            };
            let Some((i, refresh)) = picked else { continue };
            let answer = token_call(
                &http,
                &url,
                "/oauth2/token",
                None,
                &[
                    ("grant_type", "refresh_token"),
                    ("refresh_token", refresh.as_str()),
                    ("client_id", clients.app_id.as_str()),
                ],
            )
            .await;
            let Ok(mut t) = told.lock() else { return };
            let Some((status, body)) = answer else {
                t.chains[i].doubtful = true;
                return;
            };
            match (
                status,
                body["refresh_token"].as_str(),
                body["access_token"].as_str(),
            ) {
                (200, Some(new), Some(access)) => {
                    t.refreshes += 1;
                    let chain = &mut t.chains[i];
                    chain.previous = Some(std::mem::replace(&mut chain.refresh, new.to_owned()));
                    chain.doubtful = false;
                    t.access.push((access.to_owned(), Some(i), false, false));
                }
                (400, _, _) if body["error"] == "invalid_grant" && t.chains[i].doubtful => {
                    t.replays_after_a_kill += 1;
                    t.chains[i].dead = true;
                }
                _ => t.violations.push(format!("refresh: {status} {body}")),
            }
        } else {
            let Some(made) = code_grant(&http, &url, &session, &clients.app_id).await else {
                return;
            };
            let Ok(mut t) = told.lock() else { return };
            match made {
                Ok((access, refresh)) => {
                    t.codes += 1;
                    let i = t.chains.len();
                    t.chains.push(Chain {
                        refresh,
                        previous: None,
                        doubtful: false,
                        dead: false,
                    });
                    t.access.push((access, Some(i), false, false));
                }
                Err(e) => t.violations.push(e),
            }
        }
    }
}

/// The two OAuth clients, made the operator's way.
async fn oauth_clients(bin: &Binary, org: &str) -> OAuthClients {
    let cc = bin
        .create_client(
            org,
            "worker",
            &["--grant", "client_credentials", "--scope", "api"],
        )
        .await;
    let app = bin
        .create_client(
            org,
            "app",
            &[
                "--grant",
                "authorization_code",
                "--grant",
                "refresh_token",
                "--redirect-uri",
                REDIRECT,
                "--scope",
                "api",
                "--public",
            ],
        )
        .await;
    OAuthClients {
        cc_id: cc["client_id"].as_str().unwrap().to_owned(),
        cc_secret: cc["client_secret"].as_str().unwrap().to_owned(),
        app_id: app["client_id"].as_str().unwrap().to_owned(),
    }
}

/// The OAuth invariants against a server up after the last kill: every acknowledged access
/// token works unless its revocation was acknowledged (then it is refused) or sent (either);
/// every chain's newest refresh token works and the one its last acknowledged rotation
/// replaced is refused. Returns the counts for the summary line.
async fn check_oauth(
    server: &Server,
    clients: &OAuthClients,
    told: &Mutex<OAuthTold>,
    violations: &mut Vec<String>,
) -> String {
    let http = reqwest::Client::new();
    // Taken out for the checks (no lock across an await) and put back for the summary.
    let mut t = std::mem::take(&mut *told.lock().unwrap());
    violations.append(&mut t.violations);
    for (token, chain, revoked, attempted) in &t.access {
        let res = server.call(Method::GET, "/v1/me", Some(token), None).await;
        let status = res.status;
        let chain_ended = chain.is_some_and(|c| t.chains[c].dead || t.chains[c].doubtful);
        let ok = if *revoked {
            status == 401
        } else if *attempted || chain_ended {
            status == 401 || status == 200
        } else {
            status == 200
        };
        if !ok {
            violations.push(format!(
                "access token of chain {chain:?}: /v1/me {status} {}",
                res.body
            ));
        }
    }
    let (mut live, mut replaced) = (0, 0);
    for (i, chain) in t.chains.iter().enumerate() {
        if chain.dead {
            continue;
        }
        let refresh = |token: String| {
            let http = http.clone();
            let url = server.url.clone();
            let app = clients.app_id.clone();
            async move {
                token_call(
                    &http,
                    &url,
                    "/oauth2/token",
                    None,
                    &[
                        ("grant_type", "refresh_token"),
                        ("refresh_token", token.as_str()),
                        ("client_id", app.as_str()),
                    ],
                )
                .await
                .unwrap_or((0, Value::Null))
            }
        };
        let (status, body) = refresh(chain.refresh.clone()).await;
        match status {
            200 => live += 1,
            400 if chain.doubtful && body["error"] == "invalid_grant" => continue,
            _ => {
                violations.push(format!(
                    "chain {i}: its newest refresh token: {status} {body}"
                ));
                continue;
            }
        }
        if let Some(previous) = &chain.previous {
            let (status, body) = refresh(previous.clone()).await;
            if status == 400 && body["error"] == "invalid_grant" {
                replaced += 1;
            } else {
                violations.push(format!(
                    "chain {i}: a replaced refresh token: {status} {body}"
                ));
            }
        }
    }
    let summary = format!(
        "{} client_credentials grants, {} code grants (+4 before the first kill), {} refreshes, \
         {} revocations acknowledged; {} access tokens checked, {live} of {} chains live at the \
         end ({replaced} replaced refresh tokens refused), {} ended by a replay after a kill \
         took the answer",
        t.grants,
        t.codes,
        t.refreshes,
        t.revocations,
        t.access.len(),
        t.chains.len(),
        t.replays_after_a_kill
    );
    *told.lock().unwrap() = t;
    summary
}

/// Messages the SMTP server received, by outbox id (the Message-ID's local part): how many
/// copies of each.
fn received(sink: &SmtpSink) -> BTreeMap<String, usize> {
    let mut at_server: BTreeMap<String, usize> = BTreeMap::new();
    for m in sink.mails() {
        let id = m
            .message_id
            .trim_matches(|c| c == '<' || c == '>')
            .trim_end_matches("@latchkey")
            .to_owned();
        *at_server.entry(id).or_default() += 1;
    }
    at_server
}

/// One statement straight on the database, with the server stopped.
async fn execute(database_url: &str, sql: &'static str) {
    if database_url.starts_with("postgres") {
        let pool = sqlx::PgPool::connect(database_url).await.unwrap();
        sqlx::query(sql).execute(&pool).await.unwrap();
        pool.close().await;
    } else {
        let pool = sqlx::SqlitePool::connect(database_url).await.unwrap();
        sqlx::query(sql).execute(&pool).await.unwrap();
        pool.close().await;
    }
}
