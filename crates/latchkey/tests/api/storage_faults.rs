//! Storage faults on SQLite (issue 14, docs/RELIABILITY.md): the disk full, and a start on a
//! file system mounted read-only. The data directory
//! is a small tmpfs the test mounts (it runs as root, as `scripts/test` does on its machines;
//! without the right to mount it fails, saying so), the real binary serves from it, and the
//! disk is filled to the last byte under writes: every answer is a success or a 503 with
//! `Retry-After`, never a 500; what was acknowledged stays; once space is back the same
//! process takes writes again by itself, and stops cleanly.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::json;

use crate::helpers::{Binary, PASSWORD, Server};

/// A tmpfs mounted for the test, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Self {
        std::fs::create_dir_all(at).unwrap();
        mount(
            &[
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ],
            at,
        );
        Self(at.to_path_buf())
    }

    /// `mount -o remount,<mode>`: `ro` or `rw` (refused while a file is open for writing).
    fn remount(&self, mode: &str) {
        mount(&["-o", &format!("remount,{mode}")], &self.0);
    }
}

/// `mount ARGS AT`, failing the test with what mount said (the tests need root or
/// CAP_SYS_ADMIN).
fn mount(args: &[&str], at: &Path) {
    let out = std::process::Command::new("mount")
        .args(args)
        .arg(at)
        .output()
        .unwrap_or_else(|e| panic!("run mount: {e}"));
    assert!(
        out.status.success(),
        "mount {args:?} {} (the storage-fault tests need root or CAP_SYS_ADMIN) failed: {}",
        at.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// Fills the file system of `dir` to its last byte; returns the filler's path.
fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("filler");
    let mut file = std::fs::File::create(&path).unwrap();
    let chunk = vec![0u8; 64 * 1024];
    while file.write_all(&chunk).is_ok() {}
    let one = [0u8; 1];
    while file.write_all(&one).is_ok() {}
    let _ = file.sync_all();
    path
}

async fn create(server: &Server, session: &str, org: &str, name: &str) -> crate::helpers::Resp {
    server
        .call(
            Method::POST,
            &format!("/v1/orgs/{org}/tokens"),
            Some(session),
            Some(json!({ "name": name, "type": "svc" })),
        )
        .await
}

#[tokio::test]
async fn a_full_disk_is_503_nothing_acknowledged_is_lost_and_writes_come_back_by_themselves() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let _tmpfs = Tmpfs::mount(&data, "8m");
    let bin = Binary::on_database(
        &format!("sqlite://{}", data.join("latchkey.db").display()),
        None,
    );
    // The database (and its journal) on the tmpfs; the rest of the data directory elsewhere.
    bin.append_config(
        "[token_types.svc]\nowner = \"organisation\"\nprefix = \"lksv\"\nmax_active = 100000\n",
    );
    bin.create_user("full@example.com", PASSWORD).await;
    let org = bin.org_with_admin("Full Disk", "full@example.com").await;
    let log = bin.dir.path().join("serve.log");
    let server = bin
        .serve(&[], None, Some(std::fs::File::create(&log).unwrap()))
        .await;
    let session = server.login("full@example.com").await;
    let log_tail = || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        text.lines().rev().take(15).collect::<Vec<_>>().join("\n")
    };

    let mut acknowledged = Vec::new();
    for i in 0..5 {
        let res = create(&server, &session, &org, &format!("before-{i}")).await;
        assert_eq!(res.status, 201, "{}", res.text);
        acknowledged.push(res.str("secret"));
    }

    // Not a byte left.
    let filler = fill(&data);
    let (mut refused, mut answered) = (0, 0);
    for i in 0..20 {
        let res = create(&server, &session, &org, &format!("during-{i}")).await;
        match res.status.as_u16() {
            201 => acknowledged.push(res.str("secret")),
            503 => {
                assert!(
                    res.header("retry-after").is_some(),
                    "503 without Retry-After"
                );
                assert_eq!(res.code(), "unavailable", "{}", res.text);
                refused += 1;
            }
            other => panic!(
                "with the disk full a write answered {other}: {}\nthe server's log, newest first:\n{}",
                res.text,
                log_tail()
            ),
        }
        answered += 1;
    }
    assert!(
        refused > 0,
        "the disk never looked full ({answered} writes answered 201)"
    );
    // Reading still works: verification needs no write on its path.
    for secret in &acknowledged {
        let res = server.call(Method::GET, "/v1/me", Some(secret), None).await;
        assert_eq!(res.status, 200, "{}", res.text);
    }

    // Space back: the same process takes writes again by itself.
    std::fs::remove_file(&filler).unwrap();
    let started = Instant::now();
    loop {
        let res = create(&server, &session, &org, "after").await;
        if res.status == 201 {
            acknowledged.push(res.str("secret"));
            break;
        }
        assert_eq!(res.status, 503, "{}", res.text);
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "writes did not come back within 15 s of the space"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let status = server.terminate().await;
    assert!(status.success(), "{status:?}");

    // A fresh start on the same file: everything acknowledged is there.
    let server = bin.serve(&[], None, None).await;
    for secret in &acknowledged {
        let res = server.call(Method::GET, "/v1/me", Some(secret), None).await;
        assert_eq!(res.status, 200, "{}", res.text);
    }
    println!(
        "disk full: {refused} of {answered} writes answered 503 (the rest 201), {} acknowledged tokens all there after the space came back and a restart",
        acknowledged.len()
    );
    let status = server.terminate().await;
    assert!(status.success(), "{status:?}");
}

/// Every file of `dir` and its bytes.
fn contents(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut files: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.path().is_file())
        .map(|e| (e.path(), std::fs::read(e.path()).unwrap()))
        .collect();
    files.sort();
    files
}

/// The database on a file system mounted read-only (as Linux does after a disk error): `serve`
/// refuses to start and says why (a running server cannot be caught that way: Linux refuses
/// the remount while the database is open for writing); not a byte changes, and once the file
/// system is writable again the same database serves what it had.
#[tokio::test]
async fn a_start_on_a_read_only_database_is_refused_with_the_reason_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let tmpfs = Tmpfs::mount(&data, "8m");
    let bin = Binary::on_database(
        &format!("sqlite://{}", data.join("latchkey.db").display()),
        None,
    );
    bin.create_user("ro@example.com", PASSWORD).await;
    let server = bin.serve(&[], None, None).await;
    let session = server.login("ro@example.com").await;
    let (_, secret) = server.personal_token(&session, "kept").await;
    assert!(server.terminate().await.success());
    let before = contents(&data);

    tmpfs.remount("ro");
    let started = Instant::now();
    let ran = bin
        .run(&["serve", "--listen", "127.0.0.1:0"], None)
        .await
        .fails_with("Read-only file system");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "the refusal took {:?}",
        started.elapsed()
    );
    assert!(
        ran.stderr.contains("cannot open the SQLite database"),
        "{}",
        ran.stderr
    );
    assert_eq!(contents(&data), before, "a refused start changed the data");

    tmpfs.remount("rw");
    let server = bin.serve(&[], None, None).await;
    let res = server
        .call(Method::GET, "/v1/me", Some(&secret), None)
        .await;
    assert_eq!(res.status, 200, "{}", res.text);
    assert!(server.terminate().await.success());
}
