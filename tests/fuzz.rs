//! Bounded fuzzing on the stable toolchain: every target of fuzz/src/targets.rs (the parsers that
//! see network bytes) runs over its seed corpus, real captures under fuzz/corpus/<target>/
//! (fuzz/capture.sh), the regression inputs under fuzz/regressions/<target>/, and a fixed number
//! of deterministic mutations of the seeds: bit flips, interesting bytes, truncation, length
//! fields that lie (frame headers and length-encoded integers), insertions, deletions and
//! splicing with another seed. A target panics on a broken property (see targets.rs); the input
//! that did it is written to target/fuzz-failures/ and named in the failure.
//!
//! `RWSPLIT_FUZZ_CASES` sets the mutations per target (default [`DEFAULT_CASES`]); longer runs
//! with coverage guidance: `scripts/fuzz.sh`.

#[path = "../fuzz/src/targets.rs"]
#[allow(dead_code)]
mod targets;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

/// Mutations per target in a plain `cargo test` (fuzz/README.md has the figures).
const DEFAULT_CASES: usize = 5000;

fn corpus_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

fn read_dir(dir: &Path) -> Vec<Vec<u8>> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut files: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    files.sort();
    files.iter().filter_map(|p| std::fs::read(p).ok()).collect()
}

/// xorshift64*: deterministic, so a failure reproduces with the same case count.
struct Rng(u64);

impl Rng {
    fn new(name: &str) -> Self {
        Self(name.bytes().fold(0x9E37_79B9_7F4A_7C15, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01B3)) | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

const INTERESTING: &[u8] = &[
    0x00, 0x01, 0x7F, 0x80, 0xFB, 0xFC, 0xFD, 0xFE, 0xFF, b'\'', b'"', b'`', b'\\', b'/', b'*', b'-', b'#', b';', b'(',
    b')',
];
const LENGTHS: &[u32] = &[0, 1, 0xFF_FFFF, 0xFF_FFFE, 0x10_0000, 0x4000, 0x4001, 0x7FFF];

fn mutate(seed: &[u8], other: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut v = seed.to_vec();
    for _ in 0..1 + rng.below(4) {
        match rng.below(9) {
            0 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] ^= 1 << rng.below(8);
            }
            1 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] = INTERESTING[rng.below(INTERESTING.len())];
            }
            2 => v.truncate(rng.below(v.len() + 1)),
            // A frame header that lies about its length, at the start or anywhere.
            3 if v.len() >= 4 => {
                let at = if rng.below(2) == 0 { 0 } else { rng.below(v.len() - 3) };
                let len = match rng.below(3) {
                    0 => LENGTHS[rng.below(LENGTHS.len())],
                    1 => (v.len() - at) as u32 + 1,
                    _ => ((v.len() - at) as u32).saturating_sub(5),
                };
                v[at..at + 3].copy_from_slice(&len.to_le_bytes()[..3]);
            }
            // A length-encoded integer that lies.
            4 if !v.is_empty() => {
                let i = rng.below(v.len());
                let marker = [0xFC, 0xFD, 0xFE][rng.below(3)];
                v[i] = marker;
                v.splice(i + 1..(i + 1).min(v.len()), [0xFF; 8].iter().copied().take(1 + rng.below(8)));
            }
            5 => {
                let at = rng.below(v.len() + 1);
                let n = 1 + rng.below(16);
                let bytes: Vec<u8> = (0..n).map(|_| INTERESTING[rng.below(INTERESTING.len())]).collect();
                v.splice(at..at, bytes);
            }
            6 if !v.is_empty() => {
                let a = rng.below(v.len());
                let b = (a + 1 + rng.below(32)).min(v.len());
                v.drain(a..b);
            }
            7 if !other.is_empty() => {
                let cut = rng.below(v.len() + 1);
                let from = rng.below(other.len());
                v.truncate(cut);
                v.extend_from_slice(&other[from..]);
            }
            _ if !v.is_empty() => {
                let a = rng.below(v.len());
                let b = (a + 1 + rng.below(64)).min(v.len());
                let chunk = v[a..b].to_vec();
                v.splice(b..b, chunk);
            }
            _ => v.push(rng.next() as u8),
        }
    }
    v
}

fn run_one(target: &str, f: fn(&[u8]), input: &[u8]) -> Result<(), String> {
    catch_unwind(AssertUnwindSafe(|| f(input))).map_err(|e| {
        let why = e.downcast_ref::<String>().cloned().or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()));
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("fuzz-failures");
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join(format!("{target}-{:016x}", Rng::new(&format!("{input:?}")).next()));
        let _ = std::fs::write(&path, input);
        format!("{target}: {} on {} bytes (saved to {})", why.unwrap_or_default(), input.len(), path.display())
    })
}

/// Runs one target; returns the number of inputs tried.
fn fuzz(target: &str) -> usize {
    let f = targets::by_name(target).unwrap_or_else(|| panic!("no target {target}"));
    let seeds = read_dir(&corpus_root().join("corpus").join(target));
    assert!(!seeds.is_empty(), "fuzz/corpus/{target}/ is empty: run fuzz/capture.sh against scripts/cluster.sh");
    let regressions = read_dir(&corpus_root().join("regressions").join(target));
    let cases = std::env::var("RWSPLIT_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(DEFAULT_CASES);
    let mut rng = Rng::new(target);
    let mut failures = Vec::new();
    let mut tried = 0;
    for input in seeds.iter().chain(&regressions) {
        tried += 1;
        failures.extend(run_one(target, f, input).err());
    }
    for _ in 0..cases {
        let seed = &seeds[rng.below(seeds.len())];
        let other = &seeds[rng.below(seeds.len())];
        let input = mutate(seed, other, &mut rng);
        tried += 1;
        failures.extend(run_one(target, f, &input).err());
        if failures.len() >= 5 {
            break;
        }
    }
    assert!(failures.is_empty(), "{} failing inputs:\n{}", failures.len(), failures.join("\n"));
    tried
}

macro_rules! fuzz_tests {
    ($($name:ident),* $(,)?) => {$(
        #[test]
        fn $name() {
            let tried = fuzz(stringify!($name));
            eprintln!("{}: {tried} inputs", stringify!($name));
        }
    )*};
}

fuzz_tests!(
    framing,
    guard,
    handshake,
    greeting,
    query,
    command,
    stmt_execute,
    send_long_data,
    change_user,
    prepare_ok,
    response
);

#[test]
fn every_target_has_a_test() {
    let names: Vec<&str> = targets::ALL.iter().map(|(n, _)| *n).collect();
    assert_eq!(names.len(), 11, "add a fuzz_tests! entry for a new target: {names:?}");
}

/// A header claiming a 16 MiB frame with a few bytes behind it must not make the reader allocate
/// the 16 MiB (it reserved the whole claimed frame at once before).
#[test]
fn length_lie_does_not_allocate_the_claimed_frame() {
    let mut data = vec![0xFF, 0xFF, 0xFF, 0x00];
    data.extend_from_slice(&[b'x'; 100]);
    targets::framing(&data);
    targets::response(&data);
}
