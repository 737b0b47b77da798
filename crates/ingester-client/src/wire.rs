//! Conversions between Strata's types and the ingester service's protobuf
//! messages.

use promql_parser::parser::token::{T_EQL, T_EQL_REGEX, T_NEQ, T_NEQ_REGEX};
use strata_model::head_stats::HeadStats;
use strata_model::logs::{EntrySize, LineFilter, LogEntry};
use strata_model::metadata::{MetricMetadata, MetricType};
use strata_model::{Exemplar, Label, Labels, MatchOp, Matcher, Sample};
use strata_proto::ingester::label_matcher::Type as MatcherType;
use strata_proto::ingester::line_filter::Type as FilterType;
use strata_proto::ingester::{
    HeadStatsResponse, LabelMatcher, LineFilter as PFilter, LogEntry as PLogEntry,
    LogStream as PLogStream, NameCount, Rejection,
};
use strata_proto::prometheus::{
    Exemplar as PExemplar, Label as PLabel, MetricMetadata as PMetadata, Sample as PSample,
    TimeSeries,
};
use strata_storage::BlockMeta;
use tonic::Status;

use crate::ClientError;
use crate::outcome::{ReasonName, Rejected};

/// Matchers as the wire carries them.
pub fn matchers_to_proto(matchers: &[Matcher]) -> Vec<LabelMatcher> {
    matchers
        .iter()
        .map(|m| {
            let t = match &m.op {
                MatchOp::Equal => MatcherType::Eq,
                MatchOp::NotEqual => MatcherType::Neq,
                MatchOp::Re(_) => MatcherType::Re,
                MatchOp::NotRe(_) => MatcherType::Nre,
            };
            LabelMatcher {
                r#type: t as i32,
                name: m.name.clone(),
                value: m.value.clone(),
            }
        })
        .collect()
}

/// Matchers from the wire; a bad regex or type is the caller's error.
pub fn matchers_from_proto(matchers: &[LabelMatcher]) -> Result<Vec<Matcher>, Status> {
    matchers
        .iter()
        .map(|m| {
            let token = match MatcherType::try_from(m.r#type) {
                Ok(MatcherType::Eq) => T_EQL,
                Ok(MatcherType::Neq) => T_NEQ,
                Ok(MatcherType::Re) => T_EQL_REGEX,
                Ok(MatcherType::Nre) => T_NEQ_REGEX,
                Err(_) => {
                    return Err(Status::invalid_argument(format!(
                        "unknown matcher type {}",
                        m.r#type
                    )));
                }
            };
            Matcher::new_matcher(token, m.name.clone(), m.value.clone())
                .map_err(|e| Status::invalid_argument(format!("bad matcher {}: {e}", m.name)))
        })
        .collect()
}

pub fn filters_to_proto(filters: &[LineFilter]) -> Vec<PFilter> {
    filters
        .iter()
        .map(|f| {
            let (t, pattern, alternatives) = match f {
                LineFilter::Contains(s) => (FilterType::Contains, s.clone(), Vec::new()),
                LineFilter::NotContains(s) => (FilterType::NotContains, s.clone(), Vec::new()),
                LineFilter::Regex(r) => (FilterType::Regex, r.as_str().to_string(), Vec::new()),
                LineFilter::NotRegex(r) => {
                    (FilterType::NotRegex, r.as_str().to_string(), Vec::new())
                }
                LineFilter::Any(alts) => (FilterType::Any, String::new(), filters_to_proto(alts)),
            };
            PFilter {
                r#type: t as i32,
                pattern,
                alternatives,
            }
        })
        .collect()
}

pub fn filters_from_proto(filters: &[PFilter]) -> Result<Vec<LineFilter>, Status> {
    let regex = |p: &str| {
        regex::Regex::new(p)
            .map_err(|e| Status::invalid_argument(format!("bad line filter regex {p:?}: {e}")))
    };
    filters
        .iter()
        .map(|f| {
            Ok(match FilterType::try_from(f.r#type) {
                Ok(FilterType::Contains) => LineFilter::Contains(f.pattern.clone()),
                Ok(FilterType::NotContains) => LineFilter::NotContains(f.pattern.clone()),
                Ok(FilterType::Regex) => LineFilter::Regex(regex(&f.pattern)?),
                Ok(FilterType::NotRegex) => LineFilter::NotRegex(regex(&f.pattern)?),
                Ok(FilterType::Any) => LineFilter::Any(filters_from_proto(&f.alternatives)?),
                Err(_) => {
                    return Err(Status::invalid_argument(format!(
                        "unknown line filter type {}",
                        f.r#type
                    )));
                }
            })
        })
        .collect()
}

/// A series' exemplars as the wire carries them (a series without samples).
pub fn exemplars_to_proto<'a>(
    series: &Labels,
    exemplars: impl IntoIterator<Item = &'a Exemplar>,
) -> TimeSeries {
    TimeSeries {
        labels: labels_to_proto(series),
        exemplars: exemplars
            .into_iter()
            .map(|e| PExemplar {
                labels: labels_to_proto(&e.labels),
                value: e.value,
                timestamp: e.t,
            })
            .collect(),
        ..Default::default()
    }
}

/// A series' labels and its exemplars from the wire.
pub fn exemplars_from_proto(ts: TimeSeries) -> (Labels, Vec<Exemplar>) {
    let exemplars = ts
        .exemplars
        .into_iter()
        .map(|e| Exemplar {
            labels: labels_from_proto(e.labels),
            value: e.value,
            t: e.timestamp,
        })
        .collect();
    (labels_from_proto(ts.labels), exemplars)
}

pub fn head_stats_to_proto(s: HeadStats) -> HeadStatsResponse {
    let list = |l: Vec<(String, u64)>| -> Vec<NameCount> {
        l.into_iter()
            .map(|(name, count)| NameCount { name, count })
            .collect()
    };
    HeadStatsResponse {
        num_series: s.num_series,
        num_label_pairs: s.num_label_pairs,
        chunk_count: s.chunk_count,
        min_time: s.min_time,
        max_time: s.max_time,
        series_by_metric: list(s.series_by_metric),
        values_by_label: list(s.values_by_label),
        bytes_by_label: list(s.bytes_by_label),
        series_by_pair: list(s.series_by_pair),
    }
}

pub fn head_stats_from_proto(r: HeadStatsResponse) -> HeadStats {
    let list = |l: Vec<NameCount>| -> Vec<(String, u64)> {
        l.into_iter().map(|n| (n.name, n.count)).collect()
    };
    HeadStats {
        num_series: r.num_series,
        num_label_pairs: r.num_label_pairs,
        chunk_count: r.chunk_count,
        min_time: r.min_time,
        max_time: r.max_time,
        series_by_metric: list(r.series_by_metric),
        values_by_label: list(r.values_by_label),
        bytes_by_label: list(r.bytes_by_label),
        series_by_pair: list(r.series_by_pair),
    }
}

pub fn metadata_to_proto(m: &MetricMetadata) -> PMetadata {
    PMetadata {
        r#type: m.kind.to_proto(),
        metric_family_name: m.metric_family.clone(),
        help: m.help.clone(),
        unit: m.unit.clone(),
    }
}

pub fn metadata_from_proto(m: PMetadata) -> MetricMetadata {
    MetricMetadata {
        kind: MetricType::from_proto(m.r#type),
        metric_family: m.metric_family_name,
        help: m.help,
        unit: m.unit,
    }
}

pub fn labels_to_proto(labels: &Labels) -> Vec<PLabel> {
    labels
        .iter()
        .map(|l| PLabel {
            name: l.name.clone(),
            value: l.value.clone(),
        })
        .collect()
}

pub fn labels_from_proto(labels: Vec<PLabel>) -> Labels {
    Labels::new(
        labels
            .into_iter()
            .map(|l| Label::new(l.name, l.value))
            .collect(),
    )
}

pub fn series_to_proto(labels: &Labels, samples: &[Sample]) -> TimeSeries {
    TimeSeries {
        labels: labels_to_proto(labels),
        samples: samples
            .iter()
            .map(|s| PSample {
                value: s.v,
                timestamp: s.t,
            })
            .collect(),
        ..Default::default()
    }
}

pub fn samples_from_proto(samples: &[PSample]) -> Vec<Sample> {
    samples
        .iter()
        .map(|s| Sample {
            t: s.timestamp,
            v: s.value,
        })
        .collect()
}

pub fn stream_to_proto(labels: &Labels, entries: &[LogEntry]) -> PLogStream {
    PLogStream {
        labels: labels_to_proto(labels),
        entries: entries
            .iter()
            .map(|e| PLogEntry {
                timestamp_ns: e.ts,
                line: e.line.clone(),
                metadata: labels_to_proto(&e.metadata),
                ..PLogEntry::default()
            })
            .collect(),
    }
}

/// A stream's entry sizes, for an answer to a `sizes_only` select.
pub fn sizes_to_proto(labels: &Labels, sizes: &[EntrySize]) -> PLogStream {
    PLogStream {
        labels: labels_to_proto(labels),
        entries: sizes
            .iter()
            .map(|e| PLogEntry {
                timestamp_ns: e.ts,
                line_hash: e.line_hash,
                line_bytes: e.bytes,
                ..PLogEntry::default()
            })
            .collect(),
    }
}

pub fn sizes_from_proto(s: PLogStream) -> (Labels, Vec<EntrySize>) {
    let sizes = s
        .entries
        .into_iter()
        .map(|e| EntrySize {
            ts: e.timestamp_ns,
            line_hash: e.line_hash,
            bytes: e.line_bytes,
        })
        .collect();
    (labels_from_proto(s.labels), sizes)
}

pub fn stream_from_proto(s: PLogStream) -> (Labels, Vec<LogEntry>) {
    let entries = s
        .entries
        .into_iter()
        .map(|e| LogEntry {
            ts: e.timestamp_ns,
            line: e.line,
            metadata: labels_from_proto(e.metadata),
        })
        .collect();
    (labels_from_proto(s.labels), entries)
}

pub fn rejections_to_proto<R: ReasonName>(rejected: Vec<Rejected<R>>) -> Vec<Rejection> {
    rejected
        .into_iter()
        .map(|r| Rejection {
            index: r.index as u32,
            reason: r.reason.name().to_string(),
            count: r.count as u64,
            first_timestamp: r.first_timestamp,
        })
        .collect()
}

/// Rejections of a sub-batch, their positions mapped back through `indexes`.
pub fn rejections_from_proto<R: ReasonName>(
    rejected: Vec<Rejection>,
    indexes: &[u32],
) -> Vec<Rejected<R>> {
    rejected
        .into_iter()
        .filter_map(|r| {
            Some(Rejected {
                index: *indexes.get(r.index as usize)? as usize,
                reason: R::from_name(&r.reason)?,
                count: r.count as usize,
                first_timestamp: r.first_timestamp,
            })
        })
        .collect()
}

pub fn encode_blocks(blocks: &[BlockMeta]) -> Vec<bytes::Bytes> {
    blocks
        .iter()
        .filter_map(|b| serde_json::to_vec(b).ok())
        .map(bytes::Bytes::from)
        .collect()
}

pub fn decode_blocks(addr: &str, blocks: &[bytes::Bytes]) -> Result<Vec<BlockMeta>, ClientError> {
    blocks
        .iter()
        .map(|b| {
            serde_json::from_slice(b).map_err(|e| ClientError::Failed {
                addr: addr.to_string(),
                message: format!("bad block meta: {e}"),
            })
        })
        .collect()
}
