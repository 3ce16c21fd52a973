#!/usr/bin/env bash
# InceptionV3 JPEG classification under 16 concurrent clients (issue 4): our model server
# with batching off, fixed queue delay and latency-target mode, vs the KServe Python
# server doing the same work (Pillow decode + central crop + resize, onnxruntime), one
# after the other in the same run, on loopback.
#
#   Benchmarks/inception_batching.sh            # report (Markdown) on stdout
#
# Request: POST /v1/models/inception:predict {"instances": [{"b64": "<JPEG>"}]}, one
# 640x480 quality-90 JPEG (smooth gradient + noise, generated here) per request.
# Per configuration: start the server, wait for GET /v2/health/ready == 200, check one
# predict returns 200 with 1000 logits, warm up (wrk WARMUP), measure with
# `wrk -t2 -c16 -d$DURATION --latency --timeout $WRK_TIMEOUT`, stop the server.
#
# Configurations (CONFIGS, space-separated, default all four, in this order):
#   off     config.pbtxt max_batch_size 8, no dynamic_batching, no latency target
#   fixed   max_batch_size 8, dynamic_batching { max_queue_delay_microseconds: 5000 }
#   target  max_batch_size 8, parameters latency_target_ms = $LATENCY_TARGET_MS (no
#           dynamic_batching block: the target alone enables batching)
#   kserve  Benchmarks/kserve_inception_server.py (KServe defaults, request logs off)
#
# Environment: MODEL_SERVER=.build/release/model-server  MODEL_ONNX=~/.cache/swift-model-server/models/inception_v3/model.onnx
#   DURATION=20s WARMUP=3s WRK_TIMEOUT=30s LATENCY_TARGET_MS=500
#   ROUNDS=1: run all configurations in turn this many times; the report gives each figure's
#   median over the rounds and the median of the per-round ours/KServe ratios (this VM's
#   speed drifts by 20-40% between minutes, so neighbours in time are compared)
#   QUIET_WAIT=180 QUIET_CORES=0.15: before each configuration (no server running), wait
#   until the machine's busy CPU is below QUIET_CORES cores (at most QUIET_WAIT s in all)
#   KEEP_LOGS=0 (1: keep the work dir; it is always kept on failure)
# Pitfall: wrk's default --timeout is 2 s; with 16 clients queued behind ~100+ ms
# inferences on 2 cores, KServe's latencies pass 2 s and wrk would drop them from the
# histogram as "timeout" errors, so a longer --timeout is set.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

MODEL_SERVER="${MODEL_SERVER:-.build/release/model-server}"
MODEL_ONNX="${MODEL_ONNX:-$HOME/.cache/swift-model-server/models/inception_v3/model.onnx}"
VENV_KSERVE="${VENV_KSERVE:-$HOME/.cache/swift-model-server/venv-kserve-bench}"
VENV_TEST="${VENV_TEST:-$HOME/.cache/swift-model-server/venv}"
CONFIGS="${CONFIGS:-off fixed target kserve}"
DURATION="${DURATION:-20s}"
WARMUP="${WARMUP:-3s}"
WRK_TIMEOUT="${WRK_TIMEOUT:-30s}"
ROUNDS="${ROUNDS:-1}"
CONNS=16
LATENCY_TARGET_MS="${LATENCY_TARGET_MS:-500}"
QUIET_WAIT="${QUIET_WAIT:-180}"
QUIET_CORES="${QUIET_CORES:-0.15}"
KEEP_LOGS="${KEEP_LOGS:-0}"
PREDICT_PATH="/v1/models/inception:predict"

log() { echo "inception-bench: $*" >&2; }
die() { log "error: $*"; exit 1; }

for c in $CONFIGS; do
    case "$c" in off|fixed|target|kserve) ;; *) die "unknown CONFIGS entry '$c'" ;; esac
done
command -v wrk >/dev/null || die "wrk not found (apt-get install wrk)"
[[ -f "$MODEL_ONNX" ]] || die "$MODEL_ONNX missing"
[[ -x "$VENV_TEST/bin/python" ]] || die "$VENV_TEST (test venv, Pillow) missing"
[[ " $CONFIGS " != *" kserve "* || -x "$VENV_KSERVE/bin/python" ]] || die "$VENV_KSERVE missing (scripts/python-env.sh kserve-bench)"
[[ "$CONFIGS" == kserve || -x "$MODEL_SERVER" ]] || die "$MODEL_SERVER is not built"

WORK="$(mktemp -d /tmp/inception-bench.XXXXXX)"
SERVER_PID=""
WRK_PID=""
ok=0

stop_server() {
    [[ -n "$SERVER_PID" ]] || return 0
    kill -TERM -- "-$SERVER_PID" 2>/dev/null || true
    local deadline=$((SECONDS + 15))
    while kill -0 -- "-$SERVER_PID" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.2; done
    if kill -0 -- "-$SERVER_PID" 2>/dev/null; then
        log "server (pgid $SERVER_PID) did not stop on SIGTERM; killing"
        kill -KILL -- "-$SERVER_PID" 2>/dev/null || true
    fi
    SERVER_PID=""
}
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    [[ -z "$WRK_PID" ]] || kill -TERM "$WRK_PID" 2>/dev/null || true
    stop_server
    if [[ "$ok" == 1 && "$KEEP_LOGS" != 1 ]]; then rm -rf -- "$WORK"; else log "logs kept in $WORK"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- request: one realistic JPEG, the V1 body, the wrk script
"$VENV_TEST/bin/python" - "$WORK" <<'EOF'
import base64, io, json, sys
import numpy as np
from PIL import Image
work = sys.argv[1]
rng = np.random.default_rng(4)
h, w = 480, 640
y, x = np.mgrid[0:h, 0:w].astype(np.float32)
smooth = np.stack([128 + 100 * np.sin(x / 90 + c) * np.cos(y / 70 - c) for c in (0.0, 1.3, 2.6)], axis=-1)
pixels = np.clip(smooth + rng.normal(0, 12, smooth.shape), 0, 255).astype(np.uint8)
buf = io.BytesIO()
Image.fromarray(pixels).save(buf, format="JPEG", quality=90)
open(f"{work}/image.jpg", "wb").write(buf.getvalue())
json.dump({"instances": [{"b64": base64.b64encode(buf.getvalue()).decode()}]}, open(f"{work}/body.json", "w"))
EOF
log "JPEG $(stat -c %s "$WORK/image.jpg") bytes, request body $(stat -c %s "$WORK/body.json") bytes"
cat >"$WORK/predict.lua" <<EOF
-- keep-alive V1 predict of one base64 JPEG; no response() callback (client CPU).
local f = assert(io.open("$WORK/body.json", "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"
EOF

cat >"$WORK/kserve-quiet-log.json" <<'EOF'
{"version": 1, "disable_existing_loggers": false,
 "formatters": {"plain": {"format": "%(asctime)s %(process)s %(name)s %(levelname)s %(message)s"}},
 "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "plain", "stream": "ext://sys.stderr"}},
 "loggers": {"kserve": {"handlers": ["stderr"], "level": "INFO", "propagate": false},
             "kserve.trace": {"handlers": ["stderr"], "level": "WARNING", "propagate": false},
             "uvicorn": {"handlers": ["stderr"], "level": "INFO", "propagate": false},
             "uvicorn.access": {"handlers": ["stderr"], "level": "WARNING", "propagate": false}}}
EOF

# --- helpers
free_ports() {
    python3 - <<'EOF'
import socket
a, b = socket.socket(), socket.socket()
a.bind(("127.0.0.1", 0)); b.bind(("127.0.0.1", 0))
print(a.getsockname()[1], b.getsockname()[1])
EOF
}
busy_cores() { # whole-machine busy CPU over 2 s, in cores (nothing of ours runs meanwhile)
    python3 - <<'EOF'
import time
def read():
    v = list(map(int, open("/proc/stat").readline().split()[1:]))
    return sum(v), v[3] + v[4]
t0, i0 = read(); time.sleep(2); t1, i1 = read()
import os
print(f"{((t1 - t0) - (i1 - i0)) / max(1, t1 - t0) * os.cpu_count():.2f}")
EOF
}
QUIET_DEADLINE=$((SECONDS + QUIET_WAIT))
wait_quiet() {
    local busy
    while :; do
        busy="$(busy_cores)"
        python3 -c "import sys; sys.exit(float(sys.argv[1]) >= float(sys.argv[2]))" "$busy" "$QUIET_CORES" && break
        ((SECONDS < QUIET_DEADLINE)) || { log "warning: machine busy ($busy cores) and QUIET_WAIT spent; measuring anyway"; break; }
        log "machine busy ($busy cores); waiting"
        sleep 3
    done
    echo "$busy"
}
fail_server() { # LABEL MESSAGE
    log "$1: $2; last lines of $WORK/$1.log:"
    tail -n 30 "$WORK/$1.log" >&2 || true
    exit 1
}
wait_ready() { # LABEL PORT TIMEOUT
    local deadline=$((SECONDS + $3)) code
    while :; do
        kill -0 "$SERVER_PID" 2>/dev/null || fail_server "$1" "exited before it was ready"
        code="$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$2/v2/health/ready" || true)"
        [[ "$code" == 200 ]] && break
        ((SECONDS < deadline)) || fail_server "$1" "not ready after $3 s (last: $code)"
        sleep 0.3
    done
}
check_predict() { # LABEL PORT : 200 with one row of 1000 logits; prints the top-1 class
    local code
    code="$(curl -s --max-time 60 -o "$WORK/$1.predict.json" -w '%{http_code}' -H 'Content-Type: application/json' \
        --data-binary "@$WORK/body.json" "http://127.0.0.1:$2$PREDICT_PATH")" || fail_server "$1" "predict failed (curl)"
    [[ "$code" == 200 ]] || fail_server "$1" "predict answered HTTP $code: $(head -c 300 "$WORK/$1.predict.json")"
    python3 - "$WORK/$1.predict.json" >"$WORK/$1.top1" <<'EOF' || fail_server "$1" "unexpected predict body: $(head -c 300 "$WORK/$1.predict.json")"
import json, sys
p = json.load(open(sys.argv[1]))["predictions"]
assert len(p) == 1 and len(p[0]) == 1000, (len(p), len(p[0]))
row = [float(v) for v in p[0]]
best = max(range(1000), key=row.__getitem__)
print(f"{best} ({row[best]:.2f})")
EOF
}
run_wrk() { # FILE DURATION PORT
    local limit=$(( ${2%s} + ${WRK_TIMEOUT%s} + 30 ))
    local cmd=(wrk -t2 "-c$CONNS" "-d$2" --latency --timeout "$WRK_TIMEOUT" -s "$WORK/predict.lua" "http://127.0.0.1:$3$PREDICT_PATH")
    timeout "$limit" "${cmd[@]}" >"$1" 2>&1 &
    WRK_PID=$!
    wait "$WRK_PID" || { WRK_PID=""; cat "$1" >&2; die "wrk failed: ${cmd[*]}"; }
    WRK_PID=""
    printf '%s\n' "${cmd[*]}" >"$1.cmd"
}

write_config() { # CONFIG REPO
    mkdir -p "$2/inception/1"
    ln -sf "$MODEL_ONNX" "$2/inception/1/model.onnx"
    {
        echo 'max_batch_size: 8'
        [[ "$1" != fixed ]] || echo 'dynamic_batching { max_queue_delay_microseconds: 5000 }'
        echo 'parameters { key: "image_input" value { string_value: "input" } }'
        echo 'parameters { key: "image_resize" value { string_value: "central_crop:0.875" } }'
        echo 'parameters { key: "image_scale" value { string_value: "0.00784313725490196" } }'
        echo 'parameters { key: "image_mean" value { string_value: "1" } }'
        [[ "$1" != target ]] || echo "parameters { key: \"latency_target_ms\" value { string_value: \"$LATENCY_TARGET_MS\" } }"
    } >"$2/inception/config.pbtxt"
}

# --- run
declare -A TITLE=([off]="ours, batching off" [fixed]="ours, fixed delay 5 ms (max batch 8)"
                  [target]="ours, latency target ${LATENCY_TARGET_MS} ms (max batch 8)"
                  [kserve]="KServe $("$VENV_KSERVE/bin/python" -c 'import importlib.metadata as m; print(m.version("kserve"))' 2>/dev/null || echo '?') (Pillow + onnxruntime)")
for R in $(seq "$ROUNDS"); do
for c in $CONFIGS; do
    busy="$(wait_quiet)"
    echo "$busy" >"$WORK/$c.$R.quiet"
    read -r port gport <<<"$(free_ports)"
    if [[ "$c" == kserve ]]; then
        cmd=("$VENV_KSERVE/bin/python" Benchmarks/kserve_inception_server.py --model_name inception
             --model_dir "$(dirname "$MODEL_ONNX")" --http_port "$port" --grpc_port "$gport"
             --enable_latency_logging false --log_config_file "$WORK/kserve-quiet-log.json")
    else
        write_config "$c" "$WORK/repo-$c"
        cmd=("$MODEL_SERVER" --rest_api_port "$port" --port "$gport" --model_repository "$WORK/repo-$c")
    fi
    printf '%q ' "${cmd[@]}" >"$WORK/$c.cmd"
    log "round $R/$ROUNDS, $c (machine busy before: $busy cores): $(cat "$WORK/$c.cmd")"
    setsid "${cmd[@]}" >"$WORK/$c.log" 2>&1 </dev/null &
    SERVER_PID=$!
    wait_ready "$c" "$port" 180
    [[ "$c" == kserve ]] || grep -m1 -i "listening on" "$WORK/$c.log" >&2 || log "note: no 'listening on' line"
    check_predict "$c" "$port"
    log "$c ready, predict OK, top-1 class $(cat "$WORK/$c.top1")"
    run_wrk "$WORK/$c.warmup.txt" "$WARMUP" "$port"
    run_wrk "$WORK/$c.$R.wrk.txt" "$DURATION" "$port"
    kill -0 "$SERVER_PID" 2>/dev/null || fail_server "$c" "died during the run"
    if grep -q "Non-2xx\|Socket errors" "$WORK/$c.$R.wrk.txt"; then
        log "$c: errors during the run; wrk output and server log tail:"
        cat "$WORK/$c.$R.wrk.txt" >&2; tail -n 30 "$WORK/$c.log" >&2
        tail -n 30 "$WORK/$c.log" >>"$WORK/$c.logtail"
    fi
    stop_server
done
done

# --- report
for c in $CONFIGS; do echo "${TITLE[$c]}" >"$WORK/$c.title"; done
python3 - "$WORK" "$CONFIGS" "$ROUNDS" <<'EOF'
import os, re, statistics, sys, time
work, configs, rounds = sys.argv[1], sys.argv[2].split(), int(sys.argv[3])
title = {c: open(f"{work}/{c}.title").read().strip() for c in configs}
UNIT = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}
def parse(path):
    t = open(path).read()
    lat = lambda p: (lambda m: float(m.group(1)) * UNIT[m.group(2)] if m else None)(
        re.search(r"^\s+%s%%\s+([\d.]+)(us|ms|s|m)\s*$" % p, t, re.M))
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", t)
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", t)
    req = re.search(r"^\s*(\d+) requests in", t, re.M)
    return {"rps": float(re.search(r"^Requests/sec:\s+([\d.]+)", t, re.M).group(1)), "p50": lat(50), "p99": lat(99),
            "n": int(req.group(1)) if req else 0, "non2xx": int(non2xx.group(1)) if non2xx else 0,
            "sock": sum(map(int, sock.groups())) if sock else 0,
            "sockd": "connect %s, read %s, write %s, timeout %s" % sock.groups() if sock else ""}
runs = {c: [parse(f"{work}/{c}.{i}.wrk.txt") for i in range(1, rounds + 1)] for c in configs}
quiet = {c: [open(f"{work}/{c}.{i}.quiet").read().strip() for i in range(1, rounds + 1)] for c in configs}
def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None
# Per configuration: the median of each figure over the rounds; counts summed.
r = {c: {"rps": median(x["rps"] for x in runs[c]), "p50": median(x["p50"] for x in runs[c]),
         "p99": median(x["p99"] for x in runs[c]), "n": sum(x["n"] for x in runs[c]),
         "non2xx": sum(x["non2xx"] for x in runs[c]), "sock": sum(x["sock"] for x in runs[c]),
         "sockd": "; ".join(x["sockd"] for x in runs[c] if x["sock"])} for c in configs}
k = r.get("kserve", {}).get("rps")
# Rounds run the configurations back to back, so a round's ratio compares neighbours in time.
round_ratio = {c: median(a["rps"] / b["rps"] for a, b in zip(runs[c], runs["kserve"])) if "kserve" in runs else None
               for c in configs}
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
print(f"## InceptionV3 JPEG classification, 16 clients ({time.strftime('%Y-%m-%d %H:%M')})")
print()
print(f"{os.cpu_count()} cores ({cpu}), loopback, wrk -t2 on the same cores; one 640x480 q90 JPEG "
      f"({os.path.getsize(work + '/image.jpg')} bytes) per request; one configuration at a time; {rounds} round(s) "
      f"of all configurations in turn, medians over the rounds (requests and errors: totals).")
print()
print("| configuration | req/s | p50 ms | p99 ms | requests | non-2xx | socket errors | busy before (cores) | top-1 | ours / KServe req/s (median of rounds) |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
f = lambda v, d=0: "n/a" if v is None else f"{v:,.{d}f}"
for c in configs:
    x = r[c]
    ratio = "—" if c == "kserve" or round_ratio[c] is None else f"{round_ratio[c]:.2f}"
    print(f"| {title[c]} | {f(x['rps'], 2)} | {f(x['p50'], 1)} | {f(x['p99'], 1)} | {x['n']} | {x['non2xx']} | "
          f"{x['sock']}{' (' + x['sockd'] + ')' if x['sock'] else ''} | {', '.join(quiet[c])} | "
          f"{open(f'{work}/{c}.top1').read().split()[0]} | {ratio} |")
print()
if rounds > 1:
    print("Per round: req/s (p99 ms)")
    print()
    print("| configuration | " + " | ".join(f"round {i}" for i in range(1, rounds + 1)) + " |")
    print("|---|" + "---:|" * rounds)
    for c in configs:
        print(f"| {title[c]} | " + " | ".join(f"{x['rps']:.2f} ({f(x['p99'], 0)})" for x in runs[c]) + " |")
    print()
if k:
    kp = r["kserve"]["p99"]
    for c in configs:
        if c == "kserve": continue
        x = r[c]
        good = round_ratio[c] > 1 and x["p99"] is not None and kp is not None and x["p99"] < kp and x["non2xx"] + x["sock"] == 0
        print(f"- {'PASS' if good else 'FAIL'} {title[c]}: throughput x{round_ratio[c]:.2f} (median of per-round ratios), "
              f"p99 {f(x['p99'], 1)} ms vs KServe {f(kp, 1)} ms")
    print()
for c in configs:
    if os.path.exists(f"{work}/{c}.logtail"):
        print(f"### {title[c]}: server log tail (errors during the run)\n\n```\n{open(f'{work}/{c}.logtail').read()}```\n")
print("### Commands")
print()
print("```sh")
for c in configs:
    print(f"# {title[c]}")
    if os.path.exists(f"{work}/repo-{c}/inception/config.pbtxt"):
        print(f"# {work}/repo-{c}/inception/config.pbtxt:")
        print("\n".join("#   " + l for l in open(f"{work}/repo-{c}/inception/config.pbtxt").read().splitlines()))
    print(open(f"{work}/{c}.cmd").read().strip())
print("# per configuration: warm-up, then the measured run")
print(open(f"{work}/{configs[0]}.warmup.txt.cmd").read().strip())
print(open(f"{work}/{configs[0]}.1.wrk.txt.cmd").read().strip())
print("```")
EOF
ok=1
