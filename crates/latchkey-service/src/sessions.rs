//! Console and management sessions: a random 256-bit token in the cookie or bearer header,
//! stored as its SHA-256.

use latchkey_core::policy::SESSION_PREFIX;
use latchkey_core::token_string::ParsedToken;
use latchkey_core::{Email, Prefix, SessionId, Timestamp, TokenSecret};
use latchkey_store::{NewSession, User};
use secrecy::SecretString;

use crate::crypto::random_bytes;
use crate::error::{ErrorCode, ServiceError, ServiceResult};
use crate::events::EventSpec;
use crate::{Caller, Service};

/// A signed-in user, as the management endpoints see them.
#[derive(Debug, Clone)]
pub struct SessionUser {
    pub session_id: String,
    pub user: User,
    /// When this session last confirmed who it is at the single-sign-on provider.
    pub reauth_at: Option<Timestamp>,
}

impl SessionUser {
    /// This person, calling from `ip`, with their session's confirmation.
    pub fn caller(&self, ip: Option<std::net::IpAddr>) -> Caller {
        Caller {
            reauth_at: self.reauth_at,
            ..Caller::user(self.user.id.clone(), ip)
        }
    }
}

pub struct NewSessionToken {
    pub secret: TokenSecret,
    pub expires_at: Timestamp,
    pub user: User,
}

fn invalid_credentials() -> ServiceError {
    ServiceError::client(
        ErrorCode::InvalidCredentials,
        "the email or password is not correct",
    )
}

/// Password sign-in (and so password resets and changes) is switched off (`[sso]
/// password_login = false`).
pub(crate) fn password_login_off() -> ServiceError {
    ServiceError::client(
        ErrorCode::Forbidden,
        "password sign-in is switched off here: sign in with single sign-on",
    )
}

/// How stale a session's last-use time may get before a use writes it: the idle timeout is
/// kept to within this, and a busy session costs one write a minute, not one per request.
const LAST_SEEN_EVERY_SECS: i64 = 60;

/// True when the string has the session prefix (whatever else is wrong with it).
pub fn looks_like_session(text: &str) -> bool {
    text.split_once('_')
        .is_some_and(|(p, _)| p == SESSION_PREFIX)
}

impl Service {
    /// True when `text` is shaped like one of our API credentials rather than a session: an
    /// opaque token of a configured type, or a JWT (an `api` token or an OAuth access token).
    /// The shape is enough to tell the caller a session is required; nothing is looked up.
    pub fn is_api_credential(&self, text: &str) -> bool {
        crate::keys::looks_like_jwt(text)
            || ParsedToken::parse(text).is_ok_and(|p| {
                p.prefix() != SESSION_PREFIX && self.types.by_prefix(p.prefix()).is_some()
            })
    }

    /// Signs in. Unknown email, wrong password and disabled account answer identically, and
    /// take the same time: a dummy hash is checked when there is no user, and every refusal,
    /// whoever it is for, goes through [`Service::refuse_login`] and its one audit write.
    pub async fn login(
        &self,
        ip: Option<std::net::IpAddr>,
        email: &str,
        password: &SecretString,
    ) -> ServiceResult<NewSessionToken> {
        if !self.password_login_enabled() {
            return Err(password_login_off());
        }
        let account = email.trim().to_lowercase();
        // Reserved before the user look-up and the hash: parallel guesses share the allowance.
        let attempt = self
            .limits
            .login_attempt(ip, &account, || self.now())
            .await?;
        let user = match Email::parse(email) {
            Ok(email) => self.store.find_user_by_email(&email).await?,
            Err(_) => None,
        };
        let ok = self
            .hasher
            .verify(password, user.as_ref().map(|u| u.password_hash.as_str()))
            .await?;
        let signed_in = ok && user.as_ref().is_some_and(|u| !u.disabled);
        self.metrics.login(signed_in);
        attempt.finish(signed_in, self.now());
        let user = match user {
            Some(user) if signed_in => user,
            other => return Err(self.refuse_login(ip, other.as_ref()).await),
        };
        self.rehash_if_weak(&user, password).await;
        match self.open_session(ip, &user, "session.login", None).await {
            // The password was changed or reset, or the person disabled, while it was being
            // checked: what was checked is no longer the password.
            Err(ServiceError::Client {
                code: ErrorCode::PreconditionFailed,
                ..
            }) => Err(invalid_credentials()),
            other => other,
        }
    }

    /// A new session for `user` (after a sign-in, or a password change that ended the rest).
    pub(crate) async fn open_session(
        &self,
        ip: Option<std::net::IpAddr>,
        user: &User,
        action: &str,
        details: Option<serde_json::Value>,
    ) -> ServiceResult<NewSessionToken> {
        let prefix = Prefix::parse(SESSION_PREFIX)
            .map_err(|_| ServiceError::Internal("session prefix".into()))?;
        let secret = TokenSecret::generate(&prefix, random_bytes()?);
        let now = self.now();
        let expires_at = now + self.settings.session_ttl.to_time();
        let session = NewSession {
            id: SessionId::from_random(random_bytes()?).to_string(),
            token_hash: secret.hash(),
            user_id: user.id.clone(),
            created_at: now,
            expires_at,
            user_version: user.version,
        };
        let caller = Caller::user(user.id.clone(), ip);
        let event = self.event(
            &caller,
            EventSpec {
                action,
                subject_kind: "session",
                subject_id: &session.id,
                user: Some(&user.id),
                org: None,
                outcome: "success",
                details,
            },
        )?;
        self.store.create_session(&session, &event).await?;
        Ok(NewSessionToken {
            secret,
            expires_at,
            user: user.clone(),
        })
    }

    /// Replaces a password hash made with weaker parameters than today's, now that the
    /// password is at hand (SECURITY.md). Best effort: the sign-in has succeeded either way,
    /// and the next one tries again.
    async fn rehash_if_weak(&self, user: &User, password: &SecretString) {
        if !crate::crypto::needs_rehash(&user.password_hash) {
            return;
        }
        let result = match self.hasher.hash(password).await {
            Ok(new_hash) => self
                .store
                .rehash_password(&user.id, &user.password_hash, &new_hash)
                .await
                .map_err(ServiceError::from),
            Err(e) => Err(e),
        };
        match result {
            Ok(_) => {
                tracing::info!(user.id = %user.id, "password hash upgraded to today's parameters")
            }
            Err(e) => {
                tracing::warn!(user.id = %user.id, error = %e, "could not upgrade a password hash")
            }
        }
    }

    /// Records a refused sign-in and returns its answer. One function for every reason (no
    /// such account, wrong password, disabled account) so that each does the same work before
    /// the answer, one audit write, and timing cannot tell a registered email from an unknown
    /// one. An unknown account's event names no email: people type their password into the
    /// email field.
    async fn refuse_login(
        &self,
        ip: Option<std::net::IpAddr>,
        user: Option<&User>,
    ) -> ServiceError {
        let caller = Caller::anonymous(ip);
        let (subject_id, outcome) = match user {
            Some(user) if user.disabled => (user.id.as_str(), "disabled"),
            Some(user) => (user.id.as_str(), "invalid_password"),
            None => ("unknown", "unknown_user"),
        };
        let event = self.event(
            &caller,
            EventSpec {
                action: "session.login",
                subject_kind: "user",
                subject_id,
                user: user.map(|u| &u.id),
                org: None,
                outcome,
                details: None,
            },
        );
        match event {
            Ok(event) => match self.store.insert_event(&event).await {
                Ok(()) => invalid_credentials(),
                Err(e) => e.into(),
            },
            Err(e) => e,
        }
    }

    /// The user behind a session token, if the session is live and the user not disabled.
    pub async fn authenticate_session(&self, text: &str) -> ServiceResult<SessionUser> {
        let unauthenticated = || {
            ServiceError::client(
                ErrorCode::Unauthenticated,
                "sign in first: the session is missing, expired or ended",
            )
        };
        let parsed = ParsedToken::parse(text).map_err(|_| unauthenticated())?;
        if parsed.prefix() != SESSION_PREFIX {
            return Err(unauthenticated());
        }
        let now = self.now();
        let session = self
            .store
            .find_session(&parsed.hash(), now)
            .await?
            .ok_or_else(unauthenticated)?;
        if session.last_seen_at + self.settings.session_idle_timeout.to_time() <= now {
            return Err(unauthenticated());
        }
        if session.last_seen_at + time::Duration::seconds(LAST_SEEN_EVERY_SECS) <= now {
            // Best effort: a use that cannot be noted (storage busy) only makes the session
            // end sooner, and must not fail the request it came with.
            if let Err(e) = self.store.touch_session(&session.id, now).await {
                tracing::warn!(error = %e, "could not note a session's use");
            }
        }
        let user = self
            .store
            .find_user(&session.user_id)
            .await?
            .ok_or_else(unauthenticated)?;
        if user.disabled {
            return Err(unauthenticated());
        }
        Ok(SessionUser {
            session_id: session.id,
            user,
            reauth_at: session.reauth_at,
        })
    }

    pub async fn logout(&self, caller: &Caller, session: &SessionUser) -> ServiceResult<()> {
        let event = self.event(
            caller,
            EventSpec {
                action: "session.logout",
                subject_kind: "session",
                subject_id: &session.session_id,
                user: Some(&session.user.id),
                org: None,
                outcome: "success",
                details: None,
            },
        )?;
        Ok(self
            .store
            .delete_session(&session.session_id, &event)
            .await?)
    }
}

/// The CSRF token of a session: derived from the session secret, so it needs no storage and
/// dies with the session. Forms carry it; the server recomputes and compares in constant time.
pub fn csrf_token_for(session_token: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(format!("latchkey-csrf\0{session_token}").as_bytes());
    digest.iter().take(24).map(|b| format!("{b:02x}")).collect()
}

pub fn csrf_token_matches(session_token: &str, presented: &str) -> bool {
    use subtle::ConstantTimeEq;
    bool::from(
        csrf_token_for(session_token)
            .as_bytes()
            .ct_eq(presented.as_bytes()),
    )
}
