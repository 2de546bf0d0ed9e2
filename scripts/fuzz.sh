#!/usr/bin/env bash
# Coverage-guided fuzzing with cargo-fuzz/libFuzzer, seeded from the real captures in fuzz/corpus/.
# The same targets run a bounded number of mutations in every `cargo test` (tests/fuzz.rs); this is
# for longer runs on demand.
#
#   scripts/fuzz.sh                  every target, 60 s each
#   scripts/fuzz.sh query 600        one target for 600 s
#   scripts/fuzz.sh all 30           every target, 30 s each
#
# Stable toolchain: cargo-fuzz passes nightly-only flags (-Zsanitizer=address, coverage options),
# which RUSTC_BOOTSTRAP=1 unlocks on the pinned stable compiler. cargo-fuzz is installed with
# `cargo install` if missing. fuzz/Cargo.lock is the main Cargo.lock plus libfuzzer-sys, so the
# targets run the same dependency versions as the proxy.
# Each input is limited to one allocation of 8 MiB (-malloc_limit_mb): the seeds are a few KiB, so
# a larger allocation means a length field was believed before its bytes arrived.
# New inputs libFuzzer finds go to target/fuzz-corpus/<target>/ (not into the committed seeds); a
# crash is saved under fuzz/artifacts/<target>/ and the script exits non-zero. Add a crashing input
# to fuzz/regressions/<target>/ once fixed: tests/fuzz.rs replays that folder.
# Prints one line per target: executions, seconds, result.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

target=${1:-all}
seconds=${2:-60}
[[ $seconds =~ ^[0-9]+$ ]] || { echo "usage: scripts/fuzz.sh [target|all] [seconds]" >&2; exit 2; }

if ! command -v cargo-fuzz >/dev/null 2>&1 && [[ -x $HOME/.cargo/bin/cargo-fuzz ]]; then
  export PATH="$HOME/.cargo/bin:$PATH"
fi
if ! command -v cargo-fuzz >/dev/null 2>&1; then
  echo "installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi

mapfile -t all < <(sed -n 's/^name = "\(.*\)"$/\1/p' fuzz/Cargo.toml | grep -v '^rwsplit-fuzz$')
if [[ $target == all ]]; then
  targets=("${all[@]}")
else
  printf '%s\n' "${all[@]}" | grep -qx "$target" || { echo "unknown target $target (one of: ${all[*]})" >&2; exit 2; }
  targets=("$target")
fi

export RUSTC_BOOTSTRAP=1
status=0
cd fuzz
for t in "${targets[@]}"; do
  work=../target/fuzz-corpus/$t
  mkdir -p "$work"
  log=../target/fuzz-$t.log
  seeds=(corpus/"$t")
  [[ -d regressions/$t ]] && seeds+=(regressions/"$t")
  if cargo fuzz run --release "$t" "$work" "${seeds[@]}" -- -max_total_time="$seconds" -rss_limit_mb=2048 \
    -malloc_limit_mb=8 -timeout=10 -print_final_stats=1 >"$log" 2>&1; then
    result=ok
  else
    result="FAILED (see target/fuzz-$t.log, fuzz/artifacts/$t/)"
    status=1
  fi
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1)
  printf '%-16s %12s execs  %4ss  %-10s %s\n' "$t" "${execs:-?}" "$seconds" "${cov:-}" "$result"
done
exit "$status"
