#!/usr/bin/env bash
# A long run of the wire fuzzer (Sources/OsqueryFuzz): the framer, the Thrift codec, clients'
# reply decoding and the manager's registerExtension, fed mutated and generated messages.
#
#   bash scripts/fuzz.sh [COUNT] [SEED]      # default: 1 000 000 inputs, seed 1
#
# Builds osquery-fuzz in release (scratch: FUZZ_SCRATCH, default .build-fuzz) and runs it. If it
# crashes, the last progress line says which 100 000 inputs were running; that range is run
# again with --verbose to name the input (replay it alone with --from I --count 1).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
COUNT="${1:-1000000}"
SEED="${2:-1}"
SCRATCH="${FUZZ_SCRATCH:-.build-fuzz}"
swift build -c release --scratch-path "$SCRATCH" --product osquery-fuzz >&2
BIN="$(swift build -c release --scratch-path "$SCRATCH" --show-bin-path)/osquery-fuzz"
LOG="$(mktemp)"
trap 'rm -f "$LOG"' EXIT
set +e
"$BIN" --seed "$SEED" --count "$COUNT" | tee "$LOG"
status=$?
set -e
[ "$status" -eq 0 ] && exit 0
grep -q '^osquery-fuzz:' "$LOG" && exit "$status"  # findings were printed; no crash
done_count="$(grep -E '^[0-9]+ inputs' "$LOG" | tail -1 | cut -d' ' -f1 || true)"
from="${done_count:-0}"
echo "fuzz: crashed after input $from; finding the input" >&2
"$BIN" --seed "$SEED" --from "$from" --count 100000 --verbose | tail -1 || true
exit 1
