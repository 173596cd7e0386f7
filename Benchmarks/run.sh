#!/usr/bin/env bash
# THE benchmark command (issue 7): every row, ours and the C++/Python/CLI peer side by side.
#
#   bash Benchmarks/run.sh            # full run (a few minutes after the build)
#   bash Benchmarks/run.sh --quick    # fewer rounds, shorter loads
#   bash Benchmarks/run.sh --skip-build [--only wire,ext,load,shell,rss] [--no-pin]
#
# Installs the peers' dependencies (scripts/install-test-deps.sh), builds the peers from
# idl/osquery.thrift (scripts/build-peers.sh) and our programs in release mode with the Swift
# runtime linked statically (what a package ships), then runs Benchmarks/run.py, which prints the
# machine and one table. Env: BENCH_SCRATCH (default .build-bench) is the build directory.
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
    for product in osqueryd osqueryi wire-bench sdk-bench; do
        echo "== swift build -c release --static-swift-stdlib --product $product" >&2
        if ! out="$(swift build --scratch-path "$SCRATCH" -c release --static-swift-stdlib --product "$product" 2>&1)"; then
            echo "$out" | grep -E "error" >&2 || echo "$out" >&2
            exit 1
        fi
    done
fi

BIN="$(swift build --scratch-path "$SCRATCH" -c release --static-swift-stdlib --show-bin-path)"
exec python3 Benchmarks/run.py --bin "$BIN" "${args[@]}"
