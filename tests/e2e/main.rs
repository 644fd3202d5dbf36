//! End-to-end tests through the public surfaces: the built binary and its files.
//! One test binary (`autotests = false`) so the crate links once.

mod support;

mod database;
mod deploy;
mod kubelet;
mod real_temporal;
mod reliability;
mod schedules;
mod serve;
mod validate;
