//! Arbitrary OFREP request bodies: the body decoder and the OFREP router (single flag and bulk) answer
//! every input with a status and nothing panics; a body the decoder accepts gets 200 from the bulk
//! endpoint (per-flag errors live inside its body).
#![no_main]

use std::sync::OnceLock;

use flagpole::fuzzing::{Harness, ofrep_body_context};
use libfuzzer_sys::fuzz_target;

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a Tokio runtime")
    })
}

fn harness() -> &'static Harness {
    static HARNESS: OnceLock<Harness> = OnceLock::new();
    HARNESS.get_or_init(|| {
        let _guard = runtime().enter();
        Harness::new().expect("the fuzz harness builds")
    })
}

fuzz_target!(|data: &[u8]| {
    let decoded = ofrep_body_context(data);
    let harness = harness();
    for path in [
        "/ofrep/v1/evaluate/flags/string-flag",
        "/ofrep/v1/evaluate/flags",
    ] {
        let (status, _) = runtime().block_on(harness.ofrep(path, data.to_vec()));
        assert!((200..600).contains(&status), "status {status}");
        if decoded.is_ok() && path.ends_with("/flags") {
            assert_eq!(status, 200, "accepted body on {path}");
        }
    }
});
