#!/usr/bin/env bash
# Runs every test on this machine, installing what the tests need when it is missing:
#   Debian packages and a .venv with PyPI thrift/osquery (scripts/install-test-deps.sh),
#   the Python and C++ peers generated from idl/osquery.thrift (scripts/build-peers.sh),
#   the SDK's DocC documentation (a broken link or undocumented parameter fails),
#   then the dependent-package test alone (it builds a whole package) and `swift test` for the
#   rest, whose own summary is the last thing printed. Arguments go to one plain `swift test`.
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
if [ "$#" -gt 0 ]; then
    echo "== swift test $*"
    exec swift test "$@"
fi
# The dependent-package test builds a whole package (minutes of both cores): alone, before the
# other suites, so it cannot starve their servers and timeouts.
swift build --build-tests
echo "== swift test --filter DependentPackageTests (a new package that depends on the SDK by URL)"
swift test --skip-build --filter DependentPackageTests
echo "== swift test"
swift test --skip-build --skip DependentPackageTests
