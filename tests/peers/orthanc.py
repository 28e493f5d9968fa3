"""Orthanc (apt-get install orthanc) run by hand in a namespace with its own JSON config:
DICOM only (no HTTP server), any called AE accepted, no known modalities (so a C-MOVE to
any destination is one it does not know), storage under the test's directory."""

from __future__ import annotations

import json
import os
import subprocess

from netns import VethPair


def start_orthanc(net: VethPair, side: str, wd: str, port: int, aet: str = "ORTHANC"):
    storage = os.path.join(wd, "orthanc-db")
    os.makedirs(storage, exist_ok=True)
    path = os.path.join(wd, "orthanc.json")
    with open(path, "w") as f:
        json.dump(
            {
                "Name": "dsniff-tests",
                "StorageDirectory": storage,
                "IndexDirectory": storage,
                "DicomAet": aet,
                "DicomPort": port,
                "HttpServerEnabled": False,
                "DicomCheckCalledAet": False,
                "DicomModalities": {},
                "Plugins": [],
            },
            f,
        )
    proc: subprocess.Popen = net.popen(side, ["Orthanc", path])
    net.wait_listening(side, port, timeout=30, proc=proc)
    return proc
