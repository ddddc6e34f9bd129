#!/usr/bin/env bash
# Runs the Python executor SDK's tests: installs the package in editable mode
# into the virtual environment at $DROVER_VENV (default: .venv at the top of
# the source tree, created when missing) and runs pytest on tests/.
# Extra arguments go to pytest.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
venv=${DROVER_VENV:-$top/.venv}

if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
pip=("$venv/bin/python" -m pip -q --disable-pip-version-check)

if ! "$venv/bin/python" -c 'import zmq, msgpack, pytest' 2>/dev/null; then
    "${pip[@]}" install pyzmq msgpack pytest
fi
# The editable install needs setuptools and wheel; without them in the venv
# pip fetches them into an isolated build environment.
if "$venv/bin/python" -c 'import setuptools, wheel' 2>/dev/null; then
    "${pip[@]}" install --no-build-isolation --no-deps -e "$here"
else
    "${pip[@]}" install --no-deps -e "$here"
fi

cd "$here"
exec "$venv/bin/python" -m pytest -q -p no:cacheprovider tests "$@"
