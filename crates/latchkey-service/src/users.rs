//! People: creating users, switching them or their tokens off.

use latchkey_core::{Email, UserId};
use latchkey_store::{NewUser, User, UserChange};
use secrecy::SecretString;
use serde_json::json;

use crate::crypto::{check_password_rules, random_bytes};
use crate::error::{ErrorCode, ServiceError, ServiceResult};
use crate::events::EventSpec;
use crate::{Caller, Service};

/// A disabled account or a new password ends every session: a session opened before must not
/// outlive the switch or the password it was opened with.
fn ends_sessions(change: &UserChange) -> bool {
    change.disabled == Some(true) || change.password_hash.is_some()
}

impl Service {
    pub async fn create_user(
        &self,
        caller: &Caller,
        email: &str,
        password: &SecretString,
        is_operator: bool,
    ) -> ServiceResult<User> {
        let email = Email::parse(email).map_err(|e| ServiceError::invalid(e.to_string()))?;
        check_password_rules(password)?;
        if self.store.find_user_by_email(&email).await?.is_some() {
            return Err(ServiceError::client(
                ErrorCode::Conflict,
                "a user with this email already exists",
            ));
        }
        let id = UserId::from_random(random_bytes()?);
        let password_hash = self.hasher.hash(password).await?;
        let event = self.event(
            caller,
            EventSpec {
                action: "user.created",
                subject_kind: "user",
                subject_id: id.as_str(),
                user: Some(&id),
                org: None,
                outcome: "success",
                details: Some(json!({ "operator": is_operator })),
            },
        )?;
        let user = NewUser {
            id,
            email,
            password_hash,
            is_operator,
            created_at: self.now(),
        };
        self.store
            .create_user(&user, &event)
            .await
            .map_err(|e| match e {
                latchkey_store::StoreError::Conflict(_) => ServiceError::client(
                    ErrorCode::Conflict,
                    "a user with this email already exists",
                ),
                other => other.into(),
            })
    }

    pub async fn find_user_by_email(&self, email: &str) -> ServiceResult<User> {
        let email = Email::parse(email).map_err(|e| ServiceError::invalid(e.to_string()))?;
        self.store
            .find_user_by_email(&email)
            .await?
            .ok_or_else(|| ServiceError::not_found("user"))
    }

    /// Operator switches: `disabled` ends every session and refuses every token of the user at
    /// once; `api_tokens_enabled = false` refuses the user's tokens.
    pub async fn update_user(
        &self,
        caller: &Caller,
        email: &str,
        disabled: Option<bool>,
        api_tokens_enabled: Option<bool>,
    ) -> ServiceResult<User> {
        let user = self.find_user_by_email(email).await?;
        let event = self.event(
            caller,
            EventSpec {
                action: "user.updated",
                subject_kind: "user",
                subject_id: user.id.as_str(),
                user: Some(&user.id),
                org: None,
                outcome: "success",
                details: Some(
                    json!({ "disabled": disabled, "api_tokens_enabled": api_tokens_enabled }),
                ),
            },
        )?;
        let mut change = UserChange {
            disabled,
            api_tokens_enabled,
            ..UserChange::default()
        };
        change.end_sessions = ends_sessions(&change);
        let user = self.store.update_user(&user.id, &change, &event).await?;
        Ok(user)
    }

    /// Checks the password of a signed-in user (re-authentication before a sensitive action).
    pub(crate) async fn check_password(
        &self,
        caller: &Caller,
        user: &User,
        password: &SecretString,
        action: &str,
    ) -> ServiceResult<()> {
        self.check_password_for(caller, user, password, action, None)
            .await
    }

    /// As [`Service::check_password`], recording a refusal in an organisation's log too (an
    /// admin re-authenticating for one of its tokens).
    pub(crate) async fn check_password_for(
        &self,
        caller: &Caller,
        user: &User,
        password: &SecretString,
        action: &str,
        org: Option<&latchkey_core::OrgId>,
    ) -> ServiceResult<()> {
        let account = user.email.as_str().to_lowercase();
        // Reserved before the hash, as at sign-in: parallel prompts share the allowance.
        let attempt = self.limits.reauth_attempt(&account, || self.now()).await?;
        let ok = self
            .hasher
            .verify(password, Some(&user.password_hash))
            .await?;
        attempt.finish(ok, self.now());
        if ok {
            return Ok(());
        }
        let event = self.event(
            caller,
            EventSpec {
                action,
                subject_kind: "user",
                subject_id: user.id.as_str(),
                user: Some(&user.id),
                org,
                outcome: "invalid_password",
                details: None,
            },
        )?;
        self.store.insert_event(&event).await?;
        Err(ServiceError::client(
            ErrorCode::InvalidPassword,
            "the password is not correct",
        ))
    }
}

impl Service {
    /// A page of the audit log.
    pub async fn list_events(
        &self,
        filter: &latchkey_store::EventFilter,
    ) -> ServiceResult<Vec<latchkey_store::Event>> {
        Ok(self.store.list_events(filter).await?)
    }
}
