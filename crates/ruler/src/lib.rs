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

pub mod notifier;
pub mod rules;
pub mod template;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use futures::{FutureExt, TryStreamExt};
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt};
use parking_lot::{Mutex, RwLock};
use prometheus::{IntCounterVec, Opts, Registry};
use serde::Serialize;
use serde_json::{Value as Json, json};
use strata_distributor::Distributor;
use strata_model::{Labels, METRIC_NAME, stale_nan};
use strata_promql::Value;
use strata_proto::prometheus::{Label, Sample, TimeSeries, WriteRequest};
use strata_querier::Querier;
use strata_querier::logs::LogQuerier;
use strata_ring::shard::Shard;

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

/// Ruler settings, named as Mimir's `ruler` block.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
#[serde(default)]
pub struct RulerConfig {
    /// Comma-separated Alertmanager base URLs; alerts go to each.
    pub alertmanager_url: String,
    /// Interval of groups that do not set one.
    #[serde(with = "strata_model::humantime_serde")]
    pub evaluation_interval: Duration,
    /// How often rule groups are re-read from storage.
    #[serde(with = "strata_model::humantime_serde")]
    pub poll_interval: Duration,
    /// Minimum time between two notifications of the same firing alert.
    #[serde(with = "strata_model::humantime_serde")]
    pub resend_delay: Duration,
    /// Base URL for alerts' `generatorURL`.
    pub external_url: String,
    /// Alerts queued for Alertmanager at most; the oldest are dropped beyond.
    pub notification_queue_capacity: usize,
    /// How long the ruler may have been down and still restore an alert's
    /// `for` progress from `ALERTS_FOR_STATE`.
    #[serde(with = "strata_model::humantime_serde")]
    pub for_outage_tolerance: Duration,
    /// Least time a restored alert still waits before firing; alerts whose
    /// `for` is shorter than this are not restored.
    #[serde(with = "strata_model::humantime_serde")]
    pub for_grace_period: Duration,
    /// Labels added to every alert sent to Alertmanager (unless the alert has
    /// the label) and available to templates as `$externalLabels`, as
    /// Prometheus's `external_labels`. YAML map, or `name=value,...` on the command line.
    #[serde(with = "label_map")]
    pub external_labels: BTreeMap<String, String>,
}

/// A label map written as a YAML map or as `name=value,name=value`.
mod label_map {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(m: &BTreeMap<String, String>, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(m)
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Form {
        Map(BTreeMap<String, String>),
        Text(String),
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<BTreeMap<String, String>, D::Error> {
        match Form::deserialize(d)? {
            Form::Map(m) => Ok(m),
            Form::Text(t) => t
                .split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(|p| match p.split_once('=') {
                    Some((k, v)) if !k.trim().is_empty() => {
                        Ok((k.trim().to_string(), v.trim().to_string()))
                    }
                    _ => Err(serde::de::Error::custom(format!(
                        "external label {p:?} is not name=value"
                    ))),
                })
                .collect(),
        }
    }
}

impl Default for RulerConfig {
    fn default() -> Self {
        Self {
            alertmanager_url: String::new(),
            evaluation_interval: Duration::from_secs(60),
            poll_interval: Duration::from_secs(60),
            resend_delay: Duration::from_secs(60),
            external_url: String::new(),
            notification_queue_capacity: 10_000,
            for_outage_tolerance: Duration::from_secs(3600),
            for_grace_period: Duration::from_secs(120),
            external_labels: BTreeMap::new(),
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

fn hex(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<String> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect();
    String::from_utf8(bytes?).ok()
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

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
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

    fn group_path(tenant: &str, lang: RuleLang, namespace: &str, group: &str) -> StorePath {
        StorePath::from(format!(
            "{tenant}/{}/{}/{}",
            lang.dir(),
            hex(namespace),
            hex(group)
        ))
    }

    /// Every stored group of `tenant` in `lang` (of one namespace, if given), by namespace.
    pub async fn list_groups(
        &self,
        tenant: &str,
        lang: RuleLang,
        namespace: Option<&str>,
    ) -> Result<BTreeMap<String, Vec<RuleGroup>>, RulerError> {
        let prefix = match namespace {
            Some(ns) => StorePath::from(format!("{tenant}/{}/{}", lang.dir(), hex(ns))),
            None => StorePath::from(format!("{tenant}/{}", lang.dir())),
        };
        let objects: Vec<_> = self
            .store
            .list(Some(&prefix))
            .try_collect()
            .await
            .map_err(|e| RulerError::Store(e.to_string()))?;
        let mut out: BTreeMap<String, Vec<RuleGroup>> = BTreeMap::new();
        for o in objects {
            let parts: Vec<_> = o.location.parts().collect();
            let n = parts.len();
            if n < 4 {
                continue;
            }
            let Some(ns) = unhex(parts[n - 2].as_ref()) else {
                continue;
            };
            let bytes = self
                .store
                .get(&o.location)
                .await
                .map_err(|e| RulerError::Store(e.to_string()))?
                .bytes()
                .await
                .map_err(|e| RulerError::Store(e.to_string()))?;
            match serde_yaml::from_slice::<RuleGroup>(&bytes) {
                Ok(g) => out.entry(ns).or_default().push(g),
                Err(e) => {
                    tracing::error!(tenant, path = %o.location, error = %e, "stored rule group does not parse; skipped")
                }
            }
        }
        for groups in out.values_mut() {
            groups.sort_by(|a, b| a.name.cmp(&b.name));
        }
        Ok(out)
    }

    /// One stored group.
    pub async fn get_group(
        &self,
        tenant: &str,
        lang: RuleLang,
        namespace: &str,
        group: &str,
    ) -> Result<RuleGroup, RulerError> {
        let path = Self::group_path(tenant, lang, namespace, group);
        let bytes = match self.store.get(&path).await {
            Ok(r) => r
                .bytes()
                .await
                .map_err(|e| RulerError::Store(e.to_string()))?,
            Err(object_store::Error::NotFound { .. }) => {
                return Err(RulerError::NotFound("group does not exist".into()));
            }
            Err(e) => return Err(RulerError::Store(e.to_string())),
        };
        serde_yaml::from_slice(&bytes).map_err(|e| RulerError::Store(e.to_string()))
    }

    /// Validates and stores a group (creating or replacing it), then loads it.
    pub async fn set_group(
        self: &Arc<Self>,
        tenant: &str,
        lang: RuleLang,
        namespace: &str,
        yaml: &str,
    ) -> Result<(), RulerError> {
        let compiled = rules::parse_group(lang, namespace, yaml, self.cfg.evaluation_interval)?;
        if lang == RuleLang::PromQL {
            // Refused now rather than failing at every evaluation.
            let opts = self.querier.engine().options();
            for rule in &compiled.rules {
                strata_promql::check_instant_subqueries(
                    &rule.source.expr,
                    opts.max_subquery_steps,
                    opts.default_subquery_step,
                )
                .map_err(|e| RulerError::Invalid(format!("rule {:?}: {e}", rule.name())))?;
            }
        }
        let limits = self.overrides.for_tenant(tenant);
        let max_rules = limits.ruler_max_rules_per_rule_group;
        if max_rules > 0 && compiled.rules.len() > max_rules {
            return Err(RulerError::Limit(format!(
                "per-user rules per rule group limit (limit: {max_rules} actual: {}) exceeded",
                compiled.rules.len()
            )));
        }
        // Object names are enough to count groups (of both languages); their YAML is not read.
        let target = Self::group_path(tenant, lang, namespace, &compiled.source.name);
        let mut stored = Vec::new();
        for l in [RuleLang::PromQL, RuleLang::LogQL] {
            let listed: Vec<_> = self
                .store
                .list(Some(&StorePath::from(format!("{tenant}/{}", l.dir()))))
                .try_collect()
                .await
                .map_err(|e| RulerError::Store(e.to_string()))?;
            stored.extend(listed);
        }
        let count = stored.len();
        let replaces = stored.iter().any(|o| o.location == target);
        let max_groups = limits.ruler_max_rule_groups_per_tenant;
        if max_groups > 0 && !replaces && count >= max_groups {
            return Err(RulerError::Limit(format!(
                "per-user rule groups limit (limit: {max_groups} actual: {}) exceeded",
                count + 1
            )));
        }
        let body = serde_yaml::to_string(&compiled.source)
            .map_err(|e| RulerError::Store(e.to_string()))?;
        self.store
            .put(&target, bytes::Bytes::from(body).into())
            .await
            .map_err(|e| RulerError::Store(e.to_string()))?;
        self.sync().await
    }

    /// Deletes one group.
    pub async fn delete_group(
        self: &Arc<Self>,
        tenant: &str,
        lang: RuleLang,
        namespace: &str,
        group: &str,
    ) -> Result<(), RulerError> {
        self.get_group(tenant, lang, namespace, group).await?;
        self.store
            .delete(&Self::group_path(tenant, lang, namespace, group))
            .await
            .map_err(|e| RulerError::Store(e.to_string()))?;
        self.sync().await
    }

    /// Deletes every group of a namespace.
    pub async fn delete_namespace(
        self: &Arc<Self>,
        tenant: &str,
        lang: RuleLang,
        namespace: &str,
    ) -> Result<(), RulerError> {
        let groups = self.list_groups(tenant, lang, Some(namespace)).await?;
        let Some(gs) = groups.get(namespace) else {
            return Err(RulerError::NotFound("namespace does not exist".into()));
        };
        for g in gs {
            self.store
                .delete(&Self::group_path(tenant, lang, namespace, &g.name))
                .await
                .map_err(|e| RulerError::Store(e.to_string()))?;
        }
        self.sync().await
    }

    /// Tenants with stored rules.
    async fn tenants(&self) -> Result<Vec<String>, RulerError> {
        let listed = self
            .store
            .list_with_delimiter(None)
            .await
            .map_err(|e| RulerError::Store(e.to_string()))?;
        let mut out = Vec::new();
        for p in listed.common_prefixes {
            let Some(tenant) = strata_storage::block::tenant_of_listing(&p) else {
                continue;
            };
            for lang in [RuleLang::PromQL, RuleLang::LogQL] {
                let rules = StorePath::from(format!("{tenant}/{}", lang.dir()));
                let has = self
                    .store
                    .list_with_delimiter(Some(&rules))
                    .await
                    .map(|l| !l.common_prefixes.is_empty() || !l.objects.is_empty())
                    .unwrap_or(false);
                if has {
                    out.push(tenant);
                    break;
                }
            }
        }
        Ok(out)
    }

    /// Whether this ruler evaluates the group `key` among `members`.
    fn owns(&self, members: &[String], key: &GroupKey) -> bool {
        match &self.shard {
            Some(s) => s.owns(
                members,
                &format!("{}/{}/{}/{}", key.0, key.1.dir(), key.2, key.3),
            ),
            None => true,
        }
    }

    /// Re-reads every tenant's groups and keeps those this ruler owns;
    /// unchanged groups keep their state.
    pub async fn sync(&self) -> Result<(), RulerError> {
        let members = self.shard.as_ref().map(Shard::members).unwrap_or_default();
        let mut loaded: HashMap<GroupKey, CompiledGroup> = HashMap::new();
        for tenant in self.tenants().await? {
            for lang in [RuleLang::PromQL, RuleLang::LogQL] {
                for (ns, groups) in self.list_groups(&tenant, lang, None).await? {
                    for g in groups {
                        match rules::compile(lang, &ns, g, self.cfg.evaluation_interval, None) {
                            Ok(c) => {
                                loaded.insert(
                                    (tenant.clone(), lang, ns.clone(), c.source.name.clone()),
                                    c,
                                );
                            }
                            Err(e) => {
                                tracing::error!(tenant, namespace = ns, error = %e, "stored rule group is invalid; skipped")
                            }
                        }
                    }
                }
            }
        }
        loaded.retain(|k, _| self.owns(&members, k));
        *self.shard_members.lock() = members;
        let mut groups = self.groups.write();
        groups.retain(|k, v| loaded.get(k).is_some_and(|c| c.source == v.group.source));
        for (key, c) in loaded {
            if groups.contains_key(&key) {
                continue;
            }
            let interval = c.interval.as_millis() as i64;
            let next = (now_ms() / interval + 1) * interval;
            let state = GroupState {
                tenant: key.0.clone(),
                rules: c
                    .rules
                    .iter()
                    .map(|_| RuleState {
                        status: Mutex::new(RuleStatus {
                            health: "unknown",
                            ..Default::default()
                        }),
                        alerts: Mutex::new(HashMap::new()),
                        written: Mutex::new(HashSet::new()),
                        restored: AtomicBool::new(false),
                    })
                    .collect(),
                group: c,
                next_eval: Mutex::new(next),
                running: AtomicBool::new(false),
                last_evaluation: Mutex::new(None),
            };
            groups.insert(key, Arc::new(state));
        }
        Ok(())
    }

    /// Evaluates groups when due, and re-reads storage every poll interval,
    /// until `shutdown` changes.
    pub async fn run(self: Arc<Self>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let mut last_sync = std::time::Instant::now() - self.cfg.poll_interval;
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => return,
            }
            // Rulers joining or dying move groups: re-split at once.
            let resplit = self.shard.as_ref().is_some_and(|s| {
                last_sync.elapsed() >= Duration::from_secs(1)
                    && *self.shard_members.lock() != s.members()
            });
            if resplit || last_sync.elapsed() >= self.cfg.poll_interval {
                if let Err(e) = self.sync().await {
                    tracing::error!(error = %e, "loading rule groups failed; keeping the loaded ones");
                }
                last_sync = std::time::Instant::now();
            }
            let now = now_ms();
            let due: Vec<(Arc<GroupState>, i64)> = self
                .groups
                .read()
                .values()
                .filter_map(|g| {
                    let mut next = g.next_eval.lock();
                    if now < *next {
                        return None;
                    }
                    let interval = g.group.interval.as_millis() as i64;
                    let ts = *next;
                    // Skip, and count, evaluations missed while the ruler was
                    // busy or stopped: never a burst of catch-up evaluations.
                    let missed = (now - ts) / interval;
                    if missed > 0 {
                        EVALUATIONS
                            .with_label_values(&[g.tenant.as_str(), "missed"])
                            .inc_by(missed as u64);
                    }
                    let ts = ts + missed * interval;
                    *next = ts + interval;
                    if g.running.swap(true, Ordering::AcqRel) {
                        EVALUATIONS
                            .with_label_values(&[g.tenant.as_str(), "missed"])
                            .inc();
                        return None;
                    }
                    Some((g.clone(), ts))
                })
                .collect();
            for (g, ts) in due {
                let this = self.clone();
                tokio::spawn(async move {
                    // A fault in one group's evaluation fails that
                    // evaluation; the group runs again at its next interval.
                    let run = AssertUnwindSafe(this.evaluate_group(&g, ts)).catch_unwind();
                    if run.await.is_err() {
                        tracing::error!(
                            tenant = g.tenant,
                            group = g.group.source.name,
                            "rule group evaluation panicked; counted as failed"
                        );
                        EVALUATION_FAILURES
                            .with_label_values(&[g.tenant.as_str()])
                            .inc();
                        EVALUATIONS
                            .with_label_values(&[g.tenant.as_str(), "failed"])
                            .inc();
                    }
                    g.running.store(false, Ordering::Release);
                });
            }
        }
    }

    async fn evaluate_group(&self, g: &GroupState, ts: i64) {
        let started = std::time::Instant::now();
        let query_ts = ts - g.group.query_offset.as_millis() as i64;
        let mut failed = false;
        for (rule, state) in g.group.rules.iter().zip(&g.rules) {
            let rule_started = std::time::Instant::now();
            let res = self.evaluate_rule(g, rule, state, query_ts).await;
            let mut st = state.status.lock();
            st.last_evaluation = Some(ts);
            st.evaluation_seconds = rule_started.elapsed().as_secs_f64();
            match res {
                Ok(()) => {
                    st.health = "ok";
                    st.last_error = None;
                }
                Err(e) => {
                    failed = true;
                    EVALUATION_FAILURES
                        .with_label_values(&[g.tenant.as_str()])
                        .inc();
                    tracing::warn!(tenant = g.tenant, group = g.group.source.name, rule = rule.name(), error = %e, "rule evaluation failed");
                    st.health = "err";
                    st.last_error = Some(e);
                }
            }
        }
        *g.last_evaluation.lock() = Some((ts, started.elapsed().as_secs_f64()));
        EVALUATIONS
            .with_label_values(&[g.tenant.as_str(), if failed { "failed" } else { "success" }])
            .inc();
    }

    async fn query(
        &self,
        tenant: &str,
        lang: RuleLang,
        expr: &str,
        t: i64,
    ) -> Result<Vec<(Labels, f64)>, String> {
        if lang == RuleLang::LogQL {
            let t_ns = t.saturating_mul(1_000_000);
            let params = strata_logql::QueryParams {
                start_ns: t_ns,
                end_ns: t_ns,
                step_ns: 0,
                limit: 1,
                direction: strata_model::logs::Direction::Backward,
                instant: true,
                max_series: 0,
            };
            let (result, _) = self
                .log_querier
                .query(tenant, expr, &params)
                .await
                .map_err(|e| e.to_string())?;
            return match result {
                strata_logql::QueryResult::Vector(_, v) => Ok(v),
                strata_logql::QueryResult::Scalar(_, v) => Ok(vec![(Labels::default(), v)]),
                _ => Err("a LogQL rule must return a vector or a scalar".into()),
            };
        }
        let out = self
            .querier
            .instant_query(tenant, expr, t)
            .await
            .map_err(|e| e.to_string())?;
        Ok(match out.value {
            Value::Vector(v) => v.into_iter().map(|s| (s.labels, s.v)).collect(),
            Value::Scalar { v, .. } => vec![(Labels::default(), v)],
            other => {
                return Err(format!(
                    "rule result must be a vector or scalar, got {}",
                    other.result_type()
                ));
            }
        })
    }

    async fn write(
        &self,
        tenant: &str,
        series: Vec<(Vec<(String, String)>, f64)>,
        t: i64,
    ) -> Result<(), String> {
        if series.is_empty() {
            return Ok(());
        }
        let req = WriteRequest {
            timeseries: series
                .into_iter()
                .map(|(labels, v)| TimeSeries {
                    labels: labels
                        .into_iter()
                        .map(|(name, value)| Label { name, value })
                        .collect(),
                    samples: vec![Sample {
                        value: v,
                        timestamp: t,
                    }],
                    ..Default::default()
                })
                .collect(),
            metadata: vec![],
        };
        let r = self
            .distributor
            .push(tenant, req)
            .await
            .map_err(|e| format!("writing rule results: {e}"))?;
        match r.rejection_summary() {
            Some(s) => Err(format!("writing rule results: {s}")),
            None => Ok(()),
        }
    }

    async fn evaluate_rule(
        &self,
        g: &GroupState,
        rule: &rules::CompiledRule,
        state: &RuleState,
        t: i64,
    ) -> Result<(), String> {
        let result = self
            .query(&g.tenant, g.group.lang, &rule.source.expr, t)
            .await?;
        let limit = g.group.source.limit;
        if limit > 0 && result.len() > limit {
            return Err(format!(
                "exceeded limit of {limit} with {} series",
                result.len()
            ));
        }
        if rule.is_alert() {
            return self.evaluate_alert(g, rule, state, t, result).await;
        }
        let record = rule.name();
        let mut out: Vec<(Vec<(String, String)>, f64)> = Vec::with_capacity(result.len());
        for (labels, v) in result {
            let mut l: BTreeMap<String, String> = labels
                .iter()
                .filter(|l| l.name != METRIC_NAME)
                .map(|l| (l.name.clone(), l.value.clone()))
                .collect();
            for (k, v) in &rule.source.labels {
                l.insert(k.clone(), v.clone());
            }
            l.insert(METRIC_NAME.to_string(), record.to_string());
            out.push((l.into_iter().collect(), v));
        }
        self.write_with_staleness(&g.tenant, state, out, t).await
    }

    /// Writes `series` and a staleness marker for each series written last
    /// time but not now.
    async fn write_with_staleness(
        &self,
        tenant: &str,
        state: &RuleState,
        mut series: Vec<(Vec<(String, String)>, f64)>,
        t: i64,
    ) -> Result<(), String> {
        let now: HashSet<Vec<(String, String)>> = series.iter().map(|(l, _)| l.clone()).collect();
        let gone: Vec<_> = state
            .written
            .lock()
            .iter()
            .filter(|l| !now.contains(*l))
            .cloned()
            .collect();
        series.extend(gone.into_iter().map(|l| (l, stale_nan())));
        self.write(tenant, series, t).await?;
        *state.written.lock() = now;
        Ok(())
    }

    async fn evaluate_alert(
        &self,
        g: &GroupState,
        rule: &rules::CompiledRule,
        state: &RuleState,
        t: i64,
        result: Vec<(Labels, f64)>,
    ) -> Result<(), String> {
        let name = rule.name().to_string();
        let for_ms = rule.for_.as_millis() as i64;
        let keep_ms = rule.keep_firing_for.as_millis() as i64;
        let restore = if state.restored.swap(true, Ordering::AcqRel) {
            HashMap::new()
        } else {
            self.restore_for_state(&g.tenant, &name, for_ms, t).await
        };
        let mut seen: HashSet<Vec<(String, String)>> = HashSet::new();
        let mut to_send = Vec::new();
        {
            let mut alerts = state.alerts.lock();
            for (labels, value) in result {
                let base: BTreeMap<String, String> = labels
                    .iter()
                    .filter(|l| l.name != METRIC_NAME)
                    .map(|l| (l.name.clone(), l.value.clone()))
                    .collect();
                let ctx = template::Context {
                    labels: &base,
                    external_labels: &self.external_labels,
                    value,
                };
                let expand = |s: &str| {
                    template::expand(s, &ctx)
                        .unwrap_or_else(|e| format!("<error expanding template: {e}>"))
                };
                let mut l = base.clone();
                for (k, v) in &rule.source.labels {
                    l.insert(k.clone(), expand(v));
                }
                l.insert("alertname".into(), name.clone());
                let annotations: BTreeMap<String, String> = rule
                    .source
                    .annotations
                    .iter()
                    .map(|(k, v)| (k.clone(), expand(v)))
                    .collect();
                let key: Vec<(String, String)> = l.clone().into_iter().collect();
                seen.insert(key.clone());
                let active_at = restore.get(&key).copied().unwrap_or(t);
                let a = alerts.entry(key).or_insert_with(|| Alert {
                    labels: l.clone(),
                    annotations: annotations.clone(),
                    state: AlertState::Pending,
                    value,
                    active_at,
                    fired_at: None,
                    resolved_at: None,
                    last_sent: None,
                    keep_firing_since: None,
                });
                if a.state == AlertState::Inactive {
                    // Came back after resolving: a new alert instance.
                    *a = Alert {
                        state: AlertState::Pending,
                        active_at: t,
                        fired_at: None,
                        resolved_at: None,
                        last_sent: None,
                        ..a.clone()
                    };
                }
                a.value = value;
                a.annotations = annotations;
                a.keep_firing_since = None;
                if a.state == AlertState::Pending && t - a.active_at >= for_ms {
                    a.state = AlertState::Firing;
                    a.fired_at = Some(t);
                }
            }
            // Resolved alerts are kept 15m to resend their resolution, as Prometheus.
            alerts.retain(|k, a| {
                if seen.contains(k) {
                    return true;
                }
                match a.state {
                    AlertState::Pending => false,
                    AlertState::Firing => {
                        let since = *a.keep_firing_since.get_or_insert(t);
                        if keep_ms > 0 && t - since < keep_ms {
                            return true;
                        }
                        a.state = AlertState::Inactive;
                        a.resolved_at = Some(t);
                        true
                    }
                    AlertState::Inactive => a.resolved_at.is_some_and(|r| t - r < 15 * 60_000),
                }
            });
            let resend = self.cfg.resend_delay.as_millis() as i64;
            let interval = g.group.interval.as_millis() as i64;
            let valid_until = t + 4 * resend.max(interval);
            for a in alerts.values_mut() {
                let send = match a.state {
                    AlertState::Pending => false,
                    AlertState::Firing => a.last_sent.is_none_or(|s| t - s >= resend),
                    AlertState::Inactive => a
                        .resolved_at
                        .is_some_and(|r| a.last_sent.is_none_or(|s| s <= r || t - s >= resend)),
                };
                if send {
                    a.last_sent = Some(t);
                    let mut labels = a.labels.clone();
                    for (k, v) in &self.external_labels {
                        labels.entry(k.clone()).or_insert_with(|| v.clone());
                    }
                    to_send.push(notifier::AmAlert {
                        labels,
                        annotations: a.annotations.clone(),
                        starts_at: rfc3339(a.active_at),
                        ends_at: rfc3339(a.resolved_at.unwrap_or(valid_until)),
                        generator_url: format!(
                            "{}/graph?g0.expr={}&g0.tab=1",
                            self.cfg.external_url.trim_end_matches('/'),
                            url::form_urlencoded::byte_serialize(rule.source.expr.as_bytes())
                                .collect::<String>()
                        ),
                    });
                }
            }
        }
        self.notifier.send(to_send);
        // ALERTS and ALERTS_FOR_STATE for pending and firing alerts.
        let mut series = Vec::new();
        for a in state.alerts.lock().values() {
            if a.state == AlertState::Inactive {
                continue;
            }
            let mut l = a.labels.clone();
            l.insert(METRIC_NAME.into(), "ALERTS".into());
            l.insert(
                "alertstate".into(),
                if a.state == AlertState::Firing {
                    "firing"
                } else {
                    "pending"
                }
                .into(),
            );
            series.push((l.into_iter().collect(), 1.0));
            let mut l = a.labels.clone();
            l.insert(METRIC_NAME.into(), "ALERTS_FOR_STATE".into());
            series.push((l.into_iter().collect(), (a.active_at / 1000) as f64));
        }
        self.write_with_staleness(&g.tenant, state, series, t).await
    }

    /// Active-since times of the rule's alerts from their last
    /// `ALERTS_FOR_STATE` samples within the outage tolerance, adjusted as
    /// Prometheus does: time pending before the outage counts, the outage
    /// does not, and an alert waits at least the grace period before firing
    /// (one that was already firing fires again at once).
    async fn restore_for_state(
        &self,
        tenant: &str,
        alertname: &str,
        for_ms: i64,
        now: i64,
    ) -> HashMap<Vec<(String, String)>, i64> {
        let grace = self.cfg.for_grace_period.as_millis() as i64;
        if for_ms == 0 || for_ms < grace {
            return HashMap::new();
        }
        let matchers = [
            strata_model::Matcher::new(
                strata_model::MatchOp::Equal,
                METRIC_NAME,
                "ALERTS_FOR_STATE",
            ),
            strata_model::Matcher::new(strata_model::MatchOp::Equal, "alertname", alertname),
        ];
        let tolerance = self.cfg.for_outage_tolerance.as_millis() as i64;
        let series = match self
            .querier
            .select(tenant, &matchers, now - tolerance, now)
            .await
        {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(tenant, alertname, error = %e, "could not read ALERTS_FOR_STATE; alerts start pending");
                return HashMap::new();
            }
        };
        let mut out = HashMap::new();
        for s in series {
            let Some(last) = s
                .samples
                .iter()
                .rev()
                .find(|x| !strata_model::is_stale_nan(x.v))
            else {
                continue;
            };
            let down_at = last.t;
            let mut active_at = (last.v * 1000.0) as i64;
            let remaining = for_ms - (down_at - active_at);
            if remaining <= 0 {
                // Was firing: fires again at the next evaluation.
            } else if remaining < grace {
                active_at = now + grace - for_ms;
            } else {
                active_at += now - down_at;
            }
            let key: Vec<(String, String)> = s
                .labels
                .iter()
                .filter(|l| l.name != METRIC_NAME)
                .map(|l| (l.name.clone(), l.value.clone()))
                .collect();
            out.insert(key, active_at);
        }
        if !out.is_empty() {
            tracing::info!(
                tenant,
                alertname,
                alerts = out.len(),
                "alert state restored from ALERTS_FOR_STATE"
            );
        }
        out
    }

    /// Prometheus's `/api/v1/rules` data for `tenant`.
    pub fn rules_status(&self, tenant: &str, kind: Option<&str>) -> Json {
        let groups = self.groups.read();
        let mut mine: Vec<&Arc<GroupState>> =
            groups.values().filter(|g| g.tenant == tenant).collect();
        mine.sort_by(|a, b| {
            (&a.group.namespace, &a.group.source.name)
                .cmp(&(&b.group.namespace, &b.group.source.name))
        });
        let out: Vec<Json> = mine
            .into_iter()
            .map(|g| {
                let rules: Vec<Json> = g
                    .group
                    .rules
                    .iter()
                    .zip(&g.rules)
                    .filter(|(r, _)| match kind {
                        Some("alert") => r.is_alert(),
                        Some("record") => !r.is_alert(),
                        _ => true,
                    })
                    .map(|(r, st)| rule_json(r, st))
                    .collect();
                let last = *g.last_evaluation.lock();
                json!({
                    "name": g.group.source.name,
                    "file": g.group.namespace,
                    "rules": rules,
                    "interval": g.group.interval.as_secs_f64(),
                    "limit": g.group.source.limit,
                    "evaluationTime": last.map(|l| l.1).unwrap_or(0.0),
                    "lastEvaluation": last.map(|l| rfc3339(l.0)).unwrap_or_else(|| "0001-01-01T00:00:00Z".into()),
                })
            })
            .collect();
        json!({ "groups": out })
    }

    /// Prometheus's `/api/v1/alerts` data for `tenant`.
    /// Merges `field` (`groups` or `alerts`) of the other rulers' local
    /// answers at `path` into `local`, so any ruler answers for the
    /// cluster, as Mimir's rulers do. A ruler that does not answer is
    /// left out with a warning: the groups it owns show up again once
    /// others take them over.
    pub async fn with_peers(
        &self,
        tenant: &str,
        path_and_query: &str,
        field: &str,
        mut local: Json,
    ) -> Json {
        let Some(shard) = &self.shard else {
            return local;
        };
        let peers = shard.peer_http_addrs();
        let calls = peers.iter().map(|addr| {
            let url = format!("http://{addr}{path_and_query}");
            let req = self
                .peer_client
                .get(url)
                .header("X-Scope-OrgID", tenant)
                .timeout(Duration::from_secs(10));
            async move {
                let r = req.send().await.map_err(|e| e.to_string())?;
                r.json::<Json>().await.map_err(|e| e.to_string())
            }
        });
        let answers = futures::future::join_all(calls).await;
        let Some(items) = local[field].as_array_mut() else {
            return local;
        };
        for (addr, a) in peers.iter().zip(answers) {
            match a {
                Ok(j) => items.extend(j["data"][field].as_array().cloned().unwrap_or_default()),
                Err(e) => tracing::warn!(peer = %addr, error = %e, "a ruler did not answer"),
            }
        }
        if field == "groups" {
            items.sort_by(|a, b| {
                (a["file"].as_str(), a["name"].as_str())
                    .cmp(&(b["file"].as_str(), b["name"].as_str()))
            });
        }
        local
    }

    pub fn alerts_status(&self, tenant: &str) -> Json {
        let groups = self.groups.read();
        let mut alerts = Vec::new();
        for g in groups.values().filter(|g| g.tenant == tenant) {
            for st in &g.rules {
                for a in st.alerts.lock().values() {
                    if a.state != AlertState::Inactive {
                        alerts.push(alert_json(a));
                    }
                }
            }
        }
        json!({ "alerts": alerts })
    }
}

fn alert_json(a: &Alert) -> Json {
    json!({
        "labels": a.labels,
        "annotations": a.annotations,
        "state": a.state,
        "activeAt": rfc3339(a.active_at),
        "value": strata_model::format_float(a.value),
    })
}

fn rule_json(r: &rules::CompiledRule, st: &RuleState) -> Json {
    let status = st.status.lock();
    let mut j = json!({
        "name": r.name(),
        "query": r.source.expr,
        "labels": r.source.labels,
        "health": status.health,
        "evaluationTime": status.evaluation_seconds,
        "lastEvaluation": status.last_evaluation.map(rfc3339).unwrap_or_else(|| "0001-01-01T00:00:00Z".into()),
    });
    if let Some(e) = &status.last_error {
        j["lastError"] = json!(e);
    }
    if r.is_alert() {
        let alerts: Vec<Json> = st
            .alerts
            .lock()
            .values()
            .filter(|a| a.state != AlertState::Inactive)
            .map(alert_json)
            .collect();
        let state = if alerts.iter().any(|a| a["state"] == "firing") {
            "firing"
        } else if alerts.is_empty() {
            "inactive"
        } else {
            "pending"
        };
        j["type"] = json!("alerting");
        j["duration"] = json!(r.for_.as_secs_f64());
        j["keepFiringFor"] = json!(r.keep_firing_for.as_secs_f64());
        j["annotations"] = json!(r.source.annotations);
        j["alerts"] = json!(alerts);
        j["state"] = json!(state);
    } else {
        j["type"] = json!("recording");
    }
    j
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_names_round_trip() {
        for s in ["ns", "team a/ü", ""] {
            assert_eq!(unhex(&hex(s)).as_deref(), Some(s));
        }
        assert_eq!(unhex("zz"), None);
    }
}
