//! The flagd-testbed engine-only suite with flagd's default bucketing (`evaluator_suite`).
#![forbid(unsafe_code)]

mod evaluator_suite;

fn main() {
    evaluator_suite::run(false);
}
