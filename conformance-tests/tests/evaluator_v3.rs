//! The flagd-testbed engine-only suite with the v3 bucketing of `--fractional-algorithm v3`
//! (`evaluator_suite`).
#![forbid(unsafe_code)]

mod evaluator_suite;

fn main() {
    evaluator_suite::run(true);
}
