//! Loads a flag document a number of times (for profiling the loader with callgrind or perf), or writes
//! the benchmark's generated document (`engine/benches/engine.rs`, `load/N`: same generator, seed 42).
//!
//! Run: `cargo run --release -p flagpole-engine --example load_file -- FILE [TIMES]`, or
//! `... -- --generate N FILE` to write the generated N-flag document to FILE.

use std::time::Instant;

use flagpole_engine::{Format, LoadOptions, parse_document};

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(path) = args.next() else {
        eprintln!("usage: load_file FILE [TIMES]");
        std::process::exit(2);
    };
    if path == "--generate" {
        let n: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(10_000);
        let Some(out) = args.next() else {
            eprintln!("usage: load_file --generate N FILE");
            std::process::exit(2);
        };
        if let Err(e) = std::fs::write(&out, generated_text(n, 42)) {
            eprintln!("{out}: {e}");
            std::process::exit(1);
        }
        return;
    }
    let times: usize = args.next().and_then(|t| t.parse().ok()).unwrap_or(1);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) => {
            eprintln!("{path}: {e}");
            std::process::exit(1);
        }
    };
    let format = Format::from_path(std::path::Path::new(&path)).unwrap_or(Format::Json);
    for _ in 0..times {
        let start = Instant::now();
        match parse_document(&text, format, &LoadOptions::default()) {
            Ok(loaded) => {
                let elapsed = start.elapsed();
                println!("{} flags in {elapsed:?}", loaded.flags.len());
            }
            Err(e) => {
                eprintln!("{path}: {e}");
                std::process::exit(1);
            }
        }
    }
}

/// SplitMix64, as in the benchmark, so that the document is the same on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// The benchmark's `load/N` document: 60 % static, 25 % simple, 15 % complex targeting.
fn generated_text(n: usize, seed: u64) -> String {
    let mut rng = Rng(seed);
    let mut out = String::with_capacity(n * 300);
    out.push_str(r#"{"metadata": {"flagSetId": "bench", "version": "1"}, "flags": {"#);
    for i in 0..n {
        if i > 0 {
            out.push(',');
        }
        let roll = rng.next() % 100;
        let value = rng.next() % 1000;
        out.push_str(&format!(
            r#""flag-{i:05}": {{"state": "ENABLED", "variants": {{"on": true, "off": false}}, "defaultVariant": "off""#
        ));
        if roll >= 85 {
            out.push_str(&format!(
                r#", "targeting": {{"if": [{{"and": [{{"in": [{{"var": "country"}}, ["de", "fr", "c{value}"]]}}, {{">=": [{{"var": "age"}}, {value}]}}]}}, {{"fractional": [["on", 50], ["off", 50]]}}, null]}}"#
            ));
        } else if roll >= 60 {
            out.push_str(&format!(
                r#", "targeting": {{"if": [{{"==": [{{"var": "email"}}, "user{value}@example.com"]}}, "on", null]}}"#
            ));
        }
        if value.is_multiple_of(4) {
            out.push_str(&format!(r#", "metadata": {{"owner": "team-{value}"}}"#));
        }
        out.push('}');
    }
    out.push_str("}}");
    out
}
