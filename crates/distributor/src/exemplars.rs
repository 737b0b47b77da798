//! Exemplars from remote write: validated as Mimir does and replicated to
//! the ingesters of their series (the same replicas as its samples). A
//! tenant whose `max_global_exemplars_per_user` is 0 keeps none.

use std::sync::LazyLock;

use prometheus::{IntCounterVec, Opts};
use strata_ingester_client::PushLimits;
use strata_model::{Exemplar, Label, Labels};
use strata_proto::prometheus::Exemplar as PExemplar;

use crate::{Distributor, Limits, PushError, is_valid_label_name};

pub(crate) static DISCARDED_EXEMPLARS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    IntCounterVec::new(
        Opts::new(
            "strata_discarded_exemplars_total",
            "Exemplars dropped by validation, per reason and tenant.",
        ),
        &["reason", "user"],
    )
    .expect("valid metric definition")
});

/// Longest exemplar label set, names and values in characters (the
/// OpenMetrics limit Prometheus and Mimir enforce).
const MAX_EXEMPLAR_LABEL_CHARS: usize = 128;

/// The exemplar as stored, or why it is dropped.
pub(crate) fn validate(e: PExemplar) -> Result<Exemplar, &'static str> {
    if e.labels.is_empty() {
        return Err("exemplar_labels_missing");
    }
    if e.timestamp == 0 {
        return Err("exemplar_timestamp_invalid");
    }
    let chars: usize = e
        .labels
        .iter()
        .map(|l| l.name.chars().count() + l.value.chars().count())
        .sum();
    if chars > MAX_EXEMPLAR_LABEL_CHARS {
        return Err("exemplar_labels_too_long");
    }
    if e.labels.iter().any(|l| !is_valid_label_name(&l.name)) {
        return Err("exemplar_labels_invalid");
    }
    let labels = Labels::new(
        e.labels
            .into_iter()
            .map(|l| Label::new(l.name, l.value))
            .collect(),
    );
    Ok(Exemplar {
        labels,
        value: e.value,
        t: e.timestamp,
    })
}

impl Distributor {
    /// Replicates validated exemplars to their series' ingesters; returns
    /// how many were written.
    pub(crate) async fn push_exemplars(
        &self,
        tenant: &str,
        batch: Vec<(Labels, Exemplar)>,
        limits: &Limits,
    ) -> Result<usize, PushError> {
        if batch.is_empty() {
            return Ok(0);
        }
        let n = batch.len();
        let push_limits = PushLimits {
            max_exemplars: self.ingester_share(limits.max_global_exemplars_per_user),
            ..Default::default()
        };
        self.replicate_alongside(
            tenant,
            batch,
            move |client, tenant, batch, indexes| async move {
                client
                    .push_exemplars(&tenant, &batch, &indexes, push_limits)
                    .await
            },
        )
        .await?;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use strata_proto::prometheus::Label as PLabel;

    use super::*;

    fn ex(labels: &[(&str, &str)], t: i64) -> PExemplar {
        PExemplar {
            labels: labels
                .iter()
                .map(|(n, v)| PLabel {
                    name: n.to_string(),
                    value: v.to_string(),
                })
                .collect(),
            value: 1.0,
            timestamp: t,
        }
    }

    #[test]
    fn exemplars_are_checked_as_mimir_checks_them() {
        assert_eq!(validate(ex(&[], 1)), Err("exemplar_labels_missing"));
        assert_eq!(
            validate(ex(&[("trace_id", "a")], 0)),
            Err("exemplar_timestamp_invalid")
        );
        let long = "x".repeat(121); // 8 + 121 characters
        assert_eq!(
            validate(ex(&[("trace_id", &long)], 1)),
            Err("exemplar_labels_too_long")
        );
        assert_eq!(
            validate(ex(&[("1bad", "a")], 1)),
            Err("exemplar_labels_invalid")
        );
        let ok = validate(ex(&[("trace_id", "a"), ("span_id", "b")], 5)).expect("valid");
        assert_eq!(
            ok.labels,
            Labels::from_pairs([("span_id", "b"), ("trace_id", "a")]),
            "sorted"
        );
        assert_eq!(ok.t, 5);
    }
}
