//! The wire contract of synthforge. Generated from `proto/synthforge.proto`; kept in its own crate so
//! the coordinator, worker and CLI agree on one compiled version.

#![allow(clippy::all)]

pub mod v1 {
    tonic::include_proto!("synthforge.v1");
}

/// Encoded descriptor set, for gRPC server reflection (so `grpcurl list` works without the .proto).
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("synthforge_descriptor");

pub use v1::*;
