//! The synthforge coordinator: plans jobs into tasks, leases them to workers with fencing,
//! keeps its state in a [`control::store::TaskStore`] (etcd for clusters, an embedded log for
//! one machine), finalizes datasets, and serves the gRPC, HTTP and metrics APIs.
//!
//! Folders by role: [`control`] decides (planner, scheduler, stores, leader election),
//! [`serve`] talks to the outside (gRPC, HTTP, dashboard, metrics, TLS, wire conversion),
//! [`finalize`] turns committed tasks into a dataset (whole-job dedup, manifest, card).

pub mod control;
pub mod finalize;
pub mod model;
pub mod serve;
pub mod server;
pub mod telemetry;
