//! Query results written in the Prometheus HTTP API's JSON shapes, straight
//! into bytes: a range result holds series x steps points, and building a
//! `serde_json::Value` per point first cost more than evaluating the query
//! (benches/promql). The querier's API and the query-frontend (which
//! evaluates the outer part of sharded queries) answer through it.

use strata_model::Labels;

use crate::{QueryOutput, Value};

/// A float as Prometheus renders sample values.
pub fn float(v: f64) -> String {
    strata_model::format_float(v)
}

/// A whole successful query response; with `stats` (the query's wall
/// time, asked for with Prometheus's `stats` parameter) its statistics in
/// `data.stats` ([`write_stats`]).
pub fn query_response(out: &QueryOutput, stats: Option<std::time::Duration>) -> Vec<u8> {
    let stats = stats.map(|wall| {
        let mut b = Vec::with_capacity(256);
        write_stats(&mut b, &out.stats, wall.as_secs_f64(), 0.0);
        b
    });
    query_response_with_stats(out, stats.as_deref())
}

/// A whole successful query response with `stats` (JSON text) as its
/// `data.stats`.
pub fn query_response_with_stats(out: &QueryOutput, stats: Option<&[u8]>) -> Vec<u8> {
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
    if let Some(stats) = stats {
        b.extend_from_slice(br#","stats":"#);
        b.extend_from_slice(stats);
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

/// Prometheus's `data.stats` (`timings`, `samples`), and the series the
/// query fetched. `totalQueryableSamples` is the samples its selections
/// read (Prometheus counts them per step); `peakSamples` the most it held.
pub fn write_stats(b: &mut Vec<u8>, s: &crate::QueryStats, wall_secs: f64, queue_secs: f64) {
    use std::io::Write;
    let _ = write!(
        b,
        r#"{{"timings":{{"evalTotalTime":{wall_secs},"resultSortTime":0,"queryPreparationTime":0,"innerEvalTime":{wall_secs},"execQueueTime":{queue_secs},"execTotalTime":{wall_secs}}},"samples":{{"totalQueryableSamples":{},"peakSamples":{}}},"series":{{"fetched":{}}}}}"#,
        s.samples_fetched, s.peak_samples, s.series_fetched
    );
}

/// Writes `[item,item,...]`.
pub fn write_list<T>(
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
pub fn write_sample(b: &mut Vec<u8>, labels: &Labels, t: i64, v: f64) {
    b.extend_from_slice(br#"{"metric":"#);
    write_labels(b, labels);
    b.extend_from_slice(br#","value":"#);
    point(b, t, v);
    b.push(b'}');
}

/// `{"metric":{...},"values":[[t,"v"],...]}` (t in ms).
pub fn write_series(b: &mut Vec<u8>, labels: &Labels, points: impl Iterator<Item = (i64, f64)>) {
    b.extend_from_slice(br#"{"metric":"#);
    write_labels(b, labels);
    b.extend_from_slice(br#","values":"#);
    write_list(b, points, |b, (t, v)| point(b, t, v));
    b.push(b'}');
}

pub fn point(b: &mut Vec<u8>, t: i64, v: f64) {
    b.push(b'[');
    write_ts(b, t);
    b.extend_from_slice(b",\"");
    strata_model::write_float(b, v);
    b.extend_from_slice(b"\"]");
}

pub fn write_ts(b: &mut Vec<u8>, t: i64) {
    if t % 1000 == 0 {
        strata_model::write_int(b, t / 1000);
    } else {
        strata_model::write_float(b, t as f64 / 1000.0);
    }
}

pub fn write_str(b: &mut Vec<u8>, s: &str) {
    // serde_json escapes exactly as JSON requires; writing to a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *b, s);
}

pub fn write_labels(b: &mut Vec<u8>, l: &Labels) {
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
