//! Metric metadata: a metric family's type, help text and unit, as
//! Prometheus scrapes them (`# TYPE`, `# HELP`, `# UNIT`) and sends them in
//! remote write; served by `/api/v1/metadata`.

use std::fmt;

/// The type of a metric family.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MetricType {
    #[default]
    Unknown,
    Counter,
    Gauge,
    Histogram,
    GaugeHistogram,
    Summary,
    Info,
    StateSet,
}

impl MetricType {
    /// The remote-write 1.0 enum value (`MetricMetadata.MetricType`);
    /// values this version does not know are `Unknown`.
    pub fn from_proto(value: i32) -> Self {
        match value {
            1 => Self::Counter,
            2 => Self::Gauge,
            3 => Self::Histogram,
            4 => Self::GaugeHistogram,
            5 => Self::Summary,
            6 => Self::Info,
            7 => Self::StateSet,
            _ => Self::Unknown,
        }
    }

    /// The remote-write 1.0 enum value.
    pub fn to_proto(self) -> i32 {
        match self {
            Self::Unknown => 0,
            Self::Counter => 1,
            Self::Gauge => 2,
            Self::Histogram => 3,
            Self::GaugeHistogram => 4,
            Self::Summary => 5,
            Self::Info => 6,
            Self::StateSet => 7,
        }
    }

    /// The name Prometheus's API uses (`"counter"`, `"gaugehistogram"`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unknown => "unknown",
            Self::Counter => "counter",
            Self::Gauge => "gauge",
            Self::Histogram => "histogram",
            Self::GaugeHistogram => "gaugehistogram",
            Self::Summary => "summary",
            Self::Info => "info",
            Self::StateSet => "stateset",
        }
    }
}

impl fmt::Display for MetricType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One metadata entry of a metric family.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MetricMetadata {
    /// The family name (`http_requests_total`; for histograms and
    /// summaries the name without `_bucket`/`_sum`/`_count`).
    pub metric_family: String,
    pub kind: MetricType,
    pub help: String,
    pub unit: String,
}

impl MetricMetadata {
    /// Bytes of text the entry holds.
    pub fn text_len(&self) -> usize {
        self.metric_family.len() + self.help.len() + self.unit.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proto_values_round_trip_and_unknown_values_are_unknown() {
        for v in 0..8 {
            assert_eq!(MetricType::from_proto(v).to_proto(), v);
        }
        assert_eq!(MetricType::from_proto(99), MetricType::Unknown);
        assert_eq!(MetricType::from_proto(-1), MetricType::Unknown);
        assert_eq!(MetricType::from_proto(4).as_str(), "gaugehistogram");
    }
}
