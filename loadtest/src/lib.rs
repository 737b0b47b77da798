//! What the load generators share: command-line helpers and a remote-write
//! request builder.

use std::collections::HashMap;

use clap::{Arg, ArgMatches};
use prost::Message;
use strata_proto::prometheus::{TimeSeries, WriteRequest};
use strata_proto::prometheus_v2 as v2;

/// A `--name` option with a default and help text.
pub fn arg(name: &'static str, default: &'static str, help: &'static str) -> Arg {
    Arg::new(name).long(name).default_value(default).help(help)
}

/// Parses option `name`, naming it in the error.
pub fn parse<T: std::str::FromStr>(m: &ArgMatches, name: &str) -> Result<T, String> {
    let raw = m.get_one::<String>(name).map(String::as_str).unwrap_or("");
    raw.parse()
        .map_err(|_| format!("invalid value {raw:?} for --{name}"))
}

/// A remote-write 1.0 POST of `series` to `url` (snappy protobuf, the
/// headers Prometheus sends), ready to send.
pub fn remote_write(
    client: &reqwest::Client,
    url: &str,
    tenant: Option<&str>,
    series: Vec<TimeSeries>,
) -> Result<reqwest::RequestBuilder, snap::Error> {
    let req = WriteRequest {
        timeseries: series,
        metadata: vec![],
    };
    post(client, url, tenant, &req.encode_to_vec(), "1.0")
}

/// The same series as a remote-write 2.0 POST: every string once in the
/// symbol table, series as references into it (as Prometheus 3 sends).
pub fn remote_write_v2(
    client: &reqwest::Client,
    url: &str,
    tenant: Option<&str>,
    series: &[TimeSeries],
) -> Result<reqwest::RequestBuilder, snap::Error> {
    let mut symbols: Vec<&str> = vec![""];
    let mut index: HashMap<&str, u32> = HashMap::from([("", 0)]);
    let mut timeseries: Vec<v2::TimeSeries> = Vec::with_capacity(series.len());
    for ts in series {
        let mut labels_refs = Vec::with_capacity(ts.labels.len() * 2);
        for l in &ts.labels {
            for s in [l.name.as_str(), l.value.as_str()] {
                let r = *index.entry(s).or_insert_with(|| {
                    symbols.push(s);
                    (symbols.len() - 1) as u32
                });
                labels_refs.push(r);
            }
        }
        timeseries.push(v2::TimeSeries {
            labels_refs,
            samples: ts
                .samples
                .iter()
                .map(|s| v2::Sample {
                    value: s.value,
                    timestamp: s.timestamp,
                })
                .collect(),
            ..Default::default()
        });
    }
    let req = v2::Request {
        symbols: symbols.iter().map(|s| s.to_string()).collect(),
        timeseries,
    };
    post(client, url, tenant, &req.encode_to_vec(), "2.0")
}

fn post(
    client: &reqwest::Client,
    url: &str,
    tenant: Option<&str>,
    raw: &[u8],
    version: &str,
) -> Result<reqwest::RequestBuilder, snap::Error> {
    let body = snap::raw::Encoder::new().compress_vec(raw)?;
    let (content_type, version_header) = match version {
        "2.0" => (
            "application/x-protobuf;proto=io.prometheus.write.v2.Request",
            "2.0.0",
        ),
        _ => ("application/x-protobuf", "0.1.0"),
    };
    let mut rb = client
        .post(url)
        .header("Content-Encoding", "snappy")
        .header("Content-Type", content_type)
        .header("X-Prometheus-Remote-Write-Version", version_header)
        .body(body);
    if let Some(t) = tenant {
        rb = rb.header("X-Scope-OrgID", t);
    }
    Ok(rb)
}
