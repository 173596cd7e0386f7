#!/usr/bin/env bash
# Runs every client peer against every server peer (Python and C++), checks that each client
# passes all fixture checks and that each server exits 0 within 1 s of answering shutdown.
# Builds the peers first (scripts/build-peers.sh; install tools with scripts/install-test-deps.sh).
#   Tests/Peers/run-matrix.sh            all four pairings
#   Tests/Peers/run-matrix.sh py cpp     only Python client -> C++ server (CLIENT SERVER)
# Ends with "N passed, N failed" counting pairings; exit 0 only when all passed.
set -uo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
OUT="${OSQ_PEERS_DIR:-$REPO/.build-peers}"
"$REPO/scripts/build-peers.sh" || exit 1

PY="$REPO/.venv/bin/python3"
[ -x "$PY" ] || { echo "run-matrix: $PY missing; run scripts/install-test-deps.sh" >&2; exit 1; }

peer_cmd() {  # peer_cmd py|cpp
    case "$1" in
        py) echo "$PY $REPO/Tests/Peers/python/fixture_peer.py" ;;
        cpp) echo "$OUT/cpp/fixture_peer" ;;
        *) echo "run-matrix: unknown peer $1 (py|cpp)" >&2; exit 2 ;;
    esac
}

if [ $# -eq 2 ]; then
    pairs=("$1 $2")
elif [ $# -eq 0 ]; then
    pairs=("py py" "py cpp" "cpp py" "cpp cpp")
else
    echo "usage: run-matrix.sh [CLIENT SERVER]" >&2; exit 2
fi

WORK="$(mktemp -d /tmp/osq-matrix.XXXXXX)"
SERVER_PID=""
cleanup() {
    if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill "$SERVER_PID" 2>/dev/null; wait "$SERVER_PID" 2>/dev/null
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

passed=0; failed=0
for pair in "${pairs[@]}"; do
    set -- $pair
    client="$1"; server="$2"
    sock="$WORK/$client-$server.sock"
    echo "== $client client -> $server server"
    # shellcheck disable=SC2046
    $(peer_cmd "$server") server "$sock" >"$WORK/server.out" 2>"$WORK/server.err" &
    SERVER_PID=$!
    for _ in $(seq 1 200); do
        grep -q '^READY$' "$WORK/server.out" 2>/dev/null && break
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.05
    done
    ok=1
    if ! grep -q '^READY$' "$WORK/server.out"; then
        echo "server never printed READY"; cat "$WORK/server.err"; ok=0
    else
        # shellcheck disable=SC2046
        timeout 600 $(peer_cmd "$client") client "$sock" || ok=0
        # The server must be gone within 1 s of the shutdown reply.
        for _ in $(seq 1 20); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.05; done
        if kill -0 "$SERVER_PID" 2>/dev/null; then
            echo "server still running 1 s after shutdown"; ok=0
        fi
    fi
    if kill -0 "$SERVER_PID" 2>/dev/null; then kill "$SERVER_PID" 2>/dev/null; fi
    wait "$SERVER_PID"; rc=$?
    SERVER_PID=""
    if [ "$ok" -eq 1 ] && [ "$rc" -ne 0 ]; then
        echo "server exited $rc"; cat "$WORK/server.err"; ok=0
    fi
    if [ "$ok" -eq 1 ]; then passed=$((passed + 1)); else failed=$((failed + 1)); fi
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
