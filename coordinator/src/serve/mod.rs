//! The coordinator's faces: gRPC for workers and clients, HTTP for the dashboard, metrics and
//! probes, TLS for both, and the conversion between wire and domain types.

pub mod auth;
pub mod convert;
pub mod dashboard;
pub mod exposure;
pub mod funnel;
pub mod grpc;
pub mod http;
pub mod https;
pub mod metrics;
pub use synthforge_core::redact;
pub mod same_origin;
pub mod tls;
