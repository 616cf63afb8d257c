//! The SQLite backend: the embedded default.
//!
//! WAL with `synchronous = FULL` (an acknowledged write survives power loss), a busy timeout, and
//! `BEGIN IMMEDIATE` for every read-then-write transaction so that two writers never race on a
//! stale snapshot (SECURITY.md, invariant 3).

use std::str::FromStr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use latchkey_core::{
    Email, InstanceId, MailId, OrgId, Role, Timestamp, TokenHash, TokenId, UserId,
};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteRow, SqliteSynchronous,
};
use sqlx::{Sqlite, Transaction};

use crate::events::owner_revocation_details;
use crate::model::*;
use crate::rows::{
    TokenColumns, account_from_row, cancel_link_from_row, client_from_row, credential_from_row,
    event_from_row, from_ts, get, grant_from_row, instance_from_row, mail_from_row,
    member_from_row, new_user_record, opt_ts, parse, secret_from_row, session_from_row,
    signing_key_from_row, split_scopes, token_from_row, ts, user_from_row,
};
use crate::{Change, ChangeListener, Store, StoreError, StoreResult};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");

pub struct SqliteStore {
    pool: SqlitePool,
    listener: std::sync::RwLock<Option<ChangeListener>>,
}

/// A write transaction and what it altered ([`Change`]s), committed together by
/// [`SqliteStore::commit`].
struct Tx {
    inner: Transaction<'static, Sqlite>,
    changes: Vec<Change>,
}

impl Tx {
    fn conn(&mut self) -> &mut SqliteConnection {
        &mut self.inner
    }

    fn alter(&mut self, change: Change) {
        if !self.changes.contains(&change) {
            self.changes.push(change);
        }
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `url` and applies pending migrations.
    pub async fn connect(url: &str) -> StoreResult<Self> {
        Self::connect_with(url, &[]).await
    }

    async fn connect_with(
        url: &str,
        pragmas: &[(&'static str, &'static str)],
    ) -> StoreResult<Self> {
        let mut options = SqliteConnectOptions::from_str(url)
            .map_err(|e| StoreError::Unavailable(format!("bad SQLite URL: {e}")))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        for (key, value) in pragmas {
            options = options.pragma(*key, *value);
        }
        private_files(options.get_filename())?;
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(10))
            .after_release(|conn, _| {
                Box::pin(async move {
                    if CHECK_RELEASED.load(Ordering::Relaxed) == 0 {
                        return Ok(true);
                    }
                    CHECK_RELEASED.fetch_sub(1, Ordering::Relaxed);
                    Ok(transactions_work(conn).await)
                })
            })
            .connect_with(options)
            .await
            .map_err(unavailable)?;
        MIGRATOR
            .run(&pool)
            .await
            .map_err(|e| StoreError::Internal(format!("migration failed: {e}")))?;
        Ok(Self {
            pool,
            listener: std::sync::RwLock::new(None),
        })
    }

    async fn write_tx(&self) -> StoreResult<Tx> {
        let inner = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(db_err("transaction"))?;
        Ok(Tx {
            inner,
            changes: Vec::new(),
        })
    }

    /// Commits a write with what it altered: the changes other processes need go into the
    /// `changes` table inside the transaction, and the listener hears of them all right after
    /// the commit (never for a write that did not commit).
    async fn commit(&self, mut tx: Tx) -> Result<(), sqlx::Error> {
        for change in tx.changes.iter().filter(|c| c.is_shared()) {
            sqlx::query("INSERT INTO changes (change) VALUES (?)")
                .bind(change.to_string())
                .execute(&mut *tx.inner)
                .await?;
        }
        tx.inner.commit().await?;
        if !tx.changes.is_empty() {
            let listener = self.listener.read().ok().and_then(|l| l.clone());
            if let Some(listener) = listener {
                listener(&tx.changes);
            }
        }
        Ok(())
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// The pool, for `copy.rs` (`latchkey db copy`).
    pub(crate) fn pool(&self) -> &SqlitePool {
        &self.pool
    }
}

fn unavailable(e: sqlx::Error) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

/// The database file and its journals are the owner's only (SECURITY.md "Files"). SQLite
/// creates `-wal` and `-shm` with the database file's mode, so the file is made `0600` before
/// SQLite first opens it; files from an older version are narrowed at start.
fn private_files(path: &std::path::Path) -> StoreResult<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    if path.as_os_str().is_empty() || path.as_os_str() == ":memory:" {
        return Ok(());
    }
    let outage = |e: std::io::Error| StoreError::Unavailable(format!("database file: {e}"));
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map_err(outage)?;
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        match std::fs::set_permissions(&name, std::fs::Permissions::from_mode(0o600)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(outage(e)),
            _ => {}
        }
    }
    Ok(())
}

/// Whether an SQLite result code (extended codes carry the primary one in their low byte) says
/// the storage cannot take the request now, rather than that the request is wrong: busy or
/// locked past the busy timeout, out of memory, read-only, an I/O error, the disk full, the
/// file unopenable or damaged. The caller answers 503 with `Retry-After`, never 500.
fn is_outage_code(code: &str) -> bool {
    const BUSY: i64 = 5;
    const LOCKED: i64 = 6;
    const NOMEM: i64 = 7;
    const READONLY: i64 = 8;
    const IOERR: i64 = 10;
    const CORRUPT: i64 = 11;
    const FULL: i64 = 13;
    const CANTOPEN: i64 = 14;
    const PROTOCOL: i64 = 15;
    const NOTADB: i64 = 26;
    code.parse::<i64>().is_ok_and(|c| {
        matches!(
            c & 0xff,
            BUSY | LOCKED
                | NOMEM
                | READONLY
                | IOERR
                | CORRUPT
                | FULL
                | CANTOPEN
                | PROTOCOL
                | NOTADB
        )
    })
}

/// Connections to look at when they go back to the pool: set after an outage-class error.
/// SQLite may end a transaction on its own when the disk is full or an I/O error strikes
/// (a refused COMMIT); the driver then still counts it open, its rollback fails, and the
/// connection would refuse every later transaction (`begin_with at non-zero transaction
/// depth`). The next few connections released are checked and closed if so; in normal
/// operation nothing is checked.
static CHECK_RELEASED: AtomicU32 = AtomicU32::new(0);
const CHECKS_AFTER_AN_OUTAGE: u32 = 64;

/// A transaction can begin on this connection (and is rolled back at once).
async fn transactions_work(conn: &mut SqliteConnection) -> bool {
    use sqlx::Connection as _;
    match conn.begin_with("BEGIN DEFERRED").await {
        Ok(tx) => tx.rollback().await.is_ok(),
        Err(_) => false,
    }
}

/// Maps a driver error, naming `what` in a conflict.
fn db_err(what: &'static str) -> impl Fn(sqlx::Error) -> StoreError {
    move |e| match &e {
        sqlx::Error::Database(d) if d.is_unique_violation() => StoreError::Conflict(what),
        sqlx::Error::Database(d) if d.code().is_some_and(|c| is_outage_code(&c)) => {
            CHECK_RELEASED.store(CHECKS_AFTER_AN_OUTAGE, Ordering::Relaxed);
            StoreError::Unavailable(e.to_string())
        }
        // A connection the check above has not reached yet: an outage too, not a bug.
        sqlx::Error::InvalidSavePointStatement => {
            CHECK_RELEASED.store(CHECKS_AFTER_AN_OUTAGE, Ordering::Relaxed);
            StoreError::Unavailable(e.to_string())
        }
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => {
            StoreError::Unavailable(e.to_string())
        }
        _ => StoreError::Internal(e.to_string()),
    }
}

async fn insert_event(tx: &mut Tx, e: &NewEvent) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO events (id, at, actor, action, subject_kind, subject_id, user_id, org_id, ip, outcome, details)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(&e.id)
    .bind(ts(e.at))
    .bind(&e.actor)
    .bind(&e.action)
    .bind(&e.subject_kind)
    .bind(&e.subject_id)
    .bind(e.user_id.as_ref().map(UserId::as_str))
    .bind(e.org_id.as_ref().map(OrgId::as_str))
    .bind(&e.ip)
    .bind(&e.outcome)
    .bind(&e.details)
    .execute(tx.conn())
    .await
    .map_err(db_err("event"))?;
    if !e.mails.is_empty() {
        tx.alter(Change::Outbox);
    }
    // The outbox half of the change: its mails commit with it or not at all (SPEC 6).
    for m in &e.mails {
        sqlx::query(
            "INSERT INTO outbox (id, event_id, recipient, subject, body, sealed, created_at, next_attempt_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(m.id.as_str())
        .bind(&e.id)
        .bind(m.recipient.as_str())
        .bind(&m.subject)
        .bind(&m.body)
        .bind(m.sealed.as_deref())
        .bind(ts(m.created_at))
        .bind(ts(m.created_at))
        .execute(tx.conn())
        .await
        .map_err(db_err("mail"))?;
    }
    Ok(())
}

async fn insert_token(tx: &mut Tx, t: &NewToken) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO tokens (id, token_hash, token_type, owner_kind, owner_id, name, hint, scopes,
                             created_at, active_from, expires_at, rotated_from, ends_on_first_use,
                             secret_ciphertext, allowed_ips, signing_kid)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(t.id.as_str())
    .bind(t.token_hash.as_bytes().as_slice())
    .bind(&t.token_type)
    .bind(t.owner.kind())
    .bind(t.owner.id())
    .bind(&t.name)
    .bind(&t.hint)
    .bind(t.scopes.join(" "))
    .bind(ts(t.created_at))
    .bind(ts(t.active_from))
    .bind(t.expires_at.map(ts))
    .bind(t.rotated_from.as_ref().map(TokenId::as_str))
    .bind(t.ends_on_first_use.as_ref().map(TokenId::as_str))
    .bind(t.secret_ciphertext.as_deref())
    .bind((!t.allowed_ips.is_empty()).then(|| t.allowed_ips.join(" ")))
    .bind(&t.signing_kid)
    .execute(tx.conn())
    .await
    .map_err(db_err("token"))?;
    if let Some(hash) = &t.cancel_code_hash {
        sqlx::query(
            "INSERT INTO cancel_links (code_hash, token_id, created_at, expires_at) VALUES (?, ?, ?, ?)",
        )
        .bind(hash.as_bytes().as_slice())
        .bind(t.id.as_str())
        .bind(ts(t.created_at))
        .bind(ts(t.active_from))
        .execute(tx.conn())
        .await
        .map_err(db_err("cancel link"))?;
    }
    Ok(())
}

async fn token_in_tx(tx: &mut Tx, id: &TokenId) -> StoreResult<TokenRecord> {
    let row = sqlx::query("SELECT * FROM tokens WHERE id = ?")
        .bind(id.as_str())
        .fetch_optional(tx.conn())
        .await
        .map_err(db_err("token"))?
        .ok_or(StoreError::NotFound("token"))?;
    token_from_row(&row)
}

/// An organisation row, with its features gathered by the same statement (`features`, a JSON
/// array in order): reading many organisations stays one query, not one more per organisation.
fn org_from_row(row: &SqliteRow) -> StoreResult<Org> {
    let features: String = get(row, "features")?;
    Ok(Org {
        features: serde_json::from_str(&features)
            .map_err(|e| StoreError::Internal(format!("stored features do not parse: {e}")))?,
        id: parse(&get::<String>(row, "id")?, "org id")?,
        name: get(row, "name")?,
        api_tokens_enabled: get(row, "api_tokens_enabled")?,
        created_at: from_ts(get(row, "created_at")?)?,
        external_id: get(row, "external_id")?,
        deleted_at: opt_ts(get(row, "deleted_at")?)?,
        provisioned: get(row, "provisioned")?,
    })
}

async fn insert_client_secret(tx: &mut Tx, s: &NewClientSecret) -> StoreResult<()> {
    sqlx::query("INSERT INTO client_secrets (id, client_id, secret_hash, hint, created_at) VALUES (?, ?, ?, ?, ?)")
        .bind(&s.id)
        .bind(&s.client_id)
        .bind(s.secret_hash.as_bytes().as_slice())
        .bind(&s.hint)
        .bind(ts(s.created_at))
        .execute(tx.conn())
        .await
        .map_err(db_err("client secret"))?;
    Ok(())
}

/// `LastAdmin` if `user` is the only admin of `org` (so demoting or removing them would leave
/// the organisation without one).
async fn refuse_last_admin(tx: &mut Tx, org: &OrgId, user: &UserId) -> StoreResult<()> {
    let row = sqlx::query(
        "SELECT
           (SELECT role FROM memberships WHERE org_id = ?1 AND user_id = ?2) AS role,
           (SELECT COUNT(*) FROM memberships WHERE org_id = ?1 AND role = 'admin' AND user_id != ?2) AS others",
    )
    .bind(org.as_str())
    .bind(user.as_str())
    .fetch_one(tx.conn())
    .await
    .map_err(db_err("membership"))?;
    let role: Option<String> = get(&row, "role")?;
    let others: i64 = get(&row, "others")?;
    if role.as_deref() == Some(Role::Admin.as_str()) && others == 0 {
        return Err(StoreError::LastAdmin);
    }
    Ok(())
}

/// The OAuth half of the kill switch, inside its transaction: every grant of a user (or of
/// every client of an organisation) ends, and an organisation's clients' access tokens issued
/// until `at` are refused. Returns how many grants it ended.
async fn revoke_oauth_of_owner(tx: &mut Tx, owner: &Owner, at: Timestamp) -> StoreResult<u64> {
    let (user, org) = match owner {
        Owner::User(u) => (Some(u.as_str()), None),
        Owner::Organisation(o) => (None, Some(o.as_str())),
    };
    let done = sqlx::query(
        "UPDATE oauth_grants SET revoked_at = ?1 WHERE revoked_at IS NULL
           AND ((?2 IS NOT NULL AND user_id = ?2)
             OR (?3 IS NOT NULL AND client_id IN (SELECT id FROM oauth_clients WHERE org_id = ?3)))",
    )
    .bind(ts(at))
    .bind(user)
    .bind(org)
    .execute(tx.conn())
    .await
    .map_err(db_err("grant"))?;
    tx.alter(Change::AccessTokens);
    if let Some(org) = org {
        // Its clients' access tokens are refused from now on: every client of it changed.
        if let Owner::Organisation(id) = owner {
            tx.alter(Change::Org(id.clone()));
        }
        sqlx::query("UPDATE oauth_clients SET tokens_valid_after = ? WHERE org_id = ?")
            .bind(ts(at))
            .bind(org)
            .execute(tx.conn())
            .await
            .map_err(db_err("client"))?;
    }
    Ok(done.rows_affected())
}

async fn insert_refresh(tx: &mut Tx, t: &NewRefreshToken) -> StoreResult<()> {
    sqlx::query("INSERT INTO refresh_tokens (token_hash, grant_id, client_id, created_at, expires_at) VALUES (?, ?, ?, ?, ?)")
        .bind(t.token_hash.as_bytes().as_slice())
        .bind(&t.grant_id)
        .bind(&t.client_id)
        .bind(ts(t.created_at))
        .bind(ts(t.expires_at))
        .execute(tx.conn())
        .await
        .map_err(db_err("refresh token"))?;
    Ok(())
}

#[async_trait]
impl Store for SqliteStore {
    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    fn set_change_listener(&self, listener: ChangeListener) {
        if let Ok(mut slot) = self.listener.write() {
            *slot = Some(listener);
        }
    }

    async fn latest_change(&self) -> StoreResult<i64> {
        sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) FROM changes")
            .fetch_one(&self.pool)
            .await
            .map_err(db_err("change"))
    }

    async fn list_changes_since(&self, seq: i64, limit: u32) -> StoreResult<Vec<(i64, Change)>> {
        let rows =
            sqlx::query("SELECT seq, change FROM changes WHERE seq > ? ORDER BY seq LIMIT ?")
                .bind(seq)
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await
                .map_err(db_err("change"))?;
        rows.iter()
            .map(|r| {
                let text: String = get(r, "change")?;
                // One this version cannot read (written by a newer one): the safe reading.
                Ok((get(r, "seq")?, text.parse().unwrap_or(Change::All)))
            })
            .collect()
    }

    async fn prune_changes(&self, keep_last: u32) -> StoreResult<()> {
        sqlx::query("DELETE FROM changes WHERE seq <= (SELECT MAX(seq) FROM changes) - ?")
            .bind(i64::from(keep_last))
            .execute(&self.pool)
            .await
            .map_err(db_err("change"))?;
        Ok(())
    }

    async fn create_user(&self, u: &NewUser, event: &NewEvent) -> StoreResult<User> {
        let mut tx = self.write_tx().await?;
        sqlx::query(
            "INSERT INTO users (id, email, password_hash, is_operator, created_at, external_id, profile, disabled, provisioned)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(u.id.as_str())
        .bind(u.email.as_str())
        .bind(&u.password_hash)
        .bind(u.is_operator)
        .bind(ts(u.created_at))
        .bind(&u.external_id)
        .bind(&u.profile)
        .bind(u.disabled)
        .bind(u.provisioned)
        .execute(tx.conn())
        .await
        .map_err(db_err("user"))?;
        insert_event(&mut tx, event).await?;
        self.commit(tx).await.map_err(db_err("user"))?;
        Ok(new_user_record(u))
    }

    async fn find_user(&self, id: &UserId) -> StoreResult<Option<User>> {
        let row = sqlx::query("SELECT * FROM users WHERE id = ?")
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err("user"))?;
        row.as_ref().map(user_from_row).transpose()
    }

    async fn find_user_by_email(&self, email: &Email) -> StoreResult<Option<User>> {
        let row = sqlx::query("SELECT * FROM users WHERE email = ?")
            .bind(email.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err("user"))?;
        row.as_ref().map(user_from_row).transpose()
    }

    async fn find_user_by_external_id(&self, external_id: &str) -> StoreResult<Option<User>> {
        let row = sqlx::query("SELECT * FROM users WHERE external_id = ? AND deleted_at IS NULL")
            .bind(external_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err("user"))?;
        row.as_ref().map(user_from_row).transpose()
    }

    async fn list_provisioned_users(&self, offset: u64, limit: u32) -> StoreResult<Vec<User>> {
        let rows = sqlx::query(
            "SELECT * FROM users WHERE deleted_at IS NULL AND provisioned
             ORDER BY created_at, id LIMIT ? OFFSET ?",
        )
        .bind(i64::from(limit))
        .bind(i64::try_from(offset).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await
        .map_err(db_err("user"))?;
        rows.iter().map(user_from_row).collect()
    }

    async fn count_provisioned_users(&self) -> StoreResult<u64> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM users WHERE deleted_at IS NULL AND provisioned",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(db_err("user"))?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    async fn has_users(&self) -> StoreResult<bool> {
        let found: Option<i32> =
            sqlx::query_scalar("SELECT 1 FROM users WHERE deleted_at IS NULL LIMIT 1")
                .fetch_optional(&self.pool)
                .await
                .map_err(db_err("user"))?;
        Ok(found.is_some())
    }

    async fn update_user(
        &self,
        id: &UserId,
        c: &UserChange,
        event: &NewEvent,
    ) -> StoreResult<User> {
        let mut tx = self.write_tx().await?;
        let done = sqlx::query(
            "UPDATE users SET disabled = COALESCE(?, disabled),
                              api_tokens_enabled = COALESCE(?, api_tokens_enabled),
                              is_operator = COALESCE(?, is_operator),
                              password_hash = COALESCE(?, password_hash),
                              email = COALESCE(?, email),
                              external_id = CASE WHEN ? THEN ? ELSE external_id END,
                              profile = CASE WHEN ? THEN ? ELSE profile END,
                              deleted_at = COALESCE(?, deleted_at),
                              version = version + 1,
                              updated_at = ?
             WHERE id = ? AND deleted_at IS NULL AND (? IS NULL OR version = ?)",
        )
        .bind(c.disabled)
        .bind(c.api_tokens_enabled)
        .bind(c.is_operator)
        .bind(&c.password_hash)
        .bind(c.email.as_ref().map(Email::as_str))
        .bind(c.external_id.is_some())
        .bind(c.external_id.clone().flatten())
        .bind(c.profile.is_some())
        .bind(c.profile.clone().flatten())
        .bind(c.deleted_at.map(ts))
        .bind(ts(event.at))
        .bind(id.as_str())
        .bind(c.expected_version)
        .bind(c.expected_version)
        .execute(tx.conn())
        .await
        .map_err(db_err("user"))?;
        if done.rows_affected() == 0 {
            return Err(match c.expected_version {
                Some(_) => StoreError::Stale("user"),
                None => StoreError::NotFound("user"),
            });
        }
        if c.deleted_at.is_some() {
            let orgs: Vec<String> =
                sqlx::query_scalar("DELETE FROM memberships WHERE user_id = ? RETURNING org_id")
                    .bind(id.as_str())
                    .fetch_all(tx.conn())
                    .await
                    .map_err(db_err("membership"))?;
            for org in orgs {
                tx.alter(Change::Membership(parse(&org, "org id")?, id.clone()));
            }
        }
        // A live password reset link must not outlive the password, the address it was
        // mailed to, or the account's being switched off.
        if c.password_hash.is_some()
            || c.email.is_some()
            || c.disabled == Some(true)
            || c.deleted_at.is_some()
        {
            sqlx::query(
                "UPDATE password_resets SET used_at = ? WHERE user_id = ? AND used_at IS NULL",
            )
            .bind(ts(event.at))
            .bind(id.as_str())
            .execute(tx.conn())
            .await
            .map_err(db_err("password reset"))?;
        }
        if c.end_sessions {
            sqlx::query("DELETE FROM sessions WHERE user_id = ?")
                .bind(id.as_str())
                .execute(tx.conn())
                .await
                .map_err(db_err("session"))?;
        }
        let row = sqlx::query("SELECT * FROM users WHERE id = ?")
            .bind(id.as_str())
            .fetch_one(tx.conn())
            .await
            .map_err(db_err("user"))?;
        insert_event(&mut tx, event).await?;
        tx.alter(Change::User(id.clone()));
        self.commit(tx).await.map_err(db_err("user"))?;
        user_from_row(&row)
    }

    async fn create_org(
        &self,
        o: &NewOrg,
        event: &NewEvent,
        first_token: Option<(&NewToken, &NewEvent)>,
    ) -> StoreResult<Org> {
        let mut tx = self.write_tx().await?;
        sqlx::query(
            "INSERT INTO orgs (id, name, created_at, external_id, provisioned) VALUES (?, ?, ?, ?, ?)",
        )
        .bind(o.id.as_str())
        .bind(&o.name)
        .bind(ts(o.created_at))
        .bind(&o.external_id)
        .bind(o.provisioned)
            .execute(tx.conn())
            .await
            .map_err(db_err("organisation"))?;
        for f in &o.features {
            sqlx::query("INSERT OR IGNORE INTO org_features (org_id, feature) VALUES (?, ?)")
                .bind(o.id.as_str())
                .bind(f)
                .execute(tx.conn())
                .await
                .map_err(db_err("feature"))?;
        }
        insert_event(&mut tx, event).await?;
        if let Some((token, token_event)) = first_token {
            insert_token(&mut tx, token).await?;
            insert_event(&mut tx, token_event).await?;
        }
        self.commit(tx).await.map_err(db_err("organisation"))?;
        Ok(Org {
            id: o.id.clone(),
            name: o.name.clone(),
            features: o.features.clone(),
            api_tokens_enabled: true,
            created_at: o.created_at,
            external_id: o.external_id.clone(),
            deleted_at: None,
            provisioned: o.provisioned,
        })
    }

    async fn find_org(&self, id: &OrgId) -> StoreResult<Option<Org>> {
        let row = sqlx::query(
            "SELECT o.*, (SELECT json_group_array(feature ORDER BY feature) FROM org_features f
                          WHERE f.org_id = o.id) AS features
             FROM orgs o WHERE o.id = ?",
        )
        .bind(id.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err("organisation"))?;
        row.as_ref().map(org_from_row).transpose()
    }

    async fn find_org_by_external_id(&self, external_id: &str) -> StoreResult<Option<Org>> {
        let row = sqlx::query(
            "SELECT o.*, (SELECT json_group_array(feature ORDER BY feature) FROM org_features f
                          WHERE f.org_id = o.id) AS features
             FROM orgs o WHERE o.external_id = ? AND o.deleted_at IS NULL",
        )
        .bind(external_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err("organisation"))?;
        row.as_ref().map(org_from_row).transpose()
    }

    async fn update_org(&self, id: &OrgId, c: &OrgChange, event: &NewEvent) -> StoreResult<Org> {
        let mut tx = self.write_tx().await?;
        let done = sqlx::query(
            "UPDATE orgs SET api_tokens_enabled = COALESCE(?, api_tokens_enabled), name = COALESCE(?, name),
                             external_id = CASE WHEN ? THEN ? ELSE external_id END,
                             deleted_at = COALESCE(?, deleted_at)
             WHERE id = ? AND deleted_at IS NULL",
        )
        .bind(c.api_tokens_enabled)
        .bind(&c.name)
        .bind(c.external_id.is_some())
        .bind(c.external_id.clone().flatten())
        .bind(c.deleted_at.map(ts))
        .bind(id.as_str())
        .execute(tx.conn())
        .await
        .map_err(db_err("organisation"))?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound("organisation"));
        }
        if c.deleted_at.is_some() {
            let users: Vec<String> =
                sqlx::query_scalar("DELETE FROM memberships WHERE org_id = ? RETURNING user_id")
                    .bind(id.as_str())
                    .fetch_all(tx.conn())
                    .await
                    .map_err(db_err("membership"))?;
            for user in users {
                tx.alter(Change::Membership(id.clone(), parse(&user, "user id")?));
            }
        }
        for f in &c.add_features {
            sqlx::query("INSERT OR IGNORE INTO org_features (org_id, feature) VALUES (?, ?)")
                .bind(id.as_str())
                .bind(f)
                .execute(tx.conn())
                .await
                .map_err(db_err("feature"))?;
        }
        for f in &c.remove_features {
            sqlx::query("DELETE FROM org_features WHERE org_id = ? AND feature = ?")
                .bind(id.as_str())
                .bind(f)
                .execute(tx.conn())
                .await
                .map_err(db_err("feature"))?;
        }
        insert_event(&mut tx, event).await?;
        tx.alter(Change::Org(id.clone()));
        self.commit(tx).await.map_err(db_err("organisation"))?;
        self.find_org(id)
            .await?
            .ok_or(StoreError::NotFound("organisation"))
    }

    async fn upsert_membership(
        &self,
        org: &OrgId,
        user: &UserId,
        role: Role,
        at: Timestamp,
        keep_an_admin: bool,
        event: &NewEvent,
    ) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        if keep_an_admin && !role.is_admin() {
            refuse_last_admin(&mut tx, org, user).await?;
        }
        sqlx::query(
            "INSERT INTO memberships (org_id, user_id, role, created_at) VALUES (?, ?, ?, ?)
             ON CONFLICT (org_id, user_id) DO UPDATE SET role = excluded.role",
        )
        .bind(org.as_str())
        .bind(user.as_str())
        .bind(role.as_str())
        .bind(ts(at))
        .execute(tx.conn())
        .await
        .map_err(|e| match &e {
            sqlx::Error::Database(d) if d.is_foreign_key_violation() => {
                StoreError::NotFound("user or organisation")
            }
            _ => db_err("membership")(e),
        })?;
        insert_event(&mut tx, event).await?;
        tx.alter(Change::Membership(org.clone(), user.clone()));
        self.commit(tx).await.map_err(db_err("membership"))
    }

    async fn delete_membership(
        &self,
        org: &OrgId,
        user: &UserId,
        keep_an_admin: bool,
        event: &NewEvent,
    ) -> StoreResult<bool> {
        let mut tx = self.write_tx().await?;
        if keep_an_admin {
            refuse_last_admin(&mut tx, org, user).await?;
        }
        let done = sqlx::query("DELETE FROM memberships WHERE org_id = ? AND user_id = ?")
            .bind(org.as_str())
            .bind(user.as_str())
            .execute(tx.conn())
            .await
            .map_err(db_err("membership"))?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        insert_event(&mut tx, event).await?;
        tx.alter(Change::Membership(org.clone(), user.clone()));
        self.commit(tx).await.map_err(db_err("membership"))?;
        Ok(true)
    }

    async fn list_user_accounts(&self, user: &UserId) -> StoreResult<Vec<Account>> {
        let rows = sqlx::query(
            "SELECT o.id, o.name, o.api_tokens_enabled, m.role FROM memberships m
             JOIN orgs o ON o.id = m.org_id WHERE m.user_id = ? ORDER BY m.created_at, m.rowid",
        )
        .bind(user.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(db_err("membership"))?;
        rows.iter().map(account_from_row).collect()
    }

    async fn list_org_members(&self, org: &OrgId) -> StoreResult<Vec<Member>> {
        let rows = sqlx::query(
            "SELECT u.id, u.email, m.role, m.created_at FROM memberships m
             JOIN users u ON u.id = m.user_id WHERE m.org_id = ? ORDER BY m.created_at, m.rowid",
        )
        .bind(org.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(db_err("membership"))?;
        rows.iter().map(member_from_row).collect()
    }

    async fn list_orgs(&self) -> StoreResult<Vec<Org>> {
        let rows = sqlx::query(
            "SELECT o.*, (SELECT json_group_array(feature ORDER BY feature) FROM org_features f
                          WHERE f.org_id = o.id) AS features
             FROM orgs o WHERE o.deleted_at IS NULL ORDER BY o.created_at, o.id",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db_err("organisation"))?;
        rows.iter().map(org_from_row).collect()
    }

    async fn create_platform_credential(
        &self,
        c: &PlatformCredential,
        secret_hash: &TokenHash,
        event: &NewEvent,
    ) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        sqlx::query(
            "INSERT INTO provisioning_credentials (id, name, secret_hash, created_at, kind) VALUES (?, ?, ?, ?, ?)",
        )
        .bind(&c.id)
        .bind(&c.name)
        .bind(secret_hash.as_bytes().as_slice())
        .bind(ts(c.created_at))
        .bind(c.kind.as_str())
        .execute(tx.conn())
        .await
        .map_err(db_err("provisioning credential"))?;
        insert_event(&mut tx, event).await?;
        self.commit(tx)
            .await
            .map_err(db_err("provisioning credential"))
    }

    async fn find_platform_credential(
        &self,
        hash: &TokenHash,
    ) -> StoreResult<Option<PlatformCredential>> {
        let row = sqlx::query(
            "SELECT * FROM provisioning_credentials WHERE secret_hash = ? AND revoked_at IS NULL",
        )
        .bind(hash.as_bytes().as_slice())
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err("provisioning credential"))?;
        row.as_ref().map(credential_from_row).transpose()
    }

    async fn list_platform_credentials(&self) -> StoreResult<Vec<PlatformCredential>> {
        let rows = sqlx::query("SELECT * FROM provisioning_credentials ORDER BY created_at, id")
            .fetch_all(&self.pool)
            .await
            .map_err(db_err("provisioning credential"))?;
        rows.iter().map(credential_from_row).collect()
    }

    async fn revoke_platform_credential(
        &self,
        id: &str,
        kind: CredentialKind,
        at: Timestamp,
        event: &NewEvent,
    ) -> StoreResult<bool> {
        let mut tx = self.write_tx().await?;
        let done = sqlx::query(
            "UPDATE provisioning_credentials SET revoked_at = ?
             WHERE id = ? AND kind = ? AND revoked_at IS NULL",
        )
        .bind(ts(at))
        .bind(id)
        .bind(kind.as_str())
        .execute(tx.conn())
        .await
        .map_err(db_err("provisioning credential"))?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        insert_event(&mut tx, event).await?;
        self.commit(tx)
            .await
            .map_err(db_err("provisioning credential"))?;
        Ok(true)
    }

    async fn create_password_reset(
        &self,
        r: &NewPasswordReset,
        event: &NewEvent,
    ) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        sqlx::query(
            "INSERT INTO password_resets (code_hash, user_id, created_at, expires_at) VALUES (?, ?, ?, ?)",
        )
        .bind(r.code_hash.as_bytes().as_slice())
        .bind(r.user_id.as_str())
        .bind(ts(r.created_at))
        .bind(ts(r.expires_at))
        .execute(tx.conn())
        .await
        .map_err(db_err("password reset"))?;
        insert_event(&mut tx, event).await?;
        self.commit(tx).await.map_err(db_err("password reset"))
    }

    async fn find_live_password_reset(
        &self,
        code_hash: &TokenHash,
        now: Timestamp,
    ) -> StoreResult<Option<UserId>> {
        let user: Option<String> = sqlx::query_scalar(
            "SELECT user_id FROM password_resets
             WHERE code_hash = ? AND used_at IS NULL AND expires_at > ?
               AND user_id IN (SELECT id FROM users WHERE NOT disabled AND deleted_at IS NULL)",
        )
        .bind(code_hash.as_bytes().as_slice())
        .bind(ts(now))
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err("password reset"))?;
        user.map(|u| parse(&u, "user id")).transpose()
    }

    async fn complete_password_reset(
        &self,
        code_hash: &TokenHash,
        now: Timestamp,
        password_hash: &str,
        event: &NewEvent,
    ) -> StoreResult<Option<UserId>> {
        let mut tx = self.write_tx().await?;
        let user: Option<String> = sqlx::query_scalar(
            "UPDATE password_resets SET used_at = ?
             WHERE code_hash = ? AND used_at IS NULL AND expires_at > ?
               AND user_id IN (SELECT id FROM users WHERE NOT disabled AND deleted_at IS NULL)
             RETURNING user_id",
        )
        .bind(ts(now))
        .bind(code_hash.as_bytes().as_slice())
        .bind(ts(now))
        .fetch_optional(tx.conn())
        .await
        .map_err(db_err("password reset"))?;
        // Nothing was used up: the transaction ends without a write.
        let Some(user) = user else {
            return Ok(None);
        };
        let user: UserId = parse(&user, "user id")?;
        sqlx::query("UPDATE password_resets SET used_at = ? WHERE user_id = ? AND used_at IS NULL")
            .bind(ts(now))
            .bind(user.as_str())
            .execute(tx.conn())
            .await
            .map_err(db_err("password reset"))?;
        sqlx::query(
            "UPDATE users SET password_hash = ?, version = version + 1, updated_at = ? WHERE id = ?",
        )
        .bind(password_hash)
        .bind(ts(now))
        .bind(user.as_str())
        .execute(tx.conn())
        .await
        .map_err(db_err("user"))?;
        sqlx::query("DELETE FROM sessions WHERE user_id = ?")
            .bind(user.as_str())
            .execute(tx.conn())
            .await
            .map_err(db_err("session"))?;
        // The event is about the person the code was for, known only now.
        let mut event = event.clone();
        event.subject_id = user.to_string();
        event.user_id = Some(user.clone());
        insert_event(&mut tx, &event).await?;
        tx.alter(Change::User(user.clone()));
        self.commit(tx).await.map_err(db_err("password reset"))?;
        Ok(Some(user))
    }

    async fn create_session(&self, s: &NewSession, event: &NewEvent) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        let done = sqlx::query(
            "INSERT INTO sessions (id, token_hash, user_id, created_at, expires_at, last_seen_at)
             SELECT ?, ?, ?, ?, ?, ? WHERE EXISTS
               (SELECT 1 FROM users WHERE id = ? AND version = ? AND NOT disabled AND deleted_at IS NULL)",
        )
        .bind(&s.id)
        .bind(s.token_hash.as_bytes().as_slice())
        .bind(s.user_id.as_str())
        .bind(ts(s.created_at))
        .bind(ts(s.expires_at))
        .bind(ts(s.created_at))
        .bind(s.user_id.as_str())
        .bind(s.user_version)
        .execute(tx.conn())
        .await
        .map_err(db_err("session"))?;
        if done.rows_affected() == 0 {
            return Err(StoreError::Stale("user"));
        }
        // Expired sessions are swept here, on the write path, instead of by a timer.
        sqlx::query("DELETE FROM sessions WHERE expires_at <= ?")
            .bind(ts(s.created_at))
            .execute(tx.conn())
            .await
            .map_err(db_err("session"))?;
        insert_event(&mut tx, event).await?;
        self.commit(tx).await.map_err(db_err("session"))
    }

    async fn find_session(&self, hash: &TokenHash, now: Timestamp) -> StoreResult<Option<Session>> {
        let row = sqlx::query("SELECT id, user_id, created_at, expires_at, COALESCE(last_seen_at, created_at) AS last_seen_at, reauth_at FROM sessions WHERE token_hash = ? AND expires_at > ?")
            .bind(hash.as_bytes().as_slice())
            .bind(ts(now))
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err("session"))?;
        row.as_ref().map(session_from_row).transpose()
    }

    async fn mark_session_reauthenticated(
        &self,
        id: &str,
        at: Timestamp,
        event: &NewEvent,
    ) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        let done = sqlx::query("UPDATE sessions SET reauth_at = ?1 WHERE id = ?2")
            .bind(ts(at))
            .bind(id)
            .execute(tx.conn())
            .await
            .map_err(db_err("session"))?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound("session"));
        }
        insert_event(&mut tx, event).await?;
        self.commit(tx).await.map_err(db_err("session"))
    }

    async fn find_sso_link(&self, issuer: &str, subject: &str) -> StoreResult<Option<UserId>> {
        let id: Option<String> = sqlx::query_scalar(
            "SELECT l.user_id FROM sso_links l JOIN users u ON u.id = l.user_id
             WHERE l.issuer = ?1 AND l.subject = ?2 AND u.deleted_at IS NULL",
        )
        .bind(issuer)
        .bind(subject)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err("single sign-on link"))?;
        id.map(|id| parse(&id, "user id")).transpose()
    }

    async fn link_sso(&self, link: &SsoLink, event: &NewEvent) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        // A link left by a deleted person gives way; a live person's never does.
        let done = sqlx::query(
            "INSERT INTO sso_links (issuer, subject, user_id, created_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (issuer, subject) DO UPDATE SET user_id = excluded.user_id, created_at = excluded.created_at
             WHERE (SELECT deleted_at FROM users WHERE id = sso_links.user_id) IS NOT NULL",
        )
        .bind(&link.issuer)
        .bind(&link.subject)
        .bind(link.user_id.as_str())
        .bind(ts(link.created_at))
        .execute(tx.conn())
        .await
        .map_err(db_err("single sign-on identity"))?;
        if done.rows_affected() == 0 {
            return Err(StoreError::Conflict("single sign-on identity"));
        }
        insert_event(&mut tx, event).await?;
        self.commit(tx)
            .await
            .map_err(db_err("single sign-on identity"))
    }

    async fn touch_session(&self, id: &str, at: Timestamp) -> StoreResult<()> {
        // Only forward: two requests racing to write cannot move it back.
        sqlx::query(
            "UPDATE sessions SET last_seen_at = ?1
             WHERE id = ?2 AND (last_seen_at IS NULL OR last_seen_at < ?1)",
        )
        .bind(ts(at))
        .bind(id)
        .execute(&self.pool)
        .await
        .map_err(db_err("session"))?;
        Ok(())
    }

    async fn rehash_password(
        &self,
        user: &UserId,
        old_hash: &str,
        new_hash: &str,
    ) -> StoreResult<bool> {
        // Compare-and-set: a password changed meanwhile is never overwritten by the old one's
        // rehash. No session ends: the password is the same, only its stored form is stronger.
        let done =
            sqlx::query("UPDATE users SET password_hash = ?1 WHERE id = ?2 AND password_hash = ?3")
                .bind(new_hash)
                .bind(user.as_str())
                .bind(old_hash)
                .execute(&self.pool)
                .await
                .map_err(db_err("user"))?;
        Ok(done.rows_affected() == 1)
    }

    async fn list_user_sessions(&self, user: &UserId, now: Timestamp) -> StoreResult<Vec<Session>> {
        let rows = sqlx::query(
            "SELECT id, user_id, created_at, expires_at, COALESCE(last_seen_at, created_at) AS last_seen_at, reauth_at
             FROM sessions WHERE user_id = ? AND expires_at > ? ORDER BY created_at DESC, id",
        )
        .bind(user.as_str())
        .bind(ts(now))
        .fetch_all(&self.pool)
        .await
        .map_err(db_err("session"))?;
        rows.iter().map(session_from_row).collect()
    }

    async fn delete_session(&self, id: &str, event: &NewEvent) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        sqlx::query("DELETE FROM sessions WHERE id = ?")
            .bind(id)
            .execute(tx.conn())
            .await
            .map_err(db_err("session"))?;
        insert_event(&mut tx, event).await?;
        self.commit(tx).await.map_err(db_err("session"))
    }

    async fn create_token_within_limit(
        &self,
        t: &NewToken,
        max_active: u32,
        now: Timestamp,
        event: &NewEvent,
        idempotency: Option<&IdempotencyKey>,
    ) -> StoreResult<CreateOutcome> {
        let mut tx = self.write_tx().await?;
        if let Some(k) = idempotency {
            let earlier =
                sqlx::query("SELECT token_id FROM idempotency_keys WHERE scope = ? AND key = ?")
                    .bind(&k.scope)
                    .bind(&k.key)
                    .fetch_optional(tx.conn())
                    .await
                    .map_err(db_err("idempotency key"))?;
            if let Some(row) = earlier {
                let id: TokenId = parse(&get::<String>(&row, "token_id")?, "token id")?;
                return Ok(CreateOutcome::Replayed(token_in_tx(&mut tx, &id).await?));
            }
        }
        let row = sqlx::query(
            "SELECT COUNT(*) AS live FROM tokens
             WHERE owner_kind = ? AND owner_id = ? AND token_type = ?
               AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > ?)",
        )
        .bind(t.owner.kind())
        .bind(t.owner.id())
        .bind(&t.token_type)
        .bind(ts(now))
        .fetch_one(tx.conn())
        .await
        .map_err(db_err("token"))?;
        let live: i64 = get(&row, "live")?;
        if live >= i64::from(max_active) {
            return Err(StoreError::LimitReached);
        }
        insert_token(&mut tx, t).await?;
        if let Some(k) = idempotency {
            sqlx::query("INSERT INTO idempotency_keys (scope, key, token_id, created_at) VALUES (?, ?, ?, ?)")
                .bind(&k.scope)
                .bind(&k.key)
                .bind(t.id.as_str())
                .bind(ts(now))
                .execute(tx.conn())
                .await
                .map_err(db_err("idempotency key"))?;
        }
        insert_event(&mut tx, event).await?;
        let record = token_in_tx(&mut tx, &t.id).await?;
        self.commit(tx).await.map_err(db_err("token"))?;
        Ok(CreateOutcome::Created(record))
    }

    async fn rotate_token(
        &self,
        old: &TokenId,
        old_expires_at: Timestamp,
        now: Timestamp,
        new: &NewToken,
        event: &NewEvent,
    ) -> StoreResult<TokenRecord> {
        let mut tx = self.write_tx().await?;
        // A token is replaced once: a second rotation (a double click, a retry) would leave two
        // successors and the owner above `max_active` for good once the grace period ends.
        // The successor has the old token's owner and type: the owner index finds it.
        let successor = sqlx::query(
            "SELECT 1 FROM tokens
             WHERE owner_kind = ? AND owner_id = ? AND token_type = ? AND rotated_from = ?",
        )
        .bind(new.owner.kind())
        .bind(new.owner.id())
        .bind(&new.token_type)
        .bind(old.as_str())
        .fetch_optional(tx.conn())
        .await
        .map_err(db_err("token"))?;
        if successor.is_some() {
            return Err(StoreError::Conflict("successor of this token"));
        }
        let done = sqlx::query(
            "UPDATE tokens SET expires_at = CASE WHEN expires_at IS NULL OR expires_at > ?1 THEN ?1 ELSE expires_at END
             WHERE id = ?2 AND revoked_at IS NULL",
        )
        .bind(ts(old_expires_at))
        .bind(old.as_str())
        .execute(tx.conn())
        .await
        .map_err(db_err("token"))?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound("token"));
        }
        let ended = sqlx::query(
            "UPDATE tokens SET expires_at = ?1
             WHERE id = (SELECT rotated_from FROM tokens WHERE id = ?2)
               AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > ?1)
             RETURNING id",
        )
        .bind(ts(now))
        .bind(old.as_str())
        .fetch_optional(tx.conn())
        .await
        .map_err(db_err("token"))?;
        if let Some(row) = ended {
            tx.alter(Change::Token(parse(
                &get::<String>(&row, "id")?,
                "token id",
            )?));
        }
        insert_token(&mut tx, new).await?;
        insert_event(&mut tx, event).await?;
        tx.alter(Change::Token(old.clone()));
        let record = token_in_tx(&mut tx, &new.id).await?;
        self.commit(tx).await.map_err(db_err("token"))?;
        Ok(record)
    }

    async fn find_token(&self, id: &TokenId) -> StoreResult<Option<TokenRecord>> {
        let row = sqlx::query("SELECT * FROM tokens WHERE id = ?")
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err("token"))?;
        row.as_ref().map(token_from_row).transpose()
    }

    async fn find_token_by_hash(&self, hash: &TokenHash) -> StoreResult<Option<TokenRecord>> {
        let row = sqlx::query("SELECT * FROM tokens WHERE token_hash = ?")
            .bind(hash.as_bytes().as_slice())
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err("token"))?;
        row.as_ref().map(token_from_row).transpose()
    }

    async fn list_live_tokens_with_hashes(
        &self,
        now: Timestamp,
        after: Option<&str>,
        limit: u32,
    ) -> StoreResult<LiveTokens> {
        // The cursor is the rowid: the table is read in its own order, page after page.
        let after: i64 = match after {
            None => 0,
            Some(text) => parse(text, "warm-up cursor")?,
        };
        // A page comes as one row holding one JSON array, not as a row per token: the driver's
        // cost per row and per column (a copy of every value, a trip over a channel) was most
        // of the warm-up's time; SQLite writes the JSON and serde reads it for a fraction
        // (docs/BENCHMARKS.md). The expiry is checked here, not in the statement: compared with
        // a parameter there, the indexed `expires_at` makes SQLite prepare the statement again
        // for every page.
        let row = sqlx::query(
            "SELECT max(row_no) AS last, json_group_array(json_array(hex(token_hash), json_array(
                 id, token_type, owner_kind, owner_id, name, hint, scopes, created_at,
                 active_from, expires_at, revoked_at, last_used_at, last_used_ip, rotated_from,
                 ends_on_first_use, allowed_ips,
                 json(CASE WHEN secret_ciphertext IS NULL THEN 'false' ELSE 'true' END),
                 signing_kid))) AS page
             FROM (SELECT rowid AS row_no, * FROM tokens WHERE rowid > ?1 AND revoked_at IS NULL
                   ORDER BY rowid LIMIT ?2)",
        )
        .bind(after)
        .bind(i64::from(limit))
        .fetch_one(&self.pool)
        .await
        .map_err(db_err("token"))?;
        let next = get::<Option<i64>>(&row, "last")?.map(|last| last.to_string());
        let page: String = get(&row, "page")?;
        let rows: Vec<(String, TokenColumns)> = serde_json::from_str(&page)
            .map_err(|e| StoreError::Internal(format!("warm-up page: {e}")))?;
        let mut tokens = Vec::with_capacity(rows.len());
        for (hash, columns) in rows {
            let mut bytes = [0u8; 32];
            hex::decode_to_slice(&hash, &mut bytes)
                .map_err(|_| StoreError::Internal("a stored token hash is not 32 bytes".into()))?;
            let token = columns.into_record()?;
            if token.expires_at.is_none_or(|at| at > now) {
                tokens.push((bytes, token));
            }
        }
        Ok(LiveTokens { tokens, next })
    }

    async fn list_tokens(&self, f: &TokenFilter) -> StoreResult<Vec<TokenRecord>> {
        let rows = sqlx::query(
            "SELECT * FROM tokens
             WHERE (?1 IS NULL OR owner_kind = ?1) AND (?2 IS NULL OR owner_id = ?2) AND (?3 IS NULL OR token_type = ?3)
             ORDER BY created_at DESC, id LIMIT ?4",
        )
        .bind(f.owner.as_ref().map(Owner::kind))
        .bind(f.owner.as_ref().map(Owner::id))
        .bind(&f.token_type)
        .bind(i64::from(f.limit))
        .fetch_all(&self.pool)
        .await
        .map_err(db_err("token"))?;
        rows.iter().map(token_from_row).collect()
    }

    async fn rename_token(&self, id: &TokenId, name: &str, event: &NewEvent) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        let done = sqlx::query("UPDATE tokens SET name = ? WHERE id = ?")
            .bind(name)
            .bind(id.as_str())
            .execute(tx.conn())
            .await
            .map_err(db_err("token"))?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound("token"));
        }
        insert_event(&mut tx, event).await?;
        self.commit(tx).await.map_err(db_err("token"))
    }

    async fn set_token_allowed_ips(
        &self,
        id: &TokenId,
        cidrs: &[String],
        event: &NewEvent,
    ) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        let done = sqlx::query("UPDATE tokens SET allowed_ips = ? WHERE id = ?")
            .bind((!cidrs.is_empty()).then(|| cidrs.join(" ")))
            .bind(id.as_str())
            .execute(tx.conn())
            .await
            .map_err(db_err("token"))?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound("token"));
        }
        insert_event(&mut tx, event).await?;
        tx.alter(Change::Token(id.clone()));
        self.commit(tx).await.map_err(db_err("token"))
    }

    async fn find_token_secret(&self, id: &TokenId) -> StoreResult<Option<Vec<u8>>> {
        let row = sqlx::query("SELECT secret_ciphertext FROM tokens WHERE id = ?")
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err("token"))?;
        match row {
            Some(row) => get(&row, "secret_ciphertext"),
            None => Ok(None),
        }
    }

    async fn revoke_owner_tokens(
        &self,
        owner: &Owner,
        token_type: Option<&str>,
        with_oauth: bool,
        at: Timestamp,
        event: &NewEvent,
    ) -> StoreResult<Vec<TokenId>> {
        let mut tx = self.write_tx().await?;
        let rows = sqlx::query(
            "UPDATE tokens SET revoked_at = ?1
             WHERE owner_kind = ?2 AND owner_id = ?3 AND (?4 IS NULL OR token_type = ?4)
               AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > ?1)
             RETURNING id",
        )
        .bind(ts(at))
        .bind(owner.kind())
        .bind(owner.id())
        .bind(token_type)
        .fetch_all(tx.conn())
        .await
        .map_err(db_err("token"))?;
        let ids = rows
            .iter()
            .map(|r| parse(&get::<String>(r, "id")?, "token id"))
            .collect::<StoreResult<Vec<TokenId>>>()?;
        let grants = if with_oauth {
            revoke_oauth_of_owner(&mut tx, owner, at).await?
        } else {
            0
        };
        let mut event = event.clone();
        // The ids revoked are known only here, inside the transaction: add them to the event.
        event.details = Some(owner_revocation_details(&ids, token_type, grants)?);
        insert_event(&mut tx, &event).await?;
        tx.alter(Change::OwnerTokens(
            owner.clone(),
            token_type.map(str::to_owned),
        ));
        self.commit(tx).await.map_err(db_err("token"))?;
        Ok(ids)
    }

    async fn record_token_address(
        &self,
        id: &TokenId,
        ip: &str,
        at: Timestamp,
        event: &NewEvent,
    ) -> StoreResult<bool> {
        let mut tx = self.write_tx().await?;
        let done = sqlx::query(
            "INSERT OR IGNORE INTO token_addresses (token_id, ip, first_seen) VALUES (?, ?, ?)",
        )
        .bind(id.as_str())
        .bind(ip)
        .bind(ts(at))
        .execute(tx.conn())
        .await
        .map_err(db_err("token address"))?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        insert_event(&mut tx, event).await?;
        self.commit(tx).await.map_err(db_err("token address"))?;
        Ok(true)
    }

    async fn list_signing_keys(&self) -> StoreResult<Vec<StoredSigningKey>> {
        let rows = sqlx::query("SELECT * FROM signing_keys ORDER BY use_from DESC, kid")
            .fetch_all(&self.pool)
            .await
            .map_err(db_err("signing key"))?;
        rows.iter().map(signing_key_from_row).collect()
    }

    async fn insert_signing_key(
        &self,
        key: &StoredSigningKey,
        retire_others_at: Option<Timestamp>,
        event: &NewEvent,
    ) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        if let Some(at) = retire_others_at {
            sqlx::query("UPDATE signing_keys SET retired_at = ? WHERE retired_at IS NULL")
                .bind(ts(at))
                .execute(tx.conn())
                .await
                .map_err(db_err("signing key"))?;
        }
        sqlx::query(
            "INSERT INTO signing_keys (kid, alg, private_key, created_at, use_from, retired_at) VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(&key.kid)
        .bind(&key.alg)
        .bind(key.private_key.as_slice())
        .bind(ts(key.created_at))
        .bind(ts(key.use_from))
        .bind(key.retired_at.map(ts))
        .execute(tx.conn())
        .await
        .map_err(db_err("signing key"))?;
        insert_event(&mut tx, event).await?;
        tx.alter(Change::Keys);
        self.commit(tx).await.map_err(db_err("signing key"))
    }

    async fn live_signing_kids(&self, now: Timestamp) -> StoreResult<Vec<String>> {
        let rows = sqlx::query(
            "SELECT DISTINCT signing_kid FROM tokens
             WHERE signing_kid IS NOT NULL AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > ?)",
        )
        .bind(ts(now))
        .fetch_all(&self.pool)
        .await
        .map_err(db_err("token"))?;
        rows.iter().map(|r| get(r, "signing_kid")).collect()
    }

    async fn revoke_token(
        &self,
        id: &TokenId,
        at: Timestamp,
        event: &NewEvent,
    ) -> StoreResult<bool> {
        let mut tx = self.write_tx().await?;
        let done =
            sqlx::query("UPDATE tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL")
                .bind(ts(at))
                .bind(id.as_str())
                .execute(tx.conn())
                .await
                .map_err(db_err("token"))?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        insert_event(&mut tx, event).await?;
        tx.alter(Change::Token(id.clone()));
        self.commit(tx).await.map_err(db_err("token"))?;
        Ok(true)
    }

    async fn record_token_usage(&self, usage: &[TokenUsage]) -> StoreResult<()> {
        if usage.is_empty() {
            return Ok(());
        }
        let mut tx = self.write_tx().await?;
        // One statement per 300 uses (3 parameters each, under SQLite's 999): a busy second
        // with tens of thousands of first uses costs a few statements, not one per token.
        for chunk in usage.chunks(300) {
            let mut q = sqlx::QueryBuilder::<Sqlite>::new(
                "UPDATE tokens SET last_used_ip = CASE WHEN v.column2 >= COALESCE(last_used_at, 0) THEN v.column3 ELSE last_used_ip END,
                        last_used_at = MAX(COALESCE(last_used_at, 0), v.column2) FROM (",
            );
            q.push_values(chunk, |mut row, u| {
                row.push_bind(u.token_id.as_str())
                    .push_bind(ts(u.at))
                    .push_bind(u.ip.as_str());
            });
            q.push(") AS v WHERE tokens.id = v.column1");
            q.build()
                .execute(tx.conn())
                .await
                .map_err(db_err("token"))?;
        }
        self.commit(tx).await.map_err(db_err("token"))
    }

    async fn record_client_secret_usage(&self, usage: &[(String, Timestamp)]) -> StoreResult<()> {
        if usage.is_empty() {
            return Ok(());
        }
        // A few secrets a second at most (each is written once in ten minutes).
        let mut tx = self.write_tx().await?;
        for (id, at) in usage {
            sqlx::query("UPDATE client_secrets SET last_used_at = MAX(COALESCE(last_used_at, 0), ?1) WHERE id = ?2")
                .bind(ts(*at))
                .bind(id)
                .execute(tx.conn())
                .await
                .map_err(db_err("client secret"))?;
        }
        self.commit(tx).await.map_err(db_err("client secret"))
    }

    async fn insert_tokens_unchecked(
        &self,
        tokens: &[NewToken],
        used_from: Option<(&str, Timestamp)>,
    ) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        for t in tokens {
            insert_token(&mut tx, t).await?;
            if let Some((ip, at)) = used_from {
                sqlx::query("UPDATE tokens SET last_used_at = ?, last_used_ip = ? WHERE id = ?")
                    .bind(ts(at))
                    .bind(ip)
                    .bind(t.id.as_str())
                    .execute(tx.conn())
                    .await
                    .map_err(db_err("token"))?;
                sqlx::query(
                    "INSERT OR IGNORE INTO token_addresses (token_id, ip, first_seen) VALUES (?, ?, ?)",
                )
                .bind(t.id.as_str())
                .bind(ip)
                .bind(ts(at))
                .execute(tx.conn())
                .await
                .map_err(db_err("token address"))?;
            }
        }
        self.commit(tx).await.map_err(db_err("token"))
    }

    async fn create_client(
        &self,
        c: &OAuthClient,
        secret: Option<&NewClientSecret>,
        event: &NewEvent,
    ) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        sqlx::query(
            "INSERT INTO oauth_clients (id, org_id, name, grant_types, redirect_uris, scopes, is_confidential, can_introspect, created_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&c.id)
        .bind(c.org_id.as_str())
        .bind(&c.name)
        .bind(c.grant_types.join(" "))
        .bind(c.redirect_uris.join("\n"))
        .bind(c.scopes.join(" "))
        .bind(c.is_confidential)
        .bind(c.can_introspect)
        .bind(ts(c.created_at))
        .execute(tx.conn())
        .await
        .map_err(db_err("client"))?;
        if let Some(secret) = secret {
            insert_client_secret(&mut tx, secret).await?;
        }
        insert_event(&mut tx, event).await?;
        self.commit(tx).await.map_err(db_err("client"))
    }

    async fn find_client(&self, id: &str) -> StoreResult<Option<OAuthClient>> {
        let row = sqlx::query("SELECT * FROM oauth_clients WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err("client"))?;
        row.as_ref().map(client_from_row).transpose()
    }

    async fn list_clients(&self, org: &OrgId) -> StoreResult<Vec<OAuthClient>> {
        let rows = sqlx::query("SELECT * FROM oauth_clients WHERE org_id = ? AND deleted_at IS NULL ORDER BY created_at, rowid")
            .bind(org.as_str())
            .fetch_all(&self.pool)
            .await
            .map_err(db_err("client"))?;
        rows.iter().map(client_from_row).collect()
    }

    async fn update_client(&self, id: &str, c: &ClientChange, event: &NewEvent) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        let done = sqlx::query(
            "UPDATE oauth_clients SET name = COALESCE(?, name), grant_types = COALESCE(?, grant_types),
                    redirect_uris = COALESCE(?, redirect_uris), scopes = COALESCE(?, scopes),
                    can_introspect = COALESCE(?, can_introspect)
             WHERE id = ? AND deleted_at IS NULL",
        )
        .bind(&c.name)
        .bind(c.grant_types.as_ref().map(|g| g.join(" ")))
        .bind(c.redirect_uris.as_ref().map(|r| r.join("\n")))
        .bind(c.scopes.as_ref().map(|s| s.join(" ")))
        .bind(c.can_introspect)
        .bind(id)
        .execute(tx.conn())
        .await
        .map_err(db_err("client"))?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound("client"));
        }
        insert_event(&mut tx, event).await?;
        tx.alter(Change::Client(id.to_owned()));
        self.commit(tx).await.map_err(db_err("client"))
    }

    async fn delete_client(&self, id: &str, at: Timestamp, event: &NewEvent) -> StoreResult<bool> {
        let mut tx = self.write_tx().await?;
        let done = sqlx::query(
            "UPDATE oauth_clients SET deleted_at = ? WHERE id = ? AND deleted_at IS NULL",
        )
        .bind(ts(at))
        .bind(id)
        .execute(tx.conn())
        .await
        .map_err(db_err("client"))?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        sqlx::query(
            "UPDATE client_secrets SET revoked_at = ? WHERE client_id = ? AND revoked_at IS NULL",
        )
        .bind(ts(at))
        .bind(id)
        .execute(tx.conn())
        .await
        .map_err(db_err("client secret"))?;
        insert_event(&mut tx, event).await?;
        tx.alter(Change::Client(id.to_owned()));
        self.commit(tx).await.map_err(db_err("client"))?;
        Ok(true)
    }

    async fn add_client_secret_within_limit(
        &self,
        s: &NewClientSecret,
        max_active: u32,
        event: &NewEvent,
    ) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        let row = sqlx::query("SELECT COUNT(*) AS live FROM client_secrets WHERE client_id = ? AND revoked_at IS NULL")
            .bind(&s.client_id)
            .fetch_one(tx.conn())
            .await
            .map_err(db_err("client secret"))?;
        if get::<i64>(&row, "live")? >= i64::from(max_active) {
            return Err(StoreError::LimitReached);
        }
        insert_client_secret(&mut tx, s).await?;
        insert_event(&mut tx, event).await?;
        self.commit(tx).await.map_err(db_err("client secret"))
    }

    async fn revoke_client_secret(
        &self,
        client_id: &str,
        secret_id: &str,
        at: Timestamp,
        event: &NewEvent,
    ) -> StoreResult<bool> {
        let mut tx = self.write_tx().await?;
        let done = sqlx::query("UPDATE client_secrets SET revoked_at = ? WHERE id = ? AND client_id = ? AND revoked_at IS NULL")
            .bind(ts(at))
            .bind(secret_id)
            .bind(client_id)
            .execute(tx.conn())
            .await
            .map_err(db_err("client secret"))?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        insert_event(&mut tx, event).await?;
        tx.alter(Change::Client(client_id.to_owned()));
        self.commit(tx).await.map_err(db_err("client secret"))?;
        Ok(true)
    }

    async fn list_client_secrets(&self, client_id: &str) -> StoreResult<Vec<ClientSecretRecord>> {
        let rows = sqlx::query(
            "SELECT * FROM client_secrets WHERE client_id = ? ORDER BY created_at, rowid",
        )
        .bind(client_id)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err("client secret"))?;
        rows.iter().map(secret_from_row).collect()
    }

    async fn find_client_secret(
        &self,
        hash: &TokenHash,
    ) -> StoreResult<Option<ClientSecretRecord>> {
        let row = sqlx::query(
            "SELECT * FROM client_secrets WHERE secret_hash = ? AND revoked_at IS NULL",
        )
        .bind(hash.as_bytes().as_slice())
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err("client secret"))?;
        row.as_ref().map(secret_from_row).transpose()
    }

    async fn revoke_access_token(
        &self,
        jti: &str,
        expires_at: Timestamp,
        event: Option<&NewEvent>,
    ) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        sqlx::query("INSERT OR IGNORE INTO revoked_access_tokens (jti, expires_at) VALUES (?, ?)")
            .bind(jti)
            .bind(ts(expires_at))
            .execute(tx.conn())
            .await
            .map_err(db_err("revoked access token"))?;
        if let Some(event) = event {
            insert_event(&mut tx, event).await?;
        }
        tx.alter(Change::AccessTokens);
        self.commit(tx)
            .await
            .map_err(db_err("revoked access token"))
    }

    async fn list_revoked_access_tokens(&self, now: Timestamp) -> StoreResult<Vec<String>> {
        sqlx::query("DELETE FROM revoked_access_tokens WHERE expires_at <= ?")
            .bind(ts(now))
            .execute(&self.pool)
            .await
            .map_err(db_err("revoked access token"))?;
        let rows = sqlx::query("SELECT jti FROM revoked_access_tokens")
            .fetch_all(&self.pool)
            .await
            .map_err(db_err("revoked access token"))?;
        rows.iter().map(|r| get(r, "jti")).collect()
    }

    async fn create_grant_with_code(
        &self,
        g: &OAuthGrant,
        c: &NewAuthCode,
        event: &NewEvent,
    ) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        sqlx::query("INSERT INTO oauth_grants (id, client_id, user_id, scopes, created_at) VALUES (?, ?, ?, ?, ?)")
            .bind(&g.id)
            .bind(&g.client_id)
            .bind(g.user_id.as_ref().map(UserId::as_str))
            .bind(g.scopes.join(" "))
            .bind(ts(g.created_at))
            .execute(tx.conn())
            .await
            .map_err(db_err("grant"))?;
        sqlx::query(
            "INSERT INTO auth_codes (code_hash, grant_id, client_id, user_id, redirect_uri, code_challenge, scopes, created_at, expires_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(c.code_hash.as_bytes().as_slice())
        .bind(&c.grant_id)
        .bind(&c.client_id)
        .bind(c.user_id.as_str())
        .bind(&c.redirect_uri)
        .bind(&c.code_challenge)
        .bind(c.scopes.join(" "))
        .bind(ts(c.created_at))
        .bind(ts(c.expires_at))
        .execute(tx.conn())
        .await
        .map_err(db_err("authorization code"))?;
        insert_event(&mut tx, event).await?;
        self.commit(tx).await.map_err(db_err("grant"))
    }

    async fn list_user_grants(&self, user: &UserId) -> StoreResult<Vec<OAuthGrant>> {
        let rows = sqlx::query(
            "SELECT * FROM oauth_grants WHERE user_id = ? AND revoked_at IS NULL
             ORDER BY created_at, id",
        )
        .bind(user.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(db_err("grant"))?;
        rows.iter().map(grant_from_row).collect()
    }

    async fn find_grant(&self, id: &str) -> StoreResult<Option<OAuthGrant>> {
        let row = sqlx::query("SELECT * FROM oauth_grants WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err("grant"))?;
        row.as_ref().map(grant_from_row).transpose()
    }

    async fn find_auth_code(&self, hash: &TokenHash) -> StoreResult<Option<StoredAuthCode>> {
        let row = sqlx::query("SELECT * FROM auth_codes WHERE code_hash = ?")
            .bind(hash.as_bytes().as_slice())
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err("authorization code"))?;
        row.map(|row| {
            Ok(StoredAuthCode {
                code: NewAuthCode {
                    code_hash: *hash,
                    grant_id: get(&row, "grant_id")?,
                    client_id: get(&row, "client_id")?,
                    user_id: parse(&get::<String>(&row, "user_id")?, "user id")?,
                    redirect_uri: get(&row, "redirect_uri")?,
                    code_challenge: get(&row, "code_challenge")?,
                    scopes: split_scopes(&get::<String>(&row, "scopes")?),
                    created_at: from_ts(get(&row, "created_at")?)?,
                    expires_at: from_ts(get(&row, "expires_at")?)?,
                },
                used_at: opt_ts(get(&row, "used_at")?)?,
            })
        })
        .transpose()
    }

    async fn consume_auth_code(
        &self,
        hash: &TokenHash,
        now: Timestamp,
        refresh: Option<&NewRefreshToken>,
    ) -> StoreResult<Consumed<NewAuthCode>> {
        let mut tx = self.write_tx().await?;
        let row = sqlx::query(
            "SELECT c.*, g.revoked_at AS grant_revoked_at FROM auth_codes c
             JOIN oauth_grants g ON g.id = c.grant_id WHERE c.code_hash = ?",
        )
        .bind(hash.as_bytes().as_slice())
        .fetch_optional(tx.conn())
        .await
        .map_err(db_err("authorization code"))?;
        let Some(row) = row else {
            return Ok(Consumed::Invalid);
        };
        let grant_id: String = get(&row, "grant_id")?;
        // A consent withdrawn (or ended by the kill switch) while its code was outstanding:
        // the code produces nothing, and stays unused.
        if get::<Option<i64>>(&row, "grant_revoked_at")?.is_some() {
            return Ok(Consumed::Invalid);
        }
        // Conditional, so that of two requests racing for one code exactly one wins, on any
        // backend; the other is a replay.
        let done = sqlx::query(
            "UPDATE auth_codes SET used_at = ?1 WHERE code_hash = ?2 AND used_at IS NULL AND expires_at > ?1",
        )
        .bind(ts(now))
        .bind(hash.as_bytes().as_slice())
        .execute(tx.conn())
        .await
        .map_err(db_err("authorization code"))?;
        if done.rows_affected() == 0 {
            return Ok(if get::<Option<i64>>(&row, "used_at")?.is_some() {
                Consumed::Reused { grant_id }
            } else {
                Consumed::Invalid
            });
        }
        if let Some(refresh) = refresh {
            insert_refresh(&mut tx, refresh).await?;
        }
        self.commit(tx)
            .await
            .map_err(db_err("authorization code"))?;
        Ok(Consumed::Fresh(NewAuthCode {
            code_hash: *hash,
            grant_id,
            client_id: get(&row, "client_id")?,
            user_id: parse(&get::<String>(&row, "user_id")?, "user id")?,
            redirect_uri: get(&row, "redirect_uri")?,
            code_challenge: get(&row, "code_challenge")?,
            scopes: split_scopes(&get::<String>(&row, "scopes")?),
            created_at: from_ts(get(&row, "created_at")?)?,
            expires_at: from_ts(get(&row, "expires_at")?)?,
        }))
    }

    async fn find_refresh_grant(&self, hash: &TokenHash) -> StoreResult<Option<String>> {
        let row = sqlx::query("SELECT grant_id FROM refresh_tokens WHERE token_hash = ?")
            .bind(hash.as_bytes().as_slice())
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err("refresh token"))?;
        row.map(|r| get(&r, "grant_id")).transpose()
    }

    async fn list_live_redirect_uris(&self) -> StoreResult<Vec<String>> {
        let rows = sqlx::query(
            "SELECT redirect_uris FROM oauth_clients WHERE deleted_at IS NULL AND redirect_uris != ''",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db_err("client"))?;
        let mut out = Vec::new();
        for row in &rows {
            let text: String = get(row, "redirect_uris")?;
            out.extend(text.lines().filter(|l| !l.is_empty()).map(str::to_owned));
        }
        Ok(out)
    }

    async fn find_refresh_token(
        &self,
        hash: &TokenHash,
    ) -> StoreResult<Option<StoredRefreshToken>> {
        let row = sqlx::query(
            "SELECT r.*, g.revoked_at AS grant_revoked_at FROM refresh_tokens r JOIN oauth_grants g ON g.id = r.grant_id WHERE r.token_hash = ?",
        )
        .bind(hash.as_bytes().as_slice())
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err("refresh token"))?;
        row.map(|row| {
            Ok(StoredRefreshToken {
                grant_id: get(&row, "grant_id")?,
                client_id: get(&row, "client_id")?,
                expires_at: from_ts(get(&row, "expires_at")?)?,
                used_at: opt_ts(get(&row, "used_at")?)?,
                grant_revoked: get::<Option<i64>>(&row, "grant_revoked_at")?.is_some(),
            })
        })
        .transpose()
    }

    async fn rotate_refresh_token(
        &self,
        hash: &TokenHash,
        now: Timestamp,
        next: &NewRefreshToken,
    ) -> StoreResult<Consumed<RefreshTokenRecord>> {
        let mut tx = self.write_tx().await?;
        let row = sqlx::query(
            "SELECT r.*, g.revoked_at AS grant_revoked_at FROM refresh_tokens r JOIN oauth_grants g ON g.id = r.grant_id WHERE r.token_hash = ?",
        )
        .bind(hash.as_bytes().as_slice())
        .fetch_optional(tx.conn())
        .await
        .map_err(db_err("refresh token"))?;
        let Some(row) = row else {
            return Ok(Consumed::Invalid);
        };
        let grant_id: String = get(&row, "grant_id")?;
        if get::<Option<i64>>(&row, "grant_revoked_at")?.is_some() {
            return Ok(Consumed::Invalid);
        }
        // Conditional: of two requests racing for one refresh token one wins; the loser is a
        // replay.
        let done = sqlx::query(
            "UPDATE refresh_tokens SET used_at = ?1 WHERE token_hash = ?2 AND used_at IS NULL AND expires_at > ?1",
        )
        .bind(ts(now))
        .bind(hash.as_bytes().as_slice())
        .execute(tx.conn())
        .await
        .map_err(db_err("refresh token"))?;
        if done.rows_affected() == 0 {
            return Ok(if get::<Option<i64>>(&row, "used_at")?.is_some() {
                Consumed::Reused { grant_id }
            } else {
                Consumed::Invalid
            });
        }
        insert_refresh(&mut tx, next).await?;
        self.commit(tx).await.map_err(db_err("refresh token"))?;
        Ok(Consumed::Fresh(RefreshTokenRecord {
            grant_id,
            client_id: get(&row, "client_id")?,
            expires_at: from_ts(get(&row, "expires_at")?)?,
        }))
    }

    async fn revoke_grant(&self, id: &str, at: Timestamp, event: &NewEvent) -> StoreResult<bool> {
        let mut tx = self.write_tx().await?;
        let done = sqlx::query(
            "UPDATE oauth_grants SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
        )
        .bind(ts(at))
        .bind(id)
        .execute(tx.conn())
        .await
        .map_err(db_err("grant"))?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        insert_event(&mut tx, event).await?;
        tx.alter(Change::AccessTokens);
        self.commit(tx).await.map_err(db_err("grant"))?;
        Ok(true)
    }

    async fn list_revoked_grants(&self, since: Timestamp) -> StoreResult<Vec<String>> {
        let rows = sqlx::query(
            "SELECT id FROM oauth_grants WHERE revoked_at IS NOT NULL AND revoked_at > ?",
        )
        .bind(ts(since))
        .fetch_all(&self.pool)
        .await
        .map_err(db_err("grant"))?;
        rows.iter().map(|r| get(r, "id")).collect()
    }

    async fn claim_mails(
        &self,
        now: Timestamp,
        lease_until: Timestamp,
        limit: u32,
    ) -> StoreResult<Vec<OutboxMail>> {
        let mut tx = self.write_tx().await?;
        let rows = sqlx::query(
            "UPDATE outbox SET locked_until = ?2, attempts = attempts + 1
             WHERE id IN (SELECT id FROM outbox
                          WHERE sent_at IS NULL AND next_attempt_at <= ?1
                            AND (locked_until IS NULL OR locked_until <= ?1)
                          ORDER BY created_at, rowid LIMIT ?3)
             RETURNING *",
        )
        .bind(ts(now))
        .bind(ts(lease_until))
        .bind(i64::from(limit))
        .fetch_all(tx.conn())
        .await
        .map_err(db_err("mail"))?;
        self.commit(tx).await.map_err(db_err("mail"))?;
        rows.iter().map(mail_from_row).collect()
    }

    async fn mark_mail_sent(&self, id: &MailId, at: Timestamp) -> StoreResult<()> {
        // The body and its sealed part go once sent. The row stays as the record that the mail
        // went out.
        sqlx::query(
            "UPDATE outbox SET sent_at = ?, locked_until = NULL, last_error = NULL, body = '', sealed = NULL
             WHERE id = ?",
        )
        .bind(ts(at))
        .bind(id.as_str())
        .execute(&self.pool)
        .await
        .map_err(db_err("mail"))?;
        Ok(())
    }

    async fn mark_mail_failed(
        &self,
        id: &MailId,
        next_attempt_at: Timestamp,
        error: &str,
    ) -> StoreResult<()> {
        sqlx::query(
            "UPDATE outbox SET locked_until = NULL, next_attempt_at = ?, last_error = ?
             WHERE id = ? AND sent_at IS NULL",
        )
        .bind(ts(next_attempt_at))
        .bind(error)
        .bind(id.as_str())
        .execute(&self.pool)
        .await
        .map_err(db_err("mail"))?;
        Ok(())
    }

    async fn count_unsent_mails(&self) -> StoreResult<u64> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM outbox WHERE sent_at IS NULL")
            .fetch_one(&self.pool)
            .await
            .map_err(db_err("mail"))?;
        Ok(u64::try_from(get::<i64>(&row, "n")?).unwrap_or(0))
    }

    async fn list_tokens_due_expiry_notice(
        &self,
        now: Timestamp,
        days: &[u32],
        limit: u32,
    ) -> StoreResult<Vec<(TokenRecord, u32)>> {
        let mut days = days.to_vec();
        days.sort_unstable();
        let Some(longest) = days.last().copied() else {
            return Ok(Vec::new());
        };
        // The due notice is computed here, so that tokens already told (the many) are skipped
        // by the query instead of filling the page.
        let mut q = sqlx::QueryBuilder::<Sqlite>::new("SELECT * FROM (SELECT t.*, CASE");
        for d in &days {
            let secs = i64::from(*d) * 86_400;
            q.push(" WHEN t.expires_at - ")
                .push_bind(ts(now))
                .push(" <= ")
                .push_bind(secs)
                .push(" AND t.expires_at - t.created_at > ")
                .push_bind(secs)
                .push(" THEN ")
                .push_bind(i64::from(*d));
        }
        // A rotated token has its replacement already: no "create its replacement" notice.
        q.push(
            " END AS due FROM tokens t WHERE t.revoked_at IS NULL
               AND NOT EXISTS (SELECT 1 FROM tokens s WHERE s.rotated_from = t.id)
               AND t.expires_at > ",
        )
        .push_bind(ts(now))
        .push(" AND t.expires_at <= ")
        .push_bind(ts(now) + i64::from(longest) * 86_400)
        .push(
            ") AS c WHERE c.due IS NOT NULL AND NOT EXISTS
                   (SELECT 1 FROM expiry_notices n WHERE n.token_id = c.id AND n.days <= c.due)
                 ORDER BY c.expires_at, c.id LIMIT ",
        )
        .push_bind(i64::from(limit));
        let rows = q
            .build()
            .fetch_all(&self.pool)
            .await
            .map_err(db_err("token"))?;
        rows.iter()
            .map(|r| {
                let due = u32::try_from(get::<i64>(r, "due")?)
                    .map_err(|e| StoreError::Internal(e.to_string()))?;
                Ok((token_from_row(r)?, due))
            })
            .collect()
    }

    async fn record_expiry_notice(
        &self,
        token: &TokenId,
        days: u32,
        event: &NewEvent,
    ) -> StoreResult<bool> {
        let mut tx = self.write_tx().await?;
        // Only while the token is still live: one revoked since the sweep read it is not told
        // it expires.
        let done = sqlx::query(
            "INSERT OR IGNORE INTO expiry_notices (token_id, days, sent_at)
             SELECT ?1, ?2, ?3 WHERE EXISTS
               (SELECT 1 FROM tokens WHERE id = ?1 AND revoked_at IS NULL AND expires_at > ?3)",
        )
        .bind(token.as_str())
        .bind(i64::from(days))
        .bind(ts(event.at))
        .execute(tx.conn())
        .await
        .map_err(db_err("expiry notice"))?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        insert_event(&mut tx, event).await?;
        self.commit(tx).await.map_err(db_err("expiry notice"))?;
        Ok(true)
    }

    async fn list_unseen_token_addresses(
        &self,
        pairs: &[(TokenId, String)],
    ) -> StoreResult<Vec<(TokenId, String)>> {
        let mut conn = self.pool.acquire().await.map_err(unavailable)?;
        let mut unseen = Vec::new();
        for (id, ip) in pairs {
            let seen = sqlx::query("SELECT 1 FROM token_addresses WHERE token_id = ? AND ip = ?")
                .bind(id.as_str())
                .bind(ip)
                .fetch_optional(&mut *conn)
                .await
                .map_err(db_err("token address"))?
                .is_some();
            if !seen {
                unseen.push((id.clone(), ip.clone()));
            }
        }
        Ok(unseen)
    }

    async fn count_token_addresses_since(
        &self,
        id: &TokenId,
        since: Timestamp,
    ) -> StoreResult<u64> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM token_addresses WHERE token_id = ? AND first_seen >= ?",
        )
        .bind(id.as_str())
        .bind(ts(since))
        .fetch_one(&self.pool)
        .await
        .map_err(db_err("token address"))?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    async fn record_new_token_addresses(&self, found: &[NewTokenAddress]) -> StoreResult<u64> {
        if found.is_empty() {
            return Ok(0);
        }
        let mut tx = self.write_tx().await?;
        let mut new = 0;
        for a in found {
            let done = sqlx::query(
                "INSERT OR IGNORE INTO token_addresses (token_id, ip, first_seen) VALUES (?, ?, ?)",
            )
            .bind(a.token_id.as_str())
            .bind(&a.ip)
            .bind(ts(a.at))
            .execute(tx.conn())
            .await
            .map_err(db_err("token address"))?;
            if done.rows_affected() == 1 {
                insert_event(&mut tx, &a.event).await?;
                new += 1;
            }
        }
        self.commit(tx).await.map_err(db_err("token address"))?;
        Ok(new)
    }

    async fn find_cancel_link(&self, hash: &TokenHash) -> StoreResult<Option<CancelLink>> {
        let row = sqlx::query("SELECT * FROM cancel_links WHERE code_hash = ?")
            .bind(hash.as_bytes().as_slice())
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err("cancel link"))?;
        row.as_ref().map(cancel_link_from_row).transpose()
    }

    async fn use_cancel_link(
        &self,
        hash: &TokenHash,
        now: Timestamp,
        event: &NewEvent,
    ) -> StoreResult<bool> {
        let mut tx = self.write_tx().await?;
        let row = sqlx::query(
            "UPDATE cancel_links SET used_at = ?1
             WHERE code_hash = ?2 AND used_at IS NULL AND expires_at > ?1
             RETURNING token_id",
        )
        .bind(ts(now))
        .bind(hash.as_bytes().as_slice())
        .fetch_optional(tx.conn())
        .await
        .map_err(db_err("cancel link"))?;
        let Some(row) = row else {
            return Ok(false);
        };
        let token_id: String = get(&row, "token_id")?;
        let done = sqlx::query(
            "UPDATE tokens SET revoked_at = ?1
             WHERE id = ?2 AND revoked_at IS NULL AND active_from > ?1",
        )
        .bind(ts(now))
        .bind(&token_id)
        .execute(tx.conn())
        .await
        .map_err(db_err("token"))?;
        if done.rows_affected() == 0 {
            // Dropping the transaction rolls the link back: it was not used for anything.
            return Ok(false);
        }
        insert_event(&mut tx, event).await?;
        tx.alter(Change::Token(parse(&token_id, "token id")?));
        self.commit(tx).await.map_err(db_err("cancel link"))?;
        Ok(true)
    }

    async fn register_instance(&self, i: &Instance) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO instances (id, address, version, started_at, heartbeat_at, applied_change)
             VALUES (?, ?, ?, ?, ?, ?)
             ON CONFLICT (id) DO UPDATE SET address = excluded.address, version = excluded.version,
               heartbeat_at = excluded.heartbeat_at, applied_change = excluded.applied_change",
        )
        .bind(i.id.as_str())
        .bind(&i.address)
        .bind(&i.version)
        .bind(ts(i.started_at))
        .bind(ts(i.heartbeat_at))
        .bind(i.applied_change)
        .execute(&self.pool)
        .await
        .map_err(db_err("instance"))?;
        Ok(())
    }

    async fn heartbeat_instance(
        &self,
        id: &InstanceId,
        at: Timestamp,
        applied_change: i64,
    ) -> StoreResult<()> {
        sqlx::query(
            "UPDATE instances SET heartbeat_at = ?, applied_change = MAX(applied_change, ?) WHERE id = ?",
        )
        .bind(ts(at))
        .bind(applied_change)
        .bind(id.as_str())
        .execute(&self.pool)
        .await
        .map_err(db_err("instance"))?;
        Ok(())
    }

    async fn list_instances(&self) -> StoreResult<Vec<Instance>> {
        let rows = sqlx::query("SELECT * FROM instances ORDER BY started_at, id")
            .fetch_all(&self.pool)
            .await
            .map_err(db_err("instance"))?;
        rows.iter().map(instance_from_row).collect()
    }

    async fn remove_instances(
        &self,
        id: Option<&InstanceId>,
        before: Option<Timestamp>,
    ) -> StoreResult<()> {
        sqlx::query("DELETE FROM instances WHERE id = ? OR heartbeat_at < ?")
            .bind(id.map(InstanceId::as_str))
            .bind(before.map(ts))
            .execute(&self.pool)
            .await
            .map_err(db_err("instance"))?;
        Ok(())
    }

    async fn insert_event(&self, event: &NewEvent) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        insert_event(&mut tx, event).await?;
        self.commit(tx).await.map_err(db_err("event"))
    }

    async fn list_events(&self, f: &EventFilter) -> StoreResult<Vec<Event>> {
        let (user, org) = match &f.scope {
            EventScope::User(u) => (Some(u.as_str()), None),
            EventScope::Org(o) => (None, Some(o.as_str())),
            EventScope::All => (None, None),
        };
        let m = &f.matching;
        let rows = sqlx::query(
            "SELECT * FROM events
             WHERE (?1 IS NULL OR user_id = ?1) AND (?2 IS NULL OR org_id = ?2) AND (?3 IS NULL OR seq < ?3)
               AND (?5 IS NULL OR substr(action, 1, length(?5)) = ?5)
               AND (?6 IS NULL OR subject_id = ?6) AND (?7 IS NULL OR actor = ?7)
             ORDER BY seq DESC LIMIT ?4",
        )
        .bind(user)
        .bind(org)
        .bind(f.before_seq)
        .bind(i64::from(f.limit))
        .bind(m.action_prefix.as_deref())
        .bind(m.subject_id.as_deref())
        .bind(m.actor.as_deref())
        .fetch_all(&self.pool)
        .await
        .map_err(db_err("event"))?;
        rows.iter().map(event_from_row).collect()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::os::unix::fs::PermissionsExt;

    use latchkey_core::{Email, Timestamp, UserId};

    use super::*;

    fn user(i: u32) -> (NewUser, NewEvent) {
        let id: UserId = format!("usr_{i:022}").parse().unwrap();
        let at = Timestamp::from_unix_timestamp(1_700_000_000).unwrap();
        let email = Email::parse(&format!("user{i}@example.com")).unwrap();
        let user = NewUser {
            id: id.clone(),
            email,
            password_hash: "x".repeat(2000),
            is_operator: false,
            created_at: at,
            external_id: None,
            profile: None,
            disabled: false,
            provisioned: false,
        };
        let event = NewEvent {
            id: format!("evt_{i:022}"),
            at,
            actor: "operator".into(),
            action: "user.created".into(),
            subject_kind: "user".into(),
            subject_id: id.to_string(),
            user_id: Some(id),
            org_id: None,
            ip: None,
            outcome: "success".into(),
            details: Some("y".repeat(2000)),
            mails: Vec::new(),
        };
        (user, event)
    }

    #[tokio::test]
    async fn a_full_disk_is_an_outage_not_an_internal_error() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("full.db").display());
        SqliteStore::connect(&url).await.unwrap().close().await;
        // A real SQLITE_FULL: the database may not grow past its present size.
        let store = SqliteStore::connect_with(&url, &[("max_page_count", "1")])
            .await
            .unwrap();
        let mut outcome = None;
        for i in 0..10_000 {
            let (u, e) = user(i);
            if let Err(err) = store.create_user(&u, &e).await {
                outcome = Some(err);
                break;
            }
        }
        match outcome {
            Some(StoreError::Unavailable(_)) => {}
            other => panic!("a full disk must be Unavailable, got {other:?}"),
        }
    }

    #[test]
    fn outage_codes_include_extended_io_errors_and_exclude_logic_errors() {
        for code in ["5", "6", "517", "8", "1032", "10", "778", "13", "14"] {
            assert!(is_outage_code(code), "{code}");
        }
        for code in ["1", "19", "2067", "20", "x", ""] {
            assert!(!is_outage_code(code), "{code}");
        }
    }

    #[tokio::test]
    async fn the_database_and_its_journals_are_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("private.db");
        let url = format!("sqlite://{}", path.display());
        let store = SqliteStore::connect(&url).await.unwrap();
        let (u, e) = user(1);
        store.create_user(&u, &e).await.unwrap();
        for suffix in ["", "-wal", "-shm"] {
            let mut name = path.as_os_str().to_owned();
            name.push(suffix);
            let mode = std::fs::metadata(&name).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}{suffix}", path.display());
        }
        store.close().await;
        // An older installation's world-readable file is narrowed at the next start.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        SqliteStore::connect(&url).await.unwrap().close().await;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
}
