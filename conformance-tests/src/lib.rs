//! # flagpole-conformance
//!
//! The flagd-testbed suites run against flagpole, without containers (docs/conformance.md).
//!
//! What it owns:
//! - [`launcher`]: the testbed's launchpad re-implemented — a fixture directory built from the testbed
//!   (merged `allFlags.json`, launchpad configs with free ports, a TLS certificate signed by the testbed CA)
//!   and one daemon process with start / stop / restart-after-N-seconds / change, as a library and over HTTP
//!   (binary `testbed-launcher`);
//! - [`envoy`]: a stand-in for the testbed's envoy (h2c routing by authority, a 403 listener);
//! - [`gherkin`]: the provider/daemon suite (`gherkin/*.feature`) in RPC, in-process and file mode through
//!   `flagpole-provider` (test target `gherkin`).
//!
//! The engine-only suite (`evaluator/gherkin/*.feature`) is the test target `evaluator`. What this crate does
//! not do: implement any flag semantics itself — it only drives the daemon, the provider and the engine.
#![forbid(unsafe_code)]

pub mod envoy;
pub mod gherkin;
pub mod launcher;

/// Where `scripts/fetch-testbed.sh` unpacks the pinned testbed and schemas, relative to the workspace root:
/// the crates.io package `open-feature-flagd` 0.3.0, which ships flagd-testbed 3.10.3 (`flagd-testbed/`) and
/// flagd-schemas 0.2.13 (`schemas/`). `FLAGD_TESTBED_DIR` and `FLAGD_SCHEMAS_DIR` override it.
pub const PINNED_DATA_DIR: &str = "target/flagd-data/open-feature-flagd-0.3.0";

/// The pinned flagd-testbed (see [`PINNED_DATA_DIR`]).
pub fn pinned_testbed_dir() -> std::path::PathBuf {
    launcher::workspace_root()
        .join(PINNED_DATA_DIR)
        .join("flagd-testbed")
}
