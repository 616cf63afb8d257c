//! Randomness and password hashing.
//!
//! Argon2id runs on the blocking pool, at most one hash per core at once, so that a flood of
//! logins queues here instead of starving token verification (SECURITY.md).

use std::sync::Arc;

use argon2::{Argon2, PasswordHasher as _, PasswordVerifier as _};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Semaphore;

use crate::error::{ServiceError, ServiceResult};

/// `N` bytes from the OS CSPRNG.
pub fn random_bytes<const N: usize>() -> ServiceResult<[u8; N]> {
    let mut buf = [0u8; N];
    getrandom::fill(&mut buf)
        .map_err(|e| ServiceError::Internal(format!("OS random source failed: {e}")))?;
    Ok(buf)
}

#[derive(Clone)]
pub struct PasswordHasher {
    permits: Arc<Semaphore>,
    /// A real hash of a random password, verified against when the user does not exist so that
    /// both failures take the same time.
    dummy_hash: Arc<String>,
}

/// Passwords are 8 to 1024 characters: long enough to mean something, short enough that
/// hashing one cannot be used to burn CPU.
pub fn check_password_rules(password: &SecretString) -> ServiceResult<()> {
    let len = password.expose_secret().chars().count();
    if !(8..=1024).contains(&len) {
        return Err(ServiceError::invalid("a password is 8 to 1024 characters"));
    }
    Ok(())
}

/// True when `hash` was made with weaker settings than the ones new hashes get (SECURITY.md:
/// rehash when parameters rise): another algorithm or version, or a lower memory, time or
/// parallelism cost. A string that does not parse is left alone: it cannot be verified, so
/// no sign-in will ever reach the rehash with it.
pub fn needs_rehash(hash: &str) -> bool {
    let Ok(parsed) = argon2::PasswordHash::new(hash) else {
        return false;
    };
    let Ok(params) = argon2::Params::try_from(&parsed) else {
        return false;
    };
    let current = argon2::Params::default();
    let same_function = parsed.algorithm.as_str() == argon2::ARGON2ID_IDENT.as_str()
        && parsed.version == Some(u32::from(argon2::Version::default()));
    !same_function
        || params.m_cost() < current.m_cost()
        || params.t_cost() < current.t_cost()
        || params.p_cost() < current.p_cost()
}

impl PasswordHasher {
    pub fn new(concurrency: usize) -> ServiceResult<Self> {
        let random: [u8; 24] = random_bytes()?;
        let dummy = Argon2::default()
            .hash_password(&random)
            .map_err(|e| ServiceError::Internal(format!("argon2: {e}")))?
            .to_string();
        Ok(Self {
            permits: Arc::new(Semaphore::new(concurrency.max(1))),
            dummy_hash: Arc::new(dummy),
        })
    }

    pub async fn hash(&self, password: &SecretString) -> ServiceResult<String> {
        let password = password.clone();
        self.run(move || {
            Argon2::default()
                .hash_password(password.expose_secret().as_bytes())
                .map(|h| h.to_string())
                .map_err(|e| ServiceError::Internal(format!("argon2: {e}")))
        })
        .await?
    }

    /// Checks `password` against `hash`, or against the dummy hash when there is no user, so
    /// that "no such user" and "wrong password" cost the same.
    pub async fn verify(&self, password: &SecretString, hash: Option<&str>) -> ServiceResult<bool> {
        // Someone without a password (`NO_PASSWORD`) costs the same hash as an unknown user:
        // the answer's timing must not tell them apart.
        let hash = hash.filter(|h| *h != latchkey_store::NO_PASSWORD);
        let exists = hash.is_some();
        let hash = hash.map_or_else(|| self.dummy_hash.as_str().to_owned(), str::to_owned);
        let password = password.clone();
        let ok = self
            .run(move || {
                Argon2::default()
                    .verify_password(password.expose_secret().as_bytes(), hash.as_str())
                    .is_ok()
            })
            .await?;
        Ok(ok && exists)
    }

    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> ServiceResult<T> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| ServiceError::Internal("password hasher closed".into()))?;
        tokio::task::spawn_blocking(work)
            .await
            .map_err(|e| ServiceError::Internal(format!("password hashing task failed: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use argon2::{Algorithm, Argon2, Params, Version};

    use super::*;

    fn hash_with(algorithm: Algorithm, m: u32, t: u32, p: u32) -> String {
        let params = Params::new(m, t, p, None).unwrap_or_default();
        Argon2::new(algorithm, Version::V0x13, params)
            .hash_password(b"correct horse battery staple")
            .map(|h| h.to_string())
            .unwrap_or_default()
    }

    #[test]
    fn only_hashes_below_todays_parameters_need_a_rehash() {
        let today = Argon2::default()
            .hash_password(b"correct horse battery staple")
            .map(|h| h.to_string())
            .unwrap_or_default();
        assert!(today.contains("m=19456,t=2,p=1"), "{today}");
        assert!(!needs_rehash(&today));
        assert!(!needs_rehash(&hash_with(Algorithm::Argon2id, 65_536, 3, 4)));
        assert!(needs_rehash(&hash_with(Algorithm::Argon2id, 8_192, 2, 1)));
        assert!(needs_rehash(&hash_with(Algorithm::Argon2id, 19_456, 1, 1)));
        assert!(needs_rehash(&hash_with(Algorithm::Argon2i, 19_456, 2, 1)));
        // Stronger memory does not make up for fewer passes.
        assert!(needs_rehash(&hash_with(Algorithm::Argon2id, 65_536, 1, 1)));
        assert!(!needs_rehash("not a PHC string"));
    }
}
