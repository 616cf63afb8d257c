//! People: creating users, switching them or their tokens off.

use latchkey_core::{Email, UserId};
use latchkey_store::{NO_PASSWORD, NewUser, User, UserChange};
use secrecy::SecretString;
use serde_json::json;

use crate::crypto::{check_password_rules, random_bytes};
use crate::error::{ErrorCode, ServiceError, ServiceResult};
use crate::events::EventSpec;
use crate::{Caller, Service};

/// A disabled account or a new password ends every session: a session opened before must not
/// outlive the switch or the password it was opened with.
fn ends_sessions(change: &UserChange) -> bool {
    change.disabled == Some(true) || change.password_hash.is_some() || change.deleted_at.is_some()
}

/// Who is being created, however they come: the CLI, SCIM, single sign-on.
pub struct UserSpec<'a> {
    pub email: &'a str,
    /// `None`: no password (someone who signs in elsewhere, [`NO_PASSWORD`]).
    pub password: Option<&'a SecretString>,
    pub is_operator: bool,
    pub external_id: Option<String>,
    pub profile: Option<String>,
    pub disabled: bool,
    /// Made by SCIM (the only people SCIM may touch).
    pub provisioned: bool,
}

/// The store's uniqueness conflict on a user (the email or the external id).
fn taken_or_other(e: latchkey_store::StoreError) -> ServiceError {
    match e {
        latchkey_store::StoreError::Conflict(_) => ServiceError::client(
            ErrorCode::Conflict,
            "a user with this email or external id already exists",
        ),
        other => other.into(),
    }
}

fn email_taken() -> ServiceError {
    ServiceError::client(ErrorCode::Conflict, "a user with this email already exists")
}

impl Service {
    /// A fresh installation: no one exists and single sign-on does not make people, so no one
    /// can sign in until an operator is made with the CLI. The sign-in page and the start-up
    /// output say how.
    pub async fn nobody_can_sign_in(&self) -> ServiceResult<bool> {
        if self.sso().is_some_and(|sso| sso.settings().create_users) {
            return Ok(false);
        }
        Ok(!self.store.has_users().await?)
    }

    pub async fn create_user(
        &self,
        caller: &Caller,
        email: &str,
        password: &SecretString,
        is_operator: bool,
    ) -> ServiceResult<User> {
        self.add_user(
            caller,
            UserSpec {
                email,
                password: Some(password),
                is_operator,
                external_id: None,
                profile: None,
                disabled: false,
                provisioned: false,
            },
        )
        .await
    }

    /// The one way a user is created.
    pub async fn add_user(&self, caller: &Caller, spec: UserSpec<'_>) -> ServiceResult<User> {
        let email = Email::parse(spec.email).map_err(|e| ServiceError::invalid(e.to_string()))?;
        if let Some(password) = spec.password {
            check_password_rules(password)?;
        }
        if self.store.find_user_by_email(&email).await?.is_some() {
            return Err(email_taken());
        }
        let id = UserId::from_random(random_bytes()?);
        let password_hash = match spec.password {
            Some(password) => self.hasher.hash(password).await?,
            None => NO_PASSWORD.to_owned(),
        };
        let event = self.event(
            caller,
            EventSpec {
                action: "user.created",
                subject_kind: "user",
                subject_id: id.as_str(),
                user: Some(&id),
                org: None,
                outcome: "success",
                details: Some(json!({
                    "operator": spec.is_operator,
                    "disabled": spec.disabled,
                    "external_id": spec.external_id,
                })),
            },
        )?;
        let user = NewUser {
            id,
            email,
            password_hash,
            is_operator: spec.is_operator,
            created_at: self.now(),
            external_id: spec.external_id,
            profile: spec.profile,
            disabled: spec.disabled,
            provisioned: spec.provisioned,
        };
        self.store
            .create_user(&user, &event)
            .await
            .map_err(taken_or_other)
    }

    /// Anyone not deleted, by id (the operator's view).
    pub async fn find_user_by_id(&self, id: &str) -> ServiceResult<User> {
        let Ok(id) = id.parse::<UserId>() else {
            return Err(ServiceError::not_found("user"));
        };
        match self.store.find_user(&id).await? {
            Some(user) if user.deleted_at.is_none() => Ok(user),
            _ => Err(ServiceError::not_found("user")),
        }
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
        self.switch_user(caller, &user, disabled, api_tokens_enabled)
            .await
    }

    /// [`Service::update_user`] for a person already found (the operator API finds them by
    /// id: acting on the record found, not on whoever has the email a moment later).
    pub async fn switch_user(
        &self,
        caller: &Caller,
        user: &User,
        disabled: Option<bool>,
        api_tokens_enabled: Option<bool>,
    ) -> ServiceResult<User> {
        let change = UserChange {
            disabled,
            api_tokens_enabled,
            ..UserChange::default()
        };
        self.change_user(caller, user, change, "user.updated").await
    }

    /// The one way a user's record changes (`action` names it in the audit log). A disabled or
    /// deleted account ends its sessions, in the same transaction; the after-commit path then
    /// drops every cached answer of the user's tokens.
    pub async fn change_user(
        &self,
        caller: &Caller,
        user: &User,
        mut change: UserChange,
        action: &str,
    ) -> ServiceResult<User> {
        if let Some(email) = &change.email
            && *email != user.email
            && self.store.find_user_by_email(email).await?.is_some()
        {
            return Err(email_taken());
        }
        let event = self.event(
            caller,
            EventSpec {
                action,
                subject_kind: "user",
                subject_id: user.id.as_str(),
                user: Some(&user.id),
                org: None,
                outcome: "success",
                details: Some(json!({
                    "disabled": change.disabled,
                    "api_tokens_enabled": change.api_tokens_enabled,
                    "email": change.email.as_ref().map(Email::as_str),
                    "external_id": change.external_id,
                    "deleted": change.deleted_at.is_some(),
                })),
            },
        )?;
        change.end_sessions = ends_sessions(&change);
        self.store
            .update_user(&user.id, &change, &event)
            .await
            .map_err(taken_or_other)
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
        if self.reauthenticates_at_provider(user) {
            return self.check_recent_reauth(caller, user, action, org).await;
        }
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
