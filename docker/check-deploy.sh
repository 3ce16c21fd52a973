#!/usr/bin/env bash
# Offline checks of what docker/ ships (no daemon, no cluster): hadolint on the Dockerfile,
# `kubectl kustomize` of the base and the Inception overlay, kubernetes-validate --strict of
# every rendered object for Kubernetes $K8S_VERSION, and docker/check_kserve.py (KServe CRD
# schemas with unknown fields rejected, the webhook's priority rule against KServe's default
# runtimes). Tools come from the pinned deploy venv (scripts/python-env.sh deploy).
#
#   docker/check-deploy.sh          # prints one line per check, "N passed, N failed" last
set -uo pipefail
cd "$(dirname "$0")/.."
K8S_VERSION="${K8S_VERSION:-1.33.0}"
KSERVE_REFERENCE="${KSERVE_REFERENCE:-$PWD/../shared/reference/kserve}"
eval "$(scripts/python-env.sh deploy)" || exit 1
BIN="$VENV_DEPLOY/bin"
WORK="$(mktemp -d)"; trap 'rm -rf "$WORK"' EXIT
passed=0 failed=0
run() {  # run NAME COMMAND...
    local name="$1"; shift
    if "$@" >"$WORK/out" 2>&1; then passed=$((passed + 1)); echo "PASS $name"
    else failed=$((failed + 1)); echo "FAIL $name"; sed 's/^/     /' "$WORK/out" | tail -20; fi
}

# Every rule on; an ignored one is explained where it is ignored (`# hadolint ignore=` lines).
run "hadolint $("$BIN/hadolint" --version | grep -o '[0-9.]*$'): docker/Dockerfile, no warning" \
    "$BIN/hadolint" --failure-threshold style docker/Dockerfile
run "hadolint fails the Dockerfile without its explained ignores (the check can fail)" \
    sh -c "grep -v 'hadolint ignore' docker/Dockerfile >'$WORK/Dockerfile' && ! '$BIN/hadolint' '$WORK/Dockerfile'"
# The build stage's COPY sources (the files a `docker build` compiles) must make a package
# SwiftPM loads: e.g. the manifest's test targets need their directories.
context_check() {
    local dir="$WORK/context" source
    mkdir -p "$dir"
    for source in $(sed -n '/^FROM swift/,/^FROM /p' docker/Dockerfile | awk '/^COPY /{for (i = 2; i < NF; i++) print $i}'); do
        cp -r "$source" "$dir/" || return 1
    done
    (cd "$dir" && swift package describe >/dev/null)
}
run "the Dockerfile's build stage copies a package SwiftPM loads" context_check
run "entrypoint is POSIX sh" sh -n docker/entrypoint.sh
for dir in docker/k8s docker/k8s-inception; do
    run "kubectl kustomize $dir ($("$BIN/kubectl" version --client | grep -o 'Kustomize Version: .*'))" \
        sh -c "'$BIN/kubectl' kustomize '$dir' >'$WORK/$(basename "$dir").yaml'"
    run "kubernetes-validate --strict -k $K8S_VERSION: every object of $dir" \
        sh -c "'$BIN/kubernetes-validate' --strict -k '$K8S_VERSION' '$WORK/$(basename "$dir").yaml' \
               && [ \"\$(grep -c '^kind:' '$WORK/$(basename "$dir").yaml')\" -ge 6 ]"
done
run "kubernetes-validate --strict rejects a misspelt field (the check can fail)" \
    sh -c "sed 's/^  replicas: 2/  replica: 2/' '$WORK/k8s.yaml' >'$WORK/bad.yaml' && \
           ! '$BIN/kubernetes-validate' --strict -k '$K8S_VERSION' '$WORK/bad.yaml'"
run "KServe objects (docker/check_kserve.py)" \
    "$BIN/python" docker/check_kserve.py --reference "$KSERVE_REFERENCE" docker/kserve-runtime.yaml docker/kserve/*.yaml
echo "$passed passed, $failed failed"
[[ $failed -eq 0 ]]
