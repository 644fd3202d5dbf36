//! activity-sync: keeps a Temporal activity platform in step with the definition files
//! its operators keep in git. See ARCHITECTURE.md for the map of this crate.

pub mod cli;
pub mod config;
pub mod definition;
pub mod metrics;
pub mod plan;
pub mod report;
pub mod server;
pub mod sidecar;
pub mod source;
pub mod store;
pub mod sync;
pub mod telemetry;
pub mod temporal;
