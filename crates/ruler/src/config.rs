//! The ruler's settings, named as Mimir's `ruler` block.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

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
