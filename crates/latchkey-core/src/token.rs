//! A token's status at a given instant, and the reasons a presented token is refused.

use serde::Serialize;

use crate::clock::Timestamp;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenStatus {
    Pending,
    Active,
    Expired,
    Revoked,
}

impl TokenStatus {
    /// Revocation wins over expiry, expiry over pending: the most final state is shown.
    pub fn at(
        now: Timestamp,
        active_from: Timestamp,
        expires_at: Option<Timestamp>,
        revoked_at: Option<Timestamp>,
    ) -> Self {
        if revoked_at.is_some_and(|r| r <= now) {
            Self::Revoked
        } else if expires_at.is_some_and(|e| e <= now) {
            Self::Expired
        } else if now < active_from {
            Self::Pending
        } else {
            Self::Active
        }
    }

    /// Pending and active tokens count against `max_active`.
    pub fn is_live(self) -> bool {
        matches!(self, Self::Pending | Self::Active)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Active => "active",
            Self::Expired => "expired",
            Self::Revoked => "revoked",
        }
    }
}

/// Why a presented credential was refused. On the wire every refusal is the same
/// `401 invalid_token`; the reason goes in `error_description` (SPEC 2.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    Malformed,
    Unknown,
    Revoked,
    Expired,
    Pending {
        active_from: Timestamp,
        now: Timestamp,
    },
    Disabled,
    IpNotAllowed,
}

impl Refusal {
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::Unknown => "unknown",
            Self::Revoked => "revoked",
            Self::Expired => "expired",
            Self::Pending { .. } => "pending",
            Self::Disabled => "disabled",
            Self::IpNotAllowed => "ip_not_allowed",
        }
    }

    /// The `error_description`: starts with the reason, then says what to do.
    pub fn description(&self) -> String {
        match self {
            Self::Malformed => "malformed: this is not a Latchkey token".to_owned(),
            Self::Unknown => "unknown: no such token".to_owned(),
            Self::Revoked => "revoked: the token was revoked".to_owned(),
            Self::Expired => "expired: the token has expired".to_owned(),
            Self::Pending { active_from, now } => {
                let secs = (*active_from - *now).whole_seconds().max(1);
                let at = active_from
                    .format(&time::format_description::well_known::Rfc3339)
                    .unwrap_or_default();
                format!("pending: the token becomes active in {secs}s, at {at}")
            }
            Self::Disabled => "disabled: API tokens are switched off for this owner".to_owned(),
            Self::IpNotAllowed => {
                "ip_not_allowed: the token may not be used from this address".to_owned()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn status_follows_the_clock() {
        let created = datetime!(2026-01-01 00:00:00 UTC);
        let active = datetime!(2026-01-01 00:30:00 UTC);
        let expires = Some(datetime!(2026-02-01 00:00:00 UTC));
        assert_eq!(
            TokenStatus::at(created, active, expires, None),
            TokenStatus::Pending
        );
        assert_eq!(
            TokenStatus::at(active, active, expires, None),
            TokenStatus::Active
        );
        assert_eq!(
            TokenStatus::at(datetime!(2026-02-01 00:00:00 UTC), active, expires, None),
            TokenStatus::Expired
        );
        assert_eq!(
            TokenStatus::at(active, active, expires, Some(created)),
            TokenStatus::Revoked
        );
        assert!(TokenStatus::Pending.is_live() && !TokenStatus::Expired.is_live());
    }

    #[test]
    fn a_future_revocation_is_a_grace_period() {
        let t0 = datetime!(2026-01-01 00:00:00 UTC);
        let end = Some(datetime!(2026-01-01 01:00:00 UTC));
        assert_eq!(TokenStatus::at(t0, t0, None, end), TokenStatus::Active);
    }

    #[test]
    fn pending_description_says_when() {
        let r = Refusal::Pending {
            active_from: datetime!(2026-01-01 00:30:00 UTC),
            now: datetime!(2026-01-01 00:00:00 UTC),
        };
        assert_eq!(
            r.description(),
            "pending: the token becomes active in 1800s, at 2026-01-01T00:30:00Z"
        );
        assert_eq!(r.reason(), "pending");
    }
}
