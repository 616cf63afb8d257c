//! The running server's control socket, so that an operator command is in force when it
//! returns (SPEC 7). `latchkey serve` listens on `<data_dir>/control.sock`; a CLI command that
//! changed the database connects after its commit, says `apply`, and waits until the server has
//! applied the store's change log (what the change altered) and answered `applied`. Without the
//! socket, the server would notice at its next poll of the log (up to 250 ms later), and a token switched off by the CLI could still work right after the
//! command returned.
//!
//! With no server running (no socket, or a stale one nobody listens on) there is nothing to
//! tell. A server that does not answer within [`CONFIRM_WITHIN`] fails the command, saying
//! that the change is committed but not yet confirmed. After the socket, the CLI also waits
//! until every live registered instance (`instances.rs`: on PostgreSQL, the other machines,
//! woken by the change's notification) reports in its heartbeat that it applied the log that
//! far.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use latchkey_service::Service;
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::watch;

pub const CONFIRM_WITHIN: Duration = Duration::from_secs(2);
const APPLY: &str = "apply";
const APPLIED: &str = "applied";

pub fn socket_path(data_dir: &Path) -> PathBuf {
    data_dir.join("control.sock")
}

/// Binds the socket (replacing a stale one), readable by the service's user only.
pub fn bind(data_dir: &Path) -> anyhow::Result<UnixListener> {
    use std::os::unix::fs::PermissionsExt as _;
    let path = socket_path(data_dir);
    match std::fs::remove_file(&path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(e).with_context(|| format!("cannot replace {}", path.display()));
        }
        _ => {}
    }
    let listener =
        UnixListener::bind(&path).with_context(|| format!("cannot bind {}", path.display()))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("cannot restrict {}", path.display()))?;
    Ok(listener)
}

/// Answers `apply` requests until `stop` turns true, then removes the socket.
pub async fn serve(
    listener: UnixListener,
    data_dir: PathBuf,
    service: Arc<Service>,
    mut stop: watch::Receiver<bool>,
) {
    let stopping = async move {
        let _ = stop.wait_for(|stop| *stop).await;
    };
    tokio::pin!(stopping);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut stopping => break,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::warn!(error = %e, "control socket: could not accept");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let service = service.clone();
        tokio::spawn(async move {
            if let Err(e) = answer(stream, &service).await {
                tracing::debug!(error = %e, "control socket: a client went away");
            }
        });
    }
    let _ = std::fs::remove_file(socket_path(&data_dir));
}

async fn answer(stream: UnixStream, service: &Service) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    while let Some(line) = tokio::time::timeout(CONFIRM_WITHIN, lines.next_line())
        .await
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??
    {
        if line.trim() == APPLY {
            service.poll_changes().await;
            write.write_all(format!("{APPLIED}\n").as_bytes()).await?;
        }
    }
    Ok(())
}

/// Called by a CLI command after its change committed: returns once the running server (if
/// any) has applied it.
pub async fn apply_on_running_server(data_dir: &Path) -> anyhow::Result<()> {
    let path = socket_path(data_dir);
    let stream = match UnixStream::connect(&path).await {
        Ok(stream) => stream,
        // No server, or a socket left by one that died: nobody to tell.
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Ok(());
        }
        Err(e) => {
            return Err(e).with_context(|| {
                format!(
                    "the change is committed, but the running server could not be told ({})",
                    path.display()
                )
            });
        }
    };
    let confirmed = tokio::time::timeout(CONFIRM_WITHIN, async {
        let (read, mut write) = stream.into_split();
        write.write_all(format!("{APPLY}\n").as_bytes()).await?;
        let mut lines = BufReader::new(read).lines();
        let line = lines.next_line().await?;
        Ok::<bool, std::io::Error>(line.as_deref() == Some(APPLIED))
    })
    .await;
    match confirmed {
        Ok(Ok(true)) => Ok(()),
        _ => anyhow::bail!(
            "the change is committed, but the running server did not confirm it within {} s; \
             it will apply it at its next poll",
            CONFIRM_WITHIN.as_secs()
        ),
    }
}
