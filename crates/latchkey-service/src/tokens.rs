//! The token life cycle (SPEC 2.3) for every owner: create within the type's limits, list,
//! rename, rotate with a grace period, reveal, revoke, the kill switch, leak reports. Personal
//! tokens are here; `org_tokens.rs` adds the organisation's checks on top of the same internals.

use std::net::IpAddr;

use ipnet::IpNet;
use latchkey_core::policy::{Format, OwnerKind, Reveal};
use latchkey_core::token_string::ParsedToken;
use latchkey_core::{
    Grace, OrgId, Timestamp, TokenId, TokenName, TokenSecret, TokenStatus, TokenTypePolicy, UserId,
};
use latchkey_store::{
    CreateOutcome, IdempotencyKey, NewToken, Owner, TokenFilter, TokenRecord, User,
};
use secrecy::SecretString;
use serde_json::json;
use time::format_description::well_known::Rfc3339;

use crate::crypto::random_bytes;
use crate::error::{ErrorCode, ServiceError, ServiceResult};
use crate::events::EventSpec;
use crate::{Caller, Service};

/// A token just made: the record and, this once, its secret.
#[derive(Debug)]
pub struct CreatedToken {
    pub record: TokenRecord,
    pub secret: TokenSecret,
}

/// What a create did. A retry with the same `Idempotency-Key` gets the first token back,
/// without its secret.
#[derive(Debug)]
pub enum Created {
    New(CreatedToken),
    Replayed(TokenRecord),
}

/// What a user asks for when creating a personal token.
#[derive(Debug)]
pub struct CreatePersonalToken {
    pub name: String,
    pub token_type: Option<String>,
    pub expires_in_days: Option<u32>,
    pub allowed_ips: Option<Vec<String>>,
    pub password: SecretString,
}

/// Everything the shared create path needs, already authorised.
pub(crate) struct NewTokenRequest<'a> {
    pub policy: &'a TokenTypePolicy,
    pub owner: Owner,
    pub name: TokenName,
    pub expires_in_days: Option<u32>,
    pub allowed_ips: Vec<IpNet>,
    pub idempotency_key: Option<String>,
    /// The first token of a new organisation works at once.
    pub skip_activation_delay: bool,
}

pub(crate) fn owner_user(owner: &Owner) -> Option<&UserId> {
    match owner {
        Owner::User(id) => Some(id),
        Owner::Organisation(_) => None,
    }
}

pub(crate) fn owner_org(owner: &Owner) -> Option<&OrgId> {
    match owner {
        Owner::Organisation(id) => Some(id),
        Owner::User(_) => None,
    }
}

/// Parses an allowlist: CIDRs or single addresses, at most 100.
pub fn parse_allowed_ips(list: &[String]) -> ServiceResult<Vec<IpNet>> {
    if list.len() > 100 {
        return Err(ServiceError::invalid("allowed_ips: at most 100 entries"));
    }
    list.iter()
        .enumerate()
        .map(|(i, text)| {
            let text = text.trim();
            text.parse::<IpNet>()
                .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
                .map(|n| n.trunc())
                .map_err(|_| {
                    // By position: a submitted value is never repeated in an answer.
                    ServiceError::invalid(format!(
                        "allowed_ips: entry {} is not an address or CIDR",
                        i + 1
                    ))
                })
        })
        .collect()
}

fn idempotency_key(text: &str) -> ServiceResult<String> {
    let ok = (1..=255).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_graphic());
    if ok {
        Ok(text.to_owned())
    } else {
        Err(ServiceError::invalid(
            "Idempotency-Key: 1 to 255 visible ASCII characters",
        ))
    }
}

fn rfc3339(t: Timestamp) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

/// What the kill switch did: the tokens it revoked, and how many live instances had applied it
/// when it answered.
#[derive(Debug, Clone)]
pub struct KillSwitch {
    pub tokens: Vec<TokenId>,
    pub applied: crate::instances::Applied,
}

impl Service {
    pub(crate) fn policy(&self, name: &str) -> ServiceResult<&TokenTypePolicy> {
        self.types.get(name).ok_or_else(|| {
            let known: Vec<&str> = self.types.iter().map(|t| t.name.as_str()).collect();
            ServiceError::invalid(format!(
                "unknown token type: the types are {}",
                known.join(", ")
            ))
        })
    }

    /// A fresh token of `policy` for `owner`, not yet stored: an opaque secret or a signed JWT,
    /// sealed under the master key when the type can be revealed.
    fn mint(
        &self,
        policy: &TokenTypePolicy,
        owner: Owner,
        name: &TokenName,
        expires_at: Option<Timestamp>,
        active_from: Timestamp,
        allowed_ips: &[IpNet],
    ) -> ServiceResult<(NewToken, TokenSecret)> {
        let now = self.now();
        let id = TokenId::from_random(random_bytes()?);
        let (secret, signing_kid) = match policy.format {
            Format::Opaque => (TokenSecret::generate(&policy.prefix, random_bytes()?), None),
            Format::Jwt => {
                let key = self
                    .keys
                    .current(self.settings.signing_alg, now)
                    .ok_or_else(|| ServiceError::Internal("no signing key can sign now".into()))?;
                let mut claims = json!({
                    "iss": self.settings.public_url,
                    "aud": self.settings.public_url,
                    "sub": owner.id(),
                    "jti": id,
                    "iat": now.unix_timestamp(),
                    "nbf": active_from.unix_timestamp(),
                    "token_type": policy.name,
                    "scope": policy.scopes.join(" "),
                });
                if let (Some(exp), serde_json::Value::Object(map)) = (expires_at, &mut claims) {
                    map.insert("exp".into(), json!(exp.unix_timestamp()));
                }
                (
                    TokenSecret::from_signed_jwt(key.sign_jwt("JWT", &claims)?),
                    Some(key.kid.clone()),
                )
            }
        };
        let secret_ciphertext = match policy.reveal {
            Reveal::Reauth => Some(
                self.master_key
                    .seal(secret.expose().as_bytes(), &format!("token:{id}"))?,
            ),
            Reveal::Once => None,
        };
        let token = NewToken {
            id,
            token_hash: secret.hash(),
            token_type: policy.name.clone(),
            owner,
            name: name.as_str().to_owned(),
            hint: secret.hint(),
            scopes: policy.scopes.clone(),
            created_at: now,
            active_from,
            expires_at,
            rotated_from: None,
            ends_on_first_use: None,
            secret_ciphertext,
            allowed_ips: allowed_ips.iter().map(ToString::to_string).collect(),
            signing_kid,
            cancel_code_hash: None,
        };
        Ok((token, secret))
    }

    /// Builds a new token (not stored) and its creation event.
    pub(crate) fn prepare_token(
        &self,
        caller: &Caller,
        req: &NewTokenRequest<'_>,
    ) -> ServiceResult<(NewToken, TokenSecret, latchkey_store::NewEvent)> {
        let now = self.now();
        let expires_at = req
            .policy
            .expiry(now, req.expires_in_days)
            .map_err(|e| ServiceError::invalid(e.to_string()))?;
        let active_from = if req.skip_activation_delay {
            now
        } else {
            req.policy.active_from(now)
        };
        let (token, secret) = self.mint(
            req.policy,
            req.owner.clone(),
            &req.name,
            expires_at,
            active_from,
            &req.allowed_ips,
        )?;
        let event = self.event(
            caller,
            EventSpec {
                action: "token.created",
                subject_kind: "token",
                subject_id: token.id.as_str(),
                user: owner_user(&token.owner),
                org: owner_org(&token.owner),
                outcome: "success",
                details: Some(json!({
                    "name": req.name.as_str(),
                    "type": req.policy.name,
                    "hint": token.hint,
                    "active_from": rfc3339(active_from),
                })),
            },
        )?;
        Ok((token, secret, event))
    }

    /// The one create path: limits checked and the event written in the same transaction.
    pub(crate) async fn create_token(
        &self,
        caller: &Caller,
        req: NewTokenRequest<'_>,
    ) -> ServiceResult<Created> {
        let idempotency = match &req.idempotency_key {
            Some(key) => Some(IdempotencyKey {
                scope: format!(
                    "{}:{}:{}",
                    caller.actor.as_text(),
                    req.owner.kind(),
                    req.owner.id()
                ),
                key: idempotency_key(key)?,
            }),
            None => None,
        };
        let (mut token, secret, mut event) = self.prepare_token(caller, &req)?;
        self.attach_created_mail(&mut event, &mut token, None)
            .await?;
        let outcome = self
            .store
            .create_token_within_limit(
                &token,
                req.policy.max_active,
                self.now(),
                &event,
                idempotency.as_ref(),
            )
            .await?;
        Ok(match outcome {
            CreateOutcome::Created(record) => Created::New(CreatedToken { record, secret }),
            CreateOutcome::Replayed(record) => Created::Replayed(record),
        })
    }

    pub async fn create_personal_token(
        &self,
        caller: &Caller,
        user: &User,
        req: CreatePersonalToken,
        idempotency_key: Option<String>,
    ) -> ServiceResult<Created> {
        let name =
            TokenName::parse(&req.name).map_err(|e| ServiceError::invalid(format!("name: {e}")))?;
        let policy = match &req.token_type {
            Some(t) => self.policy(t)?,
            None => self
                .types
                .default_personal()
                .ok_or_else(|| ServiceError::invalid("no token type for users is configured"))?,
        };
        if policy.owner != OwnerKind::User {
            return Err(ServiceError::invalid(format!(
                "token type {:?} belongs to organisations, not users",
                policy.name
            )));
        }
        let allowed_ips = parse_allowed_ips(req.allowed_ips.as_deref().unwrap_or_default())?;
        // Validate the expiry before the (slow) password check.
        policy
            .expiry(self.now(), req.expires_in_days)
            .map_err(|e| ServiceError::invalid(e.to_string()))?;
        self.check_password(caller, user, &req.password, "token.create")
            .await?;
        if !user.api_tokens_enabled {
            return Err(ServiceError::client(
                ErrorCode::TokensDisabled,
                "API tokens are switched off for this account",
            ));
        }
        let request = NewTokenRequest {
            policy,
            owner: Owner::User(user.id.clone()),
            name,
            expires_in_days: req.expires_in_days,
            allowed_ips,
            idempotency_key,
            skip_activation_delay: false,
        };
        self.create_token(caller, request).await
    }

    pub async fn list_personal_tokens(&self, user: &User) -> ServiceResult<Vec<TokenRecord>> {
        self.list_owner_tokens(Owner::User(user.id.clone())).await
    }

    pub(crate) async fn list_owner_tokens(&self, owner: Owner) -> ServiceResult<Vec<TokenRecord>> {
        let filter = TokenFilter {
            owner: Some(owner),
            token_type: None,
            limit: 1_000,
        };
        Ok(self.store.list_tokens(&filter).await?)
    }

    /// One token of `owner`; anyone else's answers `404`.
    pub(crate) async fn owned_token(&self, owner: &Owner, id: &str) -> ServiceResult<TokenRecord> {
        let id: TokenId = id.parse().map_err(|_| ServiceError::not_found("token"))?;
        match self.store.find_token(&id).await? {
            Some(t) if &t.owner == owner => Ok(t),
            _ => Err(ServiceError::not_found("token")),
        }
    }

    pub async fn personal_token(&self, user: &User, id: &str) -> ServiceResult<TokenRecord> {
        self.owned_token(&Owner::User(user.id.clone()), id).await
    }

    /// Renames and/or sets the IP allowlist (an empty list allows any address).
    pub async fn update_personal_token(
        &self,
        caller: &Caller,
        user: &User,
        id: &str,
        name: Option<&str>,
        allowed_ips: Option<&[String]>,
    ) -> ServiceResult<TokenRecord> {
        let token = self.personal_token(user, id).await?;
        self.update_token(caller, &token, name, allowed_ips).await?;
        self.personal_token(user, id).await
    }

    pub(crate) async fn update_token(
        &self,
        caller: &Caller,
        token: &TokenRecord,
        name: Option<&str>,
        allowed_ips: Option<&[String]>,
    ) -> ServiceResult<()> {
        let name = name
            .map(|n| TokenName::parse(n).map_err(|e| ServiceError::invalid(format!("name: {e}"))))
            .transpose()?;
        let ips = allowed_ips.map(parse_allowed_ips).transpose()?;
        if name.is_none() && ips.is_none() {
            return Err(ServiceError::invalid(
                "nothing to change: give name and/or allowed_ips",
            ));
        }
        if let Some(name) = name {
            self.rename_token(caller, token, &name).await?;
        }
        if let Some(ips) = ips {
            let cidrs: Vec<String> = ips.iter().map(ToString::to_string).collect();
            let event = self.event(
                caller,
                EventSpec {
                    action: "token.allowed_ips_changed",
                    subject_kind: "token",
                    subject_id: token.id.as_str(),
                    user: owner_user(&token.owner),
                    org: owner_org(&token.owner),
                    outcome: "success",
                    details: Some(json!({ "allowed_ips": cidrs })),
                },
            )?;
            self.store
                .set_token_allowed_ips(&token.id, &cidrs, &event)
                .await?;
        }
        Ok(())
    }

    pub async fn rotate_personal_token(
        &self,
        caller: &Caller,
        user: &User,
        id: &str,
        grace: Grace,
        password: &SecretString,
    ) -> ServiceResult<CreatedToken> {
        let token = self.personal_token(user, id).await?;
        if !user.api_tokens_enabled {
            return Err(ServiceError::client(
                ErrorCode::TokensDisabled,
                "API tokens are switched off for this account",
            ));
        }
        // A rotation hands out a new secret: the same proof as creating one (SPEC 2.3).
        self.check_password(caller, user, password, "token.rotate")
            .await?;
        self.rotate_token(caller, &token, grace).await
    }

    pub async fn revoke_personal_token(
        &self,
        caller: &Caller,
        user: &User,
        id: &str,
        password: &SecretString,
    ) -> ServiceResult<TokenRecord> {
        let token = self.personal_token(user, id).await?;
        self.check_password(caller, user, password, "token.revoke")
            .await?;
        self.revoke_token(caller, &token, "owner").await?;
        self.personal_token(user, id).await
    }

    pub async fn reveal_personal_token(
        &self,
        caller: &Caller,
        user: &User,
        id: &str,
        password: &SecretString,
    ) -> ServiceResult<TokenSecret> {
        let token = self.personal_token(user, id).await?;
        self.reveal_token(caller, user, &token, password).await
    }

    /// Shows a `reveal = "reauth"` token's secret again, after the person's password. Types
    /// shown once answer `409 not_revealable`.
    pub(crate) async fn reveal_token(
        &self,
        caller: &Caller,
        user: &User,
        token: &TokenRecord,
        password: &SecretString,
    ) -> ServiceResult<TokenSecret> {
        let policy = self.policy(&token.token_type)?;
        if policy.reveal == Reveal::Once || !token.is_revealable {
            return Err(ServiceError::client(
                ErrorCode::NotRevealable,
                "this token type shows its secret only once, at creation: rotate the token to get a new one",
            ));
        }
        self.check_password_for(
            caller,
            user,
            password,
            "token.reveal",
            owner_org(&token.owner),
        )
        .await?;
        if !token.status(self.now()).is_live() {
            return Err(ServiceError::client(
                ErrorCode::TokenNotLive,
                "the token is expired or revoked: its secret is of no use",
            ));
        }
        let sealed = self
            .store
            .find_token_secret(&token.id)
            .await?
            .ok_or_else(|| ServiceError::not_found("token secret"))?;
        let clear = self
            .master_key
            .open(&sealed, &format!("token:{}", token.id))?;
        let text = String::from_utf8(clear)
            .map_err(|_| ServiceError::Internal("a revealed secret is not text".into()))?;
        let event = self.event(
            caller,
            EventSpec {
                action: "token.revealed",
                subject_kind: "token",
                subject_id: token.id.as_str(),
                user: owner_user(&token.owner),
                org: owner_org(&token.owner),
                outcome: "success",
                details: None,
            },
        )?;
        self.store.insert_event(&event).await?;
        Ok(TokenSecret::from_revealed(text))
    }

    pub(crate) async fn rename_token(
        &self,
        caller: &Caller,
        token: &TokenRecord,
        name: &TokenName,
    ) -> ServiceResult<()> {
        let event = self.event(
            caller,
            EventSpec {
                action: "token.renamed",
                subject_kind: "token",
                subject_id: token.id.as_str(),
                user: owner_user(&token.owner),
                org: owner_org(&token.owner),
                outcome: "success",
                details: Some(json!({ "from": token.name, "to": name.as_str() })),
            },
        )?;
        Ok(self
            .store
            .rename_token(&token.id, name.as_str(), &event)
            .await?)
    }

    /// A new token of the same type and name; the old one keeps working for the grace period
    /// (and at least until the new one becomes active, so an activation delay never leaves the
    /// owner without a working token). Allowed at `max_active`.
    pub(crate) async fn rotate_token(
        &self,
        caller: &Caller,
        old: &TokenRecord,
        grace: Grace,
    ) -> ServiceResult<CreatedToken> {
        let now = self.now();
        if !old.status(now).is_live() {
            return Err(ServiceError::client(
                ErrorCode::TokenNotLive,
                "only a pending or active token can be rotated",
            ));
        }
        let policy = self.policy(&old.token_type)?;
        let name =
            TokenName::parse(&old.name).map_err(|e| ServiceError::Internal(e.to_string()))?;
        let expires_at = policy
            .expiry(now, None)
            .map_err(|e| ServiceError::Internal(e.to_string()))?;
        let allowed = parse_allowed_ips(&old.allowed_ips)?;
        let (mut token, secret) = self.mint(
            policy,
            old.owner.clone(),
            &name,
            expires_at,
            policy.active_from(now),
            &allowed,
        )?;
        token.rotated_from = Some(old.id.clone());
        if grace == Grace::FirstUse {
            token.ends_on_first_use = Some(old.id.clone());
        }
        let old_expires_at = grace.old_token_expiry(now).max(token.active_from);
        // At most one token of a chain is in its grace period: rotating a token whose own
        // predecessor still works ends that predecessor now, so chained rotations never hold
        // more than `max_active` + 1 live tokens (SPEC 2.3). The store ends it in the same
        // transaction; the event names it.
        let ends_predecessor = match &old.rotated_from {
            Some(id) => self
                .store
                .find_token(id)
                .await?
                .filter(|p| p.status(now).is_live())
                .map(|p| p.id),
            None => None,
        };
        let mut event = self.event(
            caller,
            EventSpec {
                action: "token.rotated",
                subject_kind: "token",
                subject_id: old.id.as_str(),
                user: owner_user(&old.owner),
                org: owner_org(&old.owner),
                outcome: "success",
                details: Some(json!({
                    "new_token": token.id, "grace": grace.to_string(), "hint": token.hint,
                    "ended_predecessor": ends_predecessor,
                })),
            },
        )?;
        // A rotation makes a working token like a create does: the owner is told the same way
        // (with the cancel link when the type has an activation delay).
        self.attach_created_mail(&mut event, &mut token, Some((old, grace)))
            .await?;
        let record = self
            .store
            .rotate_token(&old.id, old_expires_at, now, &token, &event)
            .await
            .map_err(|e| match e {
                // It was live when read above and revoked before the write (a deletion or a
                // kill switch at the same moment): the same answer as when it was already so.
                latchkey_store::StoreError::NotFound(_) => ServiceError::client(
                    ErrorCode::TokenNotLive,
                    "only a pending or active token can be rotated",
                ),
                other => other.into(),
            })?;
        Ok(CreatedToken { record, secret })
    }

    /// Revokes at once: the very next request with the token is refused.
    pub(crate) async fn revoke_token(
        &self,
        caller: &Caller,
        token: &TokenRecord,
        reason: &str,
    ) -> ServiceResult<bool> {
        let mut event = self.event(
            caller,
            EventSpec {
                action: "token.revoked",
                subject_kind: "token",
                subject_id: token.id.as_str(),
                user: owner_user(&token.owner),
                org: owner_org(&token.owner),
                outcome: "success",
                details: Some(
                    json!({ "name": token.name, "type": token.token_type, "reason": reason }),
                ),
            },
        )?;
        self.attach_revoked_mail(&mut event, token, reason).await?;
        let revoked = self
            .store
            .revoke_token(&token.id, self.now(), &event)
            .await?;
        Ok(revoked)
    }

    /// The kill switch: every live token of `owner` (of one type, if given), in one transaction.
    pub(crate) async fn revoke_all_tokens(
        &self,
        caller: &Caller,
        owner: &Owner,
        token_type: Option<&str>,
    ) -> ServiceResult<KillSwitch> {
        if let Some(t) = token_type {
            self.policy(t)?;
        }
        let mut event = self.event(
            caller,
            EventSpec {
                action: "tokens.revoked_all",
                subject_kind: owner.kind(),
                subject_id: owner.id(),
                user: owner_user(owner),
                org: owner_org(owner),
                outcome: "success",
                details: None,
            },
        )?;
        let at = self.now();
        self.notify_owner(&mut event, owner, |a| {
            crate::mails::tokens_revoked_all(&a.label, token_type, at)
        })
        .await?;
        // The whole owner (no type named): its OAuth grants and access tokens too (SPEC 2.4),
        // in the same transaction and event.
        let whole_owner = token_type.is_none();
        let ids = self
            .store
            .revoke_owner_tokens(owner, token_type, whole_owner, self.now(), &event)
            .await?;
        // Answered once every live instance applied it (SPEC 7), at most 2 s.
        let change = self.store.latest_change().await?;
        let applied = self.wait_until_applied(change).await?;
        Ok(KillSwitch {
            tokens: ids,
            applied,
        })
    }

    /// `POST /v1/user/tokens/revoke-all`: the user's own kill switch, behind their password.
    pub async fn revoke_all_personal_tokens(
        &self,
        caller: &Caller,
        user: &User,
        password: &SecretString,
    ) -> ServiceResult<KillSwitch> {
        self.check_password(caller, user, password, "tokens.revoke_all")
            .await?;
        self.revoke_all_tokens(caller, &Owner::User(user.id.clone()), None)
            .await
    }

    /// Operator: the kill switch for a user (by email).
    pub async fn revoke_all_user_tokens(
        &self,
        caller: &Caller,
        email: &str,
    ) -> ServiceResult<KillSwitch> {
        let user = self.find_user_by_email(email).await?;
        self.revoke_all_person_tokens(caller, &user).await
    }

    /// [`Service::revoke_all_user_tokens`] for a person already found.
    pub async fn revoke_all_person_tokens(
        &self,
        caller: &Caller,
        user: &latchkey_store::User,
    ) -> ServiceResult<KillSwitch> {
        self.revoke_all_tokens(caller, &Owner::User(user.id.clone()), None)
            .await
    }

    /// Operator: the kill switch for an organisation (of one type, if given).
    pub async fn revoke_all_org_tokens_as_operator(
        &self,
        caller: &Caller,
        org_id: &str,
        token_type: Option<&str>,
    ) -> ServiceResult<KillSwitch> {
        let org = self.find_org(org_id).await?;
        self.revoke_all_tokens(caller, &Owner::Organisation(org.id), token_type)
            .await
    }

    /// `POST /v1/leaks`: revokes every string that is a live token. Answers only how many.
    pub async fn report_leaks(&self, ip: IpAddr, tokens: &[String]) -> ServiceResult<usize> {
        if tokens.len() > 1_000 {
            return Err(ServiceError::invalid("at most 1000 tokens per report"));
        }
        self.limits.leak_report(ip, self.now())?;
        let caller = Caller::anonymous(Some(ip));
        let now = self.now();
        let mut revoked = 0;
        for text in tokens {
            let text = text.trim();
            let hash = if crate::keys::looks_like_jwt(text) {
                if self
                    .keys
                    .verify::<serde_json::Value>(text, &["JWT"])
                    .is_err()
                {
                    continue;
                }
                TokenSecret::hash_of(text)
            } else {
                match ParsedToken::parse(text) {
                    Ok(parsed) => parsed.hash(),
                    Err(_) => continue,
                }
            };
            let Some(token) = self.store.find_token_by_hash(&hash).await? else {
                continue;
            };
            if token.status(now) == TokenStatus::Revoked
                || token.status(now) == TokenStatus::Expired
            {
                continue;
            }
            if self.revoke_token(&caller, &token, "leak_report").await? {
                revoked += 1;
            }
        }
        Ok(revoked)
    }

    /// Operator: every token, or one owner's.
    pub async fn list_tokens(
        &self,
        owner: Option<Owner>,
        token_type: Option<String>,
        limit: u32,
    ) -> ServiceResult<Vec<TokenRecord>> {
        Ok(self
            .store
            .list_tokens(&TokenFilter {
                owner,
                token_type,
                limit,
            })
            .await?)
    }

    /// Operator: revoke any token by id.
    pub async fn revoke_token_by_id(&self, caller: &Caller, id: &str) -> ServiceResult<bool> {
        let id: TokenId = id.parse().map_err(|_| ServiceError::not_found("token"))?;
        let token = self
            .store
            .find_token(&id)
            .await?
            .ok_or_else(|| ServiceError::not_found("token"))?;
        self.revoke_token(caller, &token, "operator").await
    }

    pub fn status_of(&self, token: &TokenRecord) -> TokenStatus {
        token.status(self.now())
    }

    /// Benchmark seeding: `count` tokens of a user-owned type for `user`, inserted in large
    /// transactions without limit checks or events. Not reachable from the API.
    pub async fn seed_tokens_for_benchmark(
        &self,
        user: &User,
        token_type: &str,
        count: usize,
    ) -> ServiceResult<Vec<TokenSecret>> {
        let policy = self.policy(token_type)?.clone();
        let name =
            TokenName::parse("benchmark").map_err(|e| ServiceError::Internal(e.to_string()))?;
        let now = self.now();
        let mut secrets = Vec::with_capacity(count);
        let mut batch = Vec::with_capacity(5_000);
        for i in 0..count {
            let expires_at = policy.expiry(now, None).ok().flatten();
            let (token, secret) = self.mint(
                &policy,
                Owner::User(user.id.clone()),
                &name,
                expires_at,
                now,
                &[],
            )?;
            batch.push(token);
            secrets.push(secret);
            if batch.len() == 5_000 || i + 1 == count {
                // As tokens in steady use from the load generator's address: the one-off
                // first-use alerts (one mail per token) are not what the hot path is measured on.
                self.store
                    .insert_tokens_unchecked(&batch, Some(("127.0.0.1", now)))
                    .await?;
                batch.clear();
            }
        }
        Ok(secrets)
    }
}
