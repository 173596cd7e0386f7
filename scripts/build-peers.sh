#!/usr/bin/env bash
# Builds the non-Swift test peers (Tests/Peers) into <repo>/.build-peers (never committed):
#   gen-py/            thrift --gen py  idl/osquery.thrift
#   gen-cpp/           thrift --gen cpp idl/osquery.thrift
#   cpp/fixture_peer   Tests/Peers/cpp/fixture_peer.cpp + gen-cpp, linked with libthrift
#   raw_pingpong       Tests/Peers/raw/raw_pingpong.c
# Each step runs only when an output is missing or older than its inputs. Silent unless -v or an
# error. Env: OSQ_PEERS_DIR overrides the output directory, CXX / CC the compilers.
# Install the tools first with scripts/install-test-deps.sh.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${OSQ_PEERS_DIR:-$REPO/.build-peers}"
IDL="$REPO/idl/osquery.thrift"
SELF="$REPO/scripts/build-peers.sh"
CXX="${CXX:-g++}"
CC="${CC:-cc}"
VERBOSE=0

for arg in "$@"; do
    case "$arg" in
        -v|--verbose) VERBOSE=1 ;;
        -h|--help) sed -n '2,10p' "$SELF"; exit 0 ;;
        *) echo "build-peers: unknown argument: $arg (usage: build-peers.sh [-v])" >&2; exit 2 ;;
    esac
done

die() { echo "build-peers: error: $*" >&2; exit 1; }
say() { if [ "$VERBOSE" -eq 1 ]; then echo "build-peers: $*"; fi; }

# Runs a command; its output is shown only with -v or when it fails.
run() {
    local out
    if [ "$VERBOSE" -eq 1 ]; then echo "+ $*"; fi
    if ! out="$("$@" 2>&1)"; then
        [ -n "$out" ] && echo "$out" >&2
        die "command failed: $*"
    fi
    if [ "$VERBOSE" -eq 1 ] && [ -n "$out" ]; then echo "$out"; fi
}

# stale OUTPUT INPUT... : true when OUTPUT is missing or older than any INPUT.
stale() {
    local target="$1"; shift
    [ -e "$target" ] || return 0
    local f
    for f in "$@"; do
        [ "$f" -nt "$target" ] && return 0
    done
    return 1
}

need() { command -v "$1" >/dev/null 2>&1 || die "$1 not found; run scripts/install-test-deps.sh"; }
need thrift
need "$CXX"
need "$CC"
[ -f "$IDL" ] || die "missing $IDL"
mkdir -p "$OUT"

# ---- generated code ---------------------------------------------------------------------------
# Generates into a temporary directory and swaps it in, so a failure never leaves half a tree.
generate() {  # generate LANG DIR STAMP
    local lang="$1" dir="$2" stamp="$3"
    if stale "$stamp" "$IDL" "$SELF"; then
        say "thrift --gen $lang -> $dir"
        local tmp
        tmp="$(mktemp -d "$OUT/.gen-$lang.XXXXXX")"
        chmod 755 "$tmp"
        run thrift --gen "$lang" -out "$tmp" "$IDL"
        rm -rf "$dir"
        mv "$tmp" "$dir"
        touch "$stamp"
    fi
}
generate py "$OUT/gen-py" "$OUT/gen-py/.stamp"
generate cpp "$OUT/gen-cpp" "$OUT/gen-cpp/.stamp"

# ---- C++ peer ---------------------------------------------------------------------------------
THRIFT_CFLAGS=""
THRIFT_LIBS="-lthrift"
if command -v pkg-config >/dev/null 2>&1 && pkg-config --exists thrift 2>/dev/null; then
    THRIFT_CFLAGS="$(pkg-config --cflags thrift)"
    THRIFT_LIBS="$(pkg-config --libs thrift)"
fi
[ -f /usr/include/thrift/Thrift.h ] || [ -n "$THRIFT_CFLAGS" ] \
    || die "libthrift headers not found; run scripts/install-test-deps.sh"

CXXFLAGS=(-O2 -std=c++17 -pthread -I"$OUT/gen-cpp")
# shellcheck disable=SC2206
CXXFLAGS+=($THRIFT_CFLAGS)

OBJ="$OUT/cpp/obj"
mkdir -p "$OBJ"
objects=()
compile() {  # compile SRC OBJ
    local src="$1" obj="$2"
    objects+=("$obj")
    if stale "$obj" "$src" "$OUT/gen-cpp/.stamp" "$SELF"; then
        say "compile $(basename "$src")"
        run "$CXX" "${CXXFLAGS[@]}" -c "$src" -o "$obj"
    fi
}
for src in "$OUT"/gen-cpp/*.cpp; do
    case "$src" in *.skeleton.cpp) continue ;; esac
    compile "$src" "$OBJ/$(basename "${src%.cpp}").o"
done
compile "$REPO/Tests/Peers/cpp/fixture_peer.cpp" "$OBJ/fixture_peer.o"

if stale "$OUT/cpp/fixture_peer" "${objects[@]}"; then
    say "link cpp/fixture_peer"
    # shellcheck disable=SC2086
    run "$CXX" -O2 -pthread -o "$OUT/cpp/fixture_peer.tmp" "${objects[@]}" $THRIFT_LIBS
    mv "$OUT/cpp/fixture_peer.tmp" "$OUT/cpp/fixture_peer"
fi

# ---- raw floor --------------------------------------------------------------------------------
RAW_SRC="$REPO/Tests/Peers/raw/raw_pingpong.c"
if stale "$OUT/raw_pingpong" "$RAW_SRC" "$SELF"; then
    say "compile raw_pingpong"
    run "$CC" -O2 -std=c11 -Wall -o "$OUT/raw_pingpong.tmp" "$RAW_SRC"
    mv "$OUT/raw_pingpong.tmp" "$OUT/raw_pingpong"
fi
say "up to date in $OUT"
