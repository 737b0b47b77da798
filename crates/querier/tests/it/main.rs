//! Querier integration tests.

mod promqltest;
