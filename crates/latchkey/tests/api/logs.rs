//! No secret in the logs (SECURITY.md, invariant 5): the real server, at debug level, through a
//! whole life cycle, and every secret the test saw looked for in everything it wrote.

use latchkey_core::{Prefix, TokenSecret};
use reqwest::Method;
use serde_json::json;

use crate::helpers::{Binary, assert_refused};

/// The 43-character random part of a token string (`<prefix>_<random><check>`).
fn random_part(secret: &str) -> String {
    let (_, body) = secret
        .split_once('_')
        .unwrap_or_else(|| panic!("not a token: {secret}"));
    body.chars().take(43).collect()
}

#[tokio::test]
async fn no_secret_reaches_the_logs_at_debug_level() {
    let bin = Binary::fresh();
    let password = "Log-Test passphrase 7f3c91ab";
    let wrong_password = "Wrong-Guess passphrase 55e0d2c4";
    let mut secrets: Vec<String> = vec![password.to_owned(), wrong_password.to_owned()];

    let created = bin
        .run(
            &[
                "user",
                "create",
                "--email",
                "logs@example.com",
                "--password-stdin",
            ],
            Some(&format!("{password}\n")),
        )
        .await
        .ok();
    let mut cli_output = created.stdout + &created.stderr;

    let stdout_path = bin.dir.path().join("serve.stdout");
    let stderr_path = bin.dir.path().join("serve.stderr");
    let file = |p: &std::path::Path| {
        std::fs::File::create(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    };
    let server = bin
        .serve(
            &[("LATCHKEY_LOG", "debug")],
            Some(&stdout_path),
            Some(file(&stderr_path)),
        )
        .await;

    // Sign in, make a token, use it, rotate it, use the new one, revoke it.
    let res = server
        .call(
            Method::POST,
            "/v1/sessions",
            None,
            Some(json!({ "email": "logs@example.com", "password": password })),
        )
        .await
        .expect(201);
    let session = res.str("session_token");
    secrets.push(session.clone());
    let res = server
        .call(
            Method::POST,
            "/v1/user/tokens",
            Some(&session),
            Some(json!({ "name": "laptop", "password": password })),
        )
        .await
        .expect(201);
    let first_id = res.str("id");
    let first = res.str("secret");
    secrets.push(first.clone());
    server
        .call(Method::GET, "/v1/me", Some(&first), None)
        .await
        .expect(200);

    let res = server
        .call(
            Method::POST,
            &format!("/v1/user/tokens/{first_id}/rotate"),
            Some(&session),
            Some(json!({ "grace": "1h", "password": password })),
        )
        .await
        .expect(201);
    let second_id = res.str("id");
    let second = res.str("secret");
    secrets.push(second.clone());
    server
        .call(Method::GET, "/v1/me", Some(&second), None)
        .await
        .expect(200);
    server
        .call(Method::GET, "/v1/me", Some(&first), None)
        .await
        .expect(200);

    server
        .call(
            Method::POST,
            &format!("/v1/user/tokens/{second_id}/revoke"),
            Some(&session),
            Some(json!({ "password": wrong_password })),
        )
        .await
        .expect(403);
    server
        .call(
            Method::POST,
            &format!("/v1/user/tokens/{second_id}/revoke"),
            Some(&session),
            Some(json!({ "password": password })),
        )
        .await
        .expect(200);
    assert_refused(
        &server
            .call(Method::GET, "/v1/me", Some(&second), None)
            .await,
        "revoked",
    );

    // Failures: a wrong password at sign-in, a token with a broken checksum, an unknown token,
    // a token sent in the query string (refused, and not to be logged either).
    server
        .call(
            Method::POST,
            "/v1/sessions",
            None,
            Some(json!({ "email": "logs@example.com", "password": wrong_password })),
        )
        .await
        .expect(401);
    let mut broken = first.clone().into_bytes();
    let last = broken.len() - 1;
    broken[last] = if broken[last] == b'Q' { b'R' } else { b'Q' };
    let broken = String::from_utf8(broken).unwrap_or_else(|e| panic!("{e}"));
    secrets.push(broken.clone());
    assert_refused(
        &server
            .call(Method::GET, "/v1/me", Some(&broken), None)
            .await,
        "malformed",
    );
    let unknown = TokenSecret::generate(
        &Prefix::parse("lkp").unwrap_or_else(|e| panic!("{e}")),
        [42; 32],
    );
    secrets.push(unknown.expose().to_owned());
    assert_refused(
        &server
            .call(Method::GET, "/v1/me", Some(unknown.expose()), None)
            .await,
        "unknown",
    );
    server
        .call(
            Method::GET,
            &format!("/v1/me?access_token={first}"),
            None,
            None,
        )
        .await
        .expect(401);

    // The operator CLI, on the same database, at debug level too.
    let mut cmd = bin.command();
    cmd.env("LATCHKEY_LOG", "debug")
        .args(["token", "revoke", &first_id]);
    let out = cmd.output().await.unwrap_or_else(|e| panic!("{e}"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    cli_output.push_str(&String::from_utf8_lossy(&out.stdout));
    cli_output.push_str(&String::from_utf8_lossy(&out.stderr));
    server
        .call(Method::DELETE, "/v1/sessions/current", Some(&session), None)
        .await
        .expect(204);

    let status = server.terminate().await;
    assert!(status.success(), "latchkey serve exited with {status}");

    let stderr = std::fs::read_to_string(&stderr_path).unwrap_or_else(|e| panic!("{e}"));
    let stdout = std::fs::read_to_string(&stdout_path).unwrap_or_else(|e| panic!("{e}"));
    let logs = format!("{stderr}{stdout}");
    assert!(
        stderr.lines().count() > 20,
        "the debug log is nearly empty: {stderr:?}"
    );
    assert!(
        logs.contains("latchkey is listening"),
        "no start-up line in the log"
    );
    assert!(
        logs.contains("DEBUG"),
        "no debug lines in the log despite LATCHKEY_LOG=debug"
    );
    assert!(
        logs.contains(&first_id),
        "the log does not even name the token ids"
    );

    let mut needles = Vec::new();
    for secret in &secrets {
        needles.push(secret.clone());
        if secret.starts_with("lk") {
            needles.push(random_part(secret));
        }
    }
    for needle in &needles {
        for (name, text) in [("server log", &logs), ("CLI output", &cli_output)] {
            if let Some(line) = text.lines().find(|l| l.contains(needle.as_str())) {
                let masked = line.replace(needle.as_str(), "<SECRET>");
                panic!(
                    "a secret ({}…) appears in the {name}: {masked}",
                    &needle[..8]
                );
            }
        }
    }
}
