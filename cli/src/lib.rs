//! The library side of the `synthforge` command: what the binary assembles and tests reuse.
//!
//! [`standalone`] is a whole cluster in one process (coordinator and workers over real gRPC on
//! 127.0.0.1, ports bound at 0). It lives here, in the crate that already depends on both the
//! coordinator and the worker, because neither of those may depend on the other: the worker
//! only speaks the wire protocol, and the coordinator must not link worker code.

pub mod standalone;
