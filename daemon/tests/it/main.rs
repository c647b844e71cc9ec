//! Integration tests of the flagpole daemon, run in-process on free ports.
mod clients;
mod service_evaluation;
mod service_streams;
mod service_support;
mod churn;
mod cli_config;
mod cli_docs;
mod file_watch;
mod runtime_daemon;
mod runtime_support;
mod testbed_start;
mod validate_cmd;
mod runtime_lifecycle;
