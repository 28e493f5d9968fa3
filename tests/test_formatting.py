"""The formatting shared by the text summary and the HTML report (``formatting.py``)."""

from __future__ import annotations

from dicomsniffd.findings.facts import percentiles
from dicomsniffd.formatting import (
    byte_size,
    duration,
    one_decimal,
    plural,
    seconds_as_ms,
    timing_rows,
    utc,
)

TS = 1_700_000_000.25  # 2023-11-14 22:13:20.250 UTC


def test_plural() -> None:
    assert plural(1, "time") == "1 time"
    assert plural(0, "time") == "0 times"
    assert plural(2, "time") == "2 times"


def test_utc_variants() -> None:
    assert utc(None) == "-"
    assert utc(TS) == "2023-11-14 22:13:20"
    assert utc(TS, date=False) == "22:13:20"
    assert utc(TS, date=False, ms=True) == "22:13:20.250"
    assert utc(TS, ms=True) == "2023-11-14 22:13:20.250"


def test_byte_size_text_stops_at_gb_report_goes_to_tb() -> None:
    assert byte_size(512) == "512 B"
    assert byte_size(1_500_000) == "1.5 MB"
    assert byte_size(1.5e12) == "1500.0 GB"
    assert byte_size(1.5e12, largest_unit="TB") == "1.5 TB"
    assert byte_size(None, largest_unit="TB") == "-"


def test_cells() -> None:
    assert one_decimal(None) == "-"
    assert one_decimal(12.34) == "12.3"
    assert seconds_as_ms(0.01234) == "12.3"
    assert duration(0.25) == "250 ms"
    assert duration(4.2) == "4.2 s"
    assert duration(210) == "3.5 min"


def test_timing_rows_skip_empty_phases_and_name_first_response() -> None:
    some = percentiles([1.0, 2.0])
    none = percentiles([])
    dimse = {
        "C-MOVE": {"request_transfer_ms": none, "response_latency_ms": some, "duration_ms": some},
        "C-STORE": {"request_transfer_ms": some, "response_latency_ms": some, "duration_ms": none},
    }
    text = [(command, label) for command, label, _p in timing_rows(dimse)]
    assert text == [("C-MOVE", "service"), ("C-MOVE", "total"), ("C-STORE", "transfer"),
                    ("C-STORE", "service")]  # fmt: skip
    report = [(c, label) for c, label, _p in timing_rows(dimse, first_response_label=True)]
    assert report[0] == ("C-MOVE", "first response")
    assert report[3] == ("C-STORE", "service")
