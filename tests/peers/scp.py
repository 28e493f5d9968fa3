"""A configurable pynetdicom SCP for the real-traffic tests (runs inside a namespace).

    python3 tests/peers/scp.py --config scp.json      # or a JSON string: --config '{...}'

Config keys (all optional):
  ae_title            "PYSCP"
  bind                "0.0.0.0" (use "::" for IPv6)
  port                11112
  require_called_aet  false   true: A-ASSOCIATE-RJ (permanent, service-user, reason 7
                              "called AE title not recognised") unless called AE == ae_title
  transfer_syntaxes   "uncompressed" (Explicit/Implicit VR LE) | list of UIDs
  store_status        {SOPInstanceUID or 1-based receive index as string: "0xA700"}
  store_delay_ms      0       sleep before answering each C-STORE (known service time)
  find_pending        0       C-FIND: that many pending (0xFF00) responses, then 0x0000
  move                {"destinations": {"AE": ["ip", port]}, "files": [paths]}
                      C-MOVE: one C-STORE sub-operation per file to the destination
  get                 {"files": [paths]}  C-GET: one C-STORE sub-operation per file, sent
                      back on the requestor's own association (it must propose the SCP role)
  log                 path of a JSON-lines log of what was answered (optional)
  max_pdu             pynetdicom's default (16382)  the Maximum Length it announces: the
                      largest P-DATA-TF the SCU may send it (PS3.8 D.1)

Status selection by SOPInstanceUID is the reliable one (it does not depend on the order
the SCU sends in). Everything is answered from the config: the test knows the truth.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
import time

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE, build_context, evt
from pynetdicom.sop_class import (
    CTImageStorage,
    PatientRootQueryRetrieveInformationModelFind,
    PatientRootQueryRetrieveInformationModelGet,
    PatientRootQueryRetrieveInformationModelMove,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelMove,
    Verification,
)

UNCOMPRESSED = [ExplicitVRLittleEndian, ImplicitVRLittleEndian]


class Scp:
    def __init__(self, cfg: dict) -> None:
        self.cfg = cfg
        self.ae_title = cfg.get("ae_title", "PYSCP")
        self.store_status = {
            str(k): int(v, 16) if isinstance(v, str) else int(v)
            for k, v in cfg.get("store_status", {}).items()
        }
        self.store_delay = cfg.get("store_delay_ms", 0) / 1000.0
        self.find_pending = int(cfg.get("find_pending", 0))
        self.move = cfg.get("move", {})
        self.get = cfg.get("get", {})
        self.store_count = 0
        self.lock = threading.Lock()
        self.logf = open(cfg["log"], "a", buffering=1) if cfg.get("log") else None  # noqa: SIM115

    def log(self, **rec) -> None:
        if self.logf:
            self.logf.write(json.dumps(rec) + "\n")

    # -- handlers ------------------------------------------------------------------------
    def on_store(self, event):
        with self.lock:
            self.store_count += 1
            index = self.store_count
        uid = str(event.request.AffectedSOPInstanceUID)
        status = self.store_status.get(uid, self.store_status.get(str(index), 0x0000))
        if self.store_delay:
            time.sleep(self.store_delay)
        self.log(
            op="C-STORE",
            index=index,
            sop_instance_uid=uid,
            status=f"0x{status:04X}",
            calling_ae=event.assoc.requestor.ae_title,
        )
        return status

    def on_echo(self, event):
        self.log(op="C-ECHO", status="0x0000")
        return 0x0000

    def on_find(self, event):
        for i in range(self.find_pending):
            if event.is_cancelled:
                yield 0xFE00, None
                return
            ds = Dataset()
            ds.QueryRetrieveLevel = "PATIENT"
            ds.PatientName = f"TEST^PATIENT^{i + 1:03d}"
            ds.PatientID = f"TEST{i + 1:04d}"
            yield 0xFF00, ds
        self.log(op="C-FIND", pending=self.find_pending, status="0x0000")

    @staticmethod
    def _suboperations(event, files: list[str]):
        """C-MOVE/C-GET handler tail: the count, then one pending status per file."""
        yield len(files)
        for path in files:
            if event.is_cancelled:
                yield 0xFE00, None
                return
            yield 0xFF00, dcmread(path)

    def on_get(self, event):
        files = self.get.get("files", [])
        yield from self._suboperations(event, files)
        self.log(op="C-GET", suboperations=len(files))

    def on_move(self, event):
        dest = str(event.move_destination).strip()
        table = self.move.get("destinations", {})
        if dest not in table:
            yield None, None  # unknown destination -> 0xA801
            return
        addr, port = table[dest]
        yield addr, int(port), {"contexts": [build_context(CTImageStorage, ExplicitVRLittleEndian)]}
        files = self.move.get("files", [])
        yield from self._suboperations(event, files)
        self.log(op="C-MOVE", suboperations=len(files), destination=dest)


def build_ae(cfg: dict, scp: Scp) -> AE:
    ae = AE(ae_title=scp.ae_title)
    ae.require_called_aet = bool(cfg.get("require_called_aet", False))
    ae.acse_timeout = 30
    ae.dimse_timeout = 30
    ae.network_timeout = 30
    if "max_pdu" in cfg:
        ae.maximum_pdu_size = int(cfg["max_pdu"])
    ts = cfg.get("transfer_syntaxes", "uncompressed")
    syntaxes = UNCOMPRESSED if ts == "uncompressed" else list(ts)
    for abstract in (
        CTImageStorage,
        Verification,
        PatientRootQueryRetrieveInformationModelFind,
        StudyRootQueryRetrieveInformationModelFind,
        PatientRootQueryRetrieveInformationModelMove,
        StudyRootQueryRetrieveInformationModelMove,
        PatientRootQueryRetrieveInformationModelGet,
    ):
        if abstract == CTImageStorage:
            # the C-GET SCU proposes the SCP role for storage (PS3.4 C.4.3): accept it
            ae.add_supported_context(abstract, syntaxes, scu_role=True, scp_role=True)
        else:
            ae.add_supported_context(abstract, UNCOMPRESSED)
    # As the C-MOVE sub-operation SCU.
    ae.add_requested_context(CTImageStorage, ExplicitVRLittleEndian)
    return ae


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="{}", help="JSON file or JSON string")
    ap.add_argument("--verbose", action="store_true")
    a = ap.parse_args(argv)
    text = a.config
    if not text.lstrip().startswith("{"):
        with open(text) as f:
            text = f.read()
    cfg = json.loads(text)
    logging.basicConfig(
        level=logging.INFO if a.verbose else logging.WARNING, format="scp %(levelname)s %(message)s"
    )
    scp = Scp(cfg)
    ae = build_ae(cfg, scp)
    handlers = [
        (evt.EVT_C_STORE, scp.on_store),
        (evt.EVT_C_ECHO, scp.on_echo),
        (evt.EVT_C_FIND, scp.on_find),
        (evt.EVT_C_MOVE, scp.on_move),
        (evt.EVT_C_GET, scp.on_get),
    ]
    server = ae.start_server(
        (cfg.get("bind", "0.0.0.0"), int(cfg.get("port", 11112))),
        block=False,
        evt_handlers=handlers,
    )
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    print(f"scp ready {scp.ae_title} port {cfg.get('port', 11112)}", flush=True)
    done.wait()
    server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
