"""Generate a many-flows capture: N concurrent DICOM associations, packets interleaved.

    python3 benchmarks/make_many_flows.py [-o benchmarks/out/many_flows.pcap] [--flows 10000]

Every association is a full TCP connection (SYN, SYN/ACK, ACK; data segments of at most
1460 bytes with correct seq/ack and a pure ACK for each; FIN both ways) carrying
A-ASSOCIATE-RQ/AC, then one of three workloads chosen by the flow index, then
A-RELEASE-RQ/RP:
  i % 3 == 0: two small C-STOREs (CT Image Storage, 6 KB dataset each, status 0x0000)
  i % 3 == 1: one C-ECHO (status 0x0000)
  i % 3 == 2: one C-FIND (Study Root) with two pending responses and a final 0x0000
The DICOM PDUs come from pynetdicom's PDU classes and DIMSE messages. Packets are emitted
round-robin across all flows (step k of every flow before step k + 1 of any), so all N
associations are open at the same time, as on a busy mirror port. Timestamps advance by
``--gap-us`` per packet. Written with dpkt's pcap writer (Ethernet, IPv4).

A sidecar FILE.expected.json holds the exact counts the analysis must report.
Captures go to benchmarks/out/ (gitignored): never commit them.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from io import BytesIO

import dpkt
from pydicom.dataset import Dataset
from pydicom.uid import CTImageStorage, ImplicitVRLittleEndian
from pynetdicom import dimse_messages as dm
from pynetdicom import dimse_primitives as dp
from pynetdicom import pdu
from pynetdicom import pdu_primitives as pp
from pynetdicom.presentation import build_context
from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind, Verification

HERE = os.path.dirname(os.path.abspath(__file__))
OUT_DIR = os.path.join(HERE, "out")
PORT = 11112
MSS = 1460
MAX_PDU = 16384
APP_CONTEXT = "1.2.840.10008.3.1.1.1"
_CONTEXTS = (CTImageStorage, Verification, StudyRootQueryRetrieveInformationModelFind)


# -- DICOM PDUs (pynetdicom) -------------------------------------------------------------


def _assoc(calling: str) -> tuple[bytes, bytes]:
    """Encoded A-ASSOCIATE-RQ and A-ASSOCIATE-AC (contexts 1, 3, 5 accepted)."""
    a = pp.A_ASSOCIATE()
    a.application_context_name = APP_CONTEXT
    a.calling_ae_title = calling
    a.called_ae_title = "PACS"
    contexts = []
    for i, uid in enumerate(_CONTEXTS):
        cx = build_context(uid, [ImplicitVRLittleEndian])
        cx.context_id = 2 * i + 1
        contexts.append(cx)
    a.presentation_context_definition_list = contexts
    ml = pp.MaximumLengthNotification()
    ml.maximum_length_received = MAX_PDU
    ic = pp.ImplementationClassUIDNotification()
    ic.implementation_class_uid = "1.2.826.0.1.3680043.9.7156.1"
    a.user_information = [ml, ic]
    rq = pdu.A_ASSOCIATE_RQ()
    rq.from_primitive(a)
    a.result = 0
    for cx in contexts:
        cx.result = 0
    a.presentation_context_definition_results_list = contexts
    ac = pdu.A_ASSOCIATE_AC()
    ac.from_primitive(a)
    return rq.encode(), ac.encode()


def _pdata(msg_cls: type, primitive: object, context_id: int) -> bytes:
    msg = msg_cls()
    msg.primitive_to_message(primitive)
    out = b""
    for p in msg.encode_msg(context_id, MAX_PDU):
        tf = pdu.P_DATA_TF()
        tf.from_primitive(p)
        out += tf.encode()
    return out


def _dataset(ds: Dataset) -> BytesIO:
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset

    fp = DicomBytesIO()
    fp.is_little_endian = True
    fp.is_implicit_VR = True
    write_dataset(fp, ds)
    return BytesIO(fp.getvalue())


def store_exchange(msg_id: int, index: int) -> tuple[bytes, bytes]:
    ds = Dataset()
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = f"1.2.826.0.1.3680043.9.7156.2.{index}.{msg_id}"
    ds.PatientName = f"SYNTHETIC^FLOW{index:05d}"
    ds.PatientID = f"MF{index:05d}"
    ds.Modality = "CT"
    ds.Rows = ds.Columns = 32
    ds.BitsAllocated = 16
    ds.PixelData = bytes(range(256)) * 24  # 6144 bytes
    rq = dp.C_STORE()
    rq.MessageID = msg_id
    rq.AffectedSOPClassUID = CTImageStorage
    rq.AffectedSOPInstanceUID = ds.SOPInstanceUID
    rq.Priority = 0
    rq.DataSet = _dataset(ds)
    rsp = dp.C_STORE()
    rsp.MessageIDBeingRespondedTo = msg_id
    rsp.AffectedSOPClassUID = CTImageStorage
    rsp.AffectedSOPInstanceUID = ds.SOPInstanceUID
    rsp.Status = 0x0000
    return _pdata(dm.C_STORE_RQ, rq, 1), _pdata(dm.C_STORE_RSP, rsp, 1)


def echo_exchange(msg_id: int) -> tuple[bytes, bytes]:
    rq = dp.C_ECHO()
    rq.MessageID = msg_id
    rq.AffectedSOPClassUID = Verification
    rsp = dp.C_ECHO()
    rsp.MessageIDBeingRespondedTo = msg_id
    rsp.AffectedSOPClassUID = Verification
    rsp.Status = 0x0000
    return _pdata(dm.C_ECHO_RQ, rq, 3), _pdata(dm.C_ECHO_RSP, rsp, 3)


def find_exchange(msg_id: int, index: int) -> tuple[bytes, list[bytes]]:
    ident = Dataset()
    ident.QueryRetrieveLevel = "STUDY"
    ident.PatientID = f"MF{index:05d}"
    ident.StudyInstanceUID = ""
    rq = dp.C_FIND()
    rq.MessageID = msg_id
    rq.AffectedSOPClassUID = StudyRootQueryRetrieveInformationModelFind
    rq.Priority = 0
    rq.Identifier = _dataset(ident)
    rsps = []
    for k, status in enumerate((0xFF00, 0xFF00, 0x0000)):
        rsp = dp.C_FIND()
        rsp.MessageIDBeingRespondedTo = msg_id
        rsp.AffectedSOPClassUID = StudyRootQueryRetrieveInformationModelFind
        rsp.Status = status
        if status == 0xFF00:
            match = Dataset()
            match.QueryRetrieveLevel = "STUDY"
            match.PatientID = f"MF{index:05d}"
            match.StudyInstanceUID = f"1.2.826.0.1.3680043.9.7156.3.{index}.{k}"
            rsp.Identifier = _dataset(match)
        rsps.append(_pdata(dm.C_FIND_RSP, rsp, 5))
    return _pdata(dm.C_FIND_RQ, rq, 5), rsps


# -- TCP ---------------------------------------------------------------------------------

SYN, ACK, FIN, PSH = dpkt.tcp.TH_SYN, dpkt.tcp.TH_ACK, dpkt.tcp.TH_FIN, dpkt.tcp.TH_PUSH


class Conn:
    """One TCP connection; ``steps`` is the ordered list of frames it puts on the wire."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.cip = bytes((10, 1, (index >> 8) & 0xFF, index & 0xFF))
        self.sip = bytes((10, 2, 0, 1))
        self.cport = 20000 + index % 40000
        self.cseq = (index * 2654435761) & 0xFFFFFFFF  # spread ISNs, some near wrap-around
        self.sseq = (index * 40503 + 0x7FFFFF00) & 0xFFFFFFFF
        self.ip_id = [index & 0xFFFF, (index * 7) & 0xFFFF]
        self.steps: list[bytes] = []

    def _frame(self, from_client: bool, flags: int, payload: bytes = b"") -> bytes:
        d = 0 if from_client else 1
        if from_client:
            tcp = dpkt.tcp.TCP(sport=self.cport, dport=PORT, seq=self.cseq, ack=self.sseq,
                               flags=flags, win=65535, data=payload)  # fmt: skip
            src, dst = self.cip, self.sip
        else:
            tcp = dpkt.tcp.TCP(sport=PORT, dport=self.cport, seq=self.sseq, ack=self.cseq,
                               flags=flags, win=65535, data=payload)  # fmt: skip
            src, dst = self.sip, self.cip
        if not flags & ACK:
            tcp.ack = 0
        self.ip_id[d] = (self.ip_id[d] + 1) & 0xFFFF
        ip = dpkt.ip.IP(src=src, dst=dst, p=dpkt.ip.IP_PROTO_TCP, ttl=64, id=self.ip_id[d],
                        df=1, data=tcp)  # fmt: skip
        ip.len = 20 + len(bytes(tcp))
        eth = dpkt.ethernet.Ethernet(src=b"\x02\x00\x00\x00\x00" + bytes((d + 1,)),
                                     dst=b"\x02\x00\x00\x00\x00" + bytes((2 - d,)),
                                     type=dpkt.ethernet.ETH_TYPE_IP, data=ip)  # fmt: skip
        return bytes(eth)

    def handshake(self) -> None:
        self.steps.append(self._frame(True, SYN))
        self.cseq = (self.cseq + 1) & 0xFFFFFFFF
        self.steps.append(self._frame(False, SYN | ACK))
        self.sseq = (self.sseq + 1) & 0xFFFFFFFF
        self.steps.append(self._frame(True, ACK))

    def send(self, from_client: bool, data: bytes) -> None:
        """``data`` in MSS-sized segments, each acknowledged by the peer."""
        for off in range(0, len(data), MSS):
            chunk = data[off : off + MSS]
            last = off + MSS >= len(data)
            self.steps.append(self._frame(from_client, ACK | (PSH if last else 0), chunk))
            if from_client:
                self.cseq = (self.cseq + len(chunk)) & 0xFFFFFFFF
            else:
                self.sseq = (self.sseq + len(chunk)) & 0xFFFFFFFF
            self.steps.append(self._frame(not from_client, ACK))

    def close(self) -> None:
        self.steps.append(self._frame(True, FIN | ACK))
        self.cseq = (self.cseq + 1) & 0xFFFFFFFF
        self.steps.append(self._frame(False, FIN | ACK))
        self.sseq = (self.sseq + 1) & 0xFFFFFFFF
        self.steps.append(self._frame(True, ACK))


def build(flows: int) -> tuple[list[Conn], dict]:
    expected = {"associations": flows, "released": flows, "C-STORE": 0, "C-ECHO": 0,
                "C-FIND": 0, "C-FIND pending": 0}  # fmt: skip
    release_rq, release_rp = pdu.A_RELEASE_RQ().encode(), pdu.A_RELEASE_RP().encode()
    # The PDUs depend only on the workload and a few ids: build each shape once per AE.
    assoc_cache: dict[str, tuple[bytes, bytes]] = {}
    echo = echo_exchange(1)
    conns = []
    for i in range(flows):
        c = Conn(i)
        calling = f"MOD{i % 50:02d}"
        if calling not in assoc_cache:
            assoc_cache[calling] = _assoc(calling)
        rq, ac = assoc_cache[calling]
        c.handshake()
        c.send(True, rq)
        c.send(False, ac)
        kind = i % 3
        if kind == 0:
            for msg_id in (1, 2):
                req, rsp = store_exchange(msg_id, i)
                c.send(True, req)
                c.send(False, rsp)
                expected["C-STORE"] += 1
        elif kind == 1:
            c.send(True, echo[0])
            c.send(False, echo[1])
            expected["C-ECHO"] += 1
        else:
            req, rsps = find_exchange(1, i)
            c.send(True, req)
            for rsp in rsps:
                c.send(False, rsp)
            expected["C-FIND"] += 1
            expected["C-FIND pending"] += 2
        c.send(True, release_rq)
        c.send(False, release_rp)
        c.close()
        conns.append(c)
    return conns, expected


def write(path: str, conns: list[Conn], gap_us: int) -> int:
    """Round-robin over the flows' steps: every association is open at the same time."""
    n = 0
    t0 = 1_700_000_000.0
    with open(path, "wb") as f:
        w = dpkt.pcap.Writer(f, snaplen=65535, linktype=dpkt.pcap.DLT_EN10MB)
        step = 0
        live = conns
        while live:
            for c in live:
                w.writepkt(c.steps[step], ts=t0 + n * gap_us * 1e-6)
                n += 1
            step += 1
            live = [c for c in live if len(c.steps) > step]
    return n


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-o", "--out", default=os.path.join(OUT_DIR, "many_flows.pcap"))
    ap.add_argument("--flows", type=int, default=10_000)
    ap.add_argument("--gap-us", type=int, default=5, help="capture time between packets")
    a = ap.parse_args(argv)
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    conns, expected = build(a.flows)
    packets = write(a.out, conns, a.gap_us)
    expected["packets"] = packets
    expected["port"] = PORT
    with open(a.out + ".expected.json", "w") as f:
        json.dump(expected, f, indent=1)
    print(json.dumps({"path": a.out, **expected}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
