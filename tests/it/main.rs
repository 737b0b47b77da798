//! Whole-system tests: real `strata` processes over loopback HTTP, a real
//! Prometheus as remote-write client and PromQL reference.

mod common;
mod durability;
mod prometheus;
mod write_read;
