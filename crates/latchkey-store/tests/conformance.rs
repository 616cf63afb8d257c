//! The store's conformance suite: stories told through the [`Store`] trait alone, so that the
//! same stories run unchanged on every backend (SQLite and PostgreSQL; the PostgreSQL stories need
//! `TEST_POSTGRES_URL`, which `scripts/test` sets, and fail without it).
//!
//! Each story is an `async fn story_…(store: Arc<dyn Store>)` that starts from an empty store and
//! asserts what a caller can see: what is found afterwards, which error a refused write gives,
//! that a refused write left no event behind, that every write's event reads back as written,
//! and, for the races the store exists to settle (`max_active`, the last admin, single-use codes
//! and links, refresh rotation, mail claiming, key rotation), that many tasks racing on a
//! multi-thread runtime get exactly one winner; and that the change log, read onwards by another
//! process while many write, misses nothing. `conformance_suite!` runs every story on one backend: a new backend
//! is a `fresh_…` function, a `Raw` arm and one line at the bottom of this file. A story that
//! shows a bug stays in the list, `#[ignore = "bug: …"]`, until the bug is fixed.
//!
//! Every model value is built by one small function near the top (`event`, `new_user`,
//! `new_token`, …): a field added to a model is fixed there, once.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::hash_map::RandomState;
use std::collections::{BTreeSet, HashSet};
use std::future::Future;
use std::hash::BuildHasher;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use latchkey_core::{
    ClientId, Email, EventId, MailId, OrgId, Prefix, Role, SecretId, SessionId, Timestamp,
    TokenHash, TokenId, TokenSecret, UserId, base62,
};
use latchkey_store::postgres::PgStore;
use latchkey_store::sqlite::SqliteStore;
use latchkey_store::{
    Change, ClientChange, Consumed, CreateOutcome, Event, EventFilter, EventMatch, EventScope,
    IdempotencyKey, NewAuthCode, NewClientSecret, NewEvent, NewMail, NewOrg, NewRefreshToken,
    NewSession, NewToken, NewTokenAddress, NewUser, OAuthClient, OAuthGrant, OrgChange, Owner,
    Store, StoreError, StoredSigningKey, TokenFilter, TokenUsage, UserChange,
};
use time::Duration;
use time::macros::datetime;
use tokio::sync::Barrier;

// ---------------------------------------------------------------------------------------------
// Time and randomness.

/// The instant every story starts from; everything else is an offset from it.
const T0: Timestamp = datetime!(2027-03-01 09:00 UTC);
const DAY: i64 = 86_400;

/// `T0` plus `secs` seconds.
fn at(secs: i64) -> Timestamp {
    T0 + Duration::seconds(secs)
}

/// Bytes for ids and secrets. The service draws them from the OS CSPRNG; a story only needs them
/// distinct, so a counter hashed under std's randomly keyed SipHash does, without a dependency
/// (which would change this crate's entry in `Cargo.lock`).
fn random<const N: usize>() -> [u8; N] {
    static DRAWN: AtomicU64 = AtomicU64::new(0);
    let n = DRAWN.fetch_add(1, Ordering::Relaxed);
    let keys = RandomState::new();
    let mut out = [0; N];
    for (i, chunk) in out.chunks_mut(8).enumerate() {
        let word = keys.hash_one((n, i)).to_le_bytes();
        chunk.copy_from_slice(&word[..chunk.len()]);
    }
    out
}

/// A token string of the service's shape (`<prefix>_<random><crc>`), as `mint` makes it.
fn secret(prefix: &str) -> TokenSecret {
    TokenSecret::generate(&Prefix::parse(prefix).unwrap(), random())
}

// ---------------------------------------------------------------------------------------------
// Builders: the only places that name every field of a model.

fn email(text: &str) -> Email {
    Email::parse(text).unwrap()
}

fn new_user(address: &str) -> NewUser {
    NewUser {
        id: UserId::from_random(random()),
        email: email(address),
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo".into(),
        is_operator: false,
        created_at: T0,
        external_id: None,
        profile: None,
        disabled: false,
        provisioned: false,
    }
}

fn new_org(name: &str, features: &[&str]) -> NewOrg {
    NewOrg {
        id: OrgId::from_random(random()),
        name: name.into(),
        features: features.iter().map(|f| (*f).to_owned()).collect(),
        created_at: T0,
        external_id: None,
        provisioned: false,
    }
}

/// The audit event of a change made by the operator at `T0`, about one subject, with no mail.
/// A story sets the rest with [`EventExt`].
fn event(action: &str, subject_kind: &str, subject_id: &str) -> NewEvent {
    NewEvent {
        id: EventId::from_random(random()).to_string(),
        at: T0,
        actor: "operator".into(),
        action: action.into(),
        subject_kind: subject_kind.into(),
        subject_id: subject_id.into(),
        user_id: None,
        org_id: None,
        ip: None,
        outcome: "success".into(),
        details: None,
        mails: Vec::new(),
    }
}

/// Field-by-field touches on an event, so that no story spells a whole `NewEvent`.
trait EventExt: Sized {
    fn of_user(self, user: &UserId) -> Self;
    fn of_org(self, org: &OrgId) -> Self;
    /// The user or the organisation that owns a token.
    fn of_owner(self, owner: &Owner) -> Self;
    fn when(self, at: Timestamp) -> Self;
    fn by(self, actor: &str, ip: Option<&str>) -> Self;
    fn outcome(self, outcome: &str, details: Option<&str>) -> Self;
    fn with_mail(self, mail: NewMail) -> Self;
}

impl EventExt for NewEvent {
    fn of_user(mut self, user: &UserId) -> Self {
        self.user_id = Some(user.clone());
        self
    }
    fn of_org(mut self, org: &OrgId) -> Self {
        self.org_id = Some(org.clone());
        self
    }
    fn of_owner(self, owner: &Owner) -> Self {
        match owner {
            Owner::User(u) => self.of_user(u),
            Owner::Organisation(o) => self.of_org(o),
        }
    }
    fn when(mut self, at: Timestamp) -> Self {
        self.at = at;
        self
    }
    fn by(mut self, actor: &str, ip: Option<&str>) -> Self {
        self.actor = actor.into();
        self.ip = ip.map(str::to_owned);
        self
    }
    fn outcome(mut self, outcome: &str, details: Option<&str>) -> Self {
        self.outcome = outcome.into();
        self.details = details.map(str::to_owned);
        self
    }
    fn with_mail(mut self, mail: NewMail) -> Self {
        self.mails.push(mail);
        self
    }
}

/// A notification as the service writes it: plain text, with the single-use part (if any)
/// sealed and a placeholder in the body.
fn new_mail(to: &Email, subject: &str, sealed: Option<Vec<u8>>) -> NewMail {
    NewMail {
        id: MailId::from_random(random()),
        recipient: to.clone(),
        subject: subject.into(),
        body: format!("{subject}\n\nNot you? https://latchkey.example/cancel/{{sealed}}\n"),
        sealed,
        created_at: T0,
    }
}

/// A live opaque token made at `T0` as the service's `mint` makes one: 90 days of life, a
/// sealed secret (revealable), an allowlist.
fn new_token(owner: &Owner, token_type: &str) -> (NewToken, TokenSecret) {
    let secret = secret("lkt");
    let token = NewToken {
        id: TokenId::from_random(random()),
        token_hash: secret.hash(),
        token_type: token_type.into(),
        owner: owner.clone(),
        name: format!("{token_type} token"),
        hint: secret.hint(),
        scopes: vec!["read".into(), "write".into()],
        created_at: T0,
        active_from: T0,
        expires_at: Some(at(90 * DAY)),
        rotated_from: None,
        ends_on_first_use: None,
        secret_ciphertext: Some(random::<48>().to_vec()),
        allowed_ips: vec!["10.0.0.0/8".into(), "192.168.1.7/32".into()],
        signing_kid: None,
        cancel_code_hash: None,
    };
    (token, secret)
}

/// The event of creating or rotating `token`, recorded against its owner.
fn token_event(action: &str, token: &NewToken) -> NewEvent {
    event(action, "token", token.id.as_str()).of_owner(&token.owner)
}

fn new_client(org: &OrgId) -> OAuthClient {
    OAuthClient {
        id: ClientId::from_random(random()).to_string(),
        org_id: org.clone(),
        name: "Dashboard".into(),
        grant_types: vec!["authorization_code".into(), "refresh_token".into()],
        redirect_uris: vec!["https://app.example.com/callback".into()],
        scopes: vec!["read".into(), "write".into()],
        is_confidential: true,
        can_introspect: false,
        created_at: T0,
        deleted_at: None,
        tokens_valid_after: None,
    }
}

fn new_client_secret(client: &OAuthClient) -> NewClientSecret {
    let secret = secret("lkcs");
    NewClientSecret {
        id: SecretId::from_random(random()).to_string(),
        client_id: client.id.clone(),
        secret_hash: secret.hash(),
        hint: secret.hint(),
        created_at: T0,
    }
}

/// A consent, with an id made as `authorize.rs` makes it (`grt_` and 22 base62 characters).
fn new_grant(client: &OAuthClient, user: &UserId) -> OAuthGrant {
    OAuthGrant {
        id: format!("grt_{}", base62::encode_bytes(&random::<16>(), 22).unwrap()),
        client_id: client.id.clone(),
        user_id: Some(user.clone()),
        scopes: vec!["read".into()],
        created_at: T0,
        revoked_at: None,
    }
}

/// An authorization code of `grant`, usable until `expires_at`.
fn new_code(grant: &OAuthGrant, expires_at: Timestamp) -> NewAuthCode {
    NewAuthCode {
        code_hash: secret("lkac").hash(),
        grant_id: grant.id.clone(),
        client_id: grant.client_id.clone(),
        user_id: grant.user_id.clone().unwrap(),
        redirect_uri: "https://app.example.com/callback".into(),
        code_challenge: "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM".into(),
        scopes: grant.scopes.clone(),
        created_at: T0,
        expires_at,
    }
}

/// A refresh token of `grant` made at `created_at`, for 30 days.
fn new_refresh(grant: &OAuthGrant, created_at: Timestamp) -> NewRefreshToken {
    NewRefreshToken {
        token_hash: secret("lkrt").hash(),
        grant_id: grant.id.clone(),
        client_id: grant.client_id.clone(),
        created_at,
        expires_at: created_at + Duration::days(30),
    }
}

fn idempotency(scope: &str, key: &str) -> IdempotencyKey {
    IdempotencyKey {
        scope: scope.into(),
        key: key.into(),
    }
}

fn owner_tokens(owner: &Owner) -> TokenFilter {
    TokenFilter {
        owner: Some(owner.clone()),
        token_type: None,
        limit: 1000,
    }
}

fn events_of(scope: EventScope) -> EventFilter {
    EventFilter {
        scope,
        before_seq: None,
        limit: 10_000,
        matching: EventMatch::default(),
    }
}

// ---------------------------------------------------------------------------------------------
// Story helpers.

/// Stores a user made by [`new_user`], with its event.
async fn user(store: &dyn Store, address: &str) -> NewUser {
    let user = new_user(address);
    let ev = event("user.created", "user", user.id.as_str()).of_user(&user.id);
    store.create_user(&user, &ev).await.unwrap();
    user
}

/// Stores an organisation with `admin` as its admin.
async fn org_with_admin(store: &dyn Store, name: &str, admin: &UserId) -> NewOrg {
    let org = new_org(name, &[]);
    let ev = event("org.created", "organisation", org.id.as_str()).of_org(&org.id);
    store.create_org(&org, &ev, None).await.unwrap();
    let ev = event("org.member_added", "user", admin.as_str())
        .of_org(&org.id)
        .of_user(admin);
    store
        .upsert_membership(&org.id, admin, Role::Admin, T0, true, &ev)
        .await
        .unwrap();
    org
}

/// Stores `token` (no limit in the way) and returns its record.
async fn stored(store: &dyn Store, token: &NewToken) -> latchkey_store::TokenRecord {
    let ev = token_event("token.created", token);
    match store
        .create_token_within_limit(token, 100, T0, &ev, None)
        .await
        .unwrap()
    {
        CreateOutcome::Created(record) => record,
        CreateOutcome::Replayed(_) => panic!("a create without a key cannot be a replay"),
    }
}

async fn all_events(store: &dyn Store) -> Vec<Event> {
    store
        .list_events(&events_of(EventScope::All))
        .await
        .unwrap()
}

async fn count_action(store: &dyn Store, action: &str) -> usize {
    all_events(store)
        .await
        .iter()
        .filter(|e| e.action == action)
        .count()
}

/// The event stored under `id`.
async fn logged(store: &dyn Store, id: &str) -> Event {
    all_events(store)
        .await
        .into_iter()
        .find(|e| e.id == id)
        .unwrap_or_else(|| panic!("event {id} was not written"))
}

/// `written` was stored, and reads back with every field as written (the user, which `Event`
/// does not carry, through the user's view of the log).
async fn assert_logged(store: &dyn Store, written: &NewEvent) {
    let found = logged(store, &written.id).await;
    assert_eq!(found.at, written.at, "{}: at", written.action);
    assert_eq!(found.actor, written.actor, "{}: actor", written.action);
    assert_eq!(found.action, written.action);
    assert_eq!(
        found.subject_kind, written.subject_kind,
        "{}",
        written.action
    );
    assert_eq!(found.subject_id, written.subject_id, "{}", written.action);
    assert_eq!(
        found.org_id,
        written.org_id.as_ref().map(OrgId::to_string),
        "{}: org",
        written.action
    );
    assert_eq!(found.ip, written.ip, "{}: ip", written.action);
    assert_eq!(
        found.outcome, written.outcome,
        "{}: outcome",
        written.action
    );
    assert_eq!(
        found.details, written.details,
        "{}: details",
        written.action
    );
    if let Some(user) = &written.user_id {
        let theirs = store
            .list_events(&events_of(EventScope::User(user.clone())))
            .await
            .unwrap();
        assert!(
            theirs.iter().any(|e| e.id == written.id),
            "{}: not in its user's log",
            written.action
        );
    }
}

/// Runs `n` tasks at once on the multi-thread runtime, released together by a barrier so that
/// they really race, and returns each one's result by its index.
async fn race<T, Fut>(n: usize, task: impl Fn(usize) -> Fut) -> Vec<T>
where
    Fut: Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let start = Arc::new(Barrier::new(n));
    let handles: Vec<_> = (0..n)
        .map(|i| {
            let work = task(i);
            let start = Arc::clone(&start);
            tokio::spawn(async move {
                start.wait().await;
                work.await
            })
        })
        .collect();
    let mut results = Vec::with_capacity(n);
    for handle in handles {
        results.push(handle.await.unwrap());
    }
    results
}

// ---------------------------------------------------------------------------------------------
// Stories.

/// The platform's identities (SPEC 9): a provisioned user with an external id, a profile and a
/// switched-off start; found by the external id (unique); every SCIM field changed, set and
/// cleared, the version growing each time; a deletion that frees nothing but hides the user,
/// ends the memberships (in the change log) and refuses later changes; and the provisioning
/// credentials, found only by the hash of a live one.
async fn story_provisioning(store: Arc<dyn Store>) {
    let store = &*store;
    let mut ada = new_user("ada@example.com");
    ada.external_id = Some("00u-ada".into());
    ada.profile = Some(r#"{"name":{"givenName":"Ada"}}"#.into());
    ada.disabled = true;
    ada.provisioned = true;
    let ev = event("user.created", "user", ada.id.as_str()).of_user(&ada.id);
    assert!(
        !store.has_users().await.unwrap(),
        "a fresh store has no one"
    );
    let made = store.create_user(&ada, &ev).await.unwrap();
    assert!(store.has_users().await.unwrap());
    assert!(made.disabled && made.version == 1 && made.deleted_at.is_none());
    let found = store
        .find_user_by_external_id("00u-ada")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.id, ada.id);
    assert_eq!(found.profile, ada.profile);
    assert!(found.disabled);
    assert_eq!(found.version, 1);
    assert!(
        store
            .find_user_by_external_id("00U-ADA")
            .await
            .unwrap()
            .is_none()
    );

    // The external id is unique.
    let mut twin = new_user("twin@example.com");
    twin.external_id = Some("00u-ada".into());
    let ev = event("user.created", "user", twin.id.as_str()).of_user(&twin.id);
    let err = store.create_user(&twin, &ev).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    // Someone the CLI made is not SCIM's.
    let bob = user(store, "bob@example.com").await;
    assert_eq!(store.count_provisioned_users().await.unwrap(), 1);
    let mut cid = new_user("cid@example.com");
    cid.provisioned = true;
    let ev = event("user.created", "user", cid.id.as_str()).of_user(&cid.id);
    store.create_user(&cid, &ev).await.unwrap();
    assert_eq!(store.count_provisioned_users().await.unwrap(), 2);

    let ev = event("user.updated", "user", ada.id.as_str()).of_user(&ada.id);
    let changed = store
        .update_user(
            &ada.id,
            &UserChange {
                disabled: Some(false),
                email: Some(email("ada.l@example.com")),
                external_id: Some(Some("00u-ada-2".into())),
                profile: Some(None),
                ..UserChange::default()
            },
            &ev,
        )
        .await
        .unwrap();
    assert_eq!(changed.email, email("ada.l@example.com"));
    assert_eq!(changed.external_id.as_deref(), Some("00u-ada-2"));
    assert!(changed.profile.is_none() && !changed.disabled);
    assert_eq!(changed.version, 2);
    assert_eq!(changed.updated_at, Some(T0));
    // A change made at a version that is no longer the record's is stale, and changes nothing.
    let ev = event("user.updated", "user", ada.id.as_str()).of_user(&ada.id);
    let err = store
        .update_user(
            &ada.id,
            &UserChange {
                disabled: Some(true),
                expected_version: Some(1),
                ..UserChange::default()
            },
            &ev,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Stale(_)), "{err:?}");
    assert!(!store.find_user(&ada.id).await.unwrap().unwrap().disabled);
    // Another change leaves what it does not name.
    let ev = event("user.updated", "user", ada.id.as_str()).of_user(&ada.id);
    let changed = store
        .update_user(
            &ada.id,
            &UserChange {
                external_id: Some(None),
                expected_version: Some(2),
                ..UserChange::default()
            },
            &ev,
        )
        .await
        .unwrap();
    assert!(changed.external_id.is_none());
    assert_eq!(changed.email, email("ada.l@example.com"));
    assert_eq!(changed.version, 3);
    // An email someone else has is a conflict, and changes nothing.
    let ev = event("user.updated", "user", ada.id.as_str()).of_user(&ada.id);
    let err = store
        .update_user(
            &ada.id,
            &UserChange {
                email: Some(bob.email.clone()),
                ..UserChange::default()
            },
            &ev,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    assert_eq!(store.find_user(&ada.id).await.unwrap().unwrap().version, 3);

    let listed = store.list_provisioned_users(0, 10).await.unwrap();
    assert_eq!(listed.len(), 2);
    assert!(listed.iter().all(|u| u.provisioned && u.id != bob.id));
    let page: Vec<_> = store.list_provisioned_users(1, 10).await.unwrap();
    assert_eq!(page.len(), 1);
    assert_eq!(page[0].id, listed[1].id);

    // Deleting: out of its organisation (in the change log), out of lists, no more changes.
    let org = org_with_admin(store, "Acme", &ada.id).await;
    let before = store.latest_change().await.unwrap();
    let ev = event("user.deleted", "user", ada.id.as_str()).of_user(&ada.id);
    store
        .update_user(
            &ada.id,
            &UserChange {
                disabled: Some(true),
                email: Some(email("deleted@deleted.invalid")),
                deleted_at: Some(T0),
                end_sessions: true,
                ..UserChange::default()
            },
            &ev,
        )
        .await
        .unwrap();
    assert!(store.list_user_accounts(&ada.id).await.unwrap().is_empty());
    assert!(store.list_org_members(&org.id).await.unwrap().is_empty());
    let log = store.list_changes_since(before, 100).await.unwrap();
    assert!(
        log.iter()
            .any(|(_, c)| *c == Change::Membership(org.id.clone(), ada.id.clone())),
        "{log:?}"
    );
    assert_eq!(store.count_provisioned_users().await.unwrap(), 1);
    assert_eq!(store.list_provisioned_users(0, 10).await.unwrap().len(), 1);
    let gone = store.find_user(&ada.id).await.unwrap().unwrap();
    assert_eq!(gone.deleted_at, Some(T0));
    let ev = event("user.updated", "user", ada.id.as_str()).of_user(&ada.id);
    let err = store
        .update_user(&ada.id, &UserChange::default(), &ev)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");

    // Provisioning credentials.
    let credential = latchkey_store::PlatformCredential {
        id: "prov_1".into(),
        kind: latchkey_store::CredentialKind::Provisioning,
        name: "Okta".into(),
        created_at: T0,
        revoked_at: None,
    };
    let hash = TokenSecret::hash_of("lkscim_secret");
    let ev = event("credential.created", "provisioning", "prov_1");
    store
        .create_platform_credential(&credential, &hash, &ev)
        .await
        .unwrap();
    assert_logged(store, &ev).await;
    let found = store
        .find_platform_credential(&hash)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((found.id.as_str(), found.name.as_str()), ("prov_1", "Okta"));
    assert!(
        store
            .find_platform_credential(&TokenSecret::hash_of("lkscim_other"))
            .await
            .unwrap()
            .is_none()
    );
    use latchkey_store::CredentialKind;
    assert_eq!(found.kind, CredentialKind::Provisioning);
    // Revoked only as what it is.
    let ev = event("credential.revoked", "operator", "prov_1");
    let revoked = store
        .revoke_platform_credential("prov_1", CredentialKind::Operator, T0, &ev)
        .await
        .unwrap();
    assert!(!revoked);
    let ev = event("credential.revoked", "provisioning", "prov_1");
    let revoked = store
        .revoke_platform_credential("prov_1", CredentialKind::Provisioning, T0, &ev)
        .await
        .unwrap();
    assert!(revoked);
    let ev2 = event("credential.revoked", "provisioning", "prov_1");
    let again = store
        .revoke_platform_credential("prov_1", CredentialKind::Provisioning, T0, &ev2)
        .await
        .unwrap();
    assert!(!again);
    assert!(
        store
            .find_platform_credential(&hash)
            .await
            .unwrap()
            .is_none()
    );
    let all = store.list_platform_credentials().await.unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].revoked_at, Some(T0));

    // An organisation SCIM made: found by its external id (unique); deleted, it is switched
    // off, emptied (in the change log), out of the list, and changes no more.
    let mut group = new_org("Provisioned", &[]);
    group.external_id = Some("grp-1".into());
    group.provisioned = true;
    let ev = event("org.created", "organisation", group.id.as_str()).of_org(&group.id);
    let made = store.create_org(&group, &ev, None).await.unwrap();
    assert!(made.provisioned && made.external_id.as_deref() == Some("grp-1"));
    let found = store
        .find_org_by_external_id("grp-1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.id, group.id);
    assert!(found.provisioned && found.deleted_at.is_none());
    let mut twin = new_org("Twin", &[]);
    twin.external_id = Some("grp-1".into());
    let ev = event("org.created", "organisation", twin.id.as_str()).of_org(&twin.id);
    let err = store.create_org(&twin, &ev, None).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    let ev = event("member.set", "user", cid.id.as_str()).of_org(&group.id);
    store
        .upsert_membership(&group.id, &cid.id, Role::Member, T0, false, &ev)
        .await
        .unwrap();
    let before = store.latest_change().await.unwrap();
    let ev = event("org.deleted", "organisation", group.id.as_str()).of_org(&group.id);
    let gone = store
        .update_org(
            &group.id,
            &OrgChange {
                api_tokens_enabled: Some(false),
                external_id: Some(None),
                deleted_at: Some(T0),
                ..OrgChange::default()
            },
            &ev,
        )
        .await
        .unwrap();
    assert!(!gone.api_tokens_enabled && gone.deleted_at == Some(T0));
    assert!(gone.external_id.is_none());
    assert!(store.list_org_members(&group.id).await.unwrap().is_empty());
    let log = store.list_changes_since(before, 100).await.unwrap();
    assert!(
        log.iter()
            .any(|(_, c)| *c == Change::Membership(group.id.clone(), cid.id.clone())),
        "{log:?}"
    );
    assert!(
        store
            .list_orgs()
            .await
            .unwrap()
            .iter()
            .all(|o| o.id != group.id)
    );
    assert!(
        store
            .find_org_by_external_id("grp-1")
            .await
            .unwrap()
            .is_none()
    );
    let ev = event("org.updated", "organisation", group.id.as_str()).of_org(&group.id);
    let err = store
        .update_org(&group.id, &OrgChange::default(), &ev)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
}

/// Password resets (SPEC 9) and one's own sessions and consents: a reset code works once,
/// before it expires, for a live person; using it uses up every other code of the person,
/// replaces the hash, ends every session and logs the event as the person's; a person's
/// sessions are listed newest first.
async fn story_password_resets(store: Arc<dyn Store>) {
    let s = &*store;
    let ada = user(s, "ada@example.com").await;
    let mut sessions = Vec::new();
    for n in 0..2 {
        let session = NewSession {
            id: SessionId::from_random(random()).to_string(),
            token_hash: secret("lkses").hash(),
            user_id: ada.id.clone(),
            created_at: at(n),
            user_version: 1,
            expires_at: at(DAY),
        };
        let ev = event("session.created", "session", &session.id).of_user(&ada.id);
        s.create_session(&session, &ev).await.unwrap();
        sessions.push(session.id);
    }
    let listed = s.list_user_sessions(&ada.id, at(10)).await.unwrap();
    let ids: Vec<&str> = listed.iter().map(|x| x.id.as_str()).collect();
    assert_eq!(
        ids,
        [sessions[1].as_str(), sessions[0].as_str()],
        "newest first"
    );
    assert!(
        s.list_user_sessions(&ada.id, at(DAY))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(s.list_user_grants(&ada.id).await.unwrap().is_empty());

    let codes: Vec<TokenHash> = (0..2).map(|_| secret("lkrst").hash()).collect();
    for code in &codes {
        let reset = latchkey_store::NewPasswordReset {
            code_hash: *code,
            user_id: ada.id.clone(),
            created_at: T0,
            expires_at: at(1_800),
        };
        let ev = event("user.password_reset_requested", "user", ada.id.as_str()).of_user(&ada.id);
        s.create_password_reset(&reset, &ev).await.unwrap();
    }
    // Expired: nothing happens.
    let ev = event("user.password_reset", "user", "");
    assert!(
        s.complete_password_reset(&codes[0], at(1_800), "$argon2id$new", &ev)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        s.list_user_sessions(&ada.id, at(10)).await.unwrap().len(),
        2
    );
    let ev = event("user.password_reset", "user", "");
    let done = s
        .complete_password_reset(&codes[0], at(60), "$argon2id$new", &ev)
        .await
        .unwrap();
    assert_eq!(done, Some(ada.id.clone()));
    let logged = logged(s, &ev.id).await;
    assert_eq!(logged.subject_id, ada.id.to_string());
    let found = s.find_user(&ada.id).await.unwrap().unwrap();
    assert_eq!(found.password_hash, "$argon2id$new");
    assert!(
        s.list_user_sessions(&ada.id, at(60))
            .await
            .unwrap()
            .is_empty()
    );
    // Used, and the other code with it.
    for code in &codes {
        let ev = event("user.password_reset", "user", "");
        assert!(
            s.complete_password_reset(code, at(61), "$argon2id$again", &ev)
                .await
                .unwrap()
                .is_none()
        );
    }
    assert_eq!(
        s.find_user(&ada.id).await.unwrap().unwrap().password_hash,
        "$argon2id$new"
    );

    // A sign-in that checked the password before the reset opens no session.
    let late = NewSession {
        id: SessionId::from_random(random()).to_string(),
        token_hash: secret("lkses").hash(),
        user_id: ada.id.clone(),
        created_at: at(62),
        user_version: 1,
        expires_at: at(DAY),
    };
    let ev = event("session.login", "session", &late.id).of_user(&ada.id);
    let err = s.create_session(&late, &ev).await.unwrap_err();
    assert!(matches!(err, StoreError::Stale(_)), "{err:?}");
    assert!(
        s.list_user_sessions(&ada.id, at(62))
            .await
            .unwrap()
            .is_empty()
    );

    // A password changed another way uses up the live codes too.
    let code = secret("lkrst").hash();
    let reset = latchkey_store::NewPasswordReset {
        code_hash: code,
        user_id: ada.id.clone(),
        created_at: at(100),
        expires_at: at(1_900),
    };
    let ev = event("user.password_reset_requested", "user", ada.id.as_str()).of_user(&ada.id);
    s.create_password_reset(&reset, &ev).await.unwrap();
    assert!(
        s.find_live_password_reset(&code, at(101))
            .await
            .unwrap()
            .is_some()
    );
    let ev = event("user.password_changed", "user", ada.id.as_str()).of_user(&ada.id);
    s.update_user(
        &ada.id,
        &UserChange {
            password_hash: Some("$argon2id$other".into()),
            end_sessions: true,
            ..UserChange::default()
        },
        &ev,
    )
    .await
    .unwrap();
    assert!(
        s.find_live_password_reset(&code, at(102))
            .await
            .unwrap()
            .is_none()
    );
}

/// Single sign-on's identities and a session's confirmation: one identity per person and
/// issuer, a live person's never taken, a deleted person's given way; `reauth_at` read back.
async fn story_sso_links(store: Arc<dyn Store>) {
    let s = &*store;
    let ada = user(s, "ada@example.com").await;
    let bob = user(s, "bob@example.com").await;
    let link = |user: &UserId, subject: &str, issuer: &str| latchkey_store::SsoLink {
        issuer: issuer.into(),
        subject: subject.into(),
        user_id: user.clone(),
        created_at: T0,
    };
    let idp = "https://idp.example";
    assert_eq!(s.find_sso_link(idp, "ada-sub").await.unwrap(), None);
    let ev = event("user.sso_linked", "user", ada.id.as_str()).of_user(&ada.id);
    s.link_sso(&link(&ada.id, "ada-sub", idp), &ev)
        .await
        .unwrap();
    assert_logged(s, &ev).await;
    assert_eq!(
        s.find_sso_link(idp, "ada-sub").await.unwrap(),
        Some(ada.id.clone())
    );
    assert_eq!(
        s.find_sso_link("https://other.example", "ada-sub")
            .await
            .unwrap(),
        None
    );

    // Taken by a live person; a second identity at the same issuer: conflicts, nothing logged.
    for (who, subject) in [(&bob.id, "ada-sub"), (&ada.id, "ada-second-sub")] {
        let ev = event("user.sso_linked", "user", who.as_str()).of_user(who);
        let err = s.link_sso(&link(who, subject, idp), &ev).await.unwrap_err();
        assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
        assert!(all_events(s).await.iter().all(|e| e.id != ev.id));
    }
    // Another issuer is another identity.
    let ev = event("user.sso_linked", "user", ada.id.as_str()).of_user(&ada.id);
    s.link_sso(&link(&ada.id, "ada-sub", "https://other.example"), &ev)
        .await
        .unwrap();

    // Ada deleted: her identity is nobody's, and can be linked to someone else.
    let ev = event("user.deleted", "user", ada.id.as_str()).of_user(&ada.id);
    s.update_user(
        &ada.id,
        &UserChange {
            disabled: Some(true),
            email: Some(email("deleted@deleted.invalid")),
            deleted_at: Some(T0),
            end_sessions: true,
            ..UserChange::default()
        },
        &ev,
    )
    .await
    .unwrap();
    assert_eq!(s.find_sso_link(idp, "ada-sub").await.unwrap(), None);
    let ev = event("user.sso_linked", "user", bob.id.as_str()).of_user(&bob.id);
    s.link_sso(&link(&bob.id, "ada-sub", idp), &ev)
        .await
        .unwrap();
    assert_eq!(
        s.find_sso_link(idp, "ada-sub").await.unwrap(),
        Some(bob.id.clone())
    );

    // A session's confirmation at the provider.
    let token = secret("lkses");
    let session = NewSession {
        id: SessionId::from_random(random()).to_string(),
        token_hash: token.hash(),
        user_id: bob.id.clone(),
        created_at: T0,
        user_version: 1,
        expires_at: at(DAY),
    };
    let ev = event("session.login", "session", &session.id).of_user(&bob.id);
    s.create_session(&session, &ev).await.unwrap();
    let found = s.find_session(&token.hash(), at(1)).await.unwrap().unwrap();
    assert_eq!(found.reauth_at, None);
    let ev = event("session.reauthenticated", "session", &session.id).of_user(&bob.id);
    s.mark_session_reauthenticated(&session.id, at(30), &ev)
        .await
        .unwrap();
    assert_logged(s, &ev).await;
    let found = s
        .find_session(&token.hash(), at(31))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.reauth_at, Some(at(30)));
    let ev = event("session.reauthenticated", "session", "gone").of_user(&bob.id);
    let err = s
        .mark_session_reauthenticated("gone", at(40), &ev)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
}

/// Users: created, found by id and by email, a second account on one address refused, every
/// switch of `update_user` applied alone.
async fn story_users(store: Arc<dyn Store>) {
    let store = &*store;
    let ada = new_user("ada@example.com");
    let created = event("user.created", "user", ada.id.as_str())
        .of_user(&ada.id)
        .by("anonymous", Some("203.0.113.9"));
    let user = store.create_user(&ada, &created).await.unwrap();
    assert_eq!(user.id, ada.id);
    assert_eq!(user.email, ada.email);
    assert!(!user.disabled && user.api_tokens_enabled && !user.is_operator);
    assert_logged(store, &created).await;

    let found = store.find_user(&ada.id).await.unwrap().unwrap();
    assert_eq!(found.email, ada.email);
    assert_eq!(found.password_hash, ada.password_hash);
    assert_eq!(found.created_at, T0);
    assert!(!found.disabled && found.api_tokens_enabled && !found.is_operator);
    let by_email = store.find_user_by_email(&ada.email).await.unwrap().unwrap();
    assert_eq!(by_email.id, ada.id);
    assert!(
        store
            .find_user_by_email(&email("nobody@example.com"))
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .find_user(&UserId::from_random(random()))
            .await
            .unwrap()
            .is_none()
    );

    // The same address again, under a new id: refused, and nothing of it is written.
    let twin = new_user("ada@example.com");
    let twin_event = event("user.created", "user", twin.id.as_str()).of_user(&twin.id);
    let err = store.create_user(&twin, &twin_event).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    assert!(store.find_user(&twin.id).await.unwrap().is_none());
    assert_eq!(count_action(store, "user.created").await, 1);

    // Each switch alone; the others keep their value.
    // What the user must look like after each step.
    type Expected = fn(&latchkey_store::User) -> bool;
    let steps: [(UserChange, Expected); 6] = [
        (
            UserChange {
                disabled: Some(true),
                ..UserChange::default()
            },
            |u| u.disabled && u.api_tokens_enabled && !u.is_operator,
        ),
        (
            UserChange {
                api_tokens_enabled: Some(false),
                ..UserChange::default()
            },
            |u| u.disabled && !u.api_tokens_enabled && !u.is_operator,
        ),
        (
            UserChange {
                is_operator: Some(true),
                ..UserChange::default()
            },
            |u| u.disabled && !u.api_tokens_enabled && u.is_operator,
        ),
        (
            UserChange {
                disabled: Some(false),
                api_tokens_enabled: Some(true),
                ..UserChange::default()
            },
            |u| !u.disabled && u.api_tokens_enabled && u.is_operator,
        ),
        (
            UserChange {
                password_hash: Some("$argon2id$new".into()),
                ..UserChange::default()
            },
            |u| u.password_hash == "$argon2id$new" && !u.disabled && u.is_operator,
        ),
        (UserChange::default(), |u| {
            u.password_hash == "$argon2id$new" && !u.disabled && u.api_tokens_enabled
        }),
    ];
    for (i, (change, expected)) in steps.iter().enumerate() {
        let ev = event("user.updated", "user", ada.id.as_str())
            .of_user(&ada.id)
            .when(at(i64::try_from(i).unwrap() + 1));
        let returned = store.update_user(&ada.id, change, &ev).await.unwrap();
        assert!(expected(&returned), "step {i}: returned {returned:?}");
        let found = store.find_user(&ada.id).await.unwrap().unwrap();
        assert!(expected(&found), "step {i}: found {found:?}");
        assert_eq!(found.email, ada.email);
        assert_logged(store, &ev).await;
    }

    let ghost = UserId::from_random(random());
    let ev = event("user.updated", "user", ghost.as_str());
    let err = store
        .update_user(
            &ghost,
            &UserChange {
                disabled: Some(true),
                ..UserChange::default()
            },
            &ev,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
    assert!(all_events(store).await.iter().all(|e| e.id != ev.id));
}

/// Organisations and memberships: created with a first token (atomically), updated, listed;
/// roles upserted; the last admin kept; memberships deleted.
async fn story_orgs_and_memberships(store: Arc<dyn Store>) {
    let s = &*store;
    let ada = user(s, "ada@example.com").await;
    let bob = user(s, "bob@example.com").await;

    let acme = new_org("Acme", &["sso", "audit", "sso"]);
    let org_event = event("org.created", "organisation", acme.id.as_str()).of_org(&acme.id);
    let owner = Owner::Organisation(acme.id.clone());
    let (first, first_secret) = new_token(&owner, "ci");
    let first_event = token_event("token.created", &first);
    let org = s
        .create_org(&acme, &org_event, Some((&first, &first_event)))
        .await
        .unwrap();
    assert_eq!(org.id, acme.id);
    assert_eq!(org.name, "Acme");
    assert!(org.api_tokens_enabled);
    let features = |v: &[String]| v.iter().cloned().collect::<BTreeSet<_>>();
    let expected: BTreeSet<String> = ["audit".to_owned(), "sso".to_owned()].into();
    assert_eq!(features(&org.features), expected);
    let found = s.find_org(&acme.id).await.unwrap().unwrap();
    assert_eq!(found.name, "Acme");
    assert_eq!(found.created_at, T0);
    assert_eq!(features(&found.features), expected);
    let token = s
        .find_token_by_hash(&first_secret.hash())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(token.id, first.id);
    assert_eq!(token.owner, owner);
    assert_logged(s, &org_event).await;
    assert_logged(s, &first_event).await;

    // The same organisation again, with another first token: neither is written.
    let (second, _) = new_token(&owner, "ci");
    let again = NewOrg {
        name: "Acme again".into(),
        ..acme.clone()
    };
    let again_event = event("org.created", "organisation", acme.id.as_str());
    let second_event = token_event("token.created", &second);
    let err = s
        .create_org(&again, &again_event, Some((&second, &second_event)))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    assert!(s.find_token(&second.id).await.unwrap().is_none());
    assert_eq!(s.find_org(&acme.id).await.unwrap().unwrap().name, "Acme");
    assert_eq!(count_action(s, "org.created").await, 1);

    // Members, in the order they joined; a role change keeps the date they joined.
    for (who, role, when) in [(&ada, Role::Admin, 10), (&bob, Role::Member, 20)] {
        let ev = event("org.member_added", "user", who.id.as_str())
            .of_org(&acme.id)
            .of_user(&who.id)
            .when(at(when));
        s.upsert_membership(&acme.id, &who.id, role, at(when), true, &ev)
            .await
            .unwrap();
        assert_logged(s, &ev).await;
    }
    let promote = event("org.role_changed", "user", bob.id.as_str())
        .of_org(&acme.id)
        .of_user(&bob.id)
        .outcome("success", Some(r#"{"role":"admin"}"#));
    s.upsert_membership(&acme.id, &bob.id, Role::Admin, at(30), true, &promote)
        .await
        .unwrap();
    assert_logged(s, &promote).await;
    let members = s.list_org_members(&acme.id).await.unwrap();
    let seen: Vec<_> = members
        .iter()
        .map(|m| (m.user_id.clone(), m.email.clone(), m.role, m.since))
        .collect();
    assert_eq!(
        seen,
        vec![
            (ada.id.clone(), ada.email.clone(), Role::Admin, at(10)),
            (bob.id.clone(), bob.email.clone(), Role::Admin, at(20)),
        ]
    );

    // A user's accounts, oldest membership first, as the organisation is now.
    let globex = new_org("Globex", &["beta"]);
    let ev = event("org.created", "organisation", globex.id.as_str()).of_org(&globex.id);
    s.create_org(&globex, &ev, None).await.unwrap();
    let ev = event("org.member_added", "user", ada.id.as_str())
        .of_org(&globex.id)
        .of_user(&ada.id);
    s.upsert_membership(&globex.id, &ada.id, Role::Partner, at(40), true, &ev)
        .await
        .unwrap();
    let change = OrgChange {
        add_features: vec!["webhooks".into()],
        remove_features: vec!["beta".into()],
        api_tokens_enabled: Some(false),
        name: Some("Globex Corp".into()),
        ..OrgChange::default()
    };
    let ev = event("org.updated", "organisation", globex.id.as_str()).of_org(&globex.id);
    let updated = s.update_org(&globex.id, &change, &ev).await.unwrap();
    assert_eq!(updated.name, "Globex Corp");
    assert_eq!(updated.features, vec!["webhooks".to_owned()]);
    assert!(!updated.api_tokens_enabled);
    assert_logged(s, &ev).await;
    let accounts: Vec<_> = s
        .list_user_accounts(&ada.id)
        .await
        .unwrap()
        .into_iter()
        .map(|a| (a.org_id, a.org_name, a.role, a.api_tokens_enabled))
        .collect();
    assert_eq!(
        accounts,
        vec![
            (acme.id.clone(), "Acme".to_owned(), Role::Admin, true),
            (
                globex.id.clone(),
                "Globex Corp".to_owned(),
                Role::Partner,
                false
            ),
        ]
    );
    let orgs: BTreeSet<_> = s
        .list_orgs()
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.id)
        .collect();
    assert_eq!(orgs, [acme.id.clone(), globex.id.clone()].into());
    let ghost = OrgId::from_random(random());
    let err = s
        .update_org(
            &ghost,
            &OrgChange::default(),
            &event("org.updated", "organisation", ghost.as_str()),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
    let err = s
        .upsert_membership(
            &acme.id,
            &UserId::from_random(random()),
            Role::Member,
            T0,
            true,
            &event("org.member_added", "user", "usr_ghost"),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");

    // The last admin: bob steps down, then ada can neither step down nor leave.
    let ev = event("org.role_changed", "user", bob.id.as_str()).of_org(&acme.id);
    s.upsert_membership(&acme.id, &bob.id, Role::Member, at(50), true, &ev)
        .await
        .unwrap();
    let events_before = all_events(s).await.len();
    let demote = event("org.role_changed", "user", ada.id.as_str()).of_org(&acme.id);
    let err = s
        .upsert_membership(&acme.id, &ada.id, Role::Member, at(51), true, &demote)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::LastAdmin), "{err:?}");
    let leave = event("org.member_removed", "user", ada.id.as_str()).of_org(&acme.id);
    let err = s
        .delete_membership(&acme.id, &ada.id, true, &leave)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::LastAdmin), "{err:?}");
    assert_eq!(
        all_events(s).await.len(),
        events_before,
        "a refusal is no change"
    );
    let roles: Vec<_> = s
        .list_org_members(&acme.id)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.role)
        .collect();
    assert_eq!(roles, vec![Role::Admin, Role::Member]);
    // Without the guard (the operator's repair), the demotion goes through.
    let ev = event("org.role_changed", "user", ada.id.as_str()).of_org(&acme.id);
    s.upsert_membership(&acme.id, &ada.id, Role::Member, at(52), false, &ev)
        .await
        .unwrap();
    let ev = event("org.role_changed", "user", ada.id.as_str()).of_org(&acme.id);
    s.upsert_membership(&acme.id, &ada.id, Role::Admin, at(53), false, &ev)
        .await
        .unwrap();

    // Deleting: once, then there is nothing to delete.
    let remove = event("org.member_removed", "user", bob.id.as_str())
        .of_org(&acme.id)
        .of_user(&bob.id);
    assert!(
        s.delete_membership(&acme.id, &bob.id, true, &remove)
            .await
            .unwrap()
    );
    assert_logged(s, &remove).await;
    let again = event("org.member_removed", "user", bob.id.as_str()).of_org(&acme.id);
    assert!(
        !s.delete_membership(&acme.id, &bob.id, true, &again)
            .await
            .unwrap()
    );
    assert!(all_events(s).await.iter().all(|e| e.id != again.id));
    let left: Vec<_> = s
        .list_org_members(&acme.id)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.user_id)
        .collect();
    assert_eq!(left, vec![ada.id.clone()]);
    assert!(s.list_user_accounts(&bob.id).await.unwrap().is_empty());
}

/// Admins demoting each other at once: the check and the change are one transaction, so the
/// organisation keeps exactly one admin, whoever wins.
async fn story_parallel_demotions_keep_one_admin(store: Arc<dyn Store>) {
    let s = &*store;
    // Pairs of admins, each pair in its own organisation, all demoting at once.
    let mut pairs = Vec::new();
    for i in 0..6 {
        let a = user(s, &format!("a{i}@example.com")).await;
        let b = user(s, &format!("b{i}@example.com")).await;
        let org = org_with_admin(s, &format!("Pair {i}"), &a.id).await;
        let ev = event("org.member_added", "user", b.id.as_str()).of_org(&org.id);
        s.upsert_membership(&org.id, &b.id, Role::Admin, T0, true, &ev)
            .await
            .unwrap();
        pairs.push((org.id, a.id, b.id));
    }
    let jobs: Vec<(OrgId, UserId)> = pairs
        .iter()
        .flat_map(|(o, a, b)| [(o.clone(), a.clone()), (o.clone(), b.clone())])
        .collect();
    let results = race(jobs.len(), |i| {
        let store = Arc::clone(&store);
        let (org, user) = jobs[i].clone();
        async move {
            let ev = event("org.role_changed", "user", user.as_str()).of_org(&org);
            store
                .upsert_membership(&org, &user, Role::Member, at(1), true, &ev)
                .await
        }
    })
    .await;
    for (pair, outcome) in results.chunks(2).enumerate() {
        let won = outcome.iter().filter(|r| r.is_ok()).count();
        let refused = outcome
            .iter()
            .filter(|r| matches!(r, Err(StoreError::LastAdmin)))
            .count();
        assert_eq!((won, refused), (1, 1), "pair {pair}: {outcome:?}");
        let admins = s
            .list_org_members(&pairs[pair].0)
            .await
            .unwrap()
            .into_iter()
            .filter(|m| m.role == Role::Admin)
            .count();
        assert_eq!(admins, 1, "pair {pair}");
    }

    // Eight admins of one organisation: seven step down, seven leave, at once.
    let first = user(s, "first@example.com").await;
    let org = org_with_admin(s, "Crowd", &first.id).await;
    let mut admins = vec![first.id.clone()];
    for i in 1..8 {
        let u = user(s, &format!("admin{i}@example.com")).await;
        let ev = event("org.member_added", "user", u.id.as_str()).of_org(&org.id);
        s.upsert_membership(&org.id, &u.id, Role::Admin, T0, true, &ev)
            .await
            .unwrap();
        admins.push(u.id);
    }
    let results = race(admins.len() * 2, |i| {
        let store = Arc::clone(&store);
        let org = org.id.clone();
        let user = admins[i % admins.len()].clone();
        async move {
            let ev = event("org.member_removed", "user", user.as_str()).of_org(&org);
            if i < 8 {
                store
                    .upsert_membership(&org, &user, Role::Member, at(2), true, &ev)
                    .await
                    .map(|()| true)
            } else {
                store.delete_membership(&org, &user, true, &ev).await
            }
        }
    })
    .await;
    assert!(
        results
            .iter()
            .all(|r| matches!(r, Ok(_) | Err(StoreError::LastAdmin))),
        "{results:?}"
    );
    let members = s.list_org_members(&org.id).await.unwrap();
    let left_admins = members.iter().filter(|m| m.role == Role::Admin).count();
    assert_eq!(left_admins, 1, "{members:?}");
}

/// `max_active` under a crowd, and the idempotency key: the limit counts live tokens of one type
/// of one owner, inside the transaction that inserts.
async fn story_token_limit_and_idempotency(store: Arc<dyn Store>) {
    let s = &*store;
    let ada = user(s, "ada@example.com").await;
    let bob = user(s, "bob@example.com").await;
    let owner = Owner::User(ada.id.clone());

    let tokens: Vec<NewToken> = (0..20).map(|_| new_token(&owner, "personal").0).collect();
    let results = race(tokens.len(), |i| {
        let store = Arc::clone(&store);
        let token = tokens[i].clone();
        async move {
            let ev = token_event("token.created", &token);
            store
                .create_token_within_limit(&token, 2, T0, &ev, None)
                .await
        }
    })
    .await;
    let created: Vec<TokenId> = results
        .iter()
        .filter_map(|r| match r {
            Ok(CreateOutcome::Created(t)) => Some(t.id.clone()),
            _ => None,
        })
        .collect();
    let limited = results
        .iter()
        .filter(|r| matches!(r, Err(StoreError::LimitReached)))
        .count();
    assert_eq!((created.len(), limited), (2, 18), "{results:?}");
    let listed: BTreeSet<TokenId> = s
        .list_tokens(&owner_tokens(&owner))
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.id)
        .collect();
    assert_eq!(listed, created.iter().cloned().collect());
    assert_eq!(
        count_action(s, "token.created").await,
        2,
        "refusals leave no event"
    );

    // The limit is per type and per owner.
    let (ci, _) = new_token(&owner, "ci");
    let ev = token_event("token.created", &ci);
    assert!(matches!(
        s.create_token_within_limit(&ci, 2, T0, &ev, None).await,
        Ok(CreateOutcome::Created(_))
    ));
    let (bobs, _) = new_token(&Owner::User(bob.id.clone()), "personal");
    let ev = token_event("token.created", &bobs);
    assert!(matches!(
        s.create_token_within_limit(&bobs, 2, T0, &ev, None).await,
        Ok(CreateOutcome::Created(_))
    ));
    // A revoked token frees its place; so does an expired one.
    let ev = event("token.revoked", "token", created[0].as_str()).of_user(&ada.id);
    assert!(s.revoke_token(&created[0], at(5), &ev).await.unwrap());
    let (third, _) = new_token(&owner, "personal");
    let ev = token_event("token.created", &third);
    assert!(matches!(
        s.create_token_within_limit(&third, 2, at(6), &ev, None)
            .await,
        Ok(CreateOutcome::Created(_))
    ));
    let (fourth, _) = new_token(&owner, "personal");
    let ev = token_event("token.created", &fourth);
    assert!(matches!(
        s.create_token_within_limit(&fourth, 2, at(7), &ev, None)
            .await,
        Err(StoreError::LimitReached)
    ));
    let later = at(91 * DAY);
    let ev = token_event("token.created", &fourth).when(later);
    assert!(matches!(
        s.create_token_within_limit(&fourth, 2, later, &ev, None)
            .await,
        Ok(CreateOutcome::Created(_))
    ));

    // One key, ten retries at once, each with a token of its own: one is made, nine replay it.
    let scope = format!("{}:tokens", bob.id);
    let bob_owner = Owner::User(bob.id.clone());
    let retries: Vec<NewToken> = (0..10).map(|_| new_token(&bob_owner, "deploy").0).collect();
    let results = race(retries.len(), |i| {
        let store = Arc::clone(&store);
        let token = retries[i].clone();
        let key = idempotency(&scope, "create-1");
        async move {
            let ev = token_event("token.created", &token);
            store
                .create_token_within_limit(&token, 5, T0, &ev, Some(&key))
                .await
        }
    })
    .await;
    let made: Vec<TokenId> = results
        .iter()
        .filter_map(|r| match r {
            Ok(CreateOutcome::Created(t)) => Some(t.id.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(made.len(), 1, "{results:?}");
    let replayed: Vec<TokenId> = results
        .iter()
        .filter_map(|r| match r {
            Ok(CreateOutcome::Replayed(t)) => Some(t.id.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(replayed.len(), 9, "{results:?}");
    assert!(replayed.iter().all(|id| *id == made[0]));
    let deploy = TokenFilter {
        token_type: Some("deploy".into()),
        ..owner_tokens(&bob_owner)
    };
    assert_eq!(s.list_tokens(&deploy).await.unwrap().len(), 1);
    // A replay answers even when the limit is reached meanwhile: nothing new is asked for.
    let (late, _) = new_token(&bob_owner, "deploy");
    let ev = token_event("token.created", &late);
    let key = idempotency(&scope, "create-1");
    match s
        .create_token_within_limit(&late, 1, T0, &ev, Some(&key))
        .await
        .unwrap()
    {
        CreateOutcome::Replayed(t) => assert_eq!(t.id, made[0]),
        CreateOutcome::Created(t) => panic!("created {t:?} on a used key"),
    }
    // The same key in another scope is another request.
    let (other, _) = new_token(&bob_owner, "deploy");
    let ev = token_event("token.created", &other);
    let key = idempotency(&format!("{}:tokens", ada.id), "create-1");
    assert!(matches!(
        s.create_token_within_limit(&other, 5, T0, &ev, Some(&key))
            .await
            .unwrap(),
        CreateOutcome::Created(t) if t.id == other.id
    ));
}

/// Tokens: every field found back by id and by hash; revoked once; rotated once, ending the
/// predecessor still in its grace period.
async fn story_tokens_find_revoke_rotate(store: Arc<dyn Store>) {
    let s = &*store;
    let ada = user(s, "ada@example.com").await;
    let owner = Owner::User(ada.id.clone());

    let (token, token_secret) = new_token(&owner, "personal");
    let ev = token_event("token.created", &token);
    let record = match s
        .create_token_within_limit(&token, 5, T0, &ev, None)
        .await
        .unwrap()
    {
        CreateOutcome::Created(r) => r,
        CreateOutcome::Replayed(r) => panic!("replayed {r:?}"),
    };
    assert_logged(s, &ev).await;
    for found in [
        record,
        s.find_token(&token.id).await.unwrap().unwrap(),
        s.find_token_by_hash(&token_secret.hash())
            .await
            .unwrap()
            .unwrap(),
    ] {
        assert_eq!(found.id, token.id);
        assert_eq!(found.token_type, "personal");
        assert_eq!(found.owner, owner);
        assert_eq!(found.name, token.name);
        assert_eq!(found.hint, token.hint);
        assert_eq!(found.scopes, token.scopes);
        assert_eq!(found.created_at, T0);
        assert_eq!(found.active_from, T0);
        assert_eq!(found.expires_at, token.expires_at);
        assert_eq!(found.revoked_at, None);
        assert_eq!(found.last_used_at, None);
        assert_eq!(found.rotated_from, None);
        assert_eq!(found.allowed_ips, token.allowed_ips);
        assert!(found.is_revealable);
        assert_eq!(found.signing_kid, None);
    }
    assert_eq!(
        s.find_token_secret(&token.id).await.unwrap(),
        token.secret_ciphertext
    );
    assert!(
        s.find_token_by_hash(&secret("lkt").hash())
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        s.find_token(&TokenId::from_random(random()))
            .await
            .unwrap()
            .is_none()
    );
    let same_hash = NewToken {
        id: TokenId::from_random(random()),
        ..token.clone()
    };
    let err = s
        .create_token_within_limit(
            &same_hash,
            5,
            T0,
            &token_event("token.created", &same_hash),
            None,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");

    // Revoked once, by one of many at once.
    let results = race(10, |_| {
        let store = Arc::clone(&store);
        let id = token.id.clone();
        let ev = event("token.revoked", "token", id.as_str())
            .of_user(&ada.id)
            .when(at(10));
        async move { (store.revoke_token(&id, at(10), &ev).await.unwrap(), ev) }
    })
    .await;
    let winners: Vec<&NewEvent> = results
        .iter()
        .filter(|(won, _)| *won)
        .map(|(_, e)| e)
        .collect();
    assert_eq!(winners.len(), 1);
    assert_logged(s, winners[0]).await;
    assert_eq!(count_action(s, "token.revoked").await, 1);
    let revoked = s.find_token(&token.id).await.unwrap().unwrap();
    assert_eq!(revoked.revoked_at, Some(at(10)));
    let ev = event("token.revoked", "token", token.id.as_str());
    assert!(!s.revoke_token(&token.id, at(20), &ev).await.unwrap());
    assert_eq!(
        s.find_token(&token.id).await.unwrap().unwrap().revoked_at,
        Some(at(10)),
        "a second revocation does not move the first"
    );

    // Rotation: the old token lives on for its grace period, the new one names it.
    let (a, _) = new_token(&owner, "personal");
    stored(s, &a).await;
    let (b, b_secret) = new_token(&owner, "personal");
    let b = NewToken {
        rotated_from: Some(a.id.clone()),
        created_at: at(100),
        active_from: at(100),
        ..b
    };
    let ev = token_event("token.rotated", &b).when(at(100));
    let rotated = s
        .rotate_token(&a.id, at(100 + 3600), at(100), &b, &ev)
        .await
        .unwrap();
    assert_eq!(rotated.id, b.id);
    assert_eq!(rotated.rotated_from, Some(a.id.clone()));
    assert_eq!(
        s.find_token_by_hash(&b_secret.hash())
            .await
            .unwrap()
            .unwrap()
            .id,
        b.id
    );
    assert_eq!(
        s.find_token(&a.id).await.unwrap().unwrap().expires_at,
        Some(at(3700))
    );
    assert_logged(s, &ev).await;

    // A second rotation of the same token: refused, nothing written.
    let (b2, _) = new_token(&owner, "personal");
    let b2 = NewToken {
        rotated_from: Some(a.id.clone()),
        ..b2
    };
    let err = s
        .rotate_token(
            &a.id,
            at(200),
            at(200),
            &b2,
            &token_event("token.rotated", &b2),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    assert!(s.find_token(&b2.id).await.unwrap().is_none());
    assert_eq!(
        s.find_token(&a.id).await.unwrap().unwrap().expires_at,
        Some(at(3700)),
        "a refused rotation does not shorten the grace period"
    );

    // Rotating the successor while its predecessor is in its grace period ends the predecessor.
    let (c, _) = new_token(&owner, "personal");
    let c = NewToken {
        rotated_from: Some(b.id.clone()),
        ..c
    };
    let ev = token_event("token.rotated", &c).when(at(300));
    s.rotate_token(&b.id, at(300 + 3600), at(300), &c, &ev)
        .await
        .unwrap();
    let a_now = s.find_token(&a.id).await.unwrap().unwrap();
    assert_eq!(a_now.expires_at, Some(at(300)));
    assert!(!a_now.status(at(300)).is_live());
    assert_eq!(
        s.find_token(&b.id).await.unwrap().unwrap().expires_at,
        Some(at(3900))
    );

    // Many rotations of one token at once: one successor.
    let successors: Vec<NewToken> = (0..8)
        .map(|_| NewToken {
            rotated_from: Some(c.id.clone()),
            ..new_token(&owner, "personal").0
        })
        .collect();
    let results = race(successors.len(), |i| {
        let store = Arc::clone(&store);
        let new = successors[i].clone();
        let old = c.id.clone();
        async move {
            let ev = token_event("token.rotated", &new).when(at(400));
            store.rotate_token(&old, at(4000), at(400), &new, &ev).await
        }
    })
    .await;
    let ok = results.iter().filter(|r| r.is_ok()).count();
    let conflicts = results
        .iter()
        .filter(|r| matches!(r, Err(StoreError::Conflict(_))))
        .count();
    assert_eq!((ok, conflicts), (1, 7), "{results:?}");
    let children = s
        .list_tokens(&owner_tokens(&owner))
        .await
        .unwrap()
        .into_iter()
        .filter(|t| t.rotated_from.as_ref() == Some(&c.id))
        .count();
    assert_eq!(children, 1);

    // A grace period never lengthens a life; a revoked token has nothing to rotate.
    let (short, _) = new_token(&owner, "personal");
    let short = NewToken {
        expires_at: Some(at(500)),
        ..short
    };
    stored(s, &short).await;
    let (next, _) = new_token(&owner, "personal");
    let next = NewToken {
        rotated_from: Some(short.id.clone()),
        ..next
    };
    s.rotate_token(
        &short.id,
        at(9000),
        at(450),
        &next,
        &token_event("token.rotated", &next),
    )
    .await
    .unwrap();
    assert_eq!(
        s.find_token(&short.id).await.unwrap().unwrap().expires_at,
        Some(at(500))
    );
    let (orphan, _) = new_token(&owner, "personal");
    let orphan = NewToken {
        rotated_from: Some(token.id.clone()),
        ..orphan
    };
    let err = s
        .rotate_token(
            &token.id,
            at(600),
            at(600),
            &orphan,
            &token_event("token.rotated", &orphan),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
    assert!(s.find_token(&orphan.id).await.unwrap().is_none());
}

/// The kill switch: every live token of an owner, or of one of its types, revoked at once; with
/// the OAuth half, the owner's grants too.
async fn story_kill_switch(store: Arc<dyn Store>) {
    let s = &*store;
    let ada = user(s, "ada@example.com").await;
    let bob = user(s, "bob@example.com").await;
    let acme = org_with_admin(s, "Acme", &ada.id).await;
    let ada_owner = Owner::User(ada.id.clone());
    let org_owner = Owner::Organisation(acme.id.clone());

    let (p1, _) = new_token(&ada_owner, "personal");
    // Still pending (an activation delay): live, so the kill switch takes it too.
    let (p2, _) = new_token(&ada_owner, "personal");
    let p2 = NewToken {
        active_from: at(3600),
        ..p2
    };
    let (ci, _) = new_token(&ada_owner, "ci");
    let (gone, _) = new_token(&ada_owner, "personal");
    let gone = NewToken {
        expires_at: Some(at(60)),
        ..gone
    };
    let (bobs, _) = new_token(&Owner::User(bob.id.clone()), "personal");
    let (org_ci, _) = new_token(&org_owner, "ci");
    for t in [&p1, &p2, &ci, &gone, &bobs, &org_ci] {
        stored(s, t).await;
    }
    let client = new_client(&acme.id);
    let ev = event("client.created", "client", &client.id).of_org(&acme.id);
    s.create_client(&client, Some(&new_client_secret(&client)), &ev)
        .await
        .unwrap();
    let ada_grant = new_grant(&client, &ada.id);
    let ev = event("oauth.consented", "grant", &ada_grant.id).of_user(&ada.id);
    s.create_grant_with_code(&ada_grant, &new_code(&ada_grant, at(600)), &ev)
        .await
        .unwrap();
    let bob_grant = new_grant(&client, &bob.id);
    let ev = event("oauth.consented", "grant", &bob_grant.id).of_user(&bob.id);
    s.create_grant_with_code(&bob_grant, &new_code(&bob_grant, at(600)), &ev)
        .await
        .unwrap();

    // One type of one owner; the expired token is not "revoked" after the fact.
    let ev = event("tokens.revoked_all", "user", ada.id.as_str())
        .of_user(&ada.id)
        .when(at(100));
    let ids: BTreeSet<TokenId> = s
        .revoke_owner_tokens(&ada_owner, Some("personal"), false, at(100), &ev)
        .await
        .unwrap()
        .into_iter()
        .collect();
    assert_eq!(ids, [p1.id.clone(), p2.id.clone()].into());
    let found = logged(s, &ev.id).await;
    assert_eq!(
        (found.action.as_str(), found.subject_id.as_str(), found.at),
        ("tokens.revoked_all", ada.id.as_str(), at(100))
    );
    for (id, revoked) in [
        (&p1.id, Some(at(100))),
        (&p2.id, Some(at(100))),
        (&ci.id, None),
        (&gone.id, None),
        (&bobs.id, None),
        (&org_ci.id, None),
    ] {
        assert_eq!(s.find_token(id).await.unwrap().unwrap().revoked_at, revoked);
    }
    assert!(
        s.find_grant(&ada_grant.id)
            .await
            .unwrap()
            .unwrap()
            .revoked_at
            .is_none()
    );

    // The whole owner, with its OAuth grants; another user's grant on the same client stays.
    let ev = event("tokens.revoked_all", "user", ada.id.as_str())
        .of_user(&ada.id)
        .when(at(200));
    let ids = s
        .revoke_owner_tokens(&ada_owner, None, true, at(200), &ev)
        .await
        .unwrap();
    assert_eq!(ids, vec![ci.id.clone()]);
    assert_eq!(
        s.find_token(&p1.id).await.unwrap().unwrap().revoked_at,
        Some(at(100)),
        "a revoked token keeps the time it was revoked"
    );
    assert_eq!(
        s.find_grant(&ada_grant.id)
            .await
            .unwrap()
            .unwrap()
            .revoked_at,
        Some(at(200))
    );
    assert!(
        s.find_grant(&bob_grant.id)
            .await
            .unwrap()
            .unwrap()
            .revoked_at
            .is_none()
    );
    assert!(
        s.list_revoked_grants(at(199))
            .await
            .unwrap()
            .contains(&ada_grant.id)
    );
    let ev = event("tokens.revoked_all", "user", ada.id.as_str()).when(at(300));
    assert!(
        s.revoke_owner_tokens(&ada_owner, None, true, at(300), &ev)
            .await
            .unwrap()
            .is_empty()
    );

    // An organisation: its tokens, every grant of its clients, and its clients' access tokens
    // issued until now.
    let ev = event("tokens.revoked_all", "organisation", acme.id.as_str())
        .of_org(&acme.id)
        .when(at(400));
    let ids = s
        .revoke_owner_tokens(&org_owner, None, true, at(400), &ev)
        .await
        .unwrap();
    assert_eq!(ids, vec![org_ci.id.clone()]);
    assert_eq!(
        s.find_grant(&bob_grant.id)
            .await
            .unwrap()
            .unwrap()
            .revoked_at,
        Some(at(400))
    );
    assert_eq!(
        s.find_client(&client.id)
            .await
            .unwrap()
            .unwrap()
            .tokens_valid_after,
        Some(at(400))
    );
    assert_eq!(logged(s, &ev.id).await.org_id, Some(acme.id.to_string()));
    assert!(
        s.find_token(&bobs.id)
            .await
            .unwrap()
            .unwrap()
            .revoked_at
            .is_none()
    );
}

/// The outbox: mails ride on their event; parallel workers claim each once; a lease, a send
/// (which keeps no body), a failure (retried later).
async fn story_outbox(store: Arc<dyn Store>, raw: &Raw) {
    let s = &*store;
    let ada = new_user("ada@example.com");
    let welcome = event("user.created", "user", ada.id.as_str())
        .of_user(&ada.id)
        .with_mail(new_mail(&ada.email, "Welcome", None))
        .with_mail(new_mail(&email("ops@example.com"), "New account", None));
    s.create_user(&ada, &welcome).await.unwrap();
    let mut notice = event("token.created", "token", "tok_x").of_user(&ada.id);
    for i in 0..10 {
        let sealed = (i % 2 == 0).then(|| random::<40>().to_vec());
        notice = notice.with_mail(new_mail(&ada.email, &format!("Token {i}"), sealed));
    }
    s.insert_event(&notice).await.unwrap();
    // A refused write takes its mails with it.
    let twin = new_user("ada@example.com");
    let refused = event("user.created", "user", twin.id.as_str()).with_mail(new_mail(
        &twin.email,
        "Welcome twice",
        None,
    ));
    assert!(s.create_user(&twin, &refused).await.is_err());
    assert_eq!(s.count_unsent_mails().await.unwrap(), 12);

    let written: Vec<&NewMail> = welcome.mails.iter().chain(&notice.mails).collect();
    let results = race(6, |_| {
        let store = Arc::clone(&store);
        async move { store.claim_mails(at(1), at(61), 3).await.unwrap() }
    })
    .await;
    let claimed: Vec<_> = results.into_iter().flatten().collect();
    let ids: HashSet<&str> = claimed.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(claimed.len(), 12, "every mail claimed");
    assert_eq!(ids.len(), 12, "no mail claimed twice");
    for mail in &claimed {
        let original = written.iter().find(|w| w.id == mail.id).unwrap();
        let event_id = if welcome.mails.iter().any(|w| w.id == mail.id) {
            &welcome.id
        } else {
            &notice.id
        };
        assert_eq!(&mail.event_id, event_id);
        assert_eq!(mail.recipient, original.recipient);
        assert_eq!(mail.subject, original.subject);
        assert_eq!(mail.body, original.body);
        assert_eq!(mail.sealed, original.sealed);
        assert_eq!(mail.created_at, T0);
        assert_eq!(mail.attempts, 1);
    }
    // Leased: nobody else takes them until the lease ends.
    assert!(s.claim_mails(at(2), at(62), 100).await.unwrap().is_empty());

    let sealed_one = claimed.iter().find(|m| m.sealed.is_some()).unwrap();
    let failing = claimed.iter().find(|m| m.id != sealed_one.id).unwrap();
    s.mark_mail_sent(&sealed_one.id, at(3)).await.unwrap();
    s.mark_mail_failed(&failing.id, at(600), "451 try again later")
        .await
        .unwrap();
    // A late failure report for a sent mail does not bring it back.
    s.mark_mail_failed(&sealed_one.id, at(4), "timeout")
        .await
        .unwrap();
    assert_eq!(s.count_unsent_mails().await.unwrap(), 11);
    let (body, sealed) = raw.mail_residue(&sealed_one.id).await;
    assert_eq!(
        (body.as_str(), sealed),
        ("", None),
        "a sent mail keeps no body"
    );

    // The lease ends (a worker died): the ten unreported come back; not the failed one, not yet.
    let again = s.claim_mails(at(61), at(121), 100).await.unwrap();
    let again_ids: HashSet<&str> = again.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(again.len(), 10);
    assert!(!again_ids.contains(sealed_one.id.as_str()));
    assert!(!again_ids.contains(failing.id.as_str()));
    assert!(again.iter().all(|m| m.attempts == 2));
    for mail in &again {
        s.mark_mail_sent(&mail.id, at(70)).await.unwrap();
    }
    assert_eq!(s.count_unsent_mails().await.unwrap(), 1);
    assert!(
        s.claim_mails(at(599), at(659), 100)
            .await
            .unwrap()
            .is_empty()
    );
    let retried = s.claim_mails(at(600), at(660), 100).await.unwrap();
    assert_eq!(retried.len(), 1);
    assert_eq!(retried[0].id, failing.id);
    assert_eq!(retried[0].attempts, 2);
    assert_eq!(
        retried[0].body, failing.body,
        "a failed mail keeps its body"
    );
    s.mark_mail_sent(&failing.id, at(601)).await.unwrap();
    assert_eq!(s.count_unsent_mails().await.unwrap(), 0);
    assert!(
        s.claim_mails(at(DAY), at(DAY + 60), 100)
            .await
            .unwrap()
            .is_empty()
    );
}

/// OAuth: a consent and its code; the code consumed once by racing requests, and only the
/// winner's refresh token kept; refresh tokens rotated once; a revoked grant stops its refresh
/// tokens.
async fn story_oauth(store: Arc<dyn Store>) {
    let s = &*store;
    let ada = user(s, "ada@example.com").await;
    let acme = org_with_admin(s, "Acme", &ada.id).await;
    let client = new_client(&acme.id);
    let client_secret = new_client_secret(&client);
    let ev = event("client.created", "client", &client.id).of_org(&acme.id);
    s.create_client(&client, Some(&client_secret), &ev)
        .await
        .unwrap();
    assert_logged(s, &ev).await;
    let found = s.find_client(&client.id).await.unwrap().unwrap();
    assert_eq!(found.redirect_uris, client.redirect_uris);
    assert_eq!(found.grant_types, client.grant_types);
    assert_eq!(
        s.find_client_secret(&client_secret.secret_hash)
            .await
            .unwrap()
            .unwrap()
            .client_id,
        client.id
    );

    let grant = new_grant(&client, &ada.id);
    let code = new_code(&grant, at(60));
    let ev = event("oauth.consented", "grant", &grant.id)
        .of_user(&ada.id)
        .of_org(&acme.id);
    s.create_grant_with_code(&grant, &code, &ev).await.unwrap();
    assert_logged(s, &ev).await;
    let g = s.find_grant(&grant.id).await.unwrap().unwrap();
    assert_eq!(
        (
            g.client_id.as_str(),
            g.user_id.as_ref(),
            g.scopes.as_slice(),
            g.created_at
        ),
        (
            client.id.as_str(),
            Some(&ada.id),
            grant.scopes.as_slice(),
            T0
        )
    );
    assert_eq!(g.revoked_at, None);
    let stored_code = s.find_auth_code(&code.code_hash).await.unwrap().unwrap();
    assert_eq!(stored_code.used_at, None);
    assert_eq!(stored_code.code.grant_id, grant.id);
    assert_eq!(stored_code.code.client_id, client.id);
    assert_eq!(stored_code.code.user_id, ada.id);
    assert_eq!(stored_code.code.redirect_uri, code.redirect_uri);
    assert_eq!(stored_code.code.code_challenge, code.code_challenge);
    assert_eq!(stored_code.code.scopes, code.scopes);
    assert_eq!(stored_code.code.expires_at, at(60));
    assert!(
        s.find_auth_code(&secret("lkac").hash())
            .await
            .unwrap()
            .is_none()
    );

    // Ten requests spend the code at once: one gets it, the others read a replay.
    let refreshes: Vec<NewRefreshToken> = (0..10).map(|_| new_refresh(&grant, at(5))).collect();
    let results = race(refreshes.len(), |i| {
        let store = Arc::clone(&store);
        let hash = code.code_hash;
        let refresh = refreshes[i].clone();
        async move {
            store
                .consume_auth_code(&hash, at(5), Some(&refresh))
                .await
                .unwrap()
        }
    })
    .await;
    let fresh: Vec<usize> = (0..results.len())
        .filter(|i| matches!(&results[*i], Consumed::Fresh(c) if c.grant_id == grant.id))
        .collect();
    assert_eq!(fresh.len(), 1, "{results:?}");
    assert!(
        results
            .iter()
            .filter(|r| !matches!(r, Consumed::Fresh(_)))
            .all(|r| matches!(r, Consumed::Reused { grant_id } if *grant_id == grant.id)),
        "{results:?}"
    );
    let winner = &refreshes[fresh[0]];
    for (i, refresh) in refreshes.iter().enumerate() {
        let kept = s.find_refresh_token(&refresh.token_hash).await.unwrap();
        assert_eq!(kept.is_some(), i == fresh[0], "refresh token {i}");
    }
    assert_eq!(
        s.find_auth_code(&code.code_hash)
            .await
            .unwrap()
            .unwrap()
            .used_at,
        Some(at(5))
    );
    assert!(matches!(
        s.consume_auth_code(&code.code_hash, at(6), None).await.unwrap(),
        Consumed::Reused { grant_id } if grant_id == grant.id
    ));
    // An expired code, or an unknown one, is invalid, and stays unused.
    let late = new_grant(&client, &ada.id);
    let late_code = new_code(&late, at(60));
    let ev = event("oauth.consented", "grant", &late.id).of_user(&ada.id);
    s.create_grant_with_code(&late, &late_code, &ev)
        .await
        .unwrap();
    assert!(matches!(
        s.consume_auth_code(&late_code.code_hash, at(60), None)
            .await
            .unwrap(),
        Consumed::Invalid
    ));
    assert_eq!(
        s.find_auth_code(&late_code.code_hash)
            .await
            .unwrap()
            .unwrap()
            .used_at,
        None
    );
    assert!(matches!(
        s.consume_auth_code(&secret("lkac").hash(), at(5), None)
            .await
            .unwrap(),
        Consumed::Invalid
    ));

    // The refresh token, read before it is spent.
    let stored_refresh = s
        .find_refresh_token(&winner.token_hash)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored_refresh.grant_id, grant.id);
    assert_eq!(stored_refresh.client_id, client.id);
    assert_eq!(stored_refresh.expires_at, winner.expires_at);
    assert_eq!(stored_refresh.used_at, None);
    assert!(!stored_refresh.grant_revoked);
    assert_eq!(
        s.find_refresh_grant(&winner.token_hash).await.unwrap(),
        Some(grant.id.clone())
    );
    assert_eq!(
        s.find_refresh_grant(&secret("lkrt").hash()).await.unwrap(),
        None
    );

    // Ten rotations of it at once: one successor.
    let nexts: Vec<NewRefreshToken> = (0..10).map(|_| new_refresh(&grant, at(10))).collect();
    let results = race(nexts.len(), |i| {
        let store = Arc::clone(&store);
        let hash = winner.token_hash;
        let next = nexts[i].clone();
        async move {
            store
                .rotate_refresh_token(&hash, at(10), &next)
                .await
                .unwrap()
        }
    })
    .await;
    let fresh: Vec<usize> = (0..results.len())
        .filter(|i| {
            matches!(
                &results[*i],
                Consumed::Fresh(r) if r.grant_id == grant.id && r.client_id == client.id
            )
        })
        .collect();
    assert_eq!(fresh.len(), 1, "{results:?}");
    assert!(
        results
            .iter()
            .filter(|r| !matches!(r, Consumed::Fresh(_)))
            .all(|r| matches!(r, Consumed::Reused { grant_id } if *grant_id == grant.id)),
        "{results:?}"
    );
    for (i, next) in nexts.iter().enumerate() {
        let kept = s.find_refresh_token(&next.token_hash).await.unwrap();
        assert_eq!(kept.is_some(), i == fresh[0], "successor {i}");
    }
    assert_eq!(
        s.find_refresh_token(&winner.token_hash)
            .await
            .unwrap()
            .unwrap()
            .used_at,
        Some(at(10))
    );
    let current = &nexts[fresh[0]];
    let third = new_refresh(&grant, at(20));
    assert!(matches!(
        s.rotate_refresh_token(&current.token_hash, at(20), &third)
            .await
            .unwrap(),
        Consumed::Fresh(_)
    ));
    // Expired: invalid, and unspent.
    let fourth = new_refresh(&grant, at(30));
    let after = third.expires_at;
    assert!(matches!(
        s.rotate_refresh_token(&third.token_hash, after, &fourth)
            .await
            .unwrap(),
        Consumed::Invalid
    ));
    assert_eq!(
        s.find_refresh_token(&third.token_hash)
            .await
            .unwrap()
            .unwrap()
            .used_at,
        None
    );
    assert!(
        s.find_refresh_token(&fourth.token_hash)
            .await
            .unwrap()
            .is_none()
    );

    // Revoking the grant: once; its refresh tokens stop.
    let ev = event("oauth.grant_revoked", "grant", &grant.id)
        .of_user(&ada.id)
        .when(at(40));
    assert!(s.revoke_grant(&grant.id, at(40), &ev).await.unwrap());
    assert_logged(s, &ev).await;
    let ev2 = event("oauth.grant_revoked", "grant", &grant.id).when(at(41));
    assert!(!s.revoke_grant(&grant.id, at(41), &ev2).await.unwrap());
    assert_eq!(
        s.find_grant(&grant.id).await.unwrap().unwrap().revoked_at,
        Some(at(40))
    );
    assert!(
        s.find_refresh_token(&third.token_hash)
            .await
            .unwrap()
            .unwrap()
            .grant_revoked
    );
    let fifth = new_refresh(&grant, at(50));
    assert!(matches!(
        s.rotate_refresh_token(&third.token_hash, at(50), &fifth)
            .await
            .unwrap(),
        Consumed::Invalid
    ));
    assert!(
        s.find_refresh_token(&fifth.token_hash)
            .await
            .unwrap()
            .is_none()
    );
    let since = s.list_revoked_grants(at(39)).await.unwrap();
    assert!(since.contains(&grant.id));
    assert!(!since.contains(&late.id));
    assert!(
        !s.list_revoked_grants(at(40))
            .await
            .unwrap()
            .contains(&grant.id)
    );
    assert_eq!(count_action(s, "oauth.grant_revoked").await, 1);
}

/// The audit log: every event reads back with its fields, newest first, in its user's and its
/// organisation's view, page by page.
async fn story_events(store: Arc<dyn Store>) {
    let s = &*store;
    let ada = new_user("ada@example.com");
    let bob = new_user("bob@example.com");
    let acme = new_org("Acme", &[]);
    let (token, _) = new_token(&Owner::Organisation(acme.id.clone()), "ci");
    let mut written = Vec::new();

    let ev = event("user.created", "user", ada.id.as_str())
        .of_user(&ada.id)
        .by("anonymous", Some("2001:db8::7"))
        .when(at(1));
    s.create_user(&ada, &ev).await.unwrap();
    written.push(ev);
    let ev = event("user.created", "user", bob.id.as_str())
        .of_user(&bob.id)
        .when(at(2));
    s.create_user(&bob, &ev).await.unwrap();
    written.push(ev);
    let ev = event("org.created", "organisation", acme.id.as_str())
        .of_org(&acme.id)
        .by(ada.id.as_str(), Some("198.51.100.4"))
        .when(at(3));
    let token_ev = token_event("token.created", &token)
        .by(ada.id.as_str(), None)
        .outcome("success", Some(r#"{"name":"ci token","type":"ci"}"#))
        .when(at(3));
    s.create_org(&acme, &ev, Some((&token, &token_ev)))
        .await
        .unwrap();
    written.push(ev);
    written.push(token_ev);
    let ev = event("org.member_added", "user", ada.id.as_str())
        .of_org(&acme.id)
        .of_user(&ada.id)
        .when(at(4));
    s.upsert_membership(&acme.id, &ada.id, Role::Admin, at(4), true, &ev)
        .await
        .unwrap();
    written.push(ev);
    let ev = event("session.refused", "user", bob.email.as_str())
        .by("anonymous", Some("192.0.2.1"))
        .outcome("denied", Some(r#"{"reason":"wrong_password"}"#))
        .when(at(5));
    s.insert_event(&ev).await.unwrap();
    written.push(ev);
    let ev = event("token.revoked", "token", token.id.as_str())
        .of_org(&acme.id)
        .of_user(&bob.id)
        .by(bob.id.as_str(), Some("10.1.2.3"))
        .when(at(6));
    assert!(s.revoke_token(&token.id, at(6), &ev).await.unwrap());
    written.push(ev);

    for ev in &written {
        assert_logged(s, ev).await;
    }
    // Newest first, by sequence.
    let all = all_events(s).await;
    let order: Vec<&str> = all.iter().map(|e| e.id.as_str()).collect();
    let expected: Vec<&str> = written.iter().rev().map(|e| e.id.as_str()).collect();
    assert_eq!(order, expected);
    assert!(all.windows(2).all(|w| w[0].seq > w[1].seq));

    // Scopes: a user sees the events naming them; an organisation those naming it.
    let ids = |events: Vec<Event>| events.into_iter().map(|e| e.id).collect::<Vec<_>>();
    let for_scope = |scope: EventScope| {
        let store = Arc::clone(&store);
        async move { ids(store.list_events(&events_of(scope)).await.unwrap()) }
    };
    let expect = |pick: &dyn Fn(&NewEvent) -> bool| {
        written
            .iter()
            .rev()
            .filter(|e| pick(e))
            .map(|e| e.id.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        for_scope(EventScope::User(ada.id.clone())).await,
        expect(&|e| e.user_id.as_ref() == Some(&ada.id))
    );
    assert_eq!(
        for_scope(EventScope::User(bob.id.clone())).await,
        expect(&|e| e.user_id.as_ref() == Some(&bob.id))
    );
    assert_eq!(
        for_scope(EventScope::Org(acme.id.clone())).await,
        expect(&|e| e.org_id.as_ref() == Some(&acme.id))
    );
    assert!(
        for_scope(EventScope::Org(OrgId::from_random(random())))
            .await
            .is_empty()
    );

    // Pages of two, by the cursor: every event once, in order.
    let mut paged = Vec::new();
    let mut before = None;
    loop {
        let page = s
            .list_events(&EventFilter {
                scope: EventScope::All,
                before_seq: before,
                limit: 2,
                matching: EventMatch::default(),
            })
            .await
            .unwrap();
        assert!(page.len() <= 2);
        let Some(last) = page.last() else { break };
        before = Some(last.seq);
        paged.extend(page.into_iter().map(|e| e.id));
    }
    assert_eq!(paged, expected);

    // Narrowed: by the action's start, the subject and the actor, each and together.
    let matching = |m: EventMatch| {
        let store = Arc::clone(&store);
        async move {
            let f = EventFilter {
                matching: m,
                ..events_of(EventScope::All)
            };
            ids(store.list_events(&f).await.unwrap())
        }
    };
    let by_kind = matching(EventMatch {
        action_prefix: Some("token.".into()),
        ..EventMatch::default()
    })
    .await;
    assert_eq!(by_kind, expect(&|e| e.action.starts_with("token.")));
    assert!(!by_kind.is_empty());
    let by_subject = matching(EventMatch {
        subject_id: Some(token.id.to_string()),
        ..EventMatch::default()
    })
    .await;
    assert_eq!(by_subject, expect(&|e| e.subject_id == token.id.as_str()));
    let by_actor = matching(EventMatch {
        actor: Some(bob.id.to_string()),
        ..EventMatch::default()
    })
    .await;
    assert_eq!(by_actor, expect(&|e| e.actor == bob.id.as_str()));
    assert_eq!(by_actor.len(), 1);
    let none = matching(EventMatch {
        action_prefix: Some("session.".into()),
        actor: Some(bob.id.to_string()),
        ..EventMatch::default()
    })
    .await;
    assert!(none.is_empty(), "{none:?}");
    // A prefix is matched as text, never as a pattern.
    let pattern = matching(EventMatch {
        action_prefix: Some("%".into()),
        ..EventMatch::default()
    })
    .await;
    assert!(pattern.is_empty());
}

/// The cancel link of a token with an activation delay: used once, by one of many at once, and
/// only while its token is pending.
async fn story_cancel_links(store: Arc<dyn Store>) {
    let s = &*store;
    let ada = user(s, "ada@example.com").await;
    let owner = Owner::User(ada.id.clone());
    // As `notifications.rs` makes it: 32 random bytes in base62, stored as their SHA-256.
    let cancel_code = || TokenSecret::hash_of(&base62::encode_bytes(&random::<32>(), 43).unwrap());
    let pending = |hash: TokenHash| NewToken {
        active_from: at(3600),
        cancel_code_hash: Some(hash),
        ..new_token(&owner, "personal").0
    };

    let hash = cancel_code();
    let token = pending(hash);
    stored(s, &token).await;
    let link = s.find_cancel_link(&hash).await.unwrap().unwrap();
    assert_eq!(link.token_id, token.id);
    assert_eq!(link.expires_at, at(3600));
    assert_eq!(link.used_at, None);
    assert!(s.find_cancel_link(&cancel_code()).await.unwrap().is_none());

    let results = race(8, |_| {
        let store = Arc::clone(&store);
        let ev = event("token.cancelled", "token", token.id.as_str())
            .of_user(&ada.id)
            .by("anonymous", Some("198.51.100.20"))
            .when(at(10));
        async move { (store.use_cancel_link(&hash, at(10), &ev).await.unwrap(), ev) }
    })
    .await;
    let used: Vec<&NewEvent> = results.iter().filter(|(u, _)| *u).map(|(_, e)| e).collect();
    assert_eq!(used.len(), 1);
    assert_logged(s, used[0]).await;
    assert_eq!(count_action(s, "token.cancelled").await, 1);
    assert_eq!(
        s.find_token(&token.id).await.unwrap().unwrap().revoked_at,
        Some(at(10))
    );
    assert_eq!(
        s.find_cancel_link(&hash).await.unwrap().unwrap().used_at,
        Some(at(10))
    );
    let ev = event("token.cancelled", "token", token.id.as_str()).when(at(11));
    assert!(!s.use_cancel_link(&hash, at(11), &ev).await.unwrap());

    // Too late: the token is active; the link is not spent for nothing.
    let late_hash = cancel_code();
    let late = pending(late_hash);
    stored(s, &late).await;
    let ev = event("token.cancelled", "token", late.id.as_str()).when(at(3600));
    assert!(!s.use_cancel_link(&late_hash, at(3600), &ev).await.unwrap());
    assert!(
        s.find_token(&late.id)
            .await
            .unwrap()
            .unwrap()
            .revoked_at
            .is_none()
    );
    assert_eq!(
        s.find_cancel_link(&late_hash)
            .await
            .unwrap()
            .unwrap()
            .used_at,
        None
    );

    // Revoked meanwhile: nothing to cancel, and the link stays unused.
    let gone_hash = cancel_code();
    let gone = pending(gone_hash);
    stored(s, &gone).await;
    let ev = event("token.revoked", "token", gone.id.as_str()).when(at(20));
    assert!(s.revoke_token(&gone.id, at(20), &ev).await.unwrap());
    let ev = event("token.cancelled", "token", gone.id.as_str()).when(at(30));
    assert!(!s.use_cancel_link(&gone_hash, at(30), &ev).await.unwrap());
    assert_eq!(
        s.find_cancel_link(&gone_hash)
            .await
            .unwrap()
            .unwrap()
            .used_at,
        None
    );
    assert_eq!(
        s.find_token(&gone.id).await.unwrap().unwrap().revoked_at,
        Some(at(20))
    );
    let ev = event("token.cancelled", "token", "tok_unknown").when(at(30));
    assert!(
        !s.use_cancel_link(&cancel_code(), at(30), &ev)
            .await
            .unwrap()
    );
    assert_eq!(count_action(s, "token.cancelled").await, 1);
}

/// A code whose grant was revoked before it was exchanged (the kill switch, a consent withdrawn)
/// is refused like the refresh tokens of that grant: "revoking it refuses all of them".
async fn story_code_of_revoked_grant_is_refused(store: Arc<dyn Store>) {
    let s = &*store;
    let ada = user(s, "ada@example.com").await;
    let acme = org_with_admin(s, "Acme", &ada.id).await;
    let client = new_client(&acme.id);
    let ev = event("client.created", "client", &client.id).of_org(&acme.id);
    s.create_client(&client, None, &ev).await.unwrap();
    let grant = new_grant(&client, &ada.id);
    let code = new_code(&grant, at(60));
    let ev = event("oauth.consented", "grant", &grant.id).of_user(&ada.id);
    s.create_grant_with_code(&grant, &code, &ev).await.unwrap();
    let ev = event("oauth.grant_revoked", "grant", &grant.id).when(at(5));
    assert!(s.revoke_grant(&grant.id, at(5), &ev).await.unwrap());

    let refresh = new_refresh(&grant, at(10));
    let outcome = s
        .consume_auth_code(&code.code_hash, at(10), Some(&refresh))
        .await
        .unwrap();
    assert!(
        !matches!(outcome, Consumed::Fresh(_)),
        "a revoked grant's code was spent: {outcome:?}"
    );
    assert!(
        s.find_refresh_token(&refresh.token_hash)
            .await
            .unwrap()
            .is_none(),
        "a refresh token was stored for a revoked grant"
    );
}

/// Console sessions: found until they expire, touched only forward, deleted; a password
/// rehash is a compare-and-set.
async fn story_sessions_and_rehash(store: Arc<dyn Store>) {
    let s = &*store;
    let ada = user(s, "ada@example.com").await;
    let session_secret = secret("lkses");
    let session = NewSession {
        id: SessionId::from_random(random()).to_string(),
        token_hash: session_secret.hash(),
        user_id: ada.id.clone(),
        created_at: T0,
        user_version: 1,
        expires_at: at(DAY),
    };
    let ev = event("session.created", "session", &session.id).of_user(&ada.id);
    s.create_session(&session, &ev).await.unwrap();
    assert_logged(s, &ev).await;
    let found = s
        .find_session(&session_secret.hash(), at(10))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.id, session.id);
    assert_eq!(found.user_id, ada.id);
    assert_eq!((found.created_at, found.expires_at), (T0, at(DAY)));
    assert_eq!(found.last_seen_at, T0, "never used: seen when made");
    s.touch_session(&session.id, at(600)).await.unwrap();
    s.touch_session(&session.id, at(300)).await.unwrap();
    let found = s
        .find_session(&session_secret.hash(), at(700))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        found.last_seen_at,
        at(600),
        "a late touch does not move it back"
    );
    assert!(
        s.find_session(&session_secret.hash(), at(DAY))
            .await
            .unwrap()
            .is_none(),
        "expired"
    );
    assert!(
        s.find_session(&secret("lkses").hash(), at(10))
            .await
            .unwrap()
            .is_none()
    );
    let ev = event("session.deleted", "session", &session.id).of_user(&ada.id);
    s.delete_session(&session.id, &ev).await.unwrap();
    assert_logged(s, &ev).await;
    assert!(
        s.find_session(&session_secret.hash(), at(10))
            .await
            .unwrap()
            .is_none()
    );

    let old = ada.password_hash.clone();
    assert!(
        s.rehash_password(&ada.id, &old, "$argon2id$stronger")
            .await
            .unwrap()
    );
    assert!(
        !s.rehash_password(&ada.id, &old, "$argon2id$stale")
            .await
            .unwrap(),
        "the old hash is gone: a stale rehash must not win"
    );
    assert_eq!(
        s.find_user(&ada.id).await.unwrap().unwrap().password_hash,
        "$argon2id$stronger"
    );

    // Sessions end when the caller says so, and only then: the rule is the service's.
    let kept_secret = secret("lkses");
    let kept = NewSession {
        id: SessionId::from_random(random()).to_string(),
        token_hash: kept_secret.hash(),
        ..session
    };
    let ev = event("session.created", "session", &kept.id).of_user(&ada.id);
    s.create_session(&kept, &ev).await.unwrap();
    let ev = event("user.updated", "user", ada.id.as_str()).of_user(&ada.id);
    let disable = UserChange {
        disabled: Some(true),
        ..UserChange::default()
    };
    s.update_user(&ada.id, &disable, &ev).await.unwrap();
    assert!(
        s.find_session(&kept_secret.hash(), at(10))
            .await
            .unwrap()
            .is_some(),
        "a session ended without end_sessions"
    );
    let ev = event("user.updated", "user", ada.id.as_str()).of_user(&ada.id);
    let end = UserChange {
        end_sessions: true,
        ..UserChange::default()
    };
    s.update_user(&ada.id, &end, &ev).await.unwrap();
    assert!(
        s.find_session(&kept_secret.hash(), at(10))
            .await
            .unwrap()
            .is_none(),
        "end_sessions kept a session"
    );
}

/// OAuth clients: secrets within a limit under a crowd, revoked once; a client updated, then
/// deleted with its secrets; the JWT deny-list, with expired entries dropped.
async fn story_clients_and_deny_list(store: Arc<dyn Store>) {
    let s = &*store;
    let ada = user(s, "ada@example.com").await;
    let acme = org_with_admin(s, "Acme", &ada.id).await;
    let client = new_client(&acme.id);
    let first = new_client_secret(&client);
    let ev = event("client.created", "client", &client.id).of_org(&acme.id);
    s.create_client(&client, Some(&first), &ev).await.unwrap();
    let public = OAuthClient {
        is_confidential: false,
        redirect_uris: vec!["https://spa.example.com/".into()],
        ..new_client(&acme.id)
    };
    let ev = event("client.created", "client", &public.id).of_org(&acme.id);
    s.create_client(&public, None, &ev).await.unwrap();
    let listed: Vec<String> = s
        .list_clients(&acme.id)
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(listed, vec![client.id.clone(), public.id.clone()]);
    let dup = OAuthClient {
        name: "Copy".into(),
        ..client.clone()
    };
    let err = s
        .create_client(&dup, None, &event("client.created", "client", &dup.id))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");

    // At most two live secrets: ten requests for a second one at once, one gets it.
    let secrets: Vec<NewClientSecret> = (0..10).map(|_| new_client_secret(&client)).collect();
    let results = race(secrets.len(), |i| {
        let store = Arc::clone(&store);
        let secret = secrets[i].clone();
        async move {
            let ev = event("client_secret.created", "client", &secret.client_id);
            store.add_client_secret_within_limit(&secret, 2, &ev).await
        }
    })
    .await;
    let added: Vec<usize> = (0..results.len()).filter(|i| results[*i].is_ok()).collect();
    assert_eq!(added.len(), 1, "{results:?}");
    assert!(
        results
            .iter()
            .filter(|r| r.is_err())
            .all(|r| matches!(r, Err(StoreError::LimitReached)))
    );
    let second = &secrets[added[0]];
    let ids: Vec<String> = s
        .list_client_secrets(&client.id)
        .await
        .unwrap()
        .into_iter()
        .map(|x| x.id)
        .collect();
    assert_eq!(ids, vec![first.id.clone(), second.id.clone()]);
    let found = s
        .find_client_secret(&second.secret_hash)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (found.id.as_str(), found.hint.as_str()),
        (second.id.as_str(), second.hint.as_str())
    );
    assert_eq!(found.last_used_at, None, "never used yet");

    // Last use: written in a batch, read back by both reads, never moved back.
    s.record_client_secret_usage(&[(second.id.clone(), at(7)), (first.id.clone(), at(5))])
        .await
        .unwrap();
    s.record_client_secret_usage(&[(second.id.clone(), at(6))])
        .await
        .unwrap();
    s.record_client_secret_usage(&[]).await.unwrap();
    let used: Vec<_> = s
        .list_client_secrets(&client.id)
        .await
        .unwrap()
        .into_iter()
        .map(|x| x.last_used_at)
        .collect();
    assert_eq!(used, vec![Some(at(5)), Some(at(7))]);
    let found = s
        .find_client_secret(&second.secret_hash)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.last_used_at, Some(at(7)));

    let ev = event("client_secret.revoked", "client", &client.id).of_org(&acme.id);
    assert!(
        s.revoke_client_secret(&client.id, &first.id, at(10), &ev)
            .await
            .unwrap()
    );
    assert_logged(s, &ev).await;
    let ev = event("client_secret.revoked", "client", &client.id);
    assert!(
        !s.revoke_client_secret(&client.id, &first.id, at(11), &ev)
            .await
            .unwrap()
    );
    assert!(
        !s.revoke_client_secret(&public.id, &second.id, at(11), &ev)
            .await
            .unwrap(),
        "a secret is revoked only through its own client"
    );
    assert!(
        s.find_client_secret(&first.secret_hash)
            .await
            .unwrap()
            .is_none()
    );
    let revoked = s.list_client_secrets(&client.id).await.unwrap();
    assert_eq!(revoked[0].revoked_at, Some(at(10)));
    assert_eq!(revoked[1].revoked_at, None);

    // Updated: only what is named changes.
    let change = ClientChange {
        name: Some("Dashboard 2".into()),
        redirect_uris: Some(vec![
            "https://app.example.com/callback".into(),
            "https://app.example.com/v2/callback".into(),
        ]),
        can_introspect: Some(true),
        ..ClientChange::default()
    };
    let ev = event("client.updated", "client", &client.id).of_org(&acme.id);
    s.update_client(&client.id, &change, &ev).await.unwrap();
    let updated = s.find_client(&client.id).await.unwrap().unwrap();
    assert_eq!(updated.name, "Dashboard 2");
    assert_eq!(updated.redirect_uris, change.redirect_uris.clone().unwrap());
    assert!(updated.can_introspect);
    assert_eq!(updated.grant_types, client.grant_types);
    assert_eq!(updated.scopes, client.scopes);
    let uris: BTreeSet<String> = s
        .list_live_redirect_uris()
        .await
        .unwrap()
        .into_iter()
        .collect();
    assert_eq!(
        uris,
        [
            "https://app.example.com/callback".to_owned(),
            "https://app.example.com/v2/callback".to_owned(),
            "https://spa.example.com/".to_owned(),
        ]
        .into()
    );

    // Deleted: once; kept as a record, out of the lists, its secrets revoked.
    let ev = event("client.deleted", "client", &client.id).of_org(&acme.id);
    assert!(s.delete_client(&client.id, at(20), &ev).await.unwrap());
    assert_logged(s, &ev).await;
    let ev = event("client.deleted", "client", &client.id);
    assert!(!s.delete_client(&client.id, at(21), &ev).await.unwrap());
    assert_eq!(
        s.find_client(&client.id).await.unwrap().unwrap().deleted_at,
        Some(at(20))
    );
    let listed: Vec<String> = s
        .list_clients(&acme.id)
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(listed, vec![public.id.clone()]);
    assert!(
        s.find_client_secret(&second.secret_hash)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        s.list_live_redirect_uris().await.unwrap(),
        vec!["https://spa.example.com/".to_owned()]
    );
    let err = s
        .update_client(
            &client.id,
            &change,
            &event("client.updated", "client", &client.id),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");

    // The deny-list: a jti listed until it expires; listing it twice is harmless.
    let ev = event("access_token.revoked", "client", &public.id).of_org(&acme.id);
    s.revoke_access_token("jti-long", at(3600), Some(&ev))
        .await
        .unwrap();
    assert_logged(s, &ev).await;
    s.revoke_access_token("jti-long", at(3600), None)
        .await
        .unwrap();
    s.revoke_access_token("jti-short", at(60), None)
        .await
        .unwrap();
    let listed: BTreeSet<String> = s
        .list_revoked_access_tokens(at(10))
        .await
        .unwrap()
        .into_iter()
        .collect();
    assert_eq!(
        listed,
        ["jti-long".to_owned(), "jti-short".to_owned()].into()
    );
    assert_eq!(
        s.list_revoked_access_tokens(at(60)).await.unwrap(),
        vec!["jti-long".to_owned()]
    );
}

/// Signing keys: a new key retires the others when asked; a key stays published while a token
/// it signed lives.
async fn story_signing_keys(store: Arc<dyn Store>) {
    let s = &*store;
    let key = |kid: &str, use_from: Timestamp| StoredSigningKey {
        kid: kid.into(),
        alg: "EdDSA".into(),
        private_key: random::<64>().to_vec(),
        created_at: use_from,
        use_from,
        retired_at: None,
    };
    let k1 = key("k1", T0);
    let ev = event("keys.rotated", "key", "k1");
    s.insert_signing_key(&k1, None, &ev).await.unwrap();
    assert_logged(s, &ev).await;
    let k2 = key("k2", at(100));
    let ev = event("keys.rotated", "key", "k2").when(at(100));
    s.insert_signing_key(&k2, Some(at(100)), &ev).await.unwrap();
    let keys = s.list_signing_keys().await.unwrap();
    let seen: Vec<_> = keys
        .iter()
        .map(|k| (k.kid.as_str(), k.use_from, k.retired_at))
        .collect();
    assert_eq!(
        seen,
        vec![("k2", at(100), None), ("k1", T0, Some(at(100)))],
        "newest first; the old key retired"
    );
    assert_eq!(keys[0].private_key, k2.private_key);
    assert_eq!(keys[0].alg, "EdDSA");
    let err = s
        .insert_signing_key(&k1, None, &event("keys.rotated", "key", "k1"))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");

    let ada = user(s, "ada@example.com").await;
    let owner = Owner::User(ada.id.clone());
    let (jwt, _) = new_token(&owner, "jwt");
    let jwt = NewToken {
        signing_kid: Some("k1".into()),
        ..jwt
    };
    stored(s, &jwt).await;
    assert_eq!(
        s.find_token(&jwt.id).await.unwrap().unwrap().signing_kid,
        Some("k1".into())
    );
    assert_eq!(
        s.live_signing_kids(at(200)).await.unwrap(),
        vec!["k1".to_owned()]
    );
    assert!(
        s.live_signing_kids(at(91 * DAY)).await.unwrap().is_empty(),
        "expired"
    );
    let ev = event("token.revoked", "token", jwt.id.as_str());
    assert!(s.revoke_token(&jwt.id, at(300), &ev).await.unwrap());
    assert!(s.live_signing_kids(at(300)).await.unwrap().is_empty());
}

/// The change log and the listener: each committed write names what it altered; the listener
/// hears of it right after the commit (the outbox wake included, which the log does not carry);
/// a write that changed nothing or rolled back reports nothing; the log reads in order, in
/// pages, and pruning keeps the latest.
async fn story_change_log(store: Arc<dyn Store>) {
    let s = &*store;
    let heard: Arc<std::sync::Mutex<Vec<Vec<Change>>>> = Arc::default();
    let sink = Arc::clone(&heard);
    s.set_change_listener(Arc::new(move |changes: &[Change]| {
        sink.lock().unwrap().push(changes.to_vec());
    }));
    let heard_now = || std::mem::take(&mut *heard.lock().unwrap());
    let start = s.latest_change().await.unwrap();
    assert!(s.list_changes_since(start, 100).await.unwrap().is_empty());

    let ada = user(s, "ada@example.com").await;
    let owner = Owner::User(ada.id.clone());
    let (token, _) = new_token(&owner, "personal");
    stored(s, &token).await;
    assert!(
        heard_now().is_empty(),
        "a new user and token alter no answer"
    );

    let ev = token_event("token.revoked", &token);
    assert!(s.revoke_token(&token.id, at(10), &ev).await.unwrap());
    let ev = event("user.updated", "user", ada.id.as_str()).of_user(&ada.id);
    let disable = UserChange {
        disabled: Some(true),
        ..UserChange::default()
    };
    s.update_user(&ada.id, &disable, &ev).await.unwrap();
    let ev = token_event("token.revoked", &token);
    assert!(!s.revoke_token(&token.id, at(20), &ev).await.unwrap());
    let mailed = event("token.leak_reported", "token", token.id.as_str())
        .of_user(&ada.id)
        .with_mail(new_mail(&ada.email, "Your token was found", None));
    s.insert_event(&mailed).await.unwrap();
    assert_eq!(
        heard_now(),
        vec![
            vec![Change::Token(token.id.clone())],
            vec![Change::User(ada.id.clone())],
            vec![Change::Outbox],
        ],
        "one call per commit; the refused second revocation is not one"
    );

    let log = s.list_changes_since(start, 100).await.unwrap();
    let changes: Vec<&Change> = log.iter().map(|(_, c)| c).collect();
    assert_eq!(
        changes,
        vec![
            &Change::Token(token.id.clone()),
            &Change::User(ada.id.clone())
        ],
        "the shared changes, in commit order; the outbox wake stays in its process"
    );
    assert!(log[0].0 > start && log[1].0 > log[0].0, "{log:?}");
    assert_eq!(s.latest_change().await.unwrap(), log[1].0);
    assert_eq!(s.list_changes_since(start, 1).await.unwrap(), log[..1]);
    assert_eq!(s.list_changes_since(log[0].0, 100).await.unwrap(), log[1..]);

    for i in 0..5 {
        let ev = event("user.updated", "user", ada.id.as_str()).when(at(100 + i));
        s.update_user(&ada.id, &UserChange::default(), &ev)
            .await
            .unwrap();
    }
    let latest = s.latest_change().await.unwrap();
    s.prune_changes(2).await.unwrap();
    let kept = s.list_changes_since(0, 100).await.unwrap();
    assert_eq!(kept.len(), 2, "{kept:?}");
    assert_eq!(kept[1].0, latest);
    assert_eq!(
        s.latest_change().await.unwrap(),
        latest,
        "pruning keeps the latest"
    );
}

/// Many writers at once while another process polls the log: the poller, reading onwards from
/// the last number it saw, misses none of them (numbers are in commit order, not in the order
/// the writes began).
async fn story_parallel_writes_reach_the_change_log(store: Arc<dyn Store>) {
    let s = &*store;
    let ada = user(s, "ada@example.com").await;
    let owner = Owner::User(ada.id.clone());
    let mut tokens = Vec::new();
    for _ in 0..96 {
        let (token, _) = new_token(&owner, "personal");
        stored(s, &token).await;
        tokens.push(token);
    }
    let start = s.latest_change().await.unwrap();
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let poller = {
        let store = Arc::clone(&store);
        let done = Arc::clone(&done);
        tokio::spawn(async move {
            let mut seen = Vec::new();
            let mut last = start;
            loop {
                // Read after the flag: a poll that began once every write had returned.
                let finished = done.load(Ordering::SeqCst);
                let page = store.list_changes_since(last, 1000).await.unwrap();
                for (seq, change) in page {
                    assert!(seq > last);
                    last = seq;
                    seen.push(change);
                }
                if finished {
                    return seen;
                }
                tokio::task::yield_now().await;
            }
        })
    };
    let jobs: Vec<NewToken> = tokens.clone();
    let results = race(8, |i| {
        let store = Arc::clone(&store);
        let mine: Vec<NewToken> = jobs.iter().skip(i).step_by(8).cloned().collect();
        async move {
            for token in &mine {
                let ev = token_event("token.revoked", token);
                assert!(store.revoke_token(&token.id, at(5), &ev).await.unwrap());
            }
        }
    })
    .await;
    assert_eq!(results.len(), 8);
    done.store(true, Ordering::SeqCst);
    let seen = poller.await.unwrap();
    let seen: HashSet<Change> = seen.into_iter().collect();
    let written: HashSet<Change> = tokens.iter().map(|t| Change::Token(t.id.clone())).collect();
    let missed: Vec<_> = written.difference(&seen).collect();
    assert!(
        missed.is_empty(),
        "the poller missed {} changes: {missed:?}",
        missed.len()
    );
}

/// Two rotations of the signing keys at once (two instances' schedules): the result is that of
/// one after the other, a single key left unretired.
async fn story_parallel_key_rotations_leave_one_key(store: Arc<dyn Store>) {
    let s = &*store;
    let key = |kid: String| StoredSigningKey {
        kid,
        alg: "EdDSA".into(),
        private_key: random::<64>().to_vec(),
        created_at: T0,
        use_from: T0,
        retired_at: None,
    };
    let ev = event("keys.rotated", "key", "k0");
    s.insert_signing_key(&key("k0".into()), None, &ev)
        .await
        .unwrap();
    let results = race(8, |i| {
        let store = Arc::clone(&store);
        let k = key(format!("k{}", i + 1));
        async move {
            let ev = event("keys.rotated", "key", &k.kid).when(at(100));
            store.insert_signing_key(&k, Some(at(100)), &ev).await
        }
    })
    .await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    let keys = s.list_signing_keys().await.unwrap();
    assert_eq!(keys.len(), 9);
    let unretired: Vec<_> = keys
        .iter()
        .filter(|k| k.retired_at.is_none())
        .map(|k| k.kid.as_str())
        .collect();
    assert_eq!(unretired.len(), 1, "{unretired:?}");
}

/// Ties are broken by id, feature or key id in byte order (SQLite's), whatever collation a
/// PostgreSQL database was created with: ids are base62, mixed case, which a language's
/// collation would order otherwise (`a` before `B`).
async fn story_ties_are_ordered_by_bytes(store: Arc<dyn Store>) {
    let s = &*store;
    let ids = |prefix: &str| -> Vec<String> {
        ["z", "B", "a", "0", "Z"]
            .iter()
            .map(|c| format!("{prefix}_{}", c.repeat(22)))
            .collect()
    };
    let mut orgs = Vec::new();
    for id in ids("org") {
        let org = NewOrg {
            id: id.parse().unwrap(),
            ..new_org("Tie", &["beta", "Alpha", "zeta", "Zulu"])
        };
        let ev = event("org.created", "organisation", org.id.as_str()).of_org(&org.id);
        s.create_org(&org, &ev, None).await.unwrap();
        orgs.push(org.id);
    }
    let listed: Vec<OrgId> = s
        .list_orgs()
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.id)
        .collect();
    let mut bytewise = orgs.clone();
    bytewise.sort_by(|a, b| a.as_str().as_bytes().cmp(b.as_str().as_bytes()));
    assert_eq!(listed, bytewise, "same creation time: by id, in byte order");
    let features = s.find_org(&orgs[0]).await.unwrap().unwrap().features;
    assert_eq!(features, ["Alpha", "Zulu", "beta", "zeta"]);

    let owner = Owner::Organisation(orgs[0].clone());
    let mut tokens = Vec::new();
    for id in ids("tok") {
        let (token, _) = new_token(&owner, "api");
        let token = NewToken {
            id: id.parse().unwrap(),
            ..token
        };
        stored(s, &token).await;
        tokens.push(token.id.as_str().to_owned());
    }
    tokens.sort();
    let listed: Vec<String> = s
        .list_tokens(&owner_tokens(&owner))
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.id.as_str().to_owned())
        .collect();
    assert_eq!(listed, tokens, "same creation time: by id, in byte order");

    for kid in ["b", "C", "a"] {
        let key = StoredSigningKey {
            kid: kid.into(),
            alg: "EdDSA".into(),
            private_key: random::<64>().to_vec(),
            created_at: T0,
            use_from: T0,
            retired_at: None,
        };
        let ev = event("keys.rotated", "key", kid);
        s.insert_signing_key(&key, None, &ev).await.unwrap();
    }
    let kids: Vec<String> = s
        .list_signing_keys()
        .await
        .unwrap()
        .into_iter()
        .map(|k| k.kid)
        .collect();
    assert_eq!(kids, ["C", "a", "b"]);
}

/// Where and when tokens are used: the last use never moves back; live tokens come with their
/// hash, in pages that end (revoked and expired ones left out); an address is new once, even to
/// many at once.
async fn story_token_usage_and_addresses(store: Arc<dyn Store>) {
    let s = &*store;
    let ada = user(s, "ada@example.com").await;
    let owner = Owner::User(ada.id.clone());
    let (a, a_secret) = new_token(&owner, "personal");
    // The other kind of every column than `a` has, and a name JSON must escape.
    let (mut b, b_secret) = new_token(&owner, "personal");
    b.secret_ciphertext = None;
    b.allowed_ips = vec![];
    b.signing_kid = Some("kid-1".into());
    b.rotated_from = Some(a.id.clone());
    b.ends_on_first_use = Some(a.id.clone());
    b.expires_at = None;
    b.name = "Ada's \"key\" \\ ✓\n".into();
    let (c, _) = new_token(&owner, "personal");
    // Expired before the pages are read (`at(30)` below), never revoked.
    let (mut d, _) = new_token(&owner, "personal");
    d.expires_at = Some(at(20));
    for t in [&a, &b, &c, &d] {
        stored(s, t).await;
    }
    let ev = event("token.revoked", "token", c.id.as_str());
    assert!(s.revoke_token(&c.id, at(1), &ev).await.unwrap());
    let usage = |token: &NewToken, secs: i64, ip: &str| TokenUsage {
        token_id: token.id.clone(),
        at: at(secs),
        ip: ip.into(),
    };
    s.record_token_usage(&[usage(&a, 10, "10.0.0.1"), usage(&b, 20, "10.0.0.2")])
        .await
        .unwrap();
    s.record_token_usage(&[]).await.unwrap();
    let found = s.find_token(&a.id).await.unwrap().unwrap();
    assert_eq!(
        (found.last_used_at, found.last_used_ip.as_deref()),
        (Some(at(10)), Some("10.0.0.1"))
    );
    let live = s
        .list_live_tokens_with_hashes(at(30), None, 10)
        .await
        .unwrap();
    let mut ids: Vec<&TokenId> = live.tokens.iter().map(|(_, t)| &t.id).collect();
    ids.sort();
    let mut want = vec![&a.id, &b.id];
    want.sort();
    assert_eq!(ids, want, "the live ones; revoked and expired left out");
    for (hash, t) in &live.tokens {
        let secret = if t.id == a.id { &a_secret } else { &b_secret };
        assert_eq!(hash, secret.hash().as_bytes());
        let one = s.find_token(&t.id).await.unwrap().unwrap();
        assert_eq!(
            format!("{t:?}"),
            format!("{one:?}"),
            "a warm-up page reads every column as a token's own read does"
        );
    }
    // Pages: one at a time, each from where the one before ended, until one says it is the
    // last (a page may hold only tokens left out, and still lead on); every live token once.
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    let mut ended = false;
    for _ in 0..10 {
        let page = s
            .list_live_tokens_with_hashes(at(30), after.as_deref(), 1)
            .await
            .unwrap();
        assert!(page.tokens.len() <= 1);
        seen.extend(page.tokens.into_iter().map(|(_, t)| t.id));
        match page.next {
            Some(next) => after = Some(next),
            None => {
                ended = true;
                break;
            }
        }
    }
    assert!(ended, "the pages end");
    seen.sort();
    assert_eq!(seen.iter().collect::<Vec<_>>(), want);

    // Many first uses from one address at once: one is new, one event.
    let results = race(8, |_| {
        let store = Arc::clone(&store);
        let id = a.id.clone();
        let ev = event("token.new_address", "token", id.as_str())
            .of_user(&ada.id)
            .by("anonymous", Some("198.51.100.7"))
            .when(at(40));
        async move {
            let new = store
                .record_token_address(&id, "198.51.100.7", at(40), &ev)
                .await
                .unwrap();
            (new, ev)
        }
    })
    .await;
    let new: Vec<&NewEvent> = results.iter().filter(|(n, _)| *n).map(|(_, e)| e).collect();
    assert_eq!(new.len(), 1);
    assert_logged(s, new[0]).await;
    assert_eq!(count_action(s, "token.new_address").await, 1);

    let pairs = vec![
        (a.id.clone(), "198.51.100.7".to_owned()),
        (a.id.clone(), "203.0.113.5".to_owned()),
        (b.id.clone(), "198.51.100.7".to_owned()),
    ];
    assert_eq!(
        s.list_unseen_token_addresses(&pairs).await.unwrap(),
        pairs[1..].to_vec()
    );
    let found_at = |token: &NewToken, ip: &str, secs: i64| NewTokenAddress {
        token_id: token.id.clone(),
        ip: ip.into(),
        at: at(secs),
        event: event("token.new_address", "token", token.id.as_str())
            .of_user(&ada.id)
            .by("anonymous", Some(ip))
            .when(at(secs)),
    };
    let batch = vec![
        found_at(&a, "203.0.113.5", 50),
        found_at(&a, "203.0.113.5", 51),
        found_at(&b, "198.51.100.7", 52),
        found_at(&a, "198.51.100.7", 53),
    ];
    assert_eq!(s.record_new_token_addresses(&batch).await.unwrap(), 2);
    assert_eq!(s.record_new_token_addresses(&[]).await.unwrap(), 0);
    assert_logged(s, &batch[0].event).await;
    assert_logged(s, &batch[2].event).await;
    let ids: HashSet<String> = all_events(s).await.into_iter().map(|e| e.id).collect();
    assert!(
        !ids.contains(&batch[1].event.id),
        "a repeat in the batch is skipped with its event"
    );
    assert!(
        !ids.contains(&batch[3].event.id),
        "an address seen before is skipped with its event"
    );
    assert!(
        s.list_unseen_token_addresses(&pairs)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        s.count_token_addresses_since(&a.id, at(40)).await.unwrap(),
        2
    );
    assert_eq!(
        s.count_token_addresses_since(&a.id, at(41)).await.unwrap(),
        1
    );
    assert_eq!(s.count_token_addresses_since(&b.id, T0).await.unwrap(), 1);

    // Seeded in bulk, as used before from one address.
    let seeded: Vec<NewToken> = (0..5).map(|_| new_token(&owner, "bulk").0).collect();
    s.insert_tokens_unchecked(&seeded, Some(("10.9.9.9", at(60))))
        .await
        .unwrap();
    for t in &seeded {
        let found = s.find_token(&t.id).await.unwrap().unwrap();
        assert_eq!(found.last_used_at, Some(at(60)));
        assert_eq!(found.last_used_ip.as_deref(), Some("10.9.9.9"));
    }
    let seen = [(seeded[0].id.clone(), "10.9.9.9".to_owned())];
    assert!(
        s.list_unseen_token_addresses(&seen)
            .await
            .unwrap()
            .is_empty()
    );
}

/// A late usage batch (another instance's, a slow flush) keeps the last use as one fact: its
/// time and its address together.
async fn story_late_usage_keeps_last_address(store: Arc<dyn Store>) {
    let s = &*store;
    let ada = user(s, "ada@example.com").await;
    let (a, _) = new_token(&Owner::User(ada.id.clone()), "personal");
    stored(s, &a).await;
    let use_at = |secs: i64, ip: &str| TokenUsage {
        token_id: a.id.clone(),
        at: at(secs),
        ip: ip.into(),
    };
    s.record_token_usage(&[use_at(20, "10.0.0.20")])
        .await
        .unwrap();
    s.record_token_usage(&[use_at(10, "10.0.0.10")])
        .await
        .unwrap();
    let found = s.find_token(&a.id).await.unwrap().unwrap();
    assert_eq!(
        found.last_used_at,
        Some(at(20)),
        "the last use never moves back"
    );
    assert_eq!(
        found.last_used_ip.as_deref(),
        Some("10.0.0.20"),
        "the address of the last use, not of an older one"
    );
}

/// Expiry notices: the due notice is the smallest step a token has reached and that is shorter
/// than its life; each is recorded once, and only while the token lives.
async fn story_instances(store: Arc<dyn Store>) {
    let id = |n: u8| -> latchkey_core::InstanceId {
        format!("ins_{}", char::from(b'a' + n).to_string().repeat(22))
            .parse()
            .unwrap()
    };
    let instance = |n: u8, started: i64| latchkey_store::Instance {
        id: id(n),
        address: format!("127.0.0.1:{}", 8000 + u16::from(n)),
        version: "1.2.3".into(),
        started_at: at(started),
        heartbeat_at: at(started),
        applied_change: 0,
    };
    assert!(store.list_instances().await.unwrap().is_empty());
    store.register_instance(&instance(0, 0)).await.unwrap();
    store.register_instance(&instance(1, 10)).await.unwrap();
    // Registering again refreshes the row, not a second one.
    store.register_instance(&instance(0, 0)).await.unwrap();
    let listed = store.list_instances().await.unwrap();
    assert_eq!(
        listed.iter().map(|i| i.id.clone()).collect::<Vec<_>>(),
        vec![id(0), id(1)]
    );
    assert_eq!(listed[1].address, "127.0.0.1:8001");
    assert_eq!(listed[1].version, "1.2.3");
    // A beat moves the time and never moves the applied change back.
    store.heartbeat_instance(&id(0), at(60), 42).await.unwrap();
    store.heartbeat_instance(&id(0), at(61), 7).await.unwrap();
    let zero = store.list_instances().await.unwrap().remove(0);
    assert_eq!((zero.heartbeat_at, zero.applied_change), (at(61), 42));
    // Removed by id, or for not being heard from since a time.
    store.remove_instances(None, Some(at(30))).await.unwrap();
    assert_eq!(store.list_instances().await.unwrap().len(), 1);
    store.remove_instances(Some(&id(0)), None).await.unwrap();
    assert!(store.list_instances().await.unwrap().is_empty());
}

async fn story_expiry_notices(store: Arc<dyn Store>) {
    let s = &*store;
    let ada = user(s, "ada@example.com").await;
    let owner = Owner::User(ada.id.clone());
    let lasting = |days: i64| NewToken {
        expires_at: Some(at(days * DAY)),
        ..new_token(&owner, "personal").0
    };
    let five = lasting(5);
    let ten = lasting(10);
    let thirty_two = lasting(32);
    let twenty_five = lasting(25);
    let long = lasting(90);
    let forever = NewToken {
        expires_at: None,
        ..new_token(&owner, "personal").0
    };
    let revoked = lasting(6);
    for t in [
        &five,
        &ten,
        &thirty_two,
        &twenty_five,
        &long,
        &forever,
        &revoked,
    ] {
        stored(s, t).await;
    }
    let ev = event("token.revoked", "token", revoked.id.as_str());
    assert!(s.revoke_token(&revoked.id, at(1), &ev).await.unwrap());
    let steps = [30, 7, 1];
    let now = at(4 * DAY);
    let due = |list: Vec<(latchkey_store::TokenRecord, u32)>| {
        list.into_iter().map(|(t, d)| (t.id, d)).collect::<Vec<_>>()
    };
    assert_eq!(
        due(s
            .list_tokens_due_expiry_notice(now, &steps, 100)
            .await
            .unwrap()),
        vec![
            (five.id.clone(), 1),
            (ten.id.clone(), 7),
            (thirty_two.id.clone(), 30),
        ],
        "soonest first; 25 days of life is owed no 30-day notice and has 21 days left"
    );
    assert_eq!(
        s.list_tokens_due_expiry_notice(now, &steps, 2)
            .await
            .unwrap()
            .len(),
        2
    );
    assert!(
        s.list_tokens_due_expiry_notice(now, &[], 100)
            .await
            .unwrap()
            .is_empty()
    );

    let notice = |t: &NewToken, when: Timestamp| {
        event("token.expiry_notice", "token", t.id.as_str())
            .of_user(&ada.id)
            .when(when)
            .with_mail(new_mail(&ada.email, "Your token expires soon", None))
    };
    let ev = notice(&ten, now);
    assert!(s.record_expiry_notice(&ten.id, 7, &ev).await.unwrap());
    assert_logged(s, &ev).await;
    assert!(
        !s.record_expiry_notice(&ten.id, 7, &notice(&ten, now))
            .await
            .unwrap()
    );
    assert_eq!(count_action(s, "token.expiry_notice").await, 1);
    assert_eq!(
        s.count_unsent_mails().await.unwrap(),
        1,
        "the mail rode on the one event"
    );
    let ev = notice(&revoked, now);
    assert!(
        !s.record_expiry_notice(&revoked.id, 1, &ev).await.unwrap(),
        "a revoked token is told nothing"
    );

    // A rotated token has its replacement: no notice. The next step is owed when reached.
    let (next, _) = new_token(&owner, "personal");
    let next = NewToken {
        rotated_from: Some(thirty_two.id.clone()),
        ..next
    };
    let ev = token_event("token.rotated", &next);
    s.rotate_token(&thirty_two.id, at(32 * DAY), now, &next, &ev)
        .await
        .unwrap();
    assert_eq!(
        due(s
            .list_tokens_due_expiry_notice(now, &steps, 100)
            .await
            .unwrap()),
        vec![(five.id.clone(), 1)]
    );
    let later = at(9 * DAY + 1);
    assert_eq!(
        due(s
            .list_tokens_due_expiry_notice(later, &steps, 100)
            .await
            .unwrap()),
        vec![(ten.id.clone(), 1)],
        "five has expired; ten, told at 7 days, is owed the 1-day notice"
    );
}

// ---------------------------------------------------------------------------------------------
// Backends.

/// A fresh, empty store of one backend, and what must live as long as it.
struct Fresh {
    store: Arc<dyn Store>,
    raw: Raw,
    _keep: Box<dyn std::any::Any + Send + Sync>,
}

/// Reads, straight from a backend's tables, of what the trait deliberately never returns (what
/// is left of a sent mail): one arm per backend.
enum Raw {
    Sqlite { url: String },
    Postgres { url: String },
}

impl Raw {
    /// The body and sealed part a mail still holds.
    async fn mail_residue(&self, id: &MailId) -> (String, Option<Vec<u8>>) {
        match self {
            Self::Sqlite { url } => {
                let pool = sqlx::SqlitePool::connect(&format!("{url}?mode=ro"))
                    .await
                    .unwrap();
                let row = sqlx::query_as("SELECT body, sealed FROM outbox WHERE id = ?")
                    .bind(id.as_str())
                    .fetch_one(&pool)
                    .await
                    .unwrap();
                pool.close().await;
                row
            }
            Self::Postgres { url } => {
                let pool = sqlx::PgPool::connect(url).await.unwrap();
                let row = sqlx::query_as("SELECT body, sealed FROM outbox WHERE id = $1")
                    .bind(id.as_str())
                    .fetch_one(&pool)
                    .await
                    .unwrap();
                pool.close().await;
                row
            }
        }
    }
}

/// SQLite: a new file in a new temporary directory.
async fn fresh_sqlite() -> Fresh {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("latchkey.db").display());
    let store = SqliteStore::connect(&url).await.unwrap();
    Fresh {
        store: Arc::new(store),
        raw: Raw::Sqlite { url },
        _keep: Box::new(dir),
    }
}

/// PostgreSQL: a new database (`lk_<random>`) on the server `TEST_POSTGRES_URL` names, dropped
/// when the story ends. Without that variable the story fails, saying how to provide one: a
/// backend that was not tested must not look as if it passed.
async fn fresh_postgres() -> Fresh {
    #[expect(
        clippy::disallowed_methods,
        reason = "the test harness learns where scripts/test started PostgreSQL"
    )]
    let server = std::env::var("TEST_POSTGRES_URL").unwrap_or_default();
    assert!(
        !server.is_empty(),
        "TEST_POSTGRES_URL is not set: the PostgreSQL stories need a server to create their \
         databases on. Run ./scripts/test (it starts a throw-away PostgreSQL), or start one and \
         set TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:PORT/postgres (a role allowed to \
         CREATE DATABASE)"
    );
    let name = format!(
        "lk_{}",
        random::<8>()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    );
    let admin = sqlx::PgPool::connect(&server)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to TEST_POSTGRES_URL ({server}): {e}"));
    // The name is `lk_` and hex digits: nothing to escape. With a language's collation, as
    // production databases often have (`C` would hide an order that differs from SQLite's).
    let create = format!(
        "CREATE DATABASE {name} TEMPLATE template0 \
         LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C'"
    );
    sqlx::query(sqlx::AssertSqlSafe(create))
        .execute(&admin)
        .await
        .unwrap();
    admin.close().await;
    let url = with_database(&server, &name);
    let store = PgStore::connect(&url).await.unwrap();
    Fresh {
        store: Arc::new(store),
        raw: Raw::Postgres { url },
        _keep: Box::new(DropDatabase { server, name }),
    }
}

/// `url` with its database replaced by `name` (query parameters kept).
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let path_start = base[authority_start..]
        .find('/')
        .map_or(base.len(), |i| authority_start + i);
    let mut out = format!("{}/{name}", &base[..path_start]);
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    out
}

/// Drops a story's database when the story ends (passed or not). `Drop` cannot await, so a
/// thread of its own runs the statement on a small runtime; `WITH (FORCE)` ends the store's
/// pooled connections still open.
struct DropDatabase {
    server: String,
    name: String,
}

impl Drop for DropDatabase {
    fn drop(&mut self) {
        let server = self.server.clone();
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let admin = sqlx::PgPool::connect(&server).await?;
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .execute(&admin)
                    .await?;
                admin.close().await;
                Ok::<_, sqlx::Error>(())
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!(
                "could not drop the test database {}: {dropped:?}",
                self.name
            );
        }
    }
}

/// One test running one story on a fresh store of one backend. Stories race many tasks, so the
/// runtime has several worker threads.
macro_rules! story_test {
    ($fresh:path, $(#[$attr:meta])* $story:ident with raw) => {
        $(#[$attr])*
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn $story() {
            let fresh = $fresh().await;
            crate::$story(Arc::clone(&fresh.store), &fresh.raw).await;
        }
    };
    ($fresh:path, $(#[$attr:meta])* $story:ident) => {
        $(#[$attr])*
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn $story() {
            let fresh = $fresh().await;
            crate::$story(Arc::clone(&fresh.store)).await;
        }
    };
}

/// Every story, on one backend: `conformance_suite!(module, fresh_function)`.
macro_rules! conformance_suite {
    ($backend:ident, $fresh:path) => {
        mod $backend {
            use super::*;

            story_test!($fresh, story_users);
            story_test!($fresh, story_provisioning);
            story_test!($fresh, story_password_resets);
            story_test!($fresh, story_sso_links);
            story_test!($fresh, story_orgs_and_memberships);
            story_test!($fresh, story_parallel_demotions_keep_one_admin);
            story_test!($fresh, story_token_limit_and_idempotency);
            story_test!($fresh, story_tokens_find_revoke_rotate);
            story_test!($fresh, story_kill_switch);
            story_test!($fresh, story_outbox with raw);
            story_test!($fresh, story_oauth);
            story_test!($fresh, story_events);
            story_test!($fresh, story_cancel_links);
            story_test!($fresh, story_code_of_revoked_grant_is_refused);
            story_test!($fresh, story_sessions_and_rehash);
            story_test!($fresh, story_clients_and_deny_list);
            story_test!($fresh, story_signing_keys);
            story_test!($fresh, story_token_usage_and_addresses);
            story_test!($fresh, story_late_usage_keeps_last_address);
            story_test!($fresh, story_expiry_notices);
            story_test!($fresh, story_instances);
            story_test!($fresh, story_change_log);
            story_test!($fresh, story_parallel_writes_reach_the_change_log);
            story_test!($fresh, story_parallel_key_rotations_leave_one_key);
            story_test!($fresh, story_ties_are_ordered_by_bytes);
        }
    };
}

conformance_suite!(sqlite, crate::fresh_sqlite);
conformance_suite!(postgres, crate::fresh_postgres);
