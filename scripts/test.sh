#!/usr/bin/env bash
# Runs every test on this machine, installing what the tests need when it is missing:
#   Debian packages and a .venv with PyPI thrift/osquery (scripts/install-test-deps.sh),
#   the Python and C++ peers generated from idl/osquery.thrift (scripts/build-peers.sh),
#   the SDK's DocC documentation (a broken link or undocumented parameter fails),
#   then `swift test`, whose own summary is the last thing printed.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
echo "== installing test dependencies (if missing)"
bash scripts/install-test-deps.sh
echo "== building the Python and C++ peers from idl/osquery.thrift"
bash scripts/build-peers.sh
echo "== the SDK's documentation (DocC catalog and doc comments, warnings as errors)"
for target in OsqueryExtension OsqueryVocabulary OsqueryClient OsqueryExtensionTesting; do
    swift package generate-documentation --target "$target" --warnings-as-errors >/dev/null
done
echo "== swift test"
swift test "$@"
