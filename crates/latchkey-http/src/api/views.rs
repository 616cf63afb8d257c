//! How records look on the wire. Nothing here can print a secret or a hash: token views are
//! built from the stored record, which has neither.

use axum::http::HeaderValue;
use latchkey_core::{Timestamp, TokenStatus};
use latchkey_store::{Account, Event, TokenRecord};
use serde::Serialize;
use serde_json::Value;
use time::format_description::well_known::Rfc3339;

pub fn rfc3339(t: Timestamp) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

/// Tokens expiring sooner than this carry `Latchkey-Token-Expires` (SPEC 2.4).
const EXPIRY_HINT_DAYS: i64 = 30;

/// The `Latchkey-Token-Expires` value for a verified token, when it expires within
/// [`EXPIRY_HINT_DAYS`] of `now` (the doors `/v1/me` and `/v1/forward-auth` send it alike).
pub fn expiry_hint(expires_at: Option<Timestamp>, now: Timestamp) -> Option<HeaderValue> {
    let at = expires_at.filter(|at| *at - now < time::Duration::days(EXPIRY_HINT_DAYS))?;
    HeaderValue::from_str(&rfc3339(at)).ok()
}

fn opt(t: Option<Timestamp>) -> Option<String> {
    t.map(rfc3339)
}

#[derive(Serialize)]
pub struct TokenView {
    pub id: String,
    #[serde(rename = "type")]
    pub token_type: String,
    pub name: String,
    pub status: TokenStatus,
    pub created_at: String,
    pub active_from: String,
    pub expires_at: Option<String>,
    pub revoked_at: Option<String>,
    pub last_used_at: Option<String>,
    pub last_used_ip: Option<String>,
    pub hint: String,
    pub scopes: Vec<String>,
    pub allowed_ips: Vec<String>,
    pub rotated_from: Option<String>,
}

impl TokenView {
    pub fn new(t: &TokenRecord, now: Timestamp) -> Self {
        Self {
            id: t.id.to_string(),
            token_type: t.token_type.clone(),
            name: t.name.clone(),
            status: t.status(now),
            created_at: rfc3339(t.created_at),
            active_from: rfc3339(t.active_from),
            expires_at: opt(t.expires_at),
            revoked_at: opt(t.revoked_at),
            last_used_at: opt(t.last_used_at),
            last_used_ip: t.last_used_ip.clone(),
            hint: t.hint.clone(),
            scopes: t.scopes.clone(),
            allowed_ips: t.allowed_ips.clone(),
            rotated_from: t.rotated_from.as_ref().map(ToString::to_string),
        }
    }
}

#[derive(Serialize)]
pub struct AccountView {
    pub id: String,
    pub name: String,
    pub role: latchkey_core::Role,
}

impl AccountView {
    pub fn new(a: &Account) -> Self {
        Self {
            id: a.org_id.to_string(),
            name: a.org_name.clone(),
            role: a.role,
        }
    }
}

#[derive(Serialize)]
pub struct EventView {
    pub id: String,
    pub at: String,
    pub actor: String,
    pub action: String,
    pub subject: Value,
    pub org_id: Option<String>,
    pub ip: Option<String>,
    pub outcome: String,
    pub details: Option<Value>,
}

impl EventView {
    pub fn new(e: &Event) -> Self {
        Self {
            id: e.id.clone(),
            at: rfc3339(e.at),
            actor: e.actor.clone(),
            action: e.action.clone(),
            subject: serde_json::json!({ "kind": e.subject_kind, "id": e.subject_id }),
            org_id: e.org_id.clone(),
            ip: e.ip.clone(),
            outcome: e.outcome.clone(),
            details: e
                .details
                .as_deref()
                .and_then(|d| serde_json::from_str(d).ok()),
        }
    }
}
