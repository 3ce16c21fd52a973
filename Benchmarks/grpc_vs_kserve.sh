#!/usr/bin/env bash
# gRPC serving overhead, side by side in one run: unary V2 ModelInfer
# (inference.GRPCInferenceService/ModelInfer) on models/trivial (input "x" FP32 [1, 4] ->
# output "y" = x * 2 + 1) against
#   1. our server's gRPC port,
#   2. our server's HTTP/1.1 V2 REST path (POST /v2/models/trivial/infer, JSON),
#   3. the KServe Python model server's gRPC V2 server (Benchmarks/kserve_trivial_server.py:
#      kserve.ModelServer, the same ONNX model on onnxruntime; grpc.aio on KServe's event loop),
# all on loopback, with one load generator for all three: h2load (nghttp2).
#
#   Benchmarks/grpc_vs_kserve.sh                           # report (Markdown) on stdout
#   SKIP_OURS=1 DURATION=3 WARMUP=1 Benchmarks/grpc_vs_kserve.sh   # harness check, KServe only
#
# Phases, per server (each measured run after its own WARMUP run, so that the measured
# run's byte counts hold only measured requests):
#   load: gRPC `h2load -c CONNS -m STREAMS -D DURATION` (CONNS x STREAMS requests in flight);
#         REST `h2load --h1 -c CONNS*STREAMS -m 1 -D DURATION`: the same number of requests
#         in flight. HTTP/1.1 has no multiplexing (h2load --h1 -m N would pipeline, which no
#         client does, and h2load caps it at 1 with -d anyway), so REST gets one connection
#         per in-flight request.
#   c1:   1 connection, 1 request in flight (unloaded latency), both protocols.
# Requests/s is h2load's (requests done / DURATION); p50 and p99 come from h2load's
# --log-file (per-request time to end of response; h2load itself prints only mean/sd).
# The ratio "ours gRPC / this" and the bar (ours gRPC / KServe gRPC >= 10) use requests/s
# of the load phase.
#
# Why h2load for the REST path too, rather than wrk: one client program, event loop and
# latency accounting for all three columns, so the REST/gRPC difference is the servers'
# and not the clients' (wrk is a different client with its own per-request costs and
# latency histogram); h2load --h1 speaks plain keep-alive HTTP/1.1.
#
# Correctness: h2load checks only the HTTP :status, and a failed gRPC call is HTTP 200 too
# (grpc-status in the trailers). So (a) before measuring, one real client call per server
# (grpcio, Benchmarks/grpc_trivial_request.py check-grpc / check-rest) must get grpc
# status OK (REST: 200) and y == [1, 3, 5, 7], else the script fails; it also gives the
# size of a correct response; (b) every measured run must have 0 failed/errored requests,
# only 2xx, and received response bytes == (correct response size) x requests (a failed
# gRPC call is trailers-only: no DATA), i.e. every request got a full, correct-sized
# response; a run that does not is reported as such and the script exits 1 after the report.
#
# The machine has few cores (2 here): h2load (1 thread by default) and the server under
# test share them, and the report's "other load" column says how much CPU anything else
# (e.g. a build) took during each run.
#
# Environment:
#   MODEL_SERVER=.build/release/model-server   our binary; run as
#       $MODEL_SERVER --port G --rest_api_port R --model_name trivial --model_base_path models/trivial
#       ready when GET http://127.0.0.1:R/v2/health/ready answers 200 (and G accepts TCP)
#   MODEL_SERVER_ARGS=""       extra arguments for it (word-split)
#   SKIP_OURS=1                benchmark only KServe (validates the harness)
#   KSERVE_CONFIGS="quiet"     KServe set-ups, space-separated; the first is the ratio's
#       baseline. quiet: KServe defaults with per-request logging off
#       (--enable_latency_logging false and a log config with uvicorn's access log,
#       kserve.trace and the kserve logger at WARNING: the kserve logger is where KServe's
#       gRPC LoggingInterceptor writes "grpc method: ..." at INFO for every call);
#       default-logging: KServe's defaults as shipped (per-call log lines).
#   CONNS=4 STREAMS=8          load phase shape (32 in flight, as the HTTP benchmark's
#                              wrk -c32); H2LOAD_THREADS=1 (h2load -t, capped at connections)
#   LATENCY=1                  0: skip the c1 phase
#   RUNS=1                     rounds, interleaved (ours gRPC, ours REST, KServe..., ours
#                              gRPC, ...); medians reported
#   DURATION=10 WARMUP=2       seconds (10, 10s or 1m)
#   ENFORCE=0                  1: exit 3 if the bar is missed (exit 2 when not measured)
#   QUIET_WAIT=300 QUIET_CORES=0.15 RETRY_CONTENDED=2   as in http_vs_kserve_nginx.sh: wait
#                              until other processes use < QUIET_CORES cores (all waits at
#                              most QUIET_WAIT s), repeat a run during which they used more
#                              than 0.25 cores up to RETRY_CONTENDED times
#   KEEP_LOGS=0                1: keep the work dir (server logs, raw h2load output and
#                              per-request logs); it is always kept when the script fails
#
# Needs: Debian 12 (h2load from nghttp2-client, curl via apt when missing), Python 3.11
# for the venv (scripts/python-env.sh kserve-bench: kserve, grpcio, protobuf),
# models/trivial/1/model.onnx. Sends traffic only to 127.0.0.1; every server started here
# is stopped on exit.
# Exit status: 0 (report printed); 1 when a server does not come up, fails the real-client
# check, dies, or a measured run had errors / unverified responses (then after the
# report); with ENFORCE=1 also 3 when the bar is missed and 2 when it was not measured.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
BENCH_TAG=grpc-bench
# shellcheck source=Benchmarks/lib.sh
source Benchmarks/lib.sh

MODEL_SERVER="${MODEL_SERVER:-.build/release/model-server}"
MODEL_SERVER_ARGS="${MODEL_SERVER_ARGS:-}"
SKIP_OURS="${SKIP_OURS:-0}"
KSERVE_CONFIGS="${KSERVE_CONFIGS:-quiet}"
CONNS="${CONNS:-4}"
STREAMS="${STREAMS:-8}"
H2LOAD_THREADS="${H2LOAD_THREADS:-1}"
LATENCY="${LATENCY:-1}"
RUNS="${RUNS:-1}"
DURATION="${DURATION:-10}"
WARMUP="${WARMUP:-2}"
ENFORCE="${ENFORCE:-0}"
QUIET_WAIT="${QUIET_WAIT:-300}"
QUIET_CORES="${QUIET_CORES:-0.15}"
RETRY_CONTENDED="${RETRY_CONTENDED:-2}"
KEEP_LOGS="${KEEP_LOGS:-0}"
# The invocation, for the report: every knob with its value.
INVOCATION="$(for v in MODEL_SERVER MODEL_SERVER_ARGS SKIP_OURS KSERVE_CONFIGS CONNS STREAMS H2LOAD_THREADS \
    LATENCY RUNS DURATION WARMUP QUIET_WAIT QUIET_CORES RETRY_CONTENDED; do printf '%s=%q ' "$v" "${!v}"; done
    echo Benchmarks/grpc_vs_kserve.sh)"

MODEL_DIR="models/trivial"
READY_PATH="/v2/health/ready"
GRPC_PATH="/inference.GRPCInferenceService/ModelInfer"
REST_PATH="/v2/models/trivial/infer"
REQUEST_PY="Benchmarks/grpc_trivial_request.py"

check_quiet_env
for v in CONNS STREAMS H2LOAD_THREADS; do
    [[ "${!v}" =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer"
done
for v in DURATION WARMUP; do
    [[ "${!v}" =~ ^[1-9][0-9]*[sm]?$ ]] || die "$v must look like 10, 10s or 1m"
done
for c in $KSERVE_CONFIGS; do
    case "$c" in quiet|default-logging) ;;
        quiet-2workers) die "KSERVE_CONFIGS: quiet-2workers only adds uvicorn (REST) worker processes;" \
            "KServe's gRPC server stays in the main process" ;;
        *) die "unknown KSERVE_CONFIGS entry '$c' (quiet, default-logging)" ;; esac
done
[[ -n "${KSERVE_CONFIGS// }" ]] || die "KSERVE_CONFIGS is empty"
DURATION_S=$(seconds "$DURATION")
WARMUP_S=$(seconds "$WARMUP")
raise_open_files 4096

apt_ensure nghttp2-client curl
command -v h2load >/dev/null || die "h2load not found (apt-get install nghttp2-client)"
command -v python3 >/dev/null || die "python3 not found"
kserve_venv
PY="$VENV_KSERVE_BENCH/bin/python"
[[ -f "$MODEL_DIR/1/model.onnx" ]] \
    || die "$MODEL_DIR/1/model.onnx missing: run ~/.cache/swift-model-server/venv/bin/python models/make_trivial.py"
if [[ "$SKIP_OURS" != 1 ]]; then
    [[ -x "$MODEL_SERVER" ]] || die "our server '$MODEL_SERVER' is not an executable: build it" \
        "(swift build -c release --product model-server), set MODEL_SERVER=..., or set SKIP_OURS=1"
fi

bench_init_work grpc-bench
mkdir -p "$WORK/h2load"
"$PY" "$REQUEST_PY" grpc-body "$WORK/grpc-body.bin" || die "cannot build the gRPC request body"
"$PY" "$REQUEST_PY" rest-body "$WORK/rest-body.json" || die "cannot build the REST request body"

# --- servers. Targets: a label each; SERVER (the process), KIND (grpc|rest), PORT, TITLE.
TARGETS=()
declare -A SERVER=() KIND=() PORT=() TITLE=() EXPECT=() READY_PORT=()
n_kserve=$(wc -w <<<"$KSERVE_CONFIGS")
read -r -a ports <<<"$(free_ports $((2 + 2 * n_kserve)))"
pi=0
if [[ "$SKIP_OURS" != 1 ]]; then
    grpc_port=${ports[pi]}; rest_port=${ports[pi + 1]}; pi=$((pi + 2))
    # shellcheck disable=SC2086  # MODEL_SERVER_ARGS is word-split on purpose
    start ours "$MODEL_SERVER" --port "$grpc_port" --rest_api_port "$rest_port" --model_name trivial \
        --model_base_path "$MODEL_DIR" $MODEL_SERVER_ARGS
    SERVER[ours-grpc]=ours; KIND[ours-grpc]=grpc; PORT[ours-grpc]=$grpc_port
    TITLE[ours-grpc]="ours ($(basename "$MODEL_SERVER")), gRPC"
    SERVER[ours-rest]=ours; KIND[ours-rest]=rest; PORT[ours-rest]=$rest_port
    TITLE[ours-rest]="ours ($(basename "$MODEL_SERVER")), HTTP/1.1 V2 REST JSON"
    TARGETS+=(ours-grpc ours-rest)
    READY_PORT[ours]=$rest_port
fi

kserve_log_config "$WORK/kserve-quiet-log.json" WARNING
KSERVE_FIRST=""
for c in $KSERVE_CONFIGS; do
    name="kserve-$c"; label="$name-grpc"
    http_port=${ports[pi]}; grpc_port=${ports[pi + 1]}; pi=$((pi + 2))
    kserve_config_args "$c" "$WORK/kserve-quiet-log.json"
    start "$name" "$PY" Benchmarks/kserve_trivial_server.py --model_name trivial --model_dir "$MODEL_DIR/1" \
        --http_port "$http_port" --grpc_port "$grpc_port" --enable_grpc true "${KSERVE_ARGS[@]}"
    # "1 worker" is uvicorn's (REST); KServe's gRPC server is one grpc.aio server in the main process.
    SERVER[$label]=$name; KIND[$label]=grpc; PORT[$label]=$grpc_port; TITLE[$label]="${KSERVE_TITLE/1 worker/1 process}, gRPC"
    READY_PORT[$name]=$http_port
    TARGETS+=("$label")
    [[ -n "$KSERVE_FIRST" ]] || KSERVE_FIRST="$label"
done

for s in "${STARTED[@]}"; do
    case "$s" in ours) tmo=60 ;; *) tmo=120 ;; esac
    wait_ready "$s" "${READY_PORT[$s]}" "$tmo"
done
# One real client call per target: grpc status OK / HTTP 200 and y == [1, 3, 5, 7]; its
# output is the size of a correct response (gRPC: 5-byte prefix + message; REST: body).
for t in "${TARGETS[@]}"; do
    s=${SERVER[$t]}
    if [[ "${KIND[$t]}" == grpc ]]; then
        wait_listening "$s" "${PORT[$t]}" 30
        EXPECT[$t]="$("$PY" "$REQUEST_PY" check-grpc "${PORT[$t]}" 2>"$WORK/check-$t.err")" \
            || fail_server "$s" "gRPC ModelInfer check on port ${PORT[$t]} failed: $(cat "$WORK/check-$t.err")"
        log "$t: grpcio ModelInfer OK (status OK, y = [1, 3, 5, 7]; response frame ${EXPECT[$t]} bytes)"
    else
        EXPECT[$t]="$("$PY" "$REQUEST_PY" check-rest "${PORT[$t]}" 2>"$WORK/check-$t.err")" \
            || fail_server "$s" "V2 REST infer check on port ${PORT[$t]} failed: $(cat "$WORK/check-$t.err")"
        log "$t: POST $REST_PATH OK (200, y = [1, 3, 5, 7]; body ${EXPECT[$t]} bytes)"
    fi
done

# --- h2load
# h2load_cmd TARGET PHASE DURATION_S [LOG_FILE]: sets CMD
h2load_cmd() {
    local t="$1" phase="$2" dur="$3" logfile="${4:-}" c m
    if [[ "$phase" == load ]]; then c=$CONNS; m=$STREAMS; else c=1; m=1; fi
    local threads=$(( H2LOAD_THREADS < c ? H2LOAD_THREADS : c ))
    if [[ "${KIND[$t]}" == grpc ]]; then
        CMD=(h2load -t "$threads" -c "$c" -m "$m" -D "$dur" -d "$WORK/grpc-body.bin"
             -H 'content-type: application/grpc' -H 'te: trailers')
    else
        threads=$(( H2LOAD_THREADS < c * m ? H2LOAD_THREADS : c * m ))
        CMD=(h2load --h1 -t "$threads" -c $((c * m)) -m 1 -D "$dur" -d "$WORK/rest-body.json"
             -H 'content-type: application/json')
    fi
    [[ -z "$logfile" ]] || CMD+=(--log-file "$logfile")
    if [[ "${KIND[$t]}" == grpc ]]; then
        CMD+=("http://127.0.0.1:${PORT[$t]}$GRPC_PATH")
    else
        CMD+=("http://127.0.0.1:${PORT[$t]}$REST_PATH")
    fi
}

# measure TARGET PHASE ROUND: warm-up run, then the measured run (with per-request log)
measure() {
    local t="$1" phase="$2" r="$3"
    local file="$WORK/h2load/${phase}__${t}__$r.txt"
    h2load_cmd "$t" "$phase" "$WARMUP_S"
    run_client "$WORK/h2load/warmup-${phase}__${t}__$r.txt" $((WARMUP_S + 30)) "${CMD[@]}"
    h2load_cmd "$t" "$phase" "$DURATION_S" "$file.log"
    run_client "$file" $((DURATION_S + 30)) "${CMD[@]}"
    grep -q '^finished in' "$file" || { cat "$file" >&2; die "no result from: ${CMD[*]}"; }
    echo "${EXPECT[$t]}" >"$file.expect"
    alive "during the $phase run against $t" "${SERVER[$t]}"
}

PHASES=(load)
[[ "$LATENCY" == 0 ]] || PHASES+=(c1)
wait_quiet
for ((r = 1; r <= RUNS; r++)); do
    for phase in "${PHASES[@]}"; do
        for t in "${TARGETS[@]}"; do
            for ((attempt = 0; ; attempt++)); do
                log "round $r, $phase: $t"
                measure "$t" "$phase" "$r"
                f="$WORK/h2load/${phase}__${t}__$r.txt"
                contended "$f" && ((attempt < RETRY_CONTENDED)) || break
                log "contended run (other processes: $(cat "$f.other") cores); again after a quiet wait"
                keep_contended "$f" "contended$attempt"
                wait_quiet
            done
        done
    done
done

# --- report
for t in "${TARGETS[@]}"; do
    printf '%s\t%s\t%s\t%s\t%s\n' "$t" "${TITLE[$t]}" "${KIND[$t]}" "${SERVER[$t]}" "$(cat "$WORK/${SERVER[$t]}.cmd")"
done >"$WORK/targets.tsv"

set +e
python3 - "$WORK" "$KSERVE_FIRST" "$SKIP_OURS" "$ENFORCE" "$CONNS" "$STREAMS" "$DURATION_S" "$INVOCATION" \
    "$(h2load --version 2>/dev/null | head -n1)" "$H2LOAD_THREADS" <<'EOF' | tee "$WORK/report.md"
import glob, os, re, statistics, sys, time

(work, kserve_first, skip_ours, enforce, conns, streams, duration, invocation, h2load_version,
 threads) = sys.argv[1:]
skip_ours, enforce, conns, streams = skip_ours == "1", enforce == "1", int(conns), int(streams)
UNIT = {"us": 1e-6, "ms": 1e-3, "s": 1.0}

def parse(path):
    text = open(path).read()
    def ints(pattern):
        m = re.search(pattern, text, re.M)
        return [int(g) for g in m.groups()] if m else None
    fin = re.search(r"^finished in ([\d.]+)(us|ms|s), ([\d.]+) req/s", text, re.M)
    req = ints(r"^requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
               r"(\d+) errored, (\d+) timeout")
    codes = ints(r"^status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx")
    data = ints(r"^traffic: .*?, \S+ \((\d+)\) data")
    total, started, done, succeeded, failed, errored, timeout = req or [0] * 7
    expect = int(open(path + ".expect").read())
    # Every request must have had a full, correct-sized response: received body bytes equal
    # (correct response size) x succeeded, plus at most one response per request still in
    # flight when the duration ended.
    body = data[0] if data else -1
    in_flight = max(0, started - done)
    verified = (req is not None and codes is not None and failed == errored == timeout == 0
                and codes[0] == succeeded == done and succeeded > 0
                and succeeded * expect <= body <= (succeeded + in_flight) * expect)
    times = []
    for line in open(path + ".log"):
        cols = line.split("\t")
        if len(cols) >= 3 and cols[1] == "200":
            times.append(int(cols[2]) / 1000.0)
    times.sort()
    def pct(p):
        return times[min(len(times) - 1, max(0, -(-p * len(times) // 100) - 1))] if times else None
    return {"rps": float(fin.group(3)) if fin else None, "p50": pct(50), "p99": pct(99),
            "errors": failed + errored + timeout + (codes[1] + codes[2] + codes[3] if codes else 0),
            "done": done, "bytes_per_req": body / succeeded if succeeded else None, "expect": expect,
            "verified": verified, "cmd": open(path + ".cmd").read().strip(),
            "other": float(open(path + ".other").read())}

targets = [line.rstrip("\n").split("\t") for line in open(os.path.join(work, "targets.tsv"))]
title = {t[0]: t[1] for t in targets}
kind = {t[0]: t[2] for t in targets}
server_cmd = {}
for t in targets:
    server_cmd.setdefault(t[3], t[4].strip())

def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None

def f(v, digits=0):
    return "n/a" if v is None else f"{v:,.{digits}f}"

results = {}
for phase in ("load", "c1"):
    for label, *_ in targets:
        rs = [parse(p) for p in sorted(glob.glob(os.path.join(work, "h2load", f"{phase}__{label}__*.txt")))]
        if rs:
            results[phase, label] = {
                "rps": med(r["rps"] for r in rs), "p50": med(r["p50"] for r in rs),
                "p99": med(r["p99"] for r in rs), "n": len(rs), "errors": sum(r["errors"] for r in rs),
                "verified": all(r["verified"] for r in rs), "cmd": rs[0]["cmd"], "expect": rs[0]["expect"],
                "bytes_per_req": rs[0]["bytes_per_req"],
                "other": max(r["other"] for r in rs)}

cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
rounds = results["load", targets[0][0]]["n"]
print(f"## V2 ModelInfer on models/trivial: ours gRPC vs ours REST vs KServe gRPC ({time.strftime('%Y-%m-%d %H:%M')})")
print()
print(f"{os.cpu_count()} cores ({cpu}), loopback, one run of the script. Client: {h2load_version} "
      f"(-t {threads}, at most one thread per connection), on the same cores as the server under test: "
      f"client and server share the machine. {duration} s per measured run, "
      f"each after its own warm-up run; figures are medians of {rounds} interleaved round(s).")
print()

ours = results.get(("load", "ours-grpc"))
def table(phase, heading, shape):
    rows = [(label, results[phase, label]) for label, *_ in targets if (phase, label) in results]
    if not rows:
        return
    print(f"### {heading}")
    print()
    print(shape)
    print()
    print("| server | requests/s | p50 ms | p99 ms | errors | responses verified | other load (cores) | ours gRPC / this |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    base = results.get((phase, "ours-grpc"))
    for label, r in rows:
        ratio = "n/a" if base is None or not r["rps"] else f"{base['rps'] / r['rps']:.2f}"
        ver = "yes" if r["verified"] else f"**NO** ({f(r['bytes_per_req'], 1)} B/req, expected {r['expect']})"
        print(f"| {title[label]} | {f(r['rps'])} | {f(r['p50'], 2)} | {f(r['p99'], 2)} | {r['errors']} | {ver} | "
              f"{f(r['other'], 2)} | {ratio} |")
    print()

table("load", f"Load: {conns * streams} requests in flight",
      f"gRPC: {conns} connections x {streams} concurrent streams; REST: {conns * streams} HTTP/1.1 "
      f"keep-alive connections, one request each.")
table("c1", "Latency: 1 connection, 1 request in flight", "Unloaded round trip, both protocols.")
print("errors: failed, errored or timed-out requests and non-2xx answers. responses verified: every "
      "request got a response body of the size of a correct answer (the real-client check's); a failed "
      "gRPC call (HTTP 200, grpc-status in trailers only) has no body. other load: CPU used by processes "
      "other than these servers and h2load during the run (largest over rounds); above 0.25 the run was "
      "contended.")
print()

verdicts = []
k = results["load", kserve_first]
if ours is None:
    verdicts.append((f"ours gRPC / {title[kserve_first]} >= 10: not measured (SKIP_OURS=1)", None))
else:
    verdicts.append((f"ours gRPC / {title[kserve_first]} = {ours['rps'] / k['rps']:.2f} requests/s (bar >= 10)",
                     ours["rps"] / k["rps"] >= 10))
bad = [f"{phase} {label}" for (phase, label), r in results.items() if r["errors"] or not r["verified"]]
contended = [f"{phase} {label}" for (phase, label), r in results.items() if r["other"] > 0.25]
print("### Verdicts")
print()
if contended:
    print(f"- **WARNING** other processes used more than 0.25 cores during {', '.join(contended)}: "
          "those figures are low; rerun on a quiet machine.")
if bad:
    print(f"- **INVALID** errors or unverified responses in: {', '.join(bad)}")
else:
    print("- every measured run: 0 errors, every response verified")
for text, passed in verdicts:
    mark = "NOT MEASURED" if passed is None else ("PASS" if passed else "FAIL")
    print(f"- **{mark}** {text}")
print()
print("### Commands")
print()
print("```sh")
print(invocation)
for name, cmd in server_cmd.items():
    print(f"# {name}")
    print(cmd)
print("# request bodies (work dir): $VENV_KSERVE_BENCH/bin/python Benchmarks/grpc_trivial_request.py "
      "grpc-body grpc-body.bin; ... rest-body rest-body.json")
print("# measured runs (each after the same command with -D <warm-up> and no --log-file)")
for (phase, label), r in results.items():
    print(r["cmd"])
print("```")
if bad:
    sys.exit(4)
if enforce:
    if any(p is False for _, p in verdicts):
        sys.exit(3)
    if any(p is None for _, p in verdicts):
        sys.exit(2)
EOF
rc=("${PIPESTATUS[@]}")
set -e
(( rc[0] != 4 )) || die "some measured runs had errors or unverified responses (see the report)"
(( rc[0] == 0 || rc[0] == 2 || rc[0] == 3 )) || die "report failed"
ok=1
exit "${rc[0]}"
