//! OTLP metrics as Prometheus series, translated as Prometheus 3's OTLP
//! receiver does (Mimir follows the same rules): the result is the
//! remote-write 1.0 request the write path already validates, limits and
//! replicates.
//!
//! - Names: [`crate::names`]; attribute keys become label names, keys that
//!   collide are joined as `a;b`.
//! - The resource gives `job` (`service.namespace/service.name`) and
//!   `instance` (`service.instance.id`) to every series, its other
//!   attributes to one `target_info` series, and promoted attributes to
//!   every series.
//! - Gauges and sums are samples (monotonic sums are counters named
//!   `_total`); explicit-bucket histograms are classic `_bucket{le}`,
//!   `_sum` and `_count` series; summaries `{quantile}`, `_sum`, `_count`.
//! - Metric metadata (type, description as help, unit) comes with every
//!   family; exemplars go to sums and to the bucket their value falls in.
//! - Points flagged "no recorded value" become staleness markers.
//!
//! What Strata cannot store is dropped and reported, the rest kept:
//! delta temporality (Strata stores cumulative series) and exponential
//! histograms (native histograms are not stored yet).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::BuildHasher;

use foldhash::fast::RandomState;

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, DataPointFlags, Exemplar as OtlpExemplar, HistogramDataPoint, Metric,
    NumberDataPoint, ResourceMetrics, SummaryDataPoint, exemplar, metric::Data, number_data_point,
};
use strata_proto::prometheus::{
    Exemplar, Label, MetricMetadata, Sample, TimeSeries, WriteRequest, metric_metadata::MetricType,
};

use crate::attributes::{LabelNaming, id_hex, into_value_text, value_text};
use crate::names::{NameKind, NameStrategy, metric_name, unit_text};

/// Per-tenant translation settings (Mimir's `otel_*` limits).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MetricsTranslation {
    pub names: NameStrategy,
    /// Resource attributes copied onto every series of the resource.
    pub promote_resource_attributes: Vec<String>,
    /// Keep `service.name`, `service.namespace` and `service.instance.id`
    /// on `target_info` too (they are `job` and `instance` already).
    pub keep_identifying_resource_attributes: bool,
    /// Label every series with its instrumentation scope
    /// (`otel_scope_name`, `otel_scope_version`, `otel_scope_schema_url`,
    /// `otel_scope_<attribute>`).
    pub promote_scope_metadata: bool,
}

/// Data points that could not be translated, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Dropped {
    /// Reason code, for `strata_discarded_samples_total{reason}`.
    pub reason: &'static str,
    pub message: String,
    pub points: usize,
}

/// A translated request.
#[derive(Debug, Default)]
pub struct TranslatedMetrics {
    pub request: WriteRequest,
    pub dropped: Vec<Dropped>,
}

/// Why a request cannot be translated at all.
#[derive(Debug, thiserror::Error)]
pub enum TranslateError {
    /// The series the request describes would take far more memory than
    /// its body (many attributes on many histogram buckets).
    #[error(
        "the request expands to more than {limit} bytes of series labels ({factor}x its {body} bytes); send smaller batches or fewer attributes per data point"
    )]
    TooLarge {
        limit: usize,
        factor: usize,
        body: usize,
    },
}

/// How many times its decoded size a request may grow into series labels.
pub const EXPANSION_FACTOR: usize = 16;

/// Between two samples of `target_info`, as Prometheus and Mimir write it
/// (half the default lookback), so it stays visible over a resource's range.
const TARGET_INFO_INTERVAL_MS: i64 = 150_000;
/// Most `target_info` samples one resource of one request produces.
const MAX_TARGET_INFO_SAMPLES: usize = 1000;

const SERVICE_NAME: &str = "service.name";
const SERVICE_NAMESPACE: &str = "service.namespace";
const SERVICE_INSTANCE_ID: &str = "service.instance.id";

/// Translates a decoded request whose body was `body_bytes` long.
pub fn translate_metrics(
    req: ExportMetricsServiceRequest,
    settings: &MetricsTranslation,
    body_bytes: usize,
) -> Result<TranslatedMetrics, TranslateError> {
    let limit = body_bytes
        .saturating_mul(EXPANSION_FACTOR)
        .saturating_add(1 << 20);
    let mut out = Output {
        series: Vec::new(),
        index: HashMap::new(),
        hasher: RandomState::default(),
        metadata: Vec::new(),
        families: HashSet::new(),
        dropped: Vec::new(),
        label_bytes: 0,
        limit,
    };
    for rm in req.resource_metrics {
        translate_resource(rm, settings, &mut out).map_err(|()| TranslateError::TooLarge {
            limit,
            factor: EXPANSION_FACTOR,
            body: body_bytes,
        })?;
    }
    Ok(TranslatedMetrics {
        request: WriteRequest {
            timeseries: out.series,
            metadata: out.metadata,
        },
        dropped: out.dropped,
    })
}

/// The series built so far; samples of one label set share a series.
struct Output {
    series: Vec<TimeSeries>,
    /// Series by the hash of their labels (keyed per process, so no
    /// input forces collisions).
    index: HashMap<u64, Vec<usize>>,
    hasher: RandomState,
    metadata: Vec<MetricMetadata>,
    families: HashSet<String>,
    dropped: Vec<Dropped>,
    label_bytes: usize,
    limit: usize,
}

/// A label set being built, sorted by name.
type LabelSet = BTreeMap<String, String>;

impl Output {
    /// Adds a sample (and exemplars) to the series of `labels` plus
    /// `__name__` = `name` and an optional extra label (`le`, `quantile`).
    fn add(
        &mut self,
        labels: &LabelSet,
        name: &str,
        extra: Option<(&str, String)>,
        sample: Sample,
        exemplars: Vec<Exemplar>,
    ) -> Result<(), ()> {
        self.add_owned(labels.clone(), name, extra, sample, exemplars)
    }

    /// [`Self::add`] taking the label set, whose strings become the series'.
    fn add_owned(
        &mut self,
        labels: LabelSet,
        name: &str,
        extra: Option<(&str, String)>,
        sample: Sample,
        exemplars: Vec<Exemplar>,
    ) -> Result<(), ()> {
        let mut all: Vec<Label> = Vec::with_capacity(labels.len() + 2);
        all.extend(
            labels
                .into_iter()
                .map(|(name, value)| Label { name, value }),
        );
        // The name and the bucket or quantile label win over attributes.
        for (n, v) in std::iter::once(("__name__", name.to_string())).chain(extra) {
            match all.binary_search_by(|l| l.name.as_str().cmp(n)) {
                Ok(i) => all[i].value = v,
                Err(i) => all.insert(
                    i,
                    Label {
                        name: n.to_string(),
                        value: v,
                    },
                ),
            }
        }
        let hash = self.hasher.hash_one(&all);
        let existing = self
            .index
            .get(&hash)
            .and_then(|ids| ids.iter().copied().find(|&i| self.series[i].labels == all));
        let idx = match existing {
            Some(i) => i,
            None => {
                self.label_bytes += all
                    .iter()
                    .map(|l| l.name.len() + l.value.len() + 48)
                    .sum::<usize>();
                if self.label_bytes > self.limit {
                    return Err(());
                }
                self.series.push(TimeSeries {
                    labels: all,
                    ..Default::default()
                });
                let i = self.series.len() - 1;
                self.index.entry(hash).or_default().push(i);
                i
            }
        };
        let ts = &mut self.series[idx];
        ts.samples.push(sample);
        ts.exemplars.extend(exemplars);
        Ok(())
    }

    fn metadata(&mut self, family: &str, kind: MetricType, help: &str, unit: String) {
        if self.families.insert(family.to_string()) {
            self.metadata.push(MetricMetadata {
                r#type: kind as i32,
                metric_family_name: family.to_string(),
                help: help.to_string(),
                unit,
            });
        }
    }

    fn drop_metric(&mut self, reason: &'static str, message: String, points: usize) {
        self.dropped.push(Dropped {
            reason,
            message,
            points,
        });
    }
}

/// Attributes as labels; keys that name the same label are joined with
/// `;` in the order of their keys, empty values are left out.
fn attribute_labels(
    mut attrs: Vec<KeyValue>,
    skip: impl Fn(&str) -> bool,
) -> Result<LabelSet, String> {
    attrs.retain(|kv| !skip(&kv.key));
    attrs.sort_by(|a, b| a.key.cmp(&b.key));
    let mut out = LabelSet::new();
    for kv in attrs {
        let name = LabelNaming::PROMETHEUS
            .into_label_name(kv.key)
            .map_err(|key| format!("attribute key {key:?} gives no label name"))?;
        let value = into_value_text(kv.value);
        if value.is_empty() {
            continue;
        }
        match out.get_mut(&name) {
            Some(existing) => {
                existing.push(';');
                existing.push_str(&value);
            }
            None => {
                out.insert(name, value);
            }
        }
    }
    Ok(out)
}

/// What one resource gives its series.
struct ResourceLabels {
    /// job, instance: set on every series, over any attribute.
    identity: Vec<(String, String)>,
    /// Promoted attributes: set unless a data point has the label.
    promoted: Vec<(String, String)>,
}

fn translate_resource(
    rm: ResourceMetrics,
    settings: &MetricsTranslation,
    out: &mut Output,
) -> Result<(), ()> {
    let attrs = rm.resource.map(|r| r.attributes).unwrap_or_default();
    let attr = |key: &str| {
        attrs
            .iter()
            .find(|kv| kv.key == key)
            .map(|kv| value_text(kv.value.as_ref()))
            .filter(|v| !v.is_empty())
    };
    let mut identity = Vec::new();
    if let Some(service) = attr(SERVICE_NAME) {
        let job = match attr(SERVICE_NAMESPACE) {
            Some(ns) => format!("{ns}/{service}"),
            None => service,
        };
        identity.push(("job".to_string(), job));
    }
    if let Some(instance) = attr(SERVICE_INSTANCE_ID) {
        identity.push(("instance".to_string(), instance));
    }
    let mut promoted = Vec::new();
    for key in &settings.promote_resource_attributes {
        let (Some(value), Some(name)) = (attr(key), LabelNaming::PROMETHEUS.label_name(key)) else {
            continue;
        };
        promoted.retain(|(n, _): &(String, String)| *n != name);
        promoted.push((name, value));
    }
    let resource = ResourceLabels { identity, promoted };

    let mut times = TimeRange::default();
    for sm in rm.scope_metrics {
        let scope_labels = if settings.promote_scope_metadata {
            scope_labels(sm.scope.as_ref(), &sm.schema_url)
        } else {
            Vec::new()
        };
        for metric in sm.metrics {
            translate_metric(metric, settings, &resource, &scope_labels, &mut times, out)?;
        }
    }
    let Some((first, last)) = times.range() else {
        return Ok(());
    };
    let identifying = |k: &str| {
        !settings.keep_identifying_resource_attributes
            && matches!(k, SERVICE_NAME | SERVICE_NAMESPACE | SERVICE_INSTANCE_ID)
    };
    if !attrs.iter().any(|kv| {
        !matches!(
            kv.key.as_str(),
            SERVICE_NAME | SERVICE_NAMESPACE | SERVICE_INSTANCE_ID
        )
    }) || resource.identity.is_empty()
    {
        return Ok(());
    }
    let Ok(mut labels) = attribute_labels(attrs, identifying) else {
        out.drop_metric(
            "otlp_invalid_attribute",
            "a resource attribute key gives no label name; target_info not written".into(),
            1,
        );
        return Ok(());
    };
    for (n, v) in &resource.identity {
        labels.insert(n.clone(), v.clone());
    }
    out.metadata(
        "target_info",
        MetricType::Gauge,
        "Target metadata",
        String::new(),
    );
    // Samples before `last`, of which the newest are kept within the bound.
    let d = last - first;
    let before_last = d / TARGET_INFO_INTERVAL_MS + i64::from(d % TARGET_INFO_INTERVAL_MS != 0);
    let skip = (before_last - (MAX_TARGET_INFO_SAMPLES as i64 - 1)).max(0);
    let mut t = first + TARGET_INFO_INTERVAL_MS * skip;
    while t < last {
        out.add(
            &labels,
            "target_info",
            None,
            Sample {
                value: 1.0,
                timestamp: t,
            },
            Vec::new(),
        )?;
        t += TARGET_INFO_INTERVAL_MS;
    }
    out.add(
        &labels,
        "target_info",
        None,
        Sample {
            value: 1.0,
            timestamp: last,
        },
        Vec::new(),
    )
}

fn scope_labels(scope: Option<&InstrumentationScope>, schema_url: &str) -> Vec<(String, String)> {
    let Some(scope) = scope.filter(|s| !s.name.is_empty()) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for kv in &scope.attributes {
        let value = value_text(kv.value.as_ref());
        if let Some(name) = LabelNaming::PROMETHEUS.label_name(&format!("otel_scope_{}", kv.key))
            && !value.is_empty()
        {
            out.push((name, value));
        }
    }
    for (name, value) in [
        ("otel_scope_name", &scope.name),
        ("otel_scope_version", &scope.version),
        ("otel_scope_schema_url", &schema_url.to_string()),
    ] {
        if !value.is_empty() {
            out.push((name.to_string(), value.clone()));
        }
    }
    out
}

/// The first and last data point times of a resource, in milliseconds.
#[derive(Default)]
struct TimeRange(Option<(i64, i64)>);

impl TimeRange {
    fn see(&mut self, t: i64) {
        self.0 = Some(match self.0 {
            None => (t, t),
            Some((a, b)) => (a.min(t), b.max(t)),
        });
    }
    fn range(&self) -> Option<(i64, i64)> {
        self.0
    }
}

fn millis(ns: u64) -> i64 {
    // u64::MAX / 1e6 fits an i64.
    (ns / 1_000_000) as i64
}

fn no_recorded_value(flags: u32) -> bool {
    flags & DataPointFlags::NoRecordedValueMask as u32 != 0
}

fn translate_metric(
    metric: Metric,
    settings: &MetricsTranslation,
    resource: &ResourceLabels,
    scope: &[(String, String)],
    times: &mut TimeRange,
    out: &mut Output,
) -> Result<(), ()> {
    let Some(data) = metric.data else {
        return Ok(());
    };
    let (kind, family_type, temporality, points) = match &data {
        Data::Gauge(g) => (
            NameKind::Gauge,
            MetricType::Gauge,
            None,
            g.data_points.len(),
        ),
        Data::Sum(s) if s.is_monotonic => (
            NameKind::Counter,
            MetricType::Counter,
            Some(s.aggregation_temporality),
            s.data_points.len(),
        ),
        Data::Sum(s) => (
            NameKind::Other,
            MetricType::Gauge,
            Some(s.aggregation_temporality),
            s.data_points.len(),
        ),
        Data::Histogram(h) => (
            NameKind::Other,
            MetricType::Histogram,
            Some(h.aggregation_temporality),
            h.data_points.len(),
        ),
        Data::Summary(s) => (
            NameKind::Other,
            MetricType::Summary,
            None,
            s.data_points.len(),
        ),
        Data::ExponentialHistogram(h) => {
            for p in &h.data_points {
                times.see(millis(p.time_unix_nano));
            }
            if !h.data_points.is_empty() {
                out.drop_metric(
                    "native_histogram_unsupported",
                    format!(
                        "exponential histogram {:?} needs native histograms, which Strata does not store yet; configure explicit-bucket histograms for it",
                        metric.name
                    ),
                    h.data_points.len(),
                );
            }
            return Ok(());
        }
    };
    let times_of = |times: &mut TimeRange| match &data {
        Data::Gauge(g) => g
            .data_points
            .iter()
            .for_each(|p| times.see(millis(p.time_unix_nano))),
        Data::Sum(s) => s
            .data_points
            .iter()
            .for_each(|p| times.see(millis(p.time_unix_nano))),
        Data::Histogram(h) => h
            .data_points
            .iter()
            .for_each(|p| times.see(millis(p.time_unix_nano))),
        Data::Summary(s) => s
            .data_points
            .iter()
            .for_each(|p| times.see(millis(p.time_unix_nano))),
        Data::ExponentialHistogram(_) => {}
    };
    times_of(times);
    if points == 0 {
        return Ok(());
    }
    if let Some(t) = temporality
        && t != AggregationTemporality::Cumulative as i32
    {
        let (reason, what) = if t == AggregationTemporality::Delta as i32 {
            ("otlp_delta_temporality", "delta temporality")
        } else {
            ("otlp_invalid_temporality", "no aggregation temporality")
        };
        out.drop_metric(
            reason,
            format!(
                "metric {:?} has {what}; Strata stores cumulative series only: configure the SDK's temporality preference as cumulative, or convert with the OpenTelemetry Collector's deltatocumulative processor",
                metric.name
            ),
            points,
        );
        return Ok(());
    }
    let name = match metric_name(&metric.name, &metric.unit, kind, settings.names) {
        Ok(n) => n,
        Err(e) => {
            out.drop_metric("metric_name_invalid", e, points);
            return Ok(());
        }
    };
    out.metadata(
        &name,
        family_type,
        &metric.description,
        unit_text(&metric.unit),
    );
    let series_labels = |attrs: Vec<KeyValue>| -> Result<LabelSet, String> {
        let mut labels = attribute_labels(attrs, |k| k == "__name__")?;
        for (n, v) in &resource.promoted {
            labels.entry(n.clone()).or_insert_with(|| v.clone());
        }
        for (n, v) in resource.identity.iter().chain(scope) {
            labels.insert(n.clone(), v.clone());
        }
        Ok(labels)
    };
    let mut bad_points = 0;
    let mut first_error = None;
    let mut bad = |e: String| {
        bad_points += 1;
        first_error.get_or_insert(e);
    };
    match data {
        Data::Gauge(g) => {
            for mut p in g.data_points {
                match series_labels(std::mem::take(&mut p.attributes)) {
                    Ok(labels) => add_number(out, labels, &name, p, false)?,
                    Err(e) => bad(e),
                }
            }
        }
        Data::Sum(s) => {
            for mut p in s.data_points {
                match series_labels(std::mem::take(&mut p.attributes)) {
                    Ok(labels) => add_number(out, labels, &name, p, true)?,
                    Err(e) => bad(e),
                }
            }
        }
        Data::Histogram(h) => {
            for mut p in h.data_points {
                match series_labels(std::mem::take(&mut p.attributes)) {
                    Ok(labels) => add_histogram(out, &labels, &name, p)?,
                    Err(e) => bad(e),
                }
            }
        }
        Data::Summary(s) => {
            for mut p in s.data_points {
                match series_labels(std::mem::take(&mut p.attributes)) {
                    Ok(labels) => add_summary(out, &labels, &name, p)?,
                    Err(e) => bad(e),
                }
            }
        }
        Data::ExponentialHistogram(_) => {}
    }
    if let Some(e) = first_error {
        out.drop_metric(
            "label_invalid",
            format!("{bad_points} data points of metric {name:?} dropped: {e}"),
            bad_points,
        );
    }
    Ok(())
}

fn value_or_stale(v: f64, flags: u32) -> f64 {
    if no_recorded_value(flags) {
        strata_model::stale_nan()
    } else {
        v
    }
}

fn add_number(
    out: &mut Output,
    labels: LabelSet,
    name: &str,
    p: NumberDataPoint,
    with_exemplars: bool,
) -> Result<(), ()> {
    let t = millis(p.time_unix_nano);
    let v = match p.value {
        Some(number_data_point::Value::AsDouble(d)) => d,
        Some(number_data_point::Value::AsInt(i)) => i as f64,
        None => 0.0,
    };
    let exemplars = if with_exemplars {
        p.exemplars.iter().map(|e| convert_exemplar(e, t)).collect()
    } else {
        Vec::new()
    };
    out.add_owned(
        labels,
        name,
        None,
        Sample {
            value: value_or_stale(v, p.flags),
            timestamp: t,
        },
        exemplars,
    )
}

fn add_histogram(
    out: &mut Output,
    labels: &LabelSet,
    name: &str,
    p: HistogramDataPoint,
) -> Result<(), ()> {
    let t = millis(p.time_unix_nano);
    let sample = |v: f64| Sample {
        value: value_or_stale(v, p.flags),
        timestamp: t,
    };
    add_sum_and_count(out, labels, name, p.sum, p.count, &sample)?;
    // Each exemplar goes to the first bucket its value fits in.
    let buckets = p.explicit_bounds.len().min(p.bucket_counts.len());
    let mut by_bucket: Vec<Vec<Exemplar>> = vec![Vec::new(); buckets + 1];
    for e in &p.exemplars {
        let converted = convert_exemplar(e, t);
        let i = p.explicit_bounds[..buckets]
            .iter()
            .position(|b| converted.value <= *b)
            .unwrap_or(buckets);
        by_bucket[i].push(converted);
    }
    let bucket_name = format!("{name}_bucket");
    let mut cumulative: u64 = 0;
    for (i, exemplars) in by_bucket.into_iter().enumerate() {
        let (le, v) = if i < buckets {
            cumulative = cumulative.saturating_add(p.bucket_counts[i]);
            (bound_text(p.explicit_bounds[i]), cumulative)
        } else {
            ("+Inf".to_string(), p.count)
        };
        out.add(
            labels,
            &bucket_name,
            Some(("le", le)),
            sample(v as f64),
            exemplars,
        )?;
    }
    Ok(())
}

/// The `_sum` (when the point has one) and `_count` series of a histogram
/// or summary point.
fn add_sum_and_count(
    out: &mut Output,
    labels: &LabelSet,
    name: &str,
    sum: Option<f64>,
    count: u64,
    sample: &dyn Fn(f64) -> Sample,
) -> Result<(), ()> {
    if let Some(sum) = sum {
        out.add(
            labels,
            &format!("{name}_sum"),
            None,
            sample(sum),
            Vec::new(),
        )?;
    }
    out.add(
        labels,
        &format!("{name}_count"),
        None,
        sample(count as f64),
        Vec::new(),
    )
}

fn add_summary(
    out: &mut Output,
    labels: &LabelSet,
    name: &str,
    p: SummaryDataPoint,
) -> Result<(), ()> {
    let t = millis(p.time_unix_nano);
    let sample = |v: f64| Sample {
        value: value_or_stale(v, p.flags),
        timestamp: t,
    };
    add_sum_and_count(out, labels, name, Some(p.sum), p.count, &sample)?;
    for q in &p.quantile_values {
        out.add(
            labels,
            name,
            Some(("quantile", bound_text(q.quantile))),
            sample(q.value),
            Vec::new(),
        )?;
    }
    Ok(())
}

/// A bucket bound or quantile as Prometheus writes it: shortest fixed
/// notation, `+Inf`/`-Inf`/`NaN`.
fn bound_text(b: f64) -> String {
    if b.is_infinite() {
        if b > 0.0 { "+Inf" } else { "-Inf" }.to_string()
    } else if b.is_nan() {
        "NaN".to_string()
    } else {
        format!("{b}")
    }
}

/// Longest exemplar label set, in characters, as Prometheus checks it
/// before adding filtered attributes.
const MAX_EXEMPLAR_RUNES: usize = 128;

fn convert_exemplar(e: &OtlpExemplar, point_t: i64) -> Exemplar {
    let mut labels: Vec<Label> = Vec::new();
    let mut runes = 0;
    for (name, id) in [("trace_id", &e.trace_id), ("span_id", &e.span_id)] {
        if let Some(hex) = id_hex(id) {
            runes += name.len() + hex.len();
            labels.push(Label {
                name: name.into(),
                value: hex,
            });
        }
    }
    // Filtered attributes only when all of them fit; the ids always stay.
    // Their keys become label names (Prometheus keeps them raw; Strata's
    // exemplar labels follow the classic label-name rules).
    let mut filtered = Vec::new();
    for kv in &e.filtered_attributes {
        let (Some(name), value) = (
            LabelNaming::PROMETHEUS.label_name(&kv.key),
            value_text(kv.value.as_ref()),
        ) else {
            continue;
        };
        runes += name.chars().count() + value.chars().count();
        filtered.push(Label { name, value });
    }
    if runes <= MAX_EXEMPLAR_RUNES {
        labels.extend(filtered);
    }
    labels.sort_by(|a, b| a.name.cmp(&b.name));
    labels.dedup_by(|a, b| a.name == b.name);
    let value = match e.value {
        Some(exemplar::Value::AsDouble(d)) => d,
        Some(exemplar::Value::AsInt(i)) => i as f64,
        None => 0.0,
    };
    let t = millis(e.time_unix_nano);
    Exemplar {
        labels,
        value,
        timestamp: if t == 0 { point_t } else { t },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::{AnyValue, any_value};
    use opentelemetry_proto::tonic::metrics::v1::{
        ExponentialHistogram, Gauge, Histogram, ScopeMetrics, Sum, Summary,
        summary_data_point::ValueAtQuantile,
    };
    use opentelemetry_proto::tonic::resource::v1::Resource;

    const T0: u64 = 1_700_000_000_000_000_000;
    const T0_MS: i64 = 1_700_000_000_000;

    fn kv(k: &str, v: &str) -> KeyValue {
        KeyValue {
            key: k.into(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue(v.into())),
            }),
            ..Default::default()
        }
    }

    fn request(resource: Vec<KeyValue>, metrics: Vec<Metric>) -> ExportMetricsServiceRequest {
        ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                resource: Some(Resource {
                    attributes: resource,
                    ..Default::default()
                }),
                scope_metrics: vec![ScopeMetrics {
                    scope: Some(InstrumentationScope {
                        name: "my.lib".into(),
                        version: "1.2".into(),
                        ..Default::default()
                    }),
                    metrics,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }

    fn service() -> Vec<KeyValue> {
        vec![
            kv("service.name", "api"),
            kv("service.namespace", "shop"),
            kv("service.instance.id", "pod-1"),
            kv("host.name", "node-a"),
            kv("k8s.cluster.name", "prod"),
        ]
    }

    fn number(attrs: Vec<KeyValue>, t: u64, v: f64) -> NumberDataPoint {
        NumberDataPoint {
            attributes: attrs,
            time_unix_nano: t,
            value: Some(number_data_point::Value::AsDouble(v)),
            ..Default::default()
        }
    }

    fn metric(name: &str, unit: &str, data: Data) -> Metric {
        Metric {
            name: name.into(),
            unit: unit.into(),
            description: format!("about {name}"),
            data: Some(data),
            ..Default::default()
        }
    }

    fn counter(points: Vec<NumberDataPoint>, temporality: AggregationTemporality) -> Data {
        Data::Sum(Sum {
            data_points: points,
            aggregation_temporality: temporality as i32,
            is_monotonic: true,
        })
    }

    /// Series as `name{l="v",...}` texts with their samples.
    fn series(t: &TranslatedMetrics) -> BTreeMap<String, Vec<(i64, f64)>> {
        t.request
            .timeseries
            .iter()
            .map(|ts| {
                let name = ts
                    .labels
                    .iter()
                    .find(|l| l.name == "__name__")
                    .map(|l| l.value.clone())
                    .unwrap_or_default();
                let rest: Vec<String> = ts
                    .labels
                    .iter()
                    .filter(|l| l.name != "__name__")
                    .map(|l| format!("{}={:?}", l.name, l.value))
                    .collect();
                (
                    format!("{name}{{{}}}", rest.join(",")),
                    ts.samples.iter().map(|s| (s.timestamp, s.value)).collect(),
                )
            })
            .collect()
    }

    fn translate(
        req: ExportMetricsServiceRequest,
        settings: &MetricsTranslation,
    ) -> TranslatedMetrics {
        translate_metrics(req, settings, 1 << 20).unwrap()
    }

    #[test]
    fn counters_get_job_instance_and_target_info() {
        let req = request(
            service(),
            vec![metric(
                "process.cpu.time",
                "s",
                counter(
                    vec![number(vec![kv("state", "user")], T0, 12.5)],
                    AggregationTemporality::Cumulative,
                ),
            )],
        );
        let out = translate(req, &MetricsTranslation::default());
        let got = series(&out);
        assert_eq!(
            got[r#"process_cpu_time_seconds_total{instance="pod-1",job="shop/api",state="user"}"#],
            vec![(T0_MS, 12.5)]
        );
        assert_eq!(
            got[r#"target_info{host_name="node-a",instance="pod-1",job="shop/api",k8s_cluster_name="prod"}"#],
            vec![(T0_MS, 1.0)]
        );
        assert_eq!(got.len(), 2, "{got:?}");
        let meta: Vec<(String, i32, String, String)> = out
            .request
            .metadata
            .iter()
            .map(|m| {
                (
                    m.metric_family_name.clone(),
                    m.r#type,
                    m.help.clone(),
                    m.unit.clone(),
                )
            })
            .collect();
        assert_eq!(
            meta,
            vec![
                (
                    "process_cpu_time_seconds_total".into(),
                    MetricType::Counter as i32,
                    "about process.cpu.time".into(),
                    "seconds".into()
                ),
                (
                    "target_info".into(),
                    MetricType::Gauge as i32,
                    "Target metadata".into(),
                    String::new()
                ),
            ]
        );
        assert!(out.dropped.is_empty());
    }

    #[test]
    fn histograms_are_classic_buckets_with_exemplars_in_their_bucket() {
        let p = HistogramDataPoint {
            attributes: vec![kv("route", "/a")],
            time_unix_nano: T0,
            count: 10,
            sum: Some(4.5),
            bucket_counts: vec![2, 5, 3],
            explicit_bounds: vec![0.1, 1.0],
            exemplars: vec![OtlpExemplar {
                time_unix_nano: T0 - 1_000_000,
                value: Some(exemplar::Value::AsDouble(0.5)),
                trace_id: vec![0xab; 16],
                span_id: vec![0xcd; 8],
                filtered_attributes: vec![kv("user.id", "42")],
            }],
            ..Default::default()
        };
        let req = request(
            vec![kv("service.name", "api")],
            vec![metric(
                "http.server.duration",
                "ms",
                Data::Histogram(Histogram {
                    data_points: vec![p],
                    aggregation_temporality: AggregationTemporality::Cumulative as i32,
                }),
            )],
        );
        let out = translate(req, &MetricsTranslation::default());
        let got = series(&out);
        let n = "http_server_duration_milliseconds";
        assert_eq!(
            got[&format!(r#"{n}_bucket{{job="api",le="0.1",route="/a"}}"#)],
            vec![(T0_MS, 2.0)]
        );
        assert_eq!(
            got[&format!(r#"{n}_bucket{{job="api",le="1",route="/a"}}"#)],
            vec![(T0_MS, 7.0)]
        );
        assert_eq!(
            got[&format!(r#"{n}_bucket{{job="api",le="+Inf",route="/a"}}"#)],
            vec![(T0_MS, 10.0)]
        );
        assert_eq!(
            got[&format!(r#"{n}_sum{{job="api",route="/a"}}"#)],
            vec![(T0_MS, 4.5)]
        );
        assert_eq!(
            got[&format!(r#"{n}_count{{job="api",route="/a"}}"#)],
            vec![(T0_MS, 10.0)]
        );
        // No attribute besides service.name: no target_info.
        assert_eq!(got.len(), 5, "{got:?}");
        let with_exemplar: Vec<&TimeSeries> = out
            .request
            .timeseries
            .iter()
            .filter(|ts| !ts.exemplars.is_empty())
            .collect();
        assert_eq!(with_exemplar.len(), 1);
        assert!(
            with_exemplar[0]
                .labels
                .iter()
                .any(|l| l.name == "le" && l.value == "1")
        );
        let e = &with_exemplar[0].exemplars[0];
        assert_eq!(e.timestamp, T0_MS - 1);
        let labels: Vec<(&str, &str)> = e
            .labels
            .iter()
            .map(|l| (l.name.as_str(), l.value.as_str()))
            .collect();
        assert_eq!(
            labels,
            vec![
                ("span_id", "cdcdcdcdcdcdcdcd"),
                ("trace_id", "abababababababababababababababab"),
                ("user_id", "42")
            ]
        );
        assert_eq!(out.request.metadata[0].r#type, MetricType::Histogram as i32);
        assert_eq!(out.request.metadata[0].metric_family_name, n);
    }

    #[test]
    fn gauges_summaries_and_non_monotonic_sums() {
        let summary = SummaryDataPoint {
            time_unix_nano: T0,
            count: 4,
            sum: 2.0,
            quantile_values: vec![
                ValueAtQuantile {
                    quantile: 0.5,
                    value: 0.4,
                },
                ValueAtQuantile {
                    quantile: 0.99,
                    value: 0.9,
                },
            ],
            ..Default::default()
        };
        let req = request(
            vec![kv("service.name", "api")],
            vec![
                metric(
                    "memory.utilization",
                    "1",
                    Data::Gauge(Gauge {
                        data_points: vec![number(vec![], T0, 0.25)],
                    }),
                ),
                metric(
                    "queue.size",
                    "{items}",
                    Data::Sum(Sum {
                        data_points: vec![number(vec![], T0, 3.0)],
                        aggregation_temporality: AggregationTemporality::Cumulative as i32,
                        is_monotonic: false,
                    }),
                ),
                metric(
                    "rpc.latency",
                    "s",
                    Data::Summary(Summary {
                        data_points: vec![summary],
                    }),
                ),
            ],
        );
        let out = translate(req, &MetricsTranslation::default());
        let got = series(&out);
        assert_eq!(
            got[r#"memory_utilization_ratio{job="api"}"#],
            vec![(T0_MS, 0.25)]
        );
        assert_eq!(got[r#"queue_size{job="api"}"#], vec![(T0_MS, 3.0)]);
        assert_eq!(
            got[r#"rpc_latency_seconds{job="api",quantile="0.5"}"#],
            vec![(T0_MS, 0.4)]
        );
        assert_eq!(
            got[r#"rpc_latency_seconds{job="api",quantile="0.99"}"#],
            vec![(T0_MS, 0.9)]
        );
        assert_eq!(
            got[r#"rpc_latency_seconds_sum{job="api"}"#],
            vec![(T0_MS, 2.0)]
        );
        assert_eq!(
            got[r#"rpc_latency_seconds_count{job="api"}"#],
            vec![(T0_MS, 4.0)]
        );
        let types: Vec<i32> = out.request.metadata.iter().map(|m| m.r#type).collect();
        assert_eq!(
            types,
            vec![
                MetricType::Gauge as i32,
                MetricType::Gauge as i32,
                MetricType::Summary as i32
            ]
        );
    }

    #[test]
    fn delta_and_exponential_histograms_are_dropped_and_the_rest_kept() {
        let req = request(
            vec![kv("service.name", "api")],
            vec![
                metric(
                    "requests",
                    "",
                    counter(
                        vec![number(vec![], T0, 1.0); 3],
                        AggregationTemporality::Delta,
                    ),
                ),
                metric(
                    "latency",
                    "s",
                    Data::ExponentialHistogram(ExponentialHistogram {
                        data_points: vec![Default::default()],
                        aggregation_temporality: AggregationTemporality::Cumulative as i32,
                    }),
                ),
                metric(
                    "kept",
                    "",
                    counter(
                        vec![number(vec![], T0, 1.0)],
                        AggregationTemporality::Cumulative,
                    ),
                ),
            ],
        );
        let out = translate(req, &MetricsTranslation::default());
        assert_eq!(
            series(&out).keys().collect::<Vec<_>>(),
            vec![r#"kept_total{job="api"}"#]
        );
        let reasons: Vec<(&str, usize)> =
            out.dropped.iter().map(|d| (d.reason, d.points)).collect();
        assert_eq!(
            reasons,
            vec![
                ("otlp_delta_temporality", 3),
                ("native_histogram_unsupported", 1)
            ]
        );
        assert!(
            out.dropped[0]
                .message
                .contains("\"requests\" has delta temporality"),
            "{}",
            out.dropped[0].message
        );
    }

    #[test]
    fn colliding_promoted_scope_and_stale() {
        let mut stale = number(
            vec![
                kv("foo.bar", "a"),
                kv("foo_bar", "b"),
                kv("cluster", "mine"),
            ],
            T0,
            1.0,
        );
        stale.flags = DataPointFlags::NoRecordedValueMask as u32;
        let req = request(
            service(),
            vec![metric(
                "g",
                "",
                Data::Gauge(Gauge {
                    data_points: vec![stale],
                }),
            )],
        );
        let settings = MetricsTranslation {
            promote_resource_attributes: vec!["k8s.cluster.name".into(), "host.name".into()],
            promote_scope_metadata: true,
            ..Default::default()
        };
        let out = translate(req, &settings);
        let ts = out
            .request
            .timeseries
            .iter()
            .find(|ts| ts.labels.iter().any(|l| l.value == "g"))
            .unwrap();
        let labels: Vec<(&str, &str)> = ts
            .labels
            .iter()
            .map(|l| (l.name.as_str(), l.value.as_str()))
            .collect();
        assert_eq!(
            labels,
            vec![
                ("__name__", "g"),
                ("cluster", "mine"),
                ("foo_bar", "a;b"),
                ("host_name", "node-a"),
                ("instance", "pod-1"),
                ("job", "shop/api"),
                ("k8s_cluster_name", "prod"),
                ("otel_scope_name", "my.lib"),
                ("otel_scope_version", "1.2"),
            ]
        );
        assert!(strata_model::is_stale_nan(ts.samples[0].value));
    }

    #[test]
    fn target_info_spans_the_resources_points() {
        let minute = 60_000_000_000;
        let req = request(
            service(),
            vec![metric(
                "g",
                "",
                Data::Gauge(Gauge {
                    data_points: vec![
                        number(vec![], T0, 1.0),
                        number(vec![], T0 + 6 * minute, 2.0),
                    ],
                }),
            )],
        );
        let out = translate(req, &MetricsTranslation::default());
        let got = series(&out);
        let info = got
            .iter()
            .find(|(k, _)| k.starts_with("target_info"))
            .unwrap()
            .1;
        let times: Vec<i64> = info.iter().map(|(t, _)| t - T0_MS).collect();
        assert_eq!(times, vec![0, 150_000, 300_000, 360_000]);
        // A hostile span (t=0 to now) is bounded.
        let req = request(
            service(),
            vec![metric(
                "g",
                "",
                Data::Gauge(Gauge {
                    data_points: vec![number(vec![], 0, 1.0), number(vec![], T0, 2.0)],
                }),
            )],
        );
        let out = translate(req, &MetricsTranslation::default());
        let got = series(&out);
        let info = got
            .iter()
            .find(|(k, _)| k.starts_with("target_info"))
            .unwrap()
            .1;
        assert_eq!(info.len(), MAX_TARGET_INFO_SAMPLES);
        assert_eq!(info.last().unwrap().0, T0_MS);
    }

    #[test]
    fn expansion_beyond_the_bound_is_refused() {
        let attrs: Vec<KeyValue> = (0..20)
            .map(|i| kv(&format!("a{i}"), &"v".repeat(1000)))
            .collect();
        let p = HistogramDataPoint {
            attributes: attrs,
            time_unix_nano: T0,
            count: 1,
            bucket_counts: vec![0; 2001],
            explicit_bounds: (0..2000).map(f64::from).collect(),
            ..Default::default()
        };
        let req = request(
            vec![],
            vec![metric(
                "h",
                "",
                Data::Histogram(Histogram {
                    data_points: vec![p],
                    aggregation_temporality: AggregationTemporality::Cumulative as i32,
                }),
            )],
        );
        let body = prost::Message::encoded_len(&req);
        let err = translate_metrics(req, &MetricsTranslation::default(), body).unwrap_err();
        assert!(err.to_string().contains("expands to more than"), "{err}");
    }

    #[test]
    fn without_suffixes_as_mimir_names_them() {
        let req = request(
            vec![kv("service.name", "api")],
            vec![metric(
                "process.cpu.time",
                "s",
                counter(
                    vec![number(vec![], T0, 1.0)],
                    AggregationTemporality::Cumulative,
                ),
            )],
        );
        let settings = MetricsTranslation {
            names: NameStrategy::WithoutSuffixes,
            ..Default::default()
        };
        let out = translate(req, &settings);
        assert!(
            series(&out).contains_key(r#"process_cpu_time{job="api"}"#),
            "{:?}",
            series(&out)
        );
    }
}
