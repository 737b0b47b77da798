//! The ring's replicated state: every instance of the cluster (role,
//! addresses, zone, lifecycle state, tokens, last heartbeat) and the commands
//! that change it. Raft applies the same commands in the same order on every
//! voter, so `apply` must be deterministic: it takes times from the command,
//! never from the clock.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Lifecycle state of an instance, as in Mimir's ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum InstanceState {
    /// Registered, still replaying its WAL: owns tokens but takes no writes.
    Joining,
    /// Takes writes and answers reads.
    Active,
    /// Shutting down: flushing its head, answers reads, takes no new writes.
    Leaving,
    /// Gone after a clean shutdown; kept until forgotten so its tokens stay visible.
    Left,
}

impl InstanceState {
    /// Upper-case name, as shown on the ring page.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Joining => "JOINING",
            Self::Active => "ACTIVE",
            Self::Leaving => "LEAVING",
            Self::Left => "LEFT",
        }
    }
}

/// One member of the ring.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceDesc {
    /// Unique instance id (`-ring.instance-id`, the host name by default).
    pub id: String,
    /// Roles the process runs, e.g. `["ingester"]` or `["all"]`.
    pub roles: Vec<String>,
    /// `host:port` of its gRPC server.
    pub grpc_addr: String,
    /// `host:port` of its HTTP server.
    pub http_addr: String,
    /// Availability zone; empty when zones are not used.
    pub zone: String,
    /// Lifecycle state.
    pub state: InstanceState,
    /// Tokens it owns on the ring, sorted; empty for roles that own no data.
    pub tokens: Vec<u32>,
    /// Unix milliseconds of the last heartbeat.
    pub heartbeat_ms: i64,
    /// Unix milliseconds of its first registration.
    pub registered_ms: i64,
}

impl InstanceDesc {
    /// Whether the instance runs `role` (directly or as part of `all`).
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role || r == "all")
    }

    /// Whether its last heartbeat is within `timeout_ms` of `now_ms`.
    pub fn is_healthy(&self, now_ms: i64, timeout_ms: i64) -> bool {
        now_ms - self.heartbeat_ms <= timeout_ms
    }
}

/// The whole ring: instances by id.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RingDesc {
    /// Instances keyed by id.
    pub instances: BTreeMap<String, InstanceDesc>,
}

/// A change to the ring, replicated through Raft.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum RingCommand {
    /// Adds or replaces an instance (a restart re-registers with its tokens).
    Register(InstanceDesc),
    /// Records a heartbeat and, when given, a new state.
    Heartbeat {
        /// Instance id.
        id: String,
        /// Time of the heartbeat, Unix milliseconds.
        at_ms: i64,
        /// New lifecycle state, if it changed.
        state: Option<InstanceState>,
    },
    /// Removes an instance (the ring page's "forget", or auto-forget).
    Forget {
        /// Instance id.
        id: String,
    },
    /// Removes every instance whose heartbeat is older than `before_ms`.
    ForgetUnhealthy {
        /// Heartbeats older than this are forgotten.
        before_ms: i64,
    },
}

/// What applying a command did.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RingResponse {
    /// Ids of instances the command changed or removed.
    pub affected: Vec<String>,
}

impl RingDesc {
    /// Applies `cmd`; deterministic, so every voter ends in the same state.
    pub fn apply(&mut self, cmd: &RingCommand) -> RingResponse {
        let mut affected = Vec::new();
        match cmd {
            RingCommand::Register(desc) => {
                let mut desc = desc.clone();
                desc.tokens.sort_unstable();
                desc.tokens.dedup();
                if let Some(old) = self.instances.get(&desc.id) {
                    desc.registered_ms = old.registered_ms.min(desc.registered_ms);
                }
                affected.push(desc.id.clone());
                self.instances.insert(desc.id.clone(), desc);
            }
            RingCommand::Heartbeat { id, at_ms, state } => {
                if let Some(inst) = self.instances.get_mut(id) {
                    inst.heartbeat_ms = inst.heartbeat_ms.max(*at_ms);
                    if let Some(s) = state {
                        inst.state = *s;
                    }
                    affected.push(id.clone());
                }
            }
            RingCommand::Forget { id } => {
                if self.instances.remove(id).is_some() {
                    affected.push(id.clone());
                }
            }
            RingCommand::ForgetUnhealthy { before_ms } => {
                self.instances.retain(|id, inst| {
                    let keep = inst.heartbeat_ms >= *before_ms;
                    if !keep {
                        affected.push(id.clone());
                    }
                    keep
                });
            }
        }
        RingResponse { affected }
    }
}

/// `n` random tokens not owned by anyone in `taken`, sorted.
pub fn new_tokens(n: usize, taken: &RingDesc) -> Vec<u32> {
    use rand::Rng;
    let used: std::collections::HashSet<u32> = taken
        .instances
        .values()
        .flat_map(|i| i.tokens.iter().copied())
        .collect();
    let mut rng = rand::rng();
    let mut out = std::collections::BTreeSet::new();
    while out.len() < n {
        let t: u32 = rng.random();
        if !used.contains(&t) {
            out.insert(t);
        }
    }
    out.into_iter().collect()
}

/// Reads tokens saved by [`save_tokens`]; `None` when the file does not exist.
pub fn load_tokens(path: &std::path::Path) -> std::io::Result<Option<Vec<u32>>> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Saves tokens atomically (write, fsync, rename) so a restart keeps them.
pub fn save_tokens(path: &std::path::Path, tokens: &[u32]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("tmp");
    let bytes = serde_json::to_vec(tokens).map_err(std::io::Error::other)?;
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn inst(id: &str, zone: &str, tokens: &[u32], hb: i64) -> InstanceDesc {
        InstanceDesc {
            id: id.into(),
            roles: vec!["ingester".into()],
            grpc_addr: format!("{id}:9095"),
            http_addr: format!("{id}:9009"),
            zone: zone.into(),
            state: InstanceState::Active,
            tokens: tokens.to_vec(),
            heartbeat_ms: hb,
            registered_ms: hb,
        }
    }

    #[test]
    fn commands_apply_deterministically() {
        let mut ring = RingDesc::default();
        ring.apply(&RingCommand::Register(inst("a", "", &[30, 10, 10], 100)));
        ring.apply(&RingCommand::Register(inst("b", "", &[20], 100)));
        assert_eq!(
            ring.instances["a"].tokens,
            vec![10, 30],
            "sorted, deduplicated"
        );
        let r = ring.apply(&RingCommand::Heartbeat {
            id: "a".into(),
            at_ms: 500,
            state: Some(InstanceState::Leaving),
        });
        assert_eq!(r.affected, vec!["a".to_string()]);
        assert_eq!(ring.instances["a"].heartbeat_ms, 500);
        assert_eq!(ring.instances["a"].state, InstanceState::Leaving);
        // A late, older heartbeat never moves the time back.
        ring.apply(&RingCommand::Heartbeat {
            id: "a".into(),
            at_ms: 200,
            state: None,
        });
        assert_eq!(ring.instances["a"].heartbeat_ms, 500);
        let r = ring.apply(&RingCommand::ForgetUnhealthy { before_ms: 300 });
        assert_eq!(r.affected, vec!["b".to_string()]);
        assert_eq!(ring.instances.len(), 1);
        ring.apply(&RingCommand::Forget { id: "a".into() });
        assert!(ring.instances.is_empty());
    }

    #[test]
    fn heartbeat_expiry() {
        let i = inst("a", "", &[1], 1_000);
        assert!(i.is_healthy(1_000 + 60_000, 60_000));
        assert!(!i.is_healthy(1_000 + 60_001, 60_000));
    }

    #[test]
    fn tokens_are_fresh_and_persist() {
        let mut ring = RingDesc::default();
        ring.apply(&RingCommand::Register(inst("a", "", &[1, 2, 3], 0)));
        let t = new_tokens(128, &ring);
        assert_eq!(t.len(), 128);
        assert!(t.is_sorted());
        assert!(!t.iter().any(|x| [1, 2, 3].contains(x)));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/tokens");
        assert_eq!(load_tokens(&path).unwrap(), None);
        save_tokens(&path, &t).unwrap();
        assert_eq!(load_tokens(&path).unwrap(), Some(t));
    }
}
