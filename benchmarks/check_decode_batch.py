"""Check that Decoder.decode_batch (the compiled one when dicomsniffd._fastpath is built)
gives exactly what Decoder.decode gives frame by frame.

    python3 benchmarks/check_decode_batch.py [CAPTURE...]

Runs both over the given captures, then over random damaged frames packed into batches
(short frames, cut headers, junk) so the in-place reads never look past a frame's end.
"""

from __future__ import annotations

import os
import random
import sys

# this checkout's package, not whatever `pip install -e` points at
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from dicomsniffd.capture import FileSource  # noqa: E402
from dicomsniffd.decode import (  # noqa: E402
    COUNTER_NAMES,
    DLT_EN10MB,
    DLT_LINUX_SLL,
    DLT_LINUX_SLL2,
    DLT_RAW,
    Decoder,
)


def compare(linktype: int, buf: bytes, records: list) -> None:
    a, b = Decoder(linktype), Decoder(linktype)
    got: list = []
    res = a.decode_batch(buf, records, lambda ts, *seg: got.append((ts, seg)))
    want = []
    for sec, usec, off, caplen in records:
        seg = b.decode(buf[off : off + caplen])
        if seg is not None:
            want.append((sec + usec * 1e-6, seg))
    assert got == want, "segments differ"
    assert a.counters() == b.counters(), (a.counters(), b.counters())
    assert res[:2] == (len(records), sum(r[3] for r in records))


def main(paths: list[str]) -> int:
    for path in paths:
        with FileSource(path) as src:
            n = 0
            for buf, records in src.batches(512):
                compare(src.linktype, buf, list(records))
                n += len(records)
        print(f"{path}: {n} frames identical")
    rng = random.Random(7)
    base = bytes.fromhex("020000000002020000000001080045000034000140004006000" "00a0000010a000002"
                         "9c40006800000001000000025018ffff00000000") + bytes(8)  # fmt: skip
    for linktype in (DLT_EN10MB, DLT_LINUX_SLL, DLT_LINUX_SLL2, DLT_RAW):
        for _ in range(3000):
            frames = []
            for _ in range(rng.randint(1, 8)):
                f = bytearray(base + bytes(rng.randint(0, 40)))
                for _ in range(rng.randint(0, 4)):
                    f[rng.randrange(len(f))] = rng.randrange(256)
                frames.append(bytes(f[: rng.randint(0, len(f))]))
            buf, records, off = b"", [], 0
            for i, f in enumerate(frames):
                records.append((1000 + i, i, off, len(f)))
                buf += f
                off += len(f)
            buf += bytes(rng.randint(0, 80)) + base  # a plausible frame right after the batch
            compare(linktype, buf, records)
    print("random damaged batches: identical segments and counters", COUNTER_NAMES)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
