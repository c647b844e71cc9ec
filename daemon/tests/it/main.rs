//! Integration tests of the flagpole daemon, run in-process on free ports.
mod clients;
mod service_evaluation;
mod service_streams;
mod service_support;
mod churn;
