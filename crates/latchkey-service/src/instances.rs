//! Serving instances (SPEC 7): each `latchkey serve` registers itself in the database and beats
//! every second with the last change of the log it has applied. The kill switch waits until
//! every live instance has applied it (at most [`CONFIRM_WITHIN`]) and says how many did;
//! `latchkey status` lists them.
//!
//! This process applies its own changes right after their commit (the after-commit path), so it
//! always counts as confirmed; another instance confirms once its heartbeat says it applied
//! the change log past the change. Liveness is judged on the service clock, like the beats.

use std::time::Duration;

use latchkey_core::{InstanceId, Timestamp};
use latchkey_store::Instance;
use serde::Serialize;

use crate::Service;
use crate::crypto::random_bytes;
use crate::error::ServiceResult;

/// How long the kill switch waits for the other instances.
pub const CONFIRM_WITHIN: Duration = Duration::from_secs(2);
/// An instance not heard from for this long is not waited for (it beats every second).
const LIVE_WITHIN_SECS: i64 = 5;
/// Rows of instances not heard from for a day are removed at start.
const FORGET_AFTER_SECS: i64 = 86_400;

/// How many live instances had applied a change when the call answered.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Applied {
    pub instances: usize,
    pub confirmed: usize,
    /// The live instances that had not confirmed within the wait.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unconfirmed: Vec<String>,
}

/// An instance as `latchkey status` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct InstanceStatus {
    pub id: String,
    pub address: String,
    pub version: String,
    pub started_at: i64,
    pub heartbeat_at: i64,
    pub live: bool,
    pub applied_change: i64,
}

/// The instances and the change log's head.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterStatus {
    pub latest_change: i64,
    pub instances: Vec<InstanceStatus>,
}

impl Service {
    fn is_live(&self, instance: &Instance, now: Timestamp) -> bool {
        self.instance.get() == Some(&instance.id)
            || instance.heartbeat_at >= now - time::Duration::seconds(LIVE_WITHIN_SECS)
    }

    /// Registers this process as a serving instance listening on `address`.
    pub async fn register_instance(&self, address: &str) -> ServiceResult<()> {
        let now = self.now();
        self.store
            .remove_instances(None, Some(now - time::Duration::seconds(FORGET_AFTER_SECS)))
            .await?;
        let fresh = InstanceId::from_random(random_bytes()?);
        let id = self.instance.get_or_init(|| fresh).clone();
        self.store
            .register_instance(&Instance {
                id,
                address: address.to_owned(),
                version: env!("CARGO_PKG_VERSION").to_owned(),
                started_at: now,
                heartbeat_at: now,
                applied_change: self.cache.change_seen(),
            })
            .await?;
        Ok(())
    }

    /// Says this instance is alive and how far it has applied the change log.
    pub(crate) async fn heartbeat(&self) {
        let Some(id) = self.instance.get() else {
            return;
        };
        if let Err(e) = self
            .store
            .heartbeat_instance(id, self.now(), self.cache.change_seen())
            .await
        {
            tracing::warn!(error = %e, "could not record this instance's heartbeat");
        }
    }

    /// Removes this instance's row (a graceful stop).
    pub async fn unregister_instance(&self) {
        if let Some(id) = self.instance.get()
            && let Err(e) = self.store.remove_instances(Some(id), None).await
        {
            tracing::warn!(error = %e, "could not remove this instance's registration");
        }
    }

    /// Waits until every live instance has applied the change log up to `change` (this one
    /// has), at most [`CONFIRM_WITHIN`], and says how many had.
    pub(crate) async fn wait_until_applied(&self, change: i64) -> ServiceResult<Applied> {
        let started = tokio::time::Instant::now();
        loop {
            let now = self.now();
            let live: Vec<Instance> = self
                .store
                .list_instances()
                .await?
                .into_iter()
                .filter(|i| self.is_live(i, now))
                .collect();
            let unconfirmed: Vec<String> = live
                .iter()
                .filter(|i| self.instance.get() != Some(&i.id) && i.applied_change < change)
                .map(|i| i.id.to_string())
                .collect();
            if unconfirmed.is_empty() || started.elapsed() >= CONFIRM_WITHIN {
                return Ok(Applied {
                    instances: live.len(),
                    confirmed: live.len() - unconfirmed.len(),
                    unconfirmed,
                });
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Waits until every live instance has applied everything committed so far (the CLI,
    /// after its change: in force when it returns), at most [`CONFIRM_WITHIN`].
    pub async fn wait_until_all_applied(&self) -> ServiceResult<Applied> {
        let latest = self.store.latest_change().await?;
        self.wait_until_applied(latest).await
    }

    /// The registered instances, for `latchkey status`.
    pub async fn cluster_status(&self) -> ServiceResult<ClusterStatus> {
        let now = self.now();
        let latest_change = self.store.latest_change().await?;
        let instances = self
            .store
            .list_instances()
            .await?
            .into_iter()
            .map(|i| InstanceStatus {
                live: self.is_live(&i, now),
                id: i.id.to_string(),
                address: i.address,
                version: i.version,
                started_at: i.started_at.unix_timestamp(),
                heartbeat_at: i.heartbeat_at.unix_timestamp(),
                applied_change: i.applied_change,
            })
            .collect();
        Ok(ClusterStatus {
            latest_change,
            instances,
        })
    }
}
