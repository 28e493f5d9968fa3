"""The hot path of DESIGN §2: chunks inside a dataset PDV are counted, never buffered.

Its cost (~0.14 us per 1448-byte chunk) is measured by benchmarks/, not asserted here.
"""

from __future__ import annotations

import struct

from dicomsniffd.dicom.conversation import DicomConversation

PDU_LEN = 16 * 1024 * 1024
HEADER = struct.pack(">BBI", 4, 0, PDU_LEN) + struct.pack(">IBB", PDU_LEN - 4, 1, 0)


def test_chunks_inside_dataset_pdv_produce_no_events_and_are_counted():
    chunk = bytes(1448)
    n = 10_000  # 10,000 x 1448 bytes stays inside the 16 MiB PDV
    conv = DicomConversation()
    assert conv.feed(0, HEADER, 0.0) == ()
    for _ in range(n):
        assert conv.feed(0, chunk, 1.0) == ()
    assert conv.pdata_bytes[0] == 12 + n * 1448
