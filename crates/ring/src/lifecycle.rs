//! An instance's life in the ring: it registers (keeping the tokens saved
//! in its token file across restarts), moves JOINING -> ACTIVE -> LEAVING ->
//! LEFT, and heartbeats. The Raft leader's lifecycler also forgets instances
//! that have not heartbeated for `auto_forget_unhealthy_period`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::watch;

use crate::desc::{InstanceDesc, InstanceState, RingCommand, load_tokens, new_tokens, save_tokens};
use crate::{Ring, RingError, now_ms};

/// What an instance registers as.
#[derive(Debug, Clone)]
pub struct Registration {
    /// Instance id.
    pub id: String,
    /// Roles it runs.
    pub roles: Vec<String>,
    /// gRPC `host:port`.
    pub grpc_addr: String,
    /// HTTP `host:port`.
    pub http_addr: String,
    /// Whether it owns tokens (ingesters do).
    pub owns_tokens: bool,
    /// State it registers in.
    pub state: InstanceState,
}

/// Keeps one instance registered and heartbeating.
pub struct Lifecycler {
    ring: Arc<Ring>,
    desc: Mutex<InstanceDesc>,
}

impl Lifecycler {
    /// Registers the instance, retrying while the ring has no leader, for
    /// at most `wait`.
    pub async fn register(
        ring: Arc<Ring>,
        reg: Registration,
        wait: Duration,
    ) -> Result<Arc<Self>, RingError> {
        let cfg = ring.config().clone();
        let deadline = tokio::time::Instant::now() + wait;
        let tokens = if reg.owns_tokens {
            let path = PathBuf::from(&cfg.tokens_file_path);
            match load_tokens(&path).map_err(|e| RingError::Storage {
                dir: path.display().to_string(),
                source: e,
            })? {
                Some(t) if !t.is_empty() => t,
                _ => {
                    // A restart that lost its token file but is still in the
                    // ring keeps the tokens the ring remembers.
                    let current = ring.desc();
                    let t = match current.instances.get(&reg.id) {
                        Some(old) if !old.tokens.is_empty() => old.tokens.clone(),
                        _ => new_tokens(cfg.num_tokens, &current),
                    };
                    save_tokens(&path, &t).map_err(|e| RingError::Storage {
                        dir: path.display().to_string(),
                        source: e,
                    })?;
                    t
                }
            }
        } else {
            Vec::new()
        };
        let now = now_ms();
        let desc = InstanceDesc {
            id: reg.id,
            roles: reg.roles,
            grpc_addr: reg.grpc_addr,
            http_addr: reg.http_addr,
            zone: cfg.instance_availability_zone.clone(),
            state: reg.state,
            tokens,
            heartbeat_ms: now,
            registered_ms: now,
        };
        loop {
            match ring.update(RingCommand::Register(desc.clone())).await {
                Ok(()) => break,
                Err(e) if tokio::time::Instant::now() < deadline => {
                    tracing::info!(error = %e, "waiting for the ring to register this instance");
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
                Err(e) => return Err(e),
            }
        }
        tracing::info!(id = %desc.id, state = desc.state.as_str(), tokens = desc.tokens.len(), "registered in the ring");
        Ok(Arc::new(Self {
            ring,
            desc: Mutex::new(desc),
        }))
    }

    /// This instance's id.
    pub fn id(&self) -> String {
        self.desc.lock().id.clone()
    }

    /// Moves the instance to `state` (committed with a heartbeat).
    pub async fn set_state(&self, state: InstanceState) -> Result<(), RingError> {
        let id = {
            let mut d = self.desc.lock();
            d.state = state;
            d.id.clone()
        };
        self.ring
            .update(RingCommand::Heartbeat {
                id,
                at_ms: now_ms(),
                state: Some(state),
            })
            .await?;
        tracing::info!(state = state.as_str(), "ring state changed");
        Ok(())
    }

    /// Waits until the ring this process reads shows the instance in its
    /// current state: a follower applies committed changes a little after
    /// the leader, and a process that reports ready before its own ring
    /// shows its ingester ACTIVE would refuse the first writes it takes.
    pub async fn wait_visible(&self, wait: Duration) -> bool {
        let (id, state) = {
            let d = self.desc.lock();
            (d.id.clone(), d.state)
        };
        let mut rx = self.ring.subscribe();
        let seen = |desc: &crate::desc::RingDesc| {
            desc.instances.get(&id).is_some_and(|i| i.state == state)
        };
        tokio::time::timeout(wait, async {
            loop {
                if seen(&rx.borrow_and_update()) {
                    return;
                }
                if rx.changed().await.is_err() {
                    // The ring stopped publishing; nothing more will show up.
                    std::future::pending::<()>().await;
                }
            }
        })
        .await
        .is_ok()
    }

    /// Heartbeats until `shutdown`; re-registers when the ring lost this
    /// instance (forgotten while partitioned away).
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let cfg = self.ring.config().clone();
        let mut tick = tokio::time::interval(cfg.heartbeat_period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => return,
            }
            let now = now_ms();
            let desc = self.desc.lock().clone();
            let cmd = if self.ring.desc().instances.contains_key(&desc.id) {
                RingCommand::Heartbeat {
                    id: desc.id.clone(),
                    at_ms: now,
                    state: Some(desc.state),
                }
            } else {
                RingCommand::Register(InstanceDesc {
                    heartbeat_ms: now,
                    ..desc
                })
            };
            if let Err(e) = self.ring.update(cmd).await {
                tracing::warn!(error = %e, "ring heartbeat failed");
            }
            if let Some(v) = self.ring.voter()
                && v.is_leader()
                && !cfg.auto_forget_unhealthy_period.is_zero()
            {
                let before = now - cfg.auto_forget_unhealthy_period.as_millis() as i64;
                let stale = self
                    .ring
                    .desc()
                    .instances
                    .values()
                    .any(|i| i.heartbeat_ms < before);
                if stale
                    && let Err(e) = self
                        .ring
                        .update(RingCommand::ForgetUnhealthy { before_ms: before })
                        .await
                {
                    tracing::warn!(error = %e, "forgetting unhealthy instances failed");
                }
            }
        }
    }
}
