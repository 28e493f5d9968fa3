"""Manual use: python3 tests/scenarios OUTDIR [names...] (or, in tests/, python3 -m scenarios)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests/: netns, peers

from scenarios import generate_all  # noqa: E402

if __name__ == "__main__":
    t0 = time.monotonic()
    res = generate_all(sys.argv[1], only=sys.argv[2:] or None)
    for n, sc in res.items():
        print(f"{n:22s} {sc.seconds:6.2f}s {sc.pcap} {sc.notes}")
    print(f"total {time.monotonic() - t0:.1f}s")
