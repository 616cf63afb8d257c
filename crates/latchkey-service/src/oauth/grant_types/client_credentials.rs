//! `grant_type=client_credentials` (RFC 6749 §4.4): a confidential client gets an access token
//! that acts as its organisation.

use std::collections::BTreeMap;

use latchkey_core::oauth::{OAuthErrorCode, parse_scope_list};
use latchkey_store::OAuthClient;

use crate::Service;
use crate::oauth::access_tokens::IssuedAccessToken;
use crate::oauth::{OAuthResult, oauth_err};

impl Service {
    pub(crate) fn grant_client_credentials(
        &self,
        client: &OAuthClient,
        features: &[String],
        form: &BTreeMap<String, String>,
    ) -> OAuthResult<IssuedAccessToken> {
        if !client.is_confidential {
            return Err(oauth_err(
                OAuthErrorCode::UnauthorizedClient,
                "a public client cannot use client_credentials",
            ));
        }
        let scope = match form.get("scope") {
            Some(text) => {
                let asked = parse_scope_list(text)
                    .map_err(|e| oauth_err(OAuthErrorCode::InvalidScope, e))?;
                let allowed = self.org_bounded(&client.scopes, features);
                if let Some(extra) = asked.iter().find(|s| !allowed.contains(s)) {
                    return Err(oauth_err(
                        OAuthErrorCode::InvalidScope,
                        format!("the client may not ask for the scope '{extra}'"),
                    ));
                }
                asked
            }
            None => self.org_bounded(&client.scopes, features),
        };
        Ok(self.issue_client_access_token(client, scope)?)
    }
}
