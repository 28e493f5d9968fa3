"""pynetdicom C-ECHO SCU proposing Verification on two presentation contexts (1: Implicit,
3: Explicit VR Little Endian), as an SCU with several contexts per SOP class does.

    pyecho.py HOST PORT [--calling AE] [--called AE]

Prints one JSON line: whether the association was accepted and the C-ECHO status (None
when no valid response came within 5 s).
"""

from __future__ import annotations

import argparse
import json
import sys

from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE
from pynetdicom.sop_class import Verification


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("host")
    ap.add_argument("port", type=int)
    ap.add_argument("--calling", default="PYECHO")
    ap.add_argument("--called", default="ANY-SCP")
    a = ap.parse_args(argv)
    ae = AE(ae_title=a.calling)
    ae.add_requested_context(Verification, ImplicitVRLittleEndian)
    ae.add_requested_context(Verification, ExplicitVRLittleEndian)
    ae.dimse_timeout = ae.acse_timeout = 5
    assoc = ae.associate(a.host, a.port, ae_title=a.called)
    res: dict = {"accepted": assoc.is_established, "status": None}
    if assoc.is_established:
        status = assoc.send_c_echo()
        res["status"] = int(status.Status) if status and "Status" in status else None
        if assoc.is_established:
            assoc.release()
    print(json.dumps(res), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
