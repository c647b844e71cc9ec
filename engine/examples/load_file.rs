//! Loads a flag document a number of times (for profiling the loader with callgrind or perf), or writes
//! the benchmark's generated document (`engine/benches/engine.rs`, `load/N`: same generator, seed 42).
//!
//! Run: `cargo run --release -p flagpole-engine --example load_file -- FILE [TIMES]`, or
//! `... -- --generate N FILE` to write the generated N-flag document to FILE.

use std::time::Instant;

use flagpole_engine::{Format, LoadOptions, parse_document};

#[path = "../benches/support/generated.rs"]
mod generated;
use generated::generated_text;

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
