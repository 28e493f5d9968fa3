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
# python3-venv + python3-dev: tests/test_install.py installs the package the README's way,
# into a venv of Debian's own /usr/bin/python3 (and the venv below, if needed).
debs="python3-venv python3-dev gcc libc6-dev dcmtk tshark tcpdump tcpreplay iproute2 ethtool iptables libpcap0.8 prometheus prometheus-alertmanager systemd openssl util-linux chromium"
missing=""
for p in $debs; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ]; then
  echo "wireshark-common wireshark-common/install-setuid boolean false" | $SUDO debconf-set-selections
  $SUDO apt-get update -qq
  # shellcheck disable=SC2086
  $SUDO apt-get install -y -qq --no-install-recommends $missing
fi
# PEP 668: pip refuses to install into an externally managed Python (Debian 12's own
# python3). There the tests run in a venv made from it, .venv, put first on PATH (so
# `python3`, ruff and hadolint below and in the tests are the venv's). Any other python3
# (not externally managed, or itself a venv) is used as it is.
if python3 -c 'import os, sys, sysconfig
marker = os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED")
sys.exit(0 if os.path.isfile(marker) and sys.prefix == sys.base_prefix else 1)'; then
  [ -x .venv/bin/python3 ] || python3 -m venv .venv
  VIRTUAL_ENV="$PWD/.venv"
  PATH="$VIRTUAL_ENV/bin:$PATH"
  export VIRTUAL_ENV PATH
  echo "python3 is externally managed (PEP 668): testing in $VIRTUAL_ENV" >&2
fi
python3 -m pip install -q --disable-pip-version-check -e ".[test]"
python3 -m ruff check .
python3 -m ruff format --check .
python3 -m pytest "$@"
