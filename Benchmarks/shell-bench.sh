#!/usr/bin/env bash
# osqueryi start-up and `SELECT * FROM processes` against sqlite3 and ps, in
# the same run, side by side with ratios.
#
#   Benchmarks/shell-bench.sh            # python3 timing loop (median of N runs)
#   INSTALL_HYPERFINE=1 Benchmarks/shell-bench.sh   # apt-get install hyperfine and use it
#   RUNS=100 Benchmarks/shell-bench.sh
#
# The binary is built in release mode with the Swift runtime linked statically
# (what a package would ship); set STATIC=0 to measure the dynamic build.
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS="${RUNS:-60}"
SCRATCH="${SCRATCH:-.build-engine}"
STATIC_FLAGS=(--static-swift-stdlib)
[[ "${STATIC:-1}" == "0" ]] && STATIC_FLAGS=()

echo "== building osqueryi (release${STATIC_FLAGS:+, static Swift runtime}) =="
swift build --scratch-path "$SCRATCH" -c release --product osqueryi "${STATIC_FLAGS[@]}" 2>&1 | grep -E "error|Compiling|Build" | tail -2
OSQUERYI="$SCRATCH/release/osqueryi"
command -v sqlite3 >/dev/null || { echo "sqlite3 CLI missing (apt-get install sqlite3)"; exit 1; }

if [[ "${INSTALL_HYPERFINE:-0}" == "1" ]] && ! command -v hyperfine >/dev/null; then
    apt-get install -y hyperfine >/dev/null
fi

PROCS=$(ls -d /proc/[0-9]* | wc -l)
echo "== machine: $(nproc) cores, $PROCS processes, load $(cut -d' ' -f1-3 /proc/loadavg), sqlite $(sqlite3 --version | cut -d' ' -f1) =="

if command -v hyperfine >/dev/null; then
    hyperfine -N --warmup 5 --runs "$RUNS" \
        -n "osqueryi SELECT 1" "$OSQUERYI 'SELECT 1'" \
        -n "sqlite3 SELECT 1" "sqlite3 :memory: 'SELECT 1'" \
        -n "osqueryi processes" "$OSQUERYI 'SELECT * FROM processes'" \
        -n "ps -eo" "ps -eo pid,ppid,uid,rss,comm,args" \
        --export-json /tmp/shell-bench.json >/dev/null
    python3 - <<'PY'
import json
r = {x["command"]: x for x in json.load(open("/tmp/shell-bench.json"))["results"]}
def show(a, b, goal):
    ma, mb = r[a]["median"] * 1000, r[b]["median"] * 1000
    print(f"{a:<22} {ma:8.2f} ms   {b:<18} {mb:8.2f} ms   ratio {ma/mb:5.2f}x  (goal <= {goal}x)")
show("osqueryi SELECT 1", "sqlite3 SELECT 1", 3)
show("osqueryi processes", "ps -eo", 1.5)
PY
    exit 0
fi

python3 - "$RUNS" "$OSQUERYI" <<'PY'
import subprocess, sys, time
runs, osqueryi = int(sys.argv[1]), sys.argv[2]

def once(cmd):
    start = time.perf_counter()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return (time.perf_counter() - start) * 1000

def compare(cmd_a, cmd_b):
    """Alternate the two commands so background load hits both alike."""
    for _ in range(5):
        once(cmd_a); once(cmd_b)
    a, b = [], []
    for _ in range(runs):
        a.append(once(cmd_a))
        b.append(once(cmd_b))
    a.sort(); b.sort()
    return (a[len(a) // 2], a[0]), (b[len(b) // 2], b[0])

pairs = [
    ("osqueryi SELECT 1", [osqueryi, "SELECT 1"], "sqlite3 SELECT 1", ["sqlite3", ":memory:", "SELECT 1"], 3),
    ("osqueryi processes", [osqueryi, "SELECT * FROM processes"], "ps -eo", ["ps", "-eo", "pid,ppid,uid,rss,comm,args"], 1.5),
]
print(f"(python3 timing loop, {runs} alternating runs each, median; min in brackets)")
for name_a, cmd_a, name_b, cmd_b, goal in pairs:
    (ma, mina), (mb, minb) = compare(cmd_a, cmd_b)
    print(f"{name_a:<20} {ma:7.2f} ms [{mina:5.2f}]   {name_b:<17} {mb:7.2f} ms [{minb:5.2f}]   ratio {ma/mb:5.2f}x  (goal <= {goal}x)")
PY
