#!/usr/bin/env bash
# Installs the Debian 12 packages the build and tests need, if any is missing.
set -euo pipefail
# nghttp2-client: nghttp and h2load for the gRPC transport tests.
packages=(pkg-config libopenblas-dev libturbojpeg0-dev libnghttp2-dev zlib1g-dev protobuf-compiler curl nghttp2-client)
missing=()
for package in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if ((${#missing[@]})); then
    echo "install-deps: installing ${missing[*]}" >&2
    sudo_cmd=(); [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
    "${sudo_cmd[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi
