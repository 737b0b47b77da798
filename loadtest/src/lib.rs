//! What the load generators share: command-line helpers and a remote-write
//! request builder.

use clap::{Arg, ArgMatches};
use prost::Message;
use strata_proto::prometheus::{TimeSeries, WriteRequest};

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
    let body = snap::raw::Encoder::new().compress_vec(&req.encode_to_vec())?;
    let mut rb = client
        .post(url)
        .header("Content-Encoding", "snappy")
        .header("Content-Type", "application/x-protobuf")
        .header("X-Prometheus-Remote-Write-Version", "0.1.0")
        .body(body);
    if let Some(t) = tenant {
        rb = rb.header("X-Scope-OrgID", t);
    }
    Ok(rb)
}
