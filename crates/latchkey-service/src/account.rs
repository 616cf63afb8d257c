//! People's own security (SPEC 9): changing one's password, resetting a forgotten one by mail,
//! seeing and ending one's sessions, and seeing and revoking the OAuth apps one has consented
//! to, one at a time. Each is what the person can do to themselves, with the checks and audit
//! events of the rest.

use latchkey_core::{Email, TokenSecret, base62};
use latchkey_store::{NewPasswordReset, OAuthGrant, Session, UserChange};
use secrecy::SecretString;

use crate::error::{ErrorCode, ServiceError, ServiceResult};
use crate::events::EventSpec;
use crate::sessions::{NewSessionToken, SessionUser};
use crate::{Caller, Service};

/// One app a person has consented to: the client and every live grant of it.
#[derive(Debug, Clone)]
pub struct ConsentedApp {
    pub client_id: String,
    pub client_name: String,
    pub scopes: Vec<String>,
    /// When the first live consent was given.
    pub since: latchkey_core::Timestamp,
    pub grants: Vec<String>,
}

/// How long a password reset link works.
pub const RESET_TTL_SECS: i64 = 1_800;

fn reset_link_gone() -> ServiceError {
    ServiceError::client(
        ErrorCode::InvalidRequest,
        "this reset link is unknown, used or expired: ask for a new one",
    )
}

impl Service {
    /// `POST /v1/password-resets`: whoever gives an address gets the same answer, whether the
    /// address is known or not, and about the same work is done either way (one write with its
    /// event); a mail with a single-use link goes out only to a live person who has a password.
    /// The code is stored as its SHA-256 and travels in the outbox sealed under the master
    /// key (SECURITY.md "Files"). Limited per address and per account.
    pub async fn request_password_reset(
        &self,
        ip: std::net::IpAddr,
        email: &str,
    ) -> ServiceResult<()> {
        if !self.password_login_enabled() {
            return Err(crate::sessions::password_login_off());
        }
        // Counted per account by the parsed address (bounded in size), per address always.
        let parsed = Email::parse(email).ok();
        let account = parsed.as_ref().map(|e| e.as_str().to_lowercase());
        self.limits
            .password_reset(ip, account.as_deref(), self.now())?;
        let user = match &parsed {
            Some(email) => self.store.find_user_by_email(email).await?,
            None => None,
        };
        let user = user.filter(|u| {
            !u.disabled && u.deleted_at.is_none() && u.password_hash != latchkey_store::NO_PASSWORD
        });
        let caller = Caller::anonymous(Some(ip));
        let Some(user) = user else {
            // Recorded like any refused request, so the answer takes the same path.
            let event = self.event(
                &caller,
                EventSpec {
                    action: "user.password_reset_requested",
                    subject_kind: "user",
                    subject_id: "",
                    user: None,
                    org: None,
                    outcome: "unknown_account",
                    details: None,
                },
            )?;
            self.store.insert_event(&event).await?;
            return Ok(());
        };
        let (code, code_hash) = crate::notifications::new_cancel_code()?;
        let now = self.now();
        let expires_at = now + time::Duration::seconds(RESET_TTL_SECS);
        let mut event = self.event(
            &caller,
            EventSpec {
                action: "user.password_reset_requested",
                subject_kind: "user",
                subject_id: user.id.as_str(),
                user: Some(&user.id),
                org: None,
                outcome: "success",
                details: None,
            },
        )?;
        let url = crate::mails::reset_url(&self.settings.public_url, crate::mails::SEALED_SLOT);
        event.mails = self.mails_to(
            std::slice::from_ref(&user.email),
            &crate::mails::password_reset(&url, expires_at),
        )?;
        self.seal_into(&mut event.mails, &code)?;
        let reset = NewPasswordReset {
            code_hash,
            user_id: user.id.clone(),
            created_at: now,
            expires_at,
        };
        Ok(self.store.create_password_reset(&reset, &event).await?)
    }

    /// `POST /v1/password-resets/complete`: the new password is checked first (a refused
    /// request uses nothing up); then, in one transaction, the code and every other live code of
    /// the person are used up, the password replaced and every session ended.
    pub async fn complete_password_reset(
        &self,
        ip: std::net::IpAddr,
        code: &str,
        new: &SecretString,
    ) -> ServiceResult<()> {
        if !self.password_login_enabled() {
            return Err(crate::sessions::password_login_off());
        }
        let now = self.now();
        self.limits.check_token_ip(ip, now)?;
        let code = code.trim();
        if code.is_empty() || code.len() > 100 || !base62::is_base62(code) {
            self.limits.bad_token(ip, now);
            return Err(reset_link_gone());
        }
        crate::crypto::check_password_rules(new)?;
        // The code is looked at before anything is hashed: a flood of made-up codes costs a
        // read each, not an Argon2 hash each.
        let code_hash = TokenSecret::hash_of(code);
        if self
            .store
            .find_live_password_reset(&code_hash, now)
            .await?
            .is_none()
        {
            self.limits.bad_token(ip, now);
            return Err(reset_link_gone());
        }
        let password_hash = self.hasher.hash(new).await?;
        let event = self.event(
            &Caller::anonymous(Some(ip)),
            EventSpec {
                action: "user.password_reset",
                subject_kind: "user",
                subject_id: "",
                user: None,
                org: None,
                outcome: "success",
                details: None,
            },
        )?;
        match self
            .store
            .complete_password_reset(&code_hash, now, &password_hash, &event)
            .await?
        {
            Some(_) => Ok(()),
            None => {
                self.limits.bad_token(ip, now);
                Err(reset_link_gone())
            }
        }
    }

    /// `POST /v1/user/password`: the current password first (the re-authentication allowance
    /// of every password prompt), then the new one under the password rules. Every session of
    /// the person ends, this one included, and a new one is opened for the caller: a stolen
    /// session does not outlive the change.
    pub async fn change_password(
        &self,
        caller: &Caller,
        me: &SessionUser,
        current: &SecretString,
        new: &SecretString,
    ) -> ServiceResult<NewSessionToken> {
        if self.reauthenticates_at_provider(&me.user) {
            return Err(ServiceError::client(
                ErrorCode::Forbidden,
                "you sign in with single sign-on: your password is kept by your sign-in provider",
            ));
        }
        self.check_password(caller, &me.user, current, "user.password_changed")
            .await?;
        crate::crypto::check_password_rules(new)?;
        let change = UserChange {
            password_hash: Some(self.hasher.hash(new).await?),
            ..UserChange::default()
        };
        let user = self
            .change_user(caller, &me.user, change, "user.password_changed")
            .await?;
        self.open_session(caller.ip, &user, "session.login", None)
            .await
    }

    /// The person's live sessions, newest first (not those past their idle timeout either:
    /// they no longer work).
    pub async fn list_my_sessions(&self, me: &SessionUser) -> ServiceResult<Vec<Session>> {
        let now = self.now();
        let idle = self.settings.session_idle_timeout.to_time();
        let mut sessions = self.store.list_user_sessions(&me.user.id, now).await?;
        sessions.retain(|s| s.last_seen_at + idle > now);
        Ok(sessions)
    }

    /// Ends one of the person's own sessions (this one too: that is signing out). Anyone
    /// else's is not found.
    pub async fn end_my_session(
        &self,
        caller: &Caller,
        me: &SessionUser,
        id: &str,
    ) -> ServiceResult<()> {
        let mine = self.list_my_sessions(me).await?;
        let Some(session) = mine.iter().find(|s| s.id == id) else {
            return Err(ServiceError::not_found("session"));
        };
        let event = self.event(
            caller,
            EventSpec {
                action: "session.ended",
                subject_kind: "session",
                subject_id: &session.id,
                user: Some(&me.user.id),
                org: None,
                outcome: "success",
                details: None,
            },
        )?;
        Ok(self.store.delete_session(&session.id, &event).await?)
    }

    /// The apps the person has consented to (authorization-code grants still live), one entry
    /// per app.
    pub async fn list_my_apps(&self, me: &SessionUser) -> ServiceResult<Vec<ConsentedApp>> {
        let grants = self.store.list_user_grants(&me.user.id).await?;
        let mut apps: Vec<ConsentedApp> = Vec::new();
        for grant in grants {
            add_grant(&mut apps, grant);
        }
        for app in &mut apps {
            if let Some(client) = self.store.find_client(&app.client_id).await? {
                app.client_name = client.name;
            }
        }
        Ok(apps)
    }

    /// Revokes every consent the person gave one app: its refresh tokens and access tokens
    /// stop at once (the after-commit path drops their cached answers).
    pub async fn revoke_my_app(
        &self,
        caller: &Caller,
        me: &SessionUser,
        client_id: &str,
    ) -> ServiceResult<()> {
        let apps = self.list_my_apps(me).await?;
        let Some(app) = apps.iter().find(|a| a.client_id == client_id) else {
            return Err(ServiceError::not_found("app"));
        };
        for grant in &app.grants {
            self.revoke_grant_as(caller, Some(&me.user.id), grant, "consent_withdrawn")
                .await?;
        }
        Ok(())
    }
}

/// Folds one grant into the per-app list.
fn add_grant(apps: &mut Vec<ConsentedApp>, grant: OAuthGrant) {
    match apps.iter_mut().find(|a| a.client_id == grant.client_id) {
        Some(app) => {
            for scope in grant.scopes {
                if !app.scopes.contains(&scope) {
                    app.scopes.push(scope);
                }
            }
            app.since = app.since.min(grant.created_at);
            app.grants.push(grant.id);
        }
        None => apps.push(ConsentedApp {
            client_name: grant.client_id.clone(),
            client_id: grant.client_id,
            scopes: grant.scopes,
            since: grant.created_at,
            grants: vec![grant.id],
        }),
    }
}
