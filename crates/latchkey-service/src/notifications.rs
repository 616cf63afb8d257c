//! Who hears of what (SPEC 6, 2.4): resolves recipients when a change happens and attaches the
//! mails to the change's audit event, so the store puts them in the outbox in the same
//! transaction. Also the periodic expiry notices, the new-address alerts written by the usage
//! flush, and cancel links. Sending is `outbox.rs`'s; the wording is `mails.rs`'s.

use std::collections::HashMap;

use latchkey_core::token_string::TokenHash;
use latchkey_core::{Email, MailId, Role, TokenId, TokenSecret, TokenStatus, base62};
use latchkey_store::{NewEvent, NewMail, NewTokenAddress, Owner, TokenRecord, TokenUsage};
use serde_json::json;

use crate::crypto::random_bytes;
use crate::error::{ErrorCode, ServiceError, ServiceResult};
use crate::events::EventSpec;
use crate::mails::{self, MailText, TokenFacts};
use crate::tokens::{owner_org, owner_user};
use crate::{Caller, Service};

/// Expiry notices are sent this many days before a token expires, each once.
pub const EXPIRY_NOTICE_DAYS: [u32; 3] = [30, 7, 1];
/// Tokens looked at per sweep; the rest wait for the next one.
const SWEEP_LIMIT: u32 = 10_000;
/// New addresses recorded per usage flush; the rest wait for the next flush, so a burst of
/// first uses never becomes one huge transaction.
const NEW_ADDRESSES_PER_FLUSH: usize = 500;
/// New-address mails per token in any 24 hours. A token used from many addresses (a leak
/// being exploited from a botnet, or a fleet behind changing NAT) must not flood its owner's
/// mailbox: past this, each new address is still recorded and audited, without a mail.
pub const NEW_ADDRESS_MAILS_PER_DAY: u64 = 5;

/// The people told about an owner's tokens: the user, or every admin of the organisation.
pub(crate) struct Audience {
    pub emails: Vec<Email>,
    /// How mails name the owner.
    pub label: String,
}

/// A fresh cancel-link code (256 bits, base62) and the hash that is stored.
pub(crate) fn new_cancel_code() -> ServiceResult<(String, TokenHash)> {
    let bytes: [u8; 32] = random_bytes()?;
    let code = base62::encode_bytes(&bytes, 43)
        .ok_or_else(|| ServiceError::Internal("cancel code encoding".into()))?;
    let hash = TokenSecret::hash_of(&code);
    Ok((code, hash))
}

/// Binds a sealed part to its mail: it cannot be moved into another row.
pub(crate) fn sealed_part_aad(mail: &latchkey_core::MailId) -> String {
    format!("mail:{mail}")
}

fn cancel_link_gone() -> ServiceError {
    ServiceError::client(
        ErrorCode::NotFound,
        "this cancel link is unknown, already used or expired",
    )
}

impl Service {
    pub(crate) async fn audience(&self, owner: &Owner) -> ServiceResult<Audience> {
        match owner {
            Owner::User(id) => {
                let emails = self
                    .store
                    .find_user(id)
                    .await?
                    .map(|u| vec![u.email])
                    .unwrap_or_default();
                Ok(Audience {
                    emails,
                    label: "your account".to_owned(),
                })
            }
            Owner::Organisation(id) => {
                let emails = self
                    .store
                    .list_org_members(id)
                    .await?
                    .into_iter()
                    .filter(|m| m.role == Role::Admin)
                    .map(|m| m.email)
                    .collect();
                let name = self.store.find_org(id).await?.map(|o| o.name);
                Ok(Audience {
                    emails,
                    label: format!("the organisation \"{}\" ({id})", name.unwrap_or_default()),
                })
            }
        }
    }

    /// One mail per recipient, ready to ride on an event.
    pub(crate) fn mails_to(
        &self,
        emails: &[Email],
        text: &MailText,
    ) -> ServiceResult<Vec<NewMail>> {
        emails
            .iter()
            .map(|to| {
                Ok(NewMail {
                    id: MailId::from_random(random_bytes()?),
                    recipient: to.clone(),
                    subject: text.subject.clone(),
                    body: text.body.clone(),
                    sealed: None,
                    created_at: self.now(),
                })
            })
            .collect()
    }

    /// Attaches `text`, addressed to the owner's audience, to `event`.
    pub(crate) async fn notify_owner(
        &self,
        event: &mut NewEvent,
        owner: &Owner,
        text: impl FnOnce(&Audience) -> MailText,
    ) -> ServiceResult<()> {
        let audience = self.audience(owner).await?;
        let text = text(&audience);
        event.mails = self.mails_to(&audience.emails, &text)?;
        Ok(())
    }

    /// The creation mail; with an activation delay, a cancel link whose hash is stored with the
    /// token (`token.cancel_code_hash`).
    pub(crate) async fn attach_created_mail(
        &self,
        event: &mut NewEvent,
        token: &mut latchkey_store::NewToken,
        // A rotation's new token: the token it replaces, and the grace that old one was given.
        replaces: Option<(&TokenRecord, latchkey_core::policy::Grace)>,
    ) -> ServiceResult<()> {
        // The code is never stored in clear: the body carries a placeholder, and each mail the
        // code sealed under the master key, filled in when it is sent (SECURITY.md "Files").
        let code = if token.active_from > token.created_at {
            let (code, hash) = new_cancel_code()?;
            token.cancel_code_hash = Some(hash);
            Some(code)
        } else {
            None
        };
        let cancel = code
            .as_ref()
            .map(|_| mails::cancel_url(&self.settings.public_url, mails::SEALED_SLOT));
        let t = &*token;
        let by = self.by_line(event).await;
        let (page, audit) = self.token_pages(&t.owner);
        // A rotation's new token: the mail says what it replaces and when that stops.
        let replaced = replaces.map(|(o, grace)| mails::Replaced {
            name: &o.name,
            hint: &o.hint,
            id: o.id.as_str(),
            ends: rotation_end(grace, t.created_at, t.active_from),
        });
        self.notify_owner(event, &t.owner, |a| {
            mails::token_created(
                &TokenFacts {
                    id: t.id.as_str(),
                    name: &t.name,
                    token_type: &t.token_type,
                    hint: &t.hint,
                    owner_label: &a.label,
                    is_org: matches!(t.owner, Owner::Organisation(_)),
                    expires_at: t.expires_at,
                    by,
                    page,
                    audit,
                },
                t.created_at,
                t.active_from,
                cancel.as_deref(),
                replaced.as_ref(),
            )
        })
        .await?;
        if let Some(code) = code {
            self.seal_into(&mut event.mails, &code)?;
        }
        Ok(())
    }

    /// Gives each mail the single-use `code` of its link, sealed under the master key and bound
    /// to the mail: its body holds only the placeholder (`mails::SEALED_SLOT`), the code goes
    /// in when the mail is sent (SECURITY.md "Files": no code in clear, not even until then).
    pub(crate) fn seal_into(&self, mails: &mut [NewMail], code: &str) -> ServiceResult<()> {
        for mail in mails {
            mail.sealed = Some(
                self.master_key
                    .seal(code.as_bytes(), &sealed_part_aad(&mail.id))?,
            );
        }
        Ok(())
    }

    /// The mail that tells the owner a token stopped working, and why.
    pub(crate) async fn attach_revoked_mail(
        &self,
        event: &mut NewEvent,
        token: &TokenRecord,
        reason: &str,
    ) -> ServiceResult<()> {
        let at = self.now();
        let by = self.by_line(event).await;
        self.notify_owner(event, &token.owner, |a| {
            mails::token_revoked(&self.facts(token, &a.label, by), reason, at)
        })
        .await
    }

    /// Sends the expiry notices that are due (30, 7 and 1 days before expiry, each once per
    /// token). Runs every minute in the background; tests call it after moving the clock.
    /// Returns how many notices it wrote to the outbox.
    pub async fn send_expiry_notices(&self) -> ServiceResult<usize> {
        let now = self.now();
        let due = self
            .store
            .list_tokens_due_expiry_notice(now, &EXPIRY_NOTICE_DAYS, SWEEP_LIMIT)
            .await?;
        let mut sent = 0;
        for (token, days) in due {
            let Some(expires_at) = token.expires_at else {
                continue;
            };
            let mut event = self.event(
                &Caller::operator(),
                EventSpec {
                    action: "token.expiry_notice",
                    subject_kind: "token",
                    subject_id: token.id.as_str(),
                    user: owner_user(&token.owner),
                    org: owner_org(&token.owner),
                    outcome: "success",
                    details: Some(json!({ "days": days, "name": token.name })),
                },
            )?;
            let url = mails::replacement_url(
                &self.settings.public_url,
                &token.owner,
                &token.name,
                &token.token_type,
                &token.scopes,
            );
            self.notify_owner(&mut event, &token.owner, |a| {
                mails::token_expiring(&self.facts(&token, &a.label, None), days, expires_at, &url)
            })
            .await?;
            if self
                .store
                .record_expiry_notice(&token.id, days, &event)
                .await?
            {
                sent += 1;
            }
        }
        Ok(sent)
    }

    /// Part of the usage flush (never the request path): the first accepted use of a token from
    /// each address is written to the audit log and mailed to the owner, in one transaction.
    /// Returns the uses whose new address is left for the next flush.
    pub(crate) async fn note_new_addresses(
        &self,
        batch: &[TokenUsage],
    ) -> ServiceResult<Vec<TokenUsage>> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let pairs: Vec<(TokenId, String)> = batch
            .iter()
            .map(|u| (u.token_id.clone(), u.ip.clone()))
            .collect();
        let mut unseen = self.store.list_unseen_token_addresses(&pairs).await?;
        let later: Vec<TokenUsage> = if unseen.len() > NEW_ADDRESSES_PER_FLUSH {
            let rest: std::collections::HashSet<(TokenId, String)> = unseen
                .split_off(NEW_ADDRESSES_PER_FLUSH)
                .into_iter()
                .collect();
            batch
                .iter()
                .filter(|u| rest.contains(&(u.token_id.clone(), u.ip.clone())))
                .cloned()
                .collect()
        } else {
            Vec::new()
        };
        if unseen.is_empty() {
            return Ok(later);
        }
        let at_of: HashMap<(&TokenId, &str), latchkey_core::Timestamp> = batch
            .iter()
            .map(|u| ((&u.token_id, u.ip.as_str()), u.at))
            .collect();
        let mut audiences: HashMap<String, Audience> = HashMap::new();
        // New addresses per token in the last day, this flush's included.
        let mut recent: HashMap<TokenId, u64> = HashMap::new();
        let mut found = Vec::with_capacity(unseen.len());
        for (id, ip) in unseen {
            let Some(token) = self.store.find_token(&id).await? else {
                continue;
            };
            let at = at_of
                .get(&(&id, ip.as_str()))
                .copied()
                .unwrap_or_else(|| self.now());
            let seen_today = match recent.get(&id) {
                Some(n) => *n,
                None => {
                    self.store
                        .count_token_addresses_since(&id, at - time::Duration::days(1))
                        .await?
                }
            };
            recent.insert(id.clone(), seen_today + 1);
            // A token's very first use is not a "new" address: it is told as what it is (still
            // told: the first user of a fresh token may not be its owner).
            let first_use = token.last_used_at.is_none() && seen_today == 0;
            let mailed = seen_today < NEW_ADDRESS_MAILS_PER_DAY;
            let key = format!("{}:{}", token.owner.kind(), token.owner.id());
            if !audiences.contains_key(&key) {
                let audience = self.audience(&token.owner).await?;
                audiences.insert(key.clone(), audience);
            }
            let Some(audience) = audiences.get(&key) else {
                continue;
            };
            let mut event = self.event(
                &Caller::anonymous(ip.parse().ok()),
                EventSpec {
                    action: "token.new_address",
                    subject_kind: "token",
                    subject_id: token.id.as_str(),
                    user: owner_user(&token.owner),
                    org: owner_org(&token.owner),
                    outcome: "success",
                    details: Some(json!({
                        "ip": ip, "name": token.name, "mailed": mailed, "first_use": first_use,
                    })),
                },
            )?;
            event.at = at;
            if mailed {
                let facts = self.facts(&token, &audience.label, None);
                let mut text = if first_use {
                    mails::token_first_use(&facts, &ip, at)
                } else {
                    mails::token_new_address(&facts, &ip, at)
                };
                if seen_today + 1 == NEW_ADDRESS_MAILS_PER_DAY {
                    text.body.push_str(
                        "\nThis is the last new-address mail for this token today: further new \
                         addresses are recorded in the audit log only.\n",
                    );
                }
                event.mails = self.mails_to(&audience.emails, &text)?;
            }
            found.push(NewTokenAddress {
                token_id: id,
                ip,
                at,
                event,
            });
        }
        self.store.record_new_token_addresses(&found).await?;
        Ok(later)
    }

    /// The mail for a use refused by the token's IP allowlist (the first from `ip`).
    pub(crate) async fn attach_ip_refused_mail(
        &self,
        event: &mut NewEvent,
        token_id: &TokenId,
        ip: &str,
    ) -> ServiceResult<()> {
        let Some(token) = self.store.find_token(token_id).await? else {
            return Ok(());
        };
        let at = self.now();
        self.notify_owner(event, &token.owner, |a| {
            mails::token_ip_refused(&self.facts(&token, &a.label, None), ip, at)
        })
        .await
    }

    /// The token a cancel link would cancel: refused when the link is unknown, used or expired,
    /// or the token is no longer pending. For the console's confirmation page.
    pub async fn cancel_link_token(&self, code: &str) -> ServiceResult<TokenRecord> {
        let code = code.trim();
        if code.is_empty() || code.len() > 100 || !base62::is_base62(code) {
            return Err(cancel_link_gone());
        }
        let link = self
            .store
            .find_cancel_link(&TokenSecret::hash_of(code))
            .await?
            .ok_or_else(cancel_link_gone)?;
        let now = self.now();
        if link.used_at.is_some() || link.expires_at <= now {
            return Err(cancel_link_gone());
        }
        let token = self
            .store
            .find_token(&link.token_id)
            .await?
            .ok_or_else(cancel_link_gone)?;
        if token.status(now) != TokenStatus::Pending {
            return Err(cancel_link_gone());
        }
        Ok(token)
    }

    /// Uses a cancel link: marks it used and revokes its still-pending token in one
    /// transaction (a link works once, SECURITY.md invariant 4), with the event
    /// `token.cancelled` and a mail to the owner.
    pub async fn use_cancel_link(&self, code: &str, caller: &Caller) -> ServiceResult<TokenRecord> {
        let token = self.cancel_link_token(code).await?;
        let mut event = self.event(
            caller,
            EventSpec {
                action: "token.cancelled",
                subject_kind: "token",
                subject_id: token.id.as_str(),
                user: owner_user(&token.owner),
                org: owner_org(&token.owner),
                outcome: "success",
                details: Some(json!({ "name": token.name, "type": token.token_type })),
            },
        )?;
        self.attach_revoked_mail(&mut event, &token, "cancelled")
            .await?;
        let used = self
            .store
            .use_cancel_link(&TokenSecret::hash_of(code.trim()), self.now(), &event)
            .await?;
        if !used {
            return Err(cancel_link_gone());
        }
        self.store
            .find_token(&token.id)
            .await?
            .ok_or_else(|| ServiceError::not_found("token"))
    }
}

impl Service {
    fn facts<'a>(
        &self,
        token: &'a TokenRecord,
        owner_label: &'a str,
        by: Option<String>,
    ) -> TokenFacts<'a> {
        let (page, audit) = self.token_pages(&token.owner);
        TokenFacts {
            id: token.id.as_str(),
            name: &token.name,
            token_type: &token.token_type,
            hint: &token.hint,
            owner_label,
            is_org: matches!(token.owner, Owner::Organisation(_)),
            expires_at: token.expires_at,
            by,
            page,
            audit,
        }
    }

    /// The console page that shows an owner's tokens, and the audit log they are in.
    fn token_pages(&self, owner: &Owner) -> (String, String) {
        let base = self.settings.public_url.trim_end_matches('/');
        match owner {
            Owner::User(_) => (format!("{base}/credentials"), format!("{base}/activity")),
            Owner::Organisation(org) => (
                format!("{base}/orgs/{org}/tokens"),
                format!("{base}/orgs/{org}/activity"),
            ),
        }
    }

    /// Who did what `event` records, and from where, as a mail says it: a person by their
    /// address, the operator, the platform's credential; none for someone anonymous (a leak
    /// report names no one).
    async fn by_line(&self, event: &NewEvent) -> Option<String> {
        let who = match event.actor.as_str() {
            "operator" => "an operator (the command line)".to_owned(),
            "anonymous" => return None,
            actor => match actor.parse::<latchkey_core::UserId>() {
                Ok(id) => self.store.find_user(&id).await.ok()??.email.to_string(),
                Err(_) => "the platform".to_owned(),
            },
        };
        Some(match &event.ip {
            Some(ip) => format!("{who} from {ip}"),
            None => who,
        })
    }
}

/// When a rotation's old token stops, in words: as `rotate_token` sets it, never before the
/// new token is active.
fn rotation_end(
    grace: latchkey_core::policy::Grace,
    at: latchkey_core::Timestamp,
    active_from: latchkey_core::Timestamp,
) -> String {
    let ends = grace.old_token_expiry(at).max(active_from);
    match grace {
        latchkey_core::policy::Grace::FirstUse => format!(
            "stops working when the new token is first used (at the latest {})",
            mails::time_text(ends)
        ),
        latchkey_core::policy::Grace::For(_) if ends <= at => "stopped working at once".to_owned(),
        latchkey_core::policy::Grace::For(_) => {
            format!("stops working at {}", mails::time_text(ends))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cancel_codes_are_256_bit_base62() {
        let (code, hash) = new_cancel_code().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(code.len(), 43);
        assert!(base62::is_base62(&code));
        assert_eq!(hash.as_bytes(), TokenSecret::hash_of(&code).as_bytes());
    }
}
