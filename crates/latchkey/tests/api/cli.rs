//! The operator CLI (SPEC 7), driven as a separate process against its own data directory, and
//! the real `latchkey serve` process: start, revocation from the CLI, graceful stop on SIGTERM.

use std::sync::Arc;
use std::time::{Duration, Instant};

use latchkey::config::Config;
use latchkey_core::Refusal;
use latchkey_service::tokens::CreatePersonalToken;
use latchkey_service::{Caller, ServiceError, SystemClock};
use reqwest::Method;
use secrecy::SecretString;
use serde_json::{Value, json};

use crate::helpers::{Binary, PASSWORD};

fn json_out(text: &str) -> Value {
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {text:?}"))
}

#[tokio::test]
async fn user_create_reads_the_password_from_stdin_and_prints_the_id() {
    let bin = Binary::fresh();
    let id = bin.create_user("ada@example.com", PASSWORD).await;
    assert!(id.starts_with("usr_") && id.len() == 4 + 22, "{id:?}");

    let ran = bin
        .run(
            &[
                "--json",
                "user",
                "create",
                "--email",
                "bob@example.com",
                "--password-stdin",
            ],
            Some("another long password\n"),
        )
        .await
        .ok();
    let out = json_out(&ran.stdout);
    assert!(
        out["id"].as_str().is_some_and(|i| i.starts_with("usr_")),
        "{out}"
    );
    assert_eq!(out["email"], "bob@example.com");
    assert_eq!(out["operator"], false);
    assert_ne!(out["id"], id.as_str());

    // The flag is global: it works after the subcommand too.
    let ran = bin
        .run(
            &[
                "user",
                "create",
                "--email",
                "op@example.com",
                "--password-stdin",
                "--operator",
                "--json",
            ],
            Some("operator password 1"),
        )
        .await
        .ok();
    assert_eq!(json_out(&ran.stdout)["operator"], true);

    // The password went nowhere but the hash.
    assert!(
        !ran.stdout.contains("operator password 1") && !ran.stderr.contains("operator password 1")
    );
}

#[tokio::test]
async fn org_commands_manage_features_switches_and_members() {
    let bin = Binary::fresh();
    bin.create_user("admin@example.com", PASSWORD).await;

    let ran = bin
        .run(
            &["org", "create", "--name", "Acme Ads", "--feature", "links"],
            None,
        )
        .await
        .ok();
    let org = ran.stdout.trim().to_owned();
    assert!(org.starts_with("org_") && org.len() == 4 + 22, "{org:?}");

    let ran = bin
        .run(
            &[
                "--json",
                "org",
                "update",
                "--org",
                &org,
                "--remove-feature",
                "links",
                "--api-tokens",
                "off",
            ],
            None,
        )
        .await
        .ok();
    let out = json_out(&ran.stdout);
    assert_eq!(out["id"], org.as_str());
    assert_eq!(out["features"], json!([]));
    assert_eq!(out["api_tokens_enabled"], false);

    let ran = bin
        .run(
            &[
                "org",
                "update",
                "--org",
                &org,
                "--feature",
                "links",
                "--api-tokens",
                "on",
            ],
            None,
        )
        .await
        .ok();
    assert!(
        ran.stdout.contains("features=[links]") && ran.stdout.contains("api_tokens=on"),
        "{}",
        ran.stdout
    );

    let ran = bin
        .run(
            &[
                "org",
                "add-member",
                "--org",
                &org,
                "--email",
                "admin@example.com",
                "--role",
                "admin",
            ],
            None,
        )
        .await
        .ok();
    assert!(
        ran.stdout.contains("admin@example.com is now admin"),
        "{}",
        ran.stdout
    );
    let ran = bin
        .run(
            &[
                "--json",
                "org",
                "add-member",
                "--org",
                &org,
                "--email",
                "admin@example.com",
                "--role",
                "partner",
            ],
            None,
        )
        .await
        .ok();
    assert_eq!(json_out(&ran.stdout)["role"], "partner");

    bin.run(
        &[
            "org",
            "remove-member",
            "--org",
            &org,
            "--email",
            "admin@example.com",
        ],
        None,
    )
    .await
    .ok();
    bin.run(
        &[
            "org",
            "remove-member",
            "--org",
            &org,
            "--email",
            "admin@example.com",
        ],
        None,
    )
    .await
    .fails_with("no such membership");
}

/// SPEC 9: `latchkey provisioning create --name N` prints the secret once (`--json`: `{"id",
/// "secret"}`); the list never shows it; `revoke` refuses it and a second revoke fails
/// cleanly. The secret works at `/scim/v2` of a server on the same database.
#[tokio::test]
async fn provisioning_and_operator_credentials_are_made_listed_and_revoked() {
    let bin = Binary::fresh();
    let ran = bin
        .run(
            &["--json", "provisioning", "create", "--name", "Okta"],
            None,
        )
        .await
        .ok();
    let made: serde_json::Value =
        serde_json::from_str(ran.stdout.trim()).unwrap_or_else(|e| panic!("{e}: {}", ran.stdout));
    let id = made["id"].as_str().unwrap_or_default().to_owned();
    let secret = made["secret"].as_str().unwrap_or_default().to_owned();
    assert!(
        id.starts_with("prov_") && secret.starts_with("lkscim_"),
        "{made}"
    );

    let server = bin.serve(&[], None, None).await;
    let res = server
        .call(reqwest::Method::GET, "/scim/v2/Users", Some(&secret), None)
        .await;
    assert_eq!(res.status.as_u16(), 200, "{}", res.text);

    let ran = bin
        .run(&["--json", "provisioning", "list"], None)
        .await
        .ok();
    assert!(
        ran.stdout.contains(&id) && ran.stdout.contains("Okta"),
        "{}",
        ran.stdout
    );
    assert!(
        !ran.stdout.contains(&secret),
        "the secret is listed: {}",
        ran.stdout
    );

    bin.run(&["provisioning", "revoke", &id], None).await.ok();
    // In force when the command returns: the server looks the credential up every time.
    let res = server
        .call(reqwest::Method::GET, "/scim/v2/Users", Some(&secret), None)
        .await;
    assert_eq!(res.status.as_u16(), 401, "{}", res.text);
    bin.run(&["provisioning", "revoke", &id], None)
        .await
        .fails_with("no such provisioning credential");
    bin.run(&["provisioning", "create", "--name", ""], None)
        .await
        .fails_with("name");

    // The back office's credential, the same way: it opens /v1/admin, not /scim/v2.
    let ran = bin
        .run(
            &["--json", "operator-key", "create", "--name", "Back office"],
            None,
        )
        .await
        .ok();
    let made: serde_json::Value =
        serde_json::from_str(ran.stdout.trim()).unwrap_or_else(|e| panic!("{e}: {}", ran.stdout));
    let key_id = made["id"].as_str().unwrap_or_default().to_owned();
    let key = made["secret"].as_str().unwrap_or_default().to_owned();
    assert!(key.starts_with("lkop_"), "{made}");
    let res = server
        .call(reqwest::Method::GET, "/v1/admin/orgs", Some(&key), None)
        .await;
    assert_eq!(res.status.as_u16(), 200, "{}", res.text);
    let res = server
        .call(reqwest::Method::GET, "/scim/v2/Users", Some(&key), None)
        .await;
    assert_eq!(res.status.as_u16(), 401, "{}", res.text);
    let ran = bin.run(&["operator-key", "list"], None).await.ok();
    assert!(
        ran.stdout.contains(&key_id) && !ran.stdout.contains(&id),
        "{}",
        ran.stdout
    );
    // A provisioning credential's id is not an operator credential's.
    bin.run(&["operator-key", "revoke", &id], None)
        .await
        .fails_with("no such operator credential");
    bin.run(&["operator-key", "revoke", &key_id], None)
        .await
        .ok();
    let res = server
        .call(reqwest::Method::GET, "/v1/admin/orgs", Some(&key), None)
        .await;
    assert_eq!(res.status.as_u16(), 401, "{}", res.text);
    server.terminate().await;
}

#[tokio::test]
async fn user_update_switches_a_user_off() {
    let bin = Binary::fresh();
    bin.create_user("carol@example.com", PASSWORD).await;
    let ran = bin
        .run(
            &[
                "user",
                "update",
                "--email",
                "carol@example.com",
                "--disabled",
                "true",
            ],
            None,
        )
        .await
        .ok();
    assert_eq!(
        ran.stdout.trim(),
        "carol@example.com disabled=true api_tokens=on"
    );
    let ran = bin
        .run(
            &[
                "--json",
                "user",
                "update",
                "--email",
                "carol@example.com",
                "--disabled",
                "false",
                "--api-tokens",
                "off",
            ],
            None,
        )
        .await
        .ok();
    let out = json_out(&ran.stdout);
    assert_eq!(out["disabled"], false);
    assert_eq!(out["api_tokens_enabled"], false);
}

#[tokio::test]
async fn token_list_and_revoke_act_on_the_shared_database() {
    let bin = Binary::fresh();
    bin.create_user("dave@example.com", PASSWORD).await;

    // A token made through the service, as the API would, on the same database.
    // The binary's own configuration: the same database, whichever backend.
    let config = Config::load(Some(&bin.config), &latchkey::config::Overrides::default())
        .unwrap_or_else(|e| panic!("{e:#}"));
    let service = latchkey::app::build_service(&config, Arc::new(SystemClock))
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    let user = service
        .find_user_by_email("dave@example.com")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let request = CreatePersonalToken {
        name: "laptop".into(),
        token_type: None,
        expires_in_days: None,
        allowed_ips: None,
        password: SecretString::from(PASSWORD),
    };
    let created = match service
        .create_personal_token(&Caller::operator(), &user, request, None)
        .await
    {
        Ok(latchkey_service::tokens::Created::New(created)) => created,
        other => panic!("not created: {other:?}"),
    };
    let id = created.record.id.to_string();
    let secret = created.secret.expose().to_owned();

    let ran = bin.run(&["--json", "token", "list"], None).await.ok();
    assert!(!ran.stdout.contains(&secret), "token list printed a secret");
    let list = json_out(&ran.stdout);
    let listed = list
        .as_array()
        .and_then(|l| l.iter().find(|t| t["id"] == id.as_str()))
        .cloned();
    let listed = listed.unwrap_or_else(|| panic!("{id} not in {list}"));
    assert_eq!(listed["status"], "active");
    assert_eq!(listed["type"], "personal");
    assert_eq!(
        listed["owner"],
        json!({ "kind": "user", "id": user.id.to_string() })
    );
    assert_eq!(listed["hint"], created.record.hint.as_str());

    let ran = bin
        .run(
            &["--json", "token", "list", "--user", "dave@example.com"],
            None,
        )
        .await
        .ok();
    assert_eq!(json_out(&ran.stdout).as_array().map(Vec::len), Some(1));
    let ran = bin.run(&["token", "list"], None).await.ok();
    assert!(
        ran.stdout.contains(&id) && !ran.stdout.contains(&secret),
        "{}",
        ran.stdout
    );

    let ran = bin.run(&["token", "revoke", &id], None).await.ok();
    assert_eq!(ran.stdout.trim(), format!("{id} revoked"));
    let ran = bin.run(&["token", "revoke", &id], None).await.ok();
    assert_eq!(ran.stdout.trim(), format!("{id} was already revoked"));
    let ran = bin.run(&["--json", "token", "list"], None).await.ok();
    assert_eq!(json_out(&ran.stdout)[0]["status"], "revoked");

    match service
        .verify_bearer(
            &secret,
            "127.0.0.1".parse().unwrap_or_else(|e| panic!("{e}")),
        )
        .await
    {
        Err(ServiceError::Refused(Refusal::Revoked)) => {}
        other => panic!("the revoked token was not refused as revoked: {other:?}"),
    }
    bin.run(&["token", "revoke", "tok_0000000000000000000000"], None)
        .await
        .fails_with("no such token");
    bin.run(&["token", "revoke", "nonsense"], None)
        .await
        .fails_with("no such token");
}

#[tokio::test]
async fn bad_input_fails_cleanly() {
    let bin = Binary::fresh();
    bin.create_user("erin@example.com", PASSWORD).await;
    let org = bin
        .run(&["org", "create", "--name", "Erin Co"], None)
        .await
        .ok()
        .stdout
        .trim()
        .to_owned();

    bin.run(
        &[
            "user",
            "create",
            "--email",
            "erin@example.com",
            "--password-stdin",
        ],
        Some("yet another password\n"),
    )
    .await
    .fails_with("already exists");
    bin.run(
        &[
            "org",
            "add-member",
            "--org",
            &org,
            "--email",
            "erin@example.com",
            "--role",
            "boss",
        ],
        None,
    )
    .await
    .fails_with("admin, member or partner");
    bin.run(
        &[
            "org",
            "add-member",
            "--org",
            &org,
            "--email",
            "nobody@example.com",
            "--role",
            "admin",
        ],
        None,
    )
    .await
    .fails_with("no such user");
    bin.run(
        &[
            "org",
            "add-member",
            "--org",
            "org_0000000000000000000000",
            "--email",
            "erin@example.com",
            "--role",
            "admin",
        ],
        None,
    )
    .await
    .fails_with("no such organisation");
    bin.run(
        &[
            "user",
            "update",
            "--email",
            "nobody@example.com",
            "--disabled",
            "true",
        ],
        None,
    )
    .await
    .fails_with("no such user");
    bin.run(
        &[
            "user",
            "update",
            "--email",
            "erin@example.com",
            "--disabled",
            "maybe",
        ],
        None,
    )
    .await
    .fails_with("maybe");
    bin.run(
        &["org", "update", "--org", &org, "--api-tokens", "sometimes"],
        None,
    )
    .await
    .fails_with("sometimes");
    bin.run(
        &[
            "org",
            "create",
            "--name",
            "Bad",
            "--feature",
            "Not A Feature",
        ],
        None,
    )
    .await
    .fails_with("feature");
    bin.run(&["org", "create", "--name", ""], None)
        .await
        .fails_with("name");
    bin.run(
        &[
            "user",
            "create",
            "--email",
            "frank@example.com",
            "--password-stdin",
        ],
        Some(""),
    )
    .await
    .fails_with("no password");
    bin.run(
        &[
            "user",
            "create",
            "--email",
            "frank@example.com",
            "--password-stdin",
        ],
        Some("short\n"),
    )
    .await
    .fails_with("8 to 1024");
    bin.run(
        &[
            "user",
            "create",
            "--email",
            "not an email",
            "--password-stdin",
        ],
        Some("long enough password\n"),
    )
    .await
    .fails_with("email");
    // Passwords never go in arguments.
    bin.run(&["user", "create", "--email", "frank@example.com"], None)
        .await
        .fails_with("--password-stdin");
    bin.run(&["frobnicate"], None)
        .await
        .fails_with("frobnicate");

    // A configuration file that does not exist is named.
    let mut cmd = tokio::process::Command::new(crate::helpers::BINARY);
    cmd.args(["--config", "/nonexistent/latchkey.toml", "token", "list"]);
    let out = cmd.output().await.unwrap_or_else(|e| panic!("{e}"));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/latchkey.toml"));
}

#[tokio::test]
async fn every_subcommand_has_help() {
    let bin = Binary::fresh();
    let commands: &[&[&str]] = &[
        &[],
        &["serve"],
        &["user"],
        &["user", "create"],
        &["user", "update"],
        &["org"],
        &["org", "create"],
        &["org", "update"],
        &["org", "add-member"],
        &["org", "remove-member"],
        &["token"],
        &["token", "list"],
        &["token", "revoke"],
        &["provisioning"],
        &["provisioning", "create"],
        &["provisioning", "list"],
        &["provisioning", "revoke"],
        &["operator-key"],
        &["operator-key", "create"],
        &["operator-key", "list"],
        &["operator-key", "revoke"],
        &["config"],
        &["config", "example"],
        &["config", "types"],
    ];
    for command in commands {
        let mut args = command.to_vec();
        args.push("--help");
        let ran = bin.run(&args, None).await.ok();
        assert!(ran.stdout.contains("Usage:"), "{args:?}: {}", ran.stdout);
    }
}

#[tokio::test]
async fn the_server_obeys_a_revocation_made_by_the_cli_and_stops_on_sigterm() {
    let bin = Binary::fresh();
    bin.create_user("gina@example.com", PASSWORD).await;
    let server = bin.serve(&[], None, None).await;

    server
        .call(Method::GET, "/readyz", None, None)
        .await
        .expect(200);
    let res = server
        .call(
            Method::POST,
            "/v1/sessions",
            None,
            Some(json!({ "email": "gina@example.com", "password": PASSWORD })),
        )
        .await
        .expect(201);
    let session = res.str("session_token");
    let res = server
        .call(
            Method::POST,
            "/v1/user/tokens",
            Some(&session),
            Some(json!({ "name": "laptop", "password": PASSWORD })),
        )
        .await
        .expect(201);
    let id = res.str("id");
    let secret = res.str("secret");
    // Used, hence cached by the server.
    server
        .call(Method::GET, "/v1/me", Some(&secret), None)
        .await
        .expect(200);
    server
        .call(Method::GET, "/v1/me", Some(&secret), None)
        .await
        .expect(200);

    bin.run(&["token", "revoke", &id], None).await.ok();
    let revoked_at = Instant::now();
    let refused_after = loop {
        let res = server
            .call(Method::GET, "/v1/me", Some(&secret), None)
            .await;
        if res.status.as_u16() == 401 {
            crate::helpers::assert_refused(&res, "revoked");
            break revoked_at.elapsed();
        }
        assert_eq!(res.status.as_u16(), 200, "{}", res.text);
        assert!(
            revoked_at.elapsed() < Duration::from_secs(2),
            "the server still accepts a token revoked 2 s ago"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        refused_after <= Duration::from_secs(1),
        "the revocation took {refused_after:?} to be obeyed"
    );

    let status = server.terminate().await;
    assert!(
        status.success(),
        "latchkey serve exited with {status} on SIGTERM"
    );
}

/// SPEC 7: an operator command is in force when it returns. No waiting, no retry: the very
/// first request after the command exits sees the change.
#[tokio::test]
async fn a_cli_change_is_in_force_when_the_command_returns() {
    let bin = Binary::fresh();
    bin.create_user("hana@example.com", PASSWORD).await;
    let server = bin.serve(&[], None, None).await;
    let session = server
        .call(
            Method::POST,
            "/v1/sessions",
            None,
            Some(json!({ "email": "hana@example.com", "password": PASSWORD })),
        )
        .await
        .expect(201)
        .str("session_token");
    let secret = server
        .call(
            Method::POST,
            "/v1/user/tokens",
            Some(&session),
            Some(json!({ "name": "laptop", "password": PASSWORD })),
        )
        .await
        .expect(201)
        .str("secret");
    let me = || server.call(Method::GET, "/v1/me", Some(&secret), None);
    // Cached by the server.
    let accounts = me().await.expect(200).body["accounts"].clone();
    assert_eq!(accounts, json!([]));
    me().await.expect(200);

    // A membership added by the CLI is on the very next request.
    let org = bin
        .run(&["org", "create", "--name", "Night Shift"], None)
        .await
        .ok()
        .stdout
        .trim()
        .to_owned();
    bin.run(
        &[
            "org",
            "add-member",
            "--org",
            &org,
            "--email",
            "hana@example.com",
            "--role",
            "member",
        ],
        None,
    )
    .await
    .ok();
    let res = me().await.expect(200);
    assert_eq!(res.body["accounts"][0]["id"], org.as_str(), "{}", res.text);

    // Tokens switched off for the user: refused on the very next request.
    bin.run(
        &[
            "user",
            "update",
            "--email",
            "hana@example.com",
            "--api-tokens",
            "off",
        ],
        None,
    )
    .await
    .ok();
    assert_eq!(me().await.status.as_u16(), 401);

    // With the server gone, commands still work (nobody to tell).
    let status = server.terminate().await;
    assert!(status.success());
    bin.run(
        &[
            "user",
            "update",
            "--email",
            "hana@example.com",
            "--api-tokens",
            "on",
        ],
        None,
    )
    .await
    .ok();
}

/// SPEC 7: `latchkey status` lists the running instances; the CLI's kill switch waits for them.
#[tokio::test]
async fn status_lists_the_running_instance_and_the_kill_switch_waits_for_it() {
    let bin = Binary::fresh();
    bin.create_user("ivy@example.com", PASSWORD).await;
    let ran = bin.run(&["--json", "status"], None).await.ok();
    assert_eq!(json_out(&ran.stdout)["instances"], json!([]));

    let server = bin.serve(&[], None, None).await;
    let ran = bin.run(&["--json", "status"], None).await.ok();
    let status = json_out(&ran.stdout);
    let instances = status["instances"].as_array().unwrap();
    assert_eq!(instances.len(), 1, "{status}");
    assert_eq!(instances[0]["live"], true);
    assert_eq!(
        format!("http://{}", instances[0]["address"].as_str().unwrap()),
        server.url
    );
    assert!(instances[0]["id"].as_str().unwrap().starts_with("ins_"));

    let ran = bin
        .run(
            &["--json", "user", "revoke-all", "--email", "ivy@example.com"],
            None,
        )
        .await
        .ok();
    assert_eq!(
        json_out(&ran.stdout)["applied"],
        json!({ "instances": 1, "confirmed": 1 })
    );

    // A graceful stop unregisters it.
    assert!(server.terminate().await.success());
    let ran = bin.run(&["--json", "status"], None).await.ok();
    assert_eq!(json_out(&ran.stdout)["instances"], json!([]));
}
