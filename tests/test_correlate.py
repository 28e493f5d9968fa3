"""correlate's pure pieces (TCP options, option changes in words, the clock estimate) and
its command line on inputs that need no traffic. The real-traffic evidence is in
tests/test_correlate_routed.py."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from dicomsniffd.correlate.clock import estimate, orient_alone, orientation
from dicomsniffd.correlate.diff import option_changes
from dicomsniffd.correlate.points import parse_options

REPO = Path(__file__).resolve().parent.parent


def test_parse_options_keeps_mss_and_window_scale_values_and_kinds_of_the_rest():
    # MSS 1460, SACK-permitted, timestamps, NOP, window scale 7 (a Linux SYN, RFC 9293 order).
    raw = bytes.fromhex("020405b4") + bytes.fromhex("0402") + bytes.fromhex("080a") + bytes(8)
    raw += bytes.fromhex("01030307")
    assert parse_options(raw) == ((2, 1460), (4, 0), (8, 0), (3, 7))
    assert parse_options(b"\x00\x02\x04\x05\xb4") == ()  # end of list first
    assert parse_options(b"\x02\x00") == ((2, -1),)  # a length below 2: kept, stop
    assert parse_options(b"\x02\x04\x05") == ((2, 0),)  # cut short: kind without a value


def test_option_changes_are_said_in_words():
    syn = ((2, 1460), (4, 0), (8, 0), (3, 7))
    assert option_changes(syn, ((2, 1200), (4, 0), (8, 0), (3, 7))) == ["MSS 1460 -> 1200"]
    assert option_changes(syn, ((2, 1460), (8, 0))) == [
        "window-scale removed",
        "SACK-permitted removed",
    ]
    assert option_changes(((8, 0),), ((8, 0), (5, 0))) == ["SACK added"]
    assert option_changes(((2, 1460), (8, 0)), ((8, 0), (2, 1460))) == ["options reordered"]


def test_clock_offset_from_the_fastest_segment_each_way():
    # Far's clock is 5 s ahead; trips take 1 ms at best, up to 3 ms.
    c2s = [5.001, 5.002, 5.003]  # near -> far: t_far - t_near = offset + delay
    s2c = [4.999, 4.9985, 4.997]  # far -> near: offset - delay
    assert orientation(c2s, s2c) is True
    assert orientation(s2c, c2s) is False  # the client on the far side
    clock = estimate([(True, c2s, s2c)])
    assert abs(clock.offset - 5.0) < 1e-9 and abs(clock.min_delay - 0.001) < 1e-9
    assert clock.to_near(10.0) == 10.0 - clock.offset
    # One direction only: nothing to estimate from; said so, clocks taken as synchronised.
    alone = estimate([(None, c2s, [])])
    assert alone.offset == 0.0 and alone.min_delay is None and "not estimated" in alone.how
    assert orient_alone(c2s, [], clock) is True
    assert orient_alone([], s2c, clock) is True
    assert orient_alone([], [5.002], clock) is False


def _correlate(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "dicomsniffd", "correlate", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=120,
    )


def test_unreadable_inputs_are_one_line_errors_with_exit_2(tmp_path):
    garbage = tmp_path / "garbage.pcap"
    garbage.write_bytes(b"\x00" * 64)
    empty = tmp_path / "empty.pcap"
    empty.write_bytes(b"")
    cases = [
        ((str(tmp_path / "missing.pcap"), str(garbage)), "capture file not found"),
        ((str(garbage), str(garbage)), "not a pcap or pcapng file"),
        ((str(empty), str(garbage)), "capture file is empty"),
        ((str(tmp_path), str(garbage)), str(tmp_path)),
    ]
    for argv, message in cases:
        proc = _correlate(*argv)
        assert proc.returncode == 2, (argv, proc.stderr)
        assert proc.stdout == "" and "Traceback" not in proc.stderr
        assert proc.stderr.count("\n") == 1 and message in proc.stderr, proc.stderr
    proc = _correlate(str(garbage), str(garbage), "--report", str(tmp_path / "no" / "r.html"))
    assert proc.returncode == 2 and "does not exist" in proc.stderr
    proc = _correlate(str(garbage), str(garbage), "--report", "-", "--json")
    assert proc.returncode == 2 and "standard output" in proc.stderr


def test_help_has_examples_and_exit_codes():
    proc = _correlate("--help")
    assert proc.returncode == 0
    assert "dicomsniffd correlate near.pcapng far.pcapng --json" in proc.stdout
    assert "exit codes:" in proc.stdout and "no connection in common" in proc.stdout
