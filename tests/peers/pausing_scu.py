"""A pynetdicom storage SCU that pauses between objects (reading the next one slowly):
one association, one C-STORE per file, PAUSE_SECONDS of silence after each response.

    python3 tests/peers/pausing_scu.py HOST PORT CALLED_AE PAUSE_SECONDS FILE...
"""

from __future__ import annotations

import sys
import time

from pydicom import dcmread
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom import AE
from pynetdicom.sop_class import CTImageStorage

host, port, called, pause = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
ae = AE("PAUSINGSCU")
ae.add_requested_context(CTImageStorage, ExplicitVRLittleEndian)
assoc = ae.associate(host, port, ae_title=called)
if not assoc.is_established:
    sys.exit("association not established")
for path in sys.argv[5:]:
    status = assoc.send_c_store(dcmread(path))
    if not status or status.Status != 0x0000:
        sys.exit(f"C-STORE of {path} failed: {status}")
    time.sleep(pause)
assoc.release()
