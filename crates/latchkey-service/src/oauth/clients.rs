//! OAuth clients ("apps") of an organisation, managed by its admins (and the operator CLI).
//! A confidential client has at most two active secrets, for rotation; each is shown once and
//! stored as its SHA-256 (a slow hash buys nothing at 256 bits and would cost the token
//! endpoint its speed).

use latchkey_core::oauth::{
    GrantType, OrgScope, check_redirect_uri, is_scope_token, org_scope, parse_scope_list,
    web_origin,
};
use latchkey_core::{ClientId, Prefix, SecretId, TokenName, TokenSecret};
use latchkey_store::{ClientChange, ClientSecretRecord, NewClientSecret, OAuthClient, Org, User};
use serde_json::json;

use crate::crypto::random_bytes;
use crate::error::{ErrorCode, ServiceError, ServiceResult};
use crate::events::EventSpec;
use crate::{Caller, Service};

/// The prefix of client secrets: recognisable by scanners like every Latchkey secret.
pub const CLIENT_SECRET_PREFIX: &str = "lkcs";
/// Active secrets per client (SPEC 3).
pub const MAX_CLIENT_SECRETS: u32 = 2;

/// What an admin (or the operator) asks for.
#[derive(Debug, Clone, Default)]
pub struct ClientSpec {
    pub name: String,
    pub grant_types: Vec<String>,
    pub redirect_uris: Vec<String>,
    pub scopes: Vec<String>,
    /// `false` makes a public client (no secret; PKCE required).
    pub confidential: bool,
    pub can_introspect: bool,
}

/// A client just made, with its first secret (confidential clients), shown this once.
#[derive(Debug)]
pub struct CreatedClient {
    pub client: OAuthClient,
    pub secret: Option<(ClientSecretRecord, TokenSecret)>,
}

fn grant_types(list: &[String]) -> ServiceResult<Vec<String>> {
    if list.is_empty() {
        return Err(ServiceError::invalid(
            "grant_types: give at least one of client_credentials, authorization_code, refresh_token",
        ));
    }
    // Messages name the entry by position, never repeat it: whatever was submitted (a
    // secret pasted into the wrong field) stays out of the answer.
    let mut out: Vec<GrantType> = list
        .iter()
        .enumerate()
        .map(|(i, g)| {
            GrantType::parse(g).ok_or_else(|| {
                ServiceError::invalid(format!(
                    "grant_types: entry {} is not one of client_credentials, authorization_code, refresh_token",
                    i + 1
                ))
            })
        })
        .collect::<ServiceResult<_>>()?;
    out.sort();
    out.dedup();
    Ok(out.iter().map(|g| g.as_str().to_owned()).collect())
}

fn redirect_uris(list: &[String]) -> ServiceResult<Vec<String>> {
    if list.len() > 20 {
        return Err(ServiceError::invalid("redirect_uris: at most 20"));
    }
    list.iter()
        .map(|u| {
            check_redirect_uri(u)
                .map(|()| u.clone())
                .map_err(ServiceError::invalid)
        })
        .collect()
}

/// Each entry is one scope token: `["a b"]` is refused, not read as two scopes.
fn scopes(list: &[String]) -> ServiceResult<Vec<String>> {
    if let Some(bad) = list.iter().position(|s| !is_scope_token(s)) {
        return Err(ServiceError::invalid(format!(
            "scopes: entry {} is not a valid scope (one word of printable characters)",
            bad + 1
        )));
    }
    parse_scope_list(&list.join(" ")).map_err(|e| ServiceError::invalid(format!("scopes: {e}")))
}

/// SPEC 3: introspection reveals other tenants' owners and memberships, so only an operator
/// (the CLI) grants it.
fn introspect_is_operator_only() -> ServiceError {
    ServiceError::client(
        ErrorCode::Forbidden,
        "the introspect permission is granted by an operator only (latchkey client create --introspect)",
    )
}

/// Checks the combination: a public client cannot use client credentials; the
/// authorization-code grant needs a redirect URI.
fn check_spec(grants: &[String], uris: &[String], confidential: bool) -> ServiceResult<()> {
    if !confidential && grants.iter().any(|g| g == "client_credentials") {
        return Err(ServiceError::invalid(
            "a public client (no secret) cannot use client_credentials",
        ));
    }
    if grants.iter().any(|g| g == "authorization_code") && uris.is_empty() {
        return Err(ServiceError::invalid(
            "the authorization_code grant needs at least one redirect URI",
        ));
    }
    Ok(())
}

impl Service {
    /// SPEC 3: a client gets only scopes of organisation-owned types, a feature-gated type's
    /// only while the organisation has the feature.
    fn check_client_scopes(&self, org: &Org, scopes: &[String]) -> ServiceResult<()> {
        for (i, scope) in scopes.iter().enumerate() {
            match org_scope(&self.types, &org.features, scope) {
                OrgScope::Allowed => {}
                OrgScope::NeedsFeature(feature) => {
                    return Err(ServiceError::client(
                        ErrorCode::FeatureNotEnabled,
                        format!("scopes: {scope:?} needs the organisation feature {feature:?}"),
                    ));
                }
                OrgScope::Unknown => {
                    // By position: an unknown value is not repeated in the answer.
                    return Err(ServiceError::invalid(format!(
                        "scopes: entry {} is not a scope of any organisation token type",
                        i + 1
                    )));
                }
            }
        }
        Ok(())
    }

    /// CORS (SPEC 3), the actual request: whether `origin` is where one of this live client's
    /// redirect URIs is.
    pub async fn client_allows_origin(&self, client_id: &str, origin: &str) -> ServiceResult<bool> {
        let Some(origin) = web_origin(origin) else {
            return Ok(false);
        };
        let client = self.store.find_client(client_id).await?;
        Ok(client.is_some_and(|c| {
            c.deleted_at.is_none()
                && c.redirect_uris
                    .iter()
                    .any(|u| web_origin(u).as_deref() == Some(origin.as_str()))
        }))
    }

    /// CORS (SPEC 3), the preflight: it names no client, so an origin passes when it is where
    /// a redirect URI of any live client is. The preflight only lets the browser send the
    /// request; whether the page may read the answer is decided again, for the client the
    /// request authenticates as ([`Self::client_allows_origin`]).
    pub async fn any_client_allows_origin(&self, origin: &str) -> ServiceResult<bool> {
        let Some(origin) = web_origin(origin) else {
            return Ok(false);
        };
        Ok(self
            .store
            .list_live_redirect_uris()
            .await?
            .iter()
            .any(|u| web_origin(u).as_deref() == Some(origin.as_str())))
    }

    /// Tells the organisation's admins that a client secret was made (hint only).
    async fn attach_client_secret_mail(
        &self,
        event: &mut latchkey_store::NewEvent,
        org: &Org,
        client: &OAuthClient,
        hint: &str,
    ) -> ServiceResult<()> {
        let at = self.now();
        let owner = latchkey_store::Owner::Organisation(org.id.clone());
        self.notify_owner(event, &owner, |a| {
            crate::mails::client_secret_created(&client.name, &client.id, hint, &a.label, at)
        })
        .await
    }

    fn new_client_secret(&self, client_id: &str) -> ServiceResult<(NewClientSecret, TokenSecret)> {
        let prefix = Prefix::parse(CLIENT_SECRET_PREFIX)
            .map_err(|_| ServiceError::Internal("client secret prefix".into()))?;
        let secret = TokenSecret::generate(&prefix, random_bytes()?);
        let record = NewClientSecret {
            id: SecretId::from_random(random_bytes()?).to_string(),
            client_id: client_id.to_owned(),
            secret_hash: secret.hash(),
            hint: secret.hint(),
            created_at: self.now(),
        };
        Ok((record, secret))
    }

    /// Creates a client for `org` (the caller is an admin of it, or the operator).
    pub async fn create_client(
        &self,
        caller: &Caller,
        org: &Org,
        spec: ClientSpec,
    ) -> ServiceResult<CreatedClient> {
        let name = TokenName::parse(&spec.name)
            .map_err(|e| ServiceError::invalid(format!("name: {e}")))?;
        let grants = grant_types(&spec.grant_types)?;
        let uris = redirect_uris(&spec.redirect_uris)?;
        let scopes = scopes(&spec.scopes)?;
        self.check_client_scopes(org, &scopes)?;
        check_spec(&grants, &uris, spec.confidential)?;
        let client = OAuthClient {
            id: ClientId::from_random(random_bytes()?).to_string(),
            org_id: org.id.clone(),
            name: name.as_str().to_owned(),
            grant_types: grants,
            redirect_uris: uris,
            scopes,
            is_confidential: spec.confidential,
            can_introspect: spec.can_introspect,
            created_at: self.now(),
            deleted_at: None,
            tokens_valid_after: None,
        };
        let secret = if spec.confidential {
            Some(self.new_client_secret(&client.id)?)
        } else {
            None
        };
        let mut event = self.event(
            caller,
            EventSpec {
                action: "client.created",
                subject_kind: "client",
                subject_id: &client.id,
                user: None,
                org: Some(&org.id),
                outcome: "success",
                details: Some(json!({
                    "name": client.name, "grant_types": client.grant_types, "scopes": client.scopes,
                    "confidential": client.is_confidential, "introspect": client.can_introspect,
                })),
            },
        )?;
        if let Some((s, _)) = &secret {
            self.attach_client_secret_mail(&mut event, org, &client, &s.hint)
                .await?;
        }
        self.store
            .create_client(&client, secret.as_ref().map(|(s, _)| s), &event)
            .await?;
        let secret = secret.map(|(s, clear)| {
            let record = ClientSecretRecord {
                id: s.id,
                client_id: s.client_id,
                hint: s.hint,
                created_at: s.created_at,
                revoked_at: None,
                last_used_at: None,
            };
            (record, clear)
        });
        Ok(CreatedClient { client, secret })
    }

    pub async fn create_client_as_admin(
        &self,
        caller: &Caller,
        admin: &User,
        org_id: &str,
        spec: ClientSpec,
    ) -> ServiceResult<CreatedClient> {
        let org = self.require_admin(&admin.id, org_id).await?;
        if spec.can_introspect {
            return Err(introspect_is_operator_only());
        }
        self.create_client(caller, &org, spec).await
    }

    pub async fn list_clients(
        &self,
        admin: &User,
        org_id: &str,
    ) -> ServiceResult<Vec<(OAuthClient, Vec<ClientSecretRecord>)>> {
        let org = self.require_admin(&admin.id, org_id).await?;
        let mut out = Vec::new();
        for client in self.store.list_clients(&org.id).await? {
            let secrets = self.store.list_client_secrets(&client.id).await?;
            out.push((client, secrets));
        }
        Ok(out)
    }

    /// One live client of the organisation; another organisation's answers `404`.
    pub async fn org_client(
        &self,
        admin: &User,
        org_id: &str,
        client_id: &str,
    ) -> ServiceResult<(Org, OAuthClient)> {
        let org = self.require_admin(&admin.id, org_id).await?;
        match self.store.find_client(client_id).await? {
            Some(c) if c.org_id == org.id && c.deleted_at.is_none() => Ok((org, c)),
            _ => Err(ServiceError::not_found("client")),
        }
    }

    pub async fn client_secrets(&self, client_id: &str) -> ServiceResult<Vec<ClientSecretRecord>> {
        Ok(self.store.list_client_secrets(client_id).await?)
    }

    pub async fn update_client(
        &self,
        caller: &Caller,
        admin: &User,
        org_id: &str,
        client_id: &str,
        change: ClientSpecChange,
    ) -> ServiceResult<OAuthClient> {
        let (org, client) = self.org_client(admin, org_id, client_id).await?;
        let name = change
            .name
            .as_deref()
            .map(|n| {
                TokenName::parse(n)
                    .map(|n| n.as_str().to_owned())
                    .map_err(|e| ServiceError::invalid(format!("name: {e}")))
            })
            .transpose()?;
        let grants = change.grant_types.as_deref().map(grant_types).transpose()?;
        let uris = change
            .redirect_uris
            .as_deref()
            .map(redirect_uris)
            .transpose()?;
        let new_scopes = change.scopes.as_deref().map(scopes).transpose()?;
        if let Some(new_scopes) = &new_scopes {
            self.check_client_scopes(&org, new_scopes)?;
        }
        // Taking the permission away is an admin's right; giving it is not. Restating what the
        // client already has grants nothing.
        if change.can_introspect == Some(true) && !client.can_introspect {
            return Err(introspect_is_operator_only());
        }
        check_spec(
            grants.as_deref().unwrap_or(&client.grant_types),
            uris.as_deref().unwrap_or(&client.redirect_uris),
            client.is_confidential,
        )?;
        let store_change = ClientChange {
            name,
            grant_types: grants,
            redirect_uris: uris,
            scopes: new_scopes,
            can_introspect: change.can_introspect,
        };
        let event = self.event(
            caller,
            EventSpec {
                action: "client.updated",
                subject_kind: "client",
                subject_id: &client.id,
                user: None,
                org: Some(&org.id),
                outcome: "success",
                details: Some(json!({
                    "name": store_change.name, "grant_types": store_change.grant_types,
                    "redirect_uris": store_change.redirect_uris, "scopes": store_change.scopes,
                    "introspect": store_change.can_introspect,
                })),
            },
        )?;
        self.store
            .update_client(&client.id, &store_change, &event)
            .await?;
        Ok(self.org_client(admin, org_id, client_id).await?.1)
    }

    /// Deletes a client: its secrets stop working and its access tokens are refused at once.
    pub async fn delete_client(
        &self,
        caller: &Caller,
        admin: &User,
        org_id: &str,
        client_id: &str,
    ) -> ServiceResult<()> {
        let (org, client) = self.org_client(admin, org_id, client_id).await?;
        let event = self.event(
            caller,
            EventSpec {
                action: "client.deleted",
                subject_kind: "client",
                subject_id: &client.id,
                user: None,
                org: Some(&org.id),
                outcome: "success",
                details: Some(json!({ "name": client.name })),
            },
        )?;
        self.store
            .delete_client(&client.id, self.now(), &event)
            .await?;
        Ok(())
    }

    /// A new secret, shown once; at most two are active at a time.
    pub async fn add_client_secret(
        &self,
        caller: &Caller,
        admin: &User,
        org_id: &str,
        client_id: &str,
    ) -> ServiceResult<(ClientSecretRecord, TokenSecret)> {
        let (org, client) = self.org_client(admin, org_id, client_id).await?;
        if !client.is_confidential {
            return Err(ServiceError::client(
                ErrorCode::Conflict,
                "a public client has no secrets",
            ));
        }
        let (secret, clear) = self.new_client_secret(&client.id)?;
        let mut event = self.event(
            caller,
            EventSpec {
                action: "client_secret.created",
                subject_kind: "client",
                subject_id: &client.id,
                user: None,
                org: Some(&org.id),
                outcome: "success",
                details: Some(json!({ "secret_id": secret.id, "hint": secret.hint })),
            },
        )?;
        self.attach_client_secret_mail(&mut event, &org, &client, &secret.hint)
            .await?;
        self.store
            .add_client_secret_within_limit(&secret, MAX_CLIENT_SECRETS, &event)
            .await
            .map_err(|e| match e {
                latchkey_store::StoreError::LimitReached => ServiceError::client(
                    ErrorCode::Conflict,
                    "a client has at most 2 active secrets: delete one first",
                ),
                other => other.into(),
            })?;
        let record = ClientSecretRecord {
            id: secret.id,
            client_id: secret.client_id,
            hint: secret.hint,
            created_at: secret.created_at,
            revoked_at: None,
            last_used_at: None,
        };
        Ok((record, clear))
    }

    pub async fn delete_client_secret(
        &self,
        caller: &Caller,
        admin: &User,
        org_id: &str,
        client_id: &str,
        secret_id: &str,
    ) -> ServiceResult<()> {
        let (org, client) = self.org_client(admin, org_id, client_id).await?;
        let event = self.event(
            caller,
            EventSpec {
                action: "client_secret.revoked",
                subject_kind: "client",
                subject_id: &client.id,
                user: None,
                org: Some(&org.id),
                outcome: "success",
                details: Some(json!({ "secret_id": secret_id })),
            },
        )?;
        if !self
            .store
            .revoke_client_secret(&client.id, secret_id, self.now(), &event)
            .await?
        {
            return Err(ServiceError::not_found("client secret"));
        }
        Ok(())
    }
}

/// A partial change to a client.
#[derive(Debug, Clone, Default)]
pub struct ClientSpecChange {
    pub name: Option<String>,
    pub grant_types: Option<Vec<String>>,
    pub redirect_uris: Option<Vec<String>>,
    pub scopes: Option<Vec<String>>,
    pub can_introspect: Option<bool>,
}
