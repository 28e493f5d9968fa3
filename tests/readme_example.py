"""The capture behind the README's example output and docs/report-screenshot.png.

A morning's few minutes at a small site, built with pipeline_captures (no root, no
network): a modality whose PACS runs out of space part way through a series (two C-STORE
answered 0xA700), a CT scanner that gives up on a slow C-STORE and aborts, and an echo.
tests/test_readme.py and scripts/screenshot_report.py both build it from here, so the
README cannot drift from what ``dicomsniffd analyze`` prints for it.
"""

from __future__ import annotations

from pathlib import Path

from pipeline_captures import (
    Capture,
    Conn,
    echo_rq,
    echo_rsp,
    open_association,
    release,
    store_rq,
    store_rsp,
)
from test_dicom_streams import VERIFICATION, abort

START = 1_772_442_845.0  # 2026-03-02 09:14:05 UTC
FILE_NAME = "capture.pcap"


def build(path: Path) -> Path:
    cap = Capture(start=START, step=0.002)
    # MODALITY1 → PACS: a series of 8 images, the archive fills up at images 6 and 8
    c = Conn(cap, cport=40001)
    open_association(c, "MODALITY1", "PACS")
    for mid in range(1, 9):
        c.send(0, store_rq(mid, 24_000))
        c.send(1, store_rsp(mid, 0xA700 if mid in (6, 8) else 0))
    release(c)
    # CT_SCANNER → PACS: two images stored, the third never answered, the SCU aborts
    c = Conn(cap, cport=40002)
    open_association(c, "CT_SCANNER", "PACS")
    for mid in (1, 2):
        c.send(0, store_rq(mid, 60_000))
        c.send(1, store_rsp(mid))
    c.send(0, store_rq(3, 60_000))
    c.send(0, abort(0, 0))
    c.close()
    # WORKSTATION → PACS: a C-ECHO, released
    c = Conn(cap, cport=40003)
    open_association(c, "WORKSTATION", "PACS", abstract=VERIFICATION)
    c.send(0, echo_rq(1))
    c.send(1, echo_rsp(1))
    release(c)
    return cap.write(path)
