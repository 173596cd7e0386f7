#!/usr/bin/env bash
# Runs every test on this machine, installing what the tests need when it is missing:
#   Debian packages and a .venv with PyPI thrift/osquery (scripts/install-test-deps.sh),
#   the Python and C++ peers generated from idl/osquery.thrift (scripts/build-peers.sh),
#   then `swift test`, whose own summary is the last thing printed.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
echo "== installing test dependencies (if missing)"
bash scripts/install-test-deps.sh
echo "== building the Python and C++ peers from idl/osquery.thrift"
bash scripts/build-peers.sh
echo "== swift test"
swift test "$@"
