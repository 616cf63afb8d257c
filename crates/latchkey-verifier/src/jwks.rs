//! Offline checks of JWTs against Latchkey's published keys (`/.well-known/jwks.json`),
//! fetched at the first JWT, again on an unknown `kid` (at most once a second) and after a
//! `keys` invalidation.

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};

use crate::{Inner, Refusal};

/// The least time between two fetches caused by unknown key ids (a flood of forged `kid`s must
/// not become a flood of requests to Latchkey).
const REFETCH_AFTER: Duration = Duration::from_secs(1);
const LEEWAY_SECS: u64 = 5;

#[derive(Default)]
pub(crate) struct Jwks {
    keys: RwLock<HashMap<String, (DecodingKey, Algorithm)>>,
    fetched: tokio::sync::Mutex<Option<Instant>>,
}

impl Jwks {
    /// Checks `token`'s signature, issuer, expiry (and audience for an access token) offline.
    pub(crate) async fn check(&self, inner: &Inner, token: &str) -> Result<(), Refusal> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| Refusal::Malformed)?;
        // Keys come from Latchkey's JWKS only, never from the token.
        if header.jku.is_some() || header.x5u.is_some() || header.jwk.is_some() {
            return Err(Refusal::Malformed);
        }
        let typ = header
            .typ
            .as_deref()
            .unwrap_or_default()
            .to_ascii_lowercase();
        let access_token = match typ.as_str() {
            "at+jwt" | "application/at+jwt" => true,
            "jwt" => false,
            _ => return Err(Refusal::Malformed),
        };
        let kid = header.kid.ok_or(Refusal::Malformed)?;
        let (key, alg) = match self.key(&kid) {
            Some(found) => found,
            None => {
                self.refetch(inner, false).await?;
                self.key(&kid).ok_or(Refusal::Malformed)?
            }
        };
        if alg != header.alg {
            return Err(Refusal::Malformed);
        }
        let issuer = inner.config.issuer();
        let mut validation = Validation::new(alg);
        validation.leeway = LEEWAY_SECS;
        validation.set_issuer(&[issuer]);
        if access_token {
            validation.set_audience(&[issuer]);
            validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        } else {
            validation.validate_aud = false;
            validation.validate_exp = false;
            validation.set_required_spec_claims(&["iss"]);
        }
        jsonwebtoken::decode::<serde_json::Value>(token, &key, &validation)
            .map_err(|_| Refusal::Malformed)?;
        Ok(())
    }

    fn key(&self, kid: &str) -> Option<(DecodingKey, Algorithm)> {
        self.keys.read().ok()?.get(kid).cloned()
    }

    /// Fetches the key set again (`force`: after a `keys` invalidation; otherwise at most once
    /// per [`REFETCH_AFTER`]).
    pub(crate) async fn refetch(&self, inner: &Inner, force: bool) -> Result<(), Refusal> {
        let mut fetched = self.fetched.lock().await;
        if !force && fetched.is_some_and(|at| at.elapsed() < REFETCH_AFTER) {
            return Ok(());
        }
        *fetched = Some(Instant::now());
        let set: JwkSet = inner
            .http
            .get(format!("{}/.well-known/jwks.json", inner.config.url))
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| Refusal::Unavailable(e.without_url().to_string()))?
            .json()
            .await
            .map_err(|e| Refusal::Unavailable(e.without_url().to_string()))?;
        let mut keys = HashMap::new();
        for jwk in &set.keys {
            let (Some(kid), Some(alg)) = (jwk.common.key_id.clone(), jwk_alg(jwk)) else {
                continue;
            };
            if let Ok(key) = DecodingKey::from_jwk(jwk) {
                keys.insert(kid, (key, alg));
            }
        }
        if let Ok(mut slot) = self.keys.write() {
            *slot = keys;
        }
        Ok(())
    }
}

/// The algorithm a key is for: its `alg`, else what its curve or type implies.
fn jwk_alg(jwk: &jsonwebtoken::jwk::Jwk) -> Option<Algorithm> {
    use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, KeyAlgorithm};
    if let Some(alg) = jwk.common.key_algorithm {
        return match alg {
            KeyAlgorithm::ES256 => Some(Algorithm::ES256),
            KeyAlgorithm::ES384 => Some(Algorithm::ES384),
            KeyAlgorithm::EdDSA => Some(Algorithm::EdDSA),
            KeyAlgorithm::RS256 => Some(Algorithm::RS256),
            _ => None,
        };
    }
    match &jwk.algorithm {
        AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
            EllipticCurve::P256 => Some(Algorithm::ES256),
            EllipticCurve::P384 => Some(Algorithm::ES384),
            _ => None,
        },
        AlgorithmParameters::OctetKeyPair(_) => Some(Algorithm::EdDSA),
        AlgorithmParameters::RSA(_) => Some(Algorithm::RS256),
        _ => None,
    }
}
