//! Membership roles. Only admins see or manage an organisation's tokens and clients.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use thiserror::Error;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Admin,
    Member,
    Partner,
}

#[derive(Debug, Error, PartialEq, Eq)]
#[error("a role is admin, member or partner")]
pub struct RoleError;

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Member => "member",
            Self::Partner => "partner",
        }
    }
    pub fn is_admin(self) -> bool {
        self == Self::Admin
    }
}

impl FromStr for Role {
    type Err = RoleError;
    fn from_str(s: &str) -> Result<Self, RoleError> {
        match s {
            "admin" => Ok(Self::Admin),
            "member" => Ok(Self::Member),
            "partner" => Ok(Self::Partner),
            _ => Err(RoleError),
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        for role in [Role::Admin, Role::Member, Role::Partner] {
            assert_eq!(role.as_str().parse(), Ok(role));
        }
        assert_eq!("Admin".parse::<Role>(), Err(RoleError));
    }
}
