//! Building audit events. An event names ids and non-secret details only.

use latchkey_core::{EventId, OrgId, UserId};
use latchkey_store::NewEvent;

use crate::crypto::random_bytes;
use crate::error::ServiceResult;
use crate::{Caller, Service};

pub(crate) struct EventSpec<'a> {
    pub action: &'a str,
    pub subject_kind: &'a str,
    pub subject_id: &'a str,
    pub user: Option<&'a UserId>,
    pub org: Option<&'a OrgId>,
    pub outcome: &'a str,
    pub details: Option<serde_json::Value>,
}

impl Service {
    pub(crate) fn event(&self, caller: &Caller, spec: EventSpec<'_>) -> ServiceResult<NewEvent> {
        Ok(NewEvent {
            id: EventId::from_random(random_bytes()?).to_string(),
            at: self.now(),
            actor: caller.actor.as_text(),
            action: spec.action.to_owned(),
            subject_kind: spec.subject_kind.to_owned(),
            subject_id: spec.subject_id.to_owned(),
            user_id: spec.user.cloned().or_else(|| caller.user_id().cloned()),
            org_id: spec.org.cloned(),
            ip: caller.ip.map(|ip| ip.to_string()),
            outcome: spec.outcome.to_owned(),
            details: spec.details.map(|d| d.to_string()),
            mails: Vec::new(),
        })
    }
}
