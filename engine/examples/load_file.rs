//! Loads a flag document a number of times (for profiling the loader with callgrind or perf).
//!
//! Run: `cargo run --release -p flagpole-engine --example load_file -- FILE [TIMES]`.

use std::time::Instant;

use flagpole_engine::{Format, LoadOptions, parse_document};

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(path) = args.next() else {
        eprintln!("usage: load_file FILE [TIMES]");
        std::process::exit(2);
    };
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
