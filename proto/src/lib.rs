//! The wire contract of synthforge. Generated from `proto/synthforge.proto`; kept in its own crate so
//! the coordinator, worker and CLI agree on one compiled version. [`convert`] holds the one set of
//! conversions between these messages and core's domain types.

/// Generated code: exempt from lints it cannot follow.
#[allow(clippy::all)]
pub mod v1 {
    tonic::include_proto!("synthforge.v1");
}

pub mod convert;

/// Encoded descriptor set, for gRPC server reflection (so `grpcurl list` works without the .proto).
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("synthforge_descriptor");

pub use convert::WireError;
pub use v1::*;
