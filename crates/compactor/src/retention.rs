//! Retention: per tenant and per signal (`compactor_blocks_retention_period`
//! for metrics, `logs_retention_period` for logs), a block whose whole time
//! range is past retention gets a deletion mark. Queriers already hide data
//! past retention, so marking changes no answer.

use strata_limits::Limits;
use strata_storage::Signal;

use crate::{Compactor, CompactorError, SIGNALS};

impl Compactor {
    /// Marks every block past its tenant's retention (per signal).
    pub async fn apply_retention(&self, now_ms: i64) -> Result<usize, CompactorError> {
        let mut marked = 0;
        for tenant in self.tenants().await? {
            let limits = self.overrides.for_tenant(&tenant);
            for signal in SIGNALS {
                let retention = match signal {
                    Signal::Metrics => limits.compactor_blocks_retention_period,
                    Signal::Logs => limits.logs_retention_period,
                };
                let floor = Limits::retention_floor_ms(retention, now_ms);
                if floor == i64::MIN {
                    continue;
                }
                for meta in self.live_blocks(signal, &tenant).await? {
                    // max_time is exclusive: the whole block is older than the floor.
                    if meta.max_time > floor
                        || self
                            .read_mark(meta.tier, signal, &tenant, &meta.ulid)
                            .await?
                            .is_some()
                    {
                        continue;
                    }
                    self.mark(meta.tier, signal, &tenant, &meta.ulid, now_ms, "retention")
                        .await?;
                    tracing::info!(tenant, signal = signal.dir(), ulid = %meta.ulid,
                        max_time = meta.max_time, "block past retention marked for deletion");
                    marked += 1;
                }
            }
        }
        Ok(marked)
    }
}
