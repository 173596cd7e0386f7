#!/usr/bin/env bash
# Wire benchmarks side by side with libthrift: builds the peers and the bench in
# release mode, then prints the table (pass --quick for a shorter run).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/install-test-deps.sh
bash scripts/build-peers.sh
swift build -c release --product wire-bench
exec "$(swift build -c release --show-bin-path)/wire-bench" "$@"
