//! The PromQL operations, one module each: what a plan node of that kind
//! computes from its operands' values, step by step. `eval` holds the query
//! state they share; `functions` holds the function calls.

pub(crate) mod aggregate;
pub(crate) mod binary;
pub(crate) mod select;
pub(crate) mod subquery;
