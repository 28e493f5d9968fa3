#!/usr/bin/env bash
# The full test suite on a fresh Debian machine: installs the real DICOM peers (DCMTK),
# tshark, the namespace tools and the Python test dependencies, then runs pytest.
# Needs root (apt-get, network namespaces, packet capture). Extra args go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=""
[ "$(id -u)" = 0 ] || SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
# gcc + libc6-dev: the compiled hot path (dicomsniffd/_fastpath.c); a test fails without it.
debs="gcc libc6-dev dcmtk tshark tcpdump tcpreplay iproute2 ethtool iptables libpcap0.8 prometheus systemd openssl util-linux chromium"
missing=""
for p in $debs; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ]; then
  echo "wireshark-common wireshark-common/install-setuid boolean false" | $SUDO debconf-set-selections
  $SUDO apt-get update -qq
  # shellcheck disable=SC2086
  $SUDO apt-get install -y -qq --no-install-recommends $missing
fi
python3 -m pip install -q --disable-pip-version-check -e ".[test]"
python3 -m ruff check .
python3 -m ruff format --check .
python3 -m pytest "$@"
