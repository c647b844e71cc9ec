//! One folder per protocol the daemon speaks, each a sibling over the neutral core in `crate::eval`:
//!
//! - [`grpc`]: flagd's gRPC services (evaluation v1, v2, schema.v1 on port 8013; sync on port 8015).
//! - [`connect`]: Connect and gRPC-Web on port 8013, translated into the gRPC services in-process.
//! - [`ofrep`]: the OpenFeature Remote Evaluation Protocol over HTTP/JSON on port 8016.
//! - [`admin`]: the management port 8014 (health, readiness, metrics).
//!
//! What they share is here too: the bounded request-body read ([`body`]) of the HTTP protocols, CORS
//! ([`cors`]) as flagd configures it for the browser-facing ports, and the diff of a change shared by every
//! subscriber of a selector ([`diffs`]). Sockets, TLS and HTTP connections are
//! `crate::transport`'s.

pub mod admin;
pub mod body;
pub mod connect;
pub mod cors;
pub mod diffs;
pub mod grpc;
pub mod ofrep;
