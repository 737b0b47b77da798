//! The results cache: each part of a split range query, by tenant, API
//! path, every parameter that changes the answer (all but the part's start
//! and end, which are in the key on their own) and the part's time range.
//! Only parts that end before the freshness window are stored, so an
//! answer that data still arriving could change is never reused. In
//! memory and, when given a size, on local disk (foyer's hybrid cache:
//! what memory evicts goes to disk), weighed by bytes.

use bytes::Bytes;
use foyer::HybridCache;

/// Cached part answers.
pub struct ResultsCache {
    cache: HybridCache<String, Bytes>,
}

/// What names a part's answer.
pub struct PartKey<'a> {
    /// Tenant (or tenants) of the request.
    pub tenant: &'a str,
    /// The API path (Prometheus and Loki answer differently).
    pub path: &'a str,
    /// Every parameter but start and end, sorted.
    pub params: &'a [(String, String)],
    /// The part's first and last step.
    pub range: (i64, i64),
    /// The tenant's write generation (old data written since changes it).
    pub generation: u64,
}

impl PartKey<'_> {
    fn key(&self) -> String {
        let mut k = String::with_capacity(64);
        // Separators that cannot occur in a header value or a decoded
        // parameter without being escaped here.
        for part in [self.tenant, self.path] {
            push_escaped(&mut k, part);
            k.push('\u{1}');
        }
        for (name, value) in self.params {
            push_escaped(&mut k, name);
            k.push('\u{2}');
            push_escaped(&mut k, value);
            k.push('\u{1}');
        }
        k.push_str(&format!(
            "{}:{}:{}",
            self.range.0, self.range.1, self.generation
        ));
        k
    }
}

fn push_escaped(out: &mut String, s: &str) {
    for c in s.chars() {
        if matches!(c, '\u{0}' | '\u{1}' | '\u{2}') {
            out.push('\u{0}');
        }
        out.push(c);
    }
}

impl ResultsCache {
    /// A cache of at most `memory_bytes` of answers in memory and
    /// `disk_bytes` in `dir` (0: memory only).
    pub async fn new(memory_bytes: usize, disk_bytes: usize, dir: &str) -> Result<Self, String> {
        let cache = strata_hybrid_cache::bytes_cache("results", memory_bytes, disk_bytes, dir)
            .await
            .map_err(|e| e.to_string())?;
        Ok(Self { cache })
    }

    /// The cached answer of a part (a disk read fails as a miss).
    pub async fn get(&self, key: &PartKey<'_>) -> Option<Bytes> {
        match self.cache.get(&key.key()).await {
            Ok(Some(e)) => Some(e.value().clone()),
            _ => None,
        }
    }

    /// Keeps a part's answer.
    pub fn put(&self, key: &PartKey<'_>, answer: Bytes) {
        self.cache.insert(key.key(), answer);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn answers_spill_to_disk() {
        let dir = tempfile::tempdir().unwrap();
        let c = ResultsCache::new(1 << 20, 64 << 20, dir.path().to_str().unwrap())
            .await
            .unwrap();
        let params = vec![("query".to_string(), "up".to_string())];
        let key = |i: i64| PartKey {
            tenant: "a",
            path: "/api/v1/query_range",
            params: &params,
            range: (i, i),
            generation: 0,
        };
        // 4 MiB of answers through 1 MiB of memory.
        for i in 0..64 {
            c.put(&key(i), Bytes::from(vec![i as u8; 64 << 10]));
        }
        let mut found = 0;
        for _ in 0..50 {
            found = 0;
            for i in 0..64 {
                if c.get(&key(i)).await.is_some_and(|b| b[0] == i as u8) {
                    found += 1;
                }
            }
            if found > 32 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        assert!(found > 32, "{found} of 64 answers kept; memory holds 16");
        // Memory alone keeps about a quarter of them.
        let memory_only = ResultsCache::new(1 << 20, 0, "").await.unwrap();
        for i in 0..64 {
            memory_only.put(&key(i), Bytes::from(vec![i as u8; 64 << 10]));
        }
        let mut kept = 0;
        for i in 0..64 {
            if memory_only.get(&key(i)).await.is_some() {
                kept += 1;
            }
        }
        assert!(kept <= 20, "{kept} of 64 kept in 1 MiB of memory");
    }

    #[tokio::test]
    async fn answers_are_kept_by_everything_that_names_them() {
        let c = ResultsCache::new(1 << 20, 0, "").await.unwrap();
        let params = vec![("query".to_string(), "up".to_string())];
        let key = |tenant, range| PartKey {
            tenant,
            path: "/api/v1/query_range",
            params: &params,
            range,
            generation: 0,
        };
        c.put(&key("a", (0, 10)), Bytes::from_static(b"A"));
        assert_eq!(
            c.get(&key("a", (0, 10))).await,
            Some(Bytes::from_static(b"A"))
        );
        assert_eq!(c.get(&key("b", (0, 10))).await, None, "another tenant");
        assert_eq!(c.get(&key("a", (0, 11))).await, None, "another range");
        let other = vec![("query".to_string(), "up2".to_string())];
        let k = PartKey {
            tenant: "a",
            path: "/api/v1/query_range",
            params: &other,
            range: (0, 10),
            generation: 0,
        };
        assert_eq!(c.get(&k).await, None, "another query");
        // A tenant name cannot pose as the tenant plus a path.
        let tricky = PartKey {
            tenant: "a\u{1}/api/v1/query_range",
            path: "",
            params: &params,
            range: (0, 10),
            generation: 0,
        };
        assert_eq!(c.get(&tricky).await, None);
        // Old data written since: the answer is not reused.
        let newer = PartKey {
            generation: 1,
            ..key("a", (0, 10))
        };
        assert_eq!(c.get(&newer).await, None);
    }
}
