#!/usr/bin/env bash
# Installs what drover needs to build and test on Debian 12 or newer:
# the C libraries and tools from Debian, and a Python virtual environment
# (.venv at the top of the source tree, or $DROVER_VENV) holding the pinned
# Prefect release that the end-to-end tests run as a real server, and
# drover's Python executor SDK.
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
venv=${DROVER_VENV:-$top/.venv}
prefect_version=$(cat "$top/tests/e2e/PREFECT_VERSION")

packages=(
    build-essential cmake ninja-build pkg-config git curl ca-certificates
    libzmq3-dev libmsgpack-dev libcurl4-openssl-dev libyaml-dev libjansson-dev
    clang libclang-rt-14-dev
    python3 python3-venv iproute2 procps
)

missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo=sudo
    $sudo apt-get update -q
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
"$venv/bin/pip" install -q --disable-pip-version-check \
    "prefect==$prefect_version" pytest pyzmq msgpack
# The Python executor SDK and its example executor (drover-executor-shell),
# which the end-to-end tests serve a pool with.
"$venv/bin/pip" install -q --disable-pip-version-check --no-deps -e "$top/executors/python"
echo "install-deps: Prefect $prefect_version in $venv"
