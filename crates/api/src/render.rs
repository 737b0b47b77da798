//! Query results in the Prometheus API's JSON shapes.

use serde_json::{Map, Value as Json};
use strata_model::Labels;
use strata_promql::Value;

/// A float as Prometheus renders sample values.
pub(crate) fn float(v: f64) -> String {
    strata_model::format_float(v)
}

/// A label set as a JSON object.
pub(crate) fn labels(l: &Labels) -> Json {
    let mut m = Map::with_capacity(l.len());
    for label in l {
        m.insert(label.name.clone(), Json::String(label.value.clone()));
    }
    Json::Object(m)
}

/// A whole successful query response, written straight into bytes: a range
/// result holds series x steps points, and building a `serde_json::Value`
/// per point first cost more than evaluating the query (benches/promql).
pub(crate) fn query_response(out: &strata_promql::QueryOutput) -> Vec<u8> {
    let mut b: Vec<u8> = Vec::with_capacity(256);
    b.extend_from_slice(br#"{"status":"success","data":{"resultType":""#);
    b.extend_from_slice(out.value.result_type().as_bytes());
    b.extend_from_slice(br#"","result":"#);
    match &out.value {
        Value::Scalar { t, v } => point(&mut b, *t, *v),
        Value::String { t, s } => {
            b.push(b'[');
            write_ts(&mut b, *t);
            b.push(b',');
            write_str(&mut b, s);
            b.push(b']');
        }
        Value::Vector(samples) => {
            write_list(&mut b, samples, |b, s| write_sample(b, &s.labels, s.t, s.v));
        }
        Value::Matrix(series) => {
            write_list(&mut b, series, |b, s| {
                write_series(b, &s.labels, s.points.iter().copied())
            });
        }
    }
    b.push(b'}');
    for (key, notes) in [("warnings", &out.warnings), ("infos", &out.infos)] {
        if !notes.is_empty() {
            b.extend_from_slice(format!(r#","{key}":["#).as_bytes());
            for (i, n) in notes.iter().enumerate() {
                if i > 0 {
                    b.push(b',');
                }
                write_str(&mut b, n);
            }
            b.push(b']');
        }
    }
    b.push(b'}');
    b
}

/// Writes `[item,item,...]`.
pub(crate) fn write_list<T>(
    b: &mut Vec<u8>,
    items: impl IntoIterator<Item = T>,
    mut write: impl FnMut(&mut Vec<u8>, T),
) {
    b.push(b'[');
    for (i, item) in items.into_iter().enumerate() {
        if i > 0 {
            b.push(b',');
        }
        write(b, item);
    }
    b.push(b']');
}

/// `{"metric":{...},"value":[t,"v"]}` (t in ms).
pub(crate) fn write_sample(b: &mut Vec<u8>, labels: &Labels, t: i64, v: f64) {
    b.extend_from_slice(br#"{"metric":"#);
    write_labels(b, labels);
    b.extend_from_slice(br#","value":"#);
    point(b, t, v);
    b.push(b'}');
}

/// `{"metric":{...},"values":[[t,"v"],...]}` (t in ms).
pub(crate) fn write_series(
    b: &mut Vec<u8>,
    labels: &Labels,
    points: impl Iterator<Item = (i64, f64)>,
) {
    b.extend_from_slice(br#"{"metric":"#);
    write_labels(b, labels);
    b.extend_from_slice(br#","values":"#);
    write_list(b, points, |b, (t, v)| point(b, t, v));
    b.push(b'}');
}

pub(crate) fn point(b: &mut Vec<u8>, t: i64, v: f64) {
    use std::io::Write;
    b.push(b'[');
    write_ts(b, t);
    let _ = write!(b, ",\"{}\"]", float(v));
}

pub(crate) fn write_ts(b: &mut Vec<u8>, t: i64) {
    use std::io::Write;
    let _ = if t % 1000 == 0 {
        write!(b, "{}", t / 1000)
    } else {
        write!(b, "{}", t as f64 / 1000.0)
    };
}

pub(crate) fn write_str(b: &mut Vec<u8>, s: &str) {
    // serde_json escapes exactly as JSON requires; writing to a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *b, s);
}

pub(crate) fn write_labels(b: &mut Vec<u8>, l: &Labels) {
    b.push(b'{');
    for (i, label) in l.iter().enumerate() {
        if i > 0 {
            b.push(b',');
        }
        write_str(b, &label.name);
        b.push(b':');
        write_str(b, &label.value);
    }
    b.push(b'}');
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
            };
            let written: Json = serde_json::from_slice(&query_response(&out)).unwrap();
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
