//! Wiring: storage, service and router; serving until shutdown; the demo data.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use latchkey_core::Clock;
use latchkey_http::AppState;
use latchkey_service::master_key::MasterKey;
use latchkey_service::{Service, ServiceSettings, SystemClock};
use latchkey_store::Store;
use latchkey_store::postgres::PgStore;
use latchkey_store::sqlite::SqliteStore;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::Config;

/// Opens the configured database (creating the data directory on first start: on PostgreSQL
/// too, it holds the control socket and the mail files, and the master key may be elsewhere).
pub async fn open_store(config: &Config) -> anyhow::Result<Arc<dyn Store>> {
    let url = config.database_url();
    std::fs::create_dir_all(&config.data_dir).with_context(|| {
        format!(
            "cannot create the data directory {}",
            config.data_dir.display()
        )
    })?;
    if url.starts_with("sqlite:") {
        let store = SqliteStore::connect(&url)
            .await
            .context("cannot open the SQLite database")?;
        Ok(Arc::new(store))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let store = PgStore::connect_with(
            &url,
            config.database_max_connections,
            config.database_acquire_timeout.to_std(),
        )
        .await
        .context("cannot open the PostgreSQL database")?;
        Ok(Arc::new(store))
    } else {
        anyhow::bail!(
            "unsupported database_url: it must start with sqlite://, postgres:// or postgresql://"
        )
    }
}

pub async fn build_service(config: &Config, clock: Arc<dyn Clock>) -> anyhow::Result<Arc<Service>> {
    let store = open_store(config).await?;
    let settings = ServiceSettings {
        public_url: config.public_url(),
        session_ttl: config.session_ttl,
        session_idle_timeout: config.session_idle_timeout,
        password_hash_concurrency: config
            .password_hash_concurrency
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get())),
        limits: config.limits.settings(),
        signing_alg: config.signing_alg()?,
        key_publish_ahead: config.oauth.key_publish_ahead,
        access_token_ttl: config.oauth.access_token_ttl,
        code_ttl: config.oauth.code_ttl,
        refresh_token_ttl: config.oauth.refresh_token_ttl,
        mail: config.mail_settings(),
        sso: config.sso_settings()?,
        outbound: config.outbound_settings(),
    };
    let master_key = load_or_create_master_key(&config.master_key_file())?;
    let service = Service::new(store, clock, config.token_types()?, settings, master_key)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    service
        .init()
        .await
        .map_err(|e| anyhow::anyhow!("cannot load the signing keys: {e}"))?;
    Ok(Arc::new(service))
}

/// Reads the master key file, creating it (mode 0600) on first start. Share it between
/// instances; lose it and revealable secrets and signing keys cannot be read back.
fn load_or_create_master_key(path: &std::path::Path) -> anyhow::Result<MasterKey> {
    if !path.exists() {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        let text = MasterKey::generate_hex().map_err(|e| anyhow::anyhow!("{e}"))?;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        match options.open(path) {
            Ok(mut file) => {
                use std::io::Write as _;
                file.write_all(text.as_bytes())
                    .and_then(|()| file.sync_all())
                    .with_context(|| {
                        format!("cannot write the master key file {}", path.display())
                    })?;
                tracing::info!(path = %path.display(), "created a new master key file");
            }
            // Another process created it first: use theirs.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => {
                return Err(e).with_context(|| {
                    format!("cannot create the master key file {}", path.display())
                });
            }
        }
    }
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the master key file {}", path.display()))?;
    MasterKey::from_hex(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

/// A server that is listening. Dropping it does not stop it: call [`Running::shutdown`].
pub struct Running {
    pub addr: SocketAddr,
    pub service: Arc<Service>,
    shutdown: watch::Sender<bool>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Running {
    /// Stops accepting, finishes requests in flight, flushes pending usage, and returns.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        let _ = self.shutdown.send(true);
        self.task.await.context("server task failed")?
    }

    pub async fn wait(self) -> anyhow::Result<()> {
        self.task.await.context("server task failed")?
    }

    pub fn shutdown_handle(&self) -> watch::Sender<bool> {
        self.shutdown.clone()
    }
}

/// Whether the background work runs on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workers {
    /// As in production: the usage flush, the change poll and follow, the pruning and the
    /// heartbeat, the outbox sender and its expiry sweep, and the start-up cache warming.
    Run,
    /// None of them: whoever started the server drives each when it wants it
    /// (`Service::deliver_mails`, `send_expiry_notices`, `flush_usage`, `poll_changes`), so a
    /// test asserts on what happened instead of polling for it.
    Off,
}

/// Binds the listener (so the address is known before anything is served) and serves in the
/// background.
pub async fn start(config: &Config, clock: Arc<dyn Clock>) -> anyhow::Result<Running> {
    start_with(config, clock, Workers::Run).await
}

/// [`start`], with or without the background workers.
pub async fn start_with(
    config: &Config,
    clock: Arc<dyn Clock>,
    workers: Workers,
) -> anyhow::Result<Running> {
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let addr = listener.local_addr()?;
    // Without a configured public URL, the issuer is the address actually bound (`listen` may
    // name port 0).
    let mut config = config.clone();
    if config.public_url.is_none() {
        config.public_url = Some(format!("http://{addr}"));
    }
    let config = &config;
    let service = build_service(config, clock).await?;
    let (shutdown, rx) = watch::channel(false);
    let state = AppState::new(latchkey_http::Shared {
        service: service.clone(),
        secure_cookies: config.public_url().starts_with("https://"),
        trusted_proxies: config.trusted_proxies.clone().into(),
        stopping: rx.clone(),
        body_read_timeout: config.body_read_timeout.to_std(),
    });
    service
        .register_instance(&addr.to_string())
        .await
        .map_err(|e| anyhow::anyhow!("cannot register this instance: {e}"))?;
    let server = latchkey_http::server(state);
    let run = workers == Workers::Run;
    let background = run.then(|| tokio::spawn(service.clone().run_background(rx.clone())));
    let control = crate::control::bind(&config.data_dir)?;
    let control = tokio::spawn(crate::control::serve(
        control,
        config.data_dir.clone(),
        service.clone(),
        rx.clone(),
    ));
    let outbox = run.then(|| tokio::spawn(service.clone().run_outbox(rx.clone())));
    let warm = (service.clone(), config.cache_warm_tokens);
    let warming = async move {
        // On PostgreSQL the cache is on once this instance listens for the others' changes.
        warm.0.cache_on(Duration::from_secs(10)).await;
        match warm.0.warm_cache(warm.1).await {
            Ok(n) => tracing::info!(tokens = n, "verification cache warmed"),
            Err(e) => tracing::warn!(error = %e, "could not warm the verification cache"),
        }
    };
    if run {
        tokio::spawn(warming);
    }
    let limits = ConnectionLimits {
        idle_timeout: config.connection_idle_timeout.to_std(),
        max_connections: config.max_connections,
        header_read_timeout: config.header_read_timeout.to_std(),
    };
    let instance = service.clone();
    let task = tokio::spawn(async move {
        serve_connections(listener, server, limits, rx).await;
        match background {
            Some(background) => background.await.context("background task failed")?,
            // What the background loop does on its way out.
            None => instance.flush_usage().await,
        }
        control.await.context("control socket task failed")?;
        instance.unregister_instance().await;
        if let Some(outbox) = outbox {
            outbox.await.context("outbox task failed")?;
        }
        Ok(())
    });
    Ok(Running {
        addr,
        service,
        shutdown,
        task,
    })
}

/// How long a graceful stop waits for the requests in flight.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

struct ConnectionLimits {
    idle_timeout: Duration,
    max_connections: usize,
    /// A client must send a request's headers within this (slow-loris, SECURITY.md).
    header_read_timeout: Duration,
}

/// Accepts connections until `stop` turns true, then lets the open ones finish their requests.
///
/// Hand-rolled rather than `axum::serve`: hyper's header-read timeout, which `axum::serve` does
/// not expose, the idle timeout and the connection cap (`connections.rs`). (Slow bodies are cut
/// by the router's body timeout.)
async fn serve_connections(
    listener: TcpListener,
    server: latchkey_http::Server,
    limits: ConnectionLimits,
    mut stop: watch::Receiver<bool>,
) {
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    use hyper_util::server::conn::auto::Builder;

    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    builder.http2().timer(TokioTimer::new());
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let open = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    let stopping = async move {
        let _ = stop.wait_for(|stop| *stop).await;
    };
    tokio::pin!(stopping);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors, say: wait a moment instead of spinning.
                    tracing::warn!(error = %e, "could not accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut stopping => break,
        };
        // At the cap, a newcomer is closed at once: a clear signal to retry (or to another
        // instance), where leaving it in the backlog would hang it.
        let Ok(permit) = open.clone().try_acquire_owned() else {
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (stream, activity) = crate::connections::Watched::new(stream);
        let server = server.clone();
        let service = hyper::service::service_fn(move |request: hyper::Request<_>| {
            let answer = server
                .clone()
                .handle(request.map(axum::body::Body::new), peer);
            async move { Ok::<_, std::convert::Infallible>(answer.await) }
        });
        let builder = builder.clone();
        let watcher = graceful.watcher();
        let idle_timeout = limits.idle_timeout;
        tokio::spawn(async move {
            let connection = builder.serve_connection(TokioIo::new(stream), service);
            // Errors here are the client's (a reset, a timeout, garbage): not ours to log.
            // Idle past the timeout, the connection is dropped, which closes the socket.
            tokio::select! {
                _ = watcher.watch(connection) => {}
                () = activity.idle_for(idle_timeout) => {}
            }
            drop(permit);
        });
    }
    drop(listener);
    // Requests in flight get this long; a client that holds its connection past it (a slow
    // upload, a stream that does not end) is cut, so a stop is never held for good.
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            "connections still open {} s after the stop began; closing them",
            SHUTDOWN_GRACE.as_secs()
        );
    }
}

/// `latchkey serve`: runs until SIGTERM or Ctrl-C.
pub async fn serve(config: Config, demo: bool) -> anyhow::Result<()> {
    // Listened for before anything is printed: a SIGTERM sent as soon as the address (or the
    // demo's credentials) appears must stop the server gracefully, not kill it.
    let stop_signal = shutdown_signal()?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let running = start(&config, clock).await?;
    tracing::info!(addr = %running.addr, public_url = %config.public_url(), "latchkey is listening");
    // The address bound, on standard output, for whoever started it (`--listen 127.0.0.1:0`
    // picks a free port: a script or a test learns which from this line).
    println!("listening on http://{}", running.addr);
    if demo {
        create_demo(&running.service, &config).await?;
    } else if running.service.nobody_can_sign_in().await.unwrap_or(false) {
        // A fresh installation: the sign-in page has no way in until someone is made.
        tracing::warn!("no one can sign in yet: this Latchkey has no users");
        println!(
            "No one can sign in yet: this Latchkey has no users. Make the first operator with the \
             same configuration:\n  latchkey user create --email you@example.com \
             --password-stdin --operator\nthen sign in at {}/login",
            running.service.settings().public_url.trim_end_matches('/')
        );
    }
    let stop = running.shutdown_handle();
    tokio::spawn(async move {
        stop_signal.await;
        tracing::info!("shutting down");
        let _ = stop.send(true);
    });
    running.wait().await
}

/// SIGTERM or Ctrl-C, registered when this is called (not when the future is first polled).
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    #[cfg(unix)]
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("cannot listen for SIGTERM")?;
    Ok(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
        #[cfg(not(unix))]
        {
            let _ = ctrl_c.await;
        }
    })
}

const DEMO_OPERATOR: &str = "operator@demo.latchkey.test";
const DEMO_USER: &str = "user@demo.latchkey.test";

/// `serve --demo`: an operator, an organisation and a user, once; prints how to sign in.
async fn create_demo(service: &Service, config: &Config) -> anyhow::Result<()> {
    use latchkey_service::Caller;
    use secrecy::SecretString;

    let caller = Caller::operator();
    if service.find_user_by_email(DEMO_OPERATOR).await.is_ok() {
        println!(
            "Demo data exists already (users {DEMO_OPERATOR} and {DEMO_USER}); their passwords were printed at the first --demo start."
        );
        return Ok(());
    }
    let random = |n| -> anyhow::Result<String> {
        let bytes: [u8; 16] =
            latchkey_service::crypto::random_bytes().map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(bytes.iter().take(n).map(|b| format!("{b:02x}")).collect())
    };
    let operator_password = random(8)?;
    let user_password = random(8)?;
    let err = |e: latchkey_service::ServiceError| anyhow::anyhow!("demo: {e}");
    service
        .create_user(
            &caller,
            DEMO_OPERATOR,
            &SecretString::from(operator_password.clone()),
            true,
        )
        .await
        .map_err(err)?;
    service
        .create_user(
            &caller,
            DEMO_USER,
            &SecretString::from(user_password.clone()),
            false,
        )
        .await
        .map_err(err)?;
    let org = service
        .create_org(&caller, "Demo Organisation", &["links".to_owned()])
        .await
        .map_err(err)?;
    service
        .set_member(
            &caller,
            org.id.as_str(),
            DEMO_OPERATOR,
            latchkey_core::Role::Admin,
        )
        .await
        .map_err(err)?;
    service
        .set_member(
            &caller,
            org.id.as_str(),
            DEMO_USER,
            latchkey_core::Role::Member,
        )
        .await
        .map_err(err)?;
    let url = config.public_url();
    println!(
        "Demo data created.\n  operator: {DEMO_OPERATOR} / {operator_password} (admin of {org_id})\n  user:     {DEMO_USER} / {user_password} (member)\n\nOpen the console at {url}/ and sign in, or use the API:\n  curl -s {url}/v1/sessions -H 'content-type: application/json' -d '{{\"email\":\"{DEMO_USER}\",\"password\":\"{user_password}\"}}'\n  curl -s {url}/v1/user/tokens -H \"authorization: Bearer $SESSION\" -H 'content-type: application/json' -d '{{\"name\":\"my laptop\",\"password\":\"{user_password}\"}}'\n  curl -s {url}/v1/me -H \"authorization: Bearer $TOKEN\"",
        org_id = org.id
    );
    Ok(())
}
