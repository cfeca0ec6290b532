#!/usr/bin/env bash
# Coverage-guided fuzzing of nimbus's parsers with AFL++ (cargo-afl, stable Rust).
#
#   bench/fuzz.sh                 every target, 180 s each
#   bench/fuzz.sh sigv4 600       one target, 10 minutes
#
# Each target starts from its committed seeds (crates/fuzz/corpus/<target>/) and
# dictionary, under a 1 GiB memory limit (unbounded allocation is a crash) and a
# 1 s time-out per input (a hang). The build is a debug one, so integer overflow
# panics as it does in tests. The table gives executions, paths found, crashes
# and hangs; findings stay under $CARGO_TARGET_DIR/afl/findings/<target>/ and
# replay with
#   NIMBUS_FUZZ_TARGET=<target> $CARGO_TARGET_DIR/afl/debug/nimbus-fuzz-afl < <file>
# A crash is a bug: fix it in the owning crate and add the input to the corpus.
set -euo pipefail
cd "$(dirname "$0")/.."

only="${1:-}"
seconds="${2:-180}"
afl_dir="${CARGO_TARGET_DIR:-$PWD/target}/afl"

# cargo-afl wraps rustc with AFL++'s instrumentation; `config --build` builds
# AFL++ itself once (it says so, and fails, when that is already done).
command -v cargo-afl >/dev/null || cargo install cargo-afl --locked --version 0.18.2
cargo afl config --build >/dev/null 2>&1 || true
CARGO_TARGET_DIR="$afl_dir" cargo afl build --locked -p nimbus-fuzz --features afl \
    --bin nimbus-fuzz-afl
bin="$afl_dir/debug/nimbus-fuzz-afl"

if [ -n "$only" ]; then
    targets=("$only")
else
    mapfile -t targets < <(ls crates/fuzz/corpus)
fi

export AFL_NO_UI=1 AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 \
    AFL_NO_AFFINITY=1
stat() { sed -n "s/^$1 *: *//p" "$2"; }
summary=()
for target in "${targets[@]}"; do
    out="$afl_dir/findings/$target"
    rm -rf "$out"
    mkdir -p "$out"
    NIMBUS_FUZZ_TARGET="$target" "$bin" dictionary >"$out.dict"
    echo "== $target: ${seconds}s" >&2
    NIMBUS_FUZZ_TARGET="$target" cargo afl fuzz -V "$seconds" -m 1024 -t 1000 \
        -i "crates/fuzz/corpus/$target" -x "$out.dict" -o "$out" -- "$bin" \
        >"$out.log" 2>&1 || { tail -20 "$out.log" >&2; exit 1; }
    stats="$out/default/fuzzer_stats"
    summary+=("$(printf '%-10s %12s %10s %8s %8s' "$target" "$(stat execs_done "$stats")" \
        "$(stat corpus_count "$stats")" "$(stat saved_crashes "$stats")" \
        "$(stat saved_hangs "$stats")")")
done

printf '%-10s %12s %10s %8s %8s\n' target executions paths crashes hangs
printf '%s\n' "${summary[@]}"
