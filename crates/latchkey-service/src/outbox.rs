//! The outbox worker (SPEC 6): sends the mails that changes wrote to the outbox, over SMTP when
//! `smtp_url` is set, else as `.eml` files under the data directory.
//!
//! A mail is leased before it is sent (so two workers never send the same one) and marked sent
//! only after the server accepted it; a failure keeps it and retries with exponential back-off.
//! So an outage or a crash loses nothing, and nothing is sent twice in normal operation (a crash
//! between the server's "250 OK" and the mark can repeat one mail: its Message-ID, the outbox id,
//! makes the duplicate recognisable). Must not compose mails (`mails.rs`) or decide who gets
//! them (`notifications.rs`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use latchkey_store::OutboxMail;
use lettre::message::{Mailbox, SinglePart};
use lettre::{AsyncSmtpTransport, AsyncTransport as _, Message, Tokio1Executor};
use tokio::sync::Notify;

use crate::Service;
use crate::error::{ServiceError, ServiceResult};

/// Mails taken per claim; each is leased for `LEASE` (well above a batch's worst case).
const BATCH: u32 = 10;
const LEASE: time::Duration = time::Duration::minutes(5);
/// Claims per round, so a huge backlog does not hold the worker from its shutdown signal.
const MAX_BATCHES_PER_ROUND: usize = 50;
const FIRST_RETRY_SECS: i64 = 5;
const MAX_RETRY_SECS: i64 = 600;

/// Mail settings, from the binary's configuration.
#[derive(Debug, Clone)]
pub struct MailSettings {
    /// `smtp://host:port` (no TLS), `smtp://host:port?tls=required` (STARTTLS) or
    /// `smtps://host:port` (TLS), with optional `user:password@`. None: `.eml` files.
    pub smtp_url: Option<String>,
    /// The From header, like `Latchkey <latchkey@localhost>`.
    pub mail_from: String,
    /// Where `.eml` files go without SMTP (`<data_dir>/mail`).
    pub mail_dir: PathBuf,
    /// How long one SMTP exchange may take before it counts as a failure (and the mail waits
    /// for its next try).
    pub smtp_timeout: Duration,
}

impl Default for MailSettings {
    fn default() -> Self {
        Self {
            smtp_url: None,
            mail_from: "Latchkey <latchkey@localhost>".to_owned(),
            mail_dir: PathBuf::from("./latchkey-data/mail"),
            smtp_timeout: Duration::from_secs(15),
        }
    }
}

enum Transport {
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    Files(PathBuf),
}

pub(crate) struct Outbox {
    transport: Transport,
    from: Mailbox,
    wake: Arc<Notify>,
    /// Set on shutdown: a round in progress stops between two mails instead of running on.
    stopping: std::sync::atomic::AtomicBool,
    /// One whole SMTP exchange, greeting to the answer to the message. lettre's own timeout
    /// bounds only the connection on its async transport: a server that accepted and then said
    /// nothing held a send (and the worker) until it hung up.
    smtp_timeout: Duration,
}

/// The wait before try number `attempts + 1`: 5 s, 10 s, 20 s, … capped at 10 minutes.
pub fn retry_delay_secs(attempts: u32) -> i64 {
    let doublings = attempts.saturating_sub(1).min(20);
    (FIRST_RETRY_SECS << doublings).min(MAX_RETRY_SECS)
}

/// `smtp://user:pass@host` without `tls=required` would send the password in the clear;
/// that is allowed only to this machine (a local relay).
fn password_in_clear(url: &str) -> bool {
    let Some(rest) = url.strip_prefix("smtp://") else {
        return false;
    };
    let (before_query, query) = rest.split_once('?').unwrap_or((rest, ""));
    let authority = before_query.split('/').next().unwrap_or_default();
    let Some((credentials, host_port)) = authority.rsplit_once('@') else {
        return false;
    };
    if credentials.is_empty() || query.split('&').any(|p| p == "tls=required") {
        return false;
    }
    let host = host_port
        .rsplit_once(':')
        .map_or(host_port, |(host, _)| host)
        .trim_start_matches('[')
        .trim_end_matches(']');
    !matches!(host, "127.0.0.1" | "localhost" | "::1")
}

impl Outbox {
    pub(crate) fn new(settings: &MailSettings) -> ServiceResult<Self> {
        let from: Mailbox = settings
            .mail_from
            .parse()
            .map_err(|e| ServiceError::Internal(format!("mail_from is not a mail address: {e}")))?;
        let transport = match &settings.smtp_url {
            // The URL may hold a password: errors name the problem, never the URL.
            Some(url) if password_in_clear(url) => {
                return Err(ServiceError::Internal(
                    "smtp_url sends a password without TLS to another host: use smtps:// or \
                     ?tls=required"
                        .into(),
                ));
            }
            Some(url) => Transport::Smtp(
                AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
                    .map_err(|e| ServiceError::Internal(format!("smtp_url does not parse: {e}")))?
                    .timeout(Some(settings.smtp_timeout))
                    .build(),
            ),
            None => Transport::Files(settings.mail_dir.clone()),
        };
        Ok(Self {
            transport,
            from,
            wake: Arc::new(Notify::new()),
            stopping: std::sync::atomic::AtomicBool::new(false),
            smtp_timeout: settings.smtp_timeout,
        })
    }

    /// What wakes the worker, for the after-commit path.
    pub(crate) fn waker(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    /// Sends one mail, or gives up as soon as the process is stopping: a server that says
    /// nothing would otherwise hold a SIGTERM for the whole SMTP timeout. A mail given up is
    /// handed back, due at once, for the next start (it may have reached the server: SMTP is
    /// at least once, and its Message-ID lets a reader drop the repeat).
    async fn send_unless_stopping(&self, mail: &OutboxMail) -> Result<(), SendError> {
        let stopping = async {
            while !self.stopping.load(std::sync::atomic::Ordering::Acquire) {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        };
        tokio::select! {
            sent = self.send(mail) => sent,
            () = stopping => Err(SendError {
                text: "not finished: the server is shutting down".to_owned(),
                server_down: true,
            }),
        }
    }

    async fn send(&self, mail: &OutboxMail) -> Result<(), SendError> {
        let about_this_mail = |text: String| SendError {
            text,
            server_down: false,
        };
        let to: Mailbox = mail
            .recipient
            .as_str()
            .parse()
            .map_err(|e| about_this_mail(format!("recipient is not a mail address: {e}")))?;
        let message = Message::builder()
            .message_id(Some(format!("<{}@latchkey>", mail.id)))
            .from(self.from.clone())
            .to(to)
            .subject(mail.subject.clone())
            .date(SystemTime::from(mail.created_at))
            // A MIME part (not a raw body) so the message says `MIME-Version: 1.0`, which its
            // UTF-8 quoted-printable text needs (RFC 2045).
            .singlepart(SinglePart::plain(mail.body.clone()))
            .map_err(|e| about_this_mail(format!("cannot build the message: {e}")))?;
        match &self.transport {
            Transport::Smtp(smtp) => {
                match tokio::time::timeout(self.smtp_timeout, smtp.send(message)).await {
                    // No answer in time says the server cannot take mail now. (Cut after the
                    // message went, it may have been delivered: the next try sends it again, with
                    // the same Message-ID.)
                    Err(_) => Err(SendError {
                        text: format!(
                            "SMTP: no answer within {} s",
                            self.smtp_timeout.as_secs_f64()
                        ),
                        server_down: true,
                    }),
                    Ok(sent) => sent.map(|_| ()).map_err(|e| SendError {
                        text: format!("SMTP: {e}"),
                        // An answer with a code is about this message (a refused or greylisted
                        // recipient: 4xx or 5xx), except 421, the server closing; no answer at all (no
                        // connection, a timeout, TLS) says the server cannot take mail now. So one
                        // stuck mailbox never holds back everyone else's mail.
                        server_down: e.status().is_none_or(|code| u16::from(code) == 421),
                    }),
                }
            }
            Transport::Files(dir) => {
                let dir = dir.clone();
                let name = mail.id.to_string();
                let bytes = message.formatted();
                let down = |text: String| SendError {
                    text,
                    server_down: true,
                };
                tokio::task::spawn_blocking(move || write_eml(&dir, &name, &bytes))
                    .await
                    .map_err(|e| down(format!("mail file task: {e}")))?
                    .map_err(|e| down(format!("cannot write the mail file: {e}")))
            }
        }
    }
}

struct SendError {
    text: String,
    /// The transport cannot take mail now: the rest of the round would fail the same way.
    server_down: bool,
}

/// Writes `<dir>/<name>.eml` through a temporary file and a rename, so a crash never leaves
/// half a message under the final name.
fn write_eml(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".{name}.eml.tmp"));
    // Readable by the service's user only: a mail may carry a cancel link.
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&tmp, dir.join(format!("{name}.eml")))?;
    // The rename itself must survive a power cut before the row is marked sent.
    std::fs::File::open(dir)?.sync_all()
}

impl Service {
    /// Runs the outbox worker until `shutdown` changes: every second, at once when a change
    /// wrote mails, and the expiry-notice sweep every minute.
    pub async fn run_outbox(self: Arc<Self>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let mut sweep = tokio::time::interval(Duration::from_secs(60));
        // A round (up to 500 mails, each allowed the SMTP timeout) must not hold up a SIGTERM:
        // the flag makes it stop between two mails and hand the rest back.
        let service = self.clone();
        let mut stop = shutdown.clone();
        tokio::spawn(async move {
            let _ = stop.wait_for(|stop| *stop).await;
            service
                .outbox
                .stopping
                .store(true, std::sync::atomic::Ordering::Release);
        });
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = self.outbox.wake.notified() => {}
                _ = sweep.tick() => {
                    if let Err(e) = self.send_expiry_notices().await {
                        tracing::warn!(error = %e, "could not send the expiry notices; will retry");
                    }
                }
                _ = shutdown.changed() => break,
            }
            if let Err(e) = self.deliver_mails().await {
                tracing::warn!(error = %e, "could not read the outbox; will retry");
            }
        }
    }

    /// The mail as it is sent: its sealed part (a cancel link's code), opened under the master
    /// key, in the place the stored body keeps for it.
    fn with_sealed_part(&self, mail: &OutboxMail) -> Result<OutboxMail, String> {
        let Some(sealed) = &mail.sealed else {
            return Ok(mail.clone());
        };
        let part = self
            .master_key
            .open(sealed, &crate::notifications::sealed_part_aad(&mail.id))
            .map_err(|_| "the sealed part does not open under this master key".to_owned())?;
        let part = String::from_utf8(part).map_err(|_| "the sealed part is not text".to_owned())?;
        let mut whole = mail.clone();
        whole.body = mail.body.replace(crate::mails::SEALED_SLOT, &part);
        whole.sealed = None;
        Ok(whole)
    }

    /// Sends the mails that are due now, once each; returns how many were sent. The worker
    /// calls it; tests may too (leases keep the two from sending the same mail).
    pub async fn deliver_mails(&self) -> ServiceResult<usize> {
        let mut sent = 0;
        let mut failed = 0;
        let mut first_error: Option<String> = None;
        'round: for _ in 0..MAX_BATCHES_PER_ROUND {
            let now = self.now();
            let mut batch = self.store.claim_mails(now, now + LEASE, BATCH).await?;
            // The store returns the batch in no particular order: oldest first here, so that
            // sending is the same on both backends and from one round to the next.
            batch.sort_by(|a, b| (a.created_at, a.id.as_str()).cmp(&(b.created_at, b.id.as_str())));
            if batch.is_empty() {
                break;
            }
            let mut down: Option<String> = None;
            for mail in batch {
                // With the server down, the rest of the batch is not tried (each try could take
                // the whole timeout and hold up shutdown): it is released with the same back-off.
                let stopping = self
                    .outbox
                    .stopping
                    .load(std::sync::atomic::Ordering::Acquire);
                if stopping && down.is_none() {
                    down = Some("the server is shutting down".to_owned());
                }
                let result = match (&down, self.with_sealed_part(&mail)) {
                    (Some(text), _) => Err(format!("not tried: {text}")),
                    (None, Err(e)) => Err(e),
                    (None, Ok(whole)) => {
                        self.outbox.send_unless_stopping(&whole).await.map_err(|e| {
                            if e.server_down {
                                down = Some(e.text.clone());
                            }
                            e.text
                        })
                    }
                };
                match result {
                    Ok(()) => {
                        self.store.mark_mail_sent(&mail.id, self.now()).await?;
                        self.metrics.mail_sent();
                        sent += 1;
                    }
                    Err(error) => {
                        // Handed back at shutdown: due again at once, for the next start.
                        let delay = if stopping
                            || self
                                .outbox
                                .stopping
                                .load(std::sync::atomic::Ordering::Acquire)
                        {
                            0
                        } else {
                            retry_delay_secs(mail.attempts)
                        };
                        let next = self.now() + time::Duration::seconds(delay);
                        self.store.mark_mail_failed(&mail.id, next, &error).await?;
                        self.metrics.mail_failed();
                        failed += 1;
                        first_error.get_or_insert(error);
                    }
                }
            }
            if down.is_some() {
                break 'round;
            }
        }
        // Said once per round, not once per mail: an outage would otherwise flood the log.
        if let Some(error) = first_error {
            tracing::warn!(failed, sent, error = %error, "could not send mails; they stay in the outbox and will be retried");
        }
        Ok(sent)
    }

    /// Mails in the outbox not yet sent (for tests and operators).
    pub async fn unsent_mails(&self) -> ServiceResult<u64> {
        Ok(self.store.count_unsent_mails().await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_exponentially_up_to_ten_minutes() {
        let delays: Vec<i64> = (1..=9).map(retry_delay_secs).collect();
        assert_eq!(delays, [5, 10, 20, 40, 80, 160, 320, 600, 600]);
        assert_eq!(retry_delay_secs(0), 5);
        assert_eq!(retry_delay_secs(u32::MAX), 600);
    }

    #[tokio::test]
    async fn the_default_sender_and_urls_parse() {
        let settings = MailSettings::default();
        assert!(Outbox::new(&settings).is_ok());
        for url in [
            "smtp://127.0.0.1:2525",
            "smtp://mail.example.com:587?tls=required",
            "smtps://user:pass@mail.example.com:465",
        ] {
            let settings = MailSettings {
                smtp_url: Some(url.to_owned()),
                ..MailSettings::default()
            };
            assert!(Outbox::new(&settings).is_ok(), "{url}");
        }
        for bad in [
            "ftp://nope",
            "smtp://user:pass@mail.example.com:587",
            "smtp://user:pass@mail.example.com:587?tls=opportunistic",
        ] {
            let bad = MailSettings {
                smtp_url: Some(bad.to_owned()),
                ..MailSettings::default()
            };
            assert!(Outbox::new(&bad).is_err(), "{:?}", bad.smtp_url);
        }
        let local = MailSettings {
            smtp_url: Some("smtp://user:pass@127.0.0.1:25".to_owned()),
            ..MailSettings::default()
        };
        assert!(Outbox::new(&local).is_ok());
    }

    #[test]
    fn eml_files_appear_whole() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        write_eml(dir.path(), "mail_x", b"Subject: hi\r\n\r\nbody")
            .unwrap_or_else(|e| panic!("{e}"));
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap_or_else(|e| panic!("{e}"))
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .collect();
        assert_eq!(names, ["mail_x.eml"]);
    }
}
