//! The operator CLI. Each command calls the same service function as the API, so the checks
//! and audit events are identical; it acts as the operator directly on the configured database.

use std::io::BufRead as _;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand, ValueEnum};
use latchkey_core::{OrgId, Role};
use latchkey_service::{Caller, Service, SystemClock};
use latchkey_store::CredentialKind;
use latchkey_store::Owner;
use secrecy::SecretString;
use serde_json::{Value, json};

use crate::config::{Config, EXAMPLE, Overrides};

#[derive(Debug, Parser)]
#[command(
    name = "latchkey",
    version,
    about = "Self-hosted API access tokens: personal tokens, organisation tokens, OAuth2, one fast verification path."
)]
pub struct Cli {
    /// TOML configuration file (also LATCHKEY_CONFIG).
    #[arg(long, global = true, env = "LATCHKEY_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Machine-readable JSON output.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server (SQLite in the data directory by default, created on first start).
    Serve(ServeArgs),
    /// Manage users.
    #[command(subcommand)]
    User(UserCommand),
    /// Manage organisations and their members.
    #[command(subcommand)]
    Org(OrgCommand),
    /// List and revoke tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// OAuth2 clients.
    #[command(subcommand)]
    Client(ClientCommand),
    /// Provisioning credentials: what the platform's SCIM client authenticates with.
    #[command(subcommand)]
    Provisioning(CredentialCommand),
    /// Operator credentials: what the platform's back office authenticates with at /v1/admin.
    #[command(subcommand)]
    OperatorKey(CredentialCommand),
    /// Signing keys (JWT-format tokens, OAuth2 access tokens).
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Configuration helpers.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// The running instances on this database and how far each has applied the change log.
    Status,
    /// The database itself (moving it to PostgreSQL).
    #[command(subcommand)]
    Db(DbCommand),
    /// Benchmark helpers (seeding a database with many tokens).
    #[command(subcommand, hide = true)]
    Bench(BenchCommand),
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on, like 127.0.0.1:8080.
    #[arg(long)]
    pub listen: Option<String>,
    /// Data directory (SQLite database and keys).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Database URL, like sqlite://./latchkey-data/latchkey.db or postgres://user@host/db.
    #[arg(long)]
    pub database_url: Option<String>,
    /// The public URL (issuer, links in emails).
    #[arg(long)]
    pub public_url: Option<String>,
    /// Create a demo operator, organisation and user, and print how to sign in.
    #[arg(long)]
    pub demo: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum OnOff {
    On,
    Off,
}

impl OnOff {
    fn enabled(self) -> bool {
        matches!(self, Self::On)
    }
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a user; the password is read from the first line of standard input.
    Create {
        /// The user's email address (their sign-in name).
        #[arg(long)]
        email: String,
        /// Read the password from standard input (required: passwords never go in arguments).
        #[arg(long, required = true)]
        password_stdin: bool,
        /// Make the user an operator.
        #[arg(long)]
        operator: bool,
    },
    /// Disable a user or switch their personal tokens off (effective at once).
    Update {
        /// The user to change.
        #[arg(long)]
        email: String,
        /// Disable the user: ends their sessions and refuses their tokens.
        #[arg(long, value_name = "true|false")]
        disabled: Option<bool>,
        /// Switch the user's personal tokens on or off.
        #[arg(long, value_enum)]
        api_tokens: Option<OnOff>,
    },
    /// The kill switch: revoke every token of the user at once.
    RevokeAll {
        /// The user whose tokens to revoke.
        #[arg(long)]
        email: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum CredentialCommand {
    /// Create a credential; prints its id and secret (shown once).
    Create {
        /// What it is for, like "Okta" or "Back office".
        #[arg(long)]
        name: String,
    },
    /// List the credentials (never their secrets).
    List,
    /// Revoke a credential: refused from the very next request.
    Revoke {
        /// The credential's id (prov_…).
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Create an OAuth2 client for an organisation; prints its id and secret (shown once).
    Create {
        /// The organisation id (org_…).
        #[arg(long)]
        org: String,
        /// The client's name, shown on consent pages.
        #[arg(long)]
        name: String,
        /// client_credentials, authorization_code or refresh_token; repeat for several.
        #[arg(long = "grant", value_name = "G", required = true)]
        grants: Vec<String>,
        /// An exact redirect URI; repeat for several.
        #[arg(long = "redirect-uri", value_name = "U")]
        redirect_uris: Vec<String>,
        /// A scope the client may ask for; repeat for several.
        #[arg(long = "scope", value_name = "S")]
        scopes: Vec<String>,
        /// Allow the client to call the introspection endpoint.
        #[arg(long)]
        introspect: bool,
        /// A public client: no secret (PKCE required).
        #[arg(long)]
        public: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Make a new signing key: published at once, used after `oauth.key_publish_ahead`; the
    /// old keys stay published while anything they signed can still be valid.
    Rotate,
    /// List the signing keys.
    List,
}

#[derive(Debug, Subcommand)]
pub enum OrgCommand {
    /// Create an organisation; prints its id.
    Create {
        /// The organisation's name.
        #[arg(long)]
        name: String,
        /// Enable a feature (plan option such as `links`); repeat for several.
        #[arg(long = "feature", value_name = "F")]
        features: Vec<String>,
    },
    /// Change an organisation's features or switch its tokens off (effective at once).
    Update {
        /// The organisation id (org_…).
        #[arg(long)]
        org: String,
        /// Enable a feature; repeat for several.
        #[arg(long = "feature", value_name = "F")]
        features: Vec<String>,
        /// Disable a feature (tokens of types that need it stop working); repeat for several.
        #[arg(long = "remove-feature", value_name = "F")]
        remove_features: Vec<String>,
        /// Switch all of the organisation's tokens on or off.
        #[arg(long, value_enum)]
        api_tokens: Option<OnOff>,
    },
    /// Add a member (or change their role).
    AddMember {
        /// The organisation id (org_…).
        #[arg(long)]
        org: String,
        /// The user's email.
        #[arg(long)]
        email: String,
        /// admin, member or partner.
        #[arg(long, value_parser = parse_role)]
        role: Role,
    },
    /// The kill switch: revoke every token of the organisation (of one type, if given).
    RevokeAll {
        /// The organisation id (org_…).
        #[arg(long)]
        org: String,
        /// Only tokens of this type.
        #[arg(long = "type")]
        token_type: Option<String>,
    },
    /// Remove a member.
    RemoveMember {
        /// The organisation id (org_…).
        #[arg(long)]
        org: String,
        /// The user's email.
        #[arg(long)]
        email: String,
    },
}

fn parse_role(text: &str) -> Result<Role, String> {
    text.parse()
        .map_err(|e: latchkey_core::role::RoleError| e.to_string())
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// List tokens (never their secrets), newest first.
    List {
        /// Only this user's tokens (by email).
        #[arg(long, conflicts_with = "org")]
        user: Option<String>,
        /// Only this organisation's tokens.
        #[arg(long)]
        org: Option<String>,
        /// Only tokens of this type.
        #[arg(long = "type")]
        token_type: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Revoke a token by id (effective at once).
    Revoke {
        /// The token id (tok_…).
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum DbCommand {
    /// Copy the configured SQLite database into an empty PostgreSQL database, whole and
    /// checked (row counts, checksums of tokens, client secrets and signing keys). Stop the
    /// server first: what it writes after the copy starts is not copied. Then serve on the
    /// PostgreSQL database with the same master key.
    Copy {
        /// The PostgreSQL database to copy into (postgres://user@host/db); its Latchkey tables
        /// must be empty (they are created if absent).
        #[arg(long, value_name = "URL")]
        to: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print a commented configuration file with every key.
    Example,
    /// Print the effective configuration's token types.
    Types,
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Create a user (if needed) and COUNT tokens of a user-owned type; write the secrets to OUT.
    Seed {
        #[arg(long)]
        email: String,
        #[arg(long, default_value = "personal")]
        token_type: String,
        #[arg(long)]
        count: usize,
        #[arg(long)]
        out: PathBuf,
    },
}

fn read_password() -> anyhow::Result<SecretString> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("cannot read the password from standard input")?;
    let password = line.trim_end_matches(['\n', '\r']).to_owned();
    if password.is_empty() {
        anyhow::bail!("no password on standard input");
    }
    Ok(SecretString::from(password))
}

fn service_err(e: latchkey_service::ServiceError) -> anyhow::Error {
    anyhow::anyhow!("{e}")
}

/// Prints `value` as JSON, or `text` for people.
fn output(json_mode: bool, value: Value, text: String) {
    if json_mode {
        println!("{value}");
    } else {
        println!("{text}");
    }
}

fn print_revoked(json_mode: bool, done: &latchkey_service::tokens::KillSwitch) {
    let a = &done.applied;
    let waiting = if a.unconfirmed.is_empty() {
        String::new()
    } else {
        format!(" (not yet: {})", a.unconfirmed.join(", "))
    };
    output(
        json_mode,
        json!({ "revoked": done.tokens.len(), "tokens": done.tokens, "applied": a }),
        format!(
            "{} tokens revoked; applied by {} of {} running instances{waiting}",
            done.tokens.len(),
            a.confirmed,
            a.instances
        ),
    );
}

/// The operator's service, built once per command: the command and the wait for the running
/// instances after it share its database connections.
#[derive(Default)]
struct Services(tokio::sync::OnceCell<Arc<Service>>);

impl Services {
    async fn get(&self, config: &Config) -> anyhow::Result<Arc<Service>> {
        self.0
            .get_or_try_init(|| crate::app::build_service(config, Arc::new(SystemClock)))
            .await
            .cloned()
    }
}

/// Runs a command other than `serve`.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let file = cli.config.clone();
    let config = || Config::load(file.as_deref(), &Overrides::default());
    let caller = Caller::operator();
    let json_mode = cli.json;
    // A command that changes the database is in force when it returns: the running server is
    // told after the commit and answers once it applied the change (`control.rs`).
    let changes = !matches!(
        cli.command,
        Command::Serve(_)
            | Command::Keys(KeysCommand::List)
            | Command::Config(_)
            | Command::Status
            | Command::Db(_)
            | Command::Token(TokenCommand::List { .. })
    );
    let services = Services::default();
    let result = run_command(cli, config, &services, caller, json_mode).await;
    if changes && result.is_ok() {
        let config = config()?;
        crate::control::apply_on_running_server(&config.data_dir).await?;
        let applied = services
            .get(&config)
            .await?
            .wait_until_all_applied()
            .await
            .map_err(|e| {
                anyhow::anyhow!("the change is committed, but could not be confirmed: {e}")
            })?;
        if !applied.unconfirmed.is_empty() {
            anyhow::bail!(
                "the change is committed, but {} of {} running instances did not confirm it within {} s: {}",
                applied.unconfirmed.len(),
                applied.instances,
                latchkey_service::instances::CONFIRM_WITHIN.as_secs(),
                applied.unconfirmed.join(", ")
            );
        }
    }
    result
}

async fn run_command(
    cli: Cli,
    config: impl Fn() -> anyhow::Result<Config>,
    services: &Services,
    caller: Caller,
    json_mode: bool,
) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => {
            let overrides = Overrides {
                listen: args.listen,
                data_dir: args.data_dir,
                database_url: args.database_url,
                public_url: args.public_url,
            };
            let config = Config::load(cli.config.as_deref(), &overrides)?;
            crate::app::serve(config, args.demo).await
        }
        Command::User(UserCommand::Create {
            email,
            password_stdin: _,
            operator,
        }) => {
            let password = read_password()?;
            let service = services.get(&config()?).await?;
            let user = service
                .create_user(&caller, &email, &password, operator)
                .await
                .map_err(service_err)?;
            output(
                json_mode,
                json!({ "id": user.id, "email": user.email, "operator": user.is_operator }),
                user.id.to_string(),
            );
            Ok(())
        }
        Command::User(UserCommand::Update {
            email,
            disabled,
            api_tokens,
        }) => {
            let service = services.get(&config()?).await?;
            let user = service
                .update_user(&caller, &email, disabled, api_tokens.map(OnOff::enabled))
                .await
                .map_err(service_err)?;
            output(
                json_mode,
                json!({ "id": user.id, "email": user.email, "disabled": user.disabled, "api_tokens_enabled": user.api_tokens_enabled }),
                format!(
                    "{} disabled={} api_tokens={}",
                    user.email,
                    user.disabled,
                    if user.api_tokens_enabled { "on" } else { "off" }
                ),
            );
            Ok(())
        }
        Command::User(UserCommand::RevokeAll { email }) => {
            let service = services.get(&config()?).await?;
            let done = service
                .revoke_all_user_tokens(&caller, &email)
                .await
                .map_err(service_err)?;
            print_revoked(json_mode, &done);
            Ok(())
        }
        Command::Client(ClientCommand::Create {
            org,
            name,
            grants,
            redirect_uris,
            scopes,
            introspect,
            public,
        }) => {
            let service = services.get(&config()?).await?;
            let org = service.find_org(&org).await.map_err(service_err)?;
            let spec = latchkey_service::oauth::clients::ClientSpec {
                name,
                grant_types: grants,
                redirect_uris,
                scopes,
                confidential: !public,
                can_introspect: introspect,
            };
            let created = service
                .create_client(&caller, &org, spec)
                .await
                .map_err(service_err)?;
            let secret = created.secret.as_ref().map(|(_, s)| s.expose().to_owned());
            output(
                json_mode,
                json!({ "client_id": created.client.id, "client_secret": secret }),
                match &secret {
                    Some(secret) => format!(
                        "client_id: {}\nclient_secret: {secret}\n(the secret is shown only this once)",
                        created.client.id
                    ),
                    None => format!(
                        "client_id: {} (public client: no secret)",
                        created.client.id
                    ),
                },
            );
            Ok(())
        }
        Command::Provisioning(cmd) => {
            let service = services.get(&config()?).await?;
            credential_command(
                &service,
                &caller,
                CredentialKind::Provisioning,
                cmd,
                json_mode,
            )
            .await
        }
        Command::OperatorKey(cmd) => {
            let service = services.get(&config()?).await?;
            credential_command(&service, &caller, CredentialKind::Operator, cmd, json_mode).await
        }
        Command::Keys(KeysCommand::Rotate) => {
            let service = services.get(&config()?).await?;
            let kid = service
                .rotate_signing_key(&caller)
                .await
                .map_err(service_err)?;
            let key = service.signing_keys().into_iter().find(|k| k.kid == kid);
            let use_from = key.map(|k| k.use_from.unix_timestamp()).unwrap_or_default();
            output(
                json_mode,
                json!({ "kid": kid, "use_from": use_from }),
                format!("new signing key {kid}: published now, signs from Unix time {use_from}"),
            );
            Ok(())
        }
        Command::Status => {
            let service = services.get(&config()?).await?;
            let status = service.cluster_status().await.map_err(service_err)?;
            let mut text = format!("latest change {}\n", status.latest_change);
            for i in &status.instances {
                text.push_str(&format!(
                    "{} {} version {} {} applied {}\n",
                    i.id,
                    i.address,
                    i.version,
                    if i.live { "live" } else { "not heard from" },
                    i.applied_change
                ));
            }
            if status.instances.is_empty() {
                text.push_str("no instance is running\n");
            }
            output(json_mode, json!(status), text.trim_end().to_owned());
            Ok(())
        }
        Command::Db(DbCommand::Copy { to }) => copy_database(&config()?, &to, json_mode).await,
        Command::Keys(KeysCommand::List) => {
            let service = services.get(&config()?).await?;
            let keys: Vec<Value> = service
                .signing_keys()
                .iter()
                .map(|k| {
                    json!({
                        "kid": k.kid, "alg": k.alg.as_str(), "use_from": k.use_from.unix_timestamp(),
                        "retired_at": k.retired_at.map(|r| r.unix_timestamp()),
                    })
                })
                .collect();
            if json_mode {
                println!("{}", Value::Array(keys));
            } else {
                for k in &keys {
                    println!(
                        "{}  {}  use_from={}  retired_at={}",
                        k["kid"], k["alg"], k["use_from"], k["retired_at"]
                    );
                }
            }
            Ok(())
        }
        Command::Org(cmd) => {
            run_org(cmd, &*services.get(&config()?).await?, &caller, json_mode).await
        }
        Command::Token(cmd) => {
            run_token(cmd, &*services.get(&config()?).await?, &caller, json_mode).await
        }
        Command::Config(ConfigCommand::Example) => {
            print!("{EXAMPLE}");
            Ok(())
        }
        Command::Config(ConfigCommand::Types) => {
            let types = config()?.token_types()?;
            for t in types.iter() {
                let lifetime = t
                    .lifetime
                    .map_or_else(|| "none".to_owned(), |d| d.to_string());
                println!(
                    "{:<10} owner={:?} format={:?} prefix={} max_active={} activation_delay={} lifetime={lifetime} reveal={:?} feature={}",
                    t.name,
                    t.owner,
                    t.format,
                    t.prefix,
                    t.max_active,
                    t.activation_delay,
                    t.reveal,
                    t.requires_feature.as_deref().unwrap_or("-")
                );
            }
            Ok(())
        }
        Command::Bench(BenchCommand::Seed {
            email,
            token_type,
            count,
            out,
        }) => {
            let service = services.get(&config()?).await?;
            let user = match service.find_user_by_email(&email).await {
                Ok(user) => user,
                Err(_) => {
                    let password: [u8; 16] =
                        latchkey_service::crypto::random_bytes().map_err(service_err)?;
                    let password: String = password.iter().map(|b| format!("{b:02x}")).collect();
                    service
                        .create_user(&caller, &email, &SecretString::from(password), false)
                        .await
                        .map_err(service_err)?
                }
            };
            let secrets = service
                .seed_tokens_for_benchmark(&user, &token_type, count)
                .await
                .map_err(service_err)?;
            let mut text = String::with_capacity(secrets.len() * 60);
            for s in &secrets {
                text.push_str(s.expose());
                text.push('\n');
            }
            std::fs::write(&out, text)
                .with_context(|| format!("cannot write {}", out.display()))?;
            println!("{} tokens written to {}", secrets.len(), out.display());
            Ok(())
        }
    }
}

/// `db copy`: the configured SQLite database into the empty PostgreSQL database at `to`.
async fn copy_database(config: &Config, to: &str, json_mode: bool) -> anyhow::Result<()> {
    use latchkey_store::copy::{self, CopyError, CopyReport};
    if !(to.starts_with("postgres://") || to.starts_with("postgresql://")) {
        anyhow::bail!(
            "--to must be a PostgreSQL database URL (postgres://user@host/db or postgresql://…), not {}",
            redact_url(to)
        );
    }
    let from = config.database_url();
    if !from.starts_with("sqlite:") {
        anyhow::bail!(
            "db copy copies from SQLite, but the configured database_url is {}",
            redact_url(&from)
        );
    }
    let source = copy::open_source(&from)
        .await
        .context("cannot open the SQLite database to copy")?;
    let target = latchkey_store::postgres::PgStore::connect(to)
        .await
        .context("cannot open the PostgreSQL database to copy into")?;
    let result = copy::copy_sqlite_to_postgres(&source, &target).await;
    source.close().await;
    target.close().await;
    let summary = |report: &CopyReport| {
        let tables: Vec<Value> = report
            .tables
            .iter()
            .map(|t| json!({ "table": t.table, "source": t.source_rows, "target": t.target_rows }))
            .collect();
        let checksums: Vec<Value> = report
            .checksums
            .iter()
            .map(|c| json!({ "table": c.table, "columns": c.columns, "source": c.source, "target": c.target }))
            .collect();
        let mut text = format!("{:<24} {:>10} {:>10}\n", "table", "source", "target");
        for t in &report.tables {
            let mark = if t.source_rows == t.target_rows {
                ""
            } else {
                "  MISMATCH"
            };
            text.push_str(&format!(
                "{:<24} {:>10} {:>10}{mark}\n",
                t.table, t.source_rows, t.target_rows
            ));
        }
        for c in &report.checksums {
            let verdict = if c.source == c.target {
                "match"
            } else {
                "MISMATCH"
            };
            text.push_str(&format!(
                "checksum {}({}): {} {verdict}\n",
                c.table,
                c.columns.join(", "),
                c.target
            ));
        }
        (tables, checksums, text)
    };
    match result {
        Ok(report) => {
            let (tables, checksums, mut text) = summary(&report);
            let key = config.master_key_file();
            text.push_str(&format!(
                "copied into {} and checked. Not copied: {} (sqlx's migrations, the change log and the \
                 instance list start afresh).\n\
                 Serve with database_url = {:?} and the same master key ({}).",
                redact_url(to),
                copy::NOT_COPIED.join(", "),
                redact_url(to),
                key.display()
            ));
            output(
                json_mode,
                json!({
                    "copied": true, "to": redact_url(to), "tables": tables,
                    "checksums": checksums, "not_copied": copy::NOT_COPIED,
                }),
                text,
            );
            Ok(())
        }
        Err(CopyError::Mismatch(report)) => {
            let (tables, checksums, text) = summary(&report);
            output(
                json_mode,
                json!({ "copied": false, "tables": tables, "checksums": checksums }),
                text.trim_end().to_owned(),
            );
            Err(CopyError::Mismatch(report).into())
        }
        Err(e) => Err(e.into()),
    }
}

/// A database URL without its password, for messages.
fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (authority, path) = rest.split_once('/').map_or((rest, ""), |(a, p)| (a, p));
    match authority.rsplit_once('@') {
        Some((user, host)) if user.contains(':') => {
            let name = user.split(':').next().unwrap_or_default();
            let slash = if rest.contains('/') { "/" } else { "" };
            format!("{scheme}://{name}:***@{host}{slash}{path}")
        }
        _ => url.to_owned(),
    }
}

async fn run_org(
    cmd: OrgCommand,
    service: &Service,
    caller: &Caller,
    json_mode: bool,
) -> anyhow::Result<()> {
    match cmd {
        OrgCommand::Create { name, features } => {
            let org = service
                .create_org(caller, &name, &features)
                .await
                .map_err(service_err)?;
            output(
                json_mode,
                json!({ "id": org.id, "name": org.name, "features": org.features }),
                org.id.to_string(),
            );
        }
        OrgCommand::Update {
            org,
            features,
            remove_features,
            api_tokens,
        } => {
            let org = service
                .update_org(
                    caller,
                    &org,
                    &features,
                    &remove_features,
                    api_tokens.map(OnOff::enabled),
                )
                .await
                .map_err(service_err)?;
            output(
                json_mode,
                json!({ "id": org.id, "name": org.name, "features": org.features, "api_tokens_enabled": org.api_tokens_enabled }),
                format!(
                    "{} features=[{}] api_tokens={}",
                    org.id,
                    org.features.join(","),
                    if org.api_tokens_enabled { "on" } else { "off" }
                ),
            );
        }
        OrgCommand::AddMember { org, email, role } => {
            service
                .set_member(caller, &org, &email, role)
                .await
                .map_err(service_err)?;
            output(
                json_mode,
                json!({ "org": org, "email": email, "role": role }),
                format!("{email} is now {role} of {org}"),
            );
        }
        OrgCommand::RevokeAll { org, token_type } => {
            let done = service
                .revoke_all_org_tokens_as_operator(caller, &org, token_type.as_deref())
                .await
                .map_err(service_err)?;
            print_revoked(json_mode, &done);
        }
        OrgCommand::RemoveMember { org, email } => {
            service
                .remove_member(caller, &org, &email)
                .await
                .map_err(service_err)?;
            output(
                json_mode,
                json!({ "org": org, "email": email, "removed": true }),
                format!("{email} removed from {org}"),
            );
        }
    }
    Ok(())
}

async fn run_token(
    cmd: TokenCommand,
    service: &Service,
    caller: &Caller,
    json_mode: bool,
) -> anyhow::Result<()> {
    match cmd {
        TokenCommand::List {
            user,
            org,
            token_type,
            limit,
        } => {
            let owner = match (user, org) {
                (Some(email), _) => {
                    let user = service
                        .find_user_by_email(&email)
                        .await
                        .map_err(service_err)?;
                    Some(Owner::User(user.id))
                }
                (None, Some(org)) => {
                    let id: OrgId = org
                        .parse()
                        .map_err(|_| anyhow::anyhow!("not an organisation id: {org}"))?;
                    Some(Owner::Organisation(id))
                }
                (None, None) => None,
            };
            let tokens = service
                .list_tokens(owner, token_type, limit)
                .await
                .map_err(service_err)?;
            if json_mode {
                let list: Vec<Value> = tokens
                    .iter()
                    .map(|t| {
                        json!({
                            "id": t.id, "type": t.token_type, "name": t.name, "status": service.status_of(t),
                            "owner": { "kind": t.owner.kind(), "id": t.owner.id() }, "hint": t.hint,
                            "created_at": t.created_at.unix_timestamp(),
                            "expires_at": t.expires_at.map(|e| e.unix_timestamp()),
                        })
                    })
                    .collect();
                println!("{}", Value::Array(list));
            } else {
                for t in &tokens {
                    println!(
                        "{}  {:<9} {:<8} {:<14} {}  {}",
                        t.id,
                        t.token_type,
                        service.status_of(t).as_str(),
                        t.hint,
                        t.owner.id(),
                        t.name
                    );
                }
            }
        }
        TokenCommand::Revoke { id } => {
            let revoked = service
                .revoke_token_by_id(caller, &id)
                .await
                .map_err(service_err)?;
            output(
                json_mode,
                json!({ "id": id, "revoked": revoked }),
                if revoked {
                    format!("{id} revoked")
                } else {
                    format!("{id} was already revoked")
                },
            );
        }
    }
    Ok(())
}

/// `latchkey provisioning …` and `latchkey operator-key …`: the same commands for each kind.
async fn credential_command(
    service: &latchkey_service::Service,
    caller: &latchkey_service::Caller,
    kind: CredentialKind,
    cmd: CredentialCommand,
    json_mode: bool,
) -> anyhow::Result<()> {
    match cmd {
        CredentialCommand::Create { name } => {
            let (credential, secret) = service
                .create_platform_credential(caller, kind, &name)
                .await
                .map_err(service_err)?;
            output(
                json_mode,
                json!({ "id": credential.id, "secret": secret.expose() }),
                format!(
                    "id: {}\nsecret: {}\n(the secret is shown only this once)",
                    credential.id,
                    secret.expose()
                ),
            );
        }
        CredentialCommand::List => {
            let list = service
                .list_platform_credentials(kind)
                .await
                .map_err(service_err)?;
            let rows: Vec<Value> = list
                .iter()
                .map(|c| {
                    json!({
                        "id": c.id, "name": c.name, "created_at": c.created_at.unix_timestamp(),
                        "revoked_at": c.revoked_at.map(|r| r.unix_timestamp()),
                    })
                })
                .collect();
            let text = list
                .iter()
                .map(|c| {
                    let state = if c.revoked_at.is_some() {
                        "revoked"
                    } else {
                        "live"
                    };
                    format!("{}  {}  {state}", c.id, c.name)
                })
                .collect::<Vec<_>>()
                .join("\n");
            output(json_mode, Value::Array(rows), text);
        }
        CredentialCommand::Revoke { id } => {
            service
                .revoke_platform_credential(caller, kind, &id)
                .await
                .map_err(service_err)?;
            output(
                json_mode,
                json!({ "id": id, "revoked": true }),
                format!("{id} revoked"),
            );
        }
    }
    Ok(())
}
