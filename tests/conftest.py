"""Shared fixtures. The real-traffic captures are made once per session (tests/scenarios/)."""

from __future__ import annotations

import os
import sys
import time
import warnings

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import scenarios  # noqa: E402
from sink_fakes import Flow  # noqa: E402


@pytest.fixture
def flow() -> Flow:
    """The flow context a sink is handed with every event (sink_fakes.Flow defaults);
    a fresh one per test, so a test may change its fields."""
    return Flow()


@pytest.fixture(scope="session")
def real_traffic(tmp_path_factory) -> dict[str, scenarios.Scenario]:
    """Every real-traffic scenario, captured once: name -> Scenario (pcap + expected).

    The captures live in pytest's session tmp dir (never in the repo). A missing tool, a
    peer that misbehaves or a capture that drops packets fails here, loudly, never skips.
    Set DSNIFF_KEEP_CAPTURES=DIR to write them to DIR instead (for manual inspection).
    """
    keep = os.environ.get("DSNIFF_KEEP_CAPTURES")
    workdir = keep or str(tmp_path_factory.mktemp("real-traffic"))
    os.makedirs(workdir, exist_ok=True)
    t0 = time.monotonic()
    result = scenarios.generate_all(workdir)
    took = time.monotonic() - t0
    sys.stderr.write(f"\n[real-traffic] {len(result)} captures in {took:.1f}s under {workdir}\n")
    vlan = result.get("l_vlan")
    if vlan is not None and vlan.notes.get("method") != "subinterface":
        warnings.warn(
            "kernel without 802.1Q support: VLAN capture made with tcprewrite + "
            "tcpreplay through the veth instead of VLAN subinterfaces",
            stacklevel=1,
        )
    return result


@pytest.fixture(scope="session")
def tshark_views(real_traffic) -> dict[str, scenarios.TsharkView]:
    """tshark's independent decoding of every capture (DICOM forced on the SCP ports)."""
    return {name: scenarios.tshark_view(sc.pcap, sc.ports) for name, sc in real_traffic.items()}


@pytest.fixture(scope="session")
def more_traffic(tmp_path_factory) -> dict[str, scenarios.Scenario]:
    """The scenarios of test_real_traffic_more.py (TLS, any port, connection failures,
    `-i any`, snaplen), captured once per session; fails loudly, never skips."""
    keep = os.environ.get("DSNIFF_KEEP_CAPTURES")
    workdir = os.path.join(keep, "more") if keep else str(tmp_path_factory.mktemp("more-traffic"))
    os.makedirs(workdir, exist_ok=True)
    t0 = time.monotonic()
    result = scenarios.generate_more(workdir)
    sys.stderr.write(
        f"\n[more-traffic] {len(result)} captures in {time.monotonic() - t0:.1f}s under {workdir}\n"
    )
    return result
