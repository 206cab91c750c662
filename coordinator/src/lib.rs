//! The synthforge coordinator: plans jobs into tasks, leases them to workers with fencing,
//! keeps its state in a [`store::TaskStore`] (etcd for clusters, an embedded log for one
//! machine), finalizes datasets, and serves the gRPC, HTTP and metrics APIs.

pub mod card;
pub mod convert;
pub mod dashboard;
pub mod dedup;
pub mod finalize;
pub mod grpc;
pub mod ha;
pub mod http;
pub mod metrics;
pub mod model;
pub mod planner;
pub mod scheduler;
pub mod server;
pub mod store;
pub mod timeseries;
pub mod tls;
