#!/usr/bin/env bash
# Builds release binaries the way a package ships them, and prints their directory:
#
#   bash scripts/build-release.sh [SCRATCH] [PRODUCT...]     # default: .build-release, osqueryi osqueryd
#   bash scripts/build-release.sh SCRATCH --bin-path         # only print the directory
#
# Besides `-c release --static-swift-stdlib` (no Swift runtime to install), the link:
#   - exports no symbols from the executable (the toolchain's static-stdlib flags export every
#     public Swift symbol, 15 000 of them, which the dynamic loader then indexes and dladdr scans);
#   - packs relative relocations (RELR: lld's -z pack-relative-relocs) and keeps PIE, so ASLR stays;
#   - links libstdc++ statically (the Swift runtime's only C++ dependency), so the loader does not
#     map and relocate a 2 MB library at every start;
#   - drops the build directory from the rpath (--disable-local-rpath).
# Together they take about 1 ms off every start of osqueryi (BENCHMARKS.md). Tools that are
# missing (lld, libstdc++.a) are skipped with a note, never an error.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

SCRATCH="${1:-.build-release}"
shift || true
PRODUCTS=("$@")
[ "${#PRODUCTS[@]}" -gt 0 ] || PRODUCTS=(osqueryi osqueryd)

mkdir -p "$SCRATCH"
flags=(-c release --static-swift-stdlib --disable-local-rpath -Xlinker --no-export-dynamic)

lld="$(dirname "$(command -v swiftc)")/ld.lld"
if [ -x "$lld" ]; then
    cat > "$SCRATCH/release-toolset.json" <<JSON
{ "schemaVersion": "1.0", "linker": { "path": "$lld", "extraCLIOptions": ["-z", "pack-relative-relocs"] } }
JSON
    flags+=(--toolset "$SCRATCH/release-toolset.json")
else
    echo "build-release: no ld.lld next to swiftc; linking without packed relocations" >&2
fi

# -lstdc++ finds the archive first when the only libstdc++ in this directory is the archive.
cxx="$(gcc -print-file-name=libstdc++.a 2>/dev/null || true)"
[ -f "$cxx" ] || cxx="$(ls /usr/lib/gcc/*/*/libstdc++.a 2>/dev/null | sort -V | tail -1 || true)"
if [ -n "$cxx" ] && [ -f "$cxx" ]; then
    mkdir -p "$SCRATCH/static-cxx"
    ln -sf "$cxx" "$SCRATCH/static-cxx/libstdc++.a"
    flags+=(-Xlinker "-L$(cd "$SCRATCH/static-cxx" && pwd)")
else
    echo "build-release: no libstdc++.a; libstdc++ stays a shared library" >&2
fi

if [ "${PRODUCTS[0]}" = "--bin-path" ]; then
    swift build --scratch-path "$SCRATCH" "${flags[@]}" --show-bin-path
    exit 0
fi
for product in "${PRODUCTS[@]}"; do
    echo "== swift build ${flags[*]} --product $product" >&2
    if ! out="$(swift build --scratch-path "$SCRATCH" "${flags[@]}" --product "$product" 2>&1)"; then
        echo "$out" | grep -E "error" >&2 || echo "$out" >&2
        exit 1
    fi
done
swift build --scratch-path "$SCRATCH" "${flags[@]}" --show-bin-path
