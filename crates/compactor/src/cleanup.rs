//! Cleanup: blocks whose deletion mark is older than the deletion delay are
//! deleted (`meta.json` first, so no reader lists a half-deleted block, then
//! the data files, then the mark), and so are partial uploads older than the
//! partial-block delay.

use futures::TryStreamExt;
use object_store::ObjectStoreExt;
use object_store::path::Path as ObjectPath;
use strata_storage::block::{block_file, signal_prefix};
use strata_storage::bucket_index::read_bucket_index;
use strata_storage::{Signal, Tier};

use crate::{Compactor, CompactorError, DELETED, MARK_FILE, SIGNALS, store_err};

impl Compactor {
    /// True when `ulid` has no `meta.json` and was created longer than the
    /// partial-block delay ago: an upload that will never finish.
    async fn is_stale_partial(
        &self,
        tier: Tier,
        signal: Signal,
        tenant: &str,
        ulid: &str,
        now_ms: i64,
    ) -> Result<bool, CompactorError> {
        let delay = self.cfg.partial_block_deletion_delay.as_millis() as i64;
        let Ok(id) = ulid::Ulid::from_string(ulid) else {
            return Ok(false);
        };
        if delay == 0 || now_ms - (id.timestamp_ms() as i64) < delay {
            return Ok(false);
        }
        let meta = block_file(signal, tenant, ulid, "meta.json");
        match self.store_of(tier).head(&meta).await {
            Ok(_) => Ok(false),
            Err(object_store::Error::NotFound { .. }) => Ok(true),
            Err(e) => Err(store_err(&meta, e)),
        }
    }

    /// Deletes blocks whose deletion mark is older than the deletion delay,
    /// and partial uploads older than the partial-block delay.
    pub async fn cleanup(&self, now_ms: i64) -> Result<usize, CompactorError> {
        let delay_s = self.cfg.deletion_delay.as_secs() as i64;
        let mut deleted = 0;
        let tiers: &[Tier] = if self.reader.store_of(Tier::Warm).is_some() {
            &[Tier::Hot, Tier::Warm]
        } else {
            &[Tier::Hot]
        };
        for tenant in self.tenants().await? {
            // Queriers stop reading a marked block only once the index
            // they read carries its mark; a mark the index does not have
            // yet (its write failed or is still to come) waits.
            let indexed_marks: Vec<(String, String)> =
                read_bucket_index(self.store.as_ref(), &tenant)
                    .await
                    .ok()
                    .flatten()
                    .map(|i| {
                        i.block_deletion_marks
                            .into_iter()
                            .map(|m| (m.signal, m.id))
                            .collect()
                    })
                    .unwrap_or_default();
            for signal in SIGNALS {
                for &tier in tiers {
                    let prefix = signal_prefix(signal, &tenant);
                    let listed = self
                        .store_of(tier)
                        .list_with_delimiter(Some(&prefix))
                        .await
                        .map_err(|e| store_err(&prefix, e))?;
                    for dir in listed.common_prefixes {
                        let Some(ulid) = dir.filename() else { continue };
                        let deletion_mark = self.read_mark(tier, signal, &tenant, ulid).await?;
                        let mark = match &deletion_mark {
                            Some(m) => Some(m.deletion_time),
                            // A hot copy of a block moved to warm goes
                            // after the deletion delay as well.
                            None if tier == Tier::Hot => self
                                .moved_at(signal, &tenant, ulid)
                                .await?
                                .map(|ms| ms.div_euclid(1000)),
                            None => None,
                        };
                        let Some(marked_at) = mark else {
                            if self
                                .is_stale_partial(tier, signal, &tenant, ulid, now_ms)
                                .await?
                            {
                                self.delete_block(tier, signal, &tenant, ulid).await?;
                                DELETED.with_label_values(&[signal.dir()]).inc();
                                tracing::warn!(
                                    tenant,
                                    signal = signal.dir(),
                                    tier = tier.as_str(),
                                    ulid,
                                    "partial block (no meta.json) deleted"
                                );
                                deleted += 1;
                            }
                            continue;
                        };
                        if now_ms.div_euclid(1000) - marked_at < delay_s {
                            continue;
                        }
                        if deletion_mark.is_some()
                            && !indexed_marks
                                .iter()
                                .any(|(sig, id)| sig == signal.dir() && id == ulid)
                        {
                            tracing::debug!(
                                tenant,
                                ulid,
                                "deletion mark not indexed yet; deleting later"
                            );
                            continue;
                        }
                        if tier == Tier::Hot && deletion_mark.is_some() && tiers.len() == 2 {
                            // A warm copy of a block deleted while still
                            // hot (a move cut short by a crash before its
                            // moved mark) must not come back to life as a
                            // warm block once the hot one is gone.
                            self.delete_block(Tier::Warm, signal, &tenant, ulid).await?;
                        }
                        self.delete_block(tier, signal, &tenant, ulid).await?;
                        DELETED.with_label_values(&[signal.dir()]).inc();
                        tracing::info!(
                            tenant,
                            signal = signal.dir(),
                            tier = tier.as_str(),
                            ulid,
                            "marked block deleted"
                        );
                        deleted += 1;
                    }
                }
            }
        }
        Ok(deleted)
    }

    async fn delete_block(
        &self,
        tier: Tier,
        signal: Signal,
        tenant: &str,
        ulid: &str,
    ) -> Result<(), CompactorError> {
        let store = self.store_of(tier);
        let meta = block_file(signal, tenant, ulid, "meta.json");
        match store.delete(&meta).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(store_err(&meta, e)),
        }
        let dir = ObjectPath::from(format!("{tenant}/{}/{ulid}", signal.dir()));
        let files: Vec<_> = store
            .list(Some(&dir))
            .try_collect()
            .await
            .map_err(|e| store_err(&dir, e))?;
        // The mark goes last: a crash in between leaves a marked block that
        // the next cleanup finishes.
        let mark = block_file(signal, tenant, ulid, MARK_FILE);
        for f in files.iter().filter(|f| f.location != mark) {
            match store.delete(&f.location).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(store_err(&f.location, e)),
            }
        }
        match store.delete(&mark).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(store_err(&mark, e)),
        }
    }
}
