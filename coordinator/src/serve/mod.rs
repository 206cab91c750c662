//! The coordinator's faces: gRPC for workers and clients, HTTP for the dashboard, metrics and
//! probes, TLS for both, and the conversion between wire and domain types.

pub mod convert;
pub mod dashboard;
pub mod grpc;
pub mod http;
pub mod metrics;
pub mod tls;
