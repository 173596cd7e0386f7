#!/usr/bin/env bash
# Installs what the non-Swift test peers (Tests/Peers) need, only where it is missing:
#   Debian: thrift-compiler libthrift-dev libboost-dev g++ libsqlite3-dev sqlite3 (and python3-venv if venv is unusable);
#   the admin tools the table tests compare with: openssh-client openssl iproute2 procps util-linux findutils
#   lsof iptables pciutils usbutils keyutils dmidecode
#   the system tables' C libraries and tools: libssl-dev libmagic-dev file libaugeas-dev augeas-lenses
#   augeas-tools attr
#   the device_* tables: libtsk-dev (The Sleuth Kit), and to make and read disk images in their tests
#   sleuthkit (mmls, fls, istat, icat), fdisk (sfdisk) and e2fsprogs (mkfs.ext4 -d)
#   the udev/syslog/yara event tables: rsyslog (a private rsyslogd writes to syslog_events' pipe),
#   libyara-dev (the CYara target) and yara (the command-line scanner the yara tests compare with)
#   the package tables: rpm (rpm, rpmbuild: an rpm database for the rpm tables), db5.3-util (db_load: the
#   Berkeley DB rpm database of older rpm) and npm (`npm ls` for npm_packages) where no npm is on PATH
#   the docker_* tables: docker.io (dockerd and the docker CLI: the tests run a private engine)
#   the lxd_* tables: lxd and lxd-client (a private LXD daemon and lxc), dnsmasq-base (LXD will
#   not create a bridge without it)
#   <repo>/.venv with PyPI `thrift` and `osquery`
# Idempotent; silent when everything is already there. Must run as root for apt-get.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$REPO/.venv"
PYTHON="${PYTHON:-python3}"

die() { echo "install-test-deps: error: $*" >&2; exit 1; }

# ---- Debian packages -------------------------------------------------------
pkg_installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}

missing=()
# The admin tools the table tests compare with (Tests/OsqueryTablesTests/CatalogueTablesTests).
for p in thrift-compiler libthrift-dev libboost-dev g++ libsqlite3-dev sqlite3 \
        openssh-client openssl iproute2 procps util-linux findutils lsof iptables \
        pciutils usbutils keyutils dmidecode \
        libssl-dev libmagic-dev file libaugeas-dev augeas-lenses augeas-tools attr \
        rpm db5.3-util libtsk-dev sleuthkit fdisk e2fsprogs rsyslog libyara-dev yara docker.io \
        lxd lxd-client dnsmasq-base; do
    pkg_installed "$p" || missing+=("$p")
done
# A node install from elsewhere (NodeSource's nodejs) already carries npm.
command -v npm >/dev/null 2>&1 || missing+=(npm)
command -v "$PYTHON" >/dev/null 2>&1 || missing+=(python3)
# `python3 -m venv` needs ensurepip, which Debian ships separately in python3-venv.
if [ ! -x "$VENV/bin/python3" ] && command -v "$PYTHON" >/dev/null 2>&1 \
        && ! "$PYTHON" -c 'import venv, ensurepip' >/dev/null 2>&1; then
    missing+=(python3-venv)
fi

if [ "${#missing[@]}" -gt 0 ]; then
    command -v apt-get >/dev/null 2>&1 || die "missing ${missing[*]} and apt-get is not available"
    [ "$(id -u)" -eq 0 ] || die "missing ${missing[*]}; run as root to apt-get install them"
    log="$(mktemp)"
    trap 'rm -f "$log"' EXIT
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get update >"$log" 2>&1; then
        cat "$log" >&2; die "apt-get update failed"
    fi
    if ! apt-get install -y --no-install-recommends "${missing[@]}" >"$log" 2>&1; then
        cat "$log" >&2; die "apt-get install ${missing[*]} failed"
    fi
fi

command -v thrift >/dev/null 2>&1 || die "thrift compiler still not on PATH after install"
[ -f /usr/include/thrift/Thrift.h ] || die "libthrift headers (/usr/include/thrift) still missing"

# ---- Python venv -----------------------------------------------------------
if [ ! -x "$VENV/bin/python3" ] || ! "$VENV/bin/python3" -c 'import sys' >/dev/null 2>&1; then
    rm -rf "$VENV"
    out="$("$PYTHON" -m venv "$VENV" 2>&1)" || { echo "$out" >&2; die "python3 -m venv $VENV failed"; }
fi

if ! "$VENV/bin/python3" -c 'import thrift.protocol.TBinaryProtocol, osquery' >/dev/null 2>&1; then
    out="$("$VENV/bin/python3" -m pip install -q --disable-pip-version-check thrift osquery 2>&1)" \
        || { echo "$out" >&2; die "pip install thrift osquery into $VENV failed"; }
    "$VENV/bin/python3" -c 'import thrift.protocol.TBinaryProtocol, osquery' >/dev/null 2>&1 \
        || die "thrift/osquery still not importable from $VENV after pip install"
fi
