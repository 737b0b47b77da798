//! The results cache: each part of a split range query, by tenant, API
//! path, every parameter that changes the answer (all but the part's start
//! and end, which are in the key on their own) and the part's time range.
//! Only parts that end before the freshness window are stored, so an
//! answer that data still arriving could change is never reused. In
//! memory (foyer), weighed by bytes.

use bytes::Bytes;
use foyer::{Cache, CacheBuilder};

/// Cached part answers.
pub struct ResultsCache {
    cache: Cache<String, Bytes>,
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
    /// A cache of at most `bytes` of answers.
    pub fn new(bytes: usize) -> Self {
        Self {
            cache: CacheBuilder::new(bytes.max(1 << 20))
                .with_weighter(|k: &String, v: &Bytes| k.len() + v.len())
                .build(),
        }
    }

    /// The cached answer of a part.
    pub fn get(&self, key: &PartKey<'_>) -> Option<Bytes> {
        self.cache.get(&key.key()).map(|e| e.value().clone())
    }

    /// Keeps a part's answer.
    pub fn put(&self, key: &PartKey<'_>, answer: Bytes) {
        self.cache.insert(key.key(), answer);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_kept_by_everything_that_names_them() {
        let c = ResultsCache::new(1 << 20);
        let params = vec![("query".to_string(), "up".to_string())];
        let key = |tenant, range| PartKey {
            tenant,
            path: "/api/v1/query_range",
            params: &params,
            range,
            generation: 0,
        };
        c.put(&key("a", (0, 10)), Bytes::from_static(b"A"));
        assert_eq!(c.get(&key("a", (0, 10))), Some(Bytes::from_static(b"A")));
        assert_eq!(c.get(&key("b", (0, 10))), None, "another tenant");
        assert_eq!(c.get(&key("a", (0, 11))), None, "another range");
        let other = vec![("query".to_string(), "up2".to_string())];
        let k = PartKey {
            tenant: "a",
            path: "/api/v1/query_range",
            params: &other,
            range: (0, 10),
            generation: 0,
        };
        assert_eq!(c.get(&k), None, "another query");
        // A tenant name cannot pose as the tenant plus a path.
        let tricky = PartKey {
            tenant: "a\u{1}/api/v1/query_range",
            path: "",
            params: &params,
            range: (0, 10),
            generation: 0,
        };
        assert_eq!(c.get(&tricky), None);
        // Old data written since: the answer is not reused.
        let newer = PartKey {
            generation: 1,
            ..key("a", (0, 10))
        };
        assert_eq!(c.get(&newer), None);
    }
}
