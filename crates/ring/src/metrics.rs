//! The ring's metrics (`strata_ring_*`), computed from the ring and the
//! local Raft voter at every scrape: who is in the ring in which state, and
//! on voters, the Raft group's membership and leadership.

use std::collections::BTreeMap;
use std::sync::Arc;

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{IntGauge, IntGaugeVec, Opts};

use crate::Ring;

/// Collects the ring's metrics for one process.
pub struct RingCollector {
    ring: Arc<Ring>,
    members: IntGaugeVec,
    unhealthy: IntGaugeVec,
    voters: IntGauge,
    learners: IntGauge,
    is_leader: IntGauge,
    has_leader: IntGauge,
    term: IntGauge,
    applied: IntGauge,
}

fn gauge(name: &str, help: &str) -> prometheus::Result<IntGauge> {
    IntGauge::new(name, help)
}

impl RingCollector {
    /// The collector of `ring`'s metrics.
    pub fn new(ring: Arc<Ring>) -> prometheus::Result<Self> {
        Ok(Self {
            ring,
            members: IntGaugeVec::new(
                Opts::new(
                    "strata_ring_members",
                    "Instances in the ring as this process sees it, by role and state.",
                ),
                &["role", "state"],
            )?,
            unhealthy: IntGaugeVec::new(
                Opts::new(
                    "strata_ring_unhealthy_members",
                    "Instances whose last heartbeat is older than -ring.heartbeat-timeout, by role.",
                ),
                &["role"],
            )?,
            voters: gauge(
                "strata_ring_raft_voters",
                "Voters of the ring's Raft group (on voters).",
            )?,
            learners: gauge(
                "strata_ring_raft_learners",
                "Learners of the ring's Raft group: joining voters still catching up (on voters).",
            )?,
            is_leader: gauge(
                "strata_ring_raft_is_leader",
                "1 when this voter leads the ring's Raft group (on voters).",
            )?,
            has_leader: gauge(
                "strata_ring_raft_has_leader",
                "1 when this voter knows a leader of the ring's Raft group (on voters).",
            )?,
            term: gauge(
                "strata_ring_raft_term",
                "Current Raft term (on voters); each election raises it.",
            )?,
            applied: gauge(
                "strata_ring_raft_applied_index",
                "Index of the last Raft log entry applied to the ring (on voters).",
            )?,
        })
    }

    fn gauges(&self) -> [&IntGauge; 6] {
        [
            &self.voters,
            &self.learners,
            &self.is_leader,
            &self.has_leader,
            &self.term,
            &self.applied,
        ]
    }
}

impl Collector for RingCollector {
    fn desc(&self) -> Vec<&Desc> {
        let mut d = self.members.desc();
        d.extend(self.unhealthy.desc());
        for g in self.gauges() {
            d.extend(g.desc());
        }
        d
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let desc = self.ring.desc();
        let timeout = self.ring.config().heartbeat_timeout.as_millis() as i64;
        let now = crate::now_ms();
        let mut members: BTreeMap<(&str, &str), i64> = BTreeMap::new();
        let mut unhealthy: BTreeMap<&str, i64> = BTreeMap::new();
        for inst in desc.instances.values() {
            for role in &inst.roles {
                *members.entry((role, inst.state.as_str())).or_default() += 1;
                let sick = unhealthy.entry(role).or_default();
                if !inst.is_healthy(now, timeout) {
                    *sick += 1;
                }
            }
        }
        self.members.reset();
        for ((role, state), n) in members {
            self.members.with_label_values(&[role, state]).set(n);
        }
        self.unhealthy.reset();
        for (role, n) in unhealthy {
            self.unhealthy.with_label_values(&[role]).set(n);
        }
        let mut out = self.members.collect();
        out.extend(self.unhealthy.collect());
        if let Some(node) = self.ring.voter() {
            let status = node.status();
            let m = node.raft().metrics().borrow().clone();
            self.voters.set(status.voters.len() as i64);
            self.learners.set(status.learners.len() as i64);
            self.is_leader
                .set(i64::from(m.current_leader == Some(node.id())));
            self.has_leader.set(i64::from(m.current_leader.is_some()));
            self.term.set(m.current_term as i64);
            self.applied
                .set(m.last_applied.map(|l| l.index as i64).unwrap_or(0));
            for g in self.gauges() {
                out.extend(g.collect());
            }
        }
        out
    }
}
