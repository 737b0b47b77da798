//! The per-series stage of PromQL as a DataFusion execution plan.
//!
//! A selector's samples (head and blocks, merged by the querier) feed a
//! [`SeriesStepExec`]: for each series it evaluates every step, either the
//! latest sample within the lookback delta (instant selectors) or a range
//! function over the left-open window ending at the step, and emits
//! `(series, step, value)` rows. The series are dealt across partitions, one
//! per core, which DataFusion runs in parallel; each partition charges the
//! rows it produces to the query's DataFusion memory pool, as the engine
//! charges the samples it loads, so a query past its memory limit fails with
//! a clear error instead of exhausting the process.

use std::fmt;
use std::sync::Arc;

use datafusion::arrow::array::{Array, Float64Array, RecordBatch, UInt32Array};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::memory_pool::{MemoryConsumer, MemoryReservation};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    ChildrenPropertiesMode, DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning,
    PlanProperties, ReplaceChildrenOptions, collect_partitioned,
};
use strata_model::{Labels, Sample, SeriesSamples, is_stale_nan};

use crate::EngineError;
use crate::eval::window;

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

/// Evaluates a [`StepKernel`] at `times` for every series of its input.
pub(crate) struct SeriesStepExec {
    samples: Arc<Vec<Vec<Sample>>>,
    times: Arc<Vec<i64>>,
    kernel: StepKernel,
    properties: Arc<PlanProperties>,
}

impl SeriesStepExec {
    /// The plan over `samples` (one entry per series), split into `partitions`.
    pub(crate) fn new(
        samples: Arc<Vec<Vec<Sample>>>,
        times: Arc<Vec<i64>>,
        kernel: StepKernel,
        partitions: usize,
    ) -> Self {
        let properties = PlanProperties::new(
            EquivalenceProperties::new(output_schema()),
            Partitioning::UnknownPartitioning(partitions.max(1)),
            EmissionType::Incremental,
            Boundedness::Bounded,
        );
        Self {
            samples,
            times,
            kernel,
            properties: Arc::new(properties),
        }
    }

    fn partitions(&self) -> usize {
        self.properties.partitioning.partition_count()
    }
}

/// `(series, step, value)`: series index into the input, step index.
fn output_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("series", DataType::UInt32, false),
        Field::new("step", DataType::UInt32, false),
        Field::new("value", DataType::Float64, false),
    ]))
}

impl fmt::Debug for SeriesStepExec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SeriesStepExec")
            .field("series", &self.samples.len())
            .field("steps", &self.times.len())
            .finish()
    }
}

impl DisplayAs for SeriesStepExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kernel = match &self.kernel {
            StepKernel::Lookback { .. } => "lookback".to_string(),
            StepKernel::Window { range, .. } => format!("window={range}ms"),
        };
        write!(
            f,
            "SeriesStepExec: series={}, steps={}, {kernel}",
            self.samples.len(),
            self.times.len()
        )
    }
}

impl ExecutionPlan for SeriesStepExec {
    fn name(&self) -> &'static str {
        "SeriesStepExec"
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
                "SeriesStepExec has {partitions} partitions, asked for {partition}"
            )));
        }
        let reservation = MemoryConsumer::new(format!("SeriesStepExec[{partition}]"))
            .register(context.memory_pool());
        let mut producer = StepRows {
            samples: self.samples.clone(),
            times: self.times.clone(),
            kernel: self.kernel.clone(),
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

/// One partition's producer: series `next, next + stride, ...`.
struct StepRows {
    samples: Arc<Vec<Vec<Sample>>>,
    times: Arc<Vec<i64>>,
    kernel: StepKernel,
    next: usize,
    stride: usize,
    reservation: MemoryReservation,
}

impl StepRows {
    fn next_batch(&mut self) -> Option<DfResult<RecordBatch>> {
        if self.next >= self.samples.len() {
            return None;
        }
        let (mut series, mut steps, mut values) = (
            Vec::with_capacity(BATCH_ROWS),
            Vec::with_capacity(BATCH_ROWS),
            Vec::with_capacity(BATCH_ROWS),
        );
        while self.next < self.samples.len() && values.len() < BATCH_ROWS {
            let id = self.next as u32;
            self.kernel
                .eval(&self.samples[self.next], &self.times, |step, v| {
                    series.push(id);
                    steps.push(step as u32);
                    values.push(v);
                });
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
                    Arc::new(UInt32Array::from(series)),
                    Arc::new(UInt32Array::from(steps)),
                    Arc::new(Float64Array::from(values)),
                ],
            )
            .map_err(DataFusionError::from),
        )
    }
}

/// Maps a DataFusion error of the query's plan to an engine error.
pub(crate) fn engine_error(e: DataFusionError, memory_limit: usize) -> EngineError {
    match e.find_root() {
        DataFusionError::ResourcesExhausted(_) => EngineError::TooMuchMemory(memory_limit),
        root => EngineError::Execution(root.to_string()),
    }
}

/// Runs `kernel` at `times` over every series of `input` through DataFusion;
/// returns, in input order, the series with at least one value and their
/// value at each step.
pub(crate) async fn evaluate_steps(
    task: &Arc<TaskContext>,
    memory_limit: usize,
    input: Vec<SeriesSamples>,
    times: Vec<i64>,
    kernel: StepKernel,
) -> Result<Vec<(Labels, Vec<Option<f64>>)>, EngineError> {
    let (labels, samples): (Vec<Labels>, Vec<Vec<Sample>>) =
        input.into_iter().map(|s| (s.labels, s.samples)).unzip();
    if labels.is_empty() {
        return Ok(Vec::new());
    }
    let nsteps = times.len();
    let partitions = task
        .session_config()
        .target_partitions()
        .clamp(1, labels.len());
    let plan = Arc::new(SeriesStepExec::new(
        Arc::new(samples),
        Arc::new(times),
        kernel,
        partitions,
    ));
    let parts = collect_partitioned(plan, task.clone())
        .await
        .map_err(|e| engine_error(e, memory_limit))?;
    let mut vals: Vec<Option<Vec<Option<f64>>>> = vec![None; labels.len()];
    for batch in parts.iter().flatten() {
        let column = |i: usize| batch.column(i).as_any();
        let (Some(series), Some(steps), Some(values)) = (
            column(0).downcast_ref::<UInt32Array>(),
            column(1).downcast_ref::<UInt32Array>(),
            column(2).downcast_ref::<Float64Array>(),
        ) else {
            return Err(EngineError::Execution(
                "SeriesStepExec produced an unexpected batch".into(),
            ));
        };
        for row in 0..batch.num_rows() {
            let v = vals[series.value(row) as usize].get_or_insert_with(|| vec![None; nsteps]);
            v[steps.value(row) as usize] = Some(values.value(row));
        }
    }
    Ok(labels
        .into_iter()
        .zip(vals)
        .filter_map(|(l, v)| v.map(|v| (l, v)))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::execution::memory_pool::GreedyMemoryPool;
    use datafusion::execution::runtime_env::RuntimeEnvBuilder;
    use datafusion::prelude::SessionConfig;
    use strata_model::Label;

    fn task(partitions: usize, memory: Option<usize>) -> Arc<TaskContext> {
        let mut rt = RuntimeEnvBuilder::new();
        if let Some(m) = memory {
            rt = rt.with_memory_pool(Arc::new(GreedyMemoryPool::new(m)));
        }
        Arc::new(
            TaskContext::default()
                .with_session_config(SessionConfig::new().with_target_partitions(partitions))
                .with_runtime(rt.build_arc().expect("runtime")),
        )
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
            let one = evaluate_steps(&task(1, None), 0, input(7), times.clone(), kernel.clone())
                .await
                .expect("one partition");
            let four = evaluate_steps(&task(4, None), 0, input(7), times.clone(), kernel.clone())
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
    async fn memory_limit_fails_the_query_with_its_error() {
        let times: Vec<i64> = (0..12).map(|k| k * 10_000).collect();
        let kernel = StepKernel::Lookback {
            lookback: 300_000,
            timestamp: false,
        };
        let err = evaluate_steps(&task(2, Some(256)), 256, input(50), times, kernel)
            .await
            .expect_err("over the limit");
        assert!(matches!(err, EngineError::TooMuchMemory(256)), "{err:?}");
        assert_eq!(err.http_status(), 422);
    }
}
