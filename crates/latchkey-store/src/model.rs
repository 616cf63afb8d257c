//! The records the store reads and writes. Plain data: no behaviour beyond conversions.

use latchkey_core::{
    Email, InstanceId, MailId, OrgId, Role, Timestamp, TokenHash, TokenId, TokenStatus, UserId,
};

#[derive(Debug, Clone)]
pub struct User {
    pub id: UserId,
    pub email: Email,
    /// An Argon2 PHC string, or [`NO_PASSWORD`] for someone who signs in elsewhere.
    pub password_hash: String,
    pub is_operator: bool,
    pub disabled: bool,
    pub api_tokens_enabled: bool,
    pub created_at: Timestamp,
    /// The identity provider's id for this person (SCIM `externalId`).
    pub external_id: Option<String>,
    /// The profile attributes kept for the identity provider (SCIM `name`, `displayName`,
    /// `emails`), as JSON; Latchkey itself does not use them.
    pub profile: Option<String>,
    /// Grows with every change (SCIM's `meta.version` and ETags).
    pub version: i64,
    /// Set when the person was deleted (by SCIM): the row stays for the audit log.
    pub deleted_at: Option<Timestamp>,
    /// Made by SCIM: the only people SCIM may see and change.
    pub provisioned: bool,
    /// When the record last changed (SCIM's `meta.lastModified`); `None` if never.
    pub updated_at: Option<Timestamp>,
}

/// The stored password hash of someone without a password (provisioned, signing in with
/// single sign-on): never a valid PHC string, so no password matches it.
pub const NO_PASSWORD: &str = "!";

#[derive(Debug, Clone)]
pub struct NewUser {
    pub id: UserId,
    pub email: Email,
    pub password_hash: String,
    pub is_operator: bool,
    pub created_at: Timestamp,
    pub external_id: Option<String>,
    pub profile: Option<String>,
    /// Provisioned as inactive.
    pub disabled: bool,
    /// Made by SCIM.
    pub provisioned: bool,
}

#[derive(Debug, Clone, Default)]
pub struct UserChange {
    pub disabled: Option<bool>,
    pub api_tokens_enabled: Option<bool>,
    pub is_operator: Option<bool>,
    pub password_hash: Option<String>,
    /// Deletes every session of the user in the same transaction. The service decides when
    /// (a disabled account, a new password); the store only does it.
    pub end_sessions: bool,
    pub email: Option<Email>,
    /// `Some(None)` clears it.
    pub external_id: Option<Option<String>>,
    /// `Some(None)` clears it.
    pub profile: Option<Option<String>>,
    /// Marks the user deleted and removes every membership, in the same transaction.
    pub deleted_at: Option<Timestamp>,
    /// Applies the change only to this version of the record ([`StoreError::Stale`]
    /// otherwise): a read-modify-write loses no concurrent change.
    pub expected_version: Option<i64>,
}

/// A password reset asked for by mail (SPEC 9): the code is single-use, expires, and is
/// stored only as its SHA-256.
#[derive(Debug, Clone)]
pub struct NewPasswordReset {
    pub code_hash: TokenHash,
    pub user_id: UserId,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
}

/// A credential the platform's own systems authenticate with (SPEC 9): a provisioning
/// credential for its SCIM client, an operator credential for its back office. The secret is
/// stored only as its SHA-256; each kind reaches only its own paths.
#[derive(Debug, Clone)]
pub struct PlatformCredential {
    pub id: String,
    pub kind: CredentialKind,
    pub name: String,
    pub created_at: Timestamp,
    pub revoked_at: Option<Timestamp>,
}

/// What a [`PlatformCredential`] opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialKind {
    /// `/scim/v2`.
    Provisioning,
    /// `/v1/admin`.
    Operator,
}

impl CredentialKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Provisioning => "provisioning",
            Self::Operator => "operator",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "provisioning" => Some(Self::Provisioning),
            "operator" => Some(Self::Operator),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Org {
    pub id: OrgId,
    pub name: String,
    pub features: Vec<String>,
    pub api_tokens_enabled: bool,
    pub created_at: Timestamp,
    /// The identity provider's id for it (SCIM Group `externalId`).
    pub external_id: Option<String>,
    /// Set when it was deleted (by SCIM): switched off and emptied, kept for the audit log.
    pub deleted_at: Option<Timestamp>,
    /// Made by SCIM: the only organisations SCIM may see and change.
    pub provisioned: bool,
}

#[derive(Debug, Clone)]
pub struct NewOrg {
    pub id: OrgId,
    pub name: String,
    pub features: Vec<String>,
    pub created_at: Timestamp,
    pub external_id: Option<String>,
    pub provisioned: bool,
}

#[derive(Debug, Clone, Default)]
pub struct OrgChange {
    pub add_features: Vec<String>,
    pub remove_features: Vec<String>,
    pub api_tokens_enabled: Option<bool>,
    pub name: Option<String>,
    /// `Some(None)` clears it.
    pub external_id: Option<Option<String>>,
    /// Marks it deleted and removes every membership, in the same transaction.
    pub deleted_at: Option<Timestamp>,
}

/// An organisation as seen by one of its members.
#[derive(Debug, Clone)]
pub struct Account {
    pub org_id: OrgId,
    pub org_name: String,
    pub role: Role,
    pub api_tokens_enabled: bool,
}

#[derive(Debug, Clone)]
pub struct Member {
    pub user_id: UserId,
    pub email: Email,
    pub role: Role,
    pub since: Timestamp,
}

/// A person's identity at the single-sign-on provider: its issuer and `sub`.
#[derive(Debug, Clone)]
pub struct SsoLink {
    pub issuer: String,
    pub subject: String,
    pub user_id: UserId,
    pub created_at: Timestamp,
}

#[derive(Debug, Clone)]
pub struct NewSession {
    pub id: String,
    pub token_hash: TokenHash,
    pub user_id: UserId,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    /// The version of the person's record the password was checked against: the session is
    /// opened only if the record is still at it (a password changed or reset, or the person
    /// disabled, in between refuses it with [`StoreError::Stale`](crate::StoreError::Stale)).
    pub user_version: i64,
}

#[derive(Debug, Clone)]
pub struct Session {
    pub id: String,
    pub user_id: UserId,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    /// When it was last used, to within a minute (the creation time until then).
    pub last_seen_at: Timestamp,
    /// When the person last confirmed who they are at the single-sign-on provider in this
    /// session (re-authentication before a sensitive action).
    pub reauth_at: Option<Timestamp>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Owner {
    User(UserId),
    Organisation(OrgId),
}

impl Owner {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::User(_) => "user",
            Self::Organisation(_) => "organisation",
        }
    }
    pub fn id(&self) -> &str {
        match self {
            Self::User(id) => id.as_str(),
            Self::Organisation(id) => id.as_str(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct NewToken {
    pub id: TokenId,
    pub token_hash: TokenHash,
    pub token_type: String,
    pub owner: Owner,
    pub name: String,
    pub hint: String,
    pub scopes: Vec<String>,
    pub created_at: Timestamp,
    pub active_from: Timestamp,
    pub expires_at: Option<Timestamp>,
    pub rotated_from: Option<TokenId>,
    pub ends_on_first_use: Option<TokenId>,
    /// AEAD ciphertext of the secret (types with reveal = "reauth" only).
    pub secret_ciphertext: Option<Vec<u8>>,
    /// CIDRs the token may be used from; empty means anywhere.
    pub allowed_ips: Vec<String>,
    /// The key that signed a JWT-format token.
    pub signing_kid: Option<String>,
    /// The SHA-256 of the cancel link's code, for a token created with an activation delay:
    /// stored with the token, usable until `active_from`.
    pub cancel_code_hash: Option<TokenHash>,
}

#[derive(Debug, Clone)]
pub struct TokenRecord {
    pub id: TokenId,
    pub token_type: String,
    pub owner: Owner,
    pub name: String,
    pub hint: String,
    pub scopes: Vec<String>,
    pub created_at: Timestamp,
    pub active_from: Timestamp,
    pub expires_at: Option<Timestamp>,
    pub revoked_at: Option<Timestamp>,
    pub last_used_at: Option<Timestamp>,
    pub last_used_ip: Option<String>,
    pub rotated_from: Option<TokenId>,
    pub ends_on_first_use: Option<TokenId>,
    pub allowed_ips: Vec<String>,
    pub is_revealable: bool,
    pub signing_kid: Option<String>,
}

impl TokenRecord {
    pub fn status(&self, now: Timestamp) -> TokenStatus {
        TokenStatus::at(now, self.active_from, self.expires_at, self.revoked_at)
    }
}

#[derive(Debug, Clone)]
pub struct TokenFilter {
    pub owner: Option<Owner>,
    pub token_type: Option<String>,
    pub limit: u32,
}

/// A page of live tokens with the SHA-256 each is found by (the verification cache's warm-up).
#[derive(Debug, Default)]
pub struct LiveTokens {
    pub tokens: Vec<([u8; 32], TokenRecord)>,
    /// Where the next page starts, opaque to the caller; `None` after the last page.
    pub next: Option<String>,
}

#[derive(Debug, Clone)]
pub struct TokenUsage {
    pub token_id: TokenId,
    pub at: Timestamp,
    pub ip: String,
}

/// Who did something: a user (by id), the operator CLI, or an anonymous caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    User(UserId),
    Operator,
    Anonymous,
    /// The platform's SCIM client or back office, by its credential.
    Credential(CredentialKind, String),
}

impl Actor {
    pub fn as_text(&self) -> String {
        match self {
            Self::User(id) => id.to_string(),
            Self::Operator => "operator".to_owned(),
            Self::Anonymous => "anonymous".to_owned(),
            Self::Credential(kind, id) => format!("{}:{id}", kind.as_str()),
        }
    }
}

/// An audit event, written in the same transaction as the change it records. Never holds a
/// secret: `details` is built from names and ids only.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub id: String,
    pub at: Timestamp,
    pub actor: String,
    pub action: String,
    pub subject_kind: String,
    pub subject_id: String,
    pub user_id: Option<UserId>,
    pub org_id: Option<OrgId>,
    pub ip: Option<String>,
    pub outcome: String,
    pub details: Option<String>,
    /// Mails that report the change, put in the outbox in the same transaction as the event.
    pub mails: Vec<NewMail>,
}

/// A notification waiting in the outbox. Plain text; never holds a secret.
#[derive(Debug, Clone)]
pub struct NewMail {
    pub id: MailId,
    pub recipient: Email,
    pub subject: String,
    pub body: String,
    /// The single-use part of the body (a cancel link's code), sealed under the master key;
    /// the body holds a placeholder for it, filled in at send time.
    pub sealed: Option<Vec<u8>>,
    pub created_at: Timestamp,
}

/// A mail taken from the outbox by a worker, leased to it until it reports back.
#[derive(Debug, Clone)]
pub struct OutboxMail {
    pub id: MailId,
    pub event_id: String,
    pub recipient: Email,
    pub subject: String,
    pub body: String,
    pub sealed: Option<Vec<u8>>,
    pub created_at: Timestamp,
    /// Tries so far, this one included.
    pub attempts: u32,
}

/// An address a token was first accepted from, with the event (and mails) that report it.
#[derive(Debug, Clone)]
pub struct NewTokenAddress {
    pub token_id: TokenId,
    pub ip: String,
    pub at: Timestamp,
    pub event: NewEvent,
}

/// A `latchkey serve` process registered in the database (SPEC 7): so that the kill switch
/// can wait until every live one has applied it, and `latchkey status` can list them.
#[derive(Debug, Clone)]
pub struct Instance {
    pub id: InstanceId,
    /// Where it listens.
    pub address: String,
    pub version: String,
    pub started_at: Timestamp,
    pub heartbeat_at: Timestamp,
    /// The last change of the log it has applied.
    pub applied_change: i64,
}

/// A cancel link as stored (the code itself is never stored).
#[derive(Debug, Clone)]
pub struct CancelLink {
    pub token_id: TokenId,
    pub expires_at: Timestamp,
    pub used_at: Option<Timestamp>,
}

#[derive(Debug, Clone)]
pub struct Event {
    pub seq: i64,
    pub id: String,
    pub at: Timestamp,
    pub actor: String,
    pub action: String,
    pub subject_kind: String,
    pub subject_id: String,
    pub org_id: Option<String>,
    pub ip: Option<String>,
    pub outcome: String,
    pub details: Option<String>,
}

#[derive(Debug, Clone)]
pub enum EventScope {
    User(UserId),
    Org(OrgId),
    /// The whole log, with the events that belong to no one (a refused sign-in for an unknown
    /// account): the operator's view.
    All,
}

#[derive(Debug, Clone)]
pub struct EventFilter {
    pub scope: EventScope,
    /// Only events older than this sequence number (the page cursor).
    pub before_seq: Option<i64>,
    pub limit: u32,
    /// Narrower: by kind, subject or actor (all when empty).
    pub matching: EventMatch,
}

/// What a list of events is narrowed to, each part when set: the action's start (`token.`,
/// `session.`; a kind of event), the subject's id (one token), the actor (one person).
#[derive(Debug, Clone, Default)]
pub struct EventMatch {
    pub action_prefix: Option<String>,
    pub subject_id: Option<String>,
    pub actor: Option<String>,
}

/// An `Idempotency-Key` and the scope it is unique in (the caller and the collection).
#[derive(Debug, Clone)]
pub struct IdempotencyKey {
    pub scope: String,
    pub key: String,
}

/// What a create did: made the token, or found the one a previous request with the same
/// idempotency key made.
#[derive(Debug, Clone)]
pub enum CreateOutcome {
    Created(TokenRecord),
    Replayed(TokenRecord),
}

#[derive(Debug, Clone)]
pub struct StoredSigningKey {
    pub kid: String,
    pub alg: String,
    /// PKCS#8 DER sealed under the master key.
    pub private_key: Vec<u8>,
    pub created_at: Timestamp,
    pub use_from: Timestamp,
    pub retired_at: Option<Timestamp>,
}

/// An OAuth2 client ("app") of an organisation.
#[derive(Debug, Clone)]
pub struct OAuthClient {
    pub id: String,
    pub org_id: OrgId,
    pub name: String,
    pub grant_types: Vec<String>,
    pub redirect_uris: Vec<String>,
    pub scopes: Vec<String>,
    pub is_confidential: bool,
    pub can_introspect: bool,
    pub created_at: Timestamp,
    pub deleted_at: Option<Timestamp>,
    /// Access tokens issued before this are refused (the kill switch).
    pub tokens_valid_after: Option<Timestamp>,
}

#[derive(Debug, Clone, Default)]
pub struct ClientChange {
    pub name: Option<String>,
    pub grant_types: Option<Vec<String>>,
    pub redirect_uris: Option<Vec<String>>,
    pub scopes: Option<Vec<String>>,
    pub can_introspect: Option<bool>,
}

#[derive(Debug, Clone)]
pub struct NewClientSecret {
    pub id: String,
    pub client_id: String,
    pub secret_hash: TokenHash,
    pub hint: String,
    pub created_at: Timestamp,
}

#[derive(Debug, Clone)]
pub struct ClientSecretRecord {
    pub id: String,
    pub client_id: String,
    pub hint: String,
    pub created_at: Timestamp,
    pub revoked_at: Option<Timestamp>,
    /// When it last authenticated its app (to ten minutes).
    pub last_used_at: Option<Timestamp>,
}

/// What one consent (authorization code grant) produced: codes, refresh tokens and access
/// tokens all carry its id, so revoking it refuses all of them.
#[derive(Debug, Clone)]
pub struct OAuthGrant {
    pub id: String,
    pub client_id: String,
    pub user_id: Option<UserId>,
    pub scopes: Vec<String>,
    pub created_at: Timestamp,
    pub revoked_at: Option<Timestamp>,
}

#[derive(Debug, Clone)]
pub struct NewAuthCode {
    pub code_hash: TokenHash,
    pub grant_id: String,
    pub client_id: String,
    pub user_id: UserId,
    pub redirect_uri: String,
    pub code_challenge: String,
    pub scopes: Vec<String>,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
}

/// An authorization code as stored, used or not: read before any check, so that a refused
/// request consumes nothing.
#[derive(Debug, Clone)]
pub struct StoredAuthCode {
    pub code: NewAuthCode,
    pub used_at: Option<Timestamp>,
}

/// What consuming a code (or a refresh token) found.
#[derive(Debug, Clone)]
pub enum Consumed<T> {
    /// Used now, for the first time.
    Fresh(T),
    /// Used before: the caller revokes its grant (a replay).
    Reused { grant_id: String },
    /// Unknown or expired.
    Invalid,
}

#[derive(Debug, Clone)]
pub struct NewRefreshToken {
    pub token_hash: TokenHash,
    pub grant_id: String,
    pub client_id: String,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
}

/// A refresh token as stored, used or not, with whether its grant is revoked.
#[derive(Debug, Clone)]
pub struct StoredRefreshToken {
    pub grant_id: String,
    pub client_id: String,
    pub expires_at: Timestamp,
    pub used_at: Option<Timestamp>,
    pub grant_revoked: bool,
}

#[derive(Debug, Clone)]
pub struct RefreshTokenRecord {
    pub grant_id: String,
    pub client_id: String,
    pub expires_at: Timestamp,
}
