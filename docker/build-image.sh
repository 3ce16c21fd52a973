#!/usr/bin/env bash
# Builds the runtime image of docker/Dockerfile on a machine without a Docker daemon or
# registry access (Debian 12, root): the release binaries are built here, on the host, the
# same way the Dockerfile's build stage builds them (static Swift stdlib, stripped), the
# debian:bookworm-slim base is made with debootstrap, and buildah runs the same Dockerfile
# with BINARIES=host, so the image differs from a `docker build` only in where its two
# binaries were compiled.
#
#   docker/build-image.sh            # -> localhost/swift-model-server:dev + an OCI archive
#
# Environment:
#   MODEL_SERVER_CACHE   cache root (default ~/.cache/swift-model-server): the debootstrapped
#                        base lives in $MODEL_SERVER_CACHE/image-base/, the archive in
#                        $MODEL_SERVER_CACHE/image/
#   IMAGE                image name (default localhost/swift-model-server:dev)
#   BASE_MAX_AGE_DAYS    rebuild the cached base when older (default 7: security updates)
#   SKIP_SWIFT_BUILD=1   use the binary already in .build/release
#
# Last lines on stdout (eval-able): IMAGE=... and IMAGE_ARCHIVE=...
# Containers storage: podman's default root store with the vfs driver (no overlay or fuse
# needed), shared by buildah and podman; use `podman --storage-driver vfs ...` to see it.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
CACHE="${MODEL_SERVER_CACHE:-$HOME/.cache/swift-model-server}"
IMAGE="${IMAGE:-localhost/swift-model-server:dev}"
BASE_MAX_AGE_DAYS="${BASE_MAX_AGE_DAYS:-7}"
SUITE=bookworm
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
BASE_IMAGE=localhost/debootstrap-bookworm-slim:latest
STORAGE=(--storage-driver vfs)

log() { echo "build-image: $*" >&2; }
die() { log "error: $*"; exit 1; }
[[ "$(id -u)" -eq 0 ]] || die "run as root (debootstrap and buildah need it here)"

# --- host tools -------------------------------------------------------------------------
need=(buildah podman skopeo debootstrap runc containernetworking-plugins)
missing=()
for package in "${need[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if ((${#missing[@]})); then
    log "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi

# --- binaries: the Dockerfile's build stage, on the host --------------------------------
# scripts/test.sh builds with the same flag: switching it recompiles every module.
if [[ "${SKIP_SWIFT_BUILD:-0}" != 1 ]]; then
    log "swift build -c release --static-swift-stdlib --product model-server"
    swift build -c release --static-swift-stdlib --product model-server >&2
fi
BIN_DIR="$ROOT/.build-image/bin"     # the only part of .build* the .dockerignore lets in
rm -rf "$BIN_DIR"; mkdir -p "$BIN_DIR"
[[ -x .build/release/model-server ]] || die "missing .build/release/model-server"
# Foundation proper would bring ICU's 34 MB data blob into the binary (and past the image
# budget): the code uses FoundationEssentials; this catches an `import Foundation` creeping in.
if nm .build/release/model-server 2>/dev/null | grep -q icudt; then
    die "model-server links ICU data: some module of it imports Foundation (use FoundationEssentials)"
fi
# Same as the Dockerfile: no debug info or symbol table (reflection metadata stays); one
# binary, model-client is a link to it.
strip --strip-all -o "$BIN_DIR/model-server" .build/release/model-server
ln -s model-server "$BIN_DIR/model-client"
if ldd "$BIN_DIR/model-server" | grep -q -i swift; then
    ldd "$BIN_DIR/model-server" >&2; die "model-server links a shared Swift library (not --static-swift-stdlib?)"
fi
log "binary: $(du -h "$BIN_DIR/model-server" | cut -f1) (model-server, model-client is a link to it)"

# --- base image: debootstrap, slimmed the way Debian's docker images are ----------------
# Reused while the podman store has it and it is younger than BASE_MAX_AGE_DAYS; the tarball
# in the cache survives a wiped store.
BASE_DIR="$CACHE/image-base"
BASE_TAR="$BASE_DIR/bookworm-slim.tar"
mkdir -p "$BASE_DIR"
exec 8>"$BASE_DIR/.lock"; flock 8
if [[ -f "$BASE_TAR" ]] && (( ($(date +%s) - $(stat -c %Y "$BASE_TAR")) / 86400 >= BASE_MAX_AGE_DAYS )); then
    log "cached base is older than $BASE_MAX_AGE_DAYS days: rebuilding"
    rm -f "$BASE_TAR"
    podman "${STORAGE[@]}" rmi -f "$BASE_IMAGE" >/dev/null 2>&1 || true
fi
if [[ ! -f "$BASE_TAR" ]]; then
    t0=$SECONDS
    rootfs="$BASE_DIR/rootfs"
    rm -rf "$rootfs"
    log "debootstrap --variant=minbase $SUITE from $MIRROR (about 2-3 minutes)"
    debootstrap --variant=minbase "$SUITE" "$rootfs" "$MIRROR" >"$BASE_DIR/debootstrap.log" 2>&1 \
        || { tail -20 "$BASE_DIR/debootstrap.log" >&2; die "debootstrap failed (log: $BASE_DIR/debootstrap.log)"; }
    # The sources and apt/dpkg settings of debian:bookworm-slim (debuerreotype's "slimify"):
    # no documentation, manuals or translations; no package caches or indexes kept.
    rm -f "$rootfs/etc/apt/sources.list"
    cat >"$rootfs/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: http://deb.debian.org/debian
Suites: $SUITE $SUITE-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: $SUITE-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
    cat >"$rootfs/etc/dpkg/dpkg.cfg.d/docker" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/man/*
EOF
    cat >"$rootfs/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
    echo 'Acquire::Languages "none";' >"$rootfs/etc/apt/apt.conf.d/docker-no-languages"
    printf 'Acquire::GzipIndexes "true";\nAcquire::CompressionTypes::Order:: "gz";\n' >"$rootfs/etc/apt/apt.conf.d/docker-gzip-indexes"
    printf 'Apt::AutoRemove::SuggestsImportant "false";\n' >"$rootfs/etc/apt/apt.conf.d/docker-autoremove-suggests"
    # Security and point-release updates, as the published image carries them.
    cp /etc/resolv.conf "$rootfs/etc/resolv.conf"
    chroot "$rootfs" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive \
        sh -c 'apt-get update -qq && apt-get -y -qq -o Dpkg::Options::=--force-confold upgrade' \
        >>"$BASE_DIR/debootstrap.log" 2>&1 || { tail -20 "$BASE_DIR/debootstrap.log" >&2; die "apt-get upgrade in the base failed"; }
    find "$rootfs/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
    find "$rootfs/usr/share/doc" -mindepth 1 -type d -empty -delete
    rm -rf "$rootfs"/usr/share/{groff,info,linda,lintian,locale,man}/* \
           "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/* "$rootfs"/var/cache/debconf/*-old \
           "$rootfs"/var/log/* "$rootfs"/tmp/* "$rootfs"/root/.bash_history "$rootfs"/etc/machine-id
    : >"$rootfs/etc/resolv.conf"
    tar -C "$rootfs" --numeric-owner --xattrs -cf "$BASE_TAR.tmp" .
    mv "$BASE_TAR.tmp" "$BASE_TAR"
    rm -rf "$rootfs"
    log "base made in $((SECONDS - t0)) s"
fi
if ! podman "${STORAGE[@]}" image exists "$BASE_IMAGE"; then
    log "importing the base into podman's store as $BASE_IMAGE"
    podman "${STORAGE[@]}" import --change 'CMD ["bash"]' "$BASE_TAR" "$BASE_IMAGE" >/dev/null
fi
flock -u 8

# --- the image: docker/Dockerfile, runtime stage, host binaries --------------------------
revision="$(git rev-parse HEAD 2>/dev/null || echo unknown)"
git diff --quiet HEAD 2>/dev/null || revision="$revision-dirty"
created="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
log "buildah bud -> $IMAGE"
t0=$SECONDS
# vfs stores every layer as a full copy: drop what this build leaves behind (the previous
# image of the tag and the intermediate stage images), nothing else.
previous="$(podman "${STORAGE[@]}" image inspect --format '{{.Id}}' "$IMAGE" 2>/dev/null || true)"
dangling_before="$(podman "${STORAGE[@]}" images -q --no-trunc --filter dangling=true | sort)"
containers_before="$(buildah "${STORAGE[@]}" containers -q --notruncate | sort)"
# --network host: the runtime stage's apt-get reaches Debian's mirror without a CNI bridge.
# --pull=never: the base is the debootstrapped one in the store, never a registry's.
buildah "${STORAGE[@]}" bud --pull=never --network host --layers=false \
    --ulimit nofile=20000:20000 --ulimit nproc=32768:32768 \
    --build-arg BASE_IMAGE="$BASE_IMAGE" --build-arg BINARIES=host \
    --build-arg VERSION=dev --build-arg REVISION="$revision" --build-arg CREATED="$created" \
    -f docker/Dockerfile -t "$IMAGE" . >&2
log "image built in $((SECONDS - t0)) s"
# buildah 1.28 leaves a working container for the instruction-less `binaries` stage.
for id in $(comm -13 <(echo "$containers_before") <(buildah "${STORAGE[@]}" containers -q --notruncate | sort)); do
    buildah "${STORAGE[@]}" rm "$id" >/dev/null 2>&1 || true
done
for id in $(comm -13 <(echo "$dangling_before") <(podman "${STORAGE[@]}" images -q --no-trunc --filter dangling=true | sort)) \
          ${previous:+"$previous"}; do
    [[ "$id" == "$(podman "${STORAGE[@]}" image inspect --format '{{.Id}}' "$IMAGE")" ]] && continue
    podman "${STORAGE[@]}" rmi "$id" >/dev/null 2>&1 || true   # still used by a container: kept
done

ARCHIVE_DIR="$CACHE/image"
ARCHIVE="$ARCHIVE_DIR/swift-model-server-dev.oci.tar"
mkdir -p "$ARCHIVE_DIR"
rm -f "$ARCHIVE"
podman "${STORAGE[@]}" save --format oci-archive -o "$ARCHIVE" "$IMAGE" >&2
size="$(podman "${STORAGE[@]}" image inspect --format '{{.Size}}' "$IMAGE")"
log "image size $((size / 1000000)) MB (uncompressed), archive $(du -h "$ARCHIVE" | cut -f1)"
echo "IMAGE=$IMAGE"
echo "IMAGE_ARCHIVE=$ARCHIVE"
