//! Lambda: the function model (configuration, code, versions, aliases) and its API.

pub mod code;
pub mod error;
pub mod model;
pub mod names;
