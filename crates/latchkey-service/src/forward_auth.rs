//! Forward auth (SPEC 8): who a verified token is, as the identity headers a proxy passes on,
//! and the requirements a proxy may add in the query (`scope`, `account`, `role`, `kind`).
//! Plain data and rules, no I/O: the HTTP handler verifies the token, the rules here decide.

use latchkey_core::Role;
use serde_json::Value;

/// What forward auth tells the upstream, built once when the answer is cached.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    /// `usr_…`, `org_…` or `cli_…`.
    pub principal: String,
    /// `user`, `organisation` or `client`.
    pub kind: String,
    pub token_id: String,
    /// The organisations the token reaches now, with the role there (`organisation` when the
    /// token acts as the organisation itself).
    pub accounts: Vec<(String, String)>,
    pub scopes: Vec<String>,
}

impl Identity {
    /// From the `/v1/me` answer (`principal`, `token`, `accounts`, `scopes`).
    pub fn from_answer(body: &Value) -> Self {
        let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
        let accounts = body["accounts"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|a| (text(&a["id"]), text(&a["role"])))
            .collect();
        let scopes = body["scopes"]
            .as_array()
            .into_iter()
            .flatten()
            .map(text)
            .collect();
        Self {
            principal: text(&body["principal"]["id"]),
            kind: text(&body["principal"]["kind"]),
            token_id: text(&body["token"]["id"]),
            accounts,
            scopes,
        }
    }

    /// `org_id:role,org_id:role`.
    pub fn accounts_header(&self) -> String {
        self.accounts
            .iter()
            .map(|(org, role)| format!("{org}:{role}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn scopes_header(&self) -> String {
        self.scopes.join(" ")
    }
}

/// What a proxy asks of the caller beyond a valid token.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Requirements {
    /// All needed.
    pub scopes: Vec<String>,
    pub account: Option<String>,
    /// At least this role in `account` (or, without `account`, in some organisation).
    pub role: Option<Role>,
    pub kind: Option<String>,
}

/// Roles by what they may do: a partner less than a member, a member less than an admin; an
/// organisation's own token acts as the organisation, above any member.
fn rank(role: &str) -> u8 {
    match role {
        "organisation" => 4,
        "admin" => 3,
        "member" => 2,
        "partner" => 1,
        _ => 0,
    }
}

impl Requirements {
    /// From the query's pairs. Unknown keys and bad values are refused: a typo in a proxy's
    /// configuration must not silently require nothing.
    pub fn from_pairs<'a>(
        pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self, String> {
        let mut out = Self::default();
        for (key, value) in pairs {
            let once = |given: bool| {
                if given {
                    Err(format!("{key} may be given once"))
                } else {
                    Ok(())
                }
            };
            match key {
                "scope" if latchkey_core::oauth::is_scope_token(value) => {
                    out.scopes.push(value.to_owned());
                }
                "account" if value.starts_with("org_") => {
                    once(out.account.is_some())?;
                    out.account = Some(value.to_owned());
                }
                "role" => {
                    once(out.role.is_some())?;
                    out.role = Some(
                        value
                            .parse()
                            .map_err(|_| "role is admin, member or partner".to_owned())?,
                    );
                }
                "kind" if matches!(value, "user" | "organisation" | "client") => {
                    once(out.kind.is_some())?;
                    out.kind = Some(value.to_owned());
                }
                "scope" | "account" | "kind" => {
                    return Err(format!("{key}: not a valid value"));
                }
                _ => {
                    return Err(
                        "unknown requirement: the query may name scope, account, role and kind"
                            .to_owned(),
                    );
                }
            }
        }
        Ok(out)
    }

    /// The first requirement `identity` does not meet, said for `error_description`.
    pub fn unmet(&self, identity: &Identity) -> Option<String> {
        if let Some(kind) = &self.kind
            && &identity.kind != kind
        {
            return Some(format!("the caller must be a {kind}"));
        }
        if let Some(missing) = self.scopes.iter().find(|s| !identity.scopes.contains(s)) {
            return Some(format!("the scope {missing} is required"));
        }
        let reaches = |org: &str| identity.accounts.iter().find(|(id, _)| id == org);
        match (&self.account, self.role) {
            (Some(org), role) => match reaches(org) {
                None => Some(format!("the token does not reach {org}")),
                Some((_, have)) if role.is_some_and(|r| rank(have) < rank(r.as_str())) => {
                    Some(format!(
                        "the role {} is required in {org}",
                        role.map_or("", Role::as_str)
                    ))
                }
                Some(_) => None,
            },
            (None, Some(role)) => (!identity
                .accounts
                .iter()
                .any(|(_, have)| rank(have) >= rank(role.as_str())))
            .then(|| format!("the role {role} is required in an organisation")),
            (None, None) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use serde_json::json;

    use super::*;

    fn user() -> Identity {
        Identity::from_answer(&json!({
            "principal": { "kind": "user", "id": "usr_1" },
            "token": { "id": "tok_1" },
            "accounts": [{ "id": "org_a", "role": "member" }, { "id": "org_b", "role": "admin" }],
            "scopes": ["api", "links"],
        }))
    }

    fn req(query: &[(&str, &str)]) -> Requirements {
        Requirements::from_pairs(query.iter().copied()).unwrap()
    }

    #[test]
    fn the_identity_headers_come_from_the_answer() {
        let id = user();
        assert_eq!(id.principal, "usr_1");
        assert_eq!(id.kind, "user");
        assert_eq!(id.token_id, "tok_1");
        assert_eq!(id.accounts_header(), "org_a:member,org_b:admin");
        assert_eq!(id.scopes_header(), "api links");
    }

    #[test]
    fn requirements_are_all_needed() {
        let id = user();
        for (query, unmet) in [
            (vec![], false),
            (vec![("scope", "api")], false),
            (vec![("scope", "api"), ("scope", "links")], false),
            (vec![("scope", "api"), ("scope", "admin")], true),
            (vec![("account", "org_a")], false),
            (vec![("account", "org_c")], true),
            (vec![("account", "org_a"), ("role", "member")], false),
            (vec![("account", "org_a"), ("role", "partner")], false),
            (vec![("account", "org_a"), ("role", "admin")], true),
            (vec![("account", "org_b"), ("role", "admin")], false),
            (vec![("role", "admin")], false),
            (vec![("kind", "user")], false),
            (vec![("kind", "client")], true),
        ] {
            assert_eq!(req(&query).unmet(&id).is_some(), unmet, "{query:?}");
        }
    }

    #[test]
    fn an_organisation_token_acts_as_its_organisation() {
        let org = Identity::from_answer(&json!({
            "principal": { "kind": "organisation", "id": "org_a" },
            "token": { "id": "tok_2" },
            "accounts": [{ "id": "org_a", "role": "organisation" }],
            "scopes": ["api"],
        }));
        assert!(
            req(&[("account", "org_a"), ("role", "admin")])
                .unmet(&org)
                .is_none()
        );
        assert!(req(&[("account", "org_b")]).unmet(&org).is_some());
    }

    #[test]
    fn bad_requirements_are_refused() {
        for query in [
            vec![("scopes", "api")],
            vec![("role", "owner")],
            vec![("kind", "robot")],
            vec![("account", "acme")],
            vec![("scope", "")],
            vec![("role", "admin"), ("role", "member")],
        ] {
            assert!(
                Requirements::from_pairs(query.iter().copied()).is_err(),
                "{query:?}"
            );
        }
    }
}
