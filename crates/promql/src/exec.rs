//! PromQL's per-series and per-group stages as a DataFusion execution plan.
//!
//! A [`StepExec`] evaluates items at the query's steps and emits
//! `(item, step, value)` rows. Its items are either selected series (their
//! samples, merged from head and blocks by the querier), each step being the
//! latest sample within the lookback delta (instant selectors) or a range
//! function over the left-open window ending at the step; or aggregation
//! groups, each step being the aggregate of the members' values there. The
//! items are dealt across partitions, one per core, which DataFusion runs in
//! parallel; each partition charges the rows it produces to the query's
//! DataFusion memory pool, as the engine charges the samples it loads, so a
//! query past its memory limit fails with a clear error instead of
//! exhausting the process.

use std::fmt;
use std::sync::Arc;

use datafusion::arrow::array::{Array, Float64Array, RecordBatch, UInt32Array};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::memory_pool::{
    GreedyMemoryPool, MemoryConsumer, MemoryPool, MemoryReservation, UnboundedMemoryPool,
};
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    ChildrenPropertiesMode, DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning,
    PlanProperties, ReplaceChildrenOptions, collect_partitioned,
};
use datafusion::prelude::SessionConfig;
use strata_model::{Labels, Sample, SeriesSamples, is_stale_nan};

use crate::EngineError;
use crate::eval::window;

/// An output series' value at each step, `None` where it has none.
pub(crate) type StepValues = Vec<Option<f64>>;

/// Rows per output batch.
const BATCH_ROWS: usize = 8192;

/// A range function: `(window, step index, step time) -> value`.
pub(crate) type WindowFn = Arc<dyn Fn(&[Sample], usize, i64) -> Option<f64> + Send + Sync>;

/// What each step of a series evaluates to.
#[derive(Clone)]
pub(crate) enum StepKernel {
    /// The latest sample in `(t - lookback, t]` unless it is a stale
    /// marker: its value, or its timestamp in seconds (`timestamp()`).
    Lookback { lookback: i64, timestamp: bool },
    /// A function of the samples in `(t - range, t]`, when there are any.
    Window { range: i64, f: WindowFn },
}

impl StepKernel {
    fn eval(&self, samples: &[Sample], times: &[i64], mut emit: impl FnMut(usize, f64)) {
        match self {
            StepKernel::Lookback {
                lookback,
                timestamp,
            } => {
                for (i, &t) in times.iter().enumerate() {
                    let idx = samples.partition_point(|x| x.t <= t);
                    if let Some(last) = samples[..idx].last()
                        && last.t > t - lookback
                        && !is_stale_nan(last.v)
                    {
                        emit(
                            i,
                            if *timestamp {
                                last.t as f64 / 1000.0
                            } else {
                                last.v
                            },
                        );
                    }
                }
            }
            StepKernel::Window { range, f } => {
                for (i, &t) in times.iter().enumerate() {
                    let w = window(samples, t, *range);
                    if !w.is_empty()
                        && let Some(v) = f(w, i, t)
                    {
                        emit(i, v);
                    }
                }
            }
        }
    }
}

/// Work items (series or aggregation groups), each producing values of
/// output series at some of the query's steps: what a [`StepExec`] runs.
pub(crate) trait StepSource: Send + Sync + 'static {
    /// Number of work items (the unit dealt across partitions).
    fn items(&self) -> usize;
    /// Number of output series the items write.
    fn outputs(&self) -> usize {
        self.items()
    }
    /// Evaluates item `i`, calling `emit(output, step, value)` for each
    /// value it produces; an error message fails the query.
    fn eval(&self, i: usize, emit: &mut dyn FnMut(usize, usize, f64)) -> Result<(), String>;
    /// One line for plan displays.
    fn describe(&self) -> String;
}

/// Raw samples of selected series and the kernel each step applies to them.
struct SeriesSteps {
    samples: Vec<Vec<Sample>>,
    times: Vec<i64>,
    kernel: StepKernel,
}

impl StepSource for SeriesSteps {
    fn items(&self) -> usize {
        self.samples.len()
    }

    fn eval(&self, i: usize, emit: &mut dyn FnMut(usize, usize, f64)) -> Result<(), String> {
        self.kernel
            .eval(&self.samples[i], &self.times, |step, v| emit(i, step, v));
        Ok(())
    }

    fn describe(&self) -> String {
        let kernel = match &self.kernel {
            StepKernel::Lookback { .. } => "lookback".to_string(),
            StepKernel::Window { range, .. } => format!("window={range}ms"),
        };
        format!(
            "series={}, steps={}, {kernel}",
            self.samples.len(),
            self.times.len()
        )
    }
}

/// An aggregation of the present values of a group's members at one step
/// (the buffer holds them, in member order, and may be reordered).
pub(crate) type GroupFn = Arc<dyn Fn(&mut Vec<f64>, usize) -> f64 + Send + Sync>;

/// Per-step values of the input series and the members of each group.
struct GroupSteps {
    values: Vec<StepValues>,
    groups: Vec<Vec<usize>>,
    nsteps: usize,
    f: GroupFn,
}

impl StepSource for GroupSteps {
    fn items(&self) -> usize {
        self.groups.len()
    }

    fn eval(&self, g: usize, emit: &mut dyn FnMut(usize, usize, f64)) -> Result<(), String> {
        let members = &self.groups[g];
        let mut buf = Vec::with_capacity(members.len());
        for step in 0..self.nsteps {
            buf.clear();
            buf.extend(members.iter().filter_map(|&i| self.values[i][step]));
            if !buf.is_empty() {
                emit(g, step, (self.f)(&mut buf, step));
            }
        }
        Ok(())
    }

    fn describe(&self) -> String {
        format!(
            "groups={}, series={}, steps={}",
            self.groups.len(),
            self.values.len(),
            self.nsteps
        )
    }
}

/// A function of one value at one step; `None` drops the value.
pub(crate) type MapFn = Arc<dyn Fn(f64, usize) -> Option<f64> + Send + Sync>;

/// Per-step values of series mapped one by one (instant-vector functions,
/// vector-scalar operators).
struct MapSteps {
    values: Vec<StepValues>,
    f: MapFn,
}

impl StepSource for MapSteps {
    fn items(&self) -> usize {
        self.values.len()
    }

    fn eval(&self, i: usize, emit: &mut dyn FnMut(usize, usize, f64)) -> Result<(), String> {
        for (step, x) in self.values[i].iter().enumerate() {
            if let Some(y) = x.and_then(|x| (self.f)(x, step)) {
                emit(i, step, y);
            }
        }
        Ok(())
    }

    fn describe(&self) -> String {
        format!("map: series={}", self.values.len())
    }
}

/// Which values of a series a set operator keeps: all of them (`None`),
/// or those at steps where the other side's presence for its signature
/// (`mask`, absent when the other side lacks that signature) equals `want`.
pub(crate) type KeepRule = Option<(Option<usize>, bool)>;

/// Series filtered step by step by presence masks (`and`, `or`, `unless`).
struct MaskSteps {
    values: Vec<StepValues>,
    masks: Vec<Vec<bool>>,
    rules: Vec<KeepRule>,
}

impl StepSource for MaskSteps {
    fn items(&self) -> usize {
        self.values.len()
    }

    fn eval(&self, i: usize, emit: &mut dyn FnMut(usize, usize, f64)) -> Result<(), String> {
        for (step, x) in self.values[i].iter().enumerate() {
            let Some(x) = *x else { continue };
            let keep = match self.rules[i] {
                None => true,
                Some((mask, want)) => mask.is_some_and(|m| self.masks[m][step]) == want,
            };
            if keep {
                emit(i, step, x);
            }
        }
        Ok(())
    }

    fn describe(&self) -> String {
        format!("set operator: series={}", self.values.len())
    }
}

/// The `k` best members of each group at each step (`topk`: largest
/// first, `bottomk`: smallest; NaN ranks last in both); outputs are the
/// input series.
struct RankSteps {
    values: Vec<StepValues>,
    groups: Vec<Vec<usize>>,
    ks: Vec<f64>,
    largest: bool,
}

impl RankSteps {
    /// Members of group `g` selected at `step`, best first.
    fn select(&self, g: usize, step: usize) -> Vec<(usize, f64)> {
        let members = &self.groups[g];
        let k = self.ks.get(step).copied().unwrap_or(0.0);
        if k < 1.0 {
            return Vec::new();
        }
        let k = if k > members.len() as f64 {
            members.len()
        } else {
            k as usize
        };
        let mut present: Vec<(usize, f64)> = members
            .iter()
            .filter_map(|&i| self.values[i][step].map(|v| (i, v)))
            .collect();
        present.sort_by(|a, b| {
            let (x, y) = (a.1, b.1);
            match (x.is_nan(), y.is_nan()) {
                (true, true) => std::cmp::Ordering::Equal,
                (true, false) => std::cmp::Ordering::Greater,
                (false, true) => std::cmp::Ordering::Less,
                _ if self.largest => y.partial_cmp(&x).unwrap_or(std::cmp::Ordering::Equal),
                _ => x.partial_cmp(&y).unwrap_or(std::cmp::Ordering::Equal),
            }
        });
        present.truncate(k);
        present
    }
}

impl StepSource for RankSteps {
    fn items(&self) -> usize {
        self.groups.len()
    }

    fn outputs(&self) -> usize {
        self.values.len()
    }

    fn eval(&self, g: usize, emit: &mut dyn FnMut(usize, usize, f64)) -> Result<(), String> {
        let nsteps = self.values.first().map_or(0, Vec::len);
        for step in 0..nsteps {
            for (i, v) in self.select(g, step) {
                emit(i, step, v);
            }
        }
        Ok(())
    }

    fn describe(&self) -> String {
        format!(
            "{}k: groups={}, series={}",
            if self.largest { "top" } else { "bottom" },
            self.groups.len(),
            self.values.len()
        )
    }
}

/// The series of both sides of a binary operator that share one matching
/// signature, and the output series of each (many, one) pair.
pub(crate) struct MatchGroup {
    /// The signature, for error messages.
    pub sig: Labels,
    /// Indexes into the "many" side (the left side of one-to-one).
    pub many: Vec<usize>,
    /// Indexes into the "one" side.
    pub one: Vec<usize>,
    /// Output series of `(many[m], one[o])` at `m * one.len() + o`.
    pub outputs: Vec<usize>,
}

/// An arithmetic or comparison operator on two values: `(value, keep)`.
pub(crate) type ScalarFn = fn(f64, f64) -> (f64, bool);

/// How a binary operator combines matched values.
#[derive(Clone)]
pub(crate) struct BinaryOp {
    /// `(lhs, rhs) -> (value, keep)`: `keep` is a comparison's outcome.
    pub f: ScalarFn,
    pub comparison: bool,
    pub return_bool: bool,
    /// The "many" side is the right one (`group_right`).
    pub one_to_many: bool,
    pub one_to_one: bool,
}

/// Vector matching, one match group per item.
struct BinarySteps {
    many: Vec<StepValues>,
    one: Vec<StepValues>,
    groups: Vec<MatchGroup>,
    outputs: usize,
    nsteps: usize,
    op: BinaryOp,
}

impl StepSource for BinarySteps {
    fn items(&self) -> usize {
        self.groups.len()
    }

    fn outputs(&self) -> usize {
        self.outputs
    }

    fn eval(&self, g: usize, emit: &mut dyn FnMut(usize, usize, f64)) -> Result<(), String> {
        let group = &self.groups[g];
        let op = &self.op;
        for step in 0..self.nsteps {
            let mut many = group
                .many
                .iter()
                .enumerate()
                .filter_map(|(m, &i)| self.many[i][step].map(|v| (m, v)))
                .peekable();
            if many.peek().is_none() {
                continue;
            }
            let mut present = group
                .one
                .iter()
                .enumerate()
                .filter_map(|(o, &i)| self.one[i][step].map(|v| (o, v)));
            let Some((o, ov)) = present.next() else {
                continue;
            };
            if present.next().is_some() {
                return Err(format!(
                    "found duplicate series for the match group {} on the {} hand-side of the operation; many-to-many matching not allowed: matching labels must be unique on one side",
                    group.sig,
                    if op.one_to_many { "left" } else { "right" }
                ));
            }
            for (k, (m, mv)) in many.enumerate() {
                if op.one_to_one && k > 0 {
                    return Err(format!(
                        "multiple matches for labels: many-to-one matching must be explicit (group_left/group_right); match group {}",
                        group.sig
                    ));
                }
                let (lv, rv) = if op.one_to_many { (ov, mv) } else { (mv, ov) };
                let (val, keep) = (op.f)(lv, rv);
                let val = match (op.comparison, op.return_bool, keep) {
                    (true, true, _) => f64::from(u8::from(keep)),
                    (true, false, false) => continue,
                    _ => val,
                };
                emit(group.outputs[m * group.one.len() + o], step, val);
            }
        }
        Ok(())
    }

    fn describe(&self) -> String {
        format!(
            "vector matching: groups={}, outputs={}",
            self.groups.len(),
            self.outputs
        )
    }
}

/// Evaluates every item of a [`StepSource`], the items dealt across partitions.
pub(crate) struct StepExec {
    source: Arc<dyn StepSource>,
    properties: Arc<PlanProperties>,
}

impl StepExec {
    /// The plan over `source`, split into `partitions`.
    pub(crate) fn new(source: Arc<dyn StepSource>, partitions: usize) -> Self {
        let properties = PlanProperties::new(
            EquivalenceProperties::new(output_schema()),
            Partitioning::UnknownPartitioning(partitions.max(1)),
            EmissionType::Incremental,
            Boundedness::Bounded,
        );
        Self {
            source,
            properties: Arc::new(properties),
        }
    }

    fn partitions(&self) -> usize {
        self.properties.partitioning.partition_count()
    }
}

/// `(output, step, value)`: output series index, step index.
fn output_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("output", DataType::UInt32, false),
        Field::new("step", DataType::UInt32, false),
        Field::new("value", DataType::Float64, false),
    ]))
}

impl fmt::Debug for StepExec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StepExec({})", self.source.describe())
    }
}

impl DisplayAs for StepExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StepExec: {}", self.source.describe())
    }
}

impl ExecutionPlan for StepExec {
    fn name(&self) -> &'static str {
        "StepExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DfResult<TreeNodeRecursion>,
    ) -> DfResult<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn replace_children(
        self: Arc<Self>,
        _children: Vec<Arc<dyn ExecutionPlan>>,
        _options: ReplaceChildrenOptions,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        self.replace_children(
            children,
            ReplaceChildrenOptions::new(ChildrenPropertiesMode::Recompute),
        )
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        let partitions = self.partitions();
        if partition >= partitions {
            return Err(DataFusionError::Internal(format!(
                "StepExec has {partitions} partitions, asked for {partition}"
            )));
        }
        let reservation =
            MemoryConsumer::new(format!("StepExec[{partition}]")).register(context.memory_pool());
        let mut producer = StepRows {
            source: self.source.clone(),
            next: partition,
            stride: partitions,
            reservation,
        };
        let batches = futures::stream::iter(std::iter::from_fn(move || producer.next_batch()));
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            output_schema(),
            batches,
        )))
    }
}

/// One partition's producer: items `next, next + stride, ...`.
struct StepRows {
    source: Arc<dyn StepSource>,
    next: usize,
    stride: usize,
    reservation: MemoryReservation,
}

impl StepRows {
    fn next_batch(&mut self) -> Option<DfResult<RecordBatch>> {
        let n = self.source.items();
        if self.next >= n {
            return None;
        }
        let (mut items, mut steps, mut values) = (
            Vec::with_capacity(BATCH_ROWS),
            Vec::with_capacity(BATCH_ROWS),
            Vec::with_capacity(BATCH_ROWS),
        );
        while self.next < n && values.len() < BATCH_ROWS {
            let evaluated = self.source.eval(self.next, &mut |output, step, v| {
                items.push(output as u32);
                steps.push(step as u32);
                values.push(v);
            });
            if let Err(message) = evaluated {
                self.next = n;
                return Some(Err(DataFusionError::Execution(message)));
            }
            self.next += self.stride;
        }
        // The batch is held until the query has read every partition.
        if let Err(e) = self.reservation.try_grow(values.len() * 16) {
            return Some(Err(e));
        }
        Some(
            RecordBatch::try_new(
                output_schema(),
                vec![
                    Arc::new(UInt32Array::from(items)),
                    Arc::new(UInt32Array::from(steps)),
                    Arc::new(Float64Array::from(values)),
                ],
            )
            .map_err(DataFusionError::from),
        )
    }
}

/// One query's DataFusion context, shared by all its stages: a memory pool
/// of its own (bounded when the engine sets a limit) and one partition per
/// allowed core. Each method runs one stage as a [`StepExec`].
pub(crate) struct QueryExec {
    task: Arc<TaskContext>,
    memory_limit: usize,
}

impl QueryExec {
    /// A context with a pool of `memory_limit` bytes (0: unbounded) and
    /// `parallelism` partitions.
    pub(crate) fn new(memory_limit: usize, parallelism: usize) -> Result<Self, EngineError> {
        let pool: Arc<dyn MemoryPool> = if memory_limit > 0 {
            Arc::new(GreedyMemoryPool::new(memory_limit))
        } else {
            Arc::new(UnboundedMemoryPool::default())
        };
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_pool(pool)
            .build_arc()
            .map_err(|e| EngineError::Execution(e.to_string()))?;
        let config = SessionConfig::new().with_target_partitions(parallelism.max(1));
        let task = TaskContext::default()
            .with_session_config(config)
            .with_runtime(runtime);
        Ok(Self {
            task: Arc::new(task),
            memory_limit,
        })
    }

    /// The query's memory pool.
    pub(crate) fn memory_pool(&self) -> &Arc<dyn MemoryPool> {
        self.task.memory_pool()
    }

    /// Maps a DataFusion error of the query's plans to an engine error.
    pub(crate) fn error(&self, e: DataFusionError) -> EngineError {
        match e.find_root() {
            DataFusionError::ResourcesExhausted(_) => EngineError::TooMuchMemory(self.memory_limit),
            DataFusionError::Execution(message) => EngineError::Execution(message.clone()),
            root => EngineError::Execution(root.to_string()),
        }
    }

    /// Runs `source`; per output series, its value at each of `nsteps`
    /// steps, `None` for one without any.
    async fn run(
        &self,
        source: Arc<dyn StepSource>,
        nsteps: usize,
    ) -> Result<Vec<Option<StepValues>>, EngineError> {
        let (items, outputs) = (source.items(), source.outputs());
        if items == 0 {
            return Ok(vec![None; outputs]);
        }
        let partitions = self
            .task
            .session_config()
            .target_partitions()
            .clamp(1, items);
        let plan = Arc::new(StepExec::new(source, partitions));
        let parts = collect_partitioned(plan, self.task.clone())
            .await
            .map_err(|e| self.error(e))?;
        let mut vals: Vec<Option<StepValues>> = vec![None; outputs];
        for batch in parts.iter().flatten() {
            let column = |i: usize| batch.column(i).as_any();
            let (Some(item), Some(steps), Some(values)) = (
                column(0).downcast_ref::<UInt32Array>(),
                column(1).downcast_ref::<UInt32Array>(),
                column(2).downcast_ref::<Float64Array>(),
            ) else {
                return Err(EngineError::Execution(
                    "StepExec produced an unexpected batch".into(),
                ));
            };
            for row in 0..batch.num_rows() {
                let v = vals[item.value(row) as usize].get_or_insert_with(|| vec![None; nsteps]);
                let slot = &mut v[steps.value(row) as usize];
                if slot.is_some() {
                    // Two items wrote the same output series at one step.
                    return Err(EngineError::Execution(
                        "vector cannot contain metrics with the same labelset".into(),
                    ));
                }
                *slot = Some(values.value(row));
            }
        }
        Ok(vals)
    }

    /// `kernel` at `times` over every series of `input`: in input order,
    /// the series with at least one value and their value at each step.
    pub(crate) async fn series(
        &self,
        input: Vec<SeriesSamples>,
        times: Vec<i64>,
        kernel: StepKernel,
    ) -> Result<Vec<(Labels, StepValues)>, EngineError> {
        let (labels, samples): (Vec<Labels>, Vec<Vec<Sample>>) =
            input.into_iter().map(|s| (s.labels, s.samples)).unzip();
        let nsteps = times.len();
        let source = SeriesSteps {
            samples,
            times,
            kernel,
        };
        let vals = self.run(Arc::new(source), nsteps).await?;
        Ok(labels
            .into_iter()
            .zip(vals)
            .filter_map(|(l, v)| v.map(|v| (l, v)))
            .collect())
    }

    /// The per-step `values` of the input series aggregated by `groups`
    /// (member indexes): per group, `f` over its members' present values
    /// at each step.
    pub(crate) async fn aggregate(
        &self,
        values: Vec<StepValues>,
        groups: Vec<Vec<usize>>,
        nsteps: usize,
        f: GroupFn,
    ) -> Result<Vec<Option<StepValues>>, EngineError> {
        let source = GroupSteps {
            values,
            groups,
            nsteps,
            f,
        };
        self.run(Arc::new(source), nsteps).await
    }

    /// `topk` (`largest`) or `bottomk` of the per-step `values` of the
    /// input series within each of `groups`, `ks` the parameter per step:
    /// per input series, its value at the steps where it was selected.
    /// With one step, also the selected series in rank order (group by
    /// group, best first), the order of an instant query's result.
    pub(crate) async fn rank(
        &self,
        values: Vec<StepValues>,
        groups: Vec<Vec<usize>>,
        ks: Vec<f64>,
        largest: bool,
    ) -> Result<(Vec<Option<StepValues>>, Vec<usize>), EngineError> {
        let nsteps = values.first().map_or(0, Vec::len);
        let source = Arc::new(RankSteps {
            values,
            groups,
            ks,
            largest,
        });
        let order: Vec<usize> = if nsteps == 1 {
            (0..source.groups.len())
                .flat_map(|g| source.select(g, 0).into_iter().map(|(i, _)| i))
                .collect()
        } else {
            Vec::new()
        };
        Ok((self.run(source, nsteps).await?, order))
    }

    /// `f` over every value of every series: per series, its mapped value
    /// at each step.
    pub(crate) async fn map(
        &self,
        values: Vec<StepValues>,
        nsteps: usize,
        f: MapFn,
    ) -> Result<Vec<Option<StepValues>>, EngineError> {
        self.run(Arc::new(MapSteps { values, f }), nsteps).await
    }

    /// A set operator's filtering: per series, the values its rule keeps.
    pub(crate) async fn mask(
        &self,
        values: Vec<StepValues>,
        (masks, rules): (Vec<Vec<bool>>, Vec<KeepRule>),
        nsteps: usize,
    ) -> Result<Vec<Option<StepValues>>, EngineError> {
        let source = MaskSteps {
            values,
            masks,
            rules,
        };
        self.run(Arc::new(source), nsteps).await
    }

    /// A binary operator between two vectors: per output series (as
    /// numbered by the groups), its value at each step.
    pub(crate) async fn binary(
        &self,
        (many, one): (Vec<StepValues>, Vec<StepValues>),
        (groups, outputs): (Vec<MatchGroup>, usize),
        nsteps: usize,
        op: BinaryOp,
    ) -> Result<Vec<Option<StepValues>>, EngineError> {
        let source = BinarySteps {
            many,
            one,
            groups,
            outputs,
            nsteps,
            op,
        };
        self.run(Arc::new(source), nsteps).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_model::Label;

    fn exec(partitions: usize, memory_limit: usize) -> QueryExec {
        QueryExec::new(memory_limit, partitions).expect("a runtime with default settings")
    }

    fn input(n: usize) -> Vec<SeriesSamples> {
        (0..n)
            .map(|i| SeriesSamples {
                labels: Labels::new(vec![Label::new("i", i.to_string())]),
                // Series 3 has no sample in range.
                samples: if i == 3 {
                    vec![]
                } else {
                    (0..10)
                        .map(|k| Sample {
                            t: k * 10_000,
                            v: (i * 100 + k as usize) as f64,
                        })
                        .collect()
                },
            })
            .collect()
    }

    #[tokio::test]
    async fn lookback_and_window_match_across_partition_counts() {
        let times: Vec<i64> = (0..12).map(|k| k * 10_000 + 5_000).collect();
        let sum: WindowFn = Arc::new(|w: &[Sample], _, _| Some(w.iter().map(|s| s.v).sum()));
        for kernel in [
            StepKernel::Lookback {
                lookback: 20_000,
                timestamp: false,
            },
            StepKernel::Window {
                range: 25_000,
                f: sum,
            },
        ] {
            let one = exec(1, 0)
                .series(input(7), times.clone(), kernel.clone())
                .await
                .expect("one partition");
            let four = exec(4, 0)
                .series(input(7), times.clone(), kernel.clone())
                .await
                .expect("four partitions");
            assert_eq!(one, four);
            assert_eq!(one.len(), 6, "the empty series is dropped");
            assert!(one.iter().all(|(l, _)| l.get("i") != Some("3")));
            let (labels, v) = &one[0];
            assert_eq!(labels.get("i"), Some("0"));
            match kernel {
                // Latest sample at or before t, at most 20s old: at 115s
                // the last one (90s) is 25s old.
                StepKernel::Lookback { .. } => {
                    assert_eq!(v[0], Some(0.0));
                    assert_eq!(v[9], Some(9.0));
                    assert_eq!(v[10], Some(9.0));
                    assert_eq!(v[11], None);
                }
                // (t - 25s, t]: two or three samples.
                StepKernel::Window { .. } => {
                    assert_eq!(v[0], Some(0.0));
                    assert_eq!(v[2], Some(0.0 + 1.0 + 2.0));
                    assert_eq!(v[11], None);
                }
            }
        }
    }

    #[tokio::test]
    async fn groups_aggregate_present_values_per_step_across_partitions() {
        // Three series over three steps; series 1 is absent at step 1.
        let values = vec![
            vec![Some(1.0), Some(2.0), Some(3.0)],
            vec![Some(10.0), None, Some(30.0)],
            vec![Some(100.0), Some(200.0), None],
        ];
        let groups = vec![vec![0, 1], vec![2], vec![1, 2]];
        let sum: GroupFn = Arc::new(|v: &mut Vec<f64>, _| v.iter().sum());
        let mut results = Vec::new();
        for partitions in [1, 2, 3] {
            results.push(
                exec(partitions, 0)
                    .aggregate(values.clone(), groups.clone(), 3, sum.clone())
                    .await
                    .expect("aggregate"),
            );
        }
        assert_eq!(
            results[0],
            vec![
                Some(vec![Some(11.0), Some(2.0), Some(33.0)]),
                Some(vec![Some(100.0), Some(200.0), None]),
                Some(vec![Some(110.0), Some(200.0), Some(30.0)]),
            ]
        );
        assert!(results.iter().all(|r| *r == results[0]));
    }

    #[tokio::test]
    async fn topk_selects_per_group_and_step_and_orders_instant_results() {
        let values = vec![
            vec![Some(1.0), Some(9.0)],
            vec![Some(f64::NAN), Some(5.0)],
            vec![Some(3.0), None],
            vec![Some(7.0), Some(0.0)],
        ];
        let groups = vec![vec![0, 1, 2], vec![3]];
        let (vals, order) = exec(2, 0)
            .rank(values.clone(), groups.clone(), vec![2.0, 2.0], true)
            .await
            .expect("topk");
        // NaN ranks last; series 2 is absent at step 1.
        assert_eq!(vals[0], Some(vec![Some(1.0), Some(9.0)]));
        assert_eq!(vals[1], Some(vec![None, Some(5.0)]));
        assert_eq!(vals[2], Some(vec![Some(3.0), None]));
        assert_eq!(vals[3], Some(vec![Some(7.0), Some(0.0)]));
        assert!(order.is_empty(), "order only for one step");
        let one_step: Vec<StepValues> = values.iter().map(|v| vec![v[0]]).collect();
        let (vals, order) = exec(2, 0)
            .rank(one_step, groups, vec![1.0], false)
            .await
            .expect("bottomk");
        assert_eq!(order, vec![0, 3]);
        assert_eq!(vals[1], None, "not selected");
    }

    #[tokio::test]
    async fn memory_limit_fails_the_query_with_its_error() {
        let times: Vec<i64> = (0..12).map(|k| k * 10_000).collect();
        let kernel = StepKernel::Lookback {
            lookback: 300_000,
            timestamp: false,
        };
        let err = exec(2, 256)
            .series(input(50), times, kernel)
            .await
            .expect_err("over the limit");
        assert!(matches!(err, EngineError::TooMuchMemory(256)), "{err:?}");
        assert_eq!(err.http_status(), 422);
    }
}
