//! The checks, one function each, grouped by what they look at.

pub(crate) mod lifecycle;
pub(crate) mod logs;
pub(crate) mod mtls;
pub(crate) mod multiplex;
pub(crate) mod services;
pub(crate) mod socket;
pub(crate) mod startup;
