"""Midstream starts and packet loss: what the sniffer could see is counted exactly, what it
could not is reported as missing -- never as a wrong status or a wrong latency.

A real multi-association capture (3 storescu associations x 10 CT images to a pynetdicom
SCP answering 0xA700 / 0xB000 / 0xC000 for three of them, between two namespaces) is cut
at every 5% of its packets and thinned by 0.1% / 1% / 5% random drops (seeded). The full
1% grid and the table in docs/robustness.md come from ``python3 fuzz/accuracy.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "fuzz"))

import accuracy  # noqa: E402
import dicomgen  # noqa: E402
import harness  # noqa: E402

from dicomsniffd.dicom.events import DimseTransaction  # noqa: E402


@pytest.fixture(scope="module")
def multi_capture(tmp_path_factory):
    wd = tmp_path_factory.mktemp("accuracy")
    pcap, truth = accuracy.make_capture(str(wd))
    assert truth == {"0x0000": 21, "0xA700": 3, "0xB000": 3, "0xC000": 3}, truth
    frames, times = accuracy.read_frames(pcap)
    full = accuracy.analyse(frames, times)
    assert sum(full.responses.values()) == 30 and len(full.transactions) == 30
    return frames, times, truth, full


@pytest.mark.parametrize("pct", range(0, 100, 5))
def test_midstream_start(multi_capture, pct):
    frames, times, truth, full = multi_capture
    f, t = accuracy.cut(frames, times, pct / 100)
    out = accuracy.analyse(f, t)
    assert accuracy.check(out, truth, full, pct > 0, t[0]) == []


@pytest.mark.parametrize("rate", [0.001, 0.01, 0.05])
@pytest.mark.parametrize("seed", [0, 1])
def test_random_packet_loss(multi_capture, rate, seed):
    frames, times, truth, full = multi_capture
    out = accuracy.analyse(*accuracy.drop(frames, times, rate, seed))
    retx = accuracy.retransmission_times(frames, times)
    assert accuracy.check(out, truth, full, True, retx=retx) == []


# --------------------------------------------------------------------------------------
# regressions for the two timing bugs the curve found (synthetic, no namespaces)
# --------------------------------------------------------------------------------------
def _store_run(skip_record: int) -> tuple[list, list]:
    """One association, 4 C-STOREs; the TCP-mode record ``skip_record`` is never captured."""
    pdus = dicomgen.store_association(4, size=3000, echo=False, user=None)
    recs = []
    for i, (d, raw) in enumerate(dicomgen.encode_stream(pdus)):
        recs.append((d | (harness.C_SKIP if i == skip_record else 0), raw))
    frames, times = harness.tcp_frames(harness.encode_tcp_records(recs))
    r = harness.run_frames(frames, times=times)
    full_frames, full_times = harness.tcp_frames(
        harness.encode_tcp_records([(c & ~harness.C_SKIP, raw) for c, raw in recs])
    )
    full = harness.run_frames(full_frames, times=full_times)

    def txns(events: list) -> list:
        return [e for e in events if isinstance(e, DimseTransaction)]

    return txns(r.events), txns(full.events)


def test_lost_response_does_not_delay_later_ones():
    """A C-STORE-RSP lost by the capture (the SCU got it: no retransmission) leaves a hole;
    the later responses wait behind it and are delivered when it is given up -- with their
    own capture times (flows.FlowTable._drain own_ts), not the time we stopped waiting."""
    # records: RQ, AC, then per store: cmd, dataset PDVs (1), rsp -> rsp of store 1 is #4
    got, full = _store_run(4)
    ref = {t.message_id: t for t in full}
    for t in got:
        if t.response_latency_seconds is not None:
            assert t.response_latency_seconds == pytest.approx(
                ref[t.message_id].response_latency_seconds, abs=1e-9
            )


def test_request_end_lost_reports_no_latency():
    """The capture lost the last dataset packet of a request: when the request completed
    is unknown, so no response latency is reported for it (never a negative or wrong one).
    """
    got, full = _store_run(3)  # the dataset PDV of the first C-STORE
    first = [t for t in got if t.message_id == 2][0]
    assert not first.complete
    assert first.response_latency_seconds is None
    assert first.status == 0x0000  # the status itself was seen and is right
    for t in got:
        lat = t.response_latency_seconds
        assert lat is None or lat >= 0


def test_hole_acknowledged_by_receiver_is_given_up_at_once():
    """The capture lost a C-STORE-RQ command segment that the SCP did receive (its ACKs
    cover it). Without the ACK check the later requests waited behind the hole until the
    end of the flow, arrived after their responses, and 2 answered stores were reported
    unanswered; now the hole is given up at the first ACK past it
    (flows.FlowTable._acked_past_hole) and every later store is matched, timed exactly."""
    got, full = _store_run(5)  # the command of the second C-STORE (message id 3)
    ref = {t.message_id: t for t in full}
    by_id = {t.message_id: t for t in got}
    assert 3 not in by_id  # its command was never seen: nothing is invented
    for mid in (2, 4, 5):
        t = by_id[mid]
        assert t.outcome == "answered" and t.status == ref[mid].status
        assert t.response_latency_seconds == pytest.approx(
            ref[mid].response_latency_seconds, abs=1e-9
        )
