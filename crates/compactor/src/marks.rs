//! Deletion marks (`deletion-mark.json`, Mimir's format): a marked block
//! stays readable until cleanup deletes it after the deletion delay.

use object_store::{ObjectStoreExt, PutPayload};
use strata_storage::block::block_file;
use strata_storage::{Signal, Tier};

use crate::{Compactor, CompactorError, DeletionMark, MARK_FILE, MARKED, store_err};

impl Compactor {
    pub(crate) async fn read_mark(
        &self,
        tier: Tier,
        signal: Signal,
        tenant: &str,
        ulid: &str,
    ) -> Result<Option<DeletionMark>, CompactorError> {
        let path = block_file(signal, tenant, ulid, MARK_FILE);
        match self.store_of(tier).get(&path).await {
            Ok(r) => {
                let bytes = r.bytes().await.map_err(|e| store_err(&path, e))?;
                serde_json::from_slice(&bytes)
                    .map(Some)
                    .map_err(|source| CompactorError::Mark {
                        path: path.to_string(),
                        source,
                    })
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(store_err(&path, e)),
        }
    }

    pub(crate) async fn mark(
        &self,
        tier: Tier,
        signal: Signal,
        tenant: &str,
        ulid: &str,
        now_ms: i64,
        reason: &str,
    ) -> Result<(), CompactorError> {
        let mark = DeletionMark {
            id: ulid.to_string(),
            deletion_time: now_ms.div_euclid(1000),
            version: 1,
        };
        let path = block_file(signal, tenant, ulid, MARK_FILE);
        let body = serde_json::to_vec(&mark).map_err(|source| CompactorError::Mark {
            path: path.to_string(),
            source,
        })?;
        self.store_of(tier)
            .put(&path, PutPayload::from(bytes::Bytes::from(body)))
            .await
            .map_err(|e| store_err(&path, e))?;
        MARKED.with_label_values(&[signal.dir(), reason]).inc();
        Ok(())
    }
}
