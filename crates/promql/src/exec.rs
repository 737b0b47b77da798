//! PromQL operations as DataFusion execution plan nodes.
//!
//! The planner (`plan`) turns an expression into a tree of [`PromExec`]
//! nodes, one per operation, whose children are its operands. Every node
//! emits `(output, step, value)` rows: an output series, a step of the
//! query, the value there. What the outputs are (their label sets, or a
//! scalar) is only known once the node's inputs ran, so it travels beside
//! the rows as the node's [`Shape`].
//!
//! A node runs once for all its partitions: it executes its children
//! (concurrently) and reads their rows back as per-series step values, then
//! prepares its items ([`StepSource`]): selected series, each step being the
//! latest sample within the lookback delta or a range function over the
//! left-open window ending there; aggregation groups; match groups of
//! vector matching; series mapped or filtered value by value. The items
//! are dealt across partitions, one per core, which DataFusion runs in
//! parallel; each partition charges the rows it produces to the query's
//! DataFusion memory pool, as the engine charges the samples it loads, so a
//! query past its memory limit fails with a clear error instead of
//! exhausting the process.
//!
//! This module holds the node and what every operation shares (the
//! [`StepSource`] trait, stored and mapped values); each operation's own
//! step kernels live with it in `ops` (selection windows in `ops::select`,
//! group reductions and ranks in `ops::aggregate`, vector matching and set
//! masks in `ops::binary`).

use std::fmt;
use std::sync::{Arc, Mutex};

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
use futures::TryStreamExt;
use strata_model::{Labels, SeriesSamples};
use tokio::sync::OnceCell;

use crate::EngineError;

/// An output series' value at each step, `None` where it has none.
pub(crate) type StepValues = Vec<Option<f64>>;

/// Rows per output batch.
const BATCH_ROWS: usize = 8192;

/// Work items (series or aggregation groups), each producing values of
/// output series at some of the query's steps: what a [`PromExec`] node's
/// partitions evaluate.
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
    /// One line for the node's debug log.
    fn describe(&self) -> String;
}

/// A function of one value at one step; `None` drops the value.
pub(crate) type MapFn = Arc<dyn Fn(f64, usize) -> Option<f64> + Send + Sync>;

/// Per-step values of series mapped one by one (instant-vector functions,
/// vector-scalar operators).
pub(crate) struct MapSteps {
    pub(crate) values: Vec<StepValues>,
    pub(crate) f: MapFn,
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

/// Per-step values stored ahead of time: a node whose result needed no
/// per-item work (literals, `label_replace`, `absent`, ...) emits them.
pub(crate) struct StoredSteps {
    pub values: Vec<StepValues>,
}

impl StepSource for StoredSteps {
    fn items(&self) -> usize {
        self.values.len()
    }

    fn eval(&self, i: usize, emit: &mut dyn FnMut(usize, usize, f64)) -> Result<(), String> {
        for (step, v) in self.values[i].iter().enumerate() {
            if let Some(v) = v {
                emit(i, step, *v);
            }
        }
        Ok(())
    }

    fn describe(&self) -> String {
        format!("stored: series={}", self.values.len())
    }
}

/// What the rows of a node mean.
pub(crate) enum Shape {
    /// Output `i` is series `i`: its labels and whether its metric name is
    /// removed at the end of the query. `order`, for an instant `topk` or
    /// `bottomk`, lists the selected outputs best first.
    Vector {
        series: Vec<(Labels, bool)>,
        order: Option<Vec<usize>>,
    },
    /// Output 0 holds the scalar's value at every step.
    Scalar,
    /// No rows: a string literal.
    String(String),
    /// No rows: the raw samples of a range selector or subquery, the
    /// result of an instant query.
    Matrix(Vec<SeriesSamples>),
}

impl Shape {
    /// Series in output order.
    pub(crate) fn series(series: Vec<(Labels, bool)>) -> Self {
        Shape::Vector {
            series,
            order: None,
        }
    }
}

/// A node's result, ready to be emitted: the items its partitions
/// evaluate, and what their rows mean. Both are taken by the parent once
/// it has read every partition, so the node's data is freed as soon as it
/// is no longer needed rather than when the query ends.
pub(crate) struct Prepared {
    rows: Mutex<Option<Arc<dyn StepSource>>>,
    shape: Mutex<Option<Shape>>,
    outputs: usize,
}

impl Prepared {
    /// Rows from `rows`, meaning `shape`.
    pub(crate) fn new(rows: Arc<dyn StepSource>, shape: Shape) -> Self {
        Self {
            outputs: rows.outputs(),
            rows: Mutex::new(Some(rows)),
            shape: Mutex::new(Some(shape)),
        }
    }

    fn rows(&self) -> Option<Arc<dyn StepSource>> {
        self.rows.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Takes the shape and drops the items: the node's output has been read.
    fn take(&self) -> Option<Shape> {
        self.rows.lock().unwrap_or_else(|e| e.into_inner()).take();
        self.shape.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

/// The operation of a plan node: from the values of its operands (in
/// operand position, `None` where the position has no child plan) to its
/// result.
#[async_trait::async_trait]
pub(crate) trait Prepare: Send + Sync + 'static {
    /// Computes the node's result from its operands.
    async fn prepare(&self, operands: Operands) -> Result<Prepared, EngineError>;
    /// Number of steps the node evaluates (its rows' step indexes).
    fn steps(&self) -> usize;
    /// The node's name in plan displays (`Aggregate`, `Select`, ...).
    fn name(&self) -> &'static str;
    /// One line for plan displays.
    fn describe(&self) -> String;
}

/// The values of a node's operands, each taken once by position.
pub(crate) struct Operands(Vec<Option<Operand>>);

/// One operand's rows, as per-output step values, and their meaning.
pub(crate) struct Operand {
    pub values: Vec<Option<StepValues>>,
    pub shape: Shape,
    /// Steps the operand was evaluated at.
    pub nsteps: usize,
}

impl Operands {
    /// Operand `i`, if it has a child plan and was not taken yet.
    pub(crate) fn take(&mut self, i: usize) -> Option<Operand> {
        self.0.get_mut(i).and_then(Option::take)
    }
}

/// A PromQL operation as a DataFusion execution plan node: the node runs
/// its children, prepares its items from their output once, and its
/// partitions evaluate the items dealt to them, emitting
/// `(output, step, value)` rows.
pub(crate) struct PromExec {
    node: Arc<Node>,
    properties: Arc<PlanProperties>,
}

struct Node {
    op: Arc<dyn Prepare>,
    /// Child plan per operand position.
    operands: Vec<Option<Arc<PromExec>>>,
    /// The same children, as DataFusion sees them.
    children: Vec<Arc<dyn ExecutionPlan>>,
    /// The node's result, computed by whichever partition runs first.
    prepared: OnceCell<Result<Arc<Prepared>, EngineError>>,
    /// Memory limit of the query's pool, for error messages.
    memory_limit: usize,
    /// What the node's output holds of the query's pool: its batches until
    /// the parent has read them, then their decoded values, until the
    /// query ends.
    reservation: std::sync::OnceLock<Arc<Mutex<MemoryReservation>>>,
}

impl PromExec {
    /// A node running `op` over `operands`, split into `partitions`.
    pub(crate) fn new(
        op: Arc<dyn Prepare>,
        operands: Vec<Option<Arc<PromExec>>>,
        partitions: usize,
        memory_limit: usize,
    ) -> Self {
        let properties = PlanProperties::new(
            EquivalenceProperties::new(output_schema()),
            Partitioning::UnknownPartitioning(partitions.max(1)),
            EmissionType::Incremental,
            Boundedness::Bounded,
        );
        let children = operands
            .iter()
            .flatten()
            .map(|c| c.clone() as Arc<dyn ExecutionPlan>)
            .collect();
        Self {
            node: Arc::new(Node {
                op,
                operands,
                children,
                prepared: OnceCell::new(),
                memory_limit,
                reservation: std::sync::OnceLock::new(),
            }),
            properties: Arc::new(properties),
        }
    }

    fn partitions(&self) -> usize {
        self.properties.partitioning.partition_count()
    }

    /// Runs the plan: every partition of this node, then its rows as per-output
    /// step values and their meaning.
    pub(crate) async fn run(
        self: Arc<Self>,
        task: Arc<TaskContext>,
    ) -> Result<Operand, EngineError> {
        let node = self.node.clone();
        let nsteps = node.op.steps();
        let pool = task.memory_pool().clone();
        let parts = collect_partitioned(self, task)
            .await
            .map_err(|e| engine_error(e, node.memory_limit))?;
        let prepared = match node.prepared.get() {
            Some(Ok(p)) => p.clone(),
            Some(Err(e)) => return Err(e.clone()),
            None => return Err(EngineError::Execution("a plan node did not run".into())),
        };
        let outputs = prepared.outputs;
        let shape = prepared
            .take()
            .ok_or_else(|| EngineError::Execution("a plan node's output was read twice".into()))?;
        let mut values: Vec<Option<StepValues>> = vec![None; outputs];
        let reservation = node.reservation(&pool);
        let step_values_size = nsteps * std::mem::size_of::<Option<f64>>();
        // Each batch is dropped once decoded.
        for batch in parts.into_iter().flatten() {
            let column = |i: usize| batch.column(i).as_any();
            let (Some(output), Some(steps), Some(vals)) = (
                column(0).downcast_ref::<UInt32Array>(),
                column(1).downcast_ref::<UInt32Array>(),
                column(2).downcast_ref::<Float64Array>(),
            ) else {
                return Err(EngineError::Execution(
                    "a plan node produced an unexpected batch".into(),
                ));
            };
            for row in 0..batch.num_rows() {
                let slot = values
                    .get_mut(output.value(row) as usize)
                    .ok_or_else(|| EngineError::Execution("row of an unknown output".into()))?;
                if slot.is_none() {
                    // Charged before it is allocated: a sparse series costs
                    // every step.
                    reservation
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .try_grow(step_values_size)
                        .map_err(|e| engine_error(e, node.memory_limit))?;
                }
                let slot = slot.get_or_insert_with(|| vec![None; nsteps]);
                let slot = slot
                    .get_mut(steps.value(row) as usize)
                    .ok_or_else(|| EngineError::Execution("row of an unknown step".into()))?;
                if slot.is_some() {
                    // Two items wrote the same output series at one step.
                    return Err(EngineError::Execution(
                        "vector cannot contain metrics with the same labelset".into(),
                    ));
                }
                *slot = Some(vals.value(row));
            }
        }
        // The batches' charge becomes the decoded values'.
        let decoded = values.iter().flatten().count() * step_values_size;
        reservation
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .try_resize(decoded)
            .map_err(|e| engine_error(e, node.memory_limit))?;
        Ok(Operand {
            values,
            shape,
            nsteps,
        })
    }
}

impl Node {
    /// The node's share of the query's memory pool.
    fn reservation(&self, pool: &Arc<dyn MemoryPool>) -> Arc<Mutex<MemoryReservation>> {
        self.reservation
            .get_or_init(|| {
                let consumer = MemoryConsumer::new(format!("PromQL {}", self.op.name()));
                Arc::new(Mutex::new(consumer.register(pool)))
            })
            .clone()
    }

    /// The node's result: its children run (concurrently), then its op.
    async fn prepared(&self, task: &Arc<TaskContext>) -> Result<Arc<Prepared>, EngineError> {
        self.prepared
            .get_or_init(|| async {
                let runs = self.operands.iter().map(|child| {
                    let task = task.clone();
                    async move {
                        match child {
                            Some(c) => c.clone().run(task).await.map(Some),
                            None => Ok(None),
                        }
                    }
                });
                let operands = futures::future::try_join_all(runs).await?;
                let prepared = self.op.prepare(Operands(operands)).await?;
                if let Some(rows) = prepared.rows() {
                    tracing::debug!(node = self.op.name(), items = %rows.describe(), "PromQL node prepared");
                }
                Ok(Arc::new(prepared))
            })
            .await
            .clone()
    }
}

/// `(output, step, value)`: output series index, step index.
fn output_schema() -> SchemaRef {
    static SCHEMA: std::sync::LazyLock<SchemaRef> = std::sync::LazyLock::new(|| {
        Arc::new(Schema::new(vec![
            Field::new("output", DataType::UInt32, false),
            Field::new("step", DataType::UInt32, false),
            Field::new("value", DataType::Float64, false),
        ]))
    });
    SCHEMA.clone()
}

/// An engine error for a DataFusion error of the query's plans.
pub(crate) fn engine_error(e: DataFusionError, memory_limit: usize) -> EngineError {
    match e.find_root() {
        DataFusionError::ResourcesExhausted(_) => EngineError::TooMuchMemory(memory_limit),
        DataFusionError::External(inner) => match inner.downcast_ref::<EngineError>() {
            Some(e) => e.clone(),
            None => EngineError::Execution(inner.to_string()),
        },
        DataFusionError::Execution(message) => EngineError::Execution(message.clone()),
        root => EngineError::Execution(root.to_string()),
    }
}

impl fmt::Debug for PromExec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}({})", self.node.op.name(), self.node.op.describe())
    }
}

impl DisplayAs for PromExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.node.op.name(), self.node.op.describe())
    }
}

impl ExecutionPlan for PromExec {
    fn name(&self) -> &'static str {
        self.node.op.name()
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        self.node.children.iter().collect()
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DfResult<TreeNodeRecursion>,
    ) -> DfResult<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn replace_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
        _options: ReplaceChildrenOptions,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        if children.len() != self.node.children.len() {
            return Err(DataFusionError::Internal(format!(
                "{} has {} children, got {}",
                self.node.op.name(),
                self.node.children.len(),
                children.len()
            )));
        }
        // Same positions, new plans; every child must be a PromQL node.
        let mut replacements = children.into_iter();
        let mut operands = Vec::with_capacity(self.node.operands.len());
        for slot in &self.node.operands {
            operands.push(match slot {
                None => None,
                Some(_) => {
                    let child = replacements
                        .next()
                        .ok_or_else(|| DataFusionError::Internal("missing child plan".into()))?;
                    let Some(prom) = child.downcast_ref::<PromExec>() else {
                        return Err(DataFusionError::Internal(format!(
                            "a PromQL node's child must be a PromQL node, got {}",
                            child.name()
                        )));
                    };
                    Some(Arc::new(PromExec {
                        node: prom.node.clone(),
                        properties: prom.properties.clone(),
                    }))
                }
            });
        }
        Ok(Arc::new(PromExec::new(
            self.node.op.clone(),
            operands,
            self.partitions(),
            self.node.memory_limit,
        )))
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
                "{} has {partitions} partitions, asked for {partition}",
                self.node.op.name()
            )));
        }
        let node = self.node.clone();
        let name = node.op.name();
        let rows = futures::stream::once(async move {
            let prepared = node
                .prepared(&context)
                .await
                .map_err(|e| DataFusionError::External(Box::new(e)))?;
            let source = prepared.rows().ok_or_else(|| {
                DataFusionError::Internal(format!("{name}'s output was already read"))
            })?;
            let reservation = node.reservation(context.memory_pool());
            let mut producer = StepRows {
                source,
                next: partition,
                stride: partitions,
                reservation,
            };
            Ok::<_, DataFusionError>(futures::stream::iter(std::iter::from_fn(move || {
                producer.next_batch()
            })))
        })
        .try_flatten();
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            output_schema(),
            rows,
        )))
    }
}

/// One partition's producer: items `next, next + stride, ...`.
struct StepRows {
    source: Arc<dyn StepSource>,
    next: usize,
    stride: usize,
    /// The node's reservation, shared by its partitions.
    reservation: Arc<Mutex<MemoryReservation>>,
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
        // The batch is held until the parent has read every partition.
        let grown = self
            .reservation
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .try_grow(values.len() * 16);
        if let Err(e) = grown {
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

/// One query's DataFusion context, shared by all its plan nodes: a memory
/// pool of its own (bounded when the engine sets a limit) and one
/// partition per allowed core.
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

    /// The context plans of this query execute in.
    pub(crate) fn task(&self) -> Arc<TaskContext> {
        self.task.clone()
    }

    /// Partitions per node.
    pub(crate) fn partitions(&self) -> usize {
        self.task.session_config().target_partitions()
    }

    /// The memory limit, 0 for none.
    pub(crate) fn memory_limit(&self) -> usize {
        self.memory_limit
    }

    /// Maps a DataFusion error of the query's plans to an engine error.
    pub(crate) fn error(&self, e: DataFusionError) -> EngineError {
        engine_error(e, self.memory_limit)
    }

    /// Runs a node result's items as a one-node plan: per output, its values.
    pub(crate) async fn run_prepared(
        &self,
        prepared: Prepared,
        nsteps: usize,
    ) -> Result<Vec<Option<StepValues>>, EngineError> {
        match prepared.rows() {
            Some(rows) => self.run_source(rows, nsteps).await,
            None => Ok(Vec::new()),
        }
    }

    /// Runs `source`'s items as a one-node plan over `nsteps` steps: per
    /// output, its values (a node evaluating part of its work ahead, e.g.
    /// one time slice of a selection).
    pub(crate) async fn run_source(
        &self,
        source: Arc<dyn StepSource>,
        nsteps: usize,
    ) -> Result<Vec<Option<StepValues>>, EngineError> {
        let node = SourceNode {
            source: Mutex::new(Some(source)),
            nsteps,
        };
        let plan = PromExec::new(
            Arc::new(node),
            Vec::new(),
            self.partitions(),
            self.memory_limit,
        );
        Ok(Arc::new(plan).run(self.task()).await?.values)
    }
}

/// A node whose items are given.
struct SourceNode {
    source: Mutex<Option<Arc<dyn StepSource>>>,
    nsteps: usize,
}

#[async_trait::async_trait]
impl Prepare for SourceNode {
    async fn prepare(&self, _operands: Operands) -> Result<Prepared, EngineError> {
        let source = self
            .source
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .ok_or_else(|| EngineError::Execution("a source node ran twice".into()))?;
        // Outputs are only numbered: the caller knows what they are.
        let series = vec![(Labels::default(), false); source.outputs()];
        Ok(Prepared::new(source, Shape::series(series)))
    }

    fn steps(&self) -> usize {
        self.nsteps
    }

    fn name(&self) -> &'static str {
        "Source"
    }

    fn describe(&self) -> String {
        format!("steps={}", self.nsteps)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::aggregate::{GroupFn, GroupSteps, RankSteps};
    use crate::ops::binary::BinarySteps;
    use crate::ops::select::{SeriesSteps, StepKernel, WindowFn, seek_after};
    use datafusion::physical_plan::displayable;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use strata_model::Sample;
    use strata_model::matching::{MatchGroup, MatchedOp};

    /// A node whose result is given; counts how often it is prepared.
    struct Given {
        result: Mutex<Option<Result<Prepared, EngineError>>>,
        nsteps: usize,
        prepared: Arc<AtomicUsize>,
    }

    #[async_trait::async_trait]
    impl Prepare for Given {
        async fn prepare(&self, _operands: Operands) -> Result<Prepared, EngineError> {
            self.prepared.fetch_add(1, Ordering::SeqCst);
            self.result
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take()
                .unwrap_or_else(|| Err(EngineError::Execution("prepared twice".into())))
        }
        fn steps(&self) -> usize {
            self.nsteps
        }
        fn name(&self) -> &'static str {
            "Given"
        }
        fn describe(&self) -> String {
            String::new()
        }
    }

    fn given(
        result: Result<Prepared, EngineError>,
        nsteps: usize,
    ) -> (Arc<Given>, Arc<AtomicUsize>) {
        let prepared = Arc::new(AtomicUsize::new(0));
        let node = Given {
            result: Mutex::new(Some(result)),
            nsteps,
            prepared: prepared.clone(),
        };
        (Arc::new(node), prepared)
    }

    fn vector(source: impl StepSource, outputs: usize) -> Prepared {
        let series = (0..outputs)
            .map(|i| (Labels::from_pairs([("i", i.to_string().as_str())]), false))
            .collect();
        Prepared::new(Arc::new(source), Shape::series(series))
    }

    /// Runs a leaf node producing `source`'s rows on `partitions`.
    async fn run(
        source: impl StepSource,
        nsteps: usize,
        partitions: usize,
        memory_limit: usize,
    ) -> Result<Vec<Option<StepValues>>, EngineError> {
        let outputs = source.outputs();
        let (op, prepared) = given(Ok(vector(source, outputs)), nsteps);
        let exec = QueryExec::new(memory_limit, partitions)?;
        let node = Arc::new(PromExec::new(op, vec![], partitions, memory_limit));
        let out = node.run(exec.task()).await?;
        assert_eq!(
            prepared.load(Ordering::SeqCst),
            1,
            "prepared once for all partitions"
        );
        Ok(out.values)
    }

    fn samples(n: usize) -> Vec<Vec<Sample>> {
        (0..n)
            .map(|i| {
                // Series 3 has no sample in range.
                if i == 3 {
                    return vec![];
                }
                (0..10)
                    .map(|k| Sample {
                        t: k * 10_000,
                        v: (i * 100 + k as usize) as f64,
                    })
                    .collect()
            })
            .collect()
    }

    #[test]
    fn seeking_forward_finds_what_a_full_search_finds() {
        // Irregular times with repeats and gaps.
        let samples: Vec<Sample> = [1, 2, 2, 5, 9, 9, 9, 20, 21, 40, 100]
            .iter()
            .map(|&t| Sample { t, v: 0.0 })
            .collect();
        let full = |t: i64| samples.partition_point(|x| x.t <= t);
        let mut cursor = 0;
        for t in -5..120 {
            cursor = seek_after(&samples, cursor, t);
            assert_eq!(cursor, full(t), "t={t}");
        }
        // A time before the cursor's (never asked by steps) searches again.
        assert_eq!(seek_after(&samples, samples.len(), 3), full(3));
        assert_eq!(seek_after(&[], 0, 3), 0);
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
            let source = |kernel: StepKernel| SeriesSteps {
                samples: samples(7),
                times: times.clone(),
                kernel,
                first_step: 0,
                _charge: None,
            };
            let one = run(source(kernel.clone()), 12, 1, 0)
                .await
                .expect("one partition");
            let four = run(source(kernel.clone()), 12, 4, 0)
                .await
                .expect("four partitions");
            assert_eq!(one, four);
            assert_eq!(
                one.iter().flatten().count(),
                6,
                "the empty series has no values"
            );
            assert_eq!(one[3], None);
            let v = one[0].as_ref().expect("series 0");
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
            let source = GroupSteps {
                values: values.clone(),
                groups: groups.clone(),
                nsteps: 3,
                f: sum.clone(),
            };
            results.push(run(source, 3, partitions, 0).await.expect("aggregate"));
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
    async fn topk_selects_per_group_and_step() {
        let values = vec![
            vec![Some(1.0), Some(9.0)],
            vec![Some(f64::NAN), Some(5.0)],
            vec![Some(3.0), None],
            vec![Some(7.0), Some(0.0)],
        ];
        let groups = vec![vec![0, 1, 2], vec![3]];
        let source = RankSteps {
            values: values.clone(),
            groups: groups.clone(),
            ks: vec![2.0, 2.0],
            largest: true,
        };
        let vals = run(source, 2, 2, 0).await.expect("topk");
        // NaN ranks last; series 2 is absent at step 1.
        assert_eq!(vals[0], Some(vec![Some(1.0), Some(9.0)]));
        assert_eq!(vals[1], Some(vec![None, Some(5.0)]));
        assert_eq!(vals[2], Some(vec![Some(3.0), None]));
        assert_eq!(vals[3], Some(vec![Some(7.0), Some(0.0)]));
        let bottom = RankSteps {
            values: values.iter().map(|v| vec![v[0]]).collect(),
            groups,
            ks: vec![1.0],
            largest: false,
        };
        assert_eq!(bottom.select(0, 0), vec![(0, 1.0)]);
        assert_eq!(bottom.select(1, 0), vec![(3, 7.0)]);
    }

    #[tokio::test]
    async fn memory_limit_fails_the_query_with_its_error() {
        let source = SeriesSteps {
            samples: samples(50),
            times: (0..12).map(|k| k * 10_000).collect(),
            kernel: StepKernel::Lookback {
                lookback: 300_000,
                timestamp: false,
            },
            first_step: 0,
            _charge: None,
        };
        let err = run(source, 12, 2, 256).await.expect_err("over the limit");
        assert!(matches!(err, EngineError::TooMuchMemory(256)), "{err:?}");
        assert_eq!(err.http_status(), 422);
    }

    #[tokio::test]
    async fn implicit_many_to_one_fails_even_when_a_comparison_filters_pairs_out() {
        // One-to-one `>`: two "many" series share a signature with one
        // "one" series; only the first passes at step 0, yet Prometheus 3
        // reports the many-to-one match; with group_left both are kept.
        let source = |one_to_one: bool| BinarySteps {
            many_present: vec![true, true],
            many: vec![vec![Some(5.0), Some(5.0)], vec![Some(1.0), Some(4.0)]],
            one: vec![vec![Some(2.0), Some(2.0)]],
            groups: vec![MatchGroup {
                sig: Labels::default(),
                many: vec![0, 1],
                one: vec![0],
                outputs: vec![0, 1],
                may_collide: false,
            }],
            outputs: 2,
            op: MatchedOp {
                f: |l, r| (l, l > r),
                comparison: true,
                return_bool: false,
                one_to_many: false,
                one_to_one,
            },
        };
        let mut emitted = Vec::new();
        let err = source(true)
            .eval(0, &mut |o, step, v| emitted.push((o, step, v)))
            .expect_err("implicit many-to-one");
        assert!(err.starts_with("multiple matches for labels"), "{err}");
        let vals = run(source(false), 2, 2, 0)
            .await
            .expect("group_left allows both");
        assert_eq!(vals[0], Some(vec![Some(5.0), Some(5.0)]));
        assert_eq!(vals[1], Some(vec![None, Some(4.0)]));
    }

    #[tokio::test]
    async fn decoded_values_are_charged_not_only_batches() {
        // 50 series with one value each over 100 steps: 800 bytes of rows,
        // 80,000 bytes once decoded into per-step values.
        let values: Vec<StepValues> = (0..50)
            .map(|i| {
                let mut v = vec![None; 100];
                v[0] = Some(i as f64);
                v
            })
            .collect();
        let err = run(
            StoredSteps {
                values: values.clone(),
            },
            100,
            2,
            4096,
        )
        .await
        .expect_err("decoded values over the limit");
        assert!(matches!(err, EngineError::TooMuchMemory(4096)), "{err:?}");
        let ok = run(StoredSteps { values }, 100, 2, 100_000)
            .await
            .expect("within");
        assert_eq!(ok.iter().flatten().count(), 50);
    }

    #[test]
    fn one_side_duplicates_fail_only_where_the_other_side_has_series() {
        // Signature "b" has two "one" series and no "many" series.
        let steps = |many_present: Vec<bool>| BinarySteps {
            many_present,
            many: vec![vec![Some(1.0), None]],
            one: vec![vec![Some(1.0); 2], vec![Some(2.0); 2], vec![Some(3.0); 2]],
            groups: vec![MatchGroup {
                sig: Labels::from_pairs([("sig", "b")]),
                many: vec![],
                one: vec![1, 2],
                outputs: vec![],
                may_collide: false,
            }],
            outputs: 0,
            op: MatchedOp {
                f: |l, r| (l + r, true),
                comparison: false,
                return_bool: false,
                one_to_many: false,
                one_to_one: true,
            },
        };
        let err = steps(vec![true, false])
            .eval(0, &mut |_, _, _| {})
            .expect_err("the left side has a series at step 0");
        assert!(err.starts_with("found duplicate series"), "{err}");
        steps(vec![false, false])
            .eval(0, &mut |_, _, _| {})
            .expect("an empty side matches nothing");
    }

    /// Doubles every value of its operand.
    struct Double(usize);

    #[async_trait::async_trait]
    impl Prepare for Double {
        async fn prepare(&self, mut operands: Operands) -> Result<Prepared, EngineError> {
            let input = operands.take(0).expect("child ran");
            let Shape::Vector { series, .. } = input.shape else {
                return Err(EngineError::Execution("not a vector".into()));
            };
            let values = input
                .values
                .into_iter()
                .map(|v| v.unwrap_or_default())
                .collect();
            let f: MapFn = Arc::new(|x, _| Some(x * 2.0));
            Ok(Prepared::new(
                Arc::new(MapSteps { values, f }),
                Shape::series(series),
            ))
        }
        fn steps(&self) -> usize {
            self.0
        }
        fn name(&self) -> &'static str {
            "Double"
        }
        fn describe(&self) -> String {
            String::new()
        }
    }

    #[tokio::test]
    async fn a_parent_reads_its_childs_rows_and_labels_and_errors() {
        let values = vec![vec![Some(1.0), None], vec![Some(3.0), Some(4.0)]];
        let (leaf, _) = given(Ok(vector(StoredSteps { values }, 2)), 2);
        let exec = QueryExec::new(0, 3).expect("context");
        let child = Arc::new(PromExec::new(leaf, vec![], 3, 0));
        let root = Arc::new(PromExec::new(Arc::new(Double(2)), vec![Some(child)], 3, 0));
        assert_eq!(
            displayable(root.as_ref()).indent(false).to_string(),
            "Double: \n  Given: \n"
        );
        let out = root.run(exec.task()).await.expect("tree runs");
        assert_eq!(
            out.values,
            vec![
                Some(vec![Some(2.0), None]),
                Some(vec![Some(6.0), Some(8.0)])
            ]
        );
        let Shape::Vector { series, .. } = out.shape else {
            panic!("a vector");
        };
        assert_eq!(series[1].0.get("i"), Some("1"));

        // A child's error is the query's error, unchanged.
        let (failing, _) = given(Err(EngineError::TooManySamples), 2);
        let child = Arc::new(PromExec::new(failing, vec![], 3, 0));
        let root = Arc::new(PromExec::new(Arc::new(Double(2)), vec![Some(child)], 3, 0));
        let Err(err) = root.run(exec.task()).await else {
            panic!("the child failed");
        };
        assert!(matches!(err, EngineError::TooManySamples), "{err:?}");
    }
}
