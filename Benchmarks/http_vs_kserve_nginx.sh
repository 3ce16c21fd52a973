#!/usr/bin/env bash
# HTTP serving overhead, side by side in one run: our model server vs the KServe Python
# model server (same ONNX model, onnxruntime) vs nginx returning a fixed body, all on
# loopback, keep-alive KServe V1 predict on models/trivial (4 floats in, 4 out).
#
#   Benchmarks/http_vs_kserve_nginx.sh            # report (Markdown) on stdout
#
# 1. `wrk -t2 -c32 -d10s --latency -s Benchmarks/http_predict.lua` against each server
#    in turn (each after a 2 s warm-up run): requests/s, p50, p99; ratios ours/KServe
#    (bar: >= 10) and ours/nginx (bar: >= 0.35).
# 2. `wrk -t2 -c1000 -d10s` against ours and nginx: socket errors (connect, read,
#    write, timeout), non-2xx count, and established connections sampled mid-run
#    (bar: 1,000 held, zero errors).
#
# Environment:
#   MODEL_SERVER=.build/release/model-server   our binary; run as
#       $MODEL_SERVER --rest_api_port P --port G --model_name trivial --model_base_path models/trivial
#       (G: a free port for gRPC); ready when GET /v2/health/ready answers 200
#   MODEL_SERVER_ARGS=""       extra arguments for it (word-split)
#   SKIP_OURS=1                benchmark only KServe and nginx (validates the harness)
#   KSERVE_CONFIGS="quiet default-logging"   KServe set-ups, space-separated; the first
#       is the ratio's baseline. quiet: KServe defaults (1 worker, uvloop + httptools)
#       with per-request logging off (--enable_latency_logging false and a log config
#       that drops uvicorn's access log and the kserve.trace timings), the fair
#       counterpart of nginx's access_log off; default-logging: KServe's defaults as
#       shipped (4 log lines per request to the log file); quiet-2workers: quiet with
#       --workers 2.
#   RUNS=1                     rounds of the c32 comparison, interleaved
#                              (ours, KServe..., nginx, ours, ...); medians reported
#   DURATION=10s WARMUP=2s C1000_DURATION=10s
#   C1000_KSERVE=0             1: also put KServe (first config) under 1,000 connections
#   ENFORCE=0                  1: exit 3 if a bar is missed (exit 2 when not measured)
#   QUIET_WAIT=300 QUIET_CORES=0.15   before measuring, wait until processes other than
#                              ours use < QUIET_CORES cores (all waits together at most
#                              QUIET_WAIT s, then it measures anyway); each run's
#                              "other load" (cores used by other processes) is reported
#                              and a run above 0.25 cores is flagged as contended
#   RETRY_CONTENDED=2          repeat a contended c32 run (after a quiet wait) up to N times
#   KEEP_LOGS=0                1: keep the work dir (server logs, raw wrk output);
#                              it is always kept when the script fails
#
# Needs: Debian 12 (wrk, nginx, curl, iproute2 via apt when missing), Python 3.11 for
# the venv (scripts/python-env.sh kserve-bench), models/trivial (models/make_trivial.py).
# Exits non-zero when a server does not come up or answers a predict wrongly.
# Sends traffic only to 127.0.0.1; every server started here is stopped on exit.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
BENCH_TAG=http-bench
# shellcheck source=Benchmarks/lib.sh
source Benchmarks/lib.sh

MODEL_SERVER="${MODEL_SERVER:-.build/release/model-server}"
MODEL_SERVER_ARGS="${MODEL_SERVER_ARGS:-}"
SKIP_OURS="${SKIP_OURS:-0}"
KSERVE_CONFIGS="${KSERVE_CONFIGS:-quiet default-logging}"
RUNS="${RUNS:-1}"
DURATION="${DURATION:-10s}"
WARMUP="${WARMUP:-2s}"
C1000_DURATION="${C1000_DURATION:-10s}"
C1000_KSERVE="${C1000_KSERVE:-0}"
ENFORCE="${ENFORCE:-0}"
QUIET_WAIT="${QUIET_WAIT:-300}"
QUIET_CORES="${QUIET_CORES:-0.15}"
RETRY_CONTENDED="${RETRY_CONTENDED:-2}"
KEEP_LOGS="${KEEP_LOGS:-0}"

LUA="Benchmarks/http_predict.lua"
MODEL_DIR="models/trivial"
PREDICT_PATH="/v1/models/trivial:predict"
READY_PATH="/v2/health/ready"
REQUEST_BODY='{"instances": [[0.0, 1.0, 2.0, 3.0]]}'
OPEN_FILES=4096

check_quiet_env
for v in DURATION WARMUP C1000_DURATION; do
    [[ "${!v}" =~ ^[1-9][0-9]*[sm]?$ ]] || die "$v must look like 10s or 1m"
done
for c in $KSERVE_CONFIGS; do
    case "$c" in quiet|default-logging|quiet-2workers) ;;
        *) die "unknown KSERVE_CONFIGS entry '$c' (quiet, default-logging, quiet-2workers)" ;; esac
done
[[ -n "${KSERVE_CONFIGS// }" ]] || die "KSERVE_CONFIGS is empty"

# --- open-file limit: 1,000 connections need ~1,000 descriptors in wrk and in each server.
raise_open_files "$OPEN_FILES"

# --- tools (same approach as scripts/install-deps.sh)
apt_ensure wrk nginx curl iproute2
NGINX="$(command -v nginx || echo /usr/sbin/nginx)"
[[ -x "$NGINX" ]] || die "nginx not found"
command -v wrk >/dev/null || die "wrk not found"
command -v python3 >/dev/null || die "python3 not found"

# --- KServe venv, model, our binary
kserve_venv
[[ -f "$MODEL_DIR/1/model.onnx" ]] \
    || die "$MODEL_DIR/1/model.onnx missing: run ~/.cache/swift-model-server/venv/bin/python models/make_trivial.py"
if [[ "$SKIP_OURS" != 1 ]]; then
    [[ -x "$MODEL_SERVER" ]] || die "our server '$MODEL_SERVER' is not an executable: build it" \
        "(swift build -c release --product model-server), set MODEL_SERVER=..., or set SKIP_OURS=1"
fi

bench_init_work http-bench
mkdir -p "$WORK/wrk"

# check_predict NAME PORT : one POST, must be 200 with predictions [[1, 3, 5, 7]]
check_predict() {
    local name="$1" port="$2" out code body
    out="$(curl -s --max-time 10 -w '\n%{http_code}' -H 'Content-Type: application/json' \
        --data-binary "$REQUEST_BODY" "http://127.0.0.1:$port$PREDICT_PATH")" \
        || fail_server "$name" "predict request failed (curl)"
    code="${out##*$'\n'}"; body="${out%$'\n'*}"
    [[ "$code" == 200 ]] || fail_server "$name" "predict answered HTTP $code: $body"
    python3 -c 'import json, sys; assert json.loads(sys.argv[1])["predictions"] == [[1.0, 3.0, 5.0, 7.0]]' "$body" \
        2>/dev/null || fail_server "$name" "unexpected predict body: $body"
    log "$name predict OK: $body"
}

# --- servers
TARGETS=()          # labels, in benchmark order
declare -A PORT=() TITLE=()
n_kserve=$(wc -w <<<"$KSERVE_CONFIGS")
read -r -a ports <<<"$(free_ports $((3 + 2 * n_kserve)))"
pi=0

if [[ "$SKIP_OURS" != 1 ]]; then
    PORT[ours]=${ports[pi]}; grpc_port=${ports[pi + 1]}; pi=$((pi + 2))
    # --port: a free gRPC port too (its default, 8500, may be taken), as for KServe.
    # shellcheck disable=SC2086  # MODEL_SERVER_ARGS is word-split on purpose
    start ours "$MODEL_SERVER" --rest_api_port "${PORT[ours]}" --port "$grpc_port" --model_name trivial \
        --model_base_path "$MODEL_DIR" $MODEL_SERVER_ARGS
    TITLE[ours]="ours ($(basename "$MODEL_SERVER"))"
    TARGETS+=(ours)
fi

kserve_log_config "$WORK/kserve-quiet-log.json"
KSERVE_FIRST=""
for c in $KSERVE_CONFIGS; do
    label="kserve-$c"
    PORT[$label]=${ports[pi]}; grpc_port=${ports[pi + 1]}; pi=$((pi + 2))
    kserve_config_args "$c" "$WORK/kserve-quiet-log.json"
    args=(--model_name trivial --model_dir "$MODEL_DIR/1" --http_port "${PORT[$label]}" --grpc_port "$grpc_port"
          "${KSERVE_ARGS[@]}")
    TITLE[$label]="$KSERVE_TITLE"
    start "$label" "$VENV_KSERVE_BENCH/bin/python" Benchmarks/kserve_trivial_server.py "${args[@]}"
    TARGETS+=("$label")
    [[ -n "$KSERVE_FIRST" ]] || KSERVE_FIRST="$label"
done

PORT[nginx]=${ports[pi]}
mkdir -p "$WORK/nginx"
sed -e "s|@PREFIX@|$WORK/nginx|g" -e "s|@PORT@|${PORT[nginx]}|g" Benchmarks/nginx_fixed.conf >"$WORK/nginx/nginx.conf"
"$NGINX" -t -q -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" || die "nginx config test failed"
start nginx "$NGINX" -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf"
NGINX_VERSION="$("$NGINX" -v 2>&1 | sed 's|.*/||')"
TITLE[nginx]="nginx $NGINX_VERSION (fixed body)"
TARGETS+=(nginx)

for t in "${TARGETS[@]}"; do
    case "$t" in ours) tmo=60 ;; kserve-*) tmo=120 ;; *) tmo=20 ;; esac
    wait_ready "$t" "${PORT[$t]}" "$tmo"
done
if [[ "$SKIP_OURS" != 1 ]]; then
    grep -m1 -i "listening on" "$WORK/ours.log" >&2 || log "note: ours printed no 'listening on' line"
fi
for t in "${TARGETS[@]}"; do check_predict "$t" "${PORT[$t]}"; done

# --- wrk
# run_wrk FILE CONNS DURATION PORT
run_wrk() {
    local file="$1" conns="$2" dur="$3" port="$4"
    local cmd=(wrk -t2 "-c$conns" "-d$dur" --latency -s "$LUA" "http://127.0.0.1:$port$PREDICT_PATH")
    run_client "$file" $(( $(seconds "$dur") + 30 )) "${cmd[@]}"
    grep -q '^Requests/sec:' "$file" || { cat "$file" >&2; die "no result from: ${cmd[*]}"; }
}

wait_quiet
log "c32: ${RUNS} round(s) of ${DURATION} per server, each after a ${WARMUP} warm-up"
for ((r = 1; r <= RUNS; r++)); do
    for t in "${TARGETS[@]}"; do
        for ((attempt = 0; ; attempt++)); do
            log "c32 round $r: $t"
            run_wrk "$WORK/wrk/warmup__${t}__$r.txt" 32 "$WARMUP" "${PORT[$t]}"
            run_wrk "$WORK/wrk/c32__${t}__$r.txt" 32 "$DURATION" "${PORT[$t]}"
            contended "$WORK/wrk/c32__${t}__$r.txt" && ((attempt < RETRY_CONTENDED)) || break
            log "contended run (other processes: $(cat "$WORK/wrk/c32__${t}__$r.txt.other") cores); again after a quiet wait"
            keep_contended "$WORK/wrk/c32__${t}__$r.txt" "contended$attempt"
            wait_quiet
        done
    done
done

C1000_TARGETS=()
[[ "$SKIP_OURS" == 1 ]] || C1000_TARGETS+=(ours)
[[ "$C1000_KSERVE" != 1 ]] || C1000_TARGETS+=("$KSERVE_FIRST")
C1000_TARGETS+=(nginx)
c1000_s=$(seconds "$C1000_DURATION")
for t in "${C1000_TARGETS[@]}"; do
    log "c1000: $t"
    port="${PORT[$t]}"
    # Established server-side connections, sampled at 1/3 and 2/3 of the run.
    ( for at in $((c1000_s / 3)) $((c1000_s / 3)); do
          sleep "$at"
          ss -Htn state established "( sport = :$port )" 2>/dev/null | wc -l
      done >"$WORK/wrk/c1000__${t}__1.txt.established" ) &
    sampler=$!
    run_wrk "$WORK/wrk/c1000__${t}__1.txt" 1000 "$C1000_DURATION" "$port"
    wait "$sampler" || true
    if contended "$WORK/wrk/c1000__${t}__1.txt"; then
        log "note: contended c1000 run (other processes: $(cat "$WORK/wrk/c1000__${t}__1.txt.other") cores); not repeated"
    fi
    alive "during the 1,000-connection run" "${TARGETS[@]}"
done

# --- report
for t in "${TARGETS[@]}"; do
    printf '%s\t%s\t%s\t%s\n' "$t" "${TITLE[$t]}" "${PORT[$t]}" "$(cat "$WORK/$t.cmd")"
done >"$WORK/targets.tsv"

set +e
python3 - "$WORK" "${KSERVE_FIRST}" "$SKIP_OURS" "$ENFORCE" <<'EOF' | tee "$WORK/report.md"
import glob, os, re, statistics, subprocess, sys, time

work, kserve_first, skip_ours, enforce = sys.argv[1], sys.argv[2], sys.argv[3] == "1", sys.argv[4] == "1"
UNIT = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}

def parse(path):
    text = open(path).read()
    def num(pattern, default=None):
        m = re.search(pattern, text, re.M)
        return float(m.group(1)) if m else default
    def lat(p):
        m = re.search(r"^\s+%s%%\s+([\d.]+)(us|ms|s|m|h)\s*$" % p, text, re.M)
        return float(m.group(1)) * UNIT[m.group(2)] if m else None
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    return {
        "rps": num(r"^Requests/sec:\s+([\d.]+)"),
        "requests": int(num(r"^\s*(\d+) requests in", 0)),
        "p50": lat(50), "p99": lat(99),
        "errors": dict(zip(("connect", "read", "write", "timeout"), map(int, sock.groups()))) if sock
                  else {"connect": 0, "read": 0, "write": 0, "timeout": 0},
        "non2xx": int(num(r"Non-2xx or 3xx responses:\s+(\d+)", 0)),
        "cmd": open(path + ".cmd").read().strip(),
        "other": float(open(path + ".other").read()) if os.path.exists(path + ".other") else None,
    }

targets = [line.rstrip("\n").split("\t") for line in open(os.path.join(work, "targets.tsv"))]
name = {t[0]: t[1] for t in targets}
srv_cmd = {t[0]: t[3].strip() for t in targets}

def runs(phase, label):
    return [parse(p) for p in sorted(glob.glob(os.path.join(work, "wrk", f"{phase}__{label}__*.txt")))]

def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None

def f(v, digits=0):
    return "n/a" if v is None else f"{v:,.{digits}f}"

c32 = {}
for label, *_ in targets:
    rs = runs("c32", label)
    c32[label] = {"rps": med(r["rps"] for r in rs), "p50": med(r["p50"] for r in rs),
                  "p99": med(r["p99"] for r in rs), "n": len(rs),
                  "non2xx": sum(r["non2xx"] for r in rs),
                  "sockerr": sum(sum(r["errors"].values()) for r in rs), "cmd": rs[0]["cmd"],
                  "other": max((r["other"] for r in rs if r["other"] is not None), default=None)}

ours = None if skip_ours else c32["ours"]["rps"]
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
print(f"## HTTP V1 predict on models/trivial: ours vs KServe vs nginx ({time.strftime('%Y-%m-%d %H:%M')})")
print()
print(f"{os.cpu_count()} cores ({cpu}), loopback, one run of the script; client `wrk -t2` on the same cores. "
      f"Figures are medians of {c32[targets[0][0]]['n']} interleaved round(s).")
print()
print("### Keep-alive, 32 connections")
print()
print("| server | requests/s | p50 ms | p99 ms | non-2xx | socket errors | other load (cores) | ours / this |")
print("|---|---:|---:|---:|---:|---:|---:|---:|")
for label, *_ in targets:
    r = c32[label]
    ratio = "n/a" if ours is None or not r["rps"] else f"{ours / r['rps']:.2f}"
    print(f"| {name[label]} | {f(r['rps'])} | {f(r['p50'], 2)} | {f(r['p99'], 2)} | {r['non2xx']} | {r['sockerr']} | {f(r['other'], 2)} | {ratio} |")
print()
print("other load: cores' worth of CPU that processes other than these servers and wrk used during "
      "the measured run (largest over rounds); above 0.25 the run was contended.")
print()

verdicts = []  # (text, passed or None when not measured)
k = c32[kserve_first]["rps"]; n = c32["nginx"]["rps"]
if ours is None:
    verdicts.append((f"ours / {name[kserve_first]} >= 10: not measured (SKIP_OURS=1)", None))
    verdicts.append(("ours / nginx >= 0.35: not measured (SKIP_OURS=1)", None))
else:
    verdicts.append((f"ours / {name[kserve_first]} = {ours / k:.2f} (bar >= 10)", ours / k >= 10))
    verdicts.append((f"ours / nginx = {ours / n:.3f} (bar >= 0.35)", ours / n >= 0.35))
    verdicts.append((f"ours p99 = {f(c32['ours']['p99'], 2)} ms; ours non-2xx + socket errors = "
                     f"{c32['ours']['non2xx'] + c32['ours']['sockerr']}",
                     c32["ours"]["non2xx"] + c32["ours"]["sockerr"] == 0))

print("### 1,000 keep-alive connections")
print()
print("| server | requests/s | p99 ms | established (sampled) | connect | read | write | timeout | non-2xx | other load (cores) |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for label, *_ in targets:
    rs = runs("c1000", label)
    if not rs:
        continue
    r = rs[0]
    est_path = glob.glob(os.path.join(work, "wrk", f"c1000__{label}__1.txt.established"))
    est = [int(x) for x in open(est_path[0]).read().split()] if est_path else []
    e = r["errors"]
    print(f"| {name[label]} | {f(r['rps'])} | {f(r['p99'], 2)} | {' / '.join(map(str, est)) or 'n/a'} | "
          f"{e['connect']} | {e['read']} | {e['write']} | {e['timeout']} | {r['non2xx']} | {f(r['other'], 2)} |")
    if label == "ours":
        errs = sum(e.values()) + r["non2xx"]
        held = bool(est) and min(est) >= 1000
        verdicts.append((f"ours under 1,000 connections: {errs} errors, established {est} (bar: 0 errors, 1,000 held)",
                         errs == 0 and held))
print()
contended = sorted({os.path.basename(p)[:-len(".other")] for p in glob.glob(os.path.join(work, "wrk", "c*.txt.other"))
                    if float(open(p).read()) > 0.25})
print("### Verdicts")
print()
if contended:
    print(f"- **WARNING** other processes used more than 0.25 cores during {len(contended)} measured run(s) "
          f"({', '.join(c[:-4] for c in contended)}): those figures are low; rerun on a quiet machine.")
for text, passed in verdicts:
    mark = "NOT MEASURED" if passed is None else ("PASS" if passed else "FAIL")
    print(f"- **{mark}** {text}")
print()
print("### Commands")
print()
print("```sh")
for label, *_ in targets:
    print(f"# {name[label]}")
    print(srv_cmd[label])
print("# per server: warm-up, then the measured run (URL per server)")
print(runs("warmup", targets[0][0])[0]["cmd"])
print(c32[targets[0][0]]["cmd"])
first1000 = next((runs("c1000", l)[0]["cmd"] for l, *_ in targets if runs("c1000", l)), None)
if first1000:
    print(first1000)
print("```")
if enforce:
    if any(p is False for _, p in verdicts):
        sys.exit(3)
    if any(p is None for _, p in verdicts):
        sys.exit(2)
EOF
rc=("${PIPESTATUS[@]}")
set -e
(( rc[0] == 0 || rc[0] == 2 || rc[0] == 3 )) || die "report failed"
ok=1
exit "${rc[0]}"
