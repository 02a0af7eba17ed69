//! Following the data root: several `serve` processes may share one data root (readers that
//! scale out); each shows the others' commits, tables and tenants within one interval.
//!
//! A newer snapshot is shown under the table's commit lock, so it never lands between a
//! commit of this process and the moment its buffered rows leave the buffer (a row would be
//! seen twice), and never replaces a later snapshot this process showed meanwhile.

use std::sync::Weak;
use std::time::Duration;

use super::Writer;
use crate::error::Result;

impl Writer {
    /// Shows what other processes committed since the last look; answers how many tables
    /// moved.
    pub async fn follow_storage(&self) -> Result<usize> {
        self.catalog.open_new_tenants().await?;
        let mut shown = 0;
        for tenant in self.catalog.tenant_names() {
            let Some(schema) = self.catalog.tenant(&tenant) else {
                continue;
            };
            for (table, loaded) in schema.moved_tables().await? {
                let lock = self.commit_lock(&tenant, &table);
                let _guard = lock.lock().await;
                if schema.install_if_newer(&table, loaded) {
                    tracing::debug!(tenant, table, "showing another process's commit");
                    shown += 1;
                }
            }
        }
        Ok(shown)
    }
}

/// Follows the data root every `interval` while the writer lives.
pub(crate) async fn run(writer: Weak<Writer>, interval: Duration) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let Some(writer) = writer.upgrade() else {
            return;
        };
        if let Err(e) = writer.follow_storage().await {
            tracing::warn!("cannot follow the data root's other writers: {e}");
        }
    }
}
