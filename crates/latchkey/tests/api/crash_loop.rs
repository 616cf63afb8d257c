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
//!   SMTP server, by its Message-ID) or still pending; none is found that the outbox lacks.
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
         [limits]\ninvalid_tokens_per_ip_per_minute = 1000000\n"
    ));
    bin.create_user(ADMIN, PASSWORD).await;
    let org = bin.org_with_admin("Crash Loop", ADMIN).await;
    let smtp = sink.url();
    let env = [("LATCHKEY_SMTP_URL", smtp.as_str())];

    let told: Arc<Mutex<Told>> = Arc::default();
    let mut session = String::new();
    let started = std::time::Instant::now();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for life in 0..kills {
        let mut server = bin.serve(&env, None, None).await;
        if session.is_empty() {
            session = server.login(ADMIN).await;
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

    let rows = rows(
        &database_url,
        "SELECT id, subject, sent_at IS NOT NULL AS sent FROM outbox",
    )
    .await;
    let mails = sink.mails();
    let mut at_server: BTreeMap<String, usize> = BTreeMap::new();
    for m in &mails {
        let id = m
            .message_id
            .trim_matches(|c| c == '<' || c == '>')
            .trim_end_matches("@latchkey")
            .to_owned();
        *at_server.entry(id).or_default() += 1;
    }
    let (mut sent, mut pending, mut repeated) = (0, 0, 0);
    let outbox_ids: BTreeSet<&String> = rows.iter().map(|(id, _, _)| id).collect();
    for (id, subject, is_sent) in &rows {
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
        let subject = format!("organisation token \"{name}\" created");
        if !rows.iter().any(|(_, s, _)| s.contains(&subject)) {
            violations.push(format!("no mail for the {kind} token {name}'s creation"));
        }
    }

    println!(
        "crash loop: {kills} kills in {:.1} s; acknowledged writes checked: {} creations, \
         {acknowledged_deletions_checked} deletions (the ends of {rotations} rotations and \
         {kill_switches} kill switches among them), {refused_at_cap} refusals at the cap; \
         {} audit events; mails: {sent} sent ({repeated} repeated by a kill between the \
         server's answer and the mark), {pending} pending; violations: {}",
        loop_time.as_secs_f64(),
        created.len(),
        events.len(),
        violations.len()
    );
    assert!(violations.is_empty(), "{violations:#?}");
    assert!(
        created.len() >= kills,
        "too little load: {} creations",
        created.len()
    );
    assert!(refused_at_cap > 0, "the cap was never reached");
    assert!(
        rotations > 0 && kill_switches > 0,
        "{rotations} rotations, {kill_switches} kill switches"
    );
}
