//! Arbitrary flag documents through the engine's loader (JSON and YAML, `$evaluators` inlining, schema
//! checks, the targeting compiler) and the evaluator: every input loads or is rejected with an error, in
//! bounded time, and every loaded flag evaluates. The first byte picks the format and strict mode.
//! Seeds: `seeds/flag_document/` (committed; `corpus/` is libFuzzer's own, ignored), also replayed by the
//! test command on the stable toolchain.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = flagpole::fuzzing::flag_document(data);
});
