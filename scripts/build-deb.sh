#!/usr/bin/env bash
# Builds the core's Debian package with dpkg-deb alone (no network, no debhelper), and prints its path:
#
#   bash scripts/build-deb.sh [--bin-dir DIR] [--out DIR] [--version V] [--compress xz|gzip|none] [--no-strip]
#
# Without --bin-dir it links release binaries as scripts/build-release.sh does (static Swift
# runtime: the package needs only Debian's libraries). --bin-dir packs an osqueryd already built
# there instead: ShippingTests passes the debug build of the test run, which saves a release
# build of minutes but links the toolchain's Swift runtime, so that package runs only where the
# toolchain is (CI); the script says so for every library no Debian package provides.
#
# What it installs (see packaging/deb/):
#   /usr/bin/osqueryd, /usr/bin/osqueryi (a link: argv[0] picks the shell), /usr/bin/osqueryctl
#   /etc/osquery/osquery.conf, /etc/osquery/osquery.flags      conffiles: kept on remove and upgrade
#   /usr/share/osquery/osquery.example.conf
#   /lib/systemd/system/osqueryd.service                        not enabled: `systemctl enable --now osqueryd`
#   /var/osquery, /var/log/osquery (0750)                       kept on remove, deleted on purge
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

BIN_DIR=""
OUT=".build/deb"
VERSION=""
COMPRESS="xz"
STRIP=1
while [ $# -gt 0 ]; do
    case "$1" in
        --bin-dir) BIN_DIR="$2"; shift 2 ;;
        --out) OUT="$2"; shift 2 ;;
        --version) VERSION="$2"; shift 2 ;;
        --compress) COMPRESS="$2"; shift 2 ;;
        --no-strip) STRIP=0; shift ;;
        *) echo "build-deb: unknown argument $1" >&2; exit 2 ;;
    esac
done

# The newest released version in CHANGELOG.md ("## 0.9.0").
if [ -z "$VERSION" ]; then
    VERSION="$(sed -n 's/^## \([0-9][0-9.]*\).*/\1/p' CHANGELOG.md | head -n 1)"
fi
[ -n "$VERSION" ] || { echo "build-deb: no version (CHANGELOG.md has no '## X.Y.Z' heading)" >&2; exit 1; }

if [ -z "$BIN_DIR" ]; then
    BIN_DIR="$(bash scripts/build-release.sh .build-release osqueryd | tail -n 1)"
fi
[ -x "$BIN_DIR/osqueryd" ] || { echo "build-deb: no osqueryd in $BIN_DIR" >&2; exit 1; }

ARCH="$(dpkg --print-architecture)"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
STAGE="$(mktemp -d "$OUT/stage.XXXXXX")"
trap 'rm -rf "$STAGE"' EXIT
ROOT="$STAGE/root"
P=packaging/deb

install -d -m 0755 "$ROOT/DEBIAN" "$ROOT/usr/bin" "$ROOT/etc/osquery" "$ROOT/usr/share/osquery" "$ROOT/lib/systemd/system"
install -d -m 0750 "$ROOT/var/osquery" "$ROOT/var/log/osquery"
install -m 0755 "$BIN_DIR/osqueryd" "$ROOT/usr/bin/osqueryd"
if [ "$STRIP" = 1 ]; then strip --strip-unneeded "$ROOT/usr/bin/osqueryd"; fi
ln -s osqueryd "$ROOT/usr/bin/osqueryi"
install -m 0755 "$P/osqueryctl" "$ROOT/usr/bin/osqueryctl"
install -m 0644 "$P/osquery.example.conf" "$ROOT/etc/osquery/osquery.conf"
install -m 0644 "$P/osquery.flags" "$ROOT/etc/osquery/osquery.flags"
install -m 0644 "$P/osquery.example.conf" "$ROOT/usr/share/osquery/osquery.example.conf"
install -m 0644 "$P/osqueryd.service" "$ROOT/lib/systemd/system/osqueryd.service"
install -m 0755 "$P/postinst" "$P/prerm" "$P/postrm" "$ROOT/DEBIAN/"
printf '%s\n' /etc/osquery/osquery.conf /etc/osquery/osquery.flags > "$ROOT/DEBIAN/conffiles"

# Depends: the Debian package of each shared library osqueryd needs.
declare -A packages=()
unpackaged=()
# libtsk and libaugeas are opened on first use (Sources/CTSK, Sources/CAugeas), not linked.
for lib in $(readelf -d "$ROOT/usr/bin/osqueryd" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p') libtsk.so.19 libaugeas.so.0; do
    path="$(ldconfig -p | awk -v l="$lib" '$1 == l && /x86-64|aarch64|AArch64|64bit/ { print $NF; exit }')"
    [ -n "$path" ] || path="$(ldconfig -p | awk -v l="$lib" '$1 == l { print $NF; exit }')"
    owner=""
    candidates=()
    if [ -n "$path" ]; then candidates=("$path" "$(readlink -f "$path")" "${path#/usr}" "/usr${path#/usr}"); fi
    for candidate in "${candidates[@]}"; do
        owner="$(dpkg -S "$candidate" 2>/dev/null | head -n 1 | cut -d: -f1)" && [ -n "$owner" ] && break
    done
    if [ -n "$owner" ]; then packages["$owner"]=1; else unpackaged+=("$lib"); fi
done
if [ "${#unpackaged[@]}" -gt 0 ]; then
    echo "build-deb: not from a Debian package (a debug build's Swift runtime?), so this .deb runs only where they are: ${unpackaged[*]}" >&2
fi
depends="$(printf '%s\n' "${!packages[@]}" | sort | paste -sd, - | sed 's/,/, /g')"

cat > "$ROOT/DEBIAN/control" <<CONTROL
Package: osquery-swift
Version: $VERSION
Architecture: $ARCH
Maintainer: osquery-swift maintainers <maintainers@users.noreply.github.com>
Section: admin
Priority: optional
Installed-Size: $(du -sk --exclude=DEBIAN "$ROOT" | cut -f1)
Depends: ${depends:-libc6}
Conflicts: osquery
Description: osquery-compatible host instrumentation, in Swift
 osqueryd and osqueryi answer SQL about the running machine, schedule queries
 and log what changed, and serve osquery's extension protocol, wire-compatible
 with osquery's extensions and SDKs. Includes the osqueryd systemd service and
 osqueryctl.
CONTROL

case "$COMPRESS" in xz | gzip | none) ;; *) echo "build-deb: --compress xz|gzip|none" >&2; exit 2 ;; esac
DEB="$OUT/osquery-swift_${VERSION}_${ARCH}.deb"
dpkg-deb --root-owner-group -Z"$COMPRESS" --build "$ROOT" "$DEB" >/dev/null
echo "$DEB"
