//! Reading records from rows, shared by both backends.
//!
//! The tables have the same columns and column types on SQLite and PostgreSQL (times as Unix
//! seconds, lists as text), so a record is read from a row of either the same way: one mapper
//! per model here instead of one per backend. Must not hold SQL; the statements, and the reads
//! that really differ by dialect, stay in each backend.

use std::str::FromStr;

use latchkey_core::{Email, Timestamp};
use sqlx::Row;
use sqlx::postgres::{PgRow, Postgres};
use sqlx::sqlite::{Sqlite, SqliteRow};

use crate::model::*;
use crate::{StoreError, StoreResult};

/// A column of type `T` read from a row of either backend.
pub(crate) trait Read<T> {
    fn read(&self, col: &str) -> StoreResult<T>;
}

impl<T> Read<T> for SqliteRow
where
    T: for<'r> sqlx::Decode<'r, Sqlite> + sqlx::Type<Sqlite>,
{
    fn read(&self, col: &str) -> StoreResult<T> {
        self.try_get(col)
            .map_err(|e| StoreError::Internal(e.to_string()))
    }
}

impl<T> Read<T> for PgRow
where
    T: for<'r> sqlx::Decode<'r, Postgres> + sqlx::Type<Postgres>,
{
    fn read(&self, col: &str) -> StoreResult<T> {
        self.try_get(col)
            .map_err(|e| StoreError::Internal(e.to_string()))
    }
}

impl<T, R: Read<T>> Read<T> for &R {
    fn read(&self, col: &str) -> StoreResult<T> {
        (**self).read(col)
    }
}

/// A row of either backend, with every column type the shared mappers read.
pub(crate) trait StoredRow:
    Read<String>
    + Read<Option<String>>
    + Read<bool>
    + Read<i64>
    + Read<Option<i64>>
    + Read<Vec<u8>>
    + Read<Option<Vec<u8>>>
{
}

impl<R> StoredRow for R where
    R: Read<String>
        + Read<Option<String>>
        + Read<bool>
        + Read<i64>
        + Read<Option<i64>>
        + Read<Vec<u8>>
        + Read<Option<Vec<u8>>>
{
}

pub(crate) fn get<T>(row: &impl Read<T>, col: &str) -> StoreResult<T> {
    row.read(col)
}

pub(crate) fn ts(t: Timestamp) -> i64 {
    t.unix_timestamp()
}

pub(crate) fn from_ts(secs: i64) -> StoreResult<Timestamp> {
    Timestamp::from_unix_timestamp(secs)
        .map_err(|e| StoreError::Internal(format!("bad timestamp: {e}")))
}

pub(crate) fn opt_ts(secs: Option<i64>) -> StoreResult<Option<Timestamp>> {
    secs.map(from_ts).transpose()
}

pub(crate) fn parse<T: FromStr>(text: &str, what: &str) -> StoreResult<T> {
    text.parse()
        .map_err(|_| StoreError::Internal(format!("stored {what} {text:?} does not parse")))
}

pub(crate) fn user_from_row(row: &impl StoredRow) -> StoreResult<User> {
    let email: String = get(row, "email")?;
    Ok(User {
        id: parse(&get::<String>(row, "id")?, "user id")?,
        email: Email::parse(&email).map_err(|e| StoreError::Internal(e.to_string()))?,
        password_hash: get(row, "password_hash")?,
        is_operator: get(row, "is_operator")?,
        disabled: get(row, "disabled")?,
        api_tokens_enabled: get(row, "api_tokens_enabled")?,
        created_at: from_ts(get(row, "created_at")?)?,
        external_id: get(row, "external_id")?,
        profile: get(row, "profile")?,
        version: get(row, "version")?,
        deleted_at: opt_ts(get(row, "deleted_at")?)?,
        provisioned: get(row, "provisioned")?,
        updated_at: opt_ts(get(row, "updated_at")?)?,
    })
}

/// The record of a user just inserted.
pub(crate) fn new_user_record(u: &NewUser) -> User {
    User {
        id: u.id.clone(),
        email: u.email.clone(),
        password_hash: u.password_hash.clone(),
        is_operator: u.is_operator,
        disabled: u.disabled,
        api_tokens_enabled: true,
        created_at: u.created_at,
        external_id: u.external_id.clone(),
        profile: u.profile.clone(),
        version: 1,
        deleted_at: None,
        provisioned: u.provisioned,
        updated_at: None,
    }
}

pub(crate) fn credential_from_row(row: &impl StoredRow) -> StoreResult<PlatformCredential> {
    let kind: String = get(row, "kind")?;
    Ok(PlatformCredential {
        id: get(row, "id")?,
        kind: CredentialKind::parse(&kind)
            .ok_or_else(|| StoreError::Internal(format!("unknown credential kind {kind:?}")))?,
        name: get(row, "name")?,
        created_at: from_ts(get(row, "created_at")?)?,
        revoked_at: opt_ts(get(row, "revoked_at")?)?,
    })
}

pub(crate) fn owner_from(kind: &str, id: &str) -> StoreResult<Owner> {
    match kind {
        "user" => Ok(Owner::User(parse(id, "user id")?)),
        "organisation" => Ok(Owner::Organisation(parse(id, "org id")?)),
        _ => Err(StoreError::Internal(format!("unknown owner kind {kind:?}"))),
    }
}

pub(crate) fn split_scopes(text: &str) -> Vec<String> {
    text.split(' ')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

pub(crate) fn token_from_row(row: &impl StoredRow) -> StoreResult<TokenRecord> {
    TokenColumns {
        id: get(row, "id")?,
        token_type: get(row, "token_type")?,
        owner_kind: get(row, "owner_kind")?,
        owner_id: get(row, "owner_id")?,
        name: get(row, "name")?,
        hint: get(row, "hint")?,
        scopes: get(row, "scopes")?,
        created_at: get(row, "created_at")?,
        active_from: get(row, "active_from")?,
        expires_at: get(row, "expires_at")?,
        revoked_at: get(row, "revoked_at")?,
        last_used_at: get(row, "last_used_at")?,
        last_used_ip: get(row, "last_used_ip")?,
        rotated_from: get(row, "rotated_from")?,
        ends_on_first_use: get(row, "ends_on_first_use")?,
        allowed_ips: get(row, "allowed_ips")?,
        is_revealable: get::<Option<Vec<u8>>>(row, "secret_ciphertext")?.is_some(),
        signing_kid: get(row, "signing_kid")?,
    }
    .into_record()
}

/// A token's columns as stored, before they are checked: what [`token_from_row`] reads from
/// a row, and what SQLite's warm-up reads from one JSON value per page (a struct deserialises
/// from a JSON array, field by field in this order: the statement lists the columns so).
#[derive(serde::Deserialize)]
pub(crate) struct TokenColumns {
    id: String,
    token_type: String,
    owner_kind: String,
    owner_id: String,
    name: String,
    hint: String,
    scopes: String,
    created_at: i64,
    active_from: i64,
    expires_at: Option<i64>,
    revoked_at: Option<i64>,
    last_used_at: Option<i64>,
    last_used_ip: Option<String>,
    rotated_from: Option<String>,
    ends_on_first_use: Option<String>,
    allowed_ips: Option<String>,
    is_revealable: bool,
    signing_kid: Option<String>,
}

impl TokenColumns {
    pub(crate) fn into_record(self) -> StoreResult<TokenRecord> {
        let id_of = |t: String| parse(&t, "token id");
        Ok(TokenRecord {
            id: parse(&self.id, "token id")?,
            owner: owner_from(&self.owner_kind, &self.owner_id)?,
            token_type: self.token_type,
            name: self.name,
            hint: self.hint,
            scopes: split_scopes(&self.scopes),
            created_at: from_ts(self.created_at)?,
            active_from: from_ts(self.active_from)?,
            expires_at: opt_ts(self.expires_at)?,
            revoked_at: opt_ts(self.revoked_at)?,
            last_used_at: opt_ts(self.last_used_at)?,
            last_used_ip: self.last_used_ip,
            rotated_from: self.rotated_from.map(id_of).transpose()?,
            ends_on_first_use: self.ends_on_first_use.map(id_of).transpose()?,
            allowed_ips: split_scopes(&self.allowed_ips.unwrap_or_default()),
            is_revealable: self.is_revealable,
            signing_kid: self.signing_kid,
        })
    }
}

/// A token with the SHA-256 it is found by (the verification cache's key).
pub(crate) fn hashed_token_from_row(row: &impl StoredRow) -> StoreResult<([u8; 32], TokenRecord)> {
    let hash: Vec<u8> = get(row, "token_hash")?;
    let hash: [u8; 32] = hash
        .try_into()
        .map_err(|_| StoreError::Internal("a stored token hash is not 32 bytes".into()))?;
    Ok((hash, token_from_row(row)?))
}

pub(crate) fn mail_from_row(row: &impl StoredRow) -> StoreResult<OutboxMail> {
    let recipient: String = get(row, "recipient")?;
    Ok(OutboxMail {
        id: parse(&get::<String>(row, "id")?, "mail id")?,
        event_id: get(row, "event_id")?,
        recipient: Email::parse(&recipient).map_err(|e| StoreError::Internal(e.to_string()))?,
        subject: get(row, "subject")?,
        body: get(row, "body")?,
        sealed: get(row, "sealed")?,
        created_at: from_ts(get(row, "created_at")?)?,
        attempts: u32::try_from(get::<i64>(row, "attempts")?).unwrap_or(u32::MAX),
    })
}

pub(crate) fn client_from_row(row: &impl StoredRow) -> StoreResult<OAuthClient> {
    let lines = |text: String| {
        text.lines()
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    Ok(OAuthClient {
        id: get(row, "id")?,
        org_id: parse(&get::<String>(row, "org_id")?, "org id")?,
        name: get(row, "name")?,
        grant_types: split_scopes(&get::<String>(row, "grant_types")?),
        redirect_uris: lines(get(row, "redirect_uris")?),
        scopes: split_scopes(&get::<String>(row, "scopes")?),
        is_confidential: get(row, "is_confidential")?,
        can_introspect: get(row, "can_introspect")?,
        created_at: from_ts(get(row, "created_at")?)?,
        deleted_at: opt_ts(get(row, "deleted_at")?)?,
        tokens_valid_after: opt_ts(get(row, "tokens_valid_after")?)?,
    })
}

pub(crate) fn secret_from_row(row: &impl StoredRow) -> StoreResult<ClientSecretRecord> {
    Ok(ClientSecretRecord {
        id: get(row, "id")?,
        client_id: get(row, "client_id")?,
        hint: get(row, "hint")?,
        created_at: from_ts(get(row, "created_at")?)?,
        revoked_at: opt_ts(get(row, "revoked_at")?)?,
        last_used_at: opt_ts(get(row, "last_used_at")?)?,
    })
}

pub(crate) fn account_from_row(row: &impl StoredRow) -> StoreResult<Account> {
    Ok(Account {
        org_id: parse(&get::<String>(row, "id")?, "org id")?,
        org_name: get(row, "name")?,
        role: parse(&get::<String>(row, "role")?, "role")?,
        api_tokens_enabled: get(row, "api_tokens_enabled")?,
    })
}

pub(crate) fn member_from_row(row: &impl StoredRow) -> StoreResult<Member> {
    let email: String = get(row, "email")?;
    Ok(Member {
        user_id: parse(&get::<String>(row, "id")?, "user id")?,
        email: Email::parse(&email).map_err(|e| StoreError::Internal(e.to_string()))?,
        role: parse(&get::<String>(row, "role")?, "role")?,
        since: from_ts(get(row, "created_at")?)?,
    })
}

pub(crate) fn session_from_row(row: &impl StoredRow) -> StoreResult<Session> {
    Ok(Session {
        id: get(row, "id")?,
        user_id: parse(&get::<String>(row, "user_id")?, "user id")?,
        created_at: from_ts(get(row, "created_at")?)?,
        expires_at: from_ts(get(row, "expires_at")?)?,
        last_seen_at: from_ts(get(row, "last_seen_at")?)?,
        reauth_at: opt_ts(get(row, "reauth_at")?)?,
    })
}

pub(crate) fn signing_key_from_row(row: &impl StoredRow) -> StoreResult<StoredSigningKey> {
    Ok(StoredSigningKey {
        kid: get(row, "kid")?,
        alg: get(row, "alg")?,
        private_key: get(row, "private_key")?,
        created_at: from_ts(get(row, "created_at")?)?,
        use_from: from_ts(get(row, "use_from")?)?,
        retired_at: opt_ts(get(row, "retired_at")?)?,
    })
}

pub(crate) fn grant_from_row(row: &impl StoredRow) -> StoreResult<OAuthGrant> {
    let user: Option<String> = get(row, "user_id")?;
    Ok(OAuthGrant {
        id: get(row, "id")?,
        client_id: get(row, "client_id")?,
        user_id: user.map(|u| parse(&u, "user id")).transpose()?,
        scopes: split_scopes(&get::<String>(row, "scopes")?),
        created_at: from_ts(get(row, "created_at")?)?,
        revoked_at: opt_ts(get(row, "revoked_at")?)?,
    })
}

pub(crate) fn cancel_link_from_row(row: &impl StoredRow) -> StoreResult<CancelLink> {
    Ok(CancelLink {
        token_id: parse(&get::<String>(row, "token_id")?, "token id")?,
        expires_at: from_ts(get(row, "expires_at")?)?,
        used_at: opt_ts(get(row, "used_at")?)?,
    })
}

pub(crate) fn instance_from_row(row: &impl StoredRow) -> StoreResult<Instance> {
    Ok(Instance {
        id: parse(&get::<String>(row, "id")?, "instance id")?,
        address: get(row, "address")?,
        version: get(row, "version")?,
        started_at: from_ts(get(row, "started_at")?)?,
        heartbeat_at: from_ts(get(row, "heartbeat_at")?)?,
        applied_change: get(row, "applied_change")?,
    })
}

pub(crate) fn event_from_row(row: &impl StoredRow) -> StoreResult<Event> {
    Ok(Event {
        seq: get(row, "seq")?,
        id: get(row, "id")?,
        at: from_ts(get(row, "at")?)?,
        actor: get(row, "actor")?,
        action: get(row, "action")?,
        subject_kind: get(row, "subject_kind")?,
        subject_id: get(row, "subject_id")?,
        org_id: get(row, "org_id")?,
        ip: get(row, "ip")?,
        outcome: get(row, "outcome")?,
        details: get(row, "details")?,
    })
}
