#!/usr/bin/env bash
# Coverage-guided fuzzing (libFuzzer + AddressSanitizer/LeakSanitizer) of the server's input
# paths: the targets in Tests/Fuzz/Sources (one directory each; see their header comments).
#
#   scripts/fuzz.sh [target|all] [seconds per target]      (default: all, 20 s)
#
# Builds Tests/Fuzz (a package of its own, depending on this one by path) into .build-fuzz
# (release, -sanitize=fuzzer,address, -enable-testing for internal entry points), then runs
# each target from its committed seeds (Tests/Fuzz/Corpus/<target>) plus what earlier runs
# found (.build-fuzz/corpus/<target>). Fails when any target crashes, leaks, exceeds the
# per-input time or memory limit, or breaks a harness invariant; the input that did it is
# in .build-fuzz/artifacts/<target>/ and the log in .build-fuzz/logs/<target>.log.
#
# Environment: FUZZ_NO_BUILD=1 skips the build; FUZZ_ARGS adds libFuzzer flags (e.g.
# "-runs=10000000" for a long run; then give a large time). Reproduce a finding with
#   .build-fuzz/release/fuzz-<target> <input file>
set -euo pipefail
cd "$(dirname "$0")/.."
target="${1:-all}"
seconds="${2:-20}"
scratch=.build-fuzz
targets=$(ls Tests/Fuzz/Sources | grep -v '^FuzzSupport$')
if [[ "$target" != all ]]; then
    grep -qx -- "$target" <<<"$targets" || { echo "unknown target '$target'; targets: all" $targets >&2; exit 2; }
    targets="$target"
fi

if [[ "${FUZZ_NO_BUILD:-}" != 1 ]]; then
    start=$(date +%s)
    # --sanitize=fuzzer makes SwiftPM link libFuzzer's main; the instrumentation comes from
    # -Xswiftc: with SwiftPM's --sanitize=fuzzer --sanitize=address the frontend gets only
    # one -sanitize flag and emits no coverage counters (Swift 6.3.1).
    swift build -c release --sanitize=fuzzer -Xswiftc -sanitize=fuzzer,address -Xswiftc -enable-testing \
        --package-path Tests/Fuzz --scratch-path "$scratch" 2>&1 | grep -v "Cannot export local symbol" || true
    [[ ${PIPESTATUS[0]} == 0 ]] || { echo "fuzz: build failed" >&2; exit 1; }
    echo "fuzz: built in $(( $(date +%s) - start )) s"
fi

# The Swift runtime's own crash backtracer would hold the crashing process (and libFuzzer's
# report) for up to 30 s; ASan and libFuzzer report crashes themselves.
export SWIFT_BACKTRACE=enable=no
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:handle_abort=1:handle_sigill=1:symbolize=1}"
mkdir -p "$scratch/logs"
failed=()
for t in $targets; do
    corpus="$scratch/corpus/$t" artifacts="$scratch/artifacts/$t"
    mkdir -p "$corpus" "$artifacts"
    log="$scratch/logs/$t.log"
    # Narrow, commented suppressions for leaks outside this code (Tests/Fuzz/Suppressions).
    lsan=""
    [[ -f Tests/Fuzz/Suppressions/$t.lsan ]] && lsan="suppressions=$PWD/Tests/Fuzz/Suppressions/$t.lsan"
    # -timeout: seconds per input; -rss_limit_mb: the process (and -malloc_limit_mb, one
    # allocation); the seeds directory is read, new inputs go to the first (writable) one.
    if LSAN_OPTIONS="$lsan" "$scratch/release/fuzz-$t" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 -artifact_prefix="$artifacts/" ${FUZZ_ARGS:-} \
        "$corpus" "Tests/Fuzz/Corpus/$t" >"$log" 2>&1; then
        status=ok
    else
        status=FAILED
        failed+=("$t")
    fi
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo "?")
    rate=$(grep -o 'exec/s: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*$' || echo "?")
    cov=$(grep -o 'cov: [0-9]* ft: [0-9]*' "$log" | tail -1 || echo "cov: ?")
    echo "fuzz: $t: $status, $runs runs, $rate exec/s, $cov (log: $log)"
    if [[ $status != ok ]]; then
        grep -E "ERROR: |FUZZ INVARIANT|Fatal error|Test unit written|SUMMARY" "$log" | head -8 | sed 's/^/    /'
    fi
done
if (( ${#failed[@]} )); then
    echo "fuzz: FAILED: ${failed[*]}" >&2
    exit 1
fi
