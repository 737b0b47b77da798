//! Work split among the instances of one role: rule groups among rulers,
//! tenants among compactors. Each key belongs to the healthy ACTIVE
//! instance with the highest `hash(instance, key)` (rendezvous hashing):
//! exactly one owner per key, and when an instance dies or leaves only its
//! keys move, to the survivors, once its heartbeat times out.

use std::sync::Arc;

use crate::desc::{InstanceState, RingDesc};
use crate::{Ring, now_ms};

fn score(instance: &str, key: &str) -> u64 {
    let seed = twox_hash::XxHash3_64::oneshot(instance.as_bytes());
    twox_hash::XxHash3_64::oneshot_with_seed(seed, key.as_bytes())
}

/// Ids of the healthy ACTIVE instances running `role`, sorted.
pub fn members(desc: &RingDesc, role: &str, now_ms: i64, timeout_ms: i64) -> Vec<String> {
    desc.instances
        .values()
        .filter(|i| {
            i.has_role(role) && i.state == InstanceState::Active && i.is_healthy(now_ms, timeout_ms)
        })
        .map(|i| i.id.clone())
        .collect()
}

/// The owner of `key` among `members`.
pub fn owner<'a>(members: &'a [String], key: &str) -> Option<&'a str> {
    members
        .iter()
        .max_by_key(|m| (score(m, key), m.as_str()))
        .map(String::as_str)
}

/// This process's share of a role's work.
pub struct Shard {
    ring: Arc<Ring>,
    id: String,
    role: &'static str,
}

impl Shard {
    /// The share of instance `id` among the ring's `role` instances.
    pub fn new(ring: Arc<Ring>, id: String, role: &'static str) -> Self {
        Self { ring, id, role }
    }

    /// The current members, this instance always included (it is alive,
    /// whatever its last heartbeat in a possibly stale ring says).
    pub fn members(&self) -> Vec<String> {
        let timeout = self.ring.config().heartbeat_timeout.as_millis() as i64;
        let mut m = members(&self.ring.desc(), self.role, now_ms(), timeout);
        if !m.contains(&self.id) {
            m.push(self.id.clone());
            m.sort();
        }
        m
    }

    /// HTTP addresses of the other healthy ACTIVE instances of the role.
    pub fn peer_http_addrs(&self) -> Vec<String> {
        let timeout = self.ring.config().heartbeat_timeout.as_millis() as i64;
        let desc = self.ring.desc();
        members(&desc, self.role, now_ms(), timeout)
            .into_iter()
            .filter(|id| *id != self.id)
            .filter_map(|id| desc.instances.get(&id).map(|i| i.http_addr.clone()))
            .collect()
    }

    /// Whether this instance owns `key` among `members`.
    pub fn owns(&self, members: &[String], key: &str) -> bool {
        owner(members, key) == Some(self.id.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_has_one_owner_and_only_a_dead_members_keys_move() {
        let three: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
        let two: Vec<String> = ["a", "c"].map(String::from).to_vec();
        let mut per = std::collections::HashMap::new();
        for k in 0..3000 {
            let key = format!("tenant/ns/group-{k}");
            let o3 = owner(&three, &key).unwrap();
            *per.entry(o3).or_insert(0) += 1;
            let o2 = owner(&two, &key).unwrap();
            if o3 != "b" {
                assert_eq!(o2, o3, "{key} moved although its owner stayed");
            }
        }
        assert!(per.values().all(|n| *n > 800), "spread: {per:?}");
        assert_eq!(owner(&[], "x"), None);
    }

    #[test]
    fn members_are_healthy_active_instances_of_the_role() {
        use crate::desc::{InstanceDesc, RingCommand};
        let mut d = RingDesc::default();
        let inst = |id: &str, role: &str, state, hb| InstanceDesc {
            id: id.into(),
            roles: vec![role.into()],
            grpc_addr: String::new(),
            http_addr: String::new(),
            zone: String::new(),
            state,
            tokens: vec![],
            heartbeat_ms: hb,
            registered_ms: 0,
        };
        d.apply(&RingCommand::Register(inst(
            "r1",
            "ruler",
            InstanceState::Active,
            1000,
        )));
        d.apply(&RingCommand::Register(inst(
            "r2",
            "ruler",
            InstanceState::Active,
            0,
        )));
        d.apply(&RingCommand::Register(inst(
            "r3",
            "ruler",
            InstanceState::Leaving,
            1000,
        )));
        d.apply(&RingCommand::Register(inst(
            "a",
            "all",
            InstanceState::Active,
            1000,
        )));
        d.apply(&RingCommand::Register(inst(
            "q",
            "querier",
            InstanceState::Active,
            1000,
        )));
        assert_eq!(members(&d, "ruler", 1500, 1000), vec!["a", "r1"]);
    }
}
