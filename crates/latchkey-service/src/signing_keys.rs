//! The signing keys' life cycle: loaded from storage into the ring (`keys.rs`), the first one
//! created at first start, rotation (published ahead of use), and the published JWKS.

use std::sync::Arc;

use latchkey_core::Timestamp;
use latchkey_store::StoredSigningKey;
use serde_json::{Value, json};

use crate::error::{ServiceError, ServiceResult};
use crate::keys::{SigningAlg, SigningKey, generate_private_key, new_kid};

use crate::events::EventSpec;
use crate::{Caller, Service};

fn aad(kid: &str) -> String {
    format!("signing-key:{kid}")
}

impl Service {
    /// Reads every stored key and replaces the in-memory ring.
    pub async fn load_signing_keys(&self) -> ServiceResult<()> {
        let stored = self.store.list_signing_keys().await?;
        let mut keys = Vec::with_capacity(stored.len());
        for k in stored {
            let alg: SigningAlg = k.alg.parse().map_err(ServiceError::Internal)?;
            let der = self.master_key.open(&k.private_key, &aad(&k.kid))?;
            keys.push(SigningKey::load(
                &k.kid,
                alg,
                &der,
                k.use_from,
                k.retired_at,
            )?);
        }
        self.keys.replace(keys);
        Ok(())
    }

    /// Makes sure a key of the configured algorithm can sign now (the first start, or a
    /// changed `signing_alg`).
    pub(crate) async fn ensure_signing_key(&self) -> ServiceResult<()> {
        if self
            .keys
            .current(self.settings.signing_alg, self.now())
            .is_some()
        {
            return Ok(());
        }
        self.add_signing_key(&Caller::operator(), self.now(), "first key")
            .await
    }

    /// `latchkey keys rotate`: a new key, published now and used from `key_publish_ahead` on;
    /// the current keys stop signing then, and stay published while anything they signed can
    /// still be valid.
    pub async fn rotate_signing_key(&self, caller: &Caller) -> ServiceResult<String> {
        let use_from = self.now() + self.settings.key_publish_ahead.to_time();
        self.add_signing_key(caller, use_from, "rotation").await?;
        self.keys
            .all()
            .into_iter()
            .find(|k| k.use_from == use_from)
            .map(|k| k.kid.clone())
            .ok_or_else(|| ServiceError::Internal("the new key did not load".into()))
    }

    async fn add_signing_key(
        &self,
        caller: &Caller,
        use_from: Timestamp,
        reason: &str,
    ) -> ServiceResult<()> {
        let alg = self.settings.signing_alg;
        let kid = new_kid()?;
        let der = generate_private_key(alg)?;
        let key = StoredSigningKey {
            kid: kid.clone(),
            alg: alg.as_str().to_owned(),
            private_key: self.master_key.seal(&der, &aad(&kid))?,
            created_at: self.now(),
            use_from,
            retired_at: None,
        };
        let event = self.event(
            caller,
            EventSpec {
                action: "signing_key.created",
                subject_kind: "signing_key",
                subject_id: &kid,
                user: None,
                org: None,
                outcome: "success",
                details: Some(json!({ "alg": alg.as_str(), "reason": reason })),
            },
        )?;
        self.store
            .insert_signing_key(&key, Some(use_from), &event)
            .await?;
        self.load_signing_keys().await
    }

    /// The JWKS: every key that signs now or soon, and every retired key that signed something
    /// that may still be valid (a live JWT-format token, or an access token not yet expired).
    pub async fn jwks(&self) -> ServiceResult<Value> {
        let now = self.now();
        let live = self.store.live_signing_kids(now).await?;
        let ttl = self.settings.access_token_ttl.to_time();
        let published: Vec<String> = self
            .keys
            .all()
            .iter()
            .filter(|k| k.retired_at.is_none_or(|r| r + ttl > now) || live.contains(&k.kid))
            .map(|k| k.kid.clone())
            .collect();
        Ok(self.keys.jwks(&published))
    }

    pub fn signing_keys(&self) -> Vec<Arc<SigningKey>> {
        self.keys.all()
    }
}
