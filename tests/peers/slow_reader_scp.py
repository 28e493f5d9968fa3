"""A pynetdicom storage SCP that stops reading its socket once, in the middle of a data
set: the smallest peer whose receive window really goes to zero (one override: the
socket read sleeps once). Runs inside a namespace.

    python3 tests/peers/slow_reader_scp.py PORT PAUSE_AFTER_BYTES PAUSE_SECONDS

With a small receive buffer (the test sets net.ipv4.tcp_rmem in the namespace), the
sender fills it during the pause and the kernel advertises a zero window.
"""

from __future__ import annotations

import sys
import time

from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE, evt, transport
from pynetdicom.sop_class import CTImageStorage

PORT, PAUSE_AFTER, PAUSE_S = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
_state = {"received": 0, "paused": False}
_recv = transport.AssociationSocket.recv


def _slow_recv(self: transport.AssociationSocket, nr_bytes: int) -> bytearray:
    data = _recv(self, nr_bytes)
    _state["received"] += len(data)
    if not _state["paused"] and _state["received"] >= PAUSE_AFTER:
        _state["paused"] = True
        time.sleep(PAUSE_S)  # the one rule broken: the application stops reading
    return data


transport.AssociationSocket.recv = _slow_recv  # type: ignore[method-assign]

ae = AE("SLOWREAD")
ae.add_supported_context(CTImageStorage, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
ae.start_server(
    ("0.0.0.0", PORT), block=True, evt_handlers=[(evt.EVT_C_STORE, lambda event: 0x0000)]
)
