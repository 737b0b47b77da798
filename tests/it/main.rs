//! Whole-system tests: real `strata` processes over loopback HTTP, a real
//! Prometheus as remote-write client and PromQL reference.

mod common;
mod durability;
mod limits;
mod prometheus;
mod promql_random;
mod ruler;
mod s3;
mod write_read;
