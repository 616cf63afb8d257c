//! Latchkey's storage: one [`Store`] trait, one implementation per database backend.
//!
//! Owns the schema, the migrations and every query. Each `Store` method is one atomic use case
//! (a transaction), including the audit event that records it, so a crash can never leave a
//! change without its event or a token half-created. Must not make policy decisions beyond what
//! atomicity needs (the limit check of `create_token_within_limit` is here because it must be
//! inside the transaction); the service layer decides everything else.

mod change;
pub mod copy;
mod events;
mod model;
pub mod postgres;
mod rows;
pub mod sqlite;

use async_trait::async_trait;
use latchkey_core::{
    Email, InstanceId, MailId, OrgId, Role, Timestamp, TokenHash, TokenId, UserId,
};

pub use change::{BadChange, Change, ChangeListener};
pub use model::*;

/// Why a storage call failed. `Unavailable` is an outage (the caller answers 503), never
/// "not found".
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the {0} already exists")]
    Conflict(&'static str),
    #[error("the {0} does not exist")]
    NotFound(&'static str),
    #[error("the limit of live tokens is reached")]
    LimitReached,
    #[error("the organisation would be left without an admin")]
    LastAdmin,
    #[error("the {0} changed since it was read")]
    Stale(&'static str),
    #[error("storage is unavailable: {0}")]
    Unavailable(String),
    #[error("storage error: {0}")]
    Internal(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// The changes committed by every process sharing the database, as they commit.
#[async_trait]
pub trait ChangeFeed: Send {
    /// Waits for the next announced changes and returns them with every other one already
    /// received, oldest first, with their sequence numbers. An error means the channel is lost:
    /// changes committed from then on may never be announced on this feed.
    async fn next(&mut self) -> StoreResult<Vec<(i64, Change)>>;
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Storage reachable (for `/readyz`).
    async fn ping(&self) -> StoreResult<()>;
    /// Sets the function called right after each commit with what it altered (`change.rs`).
    fn set_change_listener(&self, listener: ChangeListener);
    /// The sequence number of the latest change committed, by any process sharing the database.
    async fn latest_change(&self) -> StoreResult<i64>;
    /// Up to `limit` changes after `seq`, oldest first, with their sequence numbers.
    async fn list_changes_since(&self, seq: i64, limit: u32) -> StoreResult<Vec<(i64, Change)>>;
    /// Forgets all but the latest `keep_last` changes (every process has long seen them; one
    /// that fell further behind drops its whole cache).
    async fn prune_changes(&self, keep_last: u32) -> StoreResult<()>;
    /// Whether changes committed by other processes are announced as they commit (PostgreSQL's
    /// LISTEN/NOTIFY) rather than only found by polling the log (SQLite).
    fn feeds_changes(&self) -> bool {
        false
    }
    /// Starts listening for the changes every process commits: `None` where the backend has
    /// no such channel ([`Store::feeds_changes`] is false). Only changes committed after this
    /// returns are announced; earlier ones are in the log.
    async fn subscribe_changes(&self) -> StoreResult<Option<Box<dyn ChangeFeed>>> {
        Ok(None)
    }

    async fn create_user(&self, user: &NewUser, event: &NewEvent) -> StoreResult<User>;
    async fn find_user(&self, id: &UserId) -> StoreResult<Option<User>>;
    async fn find_user_by_email(&self, email: &Email) -> StoreResult<Option<User>>;
    async fn find_user_by_external_id(&self, external_id: &str) -> StoreResult<Option<User>>;
    /// Live (not deleted) users made by SCIM, in the order they were created, `offset`
    /// skipped.
    async fn list_provisioned_users(&self, offset: u64, limit: u32) -> StoreResult<Vec<User>>;
    /// How many live users SCIM made.
    async fn count_provisioned_users(&self) -> StoreResult<u64>;
    /// Whether any live (not deleted) user exists at all: a fresh installation has none.
    async fn has_users(&self) -> StoreResult<bool>;
    async fn update_user(
        &self,
        id: &UserId,
        change: &UserChange,
        event: &NewEvent,
    ) -> StoreResult<User>;

    /// Creates the organisation, and its first token if given, in one transaction. The features
    /// are stored and returned as given (the service normalises them).
    async fn create_org(
        &self,
        org: &NewOrg,
        event: &NewEvent,
        first_token: Option<(&NewToken, &NewEvent)>,
    ) -> StoreResult<Org>;
    async fn find_org(&self, id: &OrgId) -> StoreResult<Option<Org>>;
    async fn find_org_by_external_id(&self, external_id: &str) -> StoreResult<Option<Org>>;
    async fn update_org(
        &self,
        id: &OrgId,
        change: &OrgChange,
        event: &NewEvent,
    ) -> StoreResult<Org>;
    /// Adds the user to the organisation or changes their role. With `keep_an_admin`, demoting
    /// the organisation's last admin is refused (`LastAdmin`), checked in the same transaction
    /// so two admins demoting each other at once cannot both win.
    async fn upsert_membership(
        &self,
        org: &OrgId,
        user: &UserId,
        role: Role,
        at: Timestamp,
        keep_an_admin: bool,
        event: &NewEvent,
    ) -> StoreResult<()>;
    /// Returns whether there was a membership to remove. With `keep_an_admin`, removing the
    /// last admin is refused (`LastAdmin`), in the same transaction.
    async fn delete_membership(
        &self,
        org: &OrgId,
        user: &UserId,
        keep_an_admin: bool,
        event: &NewEvent,
    ) -> StoreResult<bool>;
    /// The organisations a user belongs to, with their role, oldest membership first.
    async fn list_user_accounts(&self, user: &UserId) -> StoreResult<Vec<Account>>;
    async fn list_org_members(&self, org: &OrgId) -> StoreResult<Vec<Member>>;
    async fn list_orgs(&self) -> StoreResult<Vec<Org>>;

    async fn create_platform_credential(
        &self,
        credential: &PlatformCredential,
        secret_hash: &TokenHash,
        event: &NewEvent,
    ) -> StoreResult<()>;
    async fn find_platform_credential(
        &self,
        hash: &TokenHash,
    ) -> StoreResult<Option<PlatformCredential>>;
    async fn list_platform_credentials(&self) -> StoreResult<Vec<PlatformCredential>>;
    /// False when there is no such live credential of that kind.
    async fn revoke_platform_credential(
        &self,
        id: &str,
        kind: CredentialKind,
        at: Timestamp,
        event: &NewEvent,
    ) -> StoreResult<bool>;

    /// Stores a reset code with its event (which carries the mail).
    async fn create_password_reset(
        &self,
        reset: &NewPasswordReset,
        event: &NewEvent,
    ) -> StoreResult<()>;
    /// The person a live reset code is for (unused, unexpired, the person neither disabled nor
    /// deleted), without using it.
    async fn find_live_password_reset(
        &self,
        code_hash: &TokenHash,
        now: Timestamp,
    ) -> StoreResult<Option<UserId>>;
    /// Uses a reset code, if it is live, in one transaction: the code and every other live
    /// code of the person are used up, the password hash replaced, every session ended, the
    /// event written with the person as its subject and user. `None` (nothing changed) for an
    /// unknown, used or expired code, or a person who is disabled or deleted.
    async fn complete_password_reset(
        &self,
        code_hash: &TokenHash,
        now: Timestamp,
        password_hash: &str,
        event: &NewEvent,
    ) -> StoreResult<Option<UserId>>;
    async fn create_session(&self, session: &NewSession, event: &NewEvent) -> StoreResult<()>;
    /// A session that has not expired at `now`.
    async fn find_session(&self, hash: &TokenHash, now: Timestamp) -> StoreResult<Option<Session>>;
    async fn delete_session(&self, id: &str, event: &NewEvent) -> StoreResult<()>;
    /// A user's live sessions, newest first.
    async fn list_user_sessions(&self, user: &UserId, now: Timestamp) -> StoreResult<Vec<Session>>;
    /// Notes that the session was used at `at` (the idle timeout counts from it); never moves
    /// it back.
    async fn touch_session(&self, id: &str, at: Timestamp) -> StoreResult<()>;
    /// Notes that the session's person confirmed who they are at the single-sign-on provider
    /// at `at`, with its event. `NotFound` when the session has ended.
    async fn mark_session_reauthenticated(
        &self,
        id: &str,
        at: Timestamp,
        event: &NewEvent,
    ) -> StoreResult<()>;
    /// The person (not deleted) whose identity at `issuer` is `subject`.
    async fn find_sso_link(&self, issuer: &str, subject: &str) -> StoreResult<Option<UserId>>;
    /// Links a person to their identity at the provider, with its event. A link to a deleted
    /// person is replaced. `Conflict` when the identity is another live person's, or the
    /// person already has another identity at this issuer.
    async fn link_sso(&self, link: &SsoLink, event: &NewEvent) -> StoreResult<()>;
    /// Replaces a user's password hash by a stronger one of the same password, if it is still
    /// `old_hash`; true when it was replaced. Ends no session.
    async fn rehash_password(
        &self,
        user: &UserId,
        old_hash: &str,
        new_hash: &str,
    ) -> StoreResult<bool>;

    /// Inserts the token unless its owner already has `max_active` live (pending or active)
    /// tokens of its type at `now`; the count and the insert are one transaction. With an
    /// idempotency key already used in its scope, nothing is created and the token of the first
    /// request is returned as `Replayed`.
    async fn create_token_within_limit(
        &self,
        token: &NewToken,
        max_active: u32,
        now: Timestamp,
        event: &NewEvent,
        idempotency: Option<&IdempotencyKey>,
    ) -> StoreResult<CreateOutcome>;
    /// Creates the replacement and moves the old token's expiry to `old_expires_at`, atomically.
    /// A token already rotated once is refused (`Conflict`): it has its successor. The old
    /// token's own predecessor, if still live at `now` (in its grace period), ends at `now`.
    async fn rotate_token(
        &self,
        old: &TokenId,
        old_expires_at: Timestamp,
        now: Timestamp,
        new: &NewToken,
        event: &NewEvent,
    ) -> StoreResult<TokenRecord>;
    async fn find_token(&self, id: &TokenId) -> StoreResult<Option<TokenRecord>>;
    async fn find_token_by_hash(&self, hash: &TokenHash) -> StoreResult<Option<TokenRecord>>;
    /// Up to `limit` tokens live at `now` with the SHA-256 they are found by, from where the
    /// previous page's `next` said (`None`: the start): pages for warming the verification
    /// cache at start, each one short read in the order the backend reads fastest (SQLite: the
    /// table's own order, not the id index's, which would visit the table's pages at random),
    /// so a million tokens are never held at once.
    async fn list_live_tokens_with_hashes(
        &self,
        now: Timestamp,
        after: Option<&str>,
        limit: u32,
    ) -> StoreResult<LiveTokens>;
    async fn list_tokens(&self, filter: &TokenFilter) -> StoreResult<Vec<TokenRecord>>;
    async fn rename_token(&self, id: &TokenId, name: &str, event: &NewEvent) -> StoreResult<()>;
    async fn set_token_allowed_ips(
        &self,
        id: &TokenId,
        cidrs: &[String],
        event: &NewEvent,
    ) -> StoreResult<()>;
    /// The sealed secret of a revealable token.
    async fn find_token_secret(&self, id: &TokenId) -> StoreResult<Option<Vec<u8>>>;
    /// The kill switch: revokes every live token of `owner` (of one type, if given) and returns
    /// their ids. With `with_oauth`, in the same transaction (and the same event), every OAuth
    /// grant of the user, or of every client of the organisation, and the organisation's
    /// clients' access tokens issued until `at`.
    async fn revoke_owner_tokens(
        &self,
        owner: &Owner,
        token_type: Option<&str>,
        with_oauth: bool,
        at: Timestamp,
        event: &NewEvent,
    ) -> StoreResult<Vec<TokenId>>;
    /// Remembers that a token was presented from `ip` and, the first time only, writes
    /// `event` (and its mails) in the same transaction; true the first time.
    async fn record_token_address(
        &self,
        id: &TokenId,
        ip: &str,
        at: Timestamp,
        event: &NewEvent,
    ) -> StoreResult<bool>;
    /// Revokes a token that is not yet revoked; returns whether it did.
    async fn revoke_token(
        &self,
        id: &TokenId,
        at: Timestamp,
        event: &NewEvent,
    ) -> StoreResult<bool>;
    /// Writes `last_used_at`/`last_used_ip` for a batch of tokens in one transaction.
    async fn record_token_usage(&self, usage: &[TokenUsage]) -> StoreResult<()>;
    /// Writes when client secrets last authenticated their apps (`(secret id, at)`), in one
    /// transaction; a time never moves back.
    async fn record_client_secret_usage(&self, usage: &[(String, Timestamp)]) -> StoreResult<()>;
    /// Inserts many tokens at once without limit checks or events: for seeding benchmarks.
    /// With `used_from`, each counts as used before from that address at that time.
    async fn insert_tokens_unchecked(
        &self,
        tokens: &[NewToken],
        used_from: Option<(&str, Timestamp)>,
    ) -> StoreResult<()>;

    async fn list_signing_keys(&self) -> StoreResult<Vec<StoredSigningKey>>;
    /// Adds a key; with `retire_others_at`, every other unretired key stops signing then.
    async fn insert_signing_key(
        &self,
        key: &StoredSigningKey,
        retire_others_at: Option<Timestamp>,
        event: &NewEvent,
    ) -> StoreResult<()>;
    /// Key ids that signed tokens still live at `now` (they stay published).
    async fn live_signing_kids(&self, now: Timestamp) -> StoreResult<Vec<String>>;

    /// Creates a client and, for a confidential one, its first secret, in one transaction.
    async fn create_client(
        &self,
        client: &OAuthClient,
        secret: Option<&NewClientSecret>,
        event: &NewEvent,
    ) -> StoreResult<()>;
    async fn find_client(&self, id: &str) -> StoreResult<Option<OAuthClient>>;
    async fn list_clients(&self, org: &OrgId) -> StoreResult<Vec<OAuthClient>>;
    async fn update_client(
        &self,
        id: &str,
        change: &ClientChange,
        event: &NewEvent,
    ) -> StoreResult<()>;
    /// Deletes a client (the record stays, marked deleted) and revokes its secrets.
    async fn delete_client(&self, id: &str, at: Timestamp, event: &NewEvent) -> StoreResult<bool>;
    /// Adds a secret unless the client already has `max_active` unrevoked ones.
    async fn add_client_secret_within_limit(
        &self,
        secret: &NewClientSecret,
        max_active: u32,
        event: &NewEvent,
    ) -> StoreResult<()>;
    async fn revoke_client_secret(
        &self,
        client_id: &str,
        secret_id: &str,
        at: Timestamp,
        event: &NewEvent,
    ) -> StoreResult<bool>;
    async fn list_client_secrets(&self, client_id: &str) -> StoreResult<Vec<ClientSecretRecord>>;
    /// The unrevoked secret with this hash, if any.
    async fn find_client_secret(&self, hash: &TokenHash)
    -> StoreResult<Option<ClientSecretRecord>>;
    /// Puts a JWT access token on the deny-list until it expires.
    async fn revoke_access_token(
        &self,
        jti: &str,
        expires_at: Timestamp,
        event: Option<&NewEvent>,
    ) -> StoreResult<()>;
    /// The deny-list at `now` (expired entries are dropped as a side effect).
    async fn list_revoked_access_tokens(&self, now: Timestamp) -> StoreResult<Vec<String>>;

    /// Stores a consent and its first authorization code, in one transaction.
    async fn create_grant_with_code(
        &self,
        grant: &OAuthGrant,
        code: &NewAuthCode,
        event: &NewEvent,
    ) -> StoreResult<()>;
    async fn find_grant(&self, id: &str) -> StoreResult<Option<OAuthGrant>>;
    /// A user's consents that are still live (not revoked), oldest first.
    async fn list_user_grants(&self, user: &UserId) -> StoreResult<Vec<OAuthGrant>>;
    /// A code, used or not, without changing it: every check is made on this before consuming.
    async fn find_auth_code(&self, hash: &TokenHash) -> StoreResult<Option<StoredAuthCode>>;
    /// Marks the code used (a conditional update: one caller wins, a loser reads `Reused`) if
    /// it is unused and unexpired at `now`, and stores the refresh token it produced, in one
    /// transaction.
    async fn consume_auth_code(
        &self,
        hash: &TokenHash,
        now: Timestamp,
        refresh: Option<&NewRefreshToken>,
    ) -> StoreResult<Consumed<NewAuthCode>>;
    /// The grant a refresh token belongs to, if the token exists (used or not).
    async fn find_refresh_grant(&self, hash: &TokenHash) -> StoreResult<Option<String>>;
    /// The redirect URIs of every live client: the CORS preflight of the token and revocation
    /// endpoints has no client yet, so it allows the origin of any of them (SPEC 3).
    async fn list_live_redirect_uris(&self) -> StoreResult<Vec<String>>;
    /// A refresh token, used or not, without changing it.
    async fn find_refresh_token(&self, hash: &TokenHash)
    -> StoreResult<Option<StoredRefreshToken>>;
    /// Marks the refresh token used (a conditional update: the loser of a race reads
    /// `Reused`) and stores its successor, in one transaction.
    async fn rotate_refresh_token(
        &self,
        hash: &TokenHash,
        now: Timestamp,
        next: &NewRefreshToken,
    ) -> StoreResult<Consumed<RefreshTokenRecord>>;
    /// Revokes a grant: its refresh tokens and access tokens stop working. Returns whether it did.
    async fn revoke_grant(&self, id: &str, at: Timestamp, event: &NewEvent) -> StoreResult<bool>;
    /// Ids of grants revoked whose access tokens may still be unexpired.
    async fn list_revoked_grants(&self, since: Timestamp) -> StoreResult<Vec<String>>;

    /// Up to `limit` unsent mails due at `now` and not leased to another worker, leased until
    /// `lease_until` in one statement, so two workers never take the same mail. The oldest
    /// are taken, but returned in no particular order (`UPDATE … RETURNING` keeps none).
    async fn claim_mails(
        &self,
        now: Timestamp,
        lease_until: Timestamp,
        limit: u32,
    ) -> StoreResult<Vec<OutboxMail>>;
    async fn mark_mail_sent(&self, id: &MailId, at: Timestamp) -> StoreResult<()>;
    /// Releases the lease and schedules the next try.
    async fn mark_mail_failed(
        &self,
        id: &MailId,
        next_attempt_at: Timestamp,
        error: &str,
    ) -> StoreResult<()>;
    /// Mails not yet sent.
    async fn count_unsent_mails(&self) -> StoreResult<u64>;
    /// Unrevoked, unexpired tokens owed an expiry notice at `now`, with the notice: the smallest
    /// of `days` (days before expiry) that the token has reached and that is shorter than its
    /// whole life, unless that notice or a later (smaller) one was recorded already.
    async fn list_tokens_due_expiry_notice(
        &self,
        now: Timestamp,
        days: &[u32],
        limit: u32,
    ) -> StoreResult<Vec<(TokenRecord, u32)>>;
    /// Notes that the `days`-before-expiry notice of a token is sent and writes its event (and
    /// mails), unless it was noted before; returns whether it was new.
    async fn record_expiry_notice(
        &self,
        token: &TokenId,
        days: u32,
        event: &NewEvent,
    ) -> StoreResult<bool>;
    /// The (token, address) pairs not seen before.
    async fn list_unseen_token_addresses(
        &self,
        pairs: &[(TokenId, String)],
    ) -> StoreResult<Vec<(TokenId, String)>>;
    /// How many addresses the token was first seen from at or after `since`.
    async fn count_token_addresses_since(&self, id: &TokenId, since: Timestamp)
    -> StoreResult<u64>;
    /// Records first uses from new addresses in one transaction; an address recorded meanwhile
    /// (another instance) is skipped with its event. Returns how many were new.
    async fn record_new_token_addresses(&self, found: &[NewTokenAddress]) -> StoreResult<u64>;
    async fn find_cancel_link(&self, hash: &TokenHash) -> StoreResult<Option<CancelLink>>;
    /// Marks the link used and revokes its token, atomically, if the link is unused and
    /// unexpired and the token still pending at `now`; returns whether it did.
    async fn use_cancel_link(
        &self,
        hash: &TokenHash,
        now: Timestamp,
        event: &NewEvent,
    ) -> StoreResult<bool>;

    /// Registers a serving instance (or refreshes its row).
    async fn register_instance(&self, instance: &Instance) -> StoreResult<()>;
    /// An instance is alive at `at` and has applied the change log up to `applied_change`.
    async fn heartbeat_instance(
        &self,
        id: &InstanceId,
        at: Timestamp,
        applied_change: i64,
    ) -> StoreResult<()>;
    async fn list_instances(&self) -> StoreResult<Vec<Instance>>;
    /// An instance that stopped, or every one not heard from since `before` (with `None`).
    async fn remove_instances(
        &self,
        id: Option<&InstanceId>,
        before: Option<Timestamp>,
    ) -> StoreResult<()>;

    /// An event that records something that changed nothing (a refused attempt).
    async fn insert_event(&self, event: &NewEvent) -> StoreResult<()>;
    async fn list_events(&self, filter: &EventFilter) -> StoreResult<Vec<Event>>;
}
