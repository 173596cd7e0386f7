#!/usr/bin/env bash
# THE benchmark command (issue 7): every row, ours and the C++/Python/CLI peer side by side.
#
#   bash Benchmarks/run.sh            # full run (a few minutes after the build)
#   bash Benchmarks/run.sh --quick    # fewer rounds, shorter loads
#   bash Benchmarks/run.sh --skip-build [--only wire,ext,load,shell,rss,limits,events,fleet,tables] [--no-pin]
#
# Installs the peers' dependencies (scripts/install-test-deps.sh), builds the peers from
# idl/osquery.thrift (scripts/build-peers.sh) and our programs as a package ships them
# (scripts/build-release.sh: release, Swift runtime and libstdc++ linked in, no exported symbols,
# packed relocations), then runs Benchmarks/run.py, which prints the machine and one table.
# Env: BENCH_SCRATCH (default .build-bench) is the build directory.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

SCRATCH="${BENCH_SCRATCH:-.build-bench}"
build=1
args=()
for arg in "$@"; do
    case "$arg" in
        --skip-build) build=0 ;;
        -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
        *) args+=("$arg") ;;
    esac
done

if [ "$build" -eq 1 ]; then
    echo "== dependencies and peers (scripts/install-test-deps.sh, scripts/build-peers.sh)" >&2
    bash scripts/install-test-deps.sh
    bash scripts/build-peers.sh
    command -v sqlite3 >/dev/null || { echo "bench: sqlite3 CLI missing (apt-get install sqlite3)" >&2; exit 1; }
    echo "== release build (scripts/build-release.sh)" >&2
fi
# The binaries as scripts/build-release.sh links them for shipping (on --skip-build, the ones
# already there).
if [ "$build" -eq 1 ]; then
    BIN="$(bash scripts/build-release.sh "$SCRATCH" osqueryd osqueryi wire-bench sdk-bench fim-bench | tail -1)"
else
    BIN="$(bash scripts/build-release.sh "$SCRATCH" --bin-path 2>/dev/null | tail -1)"
fi
exec python3 Benchmarks/run.py --bin "$BIN" "${args[@]}"
