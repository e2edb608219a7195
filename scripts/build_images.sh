#!/usr/bin/env bash
# Build fl-sim's SuperLink and SuperNode images (fl-sim-superlink:latest, fl-sim-supernode:latest).
#
#   scripts/build_images.sh [--offline] [--debian-mirror URL]
#
#   (default)      on Flower's official images (flwr/superlink, flwr/supernode from Docker Hub)
#   --offline      on a local base made from Debian's packages, for machines that reach no image
#                  registry: debootstrap a minimal bookworm (once; image fl-sim-debian:bookworm), then
#                  deploy/base.Dockerfile (image fl-sim-base:local)
#   --debian-mirror URL   the mirror for debootstrap (default: the first one in apt's sources)
#
# Either way the host first downloads the wheels of every pinned runtime dependency into
# deploy/wheelhouse/ (pip on the host reaches PyPI; containers need not) and serves that folder on
# its loopback while the images build (`docker build --network host`): both install exactly those
# wheels, with no index, and none of them is copied into a layer. Ray is left out: only the
# Simulation Engine uses it.
# Needs: docker talking to a daemon (DOCKER_HOST is honoured), python3.11 with pip; --offline also
# needs debootstrap and root.
set -euo pipefail

offline=0 mirror=""
while [[ $# -gt 0 ]]; do
    case "$1" in
        --offline) offline=1; shift ;;
        --debian-mirror) mirror="$2"; shift 2 ;;
        *) echo "build_images.sh: unknown option '$1' (see the top of $0)" >&2; exit 2 ;;
    esac
done
project="$(cd "$(dirname "$0")/.." && pwd)"
cd "$project"
python="${PYTHON:-python3.11}"
docker info >/dev/null 2>&1 || { echo "build_images.sh: no Docker daemon answers (start dockerd, or set DOCKER_HOST)" >&2; exit 2; }
cleanup=()
trap 'for step in "${cleanup[@]}"; do eval "$step"; done' EXIT
say() { printf '[%s] %s\n' "$(date +%T)" "$*" >&2; }
build() {  # build IMAGE DOCKER_BUILD_ARGS...: quiet, its output shown only when it fails
    local log="deploy/build-${1%%:*}.log"
    docker build --tag "$@" >"$log" 2>&1 || { tail -n 20 "$log" >&2; echo "build_images.sh: building $1 failed; see $log" >&2; exit 1; }
    rm -f "$log"
}

# Both images share one layer of about 5.5 GB; a daemon with less room fails half-way, so say it first.
root_dir="$(docker info --format '{{.DockerRootDir}}' 2>/dev/null || true)"
if [[ -d "$root_dir" ]]; then
    free_gb=$(( $(df --output=avail -k "$root_dir" | tail -n 1) / 1048576 ))
    (( free_gb >= 8 )) || { echo "build_images.sh: the images need about 8 GB free under Docker's data root" \
        "$root_dir; $free_gb GB are (free some, or start dockerd with another --data-root)" >&2; exit 2; }
fi
say "wheelhouse: the pinned runtime dependencies of pyproject.toml, without Ray"
mkdir -p deploy/wheelhouse
"$python" - >deploy/wheelhouse/requirements.txt <<'PY'
import re, tomllib
for requirement in tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]:
    name = re.match(r"[A-Za-z0-9_.-]+", requirement).group(0)
    if name.lower() != "ray":
        print(re.sub(r"\[[^\]]*\]", "", requirement))  # flwr[simulation] -> flwr: no Ray in the images
PY
"$python" -m pip download --quiet --dest deploy/wheelhouse --only-binary :all: -r deploy/wheelhouse/requirements.txt \
    >deploy/pip-download.log 2>&1 || { echo "build_images.sh: pip download failed; see deploy/pip-download.log" >&2; exit 1; }

if [[ $offline == 1 ]]; then
    if ! docker image inspect fl-sim-debian:bookworm >/dev/null 2>&1; then
        mirror="${mirror:-$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources \
            2>/dev/null | grep -vE '^[[:space:]]*#' | grep -oE 'https?://[^ ]+' | grep -v security | head -n 1 || true)}"
        [[ -n "$mirror" ]] || { echo "build_images.sh: no Debian mirror in apt's sources; pass --debian-mirror URL" >&2; exit 2; }
        command -v debootstrap >/dev/null || { echo "build_images.sh: debootstrap is missing (apt-get install debootstrap)" >&2; exit 2; }
        rootfs="$(mktemp -d -t fl-sim-rootfs-XXXXXX)"
        cleanup+=('rm -rf "$rootfs"')
        say "debootstrap bookworm from $mirror"
        debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >"$rootfs.log" 2>&1 \
            || { echo "build_images.sh: debootstrap failed; see $rootfs.log" >&2; exit 1; }
        rm -f "$rootfs.log"
        tar -C "$rootfs" -c . | docker import - fl-sim-debian:bookworm >/dev/null
    fi
    say "base image fl-sim-base:local (deploy/base.Dockerfile)"
    build fl-sim-base:local - <deploy/base.Dockerfile
    base_args=(--build-arg BASE_IMAGE=fl-sim-base:local)
else
    base_args=()
fi
# A fixed port and a digest of the wheel set, so that a rebuild of the same wheels hits Docker's cache
# (a build argument that changes is a cache miss, and a new 5.5 GB layer).
port="${FL_SIM_WHEELHOUSE_PORT:-8765}"
digest="$(cd deploy/wheelhouse && { ls; cat requirements.txt; } | sha256sum | cut -c1-16)"
"$python" -m http.server --bind 127.0.0.1 --directory deploy/wheelhouse "$port" >deploy/wheelhouse-server.log 2>&1 &
server=$!
cleanup+=('kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; rm -f deploy/wheelhouse-server.log')
for _ in $(seq 50); do
    kill -0 "$server" 2>/dev/null || { echo "build_images.sh: cannot serve the wheelhouse on 127.0.0.1:$port" \
        "(busy? set FL_SIM_WHEELHOUSE_PORT to a free port)" >&2; exit 2; }
    "$python" -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/requirements.txt')" 2>/dev/null && break
    sleep 0.2
done
for role in superlink supernode; do
    say "image fl-sim-$role:latest"
    build "fl-sim-$role:latest" --network host --build-arg "ROLE=$role" \
        --build-arg "WHEELHOUSE=http://127.0.0.1:$port" \
        --build-arg "WHEELHOUSE_DIGEST=$digest" "${base_args[@]}" .
done
docker image ls --format '{{.Repository}}:{{.Tag}} {{.Size}}' | grep -E '^fl-sim-(superlink|supernode):latest' >&2
