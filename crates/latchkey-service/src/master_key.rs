//! The master key: AEAD (XChaCha20-Poly1305) for the few secrets Latchkey must be able to read
//! back — secrets of `reveal = "reauth"` tokens and the private parts of signing keys.
//!
//! A ciphertext is `1 || nonce (24 bytes) || sealed`, with associated data that names the row it
//! belongs to (`token:tok_…`, `signing-key:kid`), so a ciphertext moved to another row does not
//! decrypt. The key itself is read by the binary from `master_key_file`.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

use crate::crypto::random_bytes;
use crate::error::{ServiceError, ServiceResult};

const VERSION: u8 = 1;

pub struct MasterKey(XChaCha20Poly1305);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(redacted)")
    }
}

impl MasterKey {
    pub fn from_bytes(bytes: &[u8; 32]) -> Self {
        Self(XChaCha20Poly1305::new(bytes.into()))
    }

    /// Parses the key file's text: 64 hex digits (whitespace around is ignored).
    pub fn from_hex(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text.len() != 64 {
            return Err("the master key file must hold 64 hex digits".into());
        }
        let mut bytes = [0u8; 32];
        for (i, b) in bytes.iter_mut().enumerate() {
            let pair = text.get(2 * i..2 * i + 2).ok_or("bad master key")?;
            *b = u8::from_str_radix(pair, 16)
                .map_err(|_| "the master key file must hold 64 hex digits".to_owned())?;
        }
        Ok(Self::from_bytes(&bytes))
    }

    /// A new key, as the text of a key file.
    pub fn generate_hex() -> ServiceResult<String> {
        let bytes: [u8; 32] = random_bytes()?;
        Ok(bytes.iter().map(|b| format!("{b:02x}")).collect::<String>() + "\n")
    }

    pub fn seal(&self, plaintext: &[u8], aad: &str) -> ServiceResult<Vec<u8>> {
        let nonce: [u8; 24] = random_bytes()?;
        let sealed = self
            .0
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: plaintext,
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| ServiceError::Internal("encryption failed".into()))?;
        let mut out = Vec::with_capacity(1 + 24 + sealed.len());
        out.push(VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    pub fn open(&self, ciphertext: &[u8], aad: &str) -> ServiceResult<Vec<u8>> {
        let undecryptable = || {
            ServiceError::Internal(format!(
                "a stored secret ({aad}) does not decrypt: wrong master key?"
            ))
        };
        let (version, rest) = ciphertext.split_first().ok_or_else(undecryptable)?;
        if *version != VERSION || rest.len() < 24 {
            return Err(undecryptable());
        }
        let (nonce, sealed) = rest.split_at(24);
        let nonce: [u8; 24] = nonce.try_into().map_err(|_| undecryptable())?;
        self.0
            .decrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: sealed,
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| undecryptable())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seals_and_opens_bound_to_its_row() -> Result<(), String> {
        let key = MasterKey::from_hex(&MasterKey::generate_hex().map_err(|e| e.to_string())?)?;
        let sealed = key
            .seal(b"lka_secret", "token:tok_1")
            .map_err(|e| e.to_string())?;
        assert!(!sealed.windows(10).any(|w| w == b"lka_secret"));
        assert_eq!(
            key.open(&sealed, "token:tok_1")
                .map_err(|e| e.to_string())?,
            b"lka_secret"
        );
        assert!(key.open(&sealed, "token:tok_2").is_err());
        let other = MasterKey::from_bytes(&[7; 32]);
        assert!(other.open(&sealed, "token:tok_1").is_err());
        assert!(key.open(&[], "x").is_err());
        assert!(MasterKey::from_hex("abc").is_err());
        assert!(MasterKey::from_hex(&"zz".repeat(32)).is_err());
        Ok(())
    }
}
