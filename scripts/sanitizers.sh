#!/usr/bin/env bash
# The sanitizer gate: model-server built with ThreadSanitizer (.build-tsan) and with
# AddressSanitizer (.build-asan), debug configuration, each run under the mixed load of
# scripts/mixed_load.py (REST V1/V2 JSON, the binary extension, JPEG inputs, gRPC V2 and TF
# Serving on both ports, bad inputs, clients vanishing mid-request, a version added and one
# removed every 3 s, a small memory budget). Fails on any sanitizer report, on any unexpected
# answer, or when the server does not exit 0 on SIGTERM.
#
# Usage: scripts/sanitizers.sh [thread|address ...]   (default: both)
#   SANITIZER_LOAD_SECONDS  seconds of load per sanitizer (default 45)
#   SANITIZER_CLIENTS       client threads (default 6)
#   SANITIZER_BUFFERED_BYTES  the server's --max_buffered_bytes (default 5000)
# Needs the test venv (scripts/python-env.sh). Time on the 2-CPU CI machine: builds ~6 min
# each cold, ~10 s warm; each run ~1 min (the load, start-up and shutdown).
set -euo pipefail
shopt -s nullglob
cd "$(dirname "$0")/.."
export MODEL_SERVER_CACHE="${MODEL_SERVER_CACHE:-$HOME/.cache/swift-model-server}"
if [[ -z "${VENV_TEST:-}" ]]; then eval "$(scripts/python-env.sh all)"; fi

seconds="${SANITIZER_LOAD_SECONDS:-45}"
clients="${SANITIZER_CLIENTS:-6}"
# A memory budget small enough that the load meets it now and then (503 / RESOURCE_EXHAUSTED),
# so its bookkeeping runs under the sanitizers too; after the load it must be whole again.
budget="${SANITIZER_BUFFERED_BYTES:-5000}"
sanitizers=("$@")
[[ ${#sanitizers[@]} -gt 0 ]] || sanitizers=(thread address)
logs="$(mktemp -d "${TMPDIR:-/tmp}/sanitizers.XXXXXX")"
failed=0

for sanitizer in "${sanitizers[@]}"; do
    case "$sanitizer" in
        thread) scratch=.build-tsan ;;
        address) scratch=.build-asan ;;
        *) echo "sanitizers.sh: unknown sanitizer '$sanitizer' (thread, address)" >&2; exit 2 ;;
    esac
    echo "== $sanitizer: building model-server ($scratch)"
    start=$SECONDS
    swift build --sanitize="$sanitizer" --scratch-path "$scratch" --product model-server
    echo "== $sanitizer: built in $((SECONDS - start)) s"
    binary="$scratch/debug/model-server"
    report="$logs/$sanitizer"
    # Reports go to $report.<pid> (log_path); the run continues after each (halt_on_error=0)
    # so one run shows them all. Suppressions: scripts/sanitizer-suppressions/<sanitizer>.txt,
    # each line with the reason it is not our bug.
    suppressions="$PWD/scripts/sanitizer-suppressions/$sanitizer.txt"
    case "$sanitizer" in
        thread)
            export TSAN_OPTIONS="halt_on_error=0:log_path=$report:second_deadlock_stack=1:history_size=4${TSAN_EXTRA:+:$TSAN_EXTRA}"
            [[ -f "$suppressions" ]] && TSAN_OPTIONS+=":suppressions=$suppressions"
            ;;
        address)
            # Leaks are checked too (LeakSanitizer at exit, after the SIGTERM shutdown).
            export ASAN_OPTIONS="halt_on_error=0:log_path=$report:detect_leaks=1:detect_stack_use_after_return=1"
            [[ -f "$suppressions" ]] && export LSAN_OPTIONS="suppressions=$suppressions"
            ;;
    esac
    echo "== $sanitizer: ${seconds} s of mixed load, $clients clients"
    start=$SECONDS
    if ! "$VENV_TEST/bin/python" scripts/mixed_load.py "$binary" --seconds "$seconds" --clients "$clients" \
            --max-buffered-bytes "$budget" --log "$logs/$sanitizer-server.log"; then
        echo "== $sanitizer: the load saw unexpected answers or an unclean exit (server log: $logs/$sanitizer-server.log)" >&2
        tail -20 "$logs/$sanitizer-server.log" >&2 || true
        failed=1
    fi
    unset TSAN_OPTIONS ASAN_OPTIONS LSAN_OPTIONS
    # A report starts "WARNING: ThreadSanitizer:" or "==<pid>==ERROR: AddressSanitizer:" /
    # "LeakSanitizer:"; any file at log_path at all is a failure too.
    report_files=("$report".*)
    files=${#report_files[@]}
    reports=0
    if [[ $files != 0 ]]; then
        reports=$(cat "${report_files[@]}" | grep -cE '(WARNING: ThreadSanitizer|ERROR: (AddressSanitizer|LeakSanitizer)):' || true)
    fi
    echo "== $sanitizer: $reports sanitizer reports ($files report files), $((SECONDS - start)) s"
    if [[ $files != 0 ]]; then
        cat "${report_files[@]}" >&2
        failed=1
    fi
done
[[ $failed == 0 ]] && rm -rf "$logs"
exit $failed
