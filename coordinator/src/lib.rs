//! The synthforge coordinator: plans jobs into tasks, leases them to workers with fencing,
//! keeps its state in a [`control::store::TaskStore`] (etcd for clusters, an embedded log for
//! one machine), finalizes datasets, and serves the gRPC, HTTP and metrics APIs.
//!
//! Folders by role: [`control`] decides (planner, scheduler, stores, leader election),
//! [`serve`] talks to the outside (gRPC, HTTP, dashboard, metrics, TLS, wire conversion),
//! [`finalize`] turns committed tasks into a dataset (whole-job dedup, manifest, card).
//!
//! Entry points: [`run`] runs the service until a cancellation token fires (an embedded store
//! or an HA replica on etcd, see [`entry`]); [`Coordinator::start`] starts one in process over
//! any store and returns its handle (bound addresses, scheduler, telemetry).

pub mod control;
pub mod entry;
pub mod finalize;
pub mod model;
pub mod serve;
pub mod server;
pub mod telemetry;

pub use entry::{run, run_replica, ServiceConfig, StateConfig};
pub use server::{Coordinator, CoordinatorConfig};
