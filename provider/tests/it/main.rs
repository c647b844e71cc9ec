//! Integration tests of flagpole-provider: options and environment, the file resolver end to end, and the
//! in-process and RPC resolvers against a small in-test flagd ([`fake`]).

mod config;
mod fake;
mod file_mode;
mod in_process;
mod rpc;
mod support;
mod testbed;
