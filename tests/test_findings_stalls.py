"""The stall findings (dicomsniffd/findings/stalls.py): one per cause, graded by the share
of a command's time between one AE pair, with the side whose data stalled."""

from __future__ import annotations

from sink_fakes import Flow
from summary_fakes import accepted, capture_info, codes, requested, store

from dicomsniffd.sinks.summary import Summary


def _summary(n: int, duration: float, stalls: tuple) -> Summary:
    summary = Summary()
    flow = Flow()
    summary.handle(requested(), flow)
    summary.handle(accepted(), flow)
    for i in range(n):
        event = store(transfer=duration / 2, latency=duration / 2, message_id=i + 1,
                      stall_seconds=sum(s[3] for s in stalls), stalls=stalls)  # fmt: skip
        summary.handle(event, flow)
    return summary


def test_delayed_ack_stalls_of_the_scp_are_a_warning_with_their_share() -> None:
    summary = _summary(20, 0.044, (("acceptor", "delayed-ack", 1, 0.040),))
    finding = codes(summary)["stalls-delayed-ack"]
    assert finding["severity"] == "warning"
    line = finding["evidence"][0]
    assert line.startswith("91% of C-STORE time MODALITY → PACS is delayed-ack stalls")
    assert "the SCP (PACS)'s data" in line and "20 stalls (40 ms each) in 20 of 20" in line
    assert "TCP_NODELAY" in finding["advice"]
    stalls = summary.to_dict(capture_info())["tcp"]["stalls"]
    assert stalls[0]["share"] == 0.9091 and stalls[0]["sender"] == "acceptor"


def test_a_small_share_is_info_and_a_tiny_one_nothing() -> None:
    summary = _summary(20, 1.0, (("requestor", "zero-window", 1, 0.2),))
    finding = codes(summary)["stalls-zero-window"]
    assert finding["severity"] == "info" and "the SCU (MODALITY)'s data" in finding["evidence"][0]
    assert "stalls-zero-window" not in codes(
        _summary(20, 1.0, (("requestor", "zero-window", 1, 0.05),))
    )


def test_each_cause_has_its_own_finding() -> None:
    causes = ("delayed-ack", "zero-window", "loss-recovery", "sender-idle")
    for cause in causes:
        found = codes(_summary(5, 1.0, (("requestor", cause, 2, 0.8),)))
        assert [c for c in found if c.startswith("stalls-")] == [f"stalls-{cause}"]
