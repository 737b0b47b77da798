//! Query results in the Prometheus API's JSON shapes.

use serde_json::{Map, Value as Json};
use strata_model::Labels;

pub(crate) use strata_promql::json::{
    float, point, query_response, write_labels, write_list, write_sample, write_series, write_str,
};

/// A label set as a JSON object.
pub(crate) fn labels(l: &Labels) -> Json {
    let mut m = Map::with_capacity(l.len());
    for label in l {
        m.insert(label.name.clone(), Json::String(label.value.clone()));
    }
    Json::Object(m)
}

/// A query's syntax tree in the JSON of Prometheus's `/api/v1/parse_query`:
/// promql-parser's serialization, brought to Prometheus's shape where the
/// two differ (a named selector's `__name__` matcher listed last, the
/// grouping card as a string with `include` beside it, no vector matching
/// when a side is a scalar, an omitted subquery step as 0, no
/// `experimental` in function descriptions).
pub fn syntax_tree(expr: &promql_parser::parser::Expr) -> serde_json::Result<Json> {
    let mut tree = serde_json::to_value(expr)?;
    to_prometheus_shape(expr, &mut tree);
    Ok(tree)
}

fn to_prometheus_shape(expr: &promql_parser::parser::Expr, node: &mut Json) {
    use promql_parser::parser::Expr;
    use promql_parser::parser::value::ValueType;
    match expr {
        Expr::Aggregate(a) => {
            to_prometheus_shape(&a.expr, &mut node["expr"]);
            if let Some(p) = &a.param {
                to_prometheus_shape(p, &mut node["param"]);
            }
        }
        Expr::Unary(u) => to_prometheus_shape(&u.expr, &mut node["expr"]),
        Expr::Paren(p) => to_prometheus_shape(&p.expr, &mut node["expr"]),
        Expr::Binary(b) => {
            to_prometheus_shape(&b.lhs, &mut node["lhs"]);
            to_prometheus_shape(&b.rhs, &mut node["rhs"]);
            if b.lhs.value_type() == ValueType::Scalar || b.rhs.value_type() == ValueType::Scalar {
                node["matching"] = Json::Null;
            } else if let Some(matching) = node.get_mut("matching").and_then(Json::as_object_mut)
                && let Some(Json::Object(card)) = matching.get("card").cloned()
                && let Some((kind, include)) = card.into_iter().next()
            {
                matching.insert("card".into(), Json::String(kind));
                matching.insert("include".into(), include);
            }
        }
        Expr::Subquery(s) => {
            to_prometheus_shape(&s.expr, &mut node["expr"]);
            if node["step"].is_null() {
                node["step"] = Json::from(0);
            }
        }
        Expr::VectorSelector(vs) => name_matcher_last(vs, node),
        Expr::MatrixSelector(ms) => name_matcher_last(&ms.vs, node),
        Expr::Call(c) => {
            if let Some(func) = node["func"].as_object_mut() {
                func.remove("experimental");
            }
            if let Some(args) = node["args"].as_array_mut() {
                for (arg, json) in c.args.args.iter().zip(args.iter_mut()) {
                    to_prometheus_shape(arg, json);
                }
            }
        }
        _ => {}
    }
}

/// Prometheus's parser adds `__name__="<name>"` after a named selector's
/// own matchers.
fn name_matcher_last(vs: &promql_parser::parser::VectorSelector, node: &mut Json) {
    let Some(name) = &vs.name else { return };
    if let Some(matchers) = node["matchers"].as_array_mut()
        && !matchers
            .iter()
            .any(|m| m["name"] == strata_model::METRIC_NAME)
    {
        matchers.push(
            serde_json::json!({"name": strata_model::METRIC_NAME, "type": "=", "value": name}),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use strata_promql::Value;

    // The JSON-tree rendering the written one must equal.
    /// A ms timestamp as the API's float seconds.
    fn ts(t: i64) -> Json {
        if t % 1000 == 0 {
            json!(t / 1000)
        } else {
            json!(t as f64 / 1000.0)
        }
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

    #[test]
    fn written_response_equals_the_json_tree() {
        let l = Labels::from_pairs([("__name__", "a\"b"), ("job", "x\ny")]);
        for v in [
            Value::Scalar { t: 1500, v: 2.5 },
            Value::String {
                t: 1000,
                s: "q\"s".into(),
            },
            Value::Vector(vec![strata_promql::VectorSample {
                labels: l.clone(),
                t: 1_435_781_451_781,
                v: f64::NAN,
            }]),
            Value::Matrix(vec![strata_promql::MatrixSeries {
                labels: l.clone(),
                points: vec![(1000, 1.0), (2001, f64::INFINITY)],
            }]),
        ] {
            let out = strata_promql::QueryOutput {
                value: v.clone(),
                warnings: vec!["PromQL warning: w".into()],
                infos: vec![],
                stats: Default::default(),
            };
            let written: Json = serde_json::from_slice(&query_response(&out, None)).unwrap();
            let want = json!({
                "status": "success",
                "data": value(&v),
                "warnings": ["PromQL warning: w"],
            });
            assert_eq!(written, want);
        }
    }

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
