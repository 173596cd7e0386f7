#!/usr/bin/env bash
# Counts the declarations each SDK-facing module exports: lines declaring something `public`
# (or `open`), leaving out imports and `@_spi` declarations, which a plain import does not see.
# With --top-level, only top-level declarations count (types, functions, type aliases: what Go
# calls exported names), members left out.
# Usage: scripts/public-api-count.sh [--top-level] [git-revision]   (default: the working tree)
set -euo pipefail
cd "$(dirname "$0")/.."
indent='[[:space:]]*'
if [ "${1:-}" = "--top-level" ]; then indent=''; shift; fi
rev="${1:-}"
modules=(ThriftCodec OsqueryProtocol OsqueryClient OsqueryVocabulary OsqueryExtension OsqueryExtensionTesting)
# `open` only as a modifier (a variable named `open` is no declaration).
# Attributes and `nonisolated(...)` may come before the access level.
decl="^${indent}((@[A-Za-z_]+|nonisolated)(\\([^)]*\\))?[[:space:]]+)*(public|open[[:space:]]+(class|func|var|let|subscript|static|override|init))[[:space:]]"
total=0
for m in "${modules[@]}"; do
    if [ -n "$rev" ]; then
        lines=$(git grep -h -E "$decl" "$rev" -- "Sources/$m/*.swift" || true)
    else
        lines=$(grep -rh --include='*.swift' -E "$decl" "Sources/$m" || true)
    fi
    n=$(printf '%s\n' "$lines" | grep -v -E '(public|open) import ' | grep -v -c -E '@_spi|^$' || true)
    printf '%-26s %5d\n' "$m" "$n"
    total=$((total + n))
done
printf '%-26s %5d\n' total "$total"
