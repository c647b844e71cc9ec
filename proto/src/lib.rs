//! The flagd wire contract as Rust types.
//!
//! The `.proto` files under `proto/proto/` are flagpole's own, written from the published field tables; they
//! are compiled at build time by `protox` (pure Rust), so building needs no `protoc`. This crate owns the
//! generated code, the daemon's lean codec ([`codec`]) and the one `google.protobuf.Struct` ⇄ JSON converter
//! ([`json`]) that the daemon and the provider share; conversions to engine or OpenFeature values live at
//! the edges (daemon, provider).
#![forbid(unsafe_code)]
#![allow(clippy::all, missing_docs)]

/// `flagd.evaluation.v1`: typed resolves, `ResolveAll` and `EventStream`.
pub mod evaluation_v1 {
    tonic::include_proto!("flagd.evaluation.v1");
}

/// `flagd.evaluation.v2`: like v1 without `ResolveAll`, with optional value and variant.
pub mod evaluation_v2 {
    tonic::include_proto!("flagd.evaluation.v2");
}

/// `flagd.sync.v1`: the sync service that in-process providers and chained daemons consume.
pub mod sync_v1 {
    tonic::include_proto!("flagd.sync.v1");
}

/// `schema.v1`: the deprecated evaluation service still served for old clients.
pub mod schema_v1 {
    tonic::include_proto!("schema.v1");
}

pub mod codec;
pub mod json;

/// The encoded `google.protobuf.FileDescriptorSet` of every `.proto` file above (for JSON mapping by
/// reflection, as the daemon's Connect protocol does).
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/flagpole_descriptor.bin"));

pub use prost_types;
