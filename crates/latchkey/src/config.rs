//! Configuration: defaults < TOML file (`--config`) < `LATCHKEY_*` environment (`__` nests) <
//! command-line flags. Loaded once here, then passed down as plain settings.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use figment::Figment;
use figment::providers::{Env, Format as _, Serialized, Toml};
use latchkey_core::PolicyDuration;
use latchkey_core::TokenTypes;
use latchkey_core::policy::TokenTypeConfig;
use secrecy::{ExposeSecret as _, SecretString};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub listen: SocketAddr,
    /// A connection on which no byte moves for this long is closed (SPEC 7): one that never
    /// sends a request, an idle keep-alive, an HTTP/2 connection left open.
    pub connection_idle_timeout: PolicyDuration,
    /// A client must send a request's headers within this (slow-loris, SECURITY.md).
    pub header_read_timeout: PolicyDuration,
    /// A request's body must arrive whole within this of the first moment it kept the server
    /// waiting (a client trickling a byte now and then, SECURITY.md).
    pub body_read_timeout: PolicyDuration,
    /// Connections open at once; one more is closed as soon as it is accepted. Keep it below
    /// the process's file-descriptor limit (`LimitNOFILE`), with room for the database.
    pub max_connections: usize,
    /// Proxies (CIDRs) whose `X-Forwarded-For` / `Forwarded` give the client's address.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// The address people and clients use; the issuer, and the base of every link
    /// (default: `http://` + `listen`).
    pub public_url: Option<String>,
    pub data_dir: PathBuf,
    /// `sqlite://…` (default: `latchkey.db` in the data directory) or `postgres://…`.
    pub database_url: Option<String>,
    /// PostgreSQL: connections this instance keeps open at most (one more, outside the pool,
    /// listens for the other instances' changes).
    pub database_max_connections: u32,
    /// PostgreSQL: how long a request waits for a connection before it is answered 503 (the
    /// database down or the pool exhausted).
    pub database_acquire_timeout: PolicyDuration,
    /// Where notifications are sent: `smtp://host:port` (plain), `smtp://host:port?tls=required`
    /// (STARTTLS) or `smtps://host:port`, optionally with `user:password@`. Without it, mails are
    /// written as `.eml` files under `<data_dir>/mail`.
    pub smtp_url: Option<String>,
    /// The From header of notifications.
    pub mail_from: String,
    /// How long one SMTP exchange may take before it counts as a failure (the mail then waits
    /// for its next try).
    pub smtp_timeout: PolicyDuration,
    pub master_key_file: Option<PathBuf>,
    /// A tracing filter, like `info` or `latchkey=debug,info`.
    pub log: String,
    /// `text` or `json`.
    pub log_format: String,
    /// The absolute lifetime of a sign-in.
    pub session_ttl: PolicyDuration,
    /// A sign-in unused this long ends (each use extends it, up to `session_ttl`).
    pub session_idle_timeout: PolicyDuration,
    /// Argon2 hashes at once (default: the number of cores).
    pub password_hash_concurrency: Option<usize>,
    /// Live tokens loaded into the verification cache at start, in pages beside serving (at
    /// most a million: beyond that, the first requests fill it); 0 turns the warm-up off.
    pub cache_warm_tokens: u32,
    pub oauth: OAuthConfig,
    pub limits: LimitsConfig,
    pub token_types: BTreeMap<String, TokenTypeConfig>,
    pub sso: SsoConfig,
    pub outbound: OutboundConfig,
}

/// Single sign-on with the platform's OpenID Connect provider (SPEC 9, docs/IDENTITY.md).
/// Off until `issuer` is set.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SsoConfig {
    pub issuer: Option<String>,
    pub client_id: String,
    /// Better given in the environment (`LATCHKEY_SSO__CLIENT_SECRET`) than in the file.
    pub client_secret: SecretString,
    /// The provider's name on the sign-in button.
    pub display_name: String,
    pub scopes: String,
    /// The ID token claim holding the person's address.
    pub email_claim: String,
    /// An existing person is matched by address only when the provider says it verified it.
    pub require_verified_email: bool,
    /// Someone unknown is made a person on their first sign-in (else refused).
    pub create_users: bool,
    /// Password sign-in stays beside single sign-on; `false` leaves single sign-on only.
    pub password_login: bool,
    /// How long a confirmation at the provider lets a person do what asks for a password.
    pub reauth_window: PolicyDuration,
}

impl Default for SsoConfig {
    fn default() -> Self {
        Self {
            issuer: None,
            client_id: String::new(),
            client_secret: SecretString::from(""),
            display_name: "single sign-on".to_owned(),
            scopes: "openid email profile".to_owned(),
            email_claim: "email".to_owned(),
            require_verified_email: true,
            create_users: false,
            password_login: true,
            reauth_window: PolicyDuration::from_secs(300),
        }
    }
}

/// Latchkey's own requests to other servers (the SSO provider).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutboundConfig {
    /// Allow private, loopback and link-local addresses, and plain `http://` (a provider on
    /// the internal network). Off: public HTTPS only (SECURITY.md).
    pub allow_private: bool,
    /// The longest a request may take.
    pub timeout: PolicyDuration,
}

impl Default for OutboundConfig {
    fn default() -> Self {
        Self {
            allow_private: false,
            timeout: PolicyDuration::from_secs(10),
        }
    }
}

/// Abuse limits (SECURITY.md). Per instance, in memory.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Sign-in attempts per address per minute.
    pub login_per_ip_per_minute: u32,
    /// Failed sign-ins per account that cost nothing, per `login_failure_window`.
    pub login_free_failures: u32,
    pub login_failure_window: PolicyDuration,
    /// The longest wait the per-account back-off imposes.
    pub login_max_delay: PolicyDuration,
    /// Refused bearer tokens per address per minute before the address is blocked.
    pub invalid_tokens_per_ip_per_minute: u32,
    pub invalid_token_block: PolicyDuration,
    /// Leak reports per address per hour.
    pub leak_reports_per_ip_per_hour: u32,
    /// Password reset mails asked for per address, and per account, in an hour.
    pub password_resets_per_hour: u32,
    /// Failed client authentications per OAuth client per minute, then its failures wait.
    pub client_auth_failures_per_minute: u32,
    pub client_auth_block: PolicyDuration,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            login_per_ip_per_minute: 30,
            login_free_failures: 5,
            login_failure_window: PolicyDuration::from_secs(900),
            login_max_delay: PolicyDuration::from_secs(900),
            invalid_tokens_per_ip_per_minute: 60,
            invalid_token_block: PolicyDuration::from_secs(300),
            leak_reports_per_ip_per_hour: 60,
            password_resets_per_hour: 5,
            client_auth_failures_per_minute: 10,
            client_auth_block: PolicyDuration::from_secs(60),
        }
    }
}

impl LimitsConfig {
    pub fn settings(&self) -> latchkey_service::limits::LimitSettings {
        use latchkey_core::limits::{BackoffPolicy, WindowLimit};
        let minute = PolicyDuration::from_secs(60);
        latchkey_service::limits::LimitSettings {
            login_per_ip: WindowLimit {
                max: self.login_per_ip_per_minute,
                window: minute,
                block: PolicyDuration::ZERO,
            },
            login_failures: BackoffPolicy {
                free: self.login_free_failures,
                window: self.login_failure_window,
                max_delay: self.login_max_delay,
            },
            invalid_tokens_per_ip: WindowLimit {
                max: self.invalid_tokens_per_ip_per_minute,
                window: minute,
                block: self.invalid_token_block,
            },
            leak_reports_per_ip: WindowLimit {
                max: self.leak_reports_per_ip_per_hour,
                window: PolicyDuration::from_secs(3_600),
                block: PolicyDuration::ZERO,
            },
            client_auth_failures: WindowLimit {
                max: self.client_auth_failures_per_minute,
                window: minute,
                block: self.client_auth_block,
            },
            password_resets: WindowLimit {
                max: self.password_resets_per_hour,
                window: PolicyDuration::from_secs(3_600),
                block: PolicyDuration::ZERO,
            },
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OAuthConfig {
    pub access_token_ttl: PolicyDuration,
    pub code_ttl: PolicyDuration,
    pub refresh_token_ttl: PolicyDuration,
    /// `ES256` (default), `RS256` or `EdDSA`: the algorithm of new signing keys.
    pub signing_alg: String,
    /// A key made by `latchkey keys rotate` is published this long before it signs.
    pub key_publish_ahead: PolicyDuration,
}

impl Default for OAuthConfig {
    fn default() -> Self {
        Self {
            access_token_ttl: PolicyDuration::from_secs(900),
            code_ttl: PolicyDuration::from_secs(60),
            refresh_token_ttl: PolicyDuration::from_days(30),
            signing_alg: "ES256".to_owned(),
            key_publish_ahead: PolicyDuration::from_secs(600),
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            connection_idle_timeout: PolicyDuration::from_secs(30),
            header_read_timeout: PolicyDuration::from_secs(10),
            body_read_timeout: PolicyDuration::from_secs(15),
            max_connections: 4_096,
            trusted_proxies: Vec::new(),
            public_url: None,
            data_dir: PathBuf::from("./latchkey-data"),
            database_url: None,
            database_max_connections: 16,
            database_acquire_timeout: PolicyDuration::from_secs(3),
            smtp_url: None,
            mail_from: "Latchkey <latchkey@localhost>".to_owned(),
            smtp_timeout: PolicyDuration::from_secs(15),
            master_key_file: None,
            log: "info".to_owned(),
            log_format: "text".to_owned(),
            session_ttl: PolicyDuration::from_secs(12 * 3_600),
            session_idle_timeout: PolicyDuration::from_secs(2 * 3_600),
            password_hash_concurrency: None,
            cache_warm_tokens: 1_000_000,
            oauth: OAuthConfig::default(),
            limits: LimitsConfig::default(),
            token_types: BTreeMap::new(),
            sso: SsoConfig::default(),
            outbound: OutboundConfig::default(),
        }
    }
}

/// Values given as command-line flags: the highest layer.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Overrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_url: Option<String>,
}

impl Config {
    /// Loads the layers. `file` is the `--config` path, if any.
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> anyhow::Result<Self> {
        let mut figment = Figment::new();
        if let Some(file) = file {
            if !file.exists() {
                anyhow::bail!("the configuration file {} does not exist", file.display());
            }
            figment = figment.merge(Toml::file_exact(file));
        }
        let config: Self = figment
            .merge(Env::prefixed("LATCHKEY_").split("__").ignore(&["config"]))
            .merge(Serialized::defaults(overrides))
            .extract()
            .context("invalid configuration")?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> anyhow::Result<()> {
        self.token_types()?;
        self.signing_alg()?;
        if self.header_read_timeout.is_zero() {
            anyhow::bail!("header_read_timeout must be longer than 0s");
        }
        if self.smtp_timeout.is_zero() {
            anyhow::bail!("smtp_timeout must be longer than 0s");
        }
        if self.body_read_timeout.is_zero() {
            anyhow::bail!("body_read_timeout must be longer than 0s");
        }
        if self.connection_idle_timeout.is_zero() {
            anyhow::bail!("connection_idle_timeout must be longer than 0s");
        }
        if self.max_connections == 0 {
            anyhow::bail!("max_connections must be at least 1");
        }
        if self.session_ttl.is_zero() {
            anyhow::bail!("session_ttl must be longer than 0s");
        }
        if self.session_idle_timeout.as_secs() < 60 {
            // Last use is noted once a minute: a shorter timeout would end busy sessions.
            anyhow::bail!("session_idle_timeout must be at least 60s");
        }
        let url = self.public_url();
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            anyhow::bail!("public_url must start with http:// or https://");
        }
        self.sso_settings()?;
        if self.outbound.timeout.is_zero() {
            anyhow::bail!("outbound.timeout must be longer than 0s");
        }
        match self.log_format.as_str() {
            "text" | "json" => Ok(()),
            other => anyhow::bail!("log_format must be \"text\" or \"json\", not {other:?}"),
        }
    }

    pub fn token_types(&self) -> anyhow::Result<TokenTypes> {
        TokenTypes::from_config(&self.token_types)
            .map_err(|e| anyhow::anyhow!("invalid token type: {e}"))
    }

    pub fn signing_alg(&self) -> anyhow::Result<latchkey_service::keys::SigningAlg> {
        self.oauth
            .signing_alg
            .parse()
            .map_err(|e: String| anyhow::anyhow!("oauth.{e}"))
    }

    /// Single sign-on, when `[sso] issuer` is set.
    pub fn sso_settings(&self) -> anyhow::Result<Option<latchkey_service::sso::SsoSettings>> {
        let sso = &self.sso;
        let Some(issuer) = sso.issuer.clone().filter(|i| !i.trim().is_empty()) else {
            if !sso.password_login {
                anyhow::bail!("sso.password_login = false needs single sign-on: set sso.issuer");
            }
            return Ok(None);
        };
        let scheme_ok = issuer.starts_with("https://")
            || (self.outbound.allow_private && issuer.starts_with("http://"));
        if !scheme_ok {
            anyhow::bail!(
                "sso.issuer must be an https:// URL (http:// only with outbound.allow_private)"
            );
        }
        if sso.client_id.is_empty() || sso.client_secret.expose_secret().is_empty() {
            anyhow::bail!("sso.client_id and sso.client_secret are required with sso.issuer");
        }
        if !sso.scopes.split_whitespace().any(|s| s == "openid") {
            anyhow::bail!("sso.scopes must include openid");
        }
        if sso.reauth_window.is_zero() {
            anyhow::bail!("sso.reauth_window must be longer than 0s");
        }
        Ok(Some(latchkey_service::sso::SsoSettings {
            issuer,
            client_id: sso.client_id.clone(),
            client_secret: sso.client_secret.clone(),
            display_name: sso.display_name.clone(),
            scopes: sso.scopes.clone(),
            email_claim: sso.email_claim.clone(),
            require_verified_email: sso.require_verified_email,
            create_users: sso.create_users,
            password_login: sso.password_login,
            reauth_window: sso.reauth_window,
            redirect_uri: format!("{}/sso/callback", self.public_url()),
        }))
    }

    pub fn outbound_settings(&self) -> latchkey_service::outbound::OutboundSettings {
        latchkey_service::outbound::OutboundSettings {
            allow_private: self.outbound.allow_private,
            timeout: std::time::Duration::from_secs(self.outbound.timeout.as_secs()),
        }
    }

    /// Where notifications go.
    pub fn mail_settings(&self) -> latchkey_service::outbox::MailSettings {
        latchkey_service::outbox::MailSettings {
            smtp_url: self.smtp_url.clone().filter(|u| !u.trim().is_empty()),
            mail_from: self.mail_from.clone(),
            mail_dir: self.data_dir.join("mail"),
            smtp_timeout: self.smtp_timeout.to_std(),
        }
    }

    /// The master key file (default: `master.key` in the data directory).
    pub fn master_key_file(&self) -> PathBuf {
        self.master_key_file
            .clone()
            .unwrap_or_else(|| self.data_dir.join("master.key"))
    }

    pub fn public_url(&self) -> String {
        self.public_url
            .clone()
            .unwrap_or_else(|| format!("http://{}", self.listen))
            .trim_end_matches('/')
            .to_owned()
    }

    pub fn database_url(&self) -> String {
        self.database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", self.data_dir.join("latchkey.db").display()))
    }
}

/// `latchkey config example`: a commented configuration file with every key.
pub const EXAMPLE: &str = r#"# Latchkey configuration. Every key is optional; the values shown are the defaults.
# Each key can also be set in the environment: LATCHKEY_LISTEN, LATCHKEY_DATABASE_URL,
# nested keys with "__" (LATCHKEY_TOKEN_TYPES__API__MAX_ACTIVE=5). Flags beat both.

listen = "127.0.0.1:8080"
# public_url = "http://127.0.0.1:8080"   # the issuer and base of links; default http:// + listen
data_dir = "./latchkey-data"
# database_url = "sqlite://./latchkey-data/latchkey.db"   # or postgres://user@host/db (several instances)
database_max_connections = 16            # PostgreSQL: the pool's size, per instance
database_acquire_timeout = "3s"          # PostgreSQL: a request waits this long for a connection, then 503
# smtp_url = "smtp://127.0.0.1:2525"     # notifications; smtps://… or ?tls=required for TLS.
#                                        # Without it, mails are .eml files in <data_dir>/mail
mail_from = "Latchkey <latchkey@localhost>"
smtp_timeout = "15s"                     # one SMTP exchange; then the mail waits for its next try
log = "info"                             # a tracing filter: "debug", "latchkey_http=debug,info"
log_format = "text"                      # or "json"
session_ttl = "12h"                      # a sign-in's absolute lifetime
session_idle_timeout = "2h"              # ... and how long it may go unused
connection_idle_timeout = "30s"          # a connection on which no byte moves is closed
header_read_timeout = "10s"              # a request's headers must arrive within this
body_read_timeout = "15s"                # ... and its body, from the first wait for it
max_connections = 4096                   # connections open at once (keep below LimitNOFILE)
cache_warm_tokens = 1000000              # live tokens cached at start (0: off)
# password_hash_concurrency = 2          # default: the number of cores

[oauth]
access_token_ttl = "900s"
code_ttl = "60s"
refresh_token_ttl = "30d"
signing_alg = "ES256"                    # or "RS256", "EdDSA"
key_publish_ahead = "10m"                # `latchkey keys rotate`: published this long before use

[limits]
login_per_ip_per_minute = 30
login_free_failures = 5                  # then 1 s, 2 s, 4 s, ... per account
login_failure_window = "15m"
login_max_delay = "15m"
invalid_tokens_per_ip_per_minute = 60    # refused bearer tokens, then the address waits
invalid_token_block = "5m"
leak_reports_per_ip_per_hour = 60
password_resets_per_hour = 5
client_auth_failures_per_minute = 10     # OAuth clients, then their failures wait
client_auth_block = "60s"

# Single sign-on with the platform's OpenID Connect provider (docs/IDENTITY.md): off until
# issuer is set. The provider's redirect URI for Latchkey is <public_url>/sso/callback.
[sso]
# issuer = "https://idp.example.com"     # exactly as its discovery document says
# client_id = "latchkey"
# client_secret = "…"                    # better: LATCHKEY_SSO__CLIENT_SECRET in the environment
display_name = "single sign-on"          # the button reads "Sign in with …"
scopes = "openid email profile"
email_claim = "email"                    # the ID token claim with the person's address
require_verified_email = true            # match an existing person by address only if verified
create_users = false                     # make unknown people on their first sign-in
password_login = true                    # false: single sign-on only
reauth_window = "5m"                     # a confirmation at the provider lasts this long

# Latchkey's own requests (the SSO provider): public HTTPS only unless allowed.
[outbound]
allow_private = false                    # true: private/loopback addresses and http:// too
timeout = "10s"

# Override a built-in token type (personal, api, s2s, links) or define a new one.
# [token_types.personal]
# lifetime = "180d"          # or "none"
# max_active = 1
# activation_delay = "0s"
# rotation_reminder = "180d"
#
# [token_types.ci]
# owner = "user"             # or "organisation"
# prefix = "lkci"
# max_active = 3
# lifetime = "30d"
"#;

#[cfg(test)]
#[expect(
    clippy::result_large_err,
    reason = "figment::Jail fixes the closure's error type"
)]
mod tests {
    use super::*;
    use figment::Jail;

    #[test]
    fn layers_apply_in_order() {
        Jail::expect_with(|jail| {
            jail.create_file(
                "latchkey.toml",
                r#"
                listen = "127.0.0.1:1111"
                public_url = "http://file.example"
                data_dir = "/from/file"
                [token_types.api]
                max_active = 3
                "#,
            )?;
            jail.set_env("LATCHKEY_PUBLIC_URL", "http://env.example");
            jail.set_env("LATCHKEY_DATA_DIR", "/from/env");
            jail.set_env("LATCHKEY_TOKEN_TYPES__API__ACTIVATION_DELAY", "2s");
            let overrides = Overrides {
                data_dir: Some("/from/flag".into()),
                ..Overrides::default()
            };
            let config = Config::load(Some(Path::new("latchkey.toml")), &overrides)
                .map_err(|e| e.to_string())?;
            assert_eq!(config.listen.port(), 1111, "file beats default");
            assert_eq!(config.public_url(), "http://env.example", "env beats file");
            assert_eq!(
                config.data_dir,
                PathBuf::from("/from/flag"),
                "flag beats env"
            );
            let types = config.token_types().map_err(|e| e.to_string())?;
            let api = types.get("api").ok_or("no api type")?;
            assert_eq!(api.max_active, 3);
            assert_eq!(api.activation_delay.as_secs(), 2);
            assert_eq!(config.database_url(), "sqlite:///from/flag/latchkey.db");
            Ok(())
        });
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused() {
        Jail::expect_with(|jail| {
            jail.create_file("bad.toml", "listn = \"127.0.0.1:1\"\n")?;
            assert!(Config::load(Some(Path::new("bad.toml")), &Overrides::default()).is_err());
            jail.create_file("bad2.toml", "session_ttl = \"soon\"\n")?;
            assert!(Config::load(Some(Path::new("bad2.toml")), &Overrides::default()).is_err());
            jail.create_file("bad3.toml", "[oauth]\nsigning_alg = \"HS256\"\n")?;
            assert!(Config::load(Some(Path::new("bad3.toml")), &Overrides::default()).is_err());
            assert!(Config::load(Some(Path::new("missing.toml")), &Overrides::default()).is_err());
            Ok(())
        });
    }

    #[test]
    fn the_example_parses() {
        Jail::expect_with(|jail| {
            jail.create_file("example.toml", EXAMPLE)?;
            let config = Config::load(Some(Path::new("example.toml")), &Overrides::default())
                .map_err(|e| e.to_string())?;
            assert_eq!(config.listen.port(), 8080);
            Ok(())
        });
    }
}
