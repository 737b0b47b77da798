//! The ruler: evaluates Prometheus recording and alerting rules per tenant.
//!
//! Rule groups are stored per tenant in the object store
//! (`<tenant>/rules/<hex namespace>/<hex group>`, YAML) and managed through
//! Mimir's rules API. Every loaded group is evaluated on its interval at
//! aligned timestamps through the querier's PromQL engine; recording rules
//! write their results back through the distributor (same validation and
//! limits as remote write), with staleness markers for series that stop.
//! Alerting rules keep Prometheus's pending/firing/resolved state with `for`
//! and `keep_firing_for`, write `ALERTS` and `ALERTS_FOR_STATE`, template
//! labels and annotations, and notify Alertmanager (`/api/v2/alerts`) with
//! resends every `resend_delay`. A missed evaluation is counted, never
//! replayed in a burst.

mod alerting;
mod config;
pub mod notifier;
mod recording;
pub mod rules;
mod scheduler;
mod status;
mod store;
mod sync;
pub mod template;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, LazyLock};

use object_store::ObjectStore;
use parking_lot::{Mutex, RwLock};
use prometheus::{IntCounterVec, Opts, Registry};
use serde::Serialize;
use strata_distributor::Distributor;
use strata_querier::Querier;
use strata_querier::logs::LogQuerier;
use strata_ring::shard::Shard;

pub use config::RulerConfig;
pub use notifier::Notifier;
pub use rules::{CompiledGroup, RuleGroup, RuleLang};

/// Ruler errors.
#[derive(Debug, thiserror::Error)]
pub enum RulerError {
    /// A rule group that does not validate (400).
    #[error("{0}")]
    Invalid(String),
    /// No such namespace or group (404).
    #[error("{0}")]
    NotFound(String),
    /// Over a per-tenant limit (400, as Mimir).
    #[error("{0}")]
    Limit(String),
    /// The object store failed (500).
    #[error("rule storage: {0}")]
    Store(String),
}

impl RulerError {
    /// HTTP status for the rules API.
    pub fn status(&self) -> u16 {
        match self {
            Self::Invalid(_) | Self::Limit(_) => 400,
            Self::NotFound(_) => 404,
            Self::Store(_) => 500,
        }
    }
}

static EVALUATIONS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    IntCounterVec::new(
        Opts::new(
            "strata_ruler_evaluations_total",
            "Rule group evaluations, per tenant and outcome (success, failed, missed).",
        ),
        &["tenant", "outcome"],
    )
    .expect("valid metric")
});

static EVALUATION_FAILURES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    IntCounterVec::new(
        Opts::new(
            "strata_ruler_evaluation_failures_total",
            "Rule evaluations that failed (query error, limit, write error or a fault caught), per tenant.",
        ),
        &["tenant"],
    )
    .expect("valid metric")
});

/// Registers the ruler's metrics.
pub fn register_metrics(r: &Registry) -> prometheus::Result<()> {
    r.register(Box::new(EVALUATIONS.clone()))?;
    r.register(Box::new(EVALUATION_FAILURES.clone()))?;
    notifier::register_metrics(r)
}

/// Alert states, as Prometheus names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertState {
    Pending,
    Firing,
    Inactive,
}

/// One alert instance of an alerting rule.
#[derive(Debug, Clone)]
struct Alert {
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
    state: AlertState,
    value: f64,
    active_at: i64,
    fired_at: Option<i64>,
    resolved_at: Option<i64>,
    last_sent: Option<i64>,
    /// Since when the alert's expression stopped returning it while
    /// `keep_firing_for` holds it firing.
    keep_firing_since: Option<i64>,
}

#[derive(Default)]
struct RuleStatus {
    health: &'static str,
    last_error: Option<String>,
    last_evaluation: Option<i64>,
    evaluation_seconds: f64,
}

struct RuleState {
    status: Mutex<RuleStatus>,
    /// Set once the alert states were restored from `ALERTS_FOR_STATE`
    /// (at the first evaluation after the group was loaded).
    restored: AtomicBool,
    alerts: Mutex<HashMap<Vec<(String, String)>, Alert>>,
    /// Series this rule wrote at its last evaluation (for staleness markers).
    written: Mutex<HashSet<Vec<(String, String)>>>,
}

struct GroupState {
    tenant: String,
    group: CompiledGroup,
    rules: Vec<RuleState>,
    next_eval: Mutex<i64>,
    running: AtomicBool,
    last_evaluation: Mutex<Option<(i64, f64)>>,
}

type GroupKey = (String, RuleLang, String, String);

/// The ruler of this process.
pub struct Ruler {
    cfg: RulerConfig,
    store: Arc<dyn ObjectStore>,
    querier: Arc<Querier>,
    log_querier: Arc<LogQuerier>,
    distributor: Arc<Distributor>,
    overrides: Arc<strata_limits::Overrides>,
    notifier: Arc<Notifier>,
    groups: RwLock<HashMap<GroupKey, Arc<GroupState>>>,
    external_labels: BTreeMap<String, String>,
    /// This ruler's share of the groups when several rulers run.
    shard: Option<Shard>,
    /// Asks the other rulers for their groups and alerts.
    peer_client: reqwest::Client,
    /// The rulers the loaded groups were split among.
    shard_members: Mutex<Vec<String>>,
}

fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

impl Ruler {
    /// A ruler reading rules from `store`, querying through `querier` and
    /// writing through `distributor`.
    pub fn new(
        cfg: RulerConfig,
        store: Arc<dyn ObjectStore>,
        querier: Arc<Querier>,
        log_querier: Arc<LogQuerier>,
        distributor: Arc<Distributor>,
        overrides: Arc<strata_limits::Overrides>,
        shard: Option<Shard>,
    ) -> Arc<Self> {
        let urls: Vec<String> = cfg
            .alertmanager_url
            .split(',')
            .map(|s| s.trim().trim_end_matches('/').to_string())
            .filter(|s| !s.is_empty())
            .collect();
        let notifier = Notifier::start(urls, cfg.notification_queue_capacity);
        let external_labels = cfg.external_labels.clone();
        Arc::new(Self {
            cfg,
            store,
            querier,
            log_querier,
            distributor,
            overrides,
            notifier,
            groups: RwLock::new(HashMap::new()),
            external_labels,
            shard,
            shard_members: Mutex::new(Vec::new()),
            peer_client: reqwest::Client::new(),
        })
    }
}
