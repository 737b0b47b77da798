//! Drain (He et al., "Drain: An Online Log Parsing Approach with Fixed Depth
//! Tree", ICWS 2017) with the settings and rules of Loki's pattern ingester:
//! clusters of lines with the same token count whose tokens agree at least
//! 30% of the time, found through a prefix tree keyed by token count and the
//! leading tokens (tokens with digits always under the placeholder), each
//! cluster's template turning differing tokens into `<_>`, at most 300
//! clusters per drain (least recently used evicted), and occurrences counted
//! per 10-second bucket.

use std::collections::HashMap;

use crate::tokenize::{Format, PARAM, Tokens, render, tokenize};

/// Loki's `DefaultConfig`.
#[derive(Debug, Clone)]
pub struct DrainConfig {
    /// Tree depth; the path holds `depth - 2` tokens.
    pub depth: usize,
    /// Least share of agreeing tokens for a line to join a cluster.
    pub similarity: f64,
    pub max_children: usize,
    pub max_clusters: usize,
    /// Above this share of evictions per line, training pauses.
    pub max_eviction_ratio: f64,
}

impl Default for DrainConfig {
    fn default() -> Self {
        Self {
            depth: 30,
            similarity: 0.3,
            max_children: 15,
            max_clusters: 300,
            max_eviction_ratio: 0.25,
        }
    }
}

/// Lines with fewer or more tokens are not clustered.
const MIN_TOKENS: usize = 4;
const MAX_TOKENS: usize = 80;
/// Occurrences are counted per bucket of this many milliseconds.
pub const SAMPLE_INTERVAL_MS: i64 = 10_000;
/// A new chunk of counts starts after this long (gaps inside one are 0).
const CHUNK_MS: i64 = 3_600_000;
/// How long training pauses once evictions run too high.
const PAUSE_MS: i64 = 600_000;

/// One cluster: its template and its counts.
#[derive(Debug, Clone)]
pub struct Cluster {
    template: Tokens,
    /// Chunks of (bucket start ms, count), each sorted by time.
    chunks: Vec<Vec<(i64, u64)>>,
    last_used: u64,
}

impl Cluster {
    fn add(&mut self, ts_ms: i64) {
        let bucket = ts_ms - ts_ms.rem_euclid(SAMPLE_INTERVAL_MS);
        match self.chunks.last_mut() {
            Some(chunk) if chunk.first().is_some_and(|(t0, _)| bucket - t0 < CHUNK_MS) => {
                match chunk.last_mut() {
                    Some((t, n)) if *t == bucket => *n += 1,
                    // Out of order inside a chunk: dropped, as Loki does.
                    Some((t, _)) if *t > bucket => {}
                    _ => chunk.push((bucket, 1)),
                }
            }
            _ => self.chunks.push(vec![(bucket, 1)]),
        }
    }

    /// Counts in `[from, through)` summed per `step` (epoch-aligned); with
    /// a step coarser than the buckets, zeros for empty steps between counts
    /// of one chunk (Loki's `ForRange`).
    pub fn samples(&self, from_ms: i64, through_ms: i64, step_ms: i64) -> Vec<(i64, u64)> {
        let step = step_ms.max(SAMPLE_INTERVAL_MS);
        let fill = step != SAMPLE_INTERVAL_MS;
        let mut out: Vec<(i64, u64)> = Vec::new();
        for chunk in &self.chunks {
            let mut last: Option<i64> = None;
            for &(t, n) in chunk
                .iter()
                .filter(|(t, _)| *t >= from_ms && *t < through_ms)
            {
                let bucket = t - t.rem_euclid(step);
                if let Some(prev) = last.filter(|_| fill) {
                    let mut gap = prev + step;
                    while gap < bucket {
                        out.push((gap, 0));
                        gap += step;
                    }
                }
                match out.last_mut() {
                    Some((b, c)) if *b == bucket => *c += n,
                    _ => out.push((bucket, n)),
                }
                last = Some(bucket);
            }
        }
        out
    }
}

#[derive(Debug, Default)]
struct Node {
    children: HashMap<String, usize>,
    clusters: Vec<usize>,
}

/// One stream's (and level's) drain.
#[derive(Debug)]
pub struct Drain {
    cfg: DrainConfig,
    format: Option<Format>,
    nodes: Vec<Node>,
    clusters: Vec<Option<Cluster>>,
    live: usize,
    clock: u64,
    added: u64,
    evicted: u64,
    paused_until_ms: i64,
}

fn has_digit(token: &str) -> bool {
    token.chars().any(|c| c.is_numeric())
}

impl Drain {
    pub fn new(cfg: DrainConfig) -> Self {
        Self {
            cfg,
            format: None,
            nodes: vec![Node::default()],
            clusters: Vec::new(),
            live: 0,
            clock: 0,
            added: 0,
            evicted: 0,
            paused_until_ms: i64::MIN,
        }
    }

    /// How many leading tokens of an `n`-token line the tree path holds:
    /// all but the last, at most `depth - 3`.
    fn path_len(&self, n: usize) -> usize {
        n.min(self.cfg.depth.saturating_sub(2)).saturating_sub(1)
    }

    /// Clusters `line`, seen at `ts_ms`. The first line fixes the format.
    pub fn train(&mut self, line: &str, ts_ms: i64) {
        let format = *self.format.get_or_insert_with(|| Format::detect(line));
        if ts_ms < self.paused_until_ms {
            return;
        }
        if self.paused_until_ms != i64::MIN {
            self.paused_until_ms = i64::MIN;
            self.added = 0;
            self.evicted = 0;
        }
        self.added += 1;
        if self.added > 1 && self.evicted as f64 / self.added as f64 > self.cfg.max_eviction_ratio {
            self.paused_until_ms = ts_ms + PAUSE_MS;
            return;
        }
        let Some(tokens) = tokenize(format, line) else {
            return;
        };
        let n = tokens.tokens.len();
        if !(MIN_TOKENS..=MAX_TOKENS).contains(&n) {
            return;
        }
        self.clock += 1;
        let clock = self.clock;
        match self.search(&tokens.tokens) {
            Some(id) => {
                let Some(cluster) = self.clusters[id].as_mut() else {
                    return;
                };
                for (t, l) in cluster.template.tokens.iter_mut().zip(&tokens.tokens) {
                    if t != l {
                        *t = PARAM.to_string();
                    }
                }
                cluster.last_used = clock;
                cluster.add(ts_ms);
            }
            None => {
                let mut cluster = Cluster {
                    template: tokens,
                    chunks: Vec::new(),
                    last_used: clock,
                };
                cluster.add(ts_ms);
                if self.cfg.max_clusters > 0 && self.live >= self.cfg.max_clusters {
                    self.evict_least_recently_used();
                }
                let id = self.clusters.len();
                self.clusters.push(Some(cluster));
                self.live += 1;
                self.add_to_tree(id);
            }
        }
    }

    fn evict_least_recently_used(&mut self) {
        let oldest = self
            .clusters
            .iter()
            .enumerate()
            .filter_map(|(i, c)| c.as_ref().map(|c| (c.last_used, i)))
            .min();
        if let Some((_, i)) = oldest {
            self.clusters[i] = None;
            self.live -= 1;
            self.evicted += 1;
        }
    }

    /// The best cluster for `tokens`, if similar enough.
    fn search(&self, tokens: &[String]) -> Option<usize> {
        let n = tokens.len();
        let mut node = *self.nodes[0].children.get(&n.to_string())?;
        for token in &tokens[..self.path_len(n)] {
            let children = &self.nodes[node].children;
            node = *children.get(token).or_else(|| children.get(PARAM))?;
        }
        let mut best: Option<(f64, usize, usize)> = None;
        for &id in &self.nodes[node].clusters {
            let Some(c) = self.clusters[id].as_ref() else {
                continue;
            };
            let (mut same, mut params) = (0usize, 0usize);
            for (t, l) in c.template.tokens.iter().zip(tokens) {
                if t == PARAM {
                    params += 1;
                } else if t == l {
                    same += 1;
                }
            }
            let sim = same as f64 / c.template.tokens.len().max(1) as f64;
            if best.is_none_or(|(s, p, _)| sim > s || (sim == s && params > p)) {
                best = Some((sim, params, id));
            }
        }
        best.filter(|(sim, _, _)| *sim >= self.cfg.similarity)
            .map(|(_, _, id)| id)
    }

    fn child(&mut self, node: usize, key: &str) -> usize {
        if let Some(&c) = self.nodes[node].children.get(key) {
            return c;
        }
        let c = self.nodes.len();
        self.nodes.push(Node::default());
        self.nodes[node].children.insert(key.to_string(), c);
        c
    }

    fn add_to_tree(&mut self, id: usize) {
        let tokens = match self.clusters[id].as_ref() {
            Some(c) => c.template.tokens.clone(),
            None => return,
        };
        let n = tokens.len();
        let mut node = self.child(0, &n.to_string());
        for token in &tokens[..self.path_len(n)] {
            let children = &self.nodes[node].children;
            node = if let Some(&c) = children.get(token) {
                c
            } else if has_digit(token) {
                self.child(node, PARAM)
            } else if children.contains_key(PARAM) {
                if children.len() < self.cfg.max_children {
                    self.child(node, token)
                } else {
                    self.child(node, PARAM)
                }
            } else if children.len() + 1 < self.cfg.max_children {
                self.child(node, token)
            } else {
                self.child(node, PARAM)
            };
        }
        let clusters = &self.clusters;
        let leaf = &mut self.nodes[node].clusters;
        leaf.retain(|c| clusters[*c].is_some());
        leaf.push(id);
    }

    /// The live clusters with their pattern text.
    pub fn patterns(&self) -> impl Iterator<Item = (String, &Cluster)> {
        let format = self.format.unwrap_or(Format::Plain);
        self.clusters
            .iter()
            .flatten()
            .map(move |c| (render(format, &c.template), c))
            .filter(|(p, _)| !p.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn patterns(d: &Drain) -> Vec<String> {
        let mut p: Vec<String> = d.patterns().map(|(p, _)| p).collect();
        p.sort();
        p
    }

    #[test]
    fn differing_tokens_become_placeholders() {
        let mut d = Drain::new(DrainConfig::default());
        for i in 1..=5 {
            d.train(&format!("test {i} test test"), 0);
        }
        assert_eq!(patterns(&d), ["test <_> test test"]);
    }

    #[test]
    fn dissimilar_lines_make_their_own_clusters_and_short_lines_none() {
        let mut d = Drain::new(DrainConfig::default());
        for i in 0..10 {
            d.train(&format!("GET /api/users/{i} 200 in {}ms", 3 + i), 0);
            d.train(&format!("connection from 10.0.0.{i} closed by peer"), 0);
        }
        d.train("too short", 0);
        assert_eq!(
            patterns(&d),
            ["GET <_> 200 in <_>", "connection from <_> closed by peer"]
        );
    }

    #[test]
    fn logfmt_streams_generalize_values() {
        let mut d = Drain::new(DrainConfig::default());
        for i in 1..=3 {
            d.train(
                &format!(r#"ts=2024-01-0{i}T00:00:00Z level=info msg="user logged in" user=ann took={i}ms"#),
                0,
            );
        }
        // Words (no digits) early in the line lead down the tree: another
        // user is another cluster, as in Loki (path of 27 tokens).
        d.train(
            r#"ts=x level=info msg="user logged in" user=bob took=9ms"#,
            0,
        );
        assert_eq!(
            patterns(&d),
            [
                r#"ts=<_> level=info msg="user logged in" user=ann took=<_>"#,
                r#"ts=<_> level=info msg="user logged in" user=bob took=9ms"#
            ]
        );
    }

    #[test]
    fn counts_are_bucketed_and_stepped_with_zero_gaps() {
        let mut d = Drain::new(DrainConfig::default());
        for t in [1_000, 2_000, 15_000, 65_000] {
            d.train("job finished in 5 seconds", t);
        }
        let (_, c) = d.patterns().next().expect("one cluster");
        assert_eq!(
            c.samples(0, 100_000, 10_000),
            [(0, 2), (10_000, 1), (60_000, 1)]
        );
        assert_eq!(
            c.samples(0, 100_000, 30_000),
            [(0, 3), (30_000, 0), (60_000, 1)]
        );
        assert_eq!(c.samples(10_000, 60_000, 10_000), [(10_000, 1)]);
    }

    #[test]
    fn clusters_are_bounded_least_recently_used_evicted() {
        let cfg = DrainConfig {
            max_clusters: 3,
            max_eviction_ratio: 1.0,
            ..Default::default()
        };
        let mut d = Drain::new(cfg);
        for w in ["alpha", "bravo", "charlie", "delta", "echo"] {
            d.train(&format!("{w} {w} {w} {w}"), 0);
        }
        assert_eq!(
            patterns(&d),
            [
                "charlie charlie charlie charlie",
                "delta delta delta delta",
                "echo echo echo echo"
            ]
        );
    }
}
