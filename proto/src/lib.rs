//! Generated gRPC code for every Basin service (`proto/basin.proto`).
//!
//! Compiled once here with `protox` (no system `protoc`), so every other crate
//! shares one copy of the wire types.
#![allow(clippy::all, missing_docs)]

pub mod v1 {
    tonic::include_proto!("basin.v1");
}
pub use v1::*;
