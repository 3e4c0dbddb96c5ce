//! The stable-toolchain run of a fuzz target's body: every seed in
//! `fuzz/seeds/<target>/`, then a fixed number of inputs mutated from them
//! with a fixed seed (truncations, byte flips, spliced and repeated pieces).
//! Not part of the fuzz crate: the smoke tests in `crates/*/tests/fuzz_smoke.rs`
//! include this file and the target's body with `#[path]`.

use std::path::PathBuf;

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

/// The seed files of `target`, sorted by name.
pub fn seeds(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/seeds")
        .join(target);
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) => panic!("{}: {e}", dir.display()),
    };
    let mut out: Vec<(String, Vec<u8>)> = entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let bytes = std::fs::read(e.path()).ok()?;
            Some((e.file_name().to_string_lossy().into_owned(), bytes))
        })
        .collect();
    out.sort();
    out
}

/// Runs `body` over every seed of `target`, then over `mutations` inputs
/// mutated from them; returns how many seeds there were.
pub fn run(target: &str, body: fn(&[u8]), mutations: usize) -> usize {
    let seeds = seeds(target);
    assert!(!seeds.is_empty(), "no seeds for {target}");
    for (name, bytes) in &seeds {
        eprintln!("{target}: seed {name}");
        body(bytes);
    }
    let mut rng = Rng(0x5eed_f022_0001);
    for i in 0..mutations {
        let input = mutate(&mut rng, &seeds);
        let caught = std::panic::catch_unwind(|| body(&input));
        if let Err(panic) = caught {
            eprintln!(
                "{target}: mutation {i} failed on {:?}",
                String::from_utf8_lossy(&input)
            );
            std::panic::resume_unwind(panic);
        }
    }
    seeds.len()
}

fn mutate(rng: &mut Rng, seeds: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut bytes = seeds[rng.below(seeds.len())].1.clone();
    for _ in 0..1 + rng.below(4) {
        let len = bytes.len();
        match rng.below(6) {
            0 => bytes.truncate(rng.below(len + 1)),
            1 if len > 0 => {
                let at = rng.below(len);
                bytes[at] ^= 1 << rng.below(8);
            }
            2 if len > 0 => {
                // Repeat a piece (a line, often).
                let a = rng.below(len);
                let b = (a + 1 + rng.below(200)).min(len);
                let piece = bytes[a..b].to_vec();
                let at = rng.below(len + 1);
                bytes.splice(at..at, piece);
            }
            3 => {
                // Splice with another seed.
                let other = &seeds[rng.below(seeds.len())].1;
                let from = rng.below(other.len() + 1);
                bytes.truncate(rng.below(len + 1));
                bytes.extend_from_slice(&other[from..]);
            }
            4 if len > 0 => {
                let a = rng.below(len);
                let b = (a + 1 + rng.below(16)).min(len);
                bytes.drain(a..b);
            }
            _ => {
                let piece: &[u8] = match rng.below(8) {
                    0 => b"\n",
                    1 => b"\"",
                    2 => b"{",
                    3 => b"}",
                    4 => b"\\u0000",
                    5 => b"\xff",
                    6 => b"\r\n",
                    _ => b"&amp;<@U1|x>",
                };
                let at = rng.below(len + 1);
                bytes.splice(at..at, piece.iter().copied());
            }
        }
    }
    bytes
}
