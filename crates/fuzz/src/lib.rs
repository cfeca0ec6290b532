//! Fuzz targets for the parsers that face clients or images. Each target takes any
//! bytes and must neither panic, hang nor allocate without bound; where it is cheap,
//! it also checks a property (a round trip, or two implementations agreeing) and
//! panics when that fails.
//!
//! Two drivers run them: `cargo test` mutates the committed seeds in `corpus/` a fixed
//! number of times ([`run_bounded`], deterministic, a few seconds), and
//! `bench/fuzz.sh` runs AFL++ on them for as long as one likes.

pub mod mutate;
mod targets;

use std::path::{Path, PathBuf};

/// One fuzz target: its name (also its corpus directory), the function, and the
/// tokens a mutator inserts to get past the parser's keywords.
pub struct Target {
    pub name: &'static str,
    pub run: fn(&[u8]),
    pub dictionary: &'static [&'static str],
}

pub use targets::TARGETS;

pub fn target(name: &str) -> Option<&'static Target> {
    TARGETS.iter().find(|target| target.name == name)
}

/// The committed seed corpus of a target.
pub fn corpus_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(name)
}

/// The seeds of a target, in name order.
pub fn seeds(name: &str) -> std::io::Result<Vec<Vec<u8>>> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(corpus_dir(name))?
        .map(|entry| entry.map(|entry| entry.path()))
        .collect::<Result<_, _>>()?;
    paths.sort();
    paths.iter().map(std::fs::read).collect()
}

/// Runs a target on each of its seeds, then on `executions` mutants of them. On a
/// panic the input is written to the temporary directory and the panic goes on, so
/// the failing test names the target and the file to replay.
pub fn run_bounded(target: &Target, executions: usize) {
    let seeds = seeds(target.name).expect("the target's corpus");
    assert!(!seeds.is_empty(), "{} has no seeds", target.name);
    let mut mutator = mutate::Mutator::new(target.name, target.dictionary);
    let mut input = Vec::new();
    for round in 0..seeds.len() + executions {
        input.clear();
        input.extend_from_slice(&seeds[round % seeds.len()]);
        if round >= seeds.len() {
            mutator.mutate(&mut input, &seeds);
        }
        if let Err(panic) = std::panic::catch_unwind(|| (target.run)(&input)) {
            let path = std::env::temp_dir().join(format!("nimbus-fuzz-{}-{round}", target.name));
            let _ = std::fs::write(&path, &input);
            eprintln!(
                "{} failed on input {round}, saved to {}",
                target.name,
                path.display()
            );
            std::panic::resume_unwind(panic);
        }
    }
}
