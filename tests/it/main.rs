//! Whole-system tests: real `strata` processes over loopback HTTP, a real
//! Prometheus as remote-write client and PromQL reference, real Loki push
//! clients (python-logging-loki, winston-loki).

mod admission;
mod chart_runs;
mod cloud_stores;
mod cluster;
mod common;
mod compactor;
mod drilldown_replay;
mod durability;
mod frontend;
mod fuzz;
mod grafana_prometheus_replay;
mod helm;
mod hostile;
mod limits;
mod logs;
mod mixin;
mod otlp;
mod prometheus;
mod promql_random;
mod remote_write2;
mod ruler;
mod s3;
mod security;
mod store_gateway;
mod traces;
mod write_read;
