//! Query results in the Prometheus API's JSON shapes.

use serde_json::{Map, Value as Json, json};
use strata_model::Labels;
use strata_promql::Value;

/// A float as Prometheus renders sample values.
pub(crate) fn float(v: f64) -> String {
    strata_model::format_float(v)
}

/// A ms timestamp as the API's float seconds.
fn ts(t: i64) -> Json {
    if t % 1000 == 0 {
        json!(t / 1000)
    } else {
        json!(t as f64 / 1000.0)
    }
}

/// A label set as a JSON object.
pub(crate) fn labels(l: &Labels) -> Json {
    let mut m = Map::with_capacity(l.len());
    for label in l {
        m.insert(label.name.clone(), Json::String(label.value.clone()));
    }
    Json::Object(m)
}

/// The `data` member of a query response.
pub(crate) fn value(v: &Value) -> Json {
    let result = match v {
        Value::Scalar { t, v } => json!([ts(*t), float(*v)]),
        Value::String { t, s } => json!([ts(*t), s]),
        Value::Vector(samples) => Json::Array(
            samples
                .iter()
                .map(|s| json!({"metric": labels(&s.labels), "value": [ts(s.t), float(s.v)]}))
                .collect(),
        ),
        Value::Matrix(series) => Json::Array(
            series
                .iter()
                .map(|s| {
                    json!({
                        "metric": labels(&s.labels),
                        "values": s.points.iter().map(|(t, v)| json!([ts(*t), float(*v)])).collect::<Vec<_>>(),
                    })
                })
                .collect(),
        ),
    };
    json!({"resultType": v.result_type(), "result": result})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_like_prometheus() {
        assert_eq!(float(1.0), "1");
        assert_eq!(float(0.1), "0.1");
        assert_eq!(float(1e21), "1000000000000000000000");
        assert_eq!(float(f64::INFINITY), "+Inf");
        assert_eq!(float(f64::NAN), "NaN");
        assert_eq!(ts(1_435_781_451_781), json!(1435781451.781));
        assert_eq!(ts(1_435_781_451_000), json!(1435781451));
    }
}
