//! The PostgreSQL backend: several instances on one database (SPEC 7).
//!
//! The same behaviour as the SQLite backend, method by method; only the SQL differs. SQLite
//! serialises every writer with `BEGIN IMMEDIATE`; here transactions run at READ COMMITTED and
//! each race the store settles is settled by what PostgreSQL offers for it:
//! - conditional updates (`... WHERE used_at IS NULL`), whose loser re-reads the winner's row
//!   after it commits and matches nothing;
//! - `SELECT ... FOR UPDATE` on the row a decision is read from (a code, a refresh token, the
//!   token being rotated), so that a loser that waited reads the winner's committed row and
//!   answers `Reused` or `Conflict`, never `Invalid` from a stale read;
//! - transaction-scoped advisory locks where the decision is a count over rows that may not
//!   exist yet (`max_active` per owner and type, an idempotency key, the last admin of an
//!   organisation, a client's secrets);
//! - `FOR UPDATE SKIP LOCKED` for claiming mails, so workers on several instances never take
//!   the same mail.
//!
//! The change log (`changes`) must be read in commit order by the other instances, which poll
//! it by sequence number; a `BIGSERIAL` alone hands numbers out in insertion order, not commit
//! order, so [`PgStore::commit`] numbers a transaction's changes under one advisory lock held
//! until the commit. Each change is also sent with `pg_notify('latchkey_changes', ...)` in the
//! same transaction (delivered only if it commits), for the instances that LISTEN.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use latchkey_core::{
    Email, InstanceId, MailId, OrgId, Role, Timestamp, TokenHash, TokenId, UserId,
};
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions, PgRow};
use sqlx::{Postgres, Transaction};

use crate::events::owner_revocation_details;
use crate::model::*;
use crate::rows::{
    account_from_row, cancel_link_from_row, client_from_row, credential_from_row, event_from_row,
    from_ts, get, grant_from_row, hashed_token_from_row, instance_from_row, mail_from_row,
    member_from_row, new_user_record, opt_ts, parse, secret_from_row, session_from_row,
    signing_key_from_row, split_scopes, token_from_row, ts, user_from_row,
};
use crate::{Change, ChangeListener, Store, StoreError, StoreResult};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

/// The channel every change is notified on (payload: `<seq> <change>`, see `change.rs`).
pub const CHANGES_CHANNEL: &str = "latchkey_changes";

/// Namespaces of the transaction-scoped advisory locks (the first key of
/// `pg_advisory_xact_lock(int, int)`); the second key is a hash of what is locked.
mod lock {
    /// The live tokens of one owner and type (`max_active`).
    pub const TOKEN_LIMIT: i32 = 1;
    /// One idempotency key.
    pub const IDEMPOTENCY: i32 = 2;
    /// The memberships of one organisation (the last-admin guard).
    pub const ORG_MEMBERS: i32 = 3;
    /// The secrets of one OAuth client (their limit).
    pub const CLIENT_SECRETS: i32 = 4;
    /// The change log: numbers are handed out in commit order.
    pub const CHANGES: i32 = 5;
    /// The signing keys (a rotation retires every other key).
    pub const SIGNING_KEYS: i32 = 6;
    /// One (token, address) pair's first use.
    pub const TOKEN_ADDRESS: i32 = 7;
}

pub struct PgStore {
    pool: PgPool,
    /// How to connect, for the listening connection (outside the pool).
    options: PgConnectOptions,
    listener: std::sync::RwLock<Option<ChangeListener>>,
}

/// A write transaction and what it altered ([`Change`]s), committed together by
/// [`PgStore::commit`].
struct Tx {
    inner: Transaction<'static, Postgres>,
    changes: Vec<Change>,
}

impl Tx {
    fn conn(&mut self) -> &mut PgConnection {
        &mut self.inner
    }

    fn alter(&mut self, change: Change) {
        if !self.changes.contains(&change) {
            self.changes.push(change);
        }
    }

    /// Takes a transaction-scoped advisory lock on `key` in namespace `space`: held until the
    /// commit or rollback, so the count or check that follows sees every earlier holder's
    /// committed rows (each READ COMMITTED statement takes a fresh snapshot).
    async fn lock(&mut self, space: i32, key: &str) -> StoreResult<()> {
        sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext($2))")
            .bind(space)
            .bind(key)
            .execute(self.conn())
            .await
            .map_err(db_err("lock"))?;
        Ok(())
    }
}

impl PgStore {
    /// Connects to the database at `url` (`postgres://` or `postgresql://`) and applies pending
    /// migrations (sqlx takes an advisory lock, so instances starting together apply them once).
    pub async fn connect(url: &str) -> StoreResult<Self> {
        Self::connect_with(url, 16, Duration::from_secs(3)).await
    }

    /// `connect` with at most `max_connections` in the pool, waiting at most `acquire_timeout`
    /// for one (the pool retries a refused connection until then: a request waits that long
    /// before it is answered 503 while the database is down).
    pub async fn connect_with(
        url: &str,
        max_connections: u32,
        acquire_timeout: Duration,
    ) -> StoreResult<Self> {
        let options = PgConnectOptions::from_str(url)
            .map_err(|e| StoreError::Unavailable(format!("bad PostgreSQL URL: {e}")))?
            .application_name("latchkey")
            // The server's notices ("relation _sqlx_migrations already exists, skipping" at
            // every start) are not news to an operator; warnings and errors still are.
            .options([("client_min_messages", "warning")]);
        let pool = PgPoolOptions::new()
            .max_connections(max_connections.max(1))
            .acquire_timeout(acquire_timeout)
            .connect_with(options.clone())
            .await
            .map_err(unavailable)?;
        MIGRATOR.run(&pool).await.map_err(|e| match e {
            sqlx::migrate::MigrateError::Execute(e) => db_err("migration")(e),
            e => StoreError::Internal(format!("migration failed: {e}")),
        })?;
        Ok(Self {
            pool,
            options,
            listener: std::sync::RwLock::new(None),
        })
    }

    async fn write_tx(&self) -> StoreResult<Tx> {
        let inner = self.pool.begin().await.map_err(db_err("transaction"))?;
        Ok(Tx {
            inner,
            changes: Vec::new(),
        })
    }

    /// Commits a write with what it altered: the changes other instances need go into the
    /// `changes` table and out as notifications inside the transaction, and the listener hears
    /// of them all right after the commit (never for a write that did not commit).
    async fn commit(&self, mut tx: Tx) -> Result<(), sqlx::Error> {
        let shared: Vec<String> = tx
            .changes
            .iter()
            .filter(|c| c.is_shared())
            .map(Change::to_string)
            .collect();
        if !shared.is_empty() {
            // Held until the commit: a change numbered later commits later, so a poller that
            // has read up to N never misses a smaller number committed after it looked.
            sqlx::query("SELECT pg_advisory_xact_lock($1, 0)")
                .bind(lock::CHANGES)
                .execute(&mut *tx.inner)
                .await?;
            for change in &shared {
                sqlx::query(
                    "WITH c AS (INSERT INTO changes (change) VALUES ($1) RETURNING seq)
                     SELECT pg_notify($2, seq::TEXT || ' ' || $1) FROM c",
                )
                .bind(change)
                .bind(CHANGES_CHANNEL)
                .execute(&mut *tx.inner)
                .await?;
            }
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
    pub(crate) fn pool(&self) -> &PgPool {
        &self.pool
    }
}

/// The LISTEN side of the change log, on a connection of its own (a pool of one that never
/// reconnects by itself: a lost connection is reported, and the caller subscribes afresh after
/// dropping what it cached, so no notification is ever missed silently).
struct PgChangeFeed {
    listener: sqlx::postgres::PgListener,
}

/// Reads a notification's payload, `<seq> <change>`; one this version cannot read is the
/// safe reading, [`Change::All`].
fn notified_change(payload: &str) -> Option<(i64, Change)> {
    let (seq, change) = payload.split_once(' ')?;
    Some((seq.parse().ok()?, change.parse().unwrap_or(Change::All)))
}

#[async_trait]
impl crate::ChangeFeed for PgChangeFeed {
    async fn next(&mut self) -> StoreResult<Vec<(i64, Change)>> {
        let first = match self.listener.try_recv().await {
            Ok(Some(n)) => n,
            Ok(None) => {
                return Err(StoreError::Unavailable(
                    "the notification connection was lost".to_owned(),
                ));
            }
            Err(e) => return Err(unavailable(e)),
        };
        let mut batch = Vec::new();
        let mut unreadable = false;
        for n in std::iter::once(first).chain(std::iter::from_fn(|| self.listener.next_buffered()))
        {
            match notified_change(n.payload()) {
                Some(change) => batch.push(change),
                None => unreadable = true,
            }
        }
        if unreadable {
            // A payload without its number: the caller cannot place it, so it reads the log.
            batch.push((i64::MAX, Change::All));
        }
        Ok(batch)
    }
}

fn unavailable(e: sqlx::Error) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

/// Whether a SQLSTATE says the database cannot take the request now, rather than that the
/// request is wrong: the connection (class 08), insufficient resources (53: disk full, out of
/// memory, too many connections), an operator or crash shutdown (57P01-57P03), a system error
/// (58: I/O), a read-only transaction (25006: a standby after a failover), a serialization
/// failure or deadlock (40001, 40P01: the request may simply be retried); and what a new
/// connection is refused with, since the pool hands that error to the request that asked for
/// the connection: the credentials refused (class 28, a password rotated under the service),
/// the database missing (3D000) or not accepting connections (55000, `ALLOW_CONNECTIONS
/// false`; the schema uses nothing else that raises it). The caller answers 503 with
/// `Retry-After`, never 500.
fn is_outage_code(code: &str) -> bool {
    code.starts_with("08")
        || code.starts_with("28")
        || code.starts_with("53")
        || code.starts_with("58")
        || matches!(
            code,
            "57P01" | "57P02" | "57P03" | "40001" | "40P01" | "25006" | "3D000" | "55000"
        )
}

/// Maps a driver error, naming `what` in a conflict.
fn db_err(what: &'static str) -> impl Fn(sqlx::Error) -> StoreError {
    move |e| match &e {
        sqlx::Error::Database(d) if d.is_unique_violation() => StoreError::Conflict(what),
        sqlx::Error::Database(d) if d.code().is_some_and(|c| is_outage_code(&c)) => {
            StoreError::Unavailable(e.to_string())
        }
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => StoreError::Unavailable(e.to_string()),
        _ => StoreError::Internal(e.to_string()),
    }
}

async fn insert_event(tx: &mut Tx, e: &NewEvent) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO events (id, at, actor, action, subject_kind, subject_id, user_id, org_id, ip, outcome, details)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
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
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
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
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)",
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
            "INSERT INTO cancel_links (code_hash, token_id, created_at, expires_at) VALUES ($1, $2, $3, $4)",
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
    let row = sqlx::query("SELECT * FROM tokens WHERE id = $1")
        .bind(id.as_str())
        .fetch_optional(tx.conn())
        .await
        .map_err(db_err("token"))?
        .ok_or(StoreError::NotFound("token"))?;
    token_from_row(&row)
}

/// An organisation row, with its features gathered by the same statement (`features`, an
/// array in order): reading many organisations stays one query, not one more per organisation.
fn org_from_row(row: &PgRow) -> StoreResult<Org> {
    Ok(Org {
        features: get(row, "features")?,
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
    sqlx::query("INSERT INTO client_secrets (id, client_id, secret_hash, hint, created_at) VALUES ($1, $2, $3, $4, $5)")
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
           (SELECT role FROM memberships WHERE org_id = $1 AND user_id = $2) AS role,
           (SELECT COUNT(*) FROM memberships WHERE org_id = $1 AND role = 'admin' AND user_id != $2) AS others",
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
        "UPDATE oauth_grants SET revoked_at = $1 WHERE revoked_at IS NULL
           AND (($2 IS NOT NULL AND user_id = $2)
             OR ($3 IS NOT NULL AND client_id IN (SELECT id FROM oauth_clients WHERE org_id = $3)))",
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
        sqlx::query("UPDATE oauth_clients SET tokens_valid_after = $1 WHERE org_id = $2")
            .bind(ts(at))
            .bind(org)
            .execute(tx.conn())
            .await
            .map_err(db_err("client"))?;
    }
    Ok(done.rows_affected())
}

async fn insert_refresh(tx: &mut Tx, t: &NewRefreshToken) -> StoreResult<()> {
    sqlx::query("INSERT INTO refresh_tokens (token_hash, grant_id, client_id, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)")
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
impl Store for PgStore {
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

    fn feeds_changes(&self) -> bool {
        true
    }

    async fn subscribe_changes(&self) -> StoreResult<Option<Box<dyn crate::ChangeFeed>>> {
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .min_connections(0)
            .max_lifetime(None)
            .idle_timeout(None)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(self.options.clone().application_name("latchkey listener"))
            .await
            .map_err(unavailable)?;
        let mut listener = sqlx::postgres::PgListener::connect_with(&pool)
            .await
            .map_err(unavailable)?;
        listener.ignore_pool_close_event(true);
        listener.eager_reconnect(false);
        listener
            .listen(CHANGES_CHANNEL)
            .await
            .map_err(unavailable)?;
        Ok(Some(Box::new(PgChangeFeed { listener })))
    }

    async fn latest_change(&self) -> StoreResult<i64> {
        sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) FROM changes")
            .fetch_one(&self.pool)
            .await
            .map_err(db_err("change"))
    }

    async fn list_changes_since(&self, seq: i64, limit: u32) -> StoreResult<Vec<(i64, Change)>> {
        let rows =
            sqlx::query("SELECT seq, change FROM changes WHERE seq > $1 ORDER BY seq LIMIT $2")
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
        sqlx::query("DELETE FROM changes WHERE seq <= (SELECT MAX(seq) FROM changes) - $1")
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
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
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
        let row = sqlx::query("SELECT * FROM users WHERE id = $1")
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err("user"))?;
        row.as_ref().map(user_from_row).transpose()
    }

    async fn find_user_by_email(&self, email: &Email) -> StoreResult<Option<User>> {
        let row = sqlx::query("SELECT * FROM users WHERE email = $1")
            .bind(email.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err("user"))?;
        row.as_ref().map(user_from_row).transpose()
    }

    async fn find_user_by_external_id(&self, external_id: &str) -> StoreResult<Option<User>> {
        let row = sqlx::query("SELECT * FROM users WHERE external_id = $1 AND deleted_at IS NULL")
            .bind(external_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err("user"))?;
        row.as_ref().map(user_from_row).transpose()
    }

    async fn list_provisioned_users(&self, offset: u64, limit: u32) -> StoreResult<Vec<User>> {
        let rows = sqlx::query(
            "SELECT * FROM users WHERE deleted_at IS NULL AND provisioned
             ORDER BY created_at, id COLLATE \"C\" LIMIT $1 OFFSET $2",
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
            "UPDATE users SET disabled = COALESCE($1, disabled),
                              api_tokens_enabled = COALESCE($2, api_tokens_enabled),
                              is_operator = COALESCE($3, is_operator),
                              password_hash = COALESCE($4, password_hash),
                              email = COALESCE($5, email),
                              external_id = CASE WHEN $6 THEN $7 ELSE external_id END,
                              profile = CASE WHEN $8 THEN $9 ELSE profile END,
                              deleted_at = COALESCE($10, deleted_at),
                              version = version + 1,
                              updated_at = $11
             WHERE id = $12 AND deleted_at IS NULL AND ($13::BIGINT IS NULL OR version = $13)",
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
                sqlx::query_scalar("DELETE FROM memberships WHERE user_id = $1 RETURNING org_id")
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
                "UPDATE password_resets SET used_at = $1 WHERE user_id = $2 AND used_at IS NULL",
            )
            .bind(ts(event.at))
            .bind(id.as_str())
            .execute(tx.conn())
            .await
            .map_err(db_err("password reset"))?;
        }
        if c.end_sessions {
            sqlx::query("DELETE FROM sessions WHERE user_id = $1")
                .bind(id.as_str())
                .execute(tx.conn())
                .await
                .map_err(db_err("session"))?;
        }
        let row = sqlx::query("SELECT * FROM users WHERE id = $1")
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
            "INSERT INTO orgs (id, name, created_at, external_id, provisioned) VALUES ($1, $2, $3, $4, $5)",
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
            sqlx::query(
                "INSERT INTO org_features (org_id, feature) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            )
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
            "SELECT o.*, ARRAY(SELECT feature FROM org_features f
                               WHERE f.org_id = o.id ORDER BY feature) AS features
             FROM orgs o WHERE o.id = $1",
        )
        .bind(id.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err("organisation"))?;
        row.as_ref().map(org_from_row).transpose()
    }

    async fn find_org_by_external_id(&self, external_id: &str) -> StoreResult<Option<Org>> {
        let row = sqlx::query(
            "SELECT o.*, ARRAY(SELECT feature FROM org_features f
                               WHERE f.org_id = o.id ORDER BY feature) AS features
             FROM orgs o WHERE o.external_id = $1 AND o.deleted_at IS NULL",
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
            "UPDATE orgs SET api_tokens_enabled = COALESCE($1, api_tokens_enabled), name = COALESCE($2, name),
                             external_id = CASE WHEN $3 THEN $4 ELSE external_id END,
                             deleted_at = COALESCE($5, deleted_at)
             WHERE id = $6 AND deleted_at IS NULL",
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
                sqlx::query_scalar("DELETE FROM memberships WHERE org_id = $1 RETURNING user_id")
                    .bind(id.as_str())
                    .fetch_all(tx.conn())
                    .await
                    .map_err(db_err("membership"))?;
            for user in users {
                tx.alter(Change::Membership(id.clone(), parse(&user, "user id")?));
            }
        }
        for f in &c.add_features {
            sqlx::query(
                "INSERT INTO org_features (org_id, feature) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            )
            .bind(id.as_str())
            .bind(f)
            .execute(tx.conn())
            .await
            .map_err(db_err("feature"))?;
        }
        for f in &c.remove_features {
            sqlx::query("DELETE FROM org_features WHERE org_id = $1 AND feature = $2")
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
        // Every membership write of the organisation, guarded or not, one at a time: two
        // admins demoting each other at once cannot both see the other still admin.
        tx.lock(lock::ORG_MEMBERS, org.as_str()).await?;
        if keep_an_admin && !role.is_admin() {
            refuse_last_admin(&mut tx, org, user).await?;
        }
        sqlx::query(
            "INSERT INTO memberships (org_id, user_id, role, created_at) VALUES ($1, $2, $3, $4)
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
        tx.lock(lock::ORG_MEMBERS, org.as_str()).await?;
        if keep_an_admin {
            refuse_last_admin(&mut tx, org, user).await?;
        }
        let done = sqlx::query("DELETE FROM memberships WHERE org_id = $1 AND user_id = $2")
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
             JOIN orgs o ON o.id = m.org_id WHERE m.user_id = $1 ORDER BY m.created_at, m.seq",
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
             JOIN users u ON u.id = m.user_id WHERE m.org_id = $1 ORDER BY m.created_at, m.seq",
        )
        .bind(org.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(db_err("membership"))?;
        rows.iter().map(member_from_row).collect()
    }

    async fn list_orgs(&self) -> StoreResult<Vec<Org>> {
        let rows = sqlx::query(
            "SELECT o.*, ARRAY(SELECT feature FROM org_features f
                               WHERE f.org_id = o.id ORDER BY feature) AS features
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
            "INSERT INTO provisioning_credentials (id, name, secret_hash, created_at, kind) VALUES ($1, $2, $3, $4, $5)",
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
            "SELECT * FROM provisioning_credentials WHERE secret_hash = $1 AND revoked_at IS NULL",
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
            "UPDATE provisioning_credentials SET revoked_at = $1
             WHERE id = $2 AND kind = $3 AND revoked_at IS NULL",
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
            "INSERT INTO password_resets (code_hash, user_id, created_at, expires_at) VALUES ($1, $2, $3, $4)",
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
             WHERE code_hash = $1 AND used_at IS NULL AND expires_at > $2
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
        // The person's row first: two codes of one person completed at once queue here
        // instead of each locking its own code and then waiting for the other's (a deadlock).
        sqlx::query(
            "SELECT id FROM users WHERE id = (SELECT user_id FROM password_resets WHERE code_hash = $1) FOR UPDATE",
        )
        .bind(code_hash.as_bytes().as_slice())
        .fetch_optional(tx.conn())
        .await
        .map_err(db_err("user"))?;
        let user: Option<String> = sqlx::query_scalar(
            "UPDATE password_resets SET used_at = $1
             WHERE code_hash = $2 AND used_at IS NULL AND expires_at > $3
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
        sqlx::query(
            "UPDATE password_resets SET used_at = $1 WHERE user_id = $2 AND used_at IS NULL",
        )
        .bind(ts(now))
        .bind(user.as_str())
        .execute(tx.conn())
        .await
        .map_err(db_err("password reset"))?;
        sqlx::query(
            "UPDATE users SET password_hash = $1, version = version + 1, updated_at = $2 WHERE id = $3",
        )
        .bind(password_hash)
        .bind(ts(now))
        .bind(user.as_str())
        .execute(tx.conn())
        .await
        .map_err(db_err("user"))?;
        sqlx::query("DELETE FROM sessions WHERE user_id = $1")
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
        // The person's row, shared-locked at the version the password was checked against: a
        // password change or reset (which updates it, then ends every session) either comes
        // first and refuses this session, or waits for it and then ends it.
        let current: Option<i32> = sqlx::query_scalar(
            "SELECT 1 FROM users WHERE id = $1 AND version = $2 AND NOT disabled AND deleted_at IS NULL FOR SHARE",
        )
        .bind(s.user_id.as_str())
        .bind(s.user_version)
        .fetch_optional(tx.conn())
        .await
        .map_err(db_err("user"))?;
        if current.is_none() {
            return Err(StoreError::Stale("user"));
        }
        sqlx::query("INSERT INTO sessions (id, token_hash, user_id, created_at, expires_at, last_seen_at) VALUES ($1, $2, $3, $4, $5, $6)")
            .bind(&s.id)
            .bind(s.token_hash.as_bytes().as_slice())
            .bind(s.user_id.as_str())
            .bind(ts(s.created_at))
            .bind(ts(s.expires_at))
            .bind(ts(s.created_at))
            .execute(tx.conn())
            .await
            .map_err(db_err("session"))?;
        // Expired sessions are swept here, on the write path, instead of by a timer.
        sqlx::query("DELETE FROM sessions WHERE expires_at <= $1")
            .bind(ts(s.created_at))
            .execute(tx.conn())
            .await
            .map_err(db_err("session"))?;
        insert_event(&mut tx, event).await?;
        self.commit(tx).await.map_err(db_err("session"))
    }

    async fn find_session(&self, hash: &TokenHash, now: Timestamp) -> StoreResult<Option<Session>> {
        let row = sqlx::query("SELECT id, user_id, created_at, expires_at, COALESCE(last_seen_at, created_at) AS last_seen_at, reauth_at FROM sessions WHERE token_hash = $1 AND expires_at > $2")
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
        let done = sqlx::query("UPDATE sessions SET reauth_at = $1 WHERE id = $2")
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
             WHERE l.issuer = $1 AND l.subject = $2 AND u.deleted_at IS NULL",
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
            "INSERT INTO sso_links (issuer, subject, user_id, created_at) VALUES ($1, $2, $3, $4)
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
            "UPDATE sessions SET last_seen_at = $1
             WHERE id = $2 AND (last_seen_at IS NULL OR last_seen_at < $1)",
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
            sqlx::query("UPDATE users SET password_hash = $1 WHERE id = $2 AND password_hash = $3")
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
             FROM sessions WHERE user_id = $1 AND expires_at > $2 ORDER BY created_at DESC, id COLLATE \"C\"",
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
        sqlx::query("DELETE FROM sessions WHERE id = $1")
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
        // Always in this order (key, then owner), so two creations never wait on each other
        // in a cycle. The key's lock makes a concurrent retry wait for the first request and
        // then replay it; the owner's lock makes the count below see every token committed by
        // an earlier creation.
        if let Some(k) = idempotency {
            tx.lock(lock::IDEMPOTENCY, &format!("{}\n{}", k.scope, k.key))
                .await?;
        }
        tx.lock(
            lock::TOKEN_LIMIT,
            &format!("{}\n{}\n{}", t.owner.kind(), t.owner.id(), t.token_type),
        )
        .await?;
        if let Some(k) = idempotency {
            let earlier =
                sqlx::query("SELECT token_id FROM idempotency_keys WHERE scope = $1 AND key = $2")
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
             WHERE owner_kind = $1 AND owner_id = $2 AND token_type = $3
               AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > $4)",
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
            sqlx::query("INSERT INTO idempotency_keys (scope, key, token_id, created_at) VALUES ($1, $2, $3, $4)")
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
        // The same owner lock as creation takes (its count includes the successor), then the
        // old token's row: a second rotation racing this one waits here and, after this one
        // commits, finds its successor below (`Conflict`) instead of a stale "none".
        tx.lock(
            lock::TOKEN_LIMIT,
            &format!(
                "{}\n{}\n{}",
                new.owner.kind(),
                new.owner.id(),
                new.token_type
            ),
        )
        .await?;
        sqlx::query("SELECT 1 FROM tokens WHERE id = $1 FOR UPDATE")
            .bind(old.as_str())
            .fetch_optional(tx.conn())
            .await
            .map_err(db_err("token"))?;
        // A token is replaced once: a second rotation (a double click, a retry) would leave two
        // successors and the owner above `max_active` for good once the grace period ends.
        // The successor has the old token's owner and type: the owner index finds it.
        let successor = sqlx::query(
            "SELECT 1 FROM tokens
             WHERE owner_kind = $1 AND owner_id = $2 AND token_type = $3 AND rotated_from = $4",
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
            "UPDATE tokens SET expires_at = CASE WHEN expires_at IS NULL OR expires_at > $1 THEN $1 ELSE expires_at END
             WHERE id = $2 AND revoked_at IS NULL",
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
            "UPDATE tokens SET expires_at = $1
             WHERE id = (SELECT rotated_from FROM tokens WHERE id = $2)
               AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > $1)
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
        let row = sqlx::query("SELECT * FROM tokens WHERE id = $1")
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err("token"))?;
        row.as_ref().map(token_from_row).transpose()
    }

    async fn find_token_by_hash(&self, hash: &TokenHash) -> StoreResult<Option<TokenRecord>> {
        let row = sqlx::query("SELECT * FROM tokens WHERE token_hash = $1")
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
        let rows = sqlx::query(
            "SELECT * FROM tokens WHERE revoked_at IS NULL AND (expires_at IS NULL OR expires_at > $1)
             AND id > $2 ORDER BY id LIMIT $3",
        )
        .bind(ts(now))
        // The cursor is the last id read; every id sorts after the empty string.
        .bind(after.unwrap_or(""))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(db_err("token"))?;
        let tokens: Vec<([u8; 32], TokenRecord)> = rows
            .iter()
            .map(hashed_token_from_row)
            .collect::<StoreResult<_>>()?;
        let next = tokens.last().map(|(_, t)| t.id.to_string());
        Ok(LiveTokens { tokens, next })
    }

    async fn list_tokens(&self, f: &TokenFilter) -> StoreResult<Vec<TokenRecord>> {
        let rows = sqlx::query(
            "SELECT * FROM tokens
             WHERE ($1 IS NULL OR owner_kind = $1) AND ($2 IS NULL OR owner_id = $2) AND ($3 IS NULL OR token_type = $3)
             ORDER BY created_at DESC, id LIMIT $4",
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
        let done = sqlx::query("UPDATE tokens SET name = $1 WHERE id = $2")
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
        let done = sqlx::query("UPDATE tokens SET allowed_ips = $1 WHERE id = $2")
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
        let row = sqlx::query("SELECT secret_ciphertext FROM tokens WHERE id = $1")
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
        // The owner's live tokens locked in id order first, as a usage batch locks them: the
        // two never wait on each other in a cycle.
        sqlx::query(
            "SELECT 1 FROM tokens
             WHERE owner_kind = $2 AND owner_id = $3 AND ($4::TEXT IS NULL OR token_type = $4)
               AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > $1)
             ORDER BY id FOR UPDATE",
        )
        .bind(ts(at))
        .bind(owner.kind())
        .bind(owner.id())
        .bind(token_type)
        .execute(tx.conn())
        .await
        .map_err(db_err("token"))?;
        let rows = sqlx::query(
            "UPDATE tokens SET revoked_at = $1
             WHERE owner_kind = $2 AND owner_id = $3 AND ($4 IS NULL OR token_type = $4)
               AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > $1)
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
            "INSERT INTO token_addresses (token_id, ip, first_seen) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
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
        // Two rotations at once (two instances' schedules): the second retires the first's new
        // key, as it would one after the other; without the lock its update would not see it.
        tx.lock(lock::SIGNING_KEYS, "").await?;
        if let Some(at) = retire_others_at {
            sqlx::query("UPDATE signing_keys SET retired_at = $1 WHERE retired_at IS NULL")
                .bind(ts(at))
                .execute(tx.conn())
                .await
                .map_err(db_err("signing key"))?;
        }
        sqlx::query(
            "INSERT INTO signing_keys (kid, alg, private_key, created_at, use_from, retired_at) VALUES ($1, $2, $3, $4, $5, $6)",
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
             WHERE signing_kid IS NOT NULL AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > $1)",
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
            sqlx::query("UPDATE tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
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
        // PostgreSQL's UPDATE ... FROM applies one source row per target row: with one use per
        // token (the latest; the later of two at the same second, as applying them in turn
        // would), the result is that of applying the batch in order. Sorted by id, so two
        // instances' batches lock their rows in the same order and never deadlock.
        let mut latest: Vec<&TokenUsage> = Vec::with_capacity(usage.len());
        {
            let mut by_token = std::collections::HashMap::<&str, usize>::new();
            for u in usage {
                match by_token.get(u.token_id.as_str()) {
                    Some(&i) if latest[i].at > u.at => {}
                    Some(&i) => latest[i] = u,
                    None => {
                        by_token.insert(u.token_id.as_str(), latest.len());
                        latest.push(u);
                    }
                }
            }
        }
        latest.sort_by(|a, b| a.token_id.as_str().cmp(b.token_id.as_str()));
        let mut tx = self.write_tx().await?;
        // Row locks in id order before the update (whose join may visit rows in any order), the
        // order the kill switch locks in too.
        let ids: Vec<&str> = latest.iter().map(|u| u.token_id.as_str()).collect();
        sqlx::query("SELECT 1 FROM tokens WHERE id = ANY($1) ORDER BY id FOR UPDATE")
            .bind(&ids)
            .execute(tx.conn())
            .await
            .map_err(db_err("token"))?;
        // One statement per 300 uses: a busy second with tens of thousands of first uses costs
        // a few statements, not one per token.
        for chunk in latest.chunks(300) {
            let mut q = sqlx::QueryBuilder::<Postgres>::new(
                "UPDATE tokens SET last_used_ip = CASE WHEN v.at >= COALESCE(tokens.last_used_at, 0) THEN v.ip ELSE tokens.last_used_ip END,
                        last_used_at = GREATEST(COALESCE(tokens.last_used_at, 0), v.at) FROM (",
            );
            q.push_values(chunk, |mut row, u| {
                row.push_bind(u.token_id.as_str())
                    .push_bind(ts(u.at))
                    .push_bind(u.ip.as_str());
            });
            q.push(") AS v (id, at, ip) WHERE tokens.id = v.id");
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
            sqlx::query("UPDATE client_secrets SET last_used_at = GREATEST(COALESCE(last_used_at, 0), $1) WHERE id = $2")
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
                sqlx::query("UPDATE tokens SET last_used_at = $1, last_used_ip = $2 WHERE id = $3")
                    .bind(ts(at))
                    .bind(ip)
                    .bind(t.id.as_str())
                    .execute(tx.conn())
                    .await
                    .map_err(db_err("token"))?;
                sqlx::query(
                    "INSERT INTO token_addresses (token_id, ip, first_seen) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
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
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
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
        let row = sqlx::query("SELECT * FROM oauth_clients WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err("client"))?;
        row.as_ref().map(client_from_row).transpose()
    }

    async fn list_clients(&self, org: &OrgId) -> StoreResult<Vec<OAuthClient>> {
        let rows = sqlx::query("SELECT * FROM oauth_clients WHERE org_id = $1 AND deleted_at IS NULL ORDER BY created_at, seq")
            .bind(org.as_str())
            .fetch_all(&self.pool)
            .await
            .map_err(db_err("client"))?;
        rows.iter().map(client_from_row).collect()
    }

    async fn update_client(&self, id: &str, c: &ClientChange, event: &NewEvent) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        let done = sqlx::query(
            "UPDATE oauth_clients SET name = COALESCE($1, name), grant_types = COALESCE($2, grant_types),
                    redirect_uris = COALESCE($3, redirect_uris), scopes = COALESCE($4, scopes),
                    can_introspect = COALESCE($5, can_introspect)
             WHERE id = $6 AND deleted_at IS NULL",
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
            "UPDATE oauth_clients SET deleted_at = $1 WHERE id = $2 AND deleted_at IS NULL",
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
            "UPDATE client_secrets SET revoked_at = $1 WHERE client_id = $2 AND revoked_at IS NULL",
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
        tx.lock(lock::CLIENT_SECRETS, &s.client_id).await?;
        let row = sqlx::query("SELECT COUNT(*) AS live FROM client_secrets WHERE client_id = $1 AND revoked_at IS NULL")
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
        let done = sqlx::query("UPDATE client_secrets SET revoked_at = $1 WHERE id = $2 AND client_id = $3 AND revoked_at IS NULL")
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
            "SELECT * FROM client_secrets WHERE client_id = $1 ORDER BY created_at, seq",
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
            "SELECT * FROM client_secrets WHERE secret_hash = $1 AND revoked_at IS NULL",
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
        sqlx::query("INSERT INTO revoked_access_tokens (jti, expires_at) VALUES ($1, $2) ON CONFLICT DO NOTHING")
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
        sqlx::query("DELETE FROM revoked_access_tokens WHERE expires_at <= $1")
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
        sqlx::query("INSERT INTO oauth_grants (id, client_id, user_id, scopes, created_at) VALUES ($1, $2, $3, $4, $5)")
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
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
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
            "SELECT * FROM oauth_grants WHERE user_id = $1 AND revoked_at IS NULL
             ORDER BY created_at, id COLLATE \"C\"",
        )
        .bind(user.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(db_err("grant"))?;
        rows.iter().map(grant_from_row).collect()
    }

    async fn find_grant(&self, id: &str) -> StoreResult<Option<OAuthGrant>> {
        let row = sqlx::query("SELECT * FROM oauth_grants WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err("grant"))?;
        row.as_ref().map(grant_from_row).transpose()
    }

    async fn find_auth_code(&self, hash: &TokenHash) -> StoreResult<Option<StoredAuthCode>> {
        let row = sqlx::query("SELECT * FROM auth_codes WHERE code_hash = $1")
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
        // Locked: a loser of the race waits for the winner's commit and reads its `used_at`
        // (`Reused`), not the unused row it would otherwise have read before (`Invalid`).
        let row = sqlx::query(
            "SELECT c.*, g.revoked_at AS grant_revoked_at FROM auth_codes c
             JOIN oauth_grants g ON g.id = c.grant_id WHERE c.code_hash = $1
             FOR UPDATE OF c",
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
            "UPDATE auth_codes SET used_at = $1 WHERE code_hash = $2 AND used_at IS NULL AND expires_at > $1",
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
        let row = sqlx::query("SELECT grant_id FROM refresh_tokens WHERE token_hash = $1")
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
            "SELECT r.*, g.revoked_at AS grant_revoked_at FROM refresh_tokens r JOIN oauth_grants g ON g.id = r.grant_id WHERE r.token_hash = $1",
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
        // Locked: a loser of the race waits for the winner's commit and reads its `used_at`
        // (`Reused`), not the unused row it would otherwise have read before (`Invalid`).
        let row = sqlx::query(
            "SELECT r.*, g.revoked_at AS grant_revoked_at FROM refresh_tokens r JOIN oauth_grants g ON g.id = r.grant_id WHERE r.token_hash = $1
             FOR UPDATE OF r",
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
            "UPDATE refresh_tokens SET used_at = $1 WHERE token_hash = $2 AND used_at IS NULL AND expires_at > $1",
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
            "UPDATE oauth_grants SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL",
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
            "SELECT id FROM oauth_grants WHERE revoked_at IS NOT NULL AND revoked_at > $1",
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
            "UPDATE outbox SET locked_until = $2, attempts = attempts + 1
             WHERE id IN (SELECT id FROM outbox
                          WHERE sent_at IS NULL AND next_attempt_at <= $1
                            AND (locked_until IS NULL OR locked_until <= $1)
                          ORDER BY created_at, seq LIMIT $3
                          FOR UPDATE SKIP LOCKED)
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
            "UPDATE outbox SET sent_at = $1, locked_until = NULL, last_error = NULL, body = '', sealed = NULL
             WHERE id = $2",
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
            "UPDATE outbox SET locked_until = NULL, next_attempt_at = $1, last_error = $2
             WHERE id = $3 AND sent_at IS NULL",
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
        let mut q = sqlx::QueryBuilder::<Postgres>::new("SELECT * FROM (SELECT t.*, CASE");
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
            "INSERT INTO expiry_notices (token_id, days, sent_at)
             SELECT $1, $2, $3 WHERE EXISTS
               (SELECT 1 FROM tokens WHERE id = $1 AND revoked_at IS NULL AND expires_at > $3)
             ON CONFLICT DO NOTHING",
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
            let seen = sqlx::query("SELECT 1 FROM token_addresses WHERE token_id = $1 AND ip = $2")
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
            "SELECT COUNT(*) FROM token_addresses WHERE token_id = $1 AND first_seen >= $2",
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
        // Two instances recording the same first uses in different orders would wait on each
        // other's inserts in a cycle: each pair's lock is taken first, in one order.
        let mut keys: Vec<String> = found
            .iter()
            .map(|a| format!("{}\n{}", a.token_id, a.ip))
            .collect();
        keys.sort();
        keys.dedup();
        sqlx::query(
            "SELECT pg_advisory_xact_lock($1, hashtext(k))
             FROM (SELECT k FROM UNNEST($2::TEXT[]) AS k ORDER BY k) AS sorted",
        )
        .bind(lock::TOKEN_ADDRESS)
        .bind(&keys)
        .execute(tx.conn())
        .await
        .map_err(db_err("token address"))?;
        let mut new = 0;
        for a in found {
            let done = sqlx::query(
                "INSERT INTO token_addresses (token_id, ip, first_seen) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
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
        let row = sqlx::query("SELECT * FROM cancel_links WHERE code_hash = $1")
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
            "UPDATE cancel_links SET used_at = $1
             WHERE code_hash = $2 AND used_at IS NULL AND expires_at > $1
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
            "UPDATE tokens SET revoked_at = $1
             WHERE id = $2 AND revoked_at IS NULL AND active_from > $1",
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
             VALUES ($1, $2, $3, $4, $5, $6)
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
            "UPDATE instances SET heartbeat_at = $1, applied_change = GREATEST(applied_change, $2)
             WHERE id = $3",
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
        sqlx::query("DELETE FROM instances WHERE id = $1 OR heartbeat_at < $2")
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
             WHERE ($1 IS NULL OR user_id = $1) AND ($2 IS NULL OR org_id = $2) AND ($3 IS NULL OR seq < $3)
               AND ($5::text IS NULL OR left(action, length($5)) = $5)
               AND ($6::text IS NULL OR subject_id = $6) AND ($7::text IS NULL OR actor = $7)
             ORDER BY seq DESC LIMIT $4",
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

    use super::*;

    #[test]
    fn outage_codes_are_connection_resources_shutdown_and_retry() {
        for code in [
            "08000", "08006", "08P01", "53100", "53200", "53300", "57P01", "57P02", "57P03",
            "58030", "40001", "40P01", "25006", "28000", "28P01", "3D000", "55000",
        ] {
            assert!(is_outage_code(code), "{code}");
        }
        // unique and foreign-key violations, a syntax error, a query cancelled by its timeout
        for code in ["23505", "23503", "42601", "57014", "22P02", "", "x"] {
            assert!(!is_outage_code(code), "{code}");
        }
    }

    #[tokio::test]
    async fn a_server_that_is_not_there_is_an_outage() {
        // Port 1 on loopback: nothing listens there, the connection is refused at once.
        let url = "postgres://latchkey@127.0.0.1:1/latchkey";
        match PgStore::connect_with(url, 4, Duration::from_millis(500)).await {
            Err(StoreError::Unavailable(_)) => {}
            Err(other) => panic!("a refused connection must be Unavailable, got {other:?}"),
            Ok(_) => panic!("connected to a server on port 1"),
        }
    }
}
