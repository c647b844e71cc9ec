//! Arbitrary OFREP request bodies: the body decoder and the OFREP router (single flag and bulk) answer
//! every input with a status and nothing panics; a body the decoder accepts gets 200 from the bulk
//! endpoint (per-flag errors live inside its body).
#![no_main]

use flagpole::fuzzing::{Blocking, ofrep_body_context};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let decoded = ofrep_body_context(data);
    let harness = Blocking::get();
    for path in [
        "/ofrep/v1/evaluate/flags/string-flag",
        "/ofrep/v1/evaluate/flags",
    ] {
        let (status, _) = harness.ofrep(path, data.to_vec());
        assert!((200..600).contains(&status), "status {status}");
        if decoded.is_ok() && path.ends_with("/flags") {
            assert_eq!(status, 200, "accepted body on {path}");
        }
    }
});
