# Helpers shared by the serving benchmarks (Benchmarks/http_vs_kserve_nginx.sh,
# Benchmarks/grpc_vs_kserve.sh). Sourced, not run; bash, set -euo pipefail in the caller.
#
# The caller sets, before sourcing: BENCH_TAG (log prefix), and before using the helpers
# the environment knobs they read: QUIET_WAIT, QUIET_CORES (wait_quiet), KEEP_LOGS
# (cleanup), READY_PATH (wait_ready). bench_init_work creates $WORK and installs the
# cleanup trap: every server started with `start` is stopped on exit (its whole process
# group, SIGTERM then SIGKILL after 15 s), and so is the load generator whose pid the
# caller keeps in CLIENT_PID while it runs. The caller sets ok=1 once it has succeeded
# (the work dir is then removed unless KEEP_LOGS=1).

log() { echo "${BENCH_TAG:-bench}: $*" >&2; }
die() { log "error: $*"; exit 1; }
seconds() { # 10s | 2m | 10 -> seconds
    case "$1" in *s) echo "${1%s}" ;; *m) echo $(( ${1%m} * 60 )) ;; *) echo "$1" ;; esac
}

# check_quiet_env: validates QUIET_WAIT, QUIET_CORES, RETRY_CONTENDED and RUNS.
check_quiet_env() {
    [[ "$RUNS" =~ ^[1-9][0-9]*$ ]] || die "RUNS must be a positive integer"
    [[ "$QUIET_WAIT" =~ ^[0-9]+$ ]] || die "QUIET_WAIT must be a whole number of seconds"
    [[ "$RETRY_CONTENDED" =~ ^[0-9]+$ ]] || die "RETRY_CONTENDED must be a whole number"
    [[ "$QUIET_CORES" =~ ^[0-9]*\.?[0-9]+$ ]] || die "QUIET_CORES must be a number"
}

# raise_open_files N: soft open-file limit to at least N (many connections need descriptors
# in the load generator and in each server).
raise_open_files() {
    local want="$1" soft
    soft="$(ulimit -Sn)"
    if [[ "$soft" != unlimited ]] && (( soft < want )); then
        ulimit -n "$want" 2>/dev/null || die "cannot raise the open-file limit to $want" \
            "(soft $soft, hard $(ulimit -Hn)): run as root or raise the hard limit (limits.conf / docker --ulimit nofile=$want)"
    fi
    log "open-file limit $(ulimit -Sn)"
}

# apt_ensure PACKAGE...: install the missing ones (same approach as scripts/install-deps.sh).
apt_ensure() {
    local package missing=() sudo_cmd=()
    for package in "$@"; do
        dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
    done
    ((${#missing[@]})) || return 0
    log "installing ${missing[*]}"
    [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
    "${sudo_cmd[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
}

# kserve_venv: sets VENV_KSERVE_BENCH (scripts/python-env.sh kserve-bench) and KSERVE_VERSION.
kserve_venv() {
    local env_lines
    VENV_KSERVE_BENCH=""
    env_lines="$(scripts/python-env.sh kserve-bench)" || die "scripts/python-env.sh kserve-bench failed"
    eval "$env_lines"
    [[ -x "$VENV_KSERVE_BENCH/bin/python" ]] || die "venv-kserve-bench missing"
    KSERVE_VERSION="$("$VENV_KSERVE_BENCH/bin/python" -c 'import importlib.metadata as m; print(m.version("kserve"))')"
}

# kserve_log_config FILE [KSERVE_LEVEL]: the 'quiet' KServe log config: uvicorn's access log
# and the kserve.trace timings dropped (WARNING); the kserve logger at KSERVE_LEVEL (default
# INFO: start-up lines; WARNING also drops the per-call "grpc method: ..." line that
# kserve's gRPC LoggingInterceptor writes at INFO for every call).
kserve_log_config() {
    cat >"$1" <<EOF
{"version": 1, "disable_existing_loggers": false,
 "formatters": {"plain": {"format": "%(asctime)s %(process)s %(name)s %(levelname)s %(message)s"}},
 "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "plain", "stream": "ext://sys.stderr"}},
 "loggers": {"kserve": {"handlers": ["stderr"], "level": "${2:-INFO}", "propagate": false},
             "kserve.trace": {"handlers": ["stderr"], "level": "WARNING", "propagate": false},
             "uvicorn": {"handlers": ["stderr"], "level": "INFO", "propagate": false},
             "uvicorn.access": {"handlers": ["stderr"], "level": "WARNING", "propagate": false}}}
EOF
}

# kserve_config_args CONFIG LOG_CONFIG_FILE: sets KSERVE_ARGS (extra kserve_trivial_server.py
# arguments) and KSERVE_TITLE for one of the KSERVE_CONFIGS entries.
kserve_config_args() {
    case "$1" in
        quiet) KSERVE_ARGS=(--enable_latency_logging false --log_config_file "$2")
               KSERVE_TITLE="KServe $KSERVE_VERSION (1 worker, request logs off)" ;;
        default-logging) KSERVE_ARGS=()
               KSERVE_TITLE="KServe $KSERVE_VERSION (1 worker, default logging)" ;;
        quiet-2workers) KSERVE_ARGS=(--enable_latency_logging false --log_config_file "$2" --workers 2)
               KSERVE_TITLE="KServe $KSERVE_VERSION (2 workers, request logs off)" ;;
        *) die "unknown KServe config '$1'" ;;
    esac
}

# bench_init_work PREFIX: $WORK = a new /tmp/PREFIX.XXXXXX; installs the cleanup trap.
bench_init_work() {
    WORK="$(mktemp -d "/tmp/$1.XXXXXX")"
    declare -gA PGID=()
    declare -ga STARTED=()
    CLIENT_PID=""
    ok=0
    trap cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    trap 'exit 141' PIPE  # stderr piped into something that quit: still stop the servers
}

cleanup() {
    local rc=$? name
    trap - EXIT INT TERM
    trap '' PIPE
    [[ -z "$CLIENT_PID" ]] || kill -TERM "$CLIENT_PID" 2>/dev/null || true
    for name in "${STARTED[@]}"; do
        kill -TERM -- "-${PGID[$name]}" 2>/dev/null || true
    done
    local deadline=$((SECONDS + 15))
    for name in "${STARTED[@]}"; do
        while kill -0 -- "-${PGID[$name]}" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.2; done
        if kill -0 -- "-${PGID[$name]}" 2>/dev/null; then
            log "$name did not stop on SIGTERM; killing"
            kill -KILL -- "-${PGID[$name]}" 2>/dev/null || true
        fi
    done
    if [[ "$ok" == 1 && "$KEEP_LOGS" != 1 ]]; then
        rm -rf -- "$WORK"
    else
        log "logs and raw load-generator output kept in $WORK"
    fi
    exit "$rc"
}

# run_client FILE LIMIT_S CMD...: runs the load generator in the background (so that a
# signal to the script is handled at once: cleanup stops it; timeout passes the TERM on),
# output to FILE; dies when it fails. Also records the run's other load (FILE.other) and
# its command line (FILE.cmd).
run_client() {
    local file="$1" limit="$2"; shift 2
    cpu_snapshot "$file.cpu0"
    timeout "$limit" "$@" >"$file" 2>&1 &
    CLIENT_PID=$!
    wait "$CLIENT_PID" || { CLIENT_PID=""; cat "$file" >&2; die "load generator failed: $*"; }
    CLIENT_PID=""
    cpu_snapshot "$file.cpu1"
    other_cores "$file.cpu0" "$file.cpu1" >"$file.other"
    shell_words "$@" >"$file.cmd"
}

# shell_words ARG...: one line, each argument quoted only when the shell needs it
shell_words() {
    local arg out=()
    for arg in "$@"; do
        if [[ "$arg" =~ ^[A-Za-z0-9_./:=@%+,-]+$ ]]; then out+=("$arg"); else out+=("${arg@Q}"); fi
    done
    printf '%s\n' "${out[*]}"
}

# Free loopback ports, all distinct (held open together while picked).
free_ports() {
    python3 - "$1" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}

# start NAME CMD... : runs CMD in its own session/process group, output to $WORK/NAME.log
start() {
    local name="$1"; shift
    printf '%q ' "$@" >"$WORK/$name.cmd"
    setsid "$@" >"$WORK/$name.log" 2>&1 </dev/null &
    PGID[$name]=$!
    STARTED+=("$name")
    log "started $name (pid ${PGID[$name]}): $(cat "$WORK/$name.cmd")"
}

fail_server() { # NAME MESSAGE
    log "$1: $2; last lines of $WORK/$1.log:"
    tail -n 25 "$WORK/$1.log" >&2 || true
    exit 1
}

# alive WHEN NAME...: every named server is still running, else fail ("died WHEN")
alive() {
    local when="$1" name; shift
    for name in "$@"; do
        kill -0 "${PGID[$name]}" 2>/dev/null || fail_server "$name" "died $when"
    done
}

# wait_ready NAME PORT TIMEOUT_S : GET $READY_PATH until 200
wait_ready() {
    local name="$1" port="$2" deadline=$((SECONDS + $3)) code
    while :; do
        kill -0 "${PGID[$name]}" 2>/dev/null || fail_server "$name" "exited before it was ready"
        code="$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$port$READY_PATH" || true)"
        [[ "$code" == 200 ]] && break
        ((SECONDS < deadline)) || fail_server "$name" "not ready after $3 s (last GET $READY_PATH: $code)"
        sleep 0.2
    done
    log "$name ready on 127.0.0.1:$port"
}

# wait_listening NAME PORT TIMEOUT_S : until 127.0.0.1:PORT accepts a TCP connection
wait_listening() {
    local name="$1" port="$2" deadline=$((SECONDS + $3))
    until python3 -c 'import socket, sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 1).close()' \
            "$port" 2>/dev/null; do
        kill -0 "${PGID[$name]}" 2>/dev/null || fail_server "$name" "exited before it listened on $port"
        ((SECONDS < deadline)) || fail_server "$name" "nothing listening on 127.0.0.1:$port after $3 s"
        sleep 0.2
    done
}

# cpu_snapshot FILE: CPU time (clock ticks) of every process, with its parent, at one instant.
# other_cores compares two: the CPU that processes which are *not* this script's descendants
# (servers, load generator, helpers) took in between, kernel threads left out (loopback
# softirq work is ours). On a 2-core machine a concurrent build halves every figure.
cpu_snapshot() {
    python3 - "$1" <<'EOF'
import json, os, sys, time
procs = {}
for entry in os.listdir("/proc"):
    if not entry.isdigit():
        continue
    try:
        with open(f"/proc/{entry}/stat") as f:
            stat = f.read()
    except OSError:
        continue
    # after "(comm) ": state ppid pgrp ... utime(11) stime(12) cutime(13) cstime(14)
    fields = stat[stat.rindex(")") + 2:].split()
    procs[entry] = [int(fields[1]), int(fields[11]) + int(fields[12]), int(fields[13]) + int(fields[14])]
with open(sys.argv[1], "w") as f:
    json.dump({"t": time.monotonic(), "hz": os.sysconf("SC_CLK_TCK"), "procs": procs}, f)
EOF
}

# other_cores BEFORE AFTER: cores' worth of CPU used by other processes between two snapshots
other_cores() {
    python3 - "$1" "$2" "$$" <<'EOF'
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
me = sys.argv[3]

def others(snapshot):
    procs = snapshot["procs"]
    def ours_or_kernel(pid):
        seen = 0
        while pid in procs and seen < 64:
            if pid == me or pid == "2":
                return True
            pid, seen = str(procs[pid][0]), seen + 1
        return pid == me or pid == "2"
    return {pid: v for pid, v in procs.items() if pid != "2" and not ours_or_kernel(pid)}

pa, pb = others(a), others(b)
ticks = 0
for pid, (_, self_time, children) in pb.items():
    before = pa.get(pid, [0, 0, 0])
    ticks += max(0, self_time + children - before[1] - before[2])
for pid, (_, self_time, children) in pa.items():
    if pid not in b["procs"]:  # exited in between: its parent's children time now holds it all
        ticks -= self_time + children
print("%.2f" % (max(0, ticks) / b["hz"] / (b["t"] - a["t"])))
EOF
}

# wait_quiet: wait until other processes use less than QUIET_CORES cores over a 2 s
# window; all waits together take at most QUIET_WAIT s (counted from the first call).
# The reports show each run's figure.
QUIET_DEADLINE=""
wait_quiet() {
    local busy
    [[ -n "$QUIET_DEADLINE" ]] || QUIET_DEADLINE=$((SECONDS + QUIET_WAIT))
    while :; do
        cpu_snapshot "$WORK/quiet.0"; sleep 2; cpu_snapshot "$WORK/quiet.1"
        busy="$(other_cores "$WORK/quiet.0" "$WORK/quiet.1")"
        if python3 -c "import sys; sys.exit(float(sys.argv[1]) >= float(sys.argv[2]))" "$busy" "$QUIET_CORES"; then
            log "machine quiet enough (other processes: $busy cores)"
            return 0
        fi
        if ((SECONDS >= QUIET_DEADLINE)); then
            log "warning: other processes use $busy cores and the QUIET_WAIT budget (${QUIET_WAIT}s) is spent; measuring anyway (see the report's 'other load' column)"
            return 0
        fi
        log "other processes use $busy cores; waiting for a quiet machine ($((QUIET_DEADLINE - SECONDS))s of QUIET_WAIT left)"
        sleep 3
    done
}

# contended FILE: true when other processes took more than 0.25 cores during that run
contended() {
    python3 -c "import sys; sys.exit(float(open(sys.argv[1]).read()) <= 0.25)" "$1.other"
}

# keep_contended FILE TAG: move a contended run's files out of the report's way
keep_contended() {
    local suffix
    for suffix in "" .cmd .cpu0 .cpu1 .other .log .expect; do
        [[ ! -e "$1$suffix" ]] || mv -- "$1$suffix" "${1%.txt}.$2.txt$suffix.kept"
    done
}
