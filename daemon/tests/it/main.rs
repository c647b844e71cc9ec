//! Integration tests of the flagpole daemon, run in-process on free ports.
mod churn;
mod cli_config;
mod cli_docs;
mod clients;
mod file_watch;
mod ofrep;
mod runtime_daemon;
mod runtime_lifecycle;
mod runtime_support;
mod service_evaluation;
mod service_streams;
mod service_support;
mod testbed_start;
mod source_http;
mod transport_tls;
mod transport_unix;
mod validate_cmd;
