//! Metric metadata (type, help, unit per metric family) from remote write:
//! validated as Mimir does, de-duplicated within the request (every target
//! of a Prometheus sends its own copy), and replicated to the ingesters that
//! own the family's name on the ring.

use std::collections::HashSet;
use std::sync::LazyLock;

use prometheus::{IntCounterVec, Opts};
use strata_ingester_client::PushLimits;
use strata_model::metadata::{MetricMetadata, MetricType};
use strata_model::{Labels, METRIC_NAME};
use strata_proto::prometheus::MetricMetadata as PMetadata;

use crate::{Distributor, Limits, PushError};

pub(crate) static RECEIVED_METADATA: LazyLock<IntCounterVec> = LazyLock::new(|| {
    IntCounterVec::new(
        Opts::new(
            "strata_distributor_received_metadata_total",
            "Metric metadata entries received in remote-write requests, per tenant.",
        ),
        &["user"],
    )
    .expect("valid metric definition")
});
pub(crate) static DISCARDED_METADATA: LazyLock<IntCounterVec> = LazyLock::new(|| {
    IntCounterVec::new(
        Opts::new(
            "strata_discarded_metadata_total",
            "Metric metadata entries dropped by validation, per reason and tenant.",
        ),
        &["reason", "user"],
    )
    .expect("valid metric definition")
});

/// The entry as stored, or why it is dropped: a missing or over-long name
/// or unit drops it; help text over the limit is cut to it (at a character
/// boundary), as Mimir does.
pub(crate) fn validate(m: PMetadata, max_length: usize) -> Result<MetricMetadata, &'static str> {
    if m.metric_family_name.is_empty() {
        return Err("missing_metric_name");
    }
    if max_length > 0 {
        if m.metric_family_name.len() > max_length {
            return Err("metric_name_too_long");
        }
        if m.unit.len() > max_length {
            return Err("unit_too_long");
        }
    }
    let mut help = m.help;
    if max_length > 0 && help.len() > max_length {
        let mut end = max_length;
        while !help.is_char_boundary(end) {
            end -= 1;
        }
        help.truncate(end);
    }
    Ok(MetricMetadata {
        metric_family: m.metric_family_name,
        kind: MetricType::from_proto(m.r#type),
        help,
        unit: m.unit,
    })
}

impl Distributor {
    /// Validates and replicates a request's metadata; entries beyond the
    /// ingesters' limits are dropped there (and counted), not refused.
    pub(crate) async fn push_metadata(
        &self,
        tenant: &str,
        metadata: Vec<PMetadata>,
        limits: &Limits,
    ) -> Result<(), PushError> {
        RECEIVED_METADATA
            .with_label_values(&[tenant])
            .inc_by(metadata.len() as u64);
        let mut seen: HashSet<MetricMetadata> = HashSet::new();
        let mut batch: Vec<(Labels, MetricMetadata)> = Vec::new();
        for m in metadata {
            match validate(m, limits.max_metadata_length) {
                Ok(m) => {
                    if seen.insert(m.clone()) {
                        let name = Labels::from_pairs([(METRIC_NAME, m.metric_family.as_str())]);
                        batch.push((name, m));
                    }
                }
                Err(reason) => DISCARDED_METADATA
                    .with_label_values(&[reason, tenant])
                    .inc(),
            }
        }
        if batch.is_empty() {
            return Ok(());
        }
        let push_limits = PushLimits {
            max_metadata: self.ingester_share(limits.max_global_metadata_per_user),
            max_metadata_per_metric: limits.max_global_metadata_per_metric,
            ..Default::default()
        };
        self.replicate_alongside(
            tenant,
            batch,
            move |client, tenant, batch, indexes| async move {
                client
                    .push_metadata(&tenant, &batch, &indexes, push_limits)
                    .await
            },
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(name: &str, help: &str, unit: &str) -> PMetadata {
        PMetadata {
            r#type: 1,
            metric_family_name: name.into(),
            help: help.into(),
            unit: unit.into(),
        }
    }

    #[test]
    fn names_and_units_must_fit_and_help_is_cut_at_a_character() {
        assert_eq!(validate(meta("", "h", ""), 8), Err("missing_metric_name"));
        assert_eq!(
            validate(meta("toolong_name", "h", ""), 8),
            Err("metric_name_too_long")
        );
        assert_eq!(
            validate(meta("a", "h", "seconds_x"), 8),
            Err("unit_too_long")
        );
        let m = validate(meta("a", "abcdefg\u{2713}", "s"), 8).expect("valid");
        assert_eq!(m.help, "abcdefg", "the check mark would cross the limit");
        assert_eq!(m.kind, MetricType::Counter);
        let unlimited = validate(meta("toolong_name", "abcdefghijk", ""), 0).expect("no limit");
        assert_eq!(unlimited.help, "abcdefghijk");
    }
}
