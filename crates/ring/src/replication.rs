//! Which ingesters hold a series: a token index over the ring's ingesters,
//! replica selection for writes (RF instances clockwise from the series'
//! token, one per zone when zones are set, skipping instances that take no
//! writes) and the set of ingesters a read must ask.

use std::sync::Arc;

use crate::desc::{InstanceDesc, InstanceState, RingDesc};

/// Why no replication set could be chosen.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ReplicationError {
    /// The ring has no ingesters yet.
    #[error("the ring has no ingesters")]
    Empty,
    /// Fewer healthy replicas than a quorum.
    #[error("at least {needed} live replicas required, could only find {live}")]
    TooFewHealthy {
        /// Replicas a quorum needs.
        needed: usize,
        /// Healthy replicas found.
        live: usize,
    },
}

/// The replicas a write goes to and how many must succeed.
#[derive(Debug, Clone)]
pub struct ReplicationSet {
    /// Healthy replicas to write to (instance indexes into [`RingView::instances`]).
    pub instances: Vec<usize>,
    /// Acknowledgements needed (a quorum of the replication factor).
    pub min_success: usize,
}

/// The ingesters a read asks and how many of them may fail.
#[derive(Debug, Clone)]
pub struct ReadSet {
    /// Healthy ingesters that may hold data (indexes into [`RingView::instances`]).
    pub instances: Vec<usize>,
    /// Failures (including unhealthy instances left out) a read survives.
    pub max_errors: usize,
    /// Instances already left out as unhealthy.
    pub unhealthy: usize,
}

/// An immutable view of the ring's ingesters with a sorted token index.
#[derive(Debug, Clone)]
pub struct RingView {
    desc: Arc<RingDesc>,
    instances: Vec<InstanceDesc>,
    /// (token, index into `instances`), sorted by token.
    tokens: Vec<(u32, usize)>,
    zones: usize,
}

/// A series' position on the ring: a hash of its tenant and labels.
pub fn shard_key(tenant: &str, labels_hash: u64) -> u32 {
    let h = twox_hash::XxHash3_64::oneshot_with_seed(labels_hash, tenant.as_bytes());
    (h ^ (h >> 32)) as u32
}

/// A block's position on the ring: a hash of its tenant and ULID.
pub fn block_key(tenant: &str, ulid: &str) -> u32 {
    shard_key(tenant, twox_hash::XxHash3_64::oneshot(ulid.as_bytes()))
}

impl RingView {
    /// Indexes the instances of `desc` that run `role` and own tokens.
    pub fn new(desc: Arc<RingDesc>, role: &str) -> Self {
        let instances: Vec<InstanceDesc> = desc
            .instances
            .values()
            .filter(|i| i.has_role(role) && !i.tokens.is_empty())
            .cloned()
            .collect();
        let mut tokens: Vec<(u32, usize)> = instances
            .iter()
            .enumerate()
            .flat_map(|(n, i)| i.tokens.iter().map(move |t| (*t, n)))
            .collect();
        tokens.sort_unstable();
        let zones: std::collections::BTreeSet<&str> =
            instances.iter().map(|i| i.zone.as_str()).collect();
        let zones = if zones.iter().all(|z| z.is_empty()) {
            0
        } else {
            zones.len()
        };
        Self {
            desc,
            instances,
            tokens,
            zones,
        }
    }

    /// The whole ring this view was built from.
    pub fn desc(&self) -> &Arc<RingDesc> {
        &self.desc
    }

    /// The indexed instances.
    pub fn instances(&self) -> &[InstanceDesc] {
        &self.instances
    }

    /// Replication factor in effect: the configured one, capped by the
    /// number of instances (and of zones when zone-aware), so a one-node
    /// cluster writes one copy. Instances that left still count until they
    /// are forgotten, so stopping nodes does not silently lower the quorum.
    pub fn effective_rf(&self, rf: usize) -> usize {
        let mut n = rf.min(self.instances.len());
        if self.zones > 0 {
            n = n.min(self.zones);
        }
        n.max(1)
    }

    /// Replicas of the series at `key`: the first `rf` distinct ACTIVE
    /// instances clockwise (distinct zones when zone-aware); instances in
    /// other states are passed over. Unhealthy ones count towards RF but get
    /// no write, so a write needs a quorum of the healthy rest.
    pub fn write_set(
        &self,
        key: u32,
        rf: usize,
        now_ms: i64,
        heartbeat_timeout_ms: i64,
    ) -> Result<ReplicationSet, ReplicationError> {
        if self.tokens.is_empty() {
            return Err(ReplicationError::Empty);
        }
        let rf = self.effective_rf(rf);
        let min_success = rf / 2 + 1;
        let chosen = self.replicas(key, rf, |i| i.state == InstanceState::Active);
        let healthy: Vec<usize> = chosen
            .into_iter()
            .filter(|i| self.instances[*i].is_healthy(now_ms, heartbeat_timeout_ms))
            .collect();
        if healthy.len() < min_success {
            return Err(ReplicationError::TooFewHealthy {
                needed: min_success,
                live: healthy.len(),
            });
        }
        Ok(ReplicationSet {
            instances: healthy,
            min_success,
        })
    }

    /// The first `rf` distinct instances clockwise from `key` that `accept`
    /// takes (in distinct zones when zone-aware), in ring order: the
    /// replicas of a series for writes, the owners of a block for
    /// store-gateways. Health is the caller's concern.
    pub fn replicas(
        &self,
        key: u32,
        rf: usize,
        accept: impl Fn(&InstanceDesc) -> bool,
    ) -> Vec<usize> {
        let mut chosen: Vec<usize> = Vec::with_capacity(rf);
        if self.tokens.is_empty() {
            return chosen;
        }
        let start = self.tokens.partition_point(|(t, _)| *t < key);
        let mut zones: Vec<&str> = Vec::with_capacity(rf);
        for step in 0..self.tokens.len() {
            if chosen.len() == rf {
                break;
            }
            let (_, idx) = self.tokens[(start + step) % self.tokens.len()];
            if chosen.contains(&idx) {
                continue;
            }
            let inst = &self.instances[idx];
            if self.zones > 0 && zones.contains(&inst.zone.as_str()) {
                continue;
            }
            if !accept(inst) {
                continue;
            }
            chosen.push(idx);
            zones.push(inst.zone.as_str());
        }
        chosen
    }

    /// Ingesters a read of recent data must ask: every healthy ACTIVE or
    /// LEAVING one. A read survives as many failures as a write may leave
    /// replicas unwritten (RF minus quorum), so every acknowledged sample
    /// is on at least one instance that answered.
    pub fn read_set(
        &self,
        rf: usize,
        now_ms: i64,
        heartbeat_timeout_ms: i64,
    ) -> Result<ReadSet, ReplicationError> {
        let rf = self.effective_rf(rf);
        let max_errors = rf - (rf / 2 + 1);
        let mut instances = Vec::new();
        let mut unhealthy = 0;
        for (i, inst) in self.instances.iter().enumerate() {
            match inst.state {
                InstanceState::Active | InstanceState::Leaving => {
                    if inst.is_healthy(now_ms, heartbeat_timeout_ms) {
                        instances.push(i);
                    } else {
                        unhealthy += 1;
                    }
                }
                // A joining instance is still replaying its WAL; one that
                // left has flushed its head to blocks.
                InstanceState::Joining | InstanceState::Left => {}
            }
        }
        if unhealthy > max_errors {
            return Err(ReplicationError::TooFewHealthy {
                needed: instances.len() + unhealthy - max_errors,
                live: instances.len(),
            });
        }
        Ok(ReadSet {
            instances,
            max_errors,
            unhealthy,
        })
    }

    /// Share of the token space each instance owns, by id (sums to 1).
    pub fn ownership(&self) -> Vec<(String, f64)> {
        let mut owned = vec![0u64; self.instances.len()];
        let n = self.tokens.len();
        for (k, (t, idx)) in self.tokens.iter().enumerate() {
            // An instance owns the range ending at each of its tokens.
            let prev = self.tokens[(k + n - 1) % n].0;
            let span = if n == 1 {
                1u64 << 32
            } else {
                u64::from(t.wrapping_sub(prev))
            };
            owned[*idx] += span;
        }
        self.instances
            .iter()
            .zip(owned)
            .map(|(i, o)| (i.id.clone(), o as f64 / (1u64 << 32) as f64))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desc::RingCommand;

    fn inst(id: &str, zone: &str, tokens: &[u32], state: InstanceState) -> InstanceDesc {
        InstanceDesc {
            id: id.into(),
            roles: vec!["ingester".into()],
            grpc_addr: format!("{id}:9095"),
            http_addr: format!("{id}:9009"),
            zone: zone.into(),
            state,
            tokens: tokens.to_vec(),
            heartbeat_ms: 1_000,
            registered_ms: 0,
        }
    }

    fn view(insts: Vec<InstanceDesc>) -> RingView {
        let mut d = RingDesc::default();
        for i in insts {
            d.apply(&RingCommand::Register(i));
        }
        RingView::new(Arc::new(d), "ingester")
    }

    fn ids(v: &RingView, set: &[usize]) -> Vec<String> {
        set.iter().map(|i| v.instances()[*i].id.clone()).collect()
    }

    const NOW: i64 = 2_000;
    const TIMEOUT: i64 = 60_000;

    #[test]
    fn token_ownership_walks_clockwise() {
        use InstanceState::Active;
        let v = view(vec![
            inst("a", "", &[100, 400], Active),
            inst("b", "", &[200], Active),
            inst("c", "", &[300], Active),
        ]);
        // Key 150: first token >= 150 is b's 200, then c's 300, then a's 400.
        let s = v.write_set(150, 3, NOW, TIMEOUT).unwrap();
        assert_eq!(ids(&v, &s.instances), ["b", "c", "a"]);
        assert_eq!(s.min_success, 2);
        // Past the last token it wraps to the first.
        let s = v.write_set(401, 2, NOW, TIMEOUT).unwrap();
        assert_eq!(ids(&v, &s.instances), ["a", "b"]);
        // Exact token hits its owner first.
        let s = v.write_set(300, 1, NOW, TIMEOUT).unwrap();
        assert_eq!(ids(&v, &s.instances), ["c"]);
        let own = v.ownership();
        let total: f64 = own.iter().map(|(_, o)| o).sum();
        assert!((total - 1.0).abs() < 1e-9);
        let b = own.iter().find(|(i, _)| i == "b").unwrap().1;
        assert!(
            (b - 100.0 / 4294967296.0).abs() < 1e-12,
            "b owns (100, 200]"
        );
    }

    /// The owners of a block: the walk takes what the caller accepts (a
    /// joining gateway loads its share, queriers pass it over), in ring
    /// order, distinct zones when zoned.
    #[test]
    fn replicas_take_what_the_caller_accepts() {
        use InstanceState::*;
        let v = view(vec![
            inst("a", "z1", &[100], Active),
            inst("b", "z1", &[200], Joining),
            inst("c", "z2", &[300], Leaving),
            inst("d", "z3", &[400], Active),
        ]);
        let serving = |i: &InstanceDesc| matches!(i.state, Active | Leaving);
        assert_eq!(ids(&v, &v.replicas(150, 2, serving)), ["c", "d"]);
        assert_eq!(
            ids(&v, &v.replicas(150, 2, |i| i.state != Left)),
            ["b", "c"]
        );
        // Zones: b is passed over once a took zone z1.
        assert_eq!(
            ids(&v, &v.replicas(350, 3, |i| i.state != Left)),
            ["d", "a", "c"]
        );
        assert!(view(vec![]).replicas(1, 3, |_| true).is_empty());
        // A block's place depends on its tenant and ULID only.
        assert_eq!(block_key("t", "01A"), block_key("t", "01A"));
        assert_ne!(block_key("t", "01A"), block_key("u", "01A"));
    }

    #[test]
    fn zones_get_one_replica_each() {
        use InstanceState::Active;
        let v = view(vec![
            inst("a1", "a", &[10], Active),
            inst("a2", "a", &[20], Active),
            inst("b1", "b", &[30], Active),
            inst("c1", "c", &[40], Active),
        ]);
        let s = v.write_set(5, 3, NOW, TIMEOUT).unwrap();
        assert_eq!(ids(&v, &s.instances), ["a1", "b1", "c1"]);
        // Two zones cap the replication factor at two.
        let v2 = view(vec![
            inst("a1", "a", &[10], Active),
            inst("a2", "a", &[20], Active),
            inst("b1", "b", &[30], Active),
        ]);
        assert_eq!(v2.effective_rf(3), 2);
        let s = v2.write_set(15, 3, NOW, TIMEOUT).unwrap();
        assert_eq!(ids(&v2, &s.instances), ["a2", "b1"]);
    }

    #[test]
    fn non_active_instances_are_passed_over_and_unhealthy_ones_fail_quorum() {
        use InstanceState::*;
        let v = view(vec![
            inst("a", "", &[10], Leaving),
            inst("b", "", &[20], Active),
            inst("c", "", &[30], Joining),
            inst("d", "", &[40], Active),
            inst("e", "", &[50], Active),
        ]);
        let s = v.write_set(0, 3, NOW, TIMEOUT).unwrap();
        assert_eq!(ids(&v, &s.instances), ["b", "d", "e"]);

        let mut stale = inst("b", "", &[20], Active);
        stale.heartbeat_ms = NOW - TIMEOUT - 1;
        let v = view(vec![
            inst("a", "", &[10], Active),
            stale.clone(),
            inst("c", "", &[30], Active),
        ]);
        let s = v.write_set(0, 3, NOW, TIMEOUT).unwrap();
        assert_eq!(
            ids(&v, &s.instances),
            ["a", "c"],
            "unhealthy b gets no write"
        );
        let r = v.read_set(3, NOW, TIMEOUT).unwrap();
        assert_eq!(r.unhealthy, 1);
        assert_eq!(r.max_errors, 1);

        // Two of three gone (one killed, one left): no quorum, for writes
        // and reads alike.
        let v = view(vec![
            inst("a", "", &[10], Left),
            stale,
            inst("c", "", &[30], Active),
        ]);
        assert_eq!(
            v.write_set(0, 3, NOW, TIMEOUT).unwrap_err(),
            ReplicationError::TooFewHealthy { needed: 2, live: 1 }
        );
        assert_eq!(v.effective_rf(3), 3, "left instances still count");
        assert!(v.read_set(3, NOW, TIMEOUT).is_ok(), "the left one flushed");
    }

    #[test]
    fn one_node_ring_writes_one_copy() {
        let v = view(vec![inst("solo", "", &[7, 9], InstanceState::Active)]);
        let s = v.write_set(u32::MAX, 3, NOW, TIMEOUT).unwrap();
        assert_eq!(ids(&v, &s.instances), ["solo"]);
        assert_eq!(s.min_success, 1);
        assert_eq!(
            view(vec![]).write_set(1, 3, NOW, TIMEOUT).unwrap_err(),
            ReplicationError::Empty
        );
    }

    #[test]
    fn shard_keys_spread_and_depend_on_tenant() {
        assert_ne!(shard_key("a", 1), shard_key("b", 1));
        assert_eq!(shard_key("a", 1), shard_key("a", 1));
        let v = view(vec![
            inst(
                "a",
                "",
                &crate::desc::new_tokens(128, &RingDesc::default()),
                InstanceState::Active,
            ),
            inst(
                "b",
                "",
                &crate::desc::new_tokens(128, &RingDesc::default()),
                InstanceState::Active,
            ),
            inst(
                "c",
                "",
                &crate::desc::new_tokens(128, &RingDesc::default()),
                InstanceState::Active,
            ),
        ]);
        let mut first = [0usize; 3];
        for h in 0..3000u64 {
            let s = v.write_set(shard_key("t", h), 1, NOW, TIMEOUT).unwrap();
            first[s.instances[0]] += 1;
        }
        assert!(first.iter().all(|n| *n > 600), "roughly even: {first:?}");
    }
}
