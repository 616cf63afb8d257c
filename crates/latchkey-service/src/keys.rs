//! Signing keys: generation, the in-memory key ring, JWT signing and verification, JWKS. No
//! storage: loading, creating and rotating the stored keys is `signing_keys.rs`.
//!
//! Private keys are stored AEAD-sealed under the master key and parsed once into aws-lc-rs key
//! pairs (signing with `jsonwebtoken::encode` would re-parse the key on every call). Verification
//! uses `jsonwebtoken` with the algorithm fixed by our key, never by the token's header, and only
//! our own keys (no `jku`, `x5u` or `jwk` header is ever followed). Time claims are checked
//! against the service clock, not the system clock.

use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, RwLock};

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _, RSA_PKCS1_SHA256,
    RsaKeyPair,
};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Validation};
use latchkey_core::Timestamp;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::error::{ServiceError, ServiceResult};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SigningAlg {
    Es256,
    Rs256,
    EdDsa,
}

impl SigningAlg {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Es256 => "ES256",
            Self::Rs256 => "RS256",
            Self::EdDsa => "EdDSA",
        }
    }
    fn jwt_alg(self) -> Algorithm {
        match self {
            Self::Es256 => Algorithm::ES256,
            Self::Rs256 => Algorithm::RS256,
            Self::EdDsa => Algorithm::EdDSA,
        }
    }
}

impl FromStr for SigningAlg {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "ES256" => Ok(Self::Es256),
            "RS256" => Ok(Self::Rs256),
            "EdDSA" => Ok(Self::EdDsa),
            other => Err(format!(
                "signing_alg must be ES256, RS256 or EdDSA, not {other:?}"
            )),
        }
    }
}

impl fmt::Display for SigningAlg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

fn internal(what: &str) -> impl Fn(aws_lc_rs::error::Unspecified) -> ServiceError + '_ {
    move |_| ServiceError::Internal(format!("{what} failed"))
}

/// A new private key, PKCS#8 DER.
pub fn generate_private_key(alg: SigningAlg) -> ServiceResult<Vec<u8>> {
    let rng = SystemRandom::new();
    match alg {
        SigningAlg::Es256 => Ok(EcdsaKeyPair::generate_pkcs8(
            &ECDSA_P256_SHA256_FIXED_SIGNING,
            &rng,
        )
        .map_err(internal("EC key generation"))?
        .as_ref()
        .to_vec()),
        // PKCS#8 v1 (no embedded public key): the form jsonwebtoken reads for its JWK.
        SigningAlg::EdDsa => Ok(Ed25519KeyPair::generate_pkcs8v1(&rng)
            .map_err(internal("Ed25519 key generation"))?
            .as_ref()
            .to_vec()),
        SigningAlg::Rs256 => {
            let pair =
                RsaKeyPair::generate(KeySize::Rsa2048).map_err(internal("RSA key generation"))?;
            let der = AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(&pair)
                .map_err(internal("RSA key encoding"))?;
            Ok(der.as_ref().to_vec())
        }
    }
}

enum Signer {
    Ec(EcdsaKeyPair),
    Rsa(RsaKeyPair),
    Ed(Ed25519KeyPair),
}

/// One signing key, parsed once.
pub struct SigningKey {
    pub kid: String,
    pub alg: SigningAlg,
    signer: Signer,
    decoding: DecodingKey,
    /// The public JWK, with `kid`, `alg` and `use`.
    pub jwk: Value,
    /// Signs from this time on (keys are published before they are used).
    pub use_from: Timestamp,
    /// Stops signing at this time (a newer key took over).
    pub retired_at: Option<Timestamp>,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    pub fn load(
        kid: &str,
        alg: SigningAlg,
        pkcs8: &[u8],
        use_from: Timestamp,
        retired_at: Option<Timestamp>,
    ) -> ServiceResult<Self> {
        let bad = |what: &str| ServiceError::Internal(format!("signing key {kid}: {what}"));
        let (signer, encoding) = match alg {
            SigningAlg::Es256 => (
                Signer::Ec(
                    EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8)
                        .map_err(|_| bad("not a P-256 key"))?,
                ),
                EncodingKey::from_ec_der(pkcs8),
            ),
            SigningAlg::Rs256 => {
                let pair = RsaKeyPair::from_pkcs8(pkcs8).map_err(|_| bad("not an RSA key"))?;
                // jsonwebtoken reads RSA keys as PKCS#1; build the public JWK from the key pair.
                let public = pair.public_key();
                let n = URL_SAFE_NO_PAD.encode(public.modulus().big_endian_without_leading_zero());
                let e = URL_SAFE_NO_PAD.encode(public.exponent().big_endian_without_leading_zero());
                let decoding =
                    DecodingKey::from_rsa_components(&n, &e).map_err(|e| bad(&e.to_string()))?;
                let jwk = json!({ "kty": "RSA", "n": n, "e": e, "kid": kid, "use": "sig", "alg": alg.as_str() });
                return Ok(Self {
                    kid: kid.to_owned(),
                    alg,
                    signer: Signer::Rsa(pair),
                    decoding,
                    jwk,
                    use_from,
                    retired_at,
                });
            }
            SigningAlg::EdDsa => (
                Signer::Ed(
                    Ed25519KeyPair::from_pkcs8_maybe_unchecked(pkcs8)
                        .map_err(|_| bad("not an Ed25519 key"))?,
                ),
                EncodingKey::from_ed_der(pkcs8),
            ),
        };
        let jwk =
            Jwk::from_encoding_key(&encoding, alg.jwt_alg()).map_err(|e| bad(&e.to_string()))?;
        let decoding = DecodingKey::from_jwk(&jwk).map_err(|e| bad(&e.to_string()))?;
        let mut jwk = serde_json::to_value(&jwk).map_err(|e| bad(&e.to_string()))?;
        if let Value::Object(map) = &mut jwk {
            map.insert("kid".into(), Value::String(kid.to_owned()));
            map.insert("use".into(), Value::String("sig".into()));
            map.insert("alg".into(), Value::String(alg.as_str().into()));
        }
        Ok(Self {
            kid: kid.to_owned(),
            alg,
            signer,
            decoding,
            jwk,
            use_from,
            retired_at,
        })
    }

    fn sign(&self, message: &[u8]) -> ServiceResult<Vec<u8>> {
        match &self.signer {
            Signer::Ec(pair) => Ok(pair
                .sign(&SystemRandom::new(), message)
                .map_err(internal("ES256 signing"))?
                .as_ref()
                .to_vec()),
            Signer::Ed(pair) => Ok(pair.sign(message).as_ref().to_vec()),
            Signer::Rsa(pair) => {
                let mut sig = vec![0; pair.public_modulus_len()];
                pair.sign(&RSA_PKCS1_SHA256, &SystemRandom::new(), message, &mut sig)
                    .map_err(internal("RS256 signing"))?;
                Ok(sig)
            }
        }
    }

    /// A compact JWS of `claims` with header `{alg, typ, kid}`, written into one buffer (the
    /// token endpoint signs one per request).
    pub fn sign_jwt(&self, typ: &str, claims: &impl serde::Serialize) -> ServiceResult<String> {
        #[derive(serde::Serialize)]
        struct Header<'a> {
            alg: &'a str,
            kid: &'a str,
            typ: &'a str,
        }
        let json = |e: serde_json::Error| ServiceError::Internal(e.to_string());
        let header = serde_json::to_vec(&Header {
            alg: self.alg.as_str(),
            kid: &self.kid,
            typ,
        })
        .map_err(json)?;
        let body = serde_json::to_vec(claims).map_err(json)?;
        // base64 grows 3 bytes to 4; a signature is at most 512 bytes (RSA-4096).
        let mut jwt = String::with_capacity((header.len() + body.len() + 512) * 4 / 3 + 8);
        URL_SAFE_NO_PAD.encode_string(&header, &mut jwt);
        jwt.push('.');
        URL_SAFE_NO_PAD.encode_string(&body, &mut jwt);
        let signature = self.sign(jwt.as_bytes())?;
        jwt.push('.');
        URL_SAFE_NO_PAD.encode_string(signature, &mut jwt);
        Ok(jwt)
    }

    fn public_key_only(&self) -> Value {
        self.jwk.clone()
    }
}

/// Why a JWT was not accepted (before any storage access).
#[derive(Debug, PartialEq, Eq)]
pub enum JwtRejection {
    /// Not a JWT, an unknown `kid`, a forbidden header, a bad signature.
    Invalid,
}

/// The keys this instance knows, newest first.
#[derive(Default)]
pub struct KeyRing {
    keys: RwLock<Arc<Vec<Arc<SigningKey>>>>,
}

impl KeyRing {
    pub fn replace(&self, mut keys: Vec<SigningKey>) {
        keys.sort_by_key(|k| std::cmp::Reverse(k.use_from));
        let keys = Arc::new(keys.into_iter().map(Arc::new).collect());
        match self.keys.write() {
            Ok(mut guard) => *guard = keys,
            Err(poisoned) => *poisoned.into_inner() = keys,
        }
    }

    fn snapshot(&self) -> Arc<Vec<Arc<SigningKey>>> {
        match self.keys.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// The key to sign with at `now`: the newest usable key of `alg`.
    pub fn current(&self, alg: SigningAlg, now: Timestamp) -> Option<Arc<SigningKey>> {
        self.snapshot()
            .iter()
            .find(|k| k.alg == alg && k.use_from <= now && k.retired_at.is_none_or(|r| r > now))
            .cloned()
    }

    pub fn by_kid(&self, kid: &str) -> Option<Arc<SigningKey>> {
        self.snapshot().iter().find(|k| k.kid == kid).cloned()
    }

    pub fn all(&self) -> Vec<Arc<SigningKey>> {
        self.snapshot().iter().cloned().collect()
    }

    /// `{"keys": [...]}` with the public JWKs of the given kids.
    pub fn jwks(&self, published: &[String]) -> Value {
        let keys: Vec<Value> = self
            .snapshot()
            .iter()
            .filter(|k| published.contains(&k.kid))
            .map(|k| k.public_key_only())
            .collect();
        json!({ "keys": keys })
    }

    /// Checks a compact JWS against our keys: the `kid` must be ours and the algorithm is the
    /// key's. Returns the claims and the key id. Time claims are not checked here.
    pub fn verify<T: DeserializeOwned>(
        &self,
        token: &str,
        expected_typ: &[&str],
    ) -> Result<(T, String), JwtRejection> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| JwtRejection::Invalid)?;
        if header.jku.is_some() || header.x5u.is_some() || header.jwk.is_some() {
            return Err(JwtRejection::Invalid);
        }
        let typ_ok = header
            .typ
            .as_deref()
            .is_some_and(|t| expected_typ.iter().any(|e| e.eq_ignore_ascii_case(t)));
        if !typ_ok {
            return Err(JwtRejection::Invalid);
        }
        let kid = header.kid.ok_or(JwtRejection::Invalid)?;
        let key = self.by_kid(&kid).ok_or(JwtRejection::Invalid)?;
        let mut validation = Validation::new(key.alg.jwt_alg());
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.required_spec_claims = Default::default();
        let data = jsonwebtoken::decode::<T>(token, &key.decoding, &validation)
            .map_err(|_| JwtRejection::Invalid)?;
        Ok((data.claims, kid))
    }
}

/// A random key id.
pub fn new_kid() -> ServiceResult<String> {
    let bytes: [u8; 12] = crate::crypto::random_bytes()?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

/// True when `text` has the shape of a compact JWS (three base64url parts).
pub fn looks_like_jwt(text: &str) -> bool {
    text.starts_with("eyJ")
        && text.split('.').count() == 3
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn every_algorithm_signs_what_jsonwebtoken_verifies_with_the_published_jwk() -> ServiceResult<()>
    {
        let t0 = datetime!(2026-01-01 00:00:00 UTC);
        for alg in [SigningAlg::Es256, SigningAlg::EdDsa, SigningAlg::Rs256] {
            let der = generate_private_key(alg)?;
            let key = SigningKey::load("k1", alg, &der, t0, None)?;
            let ring = KeyRing::default();
            ring.replace(vec![key]);
            let signer = ring
                .current(alg, t0)
                .ok_or_else(|| ServiceError::Internal("no key".into()))?;
            let jwt = signer.sign_jwt("at+jwt", &json!({ "sub": "org_1", "jti": "tok_1" }))?;
            assert!(looks_like_jwt(&jwt));
            let (claims, kid): (Value, String) = ring
                .verify(&jwt, &["at+jwt"])
                .map_err(|_| ServiceError::Internal(format!("{alg} did not verify")))?;
            assert_eq!(claims["jti"], "tok_1");
            assert_eq!(kid, "k1");
            // The published JWK alone verifies it (what a resource server does offline).
            let jwks = ring.jwks(&["k1".to_owned()]);
            let jwk: Jwk = serde_json::from_value(jwks["keys"][0].clone())
                .map_err(|e| ServiceError::Internal(e.to_string()))?;
            assert!(
                jwks["keys"][0].get("d").is_none(),
                "no private part in the JWKS"
            );
            let decoding =
                DecodingKey::from_jwk(&jwk).map_err(|e| ServiceError::Internal(e.to_string()))?;
            let mut v = Validation::new(alg.jwt_alg());
            v.required_spec_claims = Default::default();
            v.validate_exp = false;
            assert!(jsonwebtoken::decode::<Value>(&jwt, &decoding, &v).is_ok());
            // Tampering, a wrong typ, an unknown kid: refused.
            let mut parts: Vec<&str> = jwt.split('.').collect();
            let other = URL_SAFE_NO_PAD.encode(br#"{"sub":"org_2","jti":"tok_1"}"#);
            parts[1] = &other;
            assert_eq!(
                ring.verify::<Value>(&parts.join("."), &["at+jwt"]).err(),
                Some(JwtRejection::Invalid)
            );
            assert_eq!(
                ring.verify::<Value>(&jwt, &["jwt"]).err(),
                Some(JwtRejection::Invalid)
            );
            ring.replace(vec![]);
            assert_eq!(
                ring.verify::<Value>(&jwt, &["at+jwt"]).err(),
                Some(JwtRejection::Invalid)
            );
        }
        Ok(())
    }

    #[test]
    fn alg_none_and_header_keys_are_refused() -> ServiceResult<()> {
        let t0 = datetime!(2026-01-01 00:00:00 UTC);
        let ring = KeyRing::default();
        ring.replace(vec![SigningKey::load(
            "k1",
            SigningAlg::Es256,
            &generate_private_key(SigningAlg::Es256)?,
            t0,
            None,
        )?]);
        let none = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT","kid":"k1"}"#),
            URL_SAFE_NO_PAD.encode(br#"{"sub":"x"}"#)
        );
        assert!(ring.verify::<Value>(&none, &["jwt"]).is_err());
        let hs = format!(
            "{}.{}.AAAA",
            URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT","kid":"k1"}"#),
            URL_SAFE_NO_PAD.encode(br#"{"sub":"x"}"#)
        );
        assert!(ring.verify::<Value>(&hs, &["jwt"]).is_err());
        Ok(())
    }
}
