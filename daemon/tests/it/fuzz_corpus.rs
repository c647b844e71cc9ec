//! The fuzz targets' seeds and a time-boxed random run, on the stable toolchain (libFuzzer needs nightly;
//! `daemon/fuzz` has the cargo-fuzz targets for longer runs, see BENCHMARKS.md).
//!
//! Every file in `daemon/fuzz/seeds/flag_document/` and every testbed flag file goes through
//! [`flagpole::fuzzing::flag_document`]; then mutations of them (a fixed seed, so a failure replays) run
//! for `FLAGPOLE_FUZZ_SECS` seconds (default 10). An input that panics fails the test; one that does not
//! finish within [`HANG_LIMIT`] is saved under `target/fuzz-failures/` and fails it too.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use flagpole::fuzzing::{Mutator, flag_document};

use crate::runtime_support::{testbed_dir, workspace_root};

/// Longer than any input may take: the loader's limits bound every document to well under a second.
const HANG_LIMIT: Duration = Duration::from_secs(10);

fn corpus_dir() -> PathBuf {
    workspace_root().join("daemon/fuzz/seeds/flag_document")
}

fn seeds() -> Vec<Vec<u8>> {
    let mut seeds = Vec::new();
    let mut read_dir = |dir: &Path, prefix: Option<u8>| {
        let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|p| p.is_file())
            .collect();
        paths.sort();
        for path in paths {
            let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            match prefix {
                Some(selector) => seeds.push([vec![selector], bytes].concat()),
                None => seeds.push(bytes),
            }
        }
    };
    read_dir(&corpus_dir(), None);
    read_dir(&testbed_dir().join("flags"), Some(0));
    seeds
}

/// Runs one input on a helper thread; a panic or a hang fails the test with the input saved.
fn run_one(input: Vec<u8>) -> bool {
    let (tx, rx) = mpsc::channel();
    let for_thread = input.clone();
    std::thread::spawn(move || {
        let loaded = std::panic::catch_unwind(|| flag_document(&for_thread));
        let _ = tx.send(loaded);
    });
    match rx.recv_timeout(HANG_LIMIT) {
        Ok(Ok(loaded)) => loaded,
        Ok(Err(_)) => panic!("input panicked: saved as {}", save(&input).display()),
        Err(_) => panic!(
            "input still running after {HANG_LIMIT:?}: saved as {}",
            save(&input).display()
        ),
    }
}

fn save(input: &[u8]) -> PathBuf {
    let dir = workspace_root().join("target/fuzz-failures");
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join(format!("flag_document-{}", input.len()));
    let _ = std::fs::write(&path, input);
    path
}

#[test]
fn flag_document_seeds_load_or_are_rejected() {
    let seeds = seeds();
    assert!(seeds.len() >= 20, "only {} seeds", seeds.len());
    let loaded = seeds
        .into_iter()
        .filter(|seed| run_one(seed.clone()))
        .count();
    // The examples and most testbed files are valid documents: the harness really loads things.
    assert!(loaded > 10, "only {loaded} seeds loaded");
}

#[test]
fn flag_document_random_mutations_for_a_bounded_time() {
    let seconds = std::env::var("FLAGPOLE_FUZZ_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10u64);
    let seeds = seeds();
    let mut mutator = Mutator::new(0x5eed_f1a9);
    let started = Instant::now();
    let (mut runs, mut loaded) = (0u64, 0u64);
    while started.elapsed() < Duration::from_secs(seconds) {
        let seed = &seeds[(runs as usize) % seeds.len()];
        // Mutations stack now and then, so inputs drift further from the seeds.
        let mut input = mutator.mutate(seed);
        if runs % 3 == 0 {
            input = mutator.mutate(&input);
        }
        loaded += u64::from(run_one(input));
        runs += 1;
    }
    println!("flag_document: {runs} inputs in {seconds} s, {loaded} loaded");
    assert!(runs > 100, "only {runs} inputs ran");
}
